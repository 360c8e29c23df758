/** The README charts: `bench/throughput.svg` and `bench/latency.svg`, from one result file. */
import { latencyFigures, throughputFigures } from './analysis.js';
import { fmt } from './stats.js';
import { barChart, type BarSeries } from './svg.js';
import { TEST_LABELS, THROUGHPUT_TESTS, type BenchResult, type ThroughputResult, type Variant } from './types.js';

/** Short labels and fixed colours per variant (the legend must fit one row). */
export const SERIES: readonly (BarSeries & { id: Variant })[] = [
  { id: 'plaintext', label: 'plaintext', color: '#9e9e9e' },
  { id: 'sealnet', label: 'sealnet', color: '#1f6feb' },
  { id: 'hand-pinned', label: 'hand-configured, same wireguard-go', color: '#2da44e' },
  { id: 'hand-debian', label: 'hand-configured, Debian wireguard-go', color: '#d4a72c' },
];

function subtitle(r: BenchResult, t: ThroughputResult, what: string): string {
  const e = r.environment;
  return `${what}; median of ${t.rounds} interleaved rounds, whiskers min–max. ${r.startedAt.slice(0, 10)}, ${r.commit.short}, ${e.cpus} vCPU, load ${e.loadBefore[0]}`;
}

/**
 * Throughput (Mbit/s) of the three tunnels for the four iperf3 shapes. Plaintext veth is an
 * order of magnitude faster and would flatten the tunnel bars, so it is printed under each
 * group instead of drawn.
 */
export function throughputChart(r: BenchResult): string | undefined {
  const t = r.benchmarks.throughput;
  if (t === undefined) return undefined;
  const f = throughputFigures(t);
  return barChart({
    title: 'Pod-to-pod TCP throughput through userspace WireGuard (iperf3)',
    subtitle: subtitle(r, t, `${t.durationS} s runs`),
    series: SERIES.filter((s) => s.id !== 'plaintext'),
    panels: [
      {
        unit: 'Mbit/s',
        groups: THROUGHPUT_TESTS.map((test) => {
          const plain = f.mbps[test].plaintext;
          return {
            label: TEST_LABELS[test],
            note: plain === undefined ? undefined : `plaintext: ${fmt(plain.median)} Mbit/s`,
            values: f.mbps[test],
          };
        }),
      },
    ],
  });
}

/** Latency (µs): p50 and p99 panels, each on its own scale. */
export function latencyChart(r: BenchResult): string | undefined {
  const t = r.benchmarks.throughput;
  if (t === undefined) return undefined;
  const l = latencyFigures(t);
  const group = (label: string, v: typeof l.p50): { label: string; values: typeof l.p50 } => ({ label, values: v });
  return barChart({
    title: 'TCP request/response round trip, 64-byte messages',
    subtitle: subtitle(r, t, `${t.latencyCount} round trips per run`),
    series: SERIES,
    panels: [
      { title: 'median (p50)', unit: 'µs', groups: [group('p50', l.p50)] },
      { title: 'tail (p99)', unit: 'µs', groups: [group('p99', l.p99)] },
    ],
    height: 360,
  });
}
