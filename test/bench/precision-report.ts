/**
 * SUMMARY.md sections of issue 17: the throughput ratio with its bootstrap confidence interval
 * (can the bench tell 0.97 from 1.0?), and the CPU cost per gigabit of each variant.
 */
import { cpuFigures, RATIOS, TARGET_CI_HALF_WIDTH_PCT, throughputFigures } from './analysis.js';
import type { RatioCi, Spread } from './stats.js';
import { TEST_LABELS, THROUGHPUT_TESTS, VARIANT_LABELS, VARIANTS, type ThroughputResult } from './types.js';

/** Issue 17's throughput target: sealnet ÷ hand-configured at least this ... */
export const TARGET_RATIO = 0.97;
/** ... with the whole 95 % interval above this. */
export const TARGET_RATIO_CI_LO = 0.95;

/** "0.962 [0.941, 0.983] ±2.2 %, 24 runs / 6 rounds". */
export function ciCell(c: RatioCi | undefined): string {
  if (c === undefined) return '—';
  return `${c.estimate.toFixed(3)} [${c.lo.toFixed(3)}, ${c.hi.toFixed(3)}] ±${c.halfWidthPct.toFixed(1)} %`;
}

function spreadCell(s: Spread | undefined, digits: number): string {
  return s === undefined ? '—' : `${s.median.toFixed(digits)} [${s.min.toFixed(digits)}–${s.max.toFixed(digits)}]`;
}

/** The variants and shapes a result holds (older results: all of them). */
export function ranOf(t: ThroughputResult): {
  variants: readonly (typeof VARIANTS)[number][];
  tests: readonly (typeof THROUGHPUT_TESTS)[number][];
} {
  return { variants: t.variants ?? VARIANTS, tests: t.tests ?? THROUGHPUT_TESTS };
}

/** The confidence-interval table and its two target rows. */
export function throughputCiSection(t: ThroughputResult, targets: string[]): string[] {
  const f = throughputFigures(t);
  const { variants, tests } = ranOf(t);
  const ratios = RATIOS.filter((r) => variants.includes(r.num) && variants.includes(r.den));
  const load = t.loadByRound ?? [];
  const out = [
    '### Ratios with 95 % confidence intervals',
    '',
    `Geometric mean of the paired ratios (same round, seconds apart, variant order rotating), with a percentile-bootstrap 95 % interval: 4,000 resamples of whole rounds (a round's shapes stay together), fixed seed. ${t.pinned === undefined ? 'No CPU pinning.' : `Pinned with taskset: iperf3 (client and server) on CPU ${t.pinned.iperf3}, every wireguard-go (all threads) on CPU ${t.pinned.wireguardGo}; the agents unpinned.`}${load.length > 0 ? ` 1-minute load average at each round's start: ${load.map((x) => x.toFixed(1)).join(', ')} (2 vCPUs shared with other test runs).` : ''}`,
    '',
    `| test | ${ratios.map((r) => r.label).join(' | ')} |`,
    `| --- | ${ratios.map(() => '---:').join(' | ')} |`,
    ...tests.map((test) => `| ${TEST_LABELS[test]} | ${ratios.map((r) => ciCell(f.ci[test][r.id])).join(' | ')} |`),
    `| ${tests.length > 1 ? 'all shapes run, pooled' : 'all'} | ${ratios.map((r) => ciCell(f.pooledCi[r.id])).join(' | ')} |`,
  ];
  const c = f.pooledCi['sealnet/hand-pinned'];
  if (c !== undefined) {
    const narrow = c.halfWidthPct < TARGET_CI_HALF_WIDTH_PCT;
    targets.push(
      `| throughput method: 95 % interval of sealnet ÷ hand-configured (${c.n} paired runs, ${c.rounds} rounds) | narrower than ±${TARGET_CI_HALF_WIDTH_PCT} % | ±${c.halfWidthPct.toFixed(1)} % | ${narrow ? 'met' : `**missed**: ±${c.halfWidthPct.toFixed(1)} % (more rounds, longer runs or a quieter machine needed)`} |`,
    );
    const met = c.estimate >= TARGET_RATIO && c.lo > TARGET_RATIO_CI_LO;
    // An interval wider than the method's ±2 % cannot confirm a few-percent target either way.
    const verdict = !narrow
      ? `**not resolved**: the interval (±${c.halfWidthPct.toFixed(1)} %) is wider than the ±${TARGET_CI_HALF_WIDTH_PCT} % needed to judge it`
      : met
        ? 'met'
        : `**missed** (${c.estimate < TARGET_RATIO ? `estimate ${c.estimate.toFixed(3)} < ${TARGET_RATIO}` : `lower bound ${c.lo.toFixed(3)} ≤ ${TARGET_RATIO_CI_LO}`})`;
    targets.push(
      `| throughput: sealnet ÷ hand-configured, interval above ${TARGET_RATIO_CI_LO} | ≥ ${TARGET_RATIO} | ${ciCell(c)} | ${verdict} |`,
    );
  }
  return out;
}

/** CPU seconds per Gbit, per variant and shape. */
export function cpuSection(t: ThroughputResult): string[] {
  const f = cpuFigures(t);
  if (f.samples === 0) return [];
  const { variants, tests } = ranOf(t);
  const head = `| test | ${variants.map((v) => VARIANT_LABELS[v]).join(' | ')} |`;
  const rule = `| --- | ${variants.map(() => '---:').join(' | ')} |`;
  return [
    '## CPU per gigabit',
    '',
    'CPU seconds per Gbit received, median [min–max] over rounds, from /proc: **tunnel** = the agents (utime + stime, plus reaped helpers they ran) and wireguard-go (utime + stime of all its threads, which includes the kernel work of its TUN reads/writes and UDP sends) of both nodes during the iperf3 run; iperf3 itself is not counted. Plaintext has neither: its cost is kernel softirq only. **softirq** is machine-wide (/proc/stat) during the run: it includes every tenant of this shared machine, so read it as an upper bound and compare variants only within a round. Per-namespace softirq accounting does not exist in Linux.',
    '',
    '**Tunnel CPU-s per Gbit** (agents + wireguard-go):',
    '',
    head,
    rule,
    ...tests.map(
      (test) =>
        `| ${TEST_LABELS[test]} | ${variants.map((v) => spreadCell(f.tunnelPerGbit[test][v], 3)).join(' | ')} |`,
    ),
    '',
    'Of which the agents:',
    '',
    head,
    rule,
    ...tests.map(
      (test) => `| ${TEST_LABELS[test]} | ${variants.map((v) => spreadCell(f.agentPerGbit[test][v], 4)).join(' | ')} |`,
    ),
    '',
    '**Machine-wide softirq CPU-s per Gbit** (all tenants):',
    '',
    head,
    rule,
    ...tests.map(
      (test) =>
        `| ${TEST_LABELS[test]} | ${variants.map((v) => spreadCell(f.softirqPerGbit[test][v], 3)).join(' | ')} |`,
    ),
    '',
    `sealnet ÷ hand-configured tunnel CPU per Gbit (paired per round, all shapes, bootstrap 95 %): ${ciCell(f.sealnetVsHand)}.`,
  ];
}
