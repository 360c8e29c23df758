/** Bootstrap intervals, CPU parsing and the CPU-per-Gbit figures of the throughput bench (issue 17). */
import { cpuFigures, roundGroups } from './analysis.js';
import { parseProcStat, parseStatTicks } from './cpu.js';
import { parseBenchArgs } from './args.js';
import { ciCell, throughputCiSection } from './precision-report.js';
import { bootstrapRatioCi, geomean, seededRandom } from './stats.js';
import type { IperfSample, ThroughputResult, Variant } from './types.js';

describe('bootstrapRatioCi', () => {
  it('is tight around the true ratio for low-noise pairs and wide for noisy ones', () => {
    const rnd = seededRandom(1);
    const noisy = (sd: number): number[][] =>
      Array.from({ length: 30 }, () => [0.96 * Math.exp(sd * (rnd() + rnd() + rnd() - 1.5))]);
    const tight = bootstrapRatioCi(noisy(0.01));
    const wide = bootstrapRatioCi(noisy(0.3));
    expect(tight?.lo).toBeLessThan(0.96);
    expect(tight?.hi).toBeGreaterThan(0.96);
    expect(tight?.halfWidthPct).toBeLessThan(0.5);
    expect(wide?.halfWidthPct).toBeGreaterThan(3);
    expect(tight?.rounds).toBe(30);
  });

  it('resamples rounds whole and needs at least two', () => {
    expect(bootstrapRatioCi([[1, 2, 3]])).toBeUndefined();
    const c = bootstrapRatioCi([
      [1, 1],
      [2, 2],
    ]);
    expect(c).toMatchObject({ n: 4, rounds: 2 });
    expect(c?.estimate).toBeCloseTo(Math.SQRT2, 6);
    expect(c?.lo).toBeCloseTo(1, 6);
    expect(c?.hi).toBeCloseTo(2, 6);
  });

  it('is reproducible (seeded) and uses the geometric mean', () => {
    const g = [[0.9], [1.1], [1.0], [0.95]];
    expect(bootstrapRatioCi(g)).toEqual(bootstrapRatioCi(g));
    expect(geomean([2, 0.5])).toBeCloseTo(1, 12);
  });
});

describe('cpu parsing', () => {
  it('reads utime, stime, cutime, cstime after a comm with spaces and parentheses', () => {
    const stat =
      '1234 (wireguard go) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 120 7 3 20 0 9 0 500 1000 100 18446744073709551615';
    expect(parseStatTicks(stat)).toBe(250 + 120 + 7 + 3);
    expect(parseStatTicks(stat, false)).toBe(370);
  });

  it('reads softirq and busy time from /proc/stat', () => {
    expect(parseProcStat('cpu  100 5 50 1000 10 2 30 1 0 0\ncpu0 1 2 3\n')).toEqual({
      softirq: 30,
      busy: 100 + 5 + 50 + 2 + 30 + 1,
    });
  });
});

function sample(round: number, variant: Variant, mbps: number, tunnelS: number): IperfSample {
  const bytes = (mbps * 1e6 * 3) / 8;
  return {
    round,
    variant,
    test: '1x-fwd',
    at: 0,
    bitsPerSecond: mbps * 1e6,
    bytes,
    retransmits: 0,
    cpuLocal: undefined,
    cpuRemote: undefined,
    cpu: { agentS: variant === 'sealnet' ? 0.01 : 0, wireguardGoS: tunnelS, softirqS: 0.1, machineBusyS: 6, wallS: 3 },
    error: undefined,
  };
}

describe('throughput figures', () => {
  const t: ThroughputResult = {
    variants: ['sealnet', 'hand-pinned'],
    tests: ['1x-fwd'],
    loadByRound: [3.5, 4.2, 3.9],
    rounds: 3,
    durationS: 3,
    latencyCount: 100,
    setups: [],
    iperf: [
      sample(0, 'sealnet', 900, 3),
      sample(0, 'hand-pinned', 1000, 3),
      sample(1, 'sealnet', 450, 1.5),
      sample(1, 'hand-pinned', 500, 1.5),
      sample(2, 'sealnet', 960, 3),
      sample(2, 'hand-pinned', 1000, 3),
    ],
    latency: [],
  };

  it('pairs ratios by round and reports the interval and its target rows', () => {
    expect(roundGroups(t, 'sealnet', 'hand-pinned', ['1x-fwd']).flat()).toEqual([0.9, 0.9, 0.96]);
    const targets: string[] = [];
    const text = throughputCiSection(t, targets).join('\n');
    expect(text).toMatch(/load average at each round's start: 3.5, 4.2, 3.9/);
    expect(targets.join('\n')).toMatch(/narrower than ±2 % \| ±[0-9.]+ % \| \*\*missed\*\*/);
    expect(targets.join('\n')).toMatch(/≥ 0.97 \| 0.920 .*\*\*not resolved\*\*: the interval \(±[0-9.]+ %\) is wider/);
    expect(ciCell(undefined)).toBe('—');
    // With a narrow interval the ratio is judged: 0.92 misses 0.97.
    const tight: ThroughputResult = {
      ...t,
      iperf: [0, 1, 2, 3].flatMap((r) => [sample(r, 'sealnet', 920, 3), sample(r, 'hand-pinned', 1000, 3)]),
    };
    const t2: string[] = [];
    throughputCiSection(tight, t2);
    expect(t2.join('\n')).toMatch(/narrower than ±2 % \| ±0.0 % \| met/);
    expect(t2.join('\n')).toMatch(/\*\*missed\*\* \(estimate 0.920 < 0.97\)/);
  });

  it('charges agents and wireguard-go per Gbit received', () => {
    const f = cpuFigures(t);
    // the worst sealnet round: (0.01 + 1.5) s over 450 Mbit/s × 3 s = 1.35 Gbit
    expect(f.tunnelPerGbit['1x-fwd'].sealnet?.max).toBeCloseTo(1.51 / 1.35, 6);
    expect(f.tunnelPerGbit['1x-fwd']['hand-pinned']?.median).toBeCloseTo(1, 6);
    expect(f.samples).toBe(6);
  });
});

describe('bench args', () => {
  it('parses --variants, --tests and --pin', () => {
    const a = parseBenchArgs(['throughput', '--variants', 'hand-pinned,sealnet', '--tests', '4x-fwd', '--pin']);
    expect(a.variants).toEqual(['sealnet', 'hand-pinned']);
    expect(a.tests).toEqual(['4x-fwd']);
    expect(a.pin).toBe(true);
    expect(() => parseBenchArgs(['--variants', 'kernel'])).toThrow(/--variants needs/);
  });
});
