/**
 * Reads a Prometheus text exposition with a third-party parser (`parse-prometheus-text-format`,
 * a port of the Prometheus text parser), so tests never check the agent's output with a parser
 * the agent's authors wrote for themselves.
 */
import parsePrometheusTextFormat, { type ParsedFamily } from 'parse-prometheus-text-format';

/** Parsed metrics with lookups. */
export interface PromMetrics {
  readonly families: readonly ParsedFamily[];
  /** The family's type, or undefined when absent. */
  type(name: string): string | undefined;
  /** Samples of a family whose labels include `labels`. */
  samples(
    name: string,
    labels?: Readonly<Record<string, string>>,
  ): { labels: Readonly<Record<string, string>>; value: number }[];
  /** The one sample matching `labels`; throws if there are none or several. */
  value(name: string, labels?: Readonly<Record<string, string>>): number;
}

/** Parses `text`; throws on anything the parser rejects or on a duplicate family. */
export function parseProm(text: string): PromMetrics {
  const families = parsePrometheusTextFormat(text);
  const byName = new Map<string, ParsedFamily>();
  for (const f of families) {
    if (byName.has(f.name)) throw new Error(`metric family ${f.name} appears twice`);
    byName.set(f.name, f);
  }
  const samples = (
    name: string,
    labels: Readonly<Record<string, string>> = {},
  ): { labels: Readonly<Record<string, string>>; value: number }[] =>
    (byName.get(name)?.metrics ?? [])
      .filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))
      .map((m) => {
        const v = Number(m.value);
        if (m.value === undefined || Number.isNaN(v))
          throw new Error(`metric ${name} has a sample without a numeric value`);
        return { labels: m.labels ?? {}, value: v };
      });
  return {
    families,
    type: (name) => byName.get(name)?.type,
    samples,
    value(name, labels = {}) {
      const s = samples(name, labels);
      if (s.length !== 1)
        throw new Error(`metric ${name}${JSON.stringify(labels)}: ${s.length} samples, want exactly 1`);
      return (s[0] as { value: number }).value;
    },
  };
}
