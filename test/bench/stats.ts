/**
 * Order statistics for benchmark samples. Machines here are noisy (2 vCPUs shared with other
 * test runs), so every figure is a median with its spread, and every comparison is a ratio of
 * samples taken side by side in the same round (paired), never of numbers from different runs.
 */

/** A figure as the summary reports it. */
export interface Spread {
  readonly n: number;
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly p10: number;
  readonly p90: number;
}

/**
 * The `q` quantile (0..1) of `values` by linear interpolation between closest ranks (the
 * "R-7" definition: what numpy and spreadsheets use). NaN for an empty input.
 */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  if (q < 0 || q > 1) throw new RangeError(`quantile ${q} is outside 0..1`);
  const s = [...values].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = s[lo] as number;
  const b = s[hi] as number;
  return a + (b - a) * (pos - lo);
}

/** Median (the 0.5 quantile). */
export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

/** Median, extremes and p10/p90 of the finite values in `values`; undefined when there are none. */
export function spread(values: readonly number[]): Spread | undefined {
  const v = values.filter((x) => Number.isFinite(x));
  if (v.length === 0) return undefined;
  return {
    n: v.length,
    median: median(v),
    min: Math.min(...v),
    max: Math.max(...v),
    p10: quantile(v, 0.1),
    p90: quantile(v, 0.9),
  };
}

/**
 * Ratios `num[k] / den[k]` of samples taken in the same round `k` (paired), skipping rounds
 * where either side is missing or the denominator is not positive.
 */
export function pairedRatios(num: ReadonlyMap<number, number>, den: ReadonlyMap<number, number>): number[] {
  const out: number[] = [];
  for (const [round, n] of num) {
    const d = den.get(round);
    if (d === undefined || !(d > 0) || !Number.isFinite(n)) continue;
    out.push(n / d);
  }
  return out;
}

/** How a measured ratio compares with a lower bound. */
export interface Verdict {
  readonly met: boolean;
  /** Plain words for the summary, e.g. "missed by 4.2 % (0.910 < 0.950)". */
  readonly text: string;
}

/** Judges a median against "at least `target`" (ratios) and says by how much it misses. */
export function atLeast(s: Spread | undefined, target: number, digits = 3): Verdict {
  if (s === undefined) return { met: false, text: 'not measured' };
  const m = s.median;
  if (m >= target) {
    const caveat = s.min < target ? `; but the worst round, ${s.min.toFixed(digits)}, is below it` : '';
    return { met: true, text: `met (${m.toFixed(digits)} ≥ ${target.toFixed(digits)}${caveat})` };
  }
  const short = (100 * (target - m)) / target;
  const caveat = s.max >= target ? `; the best round, ${s.max.toFixed(digits)}, is above it` : '';
  return {
    met: false,
    text: `**missed** by ${short.toFixed(1)} % (${m.toFixed(digits)} < ${target.toFixed(digits)}${caveat})`,
  };
}

/** Judges a maximum against "below `limit`" (latencies in ms). */
export function below(max: number | undefined, limit: number, unit: string): Verdict {
  if (max === undefined || !Number.isFinite(max)) return { met: false, text: 'not measured' };
  if (max < limit) return { met: true, text: `met (max ${fmt(max)} ${unit} < ${fmt(limit)} ${unit})` };
  return {
    met: false,
    text: `**missed**: max ${fmt(max)} ${unit} ≥ ${fmt(limit)} ${unit} (over by ${fmt(max - limit)} ${unit}, ${((100 * (max - limit)) / limit).toFixed(0)} %)`,
  };
}

/** Compact number: integers as is, otherwise 3 significant digits. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return '—';
  if (Math.abs(x) >= 100 || Number.isInteger(x)) return Math.round(x).toString();
  return x.toPrecision(3);
}

/** Judges one figure (a p99, a peak) against "below `limit`", naming it: "met (p99 45 ms < 100 ms)". */
export function under(value: number | undefined, limit: number, o: { unit: string; label: string }): Verdict {
  if (value === undefined || !Number.isFinite(value)) return { met: false, text: 'not measured' };
  const v = `${o.label} ${fmt(value)} ${o.unit}`;
  if (value < limit) return { met: true, text: `met (${v} < ${fmt(limit)} ${o.unit})` };
  return {
    met: false,
    text: `**missed** by ${fmt(value - limit)} ${o.unit} (${v} ≥ ${fmt(limit)} ${o.unit}, ${((100 * (value - limit)) / limit).toFixed(value - limit < limit / 10 ? 1 : 0)} % over)`,
  };
}

/** A seeded PRNG (mulberry32): bootstrap intervals are reproducible from the stored samples. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Geometric mean of positive values (the right mean for ratios: 2 and 0.5 average to 1). */
export function geomean(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  return Math.exp(values.reduce((a, v) => a + Math.log(v), 0) / values.length);
}

/** A ratio with its bootstrap confidence interval. */
export interface RatioCi {
  /** Paired ratios used. */
  readonly n: number;
  /** Resampling units (rounds). */
  readonly rounds: number;
  /** Geometric mean of the paired ratios. */
  readonly estimate: number;
  readonly lo: number;
  readonly hi: number;
  /** Confidence level, e.g. 0.95. */
  readonly level: number;
  /** Half the interval's width in % of the estimate: "± x %". */
  readonly halfWidthPct: number;
}

/**
 * Percentile-bootstrap confidence interval of the geometric mean of paired ratios. `groups`
 * holds the ratios of one round each: rounds are resampled whole (with replacement), so a
 * round that was slow for every shape (a noisy neighbour) counts as one unit, not four.
 * Undefined with fewer than 2 rounds (no spread to resample).
 */
export function bootstrapRatioCi(
  groups: readonly (readonly number[])[],
  opts: { resamples?: number; level?: number; seed?: number } = {},
): RatioCi | undefined {
  const g = groups.map((r) => r.filter((x) => Number.isFinite(x) && x > 0)).filter((r) => r.length > 0);
  if (g.length < 2) return undefined;
  const all = g.flat();
  const level = opts.level ?? 0.95;
  const rnd = seededRandom(opts.seed ?? 17);
  const b = opts.resamples ?? 4000;
  const stats: number[] = [];
  for (let i = 0; i < b; i++) {
    let sumLog = 0;
    let n = 0;
    for (let k = 0; k < g.length; k++) {
      const round = g[Math.floor(rnd() * g.length)] as readonly number[];
      for (const x of round) sumLog += Math.log(x);
      n += round.length;
    }
    stats.push(Math.exp(sumLog / n));
  }
  const estimate = geomean(all);
  const lo = quantile(stats, (1 - level) / 2);
  const hi = quantile(stats, 1 - (1 - level) / 2);
  return { n: all.length, rounds: g.length, estimate, lo, hi, level, halfWidthPct: (100 * (hi - lo)) / 2 / estimate };
}
