import { fingerprint, sodiumReady } from '../../keymgr/keys.js';
import { fixtureCluster, type FixtureCluster } from '../../test/fixtures.js';
import { ANNOTATIONS, STATUS_MAX_BYTES } from '../../common/constants.js';
import { wireguardOf, type DesiredWireGuardState } from '../ports/model.js';
import { plan } from '../plan/planner.js';
import type { ObservedPeer, SteeringEntry } from '../ports/index.js';
import {
  buildNodeStatus,
  decodeStatus,
  encodeStatus,
  IPSEC_UNOBSERVED,
  readiness,
  statusDigest,
  type NodeStatusInput,
  type NodeStatusReport,
} from './report.js';
import { planSteering } from '../plan/steering.js';

const NOW = new Date('2025-06-01T12:00:00.000Z');
const NOW_S = NOW.getTime() / 1000;

let fx: FixtureCluster;
beforeAll(async () => {
  await sodiumReady();
  fx = fixtureCluster();
});

function desiredFor(self = 'node-a', nodeToNode = false): DesiredWireGuardState {
  return plan({
    nodes: fx.nodes,
    self: {
      name: self,
      wireguardPublicKey: fx.keys[self as 'node-a'],
      localAddresses: fx.localAddresses[self as 'node-a'],
    },
    config: {
      mode: 'wireguard',
      listenPort: 51880,
      persistentKeepalive: 25,
      underlayMtu: 1500,
      underlayFamily: 4,
      ...(nodeToNode ? { nodeToNode: { exemptCidrs: [] } } : {}),
    },
    established: {},
  });
}

/** node-a with every peer programmed, steered and handshaken 10 s ago. */
function healthy(over: Partial<NodeStatusInput> = {}): NodeStatusInput {
  const desired = desiredFor();
  const peers: ObservedPeer[] = desired.tunnel.peers.map((p, i) => ({
    publicKey: p.publicKey,
    endpoint: p.endpoint,
    allowedIPs: p.allowedIPs,
    latestHandshake: NOW_S - 10,
    rxBytes: 1000 * (i + 1),
    txBytes: 2000 * (i + 1),
    persistentKeepalive: 25,
  }));
  const entries = planSteering({
    self: 'node-a',
    clusterCidrs: ['100.64.0.0/10'],
    nodes: fx.nodes,
    desiredPeers: desired.tunnel.peers,
    observedPeers: peers,
    target: { action: 'redirect', ifindex: 7 },
    nodeToNode: false,
  });
  return {
    self: 'node-a',
    now: NOW,
    agent: 'running',
    heartbeatSeconds: 300,
    mode: 'wireguard',
    algorithm: 'wireguard-chacha20poly1305',
    key: { publicKey: fx.keys['node-a'], epoch: 1, createdAt: new Date('2025-05-01T00:00:00.000Z') },
    steering: { enabled: true, failClosed: true, nodeToNode: false },
    persistentKeepalive: 25,
    nodes: fx.nodes,
    reconcile: { desired, errors: [], converged: true },
    observedPeers: peers,
    steeringEntries: entries,
    counters: [
      { hook: 'egress', reason: 'not_ready', verdict: 'drop', packets: 3n, bytes: 300n },
      { hook: 'ingress', reason: 'not_ready', verdict: 'drop', packets: 2n, bytes: 200n },
      { hook: 'egress', reason: 'redirected', verdict: 'redirect', packets: 99n, bytes: 9900n },
    ],
    observeErrors: [],
    ...over,
  };
}

const stateOf = (r: NodeStatusReport, node: string): string | undefined => r.peers.find((p) => p.node === node)?.state;

describe('buildNodeStatus', () => {
  it('reports every peer encrypted with fingerprints, handshakes, bytes and node-wide drops', () => {
    const r = buildNodeStatus(healthy());
    expect(r.peers.map((p) => [p.node, p.state])).toEqual([
      ['node-b', 'encrypted'],
      ['node-c', 'encrypted'],
      ['node-d', 'encrypted'],
      ['node-e', 'encrypted'],
    ]);
    expect(r.peers[0]).toEqual({
      node: 'node-b',
      state: 'encrypted',
      key: fingerprint(fx.keys['node-b']),
      handshake: NOW_S - 10,
      rx: 1000,
      tx: 2000,
    });
    expect(r.key).toEqual({
      fingerprint: fingerprint(fx.keys['node-a']),
      epoch: 1,
      createdAt: '2025-05-01T00:00:00.000Z',
    });
    expect(r.drops).toEqual({ not_ready: 5 });
    expect(r.ready).toBe(true);
    expect(r.at).toBe(NOW.toISOString());
  });

  it('never carries key material, only fingerprints', () => {
    const text = encodeStatus(buildNodeStatus(healthy()));
    for (const k of Object.values(fx.keys)) expect(text).not.toContain(k);
    expect(text).not.toMatch(/[A-Za-z0-9+/]{43}=/);
  });

  it('says dropping when a peer is not programmed and fail-closed guards it, misconfigured when nothing guards it', () => {
    const base = healthy();
    const without = base.observedPeers!.filter((p) => p.publicKey !== fx.keys['node-c']);
    const entries = planSteering({
      self: 'node-a',
      clusterCidrs: ['100.64.0.0/10'],
      nodes: fx.nodes,
      desiredPeers: wireguardOf(base.reconcile!.desired)!.peers,
      observedPeers: without,
      target: { action: 'redirect', ifindex: 7 },
      nodeToNode: false,
    });
    const guarded = buildNodeStatus({ ...base, observedPeers: without, steeringEntries: entries });
    expect(guarded.peers.find((p) => p.node === 'node-c')).toMatchObject({
      state: 'dropping',
      reason: expect.stringContaining('no tunnel peer with its key'),
    });
    expect(guarded.ready).toBe(false);
    const open = buildNodeStatus({
      ...base,
      observedPeers: without,
      steeringEntries: entries,
      steering: { enabled: true, failClosed: false, nodeToNode: false },
    });
    expect(open.peers.find((p) => p.node === 'node-c')).toMatchObject({
      state: 'misconfigured',
      reason: expect.stringContaining('plaintext'),
    });
  });

  it('says pending before the first handshake and when keepalive is on but the handshake is stale', () => {
    const base = healthy();
    const fresh = base.observedPeers!.map((p) =>
      p.publicKey === fx.keys['node-b']
        ? { ...p, latestHandshake: 0 }
        : p.publicKey === fx.keys['node-d']
          ? { ...p, latestHandshake: NOW_S - 1000 }
          : p,
    );
    const r = buildNodeStatus({ ...base, observedPeers: fresh });
    expect(r.peers.find((p) => p.node === 'node-b')).toMatchObject({
      state: 'pending',
      reason: 'programmed; no handshake has completed yet',
      handshake: 0,
    });
    expect(r.peers.find((p) => p.node === 'node-d')).toMatchObject({
      state: 'pending',
      reason: expect.stringContaining('no handshake for 1000 s'),
    });
    // Programmed counts as ready: a handshake needs traffic, readiness must not wait for it.
    expect(r.ready).toBe(true);
    // Without keepalive an old handshake is an idle pair, not a problem.
    expect(stateOf(buildNodeStatus({ ...base, observedPeers: fresh, persistentKeepalive: 0 }), 'node-d')).toBe(
      'encrypted',
    );
  });

  it('says misconfigured for a node the planner skipped, and dropping for one without a key', () => {
    const base = healthy();
    const nodes = [
      ...fx.nodes,
      { name: 'node-f', annotations: {}, podCIDRs: ['100.64.6.0/24'], internalIPs: ['198.18.0.6'] },
      {
        name: 'node-g',
        annotations: { ...fx.nodes[1]!.annotations, [ANNOTATIONS.mode]: 'ipsec' },
        podCIDRs: ['100.64.7.0/24'],
        internalIPs: ['198.18.0.7'],
      },
    ];
    const desired = plan({
      nodes,
      self: { name: 'node-a', wireguardPublicKey: fx.keys['node-a'], localAddresses: fx.localAddresses['node-a'] },
      config: { mode: 'wireguard', listenPort: 51880, persistentKeepalive: 25, underlayMtu: 1500, underlayFamily: 4 },
      established: {},
    });
    const r = buildNodeStatus({ ...base, nodes, reconcile: { desired, errors: [], converged: true } });
    expect(r.peers.find((p) => p.node === 'node-f')).toMatchObject({
      state: 'dropping',
      reason: expect.stringContaining('publishes no key'),
    });
    expect(stateOf(r, 'node-g')).toBe('misconfigured');
  });

  it('with node-to-node encryption: every peer encrypted when its pod CIDRs are steered (its node address rides the same peer)', () => {
    const desired = desiredFor('node-a', true);
    const base = healthy();
    const peers = base.observedPeers!.map((o, i) => ({ ...o, allowedIPs: desired.tunnel.peers[i]!.allowedIPs }));
    // The peers carry the node addresses too: the planner put them there.
    expect(peers.every((p) => p.allowedIPs.some((a) => a.endsWith('/32')))).toBe(true);
    const entries = planSteering({
      self: 'node-a',
      clusterCidrs: ['100.64.0.0/10'],
      nodes: fx.nodes,
      desiredPeers: desired.tunnel.peers,
      observedPeers: peers,
      target: { action: 'redirect', ifindex: 7 },
      nodeToNode: true,
    });
    const r = buildNodeStatus({
      ...base,
      reconcile: { desired, errors: [], converged: true },
      observedPeers: peers,
      steeringEntries: entries,
      steering: { enabled: true, failClosed: true, nodeToNode: true },
    });
    expect(r.peers.map((p) => [p.node, p.state, p.reason])).toEqual(
      ['node-b', 'node-c', 'node-d', 'node-e'].map((n) => [n, 'encrypted', undefined]),
    );
    // …and a pod CIDR the map does not steer is still caught.
    const off = entries.map((e): SteeringEntry =>
      e.kind === 'pod' && e.peerId !== 0 ? { ...e, state: 'not-ready' } : e,
    );
    const r2 = buildNodeStatus({
      ...base,
      reconcile: { desired, errors: [], converged: true },
      observedPeers: peers,
      steeringEntries: off,
      steering: { enabled: true, failClosed: true, nodeToNode: true },
    });
    expect(r2.peers.every((p) => p.state === 'dropping')).toBe(true);
  });

  it('says dropping when the steering map does not send a programmed peer into the tunnel', () => {
    const base = healthy();
    const entries = base.steeringEntries!.map((e): SteeringEntry =>
      e.cidr === '100.64.2.0/24' ? { ...e, state: 'not-ready', ifindex: 0 } : e,
    );
    expect(buildNodeStatus({ ...base, steeringEntries: entries }).peers.find((p) => p.node === 'node-b')).toMatchObject(
      { state: 'dropping', reason: expect.stringContaining('steering map') },
    );
  });

  it('is not ready and says why before the first reconcile and when a step failed', () => {
    expect(readiness(healthy({ reconcile: undefined }))).toEqual({ ready: false, reasons: ['no reconcile pass yet'] });
    const r = readiness(
      healthy({ reconcile: { desired: desiredFor(), errors: [{ step: 'routes' }], converged: false } }),
    );
    expect(r).toEqual({ ready: false, reasons: ['last reconcile failed at: routes'] });
    const noKernel = readiness(healthy({ observedPeers: undefined, observeErrors: ['wg show: boom'] }));
    expect(noKernel.ready).toBe(false);
    expect(noKernel.reasons[0]).toContain('cannot read the tunnel: wg show: boom');
  });

  it('says ready exactly when readiness() does (the report judges the peer states it computed once)', () => {
    const unsteered = healthy().steeringEntries?.filter((e) => !(e.kind === 'pod' && e.cidr.startsWith('100.64.2.')));
    const cases: [string, NodeStatusInput, boolean][] = [
      ['healthy', healthy(), true],
      [
        'no handshake yet',
        healthy({ observedPeers: healthy().observedPeers?.map((p) => ({ ...p, latestHandshake: 0 })) }),
        true,
      ],
      ['a peer not programmed', healthy({ observedPeers: healthy().observedPeers?.slice(1) }), false],
      ['tunnel unreadable', healthy({ observedPeers: undefined, observeErrors: ['wg show: boom'] }), false],
      ['a peer not steered', healthy({ steeringEntries: unsteered }), false],
      ['a planned peer left the node store', healthy({ nodes: fx.nodes.filter((n) => n.name !== 'node-d') }), false],
      ['no pass yet', healthy({ reconcile: undefined }), false],
    ];
    for (const [what, input, ready] of cases) {
      const expected = readiness(input);
      expect({ what, ready: buildNodeStatus(input).ready }).toEqual({ what, ready: expected.ready });
      expect({ what, ready: expected.ready }).toEqual({ what, ready });
    }
    expect(readiness(healthy({ nodes: fx.nodes.filter((n) => n.name !== 'node-d') })).reasons).toEqual([
      'peer node-d: left the node store',
    ]);
  });

  it('never calls a mode ipsec peer encrypted while its SAs are not observed, and keeps readiness on the reconcile result', () => {
    const r = buildNodeStatus(
      healthy({
        mode: 'ipsec',
        algorithm: 'ipsec-esp-aes-gcm-256',
        observedPeers: undefined,
        steeringEntries: undefined,
      }),
    );
    expect(r.peers.every((p) => p.state === 'pending' && p.reason === IPSEC_UNOBSERVED)).toBe(true);
    expect(r.ready).toBe(true);
    expect(
      readiness(
        healthy({
          mode: 'ipsec',
          observedPeers: undefined,
          reconcile: { desired: desiredFor(), errors: [{ step: 'ipsec' }], converged: false },
        }),
      ).ready,
    ).toBe(false);
  });

  it('changes its digest on a state change but not when only counters and times move', () => {
    const a = buildNodeStatus(healthy());
    const b = buildNodeStatus(
      healthy({
        now: new Date(NOW.getTime() + 5000),
        observedPeers: healthy().observedPeers!.map((p) => ({
          ...p,
          rxBytes: p.rxBytes + 7,
          latestHandshake: p.latestHandshake + 2,
        })),
      }),
    );
    expect(statusDigest(b)).toBe(statusDigest(a));
    const c = buildNodeStatus(healthy({ steering: { enabled: true, failClosed: false, nodeToNode: false } }));
    expect(statusDigest(c)).not.toBe(statusDigest(a));
  });
});

describe('encodeStatus / decodeStatus', () => {
  it('round-trips a report exactly', () => {
    const r = buildNodeStatus(healthy());
    const d = decodeStatus(encodeStatus(r));
    expect(d).toEqual({ ok: true, report: r });
  });

  it("round-trips a pair's post-quantum protection and refuses a hostile one", () => {
    const base = buildNodeStatus(healthy());
    const pq = {
      kem: 'ML-KEM-768',
      protection: 'hybrid' as const,
      phase: 'confirmed' as const,
      role: 'initiator' as const,
      secretAgeSeconds: 42,
      lastRenewal: '2026-12-07T01:00:00.000Z',
    };
    const r = { ...base, peers: base.peers.map((p) => ({ ...p, pq })) };
    expect(decodeStatus(encodeStatus(r))).toEqual({ ok: true, report: r });
    const bad = encodeStatus({
      ...base,
      peers: base.peers.map((p) => ({ ...p, pq: { ...pq, protection: 'quantum' } })),
    } as never);
    expect(decodeStatus(bad)).toMatchObject({
      ok: false,
      error: expect.stringMatching(/pq\.protection must be one of hybrid, classical, none/),
    });
  });

  it('stays within the size bound: compact first, then omits peers (not-encrypted ones kept), and says so', () => {
    const names = Array.from({ length: 2000 }, (_, i) => `node-${String(i).padStart(5, '0')}-with-a-longer-name`);
    const big: NodeStatusReport = {
      ...buildNodeStatus(healthy()),
      peers: names.map((n, i) => ({
        node: n,
        state: i === 1500 ? ('dropping' as const) : ('encrypted' as const),
        ...(i === 1500 ? { reason: 'x' } : {}),
        key: '0123456789abcdef',
        handshake: NOW_S,
        rx: 123456789,
        tx: 987654321,
      })),
    };
    const text = encodeStatus(big);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(STATUS_MAX_BYTES);
    const d = decodeStatus(text);
    if (!d.ok) throw new Error(d.error);
    expect(d.report.detail).toBe('compact');
    expect(d.report.omitted).toBeGreaterThan(0);
    expect(d.report.peers.length + d.report.omitted).toBe(2000);
    expect(d.report.peers.some((p) => p.state === 'dropping')).toBe(true);
    expect(d.report.peers.every((p) => p.state !== 'encrypted' || p.rx === undefined)).toBe(true);
    // A medium report only loses its counters.
    const medium = encodeStatus({ ...big, peers: big.peers.slice(0, 550) });
    const dm = decodeStatus(medium);
    expect(dm.ok && dm.report.detail === 'compact' && dm.report.omitted === 0).toBe(true);
  });

  it.each([
    ['not JSON', '{"v":1', 'is not valid JSON'],
    ['another version', '{"v":2}', 'this build understands only 1'],
    ['an unknown field', (r: Record<string, unknown>) => ({ ...r, extra: 1 }), 'status.extra is not a known field'],
    [
      'a key instead of a fingerprint',
      (r: Record<string, unknown>) => ({
        ...r,
        peers: [{ node: 'node-b', state: 'encrypted', key: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' }],
      }),
      'peers[0].key must be a 16-hex-digit fingerprint',
    ],
    [
      'an unknown state',
      (r: Record<string, unknown>) => ({ ...r, peers: [{ node: 'node-b', state: 'fine' }] }),
      'peers[0].state must be one of',
    ],
    [
      'negative bytes',
      (r: Record<string, unknown>) => ({ ...r, peers: [{ node: 'node-b', state: 'encrypted', rx: -1 }] }),
      'peers[0].rx must be a non-negative integer',
    ],
    [
      'unsorted peers',
      (r: Record<string, unknown>) => ({
        ...r,
        peers: [
          { node: 'node-c', state: 'encrypted' },
          { node: 'node-b', state: 'encrypted' },
        ],
      }),
      'sorted',
    ],
    ['a bad time', (r: Record<string, unknown>) => ({ ...r, at: 'yesterday' }), 'at must be an RFC 3339 UTC time'],
  ] as [string, string | ((r: Record<string, unknown>) => unknown), string][])('rejects %s', (_l, input, msg) => {
    const text =
      typeof input === 'string'
        ? input
        : JSON.stringify(input(JSON.parse(encodeStatus(buildNodeStatus(healthy()))) as Record<string, unknown>));
    const d = decodeStatus(text);
    expect(d.ok).toBe(false);
    if (!d.ok) expect(d.error).toContain(msg);
  });
});
