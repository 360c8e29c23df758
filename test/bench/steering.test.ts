/**
 * Unit tests of issue 3's benchmark reporting: steering vs route-only figures and section, the
 * steering-map figures and section, the data-path check of the two sealnet variants, and the
 * reading of the fixture's output. No timing is asserted.
 */
import { parseBenchMapsOutput } from './steering.js';
import {
  steeringMapErrors,
  steeringMapFigures,
  steeringMapSection,
  steeringVsRouteFigures,
  steeringVsRouteSection,
  type SteeringMapResult,
} from './steering-report.js';
import { checkSteering } from './throughput.js';
import {
  THROUGHPUT_TESTS,
  type IperfSample,
  type LatencySample,
  type ThroughputResult,
  type Variant,
  type VariantSetup,
} from './types.js';

const setup = (variant: Variant, o: Partial<VariantSetup> = {}): VariantSetup => ({
  variant,
  prefix: 'bx',
  wireguardGoExe: {},
  tunnelLink: undefined,
  routeToPeerPods: '100.64.2.10 from 100.64.1.10 dev sealwg0 table 5188 \n    cache iif cni0',
  rules: '',
  bpfPrograms: variant === 'sealnet' ? ['eth0 egress: steer.o:[sealnet_egress]'] : [],
  setupMs: 1,
  eth0Egress:
    variant === 'sealnet'
      ? { n1: 'filter protocol all pref 1 bpf chain 0\n', n2: 'filter protocol all pref 1 bpf chain 0\n' }
      : { n1: '', n2: '' },
  ...o,
});

function throughput(withRouteOnly: boolean): ThroughputResult {
  const mbps: Partial<Record<Variant, number[]>> = {
    sealnet: [900, 1000, 1100],
    'sealnet-route-only': [1000, 1000, 1000],
  };
  const iperf: IperfSample[] = [];
  const latency: LatencySample[] = [];
  for (const [variant, per] of Object.entries(mbps) as [Variant, number[]][]) {
    if (variant === 'sealnet-route-only' && !withRouteOnly) continue;
    per.forEach((m, round) => {
      for (const test of THROUGHPUT_TESTS)
        iperf.push({
          round,
          variant,
          test,
          at: 0,
          bitsPerSecond: m * 1e6,
          retransmits: 0,
          cpuLocal: undefined,
          cpuRemote: undefined,
          error: undefined,
        });
      const base = variant === 'sealnet' ? 110 : 100;
      latency.push({ round, variant, at: 0, size: 64, rttUs: [base, base, base, base * 3], error: undefined });
    });
  }
  return {
    rounds: 3,
    durationS: 2,
    latencyCount: 4,
    setups: [setup('sealnet'), setup('sealnet-route-only')],
    iperf,
    latency,
  };
}

describe('BPF steering vs route-only', () => {
  it('pairs sealnet and route-only per round, throughput and latency', () => {
    const rows = steeringVsRouteFigures(throughput(true)) ?? [];
    expect(rows.map((r) => r.label)).toEqual([
      '1 stream n1→n2 (Mbit/s)',
      '1 stream n2→n1 (Mbit/s)',
      '4 streams n1→n2 (Mbit/s)',
      '4 streams n2→n1 (Mbit/s)',
      'throughput, all four shapes pooled',
      'latency p50 (µs)',
      'latency p99 (µs)',
    ]);
    expect(rows[0]?.ratio).toMatchObject({ n: 3, median: 1, min: 0.9, max: 1.1 });
    expect(rows[4]?.ratio).toMatchObject({ n: 12, median: 1 });
    expect(rows[5]?.ratio?.median).toBeCloseTo(1.1, 6);
  });

  it('renders a section with the data path of both variants, and none for an older run', () => {
    const md = steeringVsRouteSection(throughput(true)).join('\n');
    expect(md).toContain('## BPF steering vs route-only');
    expect(md).toContain('| 1 stream n1→n2 (Mbit/s) | 1000 [900–1100] | 1000 [1000–1000] | 1.000 [0.900–1.100] |');
    expect(md).toContain(
      'Route-only: route `100.64.2.10 from 100.64.1.10 dev sealwg0 table 5188`; no BPF program on eth0 or cni0; `tc filter show dev eth0 egress`: n1 empty, n2 empty.',
    );
    expect(md).toContain('| throughput, all four shapes pooled | — | — | 1.000 [0.900–1.100] |');
    expect(md).not.toContain('undefined');
    expect(steeringVsRouteSection(throughput(false))).toEqual([]);
  });

  it('refuses a route-only cluster with a classifier, and a steering cluster without one', () => {
    expect(() => checkSteering([setup('sealnet'), setup('sealnet-route-only')])).not.toThrow();
    expect(() =>
      checkSteering([
        setup('sealnet-route-only', { eth0Egress: { n1: '', n2: 'filter protocol all pref 1 bpf chain 0' } }),
      ]),
    ).toThrow('sealnet-route-only/n2: tc filter show dev eth0 egress is not empty');
    expect(() => checkSteering([setup('sealnet', { eth0Egress: { n1: '' } })])).toThrow(
      'sealnet/n1: tc filter show dev eth0 egress is empty',
    );
    expect(() =>
      checkSteering([setup('sealnet-route-only', { routeToPeerPods: '100.64.2.10 via 198.18.0.2 dev eth0' })]),
    ).toThrow('not routed into sealwg0');
  });
});

const samples = {
  loadRaw: [2, 3, 4],
  loadSync: [3, 3, 3],
  dump: [1, 1, 1],
  changeRaw: [0.05, 0.1, 0.1],
  changeSync: [1, 1, 1],
  bpLoad: [6, 6, 6],
  bpChange: [2, 2, 3],
};

describe('steering-map', () => {
  const result: SteeringMapResult = {
    bpftool: 'bpftool v7.1.0',
    netns: 'bx-steermap',
    pinDir: '/sys/fs/bpf/sealbenchx',
    runs: [
      { prefixes: 5000, rounds: 3, warmup: 1, samples, sameContent: true, error: undefined },
      {
        prefixes: 1000,
        rounds: 3,
        warmup: 1,
        samples: undefined,
        sameContent: false,
        error: 'mount: permission denied',
      },
    ],
  };

  it('takes bpftool ÷ addon per round', () => {
    const [f] = steeringMapFigures(result);
    expect(f?.load.ratio).toMatchObject({ median: 2, min: 1.5, max: 3 });
    expect(f?.change.ratio).toMatchObject({ median: 30, min: 20, max: 40 });
    expect(steeringMapErrors(result)).toEqual(['1000 prefixes: mount: permission denied']);
  });

  it('renders both operations per size and the failed size', () => {
    const md = steeringMapSection(result).join('\n');
    expect(md).toContain('| 5,000 | load all | 3.00 [2.00–4.00] | 6.00 [6.00–6.00] | 2.0 [1.5–3.0] |');
    expect(md).toContain('| 5,000 | change one | 0.100 [0.050–0.100] | 2.00 [2.00–3.00] | 30.0 [20.0–40.0] |');
    expect(md).toContain('| 1,000 | — | failed: mount: permission denied | | |');
    expect(md).toContain('| 5,000 | 1.00 [1.00–1.00] | 3.00 [3.00–3.00] | 1.00 [1.00–1.00] |');
    expect(md).not.toContain('undefined');
  });

  it('reads the last line the fixture prints, and refuses one without samples', () => {
    const out = `noise\n${JSON.stringify({ n: 5000, samples, sameContent: true })}\n`;
    expect(parseBenchMapsOutput(out, { prefixes: 5000, rounds: 3, warmup: 1 })).toEqual({
      prefixes: 5000,
      rounds: 3,
      warmup: 1,
      samples,
      sameContent: true,
      error: undefined,
    });
    expect(() => parseBenchMapsOutput('{"n":5000}', { prefixes: 5000, rounds: 3, warmup: 1 })).toThrow('no samples');
  });
});
