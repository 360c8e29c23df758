/**
 * From raw samples to reported figures: medians with spread per variant, and paired ratios
 * (both sides measured in the same round, seconds apart). Pure: the summary, the charts and
 * the console report all read these.
 */
import { pairedRatios, quantile, spread, type Spread } from './stats.js';
import { THROUGHPUT_TESTS, VARIANTS, type JoinResult, type MtuProbe, type MtuSweepResult, type ThroughputResult, type ThroughputTest, type Variant } from './types.js';

/** Target: sealnet's throughput at least this fraction of the hand-configured tunnel's (issue 9). */
export const TARGET_VS_HAND = 0.95;
/** Target: a joining node's pairs encrypted within this many ms of its key appearing (issue 2). */
export const TARGET_JOIN_MS = 2000;

/** The ratios the summary reports, numerator and denominator variants. */
export const RATIOS = [
  { id: 'sealnet/hand-pinned', num: 'sealnet', den: 'hand-pinned', label: 'sealnet ÷ hand-configured (same wireguard-go)', target: TARGET_VS_HAND },
  { id: 'sealnet/plaintext', num: 'sealnet', den: 'plaintext', label: 'sealnet ÷ plaintext', target: undefined },
  { id: 'hand-pinned/hand-debian', num: 'hand-pinned', den: 'hand-debian', label: 'pinned ÷ Debian wireguard-go (both hand-configured)', target: undefined },
] as const satisfies readonly { id: string; num: Variant; den: Variant; label: string; target: number | undefined }[];

/** One of {@link RATIOS}' ids. */
export type RatioId = (typeof RATIOS)[number]['id'];

/** Reported throughput figures (Mbit/s). */
export interface ThroughputFigures {
  readonly mbps: Readonly<Record<ThroughputTest, Readonly<Record<Variant, Spread | undefined>>>>;
  readonly ratios: Readonly<Record<ThroughputTest, Readonly<Record<RatioId, Spread | undefined>>>>;
  /** Ratio over all four shapes pooled (every paired sample). */
  readonly pooledRatios: Readonly<Record<RatioId, Spread | undefined>>;
  readonly failures: number;
}

/** Reported latency figures (µs; spread over rounds of each run's percentile). */
export interface LatencyFigures {
  readonly p50: Readonly<Record<Variant, Spread | undefined>>;
  readonly p99: Readonly<Record<Variant, Spread | undefined>>;
  /** sealnet ÷ plaintext, paired per round. */
  readonly ratioP50: Spread | undefined;
  readonly ratioP99: Spread | undefined;
  /** sealnet − plaintext p50 in µs, paired per round. */
  readonly addedP50Us: Spread | undefined;
  readonly failures: number;
}

/** Mbit/s of one variant and shape, by round (failed runs left out). */
export function byRound(t: ThroughputResult, v: Variant, test: ThroughputTest): Map<number, number> {
  const m = new Map<number, number>();
  for (const s of t.iperf) if (s.variant === v && s.test === test && s.bitsPerSecond !== undefined) m.set(s.round, s.bitsPerSecond / 1e6);
  return m;
}

function perVariant<T>(fn: (v: Variant) => T): Record<Variant, T> {
  return Object.fromEntries(VARIANTS.map((v) => [v, fn(v)])) as Record<Variant, T>;
}

/** Throughput medians and paired ratios. */
export function throughputFigures(t: ThroughputResult): ThroughputFigures {
  const mbps = {} as Record<ThroughputTest, Record<Variant, Spread | undefined>>;
  const ratios = {} as Record<ThroughputTest, Record<RatioId, Spread | undefined>>;
  const pooled = Object.fromEntries(RATIOS.map((r) => [r.id, [] as number[]])) as Record<RatioId, number[]>;
  for (const test of THROUGHPUT_TESTS) {
    mbps[test] = perVariant((v) => spread([...byRound(t, v, test).values()]));
    ratios[test] = {} as Record<RatioId, Spread | undefined>;
    for (const r of RATIOS) {
      const pr = pairedRatios(byRound(t, r.num, test), byRound(t, r.den, test));
      pooled[r.id].push(...pr);
      ratios[test][r.id] = spread(pr);
    }
  }
  const pooledRatios = Object.fromEntries(RATIOS.map((r) => [r.id, spread(pooled[r.id])])) as Record<RatioId, Spread | undefined>;
  return { mbps, ratios, pooledRatios, failures: t.iperf.filter((s) => s.error !== undefined).length };
}

/** Latency percentiles per variant and sealnet ÷ plaintext. */
export function latencyFigures(t: ThroughputResult): LatencyFigures {
  const pct = (v: Variant, q: number): Map<number, number> => percentileByRound(t, v, q);
  const diff = (a: Map<number, number>, b: Map<number, number>): number[] => [...a].filter(([r]) => b.has(r)).map(([r, x]) => x - (b.get(r) as number));
  return {
    p50: perVariant((v) => spread([...pct(v, 0.5).values()])),
    p99: perVariant((v) => spread([...pct(v, 0.99).values()])),
    ratioP50: spread(pairedRatios(pct('sealnet', 0.5), pct('plaintext', 0.5))),
    ratioP99: spread(pairedRatios(pct('sealnet', 0.99), pct('plaintext', 0.99))),
    addedP50Us: spread(diff(pct('sealnet', 0.5), pct('plaintext', 0.5))),
    failures: t.latency.filter((s) => s.error !== undefined).length,
  };
}

/** The `q` quantile (µs) of each round's latency run of one variant, by round (failed runs left out). */
export function percentileByRound(t: ThroughputResult, v: Variant, q: number): Map<number, number> {
  const m = new Map<number, number>();
  for (const s of t.latency) if (s.variant === v && s.error === undefined && s.rttUs.length > 0) m.set(s.round, quantile(s.rttUs, q));
  return m;
}

/** One join's headline numbers: the slowest existing node / pod decides. */
export interface JoinRow {
  readonly node: string;
  readonly nodesBefore: number;
  readonly agentStartToKeyMs: number | undefined;
  readonly programmedAllMs: number | undefined;
  readonly firstPingAllMs: number | undefined;
  readonly newNodeProgrammedMs: number | undefined;
  readonly worstResolutionMs: number | undefined;
  readonly error: string | undefined;
}

/** Join figures: per join rows and median/max across joins. */
export interface JoinFigures {
  readonly rows: readonly JoinRow[];
  readonly programmedAll: Spread | undefined;
  readonly firstPingAll: Spread | undefined;
  readonly agentStartToKey: Spread | undefined;
}

function maxOf(r: Readonly<Record<string, number>>): number | undefined {
  const v = Object.values(r);
  return v.length === 0 ? undefined : Math.max(...v);
}

/** Per-join maxima and their spread across joins. */
export function joinFigures(j: JoinResult): JoinFigures {
  const rows: JoinRow[] = j.joins.map((s) => ({
    node: s.node,
    nodesBefore: s.nodesBefore,
    agentStartToKeyMs: s.agentStartToKeyMs,
    programmedAllMs: s.error === undefined ? maxOf(s.programmedMs) : undefined,
    firstPingAllMs: s.error === undefined ? maxOf(s.firstPingMs) : undefined,
    newNodeProgrammedMs: s.newNodeProgrammedMs,
    worstResolutionMs: maxOf(s.programmedResolutionMs),
    error: s.error,
  }));
  const col = (f: (r: JoinRow) => number | undefined): Spread | undefined => spread(rows.map(f).filter((x): x is number => x !== undefined));
  return { rows, programmedAll: col((r) => r.programmedAllMs), firstPingAll: col((r) => r.firstPingAllMs), agentStartToKey: col((r) => r.agentStartToKeyMs) };
}

/** MTU sweep grouped for the table: payload → column label → probe. */
export interface MtuTable {
  readonly columns: readonly string[];
  readonly rows: readonly { readonly payload: number; readonly cells: Readonly<Record<string, MtuProbe | undefined>> }[];
  readonly unexpected: readonly MtuProbe[];
}

/** Arranges the sweep as a table, one column per cluster and direction. */
export function mtuTable(m: MtuSweepResult): MtuTable {
  const label = (p: MtuProbe): string => `${p.cluster} ${p.from}→${p.to}`;
  const columns = [...new Set(m.probes.map(label))];
  const payloads = [...new Set(m.probes.map((p) => p.payload))].sort((a, b) => a - b);
  const rows = payloads.map((payload) => ({ payload, cells: Object.fromEntries(columns.map((col) => [col, m.probes.find((p) => p.payload === payload && label(p) === col)])) }));
  return { columns, rows, unexpected: m.probes.filter((p) => !p.ok) };
}
