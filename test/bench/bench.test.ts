/**
 * Unit tests of the benchmark's pure parts: statistics, argument parsing, classification of
 * MTU probes, parsing, result formatting, summary and chart rendering. No performance numbers
 * are asserted here (targets live in the benchmark and its summary only).
 */
import { throughputFigures } from './analysis.js';
import { parseBenchArgs } from './args.js';
import { throughputChart } from './charts.js';
import { firstReplyAt } from './join.js';
import { classify, sweepPayloads } from './mtu.js';
import { formatResultJson } from './output.js';
import { fixtureResult } from './result-fixture.js';
import { atLeast, below, median, pairedRatios, quantile, spread } from './stats.js';
import { renderSummary } from './summary.js';
import { niceCeil, xmlEscape } from './svg.js';
import { roundOrder } from './throughput.js';
import { THROUGHPUT_TESTS, VARIANTS, type BenchResult, type IperfSample, type Variant } from './types.js';
import { parseUapiGet, uapiSocketVia } from './uapi.js';
import type { PingResult } from '../harness/ping.js';

describe('stats', () => {
  it('interpolates quantiles between closest ranks', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([1, 2, 3, 4])).toBe(2.5);
    expect(quantile([10, 20, 30, 40, 50], 0.9)).toBe(46);
    expect(quantile([7], 0.99)).toBe(7);
    expect(Number.isNaN(median([]))).toBe(true);
  });

  it('summarises finite values only', () => {
    expect(spread([5, Number.NaN, 1, 3])).toEqual({ n: 3, median: 3, min: 1, max: 5, p10: 1.4, p90: 4.6 });
    expect(spread([])).toBeUndefined();
  });

  it('pairs ratios by round and skips unpaired or zero denominators', () => {
    const num = new Map([
      [0, 90],
      [1, 100],
      [2, 50],
    ]);
    const den = new Map([
      [0, 100],
      [1, 0],
    ]);
    expect(pairedRatios(num, den)).toEqual([0.9]);
  });

  it('says plainly when and by how much a target is missed', () => {
    expect(atLeast(spread([0.9, 0.91, 0.92]), 0.95).text).toBe('**missed** by 4.2 % (0.910 < 0.950)');
    expect(atLeast(spread([0.9, 0.91, 0.99]), 0.95).text).toBe(
      '**missed** by 4.2 % (0.910 < 0.950; the best round, 0.990, is above it)',
    );
    expect(atLeast(spread([0.94, 0.97, 0.99]), 0.95)).toEqual({
      met: true,
      text: 'met (0.970 ≥ 0.950; but the worst round, 0.940, is below it)',
    });
    expect(atLeast(undefined, 0.95).met).toBe(false);
    expect(below(2500, 2000, 'ms').text).toBe('**missed**: max 2500 ms ≥ 2000 ms (over by 500 ms, 25 %)');
    expect(below(300, 2000, 'ms').met).toBe(true);
  });
});

describe('parseBenchArgs', () => {
  it('runs everything by default, in the documented order', () => {
    expect(parseBenchArgs([])).toMatchObject({
      benchmarks: [
        'throughput',
        'join',
        'mtu-sweep',
        'ip-family',
        'scale',
        'steering-map',
        'rotation',
        'kernel-throughput',
      ],
      quick: false,
      rounds: 5,
      durationS: 3,
      joins: 5,
      rotationRounds: 5,
    });
    expect(parseBenchArgs(['mtu-sweep', 'throughput', '--quick']).benchmarks).toEqual(['throughput', 'mtu-sweep']);
    expect(parseBenchArgs(['--quick'])).toMatchObject({ rounds: 2, durationS: 2, joins: 3, rotationRounds: 2 });
    expect(parseBenchArgs(['rotation', '--quick', '--rotation-rounds', '3'])).toMatchObject({
      benchmarks: ['rotation'],
      rotationRounds: 3,
    });
    expect(parseBenchArgs(['--quick', '--rounds', '3']).rounds).toBe(3);
  });

  it('rejects unknown names and bad numbers with the offending argument', () => {
    expect(() => parseBenchArgs(['speed'])).toThrow('unknown benchmark "speed"');
    expect(() => parseBenchArgs(['--rounds', '0'])).toThrow('--rounds needs an integer from 1 to 100, got "0"');
    expect(() => parseBenchArgs(['--fast'])).toThrow('unknown option --fast');
  });
});

describe('round order', () => {
  it('rotates so every variant takes every position once per four rounds', () => {
    const positions = VARIANTS.map((v) => new Set([0, 1, 2, 3].map((r) => roundOrder(r, VARIANTS).indexOf(v))));
    for (const p of positions) expect(p.size).toBe(4);
  });
});

const ping = (p: Partial<PingResult>): PingResult => ({
  transmitted: 2,
  received: 0,
  lossPercent: 100,
  rttAvgMs: undefined,
  fragNeeded: false,
  messageTooLong: false,
  reportedMtu: undefined,
  errors: 0,
  ...p,
});

describe('MTU sweep', () => {
  it('probes the boundary and the full underlay size', () => {
    const s = sweepPayloads(1440, 1500);
    expect(s).toEqual(expect.arrayContaining([64, 1411, 1412, 1413, 1472]));
    expect(s).toEqual([...s].sort((a, b) => a - b));
  });

  it('classifies replies, refusals, wrong MTUs and silence', () => {
    expect(classify(ping({ received: 2 }), 1412, 1440)).toEqual({ outcome: 'reply', ok: true });
    expect(classify(ping({ received: 2 }), 1413, 1440)).toEqual({ outcome: 'reply', ok: false });
    expect(classify(ping({ fragNeeded: true, reportedMtu: 1440 }), 1413, 1440)).toEqual({
      outcome: 'frag-needed',
      ok: true,
    });
    expect(classify(ping({ messageTooLong: true, reportedMtu: 1440 }), 1472, 1440)).toEqual({
      outcome: 'frag-needed',
      ok: true,
    });
    expect(classify(ping({ fragNeeded: true, reportedMtu: 1420 }), 1413, 1440)).toEqual({
      outcome: 'wrong-mtu',
      ok: false,
    });
    expect(classify(ping({}), 1413, 1440)).toEqual({ outcome: 'black-hole', ok: false });
    expect(classify(ping({ received: 1 }), 64, 1440)).toEqual({ outcome: 'partial', ok: false });
  });
});

describe('join', () => {
  it('reads the receive time of the first reply from ping -D output', () => {
    const text =
      'PING 100.64.5.11 (100.64.5.11) 56(84) bytes of data.\n[1700000000.100000] From 100.64.1.1 icmp_seq=1 Destination Net Unreachable\n[1700000000.250500] 64 bytes from 100.64.5.11: icmp_seq=9 ttl=62 time=3.1 ms\n';
    expect(firstReplyAt(text)).toBe(1700000000251);
    expect(firstReplyAt('[1700000000.1] From 100.64.1.1 icmp_seq=1 Destination Net Unreachable\n')).toBeUndefined();
  });
});

describe('UAPI', () => {
  it('lists peers with base64 keys and allowed IPs, skipping the private key', () => {
    const hex = (b: number): string => Buffer.alloc(32, b).toString('hex');
    const text = `private_key=${hex(9)}\nlisten_port=51880\npublic_key=${hex(1)}\nendpoint=198.18.0.2:51880\nallowed_ip=100.64.2.0/24\nallowed_ip=198.18.0.2/32\npublic_key=${hex(2)}\nerrno=0\n\n`;
    const peers = parseUapiGet(text);
    expect(peers).toEqual([
      { publicKey: Buffer.alloc(32, 1).toString('base64'), allowedIPs: ['100.64.2.0/24', '198.18.0.2/32'] },
      { publicKey: Buffer.alloc(32, 2).toString('base64'), allowedIPs: [] },
    ]);
    expect(JSON.stringify(peers)).not.toContain(Buffer.alloc(32, 9).toString('base64'));
    expect(() => parseUapiGet('errno=2\n\n')).toThrow('errno=2');
  });

  it('reaches the socket through the holder process root', () => {
    expect(uapiSocketVia(42, 'sealwg0')).toMatch(/^\/proc\/42\/root\/.*wireguard\/sealwg0\.sock$/);
  });
});

function fakeResult(mbps: (v: Variant, round: number) => number): BenchResult {
  const iperf: IperfSample[] = [];
  for (let round = 0; round < 3; round++) {
    for (const test of THROUGHPUT_TESTS)
      for (const variant of VARIANTS)
        iperf.push({
          round,
          variant,
          test,
          at: 0,
          bitsPerSecond: mbps(variant, round) * 1e6,
          retransmits: 0,
          cpuLocal: undefined,
          cpuRemote: undefined,
          error: undefined,
        });
  }
  return fixtureResult({
    throughput: {
      rounds: 3,
      durationS: 3,
      latencyCount: 10,
      setups: [],
      iperf,
      latency: [{ round: 0, variant: 'sealnet', at: 0, size: 64, rttUs: [100, 120, 300], error: undefined }],
    },
  });
}

describe('reports', () => {
  const speeds: Record<Variant, number[]> = {
    plaintext: [9000, 9100, 8900],
    sealnet: [900, 1000, 950],
    'hand-pinned': [1000, 1000, 1000],
    'hand-debian': [400, 500, 450],
    'sealnet-route-only': [950, 900, 1000],
  };
  const r = fakeResult((v, round) => speeds[v][round] as number);

  it('takes ratios within a round, not of medians', () => {
    const f = throughputFigures(r.benchmarks.throughput!);
    expect(f.ratios['1x-fwd']['sealnet/hand-pinned']).toMatchObject({ median: 0.95, min: 0.9, max: 1 });
    expect(f.ratios['1x-fwd']['hand-pinned/hand-debian']?.median).toBeCloseTo(2.222, 3);
  });

  it('puts each target next to its measured value with a verdict', () => {
    const md = renderSummary([{ file: 'results/x.json', result: r }]);
    expect(md).toContain(
      '| throughput 1 stream n1→n2: sealnet ÷ hand-configured | ≥ 0.95 | 0.950 [0.900–1.000] | met (0.950 ≥ 0.950; but the worst round, 0.900, is below it) |',
    );
    expect(md).toContain('[results/x.json](results/x.json)');
    expect(md).not.toContain('undefined');
  });

  it('draws a well-formed chart with escaped text', () => {
    const svg = throughputChart(r) ?? '';
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(svg.match(/<rect [^>]*fill="#1f6feb"/g)).toHaveLength(5); // legend + 4 groups
    expect(xmlEscape('a<b & "c"')).toBe('a&lt;b &amp; &quot;c&quot;');
    expect([niceCeil(0.7), niceCeil(1584), niceCeil(10223), niceCeil(2000)]).toEqual([0.8, 2000, 15000, 2000]);
  });

  it('keeps number arrays on one line in the result file', () => {
    const text = formatResultJson(r);
    expect(text).toContain('"rttUs": [100,120,300]');
    expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(r)));
  });
});
