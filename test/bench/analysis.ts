/**
 * From raw samples to reported figures: medians with spread per variant, and paired ratios
 * (both sides measured in the same round, seconds apart). Pure: the summary, the charts and
 * the console report all read these.
 */
import { bootstrapRatioCi, pairedRatios, quantile, spread, type RatioCi, type Spread } from './stats.js';
import {
  THROUGHPUT_TESTS,
  VARIANTS,
  type IperfSample,
  type JoinResult,
  type MtuProbe,
  type MtuSweepResult,
  type ThroughputResult,
  type ThroughputTest,
  type Variant,
} from './types.js';

/** Target: sealnet's throughput at least this fraction of the hand-configured tunnel's (issue 9). */
export const TARGET_VS_HAND = 0.95;
/** Target: a joining node's pairs encrypted within this many ms of its key appearing (issue 2). */
export const TARGET_JOIN_MS = 2000;

/** The ratios the summary reports, numerator and denominator variants. */
export const RATIOS = [
  {
    id: 'sealnet/hand-pinned',
    num: 'sealnet',
    den: 'hand-pinned',
    label: 'sealnet ÷ hand-configured (same wireguard-go)',
    target: TARGET_VS_HAND,
  },
  { id: 'sealnet/plaintext', num: 'sealnet', den: 'plaintext', label: 'sealnet ÷ plaintext', target: undefined },
  {
    id: 'hand-pinned/hand-debian',
    num: 'hand-pinned',
    den: 'hand-debian',
    label: 'pinned ÷ Debian wireguard-go (both hand-configured)',
    target: undefined,
  },
] as const satisfies readonly { id: string; num: Variant; den: Variant; label: string; target: number | undefined }[];

/** One of {@link RATIOS}' ids. */
export type RatioId = (typeof RATIOS)[number]['id'];

/** Reported throughput figures (Mbit/s). */
export interface ThroughputFigures {
  readonly mbps: Readonly<Record<ThroughputTest, Readonly<Record<Variant, Spread | undefined>>>>;
  readonly ratios: Readonly<Record<ThroughputTest, Readonly<Record<RatioId, Spread | undefined>>>>;
  /** Ratio over all four shapes pooled (every paired sample). */
  readonly pooledRatios: Readonly<Record<RatioId, Spread | undefined>>;
  /** Geometric mean of the paired ratios with a bootstrap 95 % interval (rounds resampled), per shape. */
  readonly ci: Readonly<Record<ThroughputTest, Readonly<Record<RatioId, RatioCi | undefined>>>>;
  /** The same over every shape run, a round's shapes resampled together. */
  readonly pooledCi: Readonly<Record<RatioId, RatioCi | undefined>>;
  readonly failures: number;
}

/** Target of issue 17: the 95 % interval of sealnet ÷ hand-configured narrower than ± this %. */
export const TARGET_CI_HALF_WIDTH_PCT = 2;

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
  for (const s of t.iperf)
    if (s.variant === v && s.test === test && s.bitsPerSecond !== undefined) m.set(s.round, s.bitsPerSecond / 1e6);
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
  const pooledRatios = Object.fromEntries(RATIOS.map((r) => [r.id, spread(pooled[r.id])])) as Record<
    RatioId,
    Spread | undefined
  >;
  const ci = {} as Record<ThroughputTest, Record<RatioId, RatioCi | undefined>>;
  for (const test of THROUGHPUT_TESTS)
    ci[test] = Object.fromEntries(
      RATIOS.map((r) => [r.id, bootstrapRatioCi(roundGroups(t, r.num, r.den, [test]))]),
    ) as Record<RatioId, RatioCi | undefined>;
  const pooledCi = Object.fromEntries(
    RATIOS.map((r) => [r.id, bootstrapRatioCi(roundGroups(t, r.num, r.den, THROUGHPUT_TESTS))]),
  ) as Record<RatioId, RatioCi | undefined>;
  return { mbps, ratios, pooledRatios, ci, pooledCi, failures: t.iperf.filter((s) => s.error !== undefined).length };
}

/** Paired ratios num ÷ den grouped by round (one entry per shape run in that round). */
export function roundGroups(
  t: ThroughputResult,
  num: Variant,
  den: Variant,
  tests: readonly ThroughputTest[],
): number[][] {
  const groups = new Map<number, number[]>();
  for (const test of tests) {
    const n = byRound(t, num, test);
    const d = byRound(t, den, test);
    for (const [round, x] of n) {
      const y = d.get(round);
      if (y === undefined || !(y > 0) || !(x > 0)) continue;
      groups.set(round, [...(groups.get(round) ?? []), x / y]);
    }
  }
  return [...groups.values()];
}

/** CPU cost of carrying traffic, per variant and shape (issue 17, item 3). */
export interface CpuFigures {
  /** Agent + wireguard-go CPU seconds per Gbit received, median [spread] over rounds. */
  readonly tunnelPerGbit: Readonly<Record<ThroughputTest, Readonly<Record<Variant, Spread | undefined>>>>;
  /** Of which the agents alone. */
  readonly agentPerGbit: Readonly<Record<ThroughputTest, Readonly<Record<Variant, Spread | undefined>>>>;
  /** Machine-wide softirq CPU seconds per Gbit (every tenant's packets, not only this run's). */
  readonly softirqPerGbit: Readonly<Record<ThroughputTest, Readonly<Record<Variant, Spread | undefined>>>>;
  /** sealnet ÷ hand-configured tunnel CPU per Gbit, paired per round, with a bootstrap interval over all shapes. */
  readonly sealnetVsHand: RatioCi | undefined;
  /** Runs that carry CPU figures (results from before issue 17 have none). */
  readonly samples: number;
}

/** CPU seconds per Gbit of each run, from the samples that recorded CPU and bytes. */
export function cpuFigures(t: ThroughputResult): CpuFigures {
  const per = (pick: (s: IperfSample) => number): Record<ThroughputTest, Record<Variant, Spread | undefined>> => {
    const out = {} as Record<ThroughputTest, Record<Variant, Spread | undefined>>;
    for (const test of THROUGHPUT_TESTS)
      out[test] = perVariant((v) =>
        spread(t.iperf.filter((s) => s.variant === v && s.test === test && hasCpu(s)).map((s) => pick(s) / gbitOf(s))),
      );
    return out;
  };
  const tunnel = (s: IperfSample): number => (s.cpu?.agentS ?? 0) + (s.cpu?.wireguardGoS ?? 0);
  const groups = new Map<number, number[]>();
  for (const test of THROUGHPUT_TESTS) {
    const at = (v: Variant): Map<number, number> =>
      new Map(
        t.iperf
          .filter((s) => s.variant === v && s.test === test && hasCpu(s))
          .map((s) => [s.round, tunnel(s) / gbitOf(s)]),
      );
    const sn = at('sealnet');
    const hp = at('hand-pinned');
    for (const [round, x] of sn) {
      const y = hp.get(round);
      if (y !== undefined && y > 0 && x > 0) groups.set(round, [...(groups.get(round) ?? []), x / y]);
    }
  }
  return {
    tunnelPerGbit: per(tunnel),
    agentPerGbit: per((s) => s.cpu?.agentS ?? 0),
    softirqPerGbit: per((s) => s.cpu?.softirqS ?? 0),
    sealnetVsHand: bootstrapRatioCi([...groups.values()]),
    samples: t.iperf.filter(hasCpu).length,
  };
}

function hasCpu(s: IperfSample): boolean {
  return s.cpu !== undefined && s.bytes !== undefined && s.bytes > 0 && s.error === undefined;
}

function gbitOf(s: IperfSample): number {
  return ((s.bytes ?? 0) * 8) / 1e9;
}

/** Latency percentiles per variant and sealnet ÷ plaintext. */
export function latencyFigures(t: ThroughputResult): LatencyFigures {
  const pct = (v: Variant, q: number): Map<number, number> => percentileByRound(t, v, q);
  const diff = (a: Map<number, number>, b: Map<number, number>): number[] =>
    [...a].filter(([r]) => b.has(r)).map(([r, x]) => x - (b.get(r) as number));
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
  for (const s of t.latency)
    if (s.variant === v && s.error === undefined && s.rttUs.length > 0) m.set(s.round, quantile(s.rttUs, q));
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
  const col = (f: (r: JoinRow) => number | undefined): Spread | undefined =>
    spread(rows.map(f).filter((x): x is number => x !== undefined));
  return {
    rows,
    programmedAll: col((r) => r.programmedAllMs),
    firstPingAll: col((r) => r.firstPingAllMs),
    agentStartToKey: col((r) => r.agentStartToKeyMs),
  };
}

/** MTU sweep grouped for the table: payload → column label → probe. */
export interface MtuTable {
  readonly columns: readonly string[];
  readonly rows: readonly {
    readonly payload: number;
    readonly cells: Readonly<Record<string, MtuProbe | undefined>>;
  }[];
  readonly unexpected: readonly MtuProbe[];
}

/** Arranges the sweep as a table, one column per cluster and direction. */
export function mtuTable(m: MtuSweepResult): MtuTable {
  const label = (p: MtuProbe): string => `${p.cluster} ${p.from}→${p.to}`;
  const columns = [...new Set(m.probes.map(label))];
  const payloads = [...new Set(m.probes.map((p) => p.payload))].sort((a, b) => a - b);
  const rows = payloads.map((payload) => ({
    payload,
    cells: Object.fromEntries(
      columns.map((col) => [col, m.probes.find((p) => p.payload === payload && label(p) === col)]),
    ),
  }));
  return { columns, rows, unexpected: m.probes.filter((p) => !p.ok) };
}
