/**
 * The `ip-family` report from stored samples: ratios paired per round, the bootstrap interval,
 * the MTU verdict per leg and the errors that fail a run. Pure (no network).
 */
import { describe, expect, it } from '@jest/globals';
import {
  ipFamilyErrors,
  ipFamilyFigures,
  ipFamilySection,
  LEGS,
  mtuOk,
  type IpFamilyMtu,
  type IpFamilyResult,
  type IpFamilySample,
  type Leg,
} from './ipfamily-report.js';

/** Mbit/s of a leg in a round: IPv6 pods 0.9× IPv4 pods, the IPv6 underlay 0.8×; round 1 slow for everyone. */
function mbps(l: Leg, round: number): number {
  return 1000 * (l.inner === 6 ? 0.9 : 1) * (l.underlay === 6 ? 0.8 : 1) * (round === 1 ? 0.5 : 1);
}

function sample(l: Leg, round: number, over: Partial<IpFamilySample> = {}): IpFamilySample {
  return {
    ...l,
    round,
    test: '1x-fwd',
    at: round * 1000,
    bitsPerSecond: mbps(l, round) * 1e6,
    retransmits: 0,
    error: undefined,
    ...over,
  };
}

function mtu(l: Leg, over: Partial<IpFamilyMtu> = {}): IpFamilyMtu {
  const expected = l.underlay === 4 ? 1440 : 1420;
  return {
    ...l,
    from: 'n1p1',
    to: 'n2p1',
    expectedMtu: expected,
    largestPassing: expected,
    overFragNeeded: true,
    overMessageTooLong: false,
    overReceived: 0,
    overReportedMtu: expected,
    probes: 10,
    ...over,
  };
}

function result(over: Partial<IpFamilyResult> = {}): IpFamilyResult {
  return {
    rounds: 3,
    durationS: 2,
    tests: ['1x-fwd'],
    loadByRound: [1, 2, 3],
    setups: [],
    iperf: [0, 1, 2].flatMap((r) => LEGS.map((l) => sample(l, r))),
    mtu: LEGS.map((l) => mtu(l)),
    ...over,
  };
}

describe('ip-family figures', () => {
  it('pairs legs within a round: a round slow for every leg does not move the ratios', () => {
    const f = ipFamilyFigures(result());
    expect(f.ratios['p6/p4@u4'].pooled?.median).toBeCloseTo(0.9, 6);
    expect(f.ratios['p6/p4@u6'].pooled?.median).toBeCloseTo(0.9, 6);
    expect(f.ratios['u6/u4@p4'].pooled?.median).toBeCloseTo(0.8, 6);
    expect(f.ratios['u6/u4@p6'].ci?.estimate).toBeCloseTo(0.8, 6);
    expect(f.ratios['u6/u4@p6'].ci?.rounds).toBe(3);
    // Unpaired, the slow round would spread the throughput itself.
    expect(f.mbps['u4/p4']?.['1x-fwd']?.min).toBe(500);
  });

  it('leaves failed runs out of the pairs and counts them as errors', () => {
    const r = result({
      iperf: [
        ...result().iperf.filter((s) => !(s.round === 2 && s.inner === 6)),
        sample(LEGS[1]!, 2, { bitsPerSecond: undefined, error: 'iperf3: boom' }),
      ],
    });
    const f = ipFamilyFigures(r);
    expect(f.failures).toBe(1);
    expect(f.ratios['p6/p4@u4'].ci?.rounds).toBe(2);
    expect(ipFamilyErrors(r)).toEqual(['1 iperf3 runs failed: iperf3: boom']);
  });

  it('judges each leg’s MTU: the expected size passes and one byte more is refused naming it', () => {
    const l = LEGS[3]!;
    expect(mtuOk(mtu(l))).toBe(true);
    expect(mtuOk(mtu(l, { overMessageTooLong: true, overFragNeeded: false }))).toBe(true);
    expect(mtuOk(mtu(l, { largestPassing: 1419 }))).toBe(false);
    expect(mtuOk(mtu(l, { overFragNeeded: false }))).toBe(false); // silence: a black hole
    expect(mtuOk(mtu(l, { overReportedMtu: 1440 }))).toBe(false);
    expect(mtuOk(mtu(l, { largestPassing: undefined }))).toBe(false);
    const bad = result({ mtu: [mtu(l, { overFragNeeded: false })] });
    expect(ipFamilyErrors(bad)[0]).toMatch(/^u6\/p6 n1p1→n2p1: largest passing 1420 .* refused false, mtu 1420$/);
  });

  it('reports the IPv6 ÷ IPv4 target with its interval, and the MTU row', () => {
    const targets: string[] = [];
    const text = ipFamilySection(result(), targets).join('\n');
    expect(text).toContain('| u6/p6 | n1p1 → n2p1 | 1420 | 1420 | too big, mtu 1420 | ok |');
    expect(targets).toHaveLength(3);
    expect(targets[0]).toMatch(
      /IPv6 ÷ IPv4 pods, IPv4 underlay \| ≥ 0\.95 \| 0\.900, 95 % interval \[0\.900, 0\.900\].*\| \*\*missed\*\*/,
    );
    expect(targets[2]).toMatch(/\| met \|$/);
    const even = result({ iperf: result().iperf.map((s) => ({ ...s, bitsPerSecond: 1e9 })) });
    const t2: string[] = [];
    ipFamilySection(even, t2);
    expect(t2[0]).toMatch(/\| met \(interval above the target\) \|$/);
    // Noisy rounds whose interval straddles the target: neither met nor missed.
    const noisy = result({
      iperf: result().iperf.map((s) => ({ ...s, bitsPerSecond: s.inner === 6 && s.round === 0 ? 0.5e9 : 1e9 })),
    });
    const t3: string[] = [];
    ipFamilySection(noisy, t3);
    expect(t3[0]).toMatch(/\*\*not resolved\*\*: the interval \[0\.500, 1\.000\] contains 0\.95/);
  });
});
