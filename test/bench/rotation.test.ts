/**
 * Unit tests of issue 5's benchmark reporting: the rotation figures (medians per scope, loss
 * per direction and per rotation), the Targets rows and the "Key rotation" section, from a
 * fixture result. No timing is asserted.
 */
import {
  countersSummary,
  describeCounters,
  rotationErrors,
  rotationFigures,
  rotationSection,
  type RotationResult,
  type RotationSample,
  type RotationScope,
} from './rotation-report.js';
import { fixtureResult } from './result-fixture.js';
import { countersOf } from './rotation.js';
import { DropTracker, type NsCounters } from '../harness/netcounters.js';
import type { UdpTrafficResult } from '../harness/rotation.js';
import { renderSummary } from './summary.js';

const udp = (lostFwd: number, lostRev: number, dup = 0): RotationSample['udp'] => [
  { from: 'n1', to: 'n2', sent: 5000, lost: lostFwd, duplicates: dup, reordered: 0, longestGap: lostFwd },
  { from: 'n2', to: 'n1', sent: 5000, lost: lostRev, duplicates: 0, reordered: 0, longestGap: lostRev },
];

const sample = (round: number, scope: RotationScope, o: Partial<RotationSample> = {}): RotationSample => ({
  round,
  scope,
  targets: scope === 'one' ? ['n1'] : ['n1', 'n2', 'n3', 'n4', 'n5'],
  at: 0,
  load1: 2.5,
  switchedMs: scope === 'one' ? 2000 + 100 * round : 3000 + 1000 * round,
  doneMs: scope === 'one' ? 8000 : 9000 + 1000 * round,
  sealctlCode: 0,
  udp: udp(0, 0),
  tcpStreams: 10,
  tcpBreaks: [],
  leftovers: [],
  error: undefined,
  ...o,
});

function result(samples: RotationSample[]): RotationResult {
  return {
    nodes: 5,
    rounds: 3,
    graceSeconds: 5,
    peerTimeoutSeconds: 4,
    udpPps: 500,
    tcpBytesPerSecond: 64_000,
    samples,
  };
}

const clean = result([
  sample(0, 'one'),
  sample(0, 'all'),
  sample(1, 'one'),
  sample(1, 'all'),
  sample(2, 'one'),
  sample(2, 'all'),
]);

describe('rotation figures', () => {
  it('takes medians per scope and sums the loss per direction', () => {
    const lossy = result([
      sample(0, 'all', { udp: udp(3, 0, 1) }),
      sample(1, 'all', { udp: udp(0, 2) }),
      sample(2, 'all'),
    ]);
    const [all] = rotationFigures(lossy);
    expect(all).toMatchObject({
      scope: 'all',
      rotations: 3,
      failed: 0,
      switched: { median: 4000, min: 3000, max: 5000 },
      done: { median: 10_000 },
      tcpStreams: 30,
      tcpBreaks: 0,
      unclean: 0,
    });
    expect(all?.udp).toEqual([
      {
        direction: 'n1→n2',
        sent: 15_000,
        lost: 3,
        duplicates: 1,
        reordered: 0,
        lostPerRotation: expect.objectContaining({ median: 0, max: 3 }),
      },
      {
        direction: 'n2→n1',
        sent: 15_000,
        lost: 2,
        duplicates: 0,
        reordered: 0,
        lostPerRotation: expect.objectContaining({ median: 0, max: 2 }),
      },
    ]);
    expect(all?.lostPerRotation).toMatchObject({ median: 2, min: 0, max: 3 });
  });

  it('keeps a failed rotation out of the times, and reports it as an error', () => {
    const r = result([
      sample(0, 'all'),
      sample(1, 'all', {
        switchedMs: undefined,
        doneMs: undefined,
        sealctlCode: undefined,
        udp: [],
        error: 'timed out',
      }),
    ]);
    const [all] = rotationFigures(r);
    expect(all).toMatchObject({ rotations: 2, failed: 1, switched: { n: 1, median: 3000 }, lostPerRotation: { n: 1 } });
    expect(rotationErrors(r)).toEqual(['round 2, all 5 nodes: timed out']);
    expect(rotationErrors(clean)).toEqual([]);
  });
});

describe('rotation section', () => {
  it('puts the targets next to the measured medians with a verdict', () => {
    const targets: string[] = [];
    rotationSection(clean, targets);
    expect(targets).toEqual([
      '| rotation of all keys, 5 real nodes: request → every key switched (3 rounds) | < 10 s | median 4.00 [3.00–5.00] s; old keys gone 10.00 [9.00–11.00] s (grace 5 s) | met (median 4 s < 10 s) |',
      '| packets lost per rotation (UDP n1→n2 and n2→n1, 500/s each) | 0 | one node (n1): 0 lost of 30000 in 3 rotations; all 5 nodes: 0 lost of 30000 in 3 rotations | met |',
      '| TCP connections broken by a rotation (one stream per node pair) | 0 | 0 in 6 rotations | met |',
    ]);
  });

  it('says by how much a target is missed, and names slow rounds under a met median', () => {
    const slow = result([
      sample(0, 'all', { switchedMs: 12_500, udp: udp(4, 0), tcpBreaks: ['tcp-n1-n2-7301: client break ECONNRESET'] }),
      sample(1, 'all', { switchedMs: 11_000 }),
      sample(2, 'all', { switchedMs: 3000 }),
    ]);
    const targets: string[] = [];
    const body = rotationSection(slow, targets).join('\n');
    expect(targets[0]).toContain('| **missed** by 1 s (median 11 s ≥ 10 s) |');
    expect(targets[1]).toBe(
      '| packets lost per rotation (UDP n1→n2 and n2→n1, 500/s each) | 0 | all 5 nodes: 4 lost of 30000 in 3 rotations | **missed**: 4 datagrams lost, at most 4 in one rotation |',
    );
    expect(targets[2]).toBe(
      '| TCP connections broken by a rotation (one stream per node pair) | 0 | 1 in 3 rotations | **missed**: 1 |',
    );
    expect(body).toContain(
      '| 1 | all 5 nodes | 2.5 | 12500 | 9000 | 4/5000 (0) | 0/5000 (0) | tcp-n1-n2-7301: client break ECONNRESET | ok |',
    );
    const gapped = result([
      sample(0, 'all', { udp: [{ ...udp(4, 0)[0]!, gaps: [{ atMs: 2710, count: 4 }] }, udp(4, 0)[1]!] }),
    ]);
    expect(rotationSection(gapped, []).join('\n')).toContain('| ok; n1→n2 lost 4 from +2.71 s |');
    const once = result([sample(0, 'all', { switchedMs: 10_500 }), sample(1, 'all'), sample(2, 'all')]);
    const t2: string[] = [];
    rotationSection(once, t2);
    expect(t2[0]).toContain('| met (median 5 s < 10 s; but 1 of 3 rounds took 10 s or more) |');
  });

  it('renders the summary table and every rotation', () => {
    const body = rotationSection(
      result([...clean.samples.slice(0, 2), sample(1, 'one', { leftovers: ['n1: links sealwg0,sealwg1'] })]),
      [],
    ).join('\n');
    expect(body).toContain('## Key rotation');
    expect(body).toContain(
      '| rotation | rounds | switched (s) | old keys gone (s) | UDP n1→n2 lost/sent | UDP n2→n1 lost/sent | lost per rotation | duplicates | TCP breaks | nodes not clean after |',
    );
    expect(body).toContain(
      '| one node (n1) | 2 | 2.05 [2.00–2.10] | 8.00 [8.00–8.00] | 0/10000 | 0/10000 | 0 [0–0] | 0 | 0 of 20 | 1 |',
    );
    expect(body).toContain(
      '| all 5 nodes | 1 | 3.00 [3.00–3.00] | 9.00 [9.00–9.00] | 0/5000 | 0/5000 | 0 [0–0] | 0 | 0 of 10 | 0 |',
    );
    expect(body).toContain(
      '| 2 | one node (n1) | 2.5 | 2100 | 8000 | 0/5000 (0) | 0/5000 (0) | 10 unbroken | left behind: n1: links sealwg0,sealwg1 |',
    );
  });

  it('goes into SUMMARY.md with its Targets rows', () => {
    const r = fixtureResult({ rotation: clean }, ['rotation', '--quick']);
    const md = renderSummary([{ file: 'results/r.json', result: r }]);
    expect(md).toContain('## Key rotation');
    expect(md.indexOf('| rotation of all keys, 5 real nodes')).toBeLessThan(md.indexOf('## Key rotation'));
    expect(md).toContain('rotation:\n\n| | |');
    expect(md).not.toContain('undefined');
    expect(md).not.toContain('NaN');
  });

  it("puts each rotation's loss beside the drops counted on its path, one line per scope", () => {
    const counters = (lostFwd: number, n2Rcvbuf: number, podRcvbuf: number): RotationSample['counters'] => ({
      ns: {
        ...(n2Rcvbuf > 0 ? { n2: { udpInErrors: n2Rcvbuf, udpRcvbufErrors: n2Rcvbuf } } : {}),
        ...(podRcvbuf > 0 ? { n3p1: { udpInErrors: podRcvbuf, udpRcvbufErrors: podRcvbuf } } : {}),
        n1: { links: { sealwg1: { tx: 1 } } },
        ...(podRcvbuf > 0 ? { n4: { ip: { outNoRoutes: 1 } } } : {}),
      },
      backlogDrops: 2,
      unread: [],
      bpfDrops: { n1: { 'egress/not_ready': 4 } },
      bpfUnread: [],
      udp: [
        {
          from: 'n1',
          to: 'n2',
          lost: lostFwd,
          path: ['n1p1', 'n1', 'n2', 'n2p1'],
          pathDrops: n2Rcvbuf + 1,
          receiverPodRcvbuf: 0,
          pathBpfDrops: 4,
        },
        { from: 'n2', to: 'n1', lost: 0, path: ['n2p1', 'n2', 'n1', 'n1p1'], pathDrops: 1, receiverPodRcvbuf: 0 },
      ],
    });
    const r = result([
      // covered: 3 lost, n2's RcvbufErrors 2 + n1's sealwg1 tx drop 1
      sample(0, 'one', { udp: udp(3, 0), counters: counters(3, 2, 0) }),
      // not covered: 5 lost, 1 drop on the path; the pod of n3 is off the path
      sample(1, 'one', { udp: udp(5, 0), counters: counters(5, 0, 7) }),
      // no loss
      sample(2, 'one', { counters: counters(0, 0, 0) }),
      // written before counters existed
      sample(0, 'all'),
    ]);
    expect(countersSummary(r, 'one')).toBe(
      'one node (n1), 3 rotations: 8 datagrams lost; drop counters over the cluster: Udp InErrors pods +7 (RcvbufErrors +7), nodes +2 (RcvbufErrors +2), SndbufErrors +0, NoPorts +0, IPv4 drops +1, interface drops +3, host backlog drops +6, steering drops +12; 1 of 2 rotations with loss covered by the drops on their paths',
    );
    expect(countersSummary(r, 'all')).toBeUndefined();
    expect(describeCounters(r.samples[0]!.counters)).toBe(
      'counters: n2 Udp InErrors +2, n2 RcvbufErrors +2, n1 sealwg1 tx drops +1; steering drops: n1 egress/not_ready +4; host backlog drops +2; n1→n2 lost 3 vs path drops 3 (steering 4), n2→n1 lost 0 vs path drops 1 (steering ?)',
    );
    const body = rotationSection(r, []).join('\n');
    expect(body).toContain('\n- one node (n1), 3 rotations: 8 datagrams lost;');
    expect(body).not.toContain('- all 5 nodes');
  });

  it("charges a pod's receive errors to the stream it receives, not to the one it sends", () => {
    const zero: NsCounters = { udp: { inErrors: 0, rcvbufErrors: 0, sndbufErrors: 0, noPorts: 0 }, links: {} };
    const names = ['n1', 'n1p1', 'n2', 'n2p1'];
    let second = false;
    const t = new DropTracker(
      () => names.map((name, i) => ({ name, netns: `x-${name}`, pid: i + 1 })),
      (p) =>
        !second
          ? zero
          : p.name === 'n1p1'
            ? // the receiver of n2→n1 overflowed 150 times
              { ...zero, udp: { ...zero.udp, inErrors: 150, rcvbufErrors: 150 } }
            : p.name === 'n2'
              ? // a tunnel drop in the node namespace: either direction's
                { ...zero, links: { sealwg1: { rx: 0, tx: 2 } } }
              : zero,
      () => 0,
    );
    t.sample();
    second = true;
    t.sample();
    const stream = (from: string, to: string, lost: number): UdpTrafficResult =>
      ({ from, to, lost, name: `udp-${from}-${to}` }) as unknown as UdpTrafficResult;
    const c = countersOf(t, { inc: { n2: { 'egress/not_ready': 3 } }, unread: [] }, [
      stream('n1', 'n2', 0),
      stream('n2', 'n1', 165),
    ]);
    expect(c.udp).toEqual([
      {
        from: 'n1',
        to: 'n2',
        lost: 0,
        path: ['n1p1', 'n1', 'n2', 'n2p1'],
        pathDrops: 2,
        pathBpfDrops: 3,
        receiverPodRcvbuf: 0,
      },
      {
        from: 'n2',
        to: 'n1',
        lost: 165,
        path: ['n2p1', 'n2', 'n1', 'n1p1'],
        pathDrops: 152,
        pathBpfDrops: 3,
        receiverPodRcvbuf: 150,
      },
    ]);
    expect(c.ns).toEqual({ n1p1: { udpInErrors: 150, udpRcvbufErrors: 150 }, n2: { links: { sealwg1: { tx: 2 } } } });
  });
});
