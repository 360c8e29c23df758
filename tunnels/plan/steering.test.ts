import { sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import { fixtureKey } from '../../test/fixtures.js';
import type { DesiredPeer } from '../ports/model.js';
import type { ObservedPeer, SteeringEntry } from '../ports/index.js';
import { peerIdOf, planSteering, steeringLinks, type SteeringPlanInput } from './steering.js';

let keyB: PublicKey;
let keyC: PublicKey;

beforeAll(async () => {
  await sodiumReady();
  keyB = fixtureKey(2);
  keyC = fixtureKey(3);
});

const nodes = [
  { name: 'a', podCIDRs: ['100.64.1.0/24'], internalIPs: ['198.18.0.1'] },
  { name: 'b', podCIDRs: ['100.64.2.0/24', 'fd00:2::/64'], internalIPs: ['198.18.0.2'] },
  { name: 'c', podCIDRs: ['100.64.3.0/24'], internalIPs: ['198.18.0.3'] },
  // d has not published a key yet: the store lists it, the planner skips it.
  { name: 'd', podCIDRs: ['100.64.4.0/24'], internalIPs: ['198.18.0.4'] },
];

function peer(node: string, publicKey: PublicKey, allowedIPs: string[]): DesiredPeer {
  return { node, publicKey, endpoint: '198.18.0.9:51880', allowedIPs, persistentKeepalive: 25 };
}
function observed(publicKey: PublicKey, allowedIPs: string[]): ObservedPeer {
  return {
    publicKey,
    endpoint: undefined,
    allowedIPs,
    latestHandshake: 0,
    rxBytes: 0,
    txBytes: 0,
    persistentKeepalive: 25,
  };
}

function input(over: Partial<SteeringPlanInput> = {}): SteeringPlanInput {
  return {
    self: 'a',
    clusterCidrs: ['100.64.0.0/10'],
    nodes,
    desiredPeers: [peer('b', keyB, ['100.64.2.0/24', 'fd00:2::/64']), peer('c', keyC, ['100.64.3.0/24'])],
    observedPeers: [observed(keyB, ['100.64.2.0/24', 'fd00:2::/64']), observed(keyC, ['100.64.3.0/24'])],
    target: { action: 'redirect', ifindex: 9 },
    nodeToNode: false,
    ...over,
  };
}

const pod = (cidr: string, node: string, state: SteeringEntry['state'], ifindex = 0): SteeringEntry => ({
  cidr,
  state,
  action: 'redirect',
  kind: 'pod',
  ifindex,
  mark: 0,
  peerId: peerIdOf(node),
});
const catchAll: SteeringEntry = {
  cidr: '100.64.0.0/10',
  state: 'no-peer',
  action: 'redirect',
  kind: 'pod',
  ifindex: 0,
  mark: 0,
  peerId: 0,
};

describe('planSteering', () => {
  it('makes programmed peers ready, a node without a key not ready, and the cluster range no-peer', () => {
    expect(planSteering(input())).toEqual([
      catchAll,
      pod('100.64.2.0/24', 'b', 'ready', 9),
      pod('100.64.3.0/24', 'c', 'ready', 9),
      pod('100.64.4.0/24', 'd', 'not-ready'),
      pod('fd00:2::/64', 'b', 'ready', 9),
    ]);
  });

  it('keeps a desired peer not ready until the tunnel reads it back', () => {
    const out = planSteering(input({ observedPeers: [observed(keyB, ['100.64.2.0/24'])] }));
    expect(out.find((e) => e.cidr === '100.64.3.0/24')?.state).toBe('not-ready');
    // The IPv6 CIDR is not among b's allowed IPs in the kernel yet.
    expect(out.find((e) => e.cidr === 'fd00:2::/64')?.state).toBe('not-ready');
    expect(out.find((e) => e.cidr === '100.64.2.0/24')?.state).toBe('ready');
  });

  it('treats a peer still holding the old key as not ready (key change)', () => {
    const out = planSteering(
      input({ observedPeers: [observed(keyC, ['100.64.2.0/24'])], desiredPeers: [peer('b', keyB, ['100.64.2.0/24'])] }),
    );
    expect(out.find((e) => e.cidr === '100.64.2.0/24')?.state).toBe('not-ready');
  });

  it('makes nothing ready without a tunnel link', () => {
    expect(planSteering(input({ target: undefined })).filter((e) => e.state === 'ready')).toEqual([]);
  });

  it('never steers the own pod CIDR, nor a remote CIDR overlapping it', () => {
    const out = planSteering(
      input({ nodes: [...nodes, { name: 'e', podCIDRs: ['100.64.1.128/25'], internalIPs: [] }] }),
    );
    expect(out.map((e) => e.cidr)).not.toContain('100.64.1.0/24');
    expect(out.map((e) => e.cidr)).not.toContain('100.64.1.128/25');
  });

  it('adds node addresses with node-to-node encryption, ready only when allowed in the tunnel', () => {
    const out = planSteering(
      input({
        nodeToNode: true,
        desiredPeers: [peer('b', keyB, ['100.64.2.0/24', '198.18.0.2/32']), peer('c', keyC, ['100.64.3.0/24'])],
        observedPeers: [observed(keyB, ['100.64.2.0/24', '198.18.0.2/32']), observed(keyC, ['100.64.3.0/24'])],
      }),
    );
    expect(out.filter((e) => e.kind === 'node').map((e) => [e.cidr, e.state])).toEqual([
      ['198.18.0.2/32', 'ready'],
      ['198.18.0.3/32', 'not-ready'],
      ['198.18.0.4/32', 'not-ready'],
    ]);
  });

  it('adds no node address without node-to-node encryption', () => {
    const out = planSteering(
      input({
        desiredPeers: [peer('b', keyB, ['100.64.2.0/24', '198.18.0.2/32'])],
        observedPeers: [observed(keyB, ['100.64.2.0/24', '198.18.0.2/32'])],
      }),
    );
    expect(out.filter((e) => e.kind === 'node')).toEqual([]);
  });

  it('leaves exempt node addresses out (the API server stays reachable in plaintext)', () => {
    const out = planSteering(input({ nodeToNode: true, exemptCidrs: ['198.18.0.3/32', '10.96.0.0/12'] }));
    expect(out.filter((e) => e.kind === 'node').map((e) => e.cidr)).toEqual(['198.18.0.2/32', '198.18.0.4/32']);
    // Pod CIDRs are never exempted by this rule: only node addresses are filtered.
    expect(
      planSteering(input({ nodeToNode: true, exemptCidrs: ['100.64.3.0/24'] })).find((e) => e.cidr === '100.64.3.0/24')
        ?.state,
    ).toBe('ready');
  });

  it('steers every address of a node, both families, and never its own', () => {
    const many = [
      ...nodes.filter((n) => n.name !== 'b'),
      { name: 'b', podCIDRs: ['100.64.2.0/24'], internalIPs: ['198.18.0.2', 'fd00:198:18::2'] },
    ];
    const out = planSteering(
      input({
        nodes: many,
        nodeToNode: true,
        desiredPeers: [peer('b', keyB, ['100.64.2.0/24', '198.18.0.2/32', 'fd00:198:18::2/128'])],
        observedPeers: [observed(keyB, ['100.64.2.0/24', '198.18.0.2/32', 'fd00:198:18::2/128'])],
      }),
    );
    expect(out.filter((e) => e.kind === 'node').map((e) => [e.cidr, e.state, e.ifindex])).toEqual([
      ['198.18.0.2/32', 'ready', 9],
      ['198.18.0.3/32', 'not-ready', 0],
      ['198.18.0.4/32', 'not-ready', 0],
      ['fd00:198:18::2/128', 'ready', 9],
    ]);
    expect(out.map((e) => e.cidr)).not.toContain('198.18.0.1/32');
  });

  it('keeps a node address with the node the planner gave it when another node claims it (a claim must not turn it into a drop: found by test/e2e/hostile.e2e.test.ts)', () => {
    const out = planSteering(
      input({
        nodes: [...nodes, { name: 'e', podCIDRs: [], internalIPs: ['198.18.0.2'] }],
        nodeToNode: true,
        desiredPeers: [peer('b', keyB, ['100.64.2.0/24', '198.18.0.2/32'])],
        observedPeers: [observed(keyB, ['100.64.2.0/24', '198.18.0.2/32'])],
      }),
    );
    expect(out.filter((e) => e.cidr === '198.18.0.2/32').map((e) => [e.state, e.peerId])).toEqual([
      ['ready', peerIdOf('b')],
    ]);
  });

  it('makes a node address two nodes claim and nobody holds not ready', () => {
    const out = planSteering(
      input({
        nodes: [...nodes, { name: 'e', podCIDRs: [], internalIPs: ['198.18.0.2'] }],
        nodeToNode: true,
        desiredPeers: [peer('b', keyB, ['100.64.2.0/24'])],
        observedPeers: [observed(keyB, ['100.64.2.0/24'])],
      }),
    );
    expect(out.find((e) => e.cidr === '198.18.0.2/32')?.state).toBe('not-ready');
  });

  it("gives no entry to a node's addresses that are not node addresses (metadata, multicast, a public resolver, this node's own)", () => {
    const out = planSteering(
      input({
        nodes: [
          ...nodes,
          {
            name: 'e',
            podCIDRs: [],
            internalIPs: ['169.254.169.254', '224.0.0.251', '8.8.8.8', '198.18.0.1', '198.18.0.5'],
          },
        ],
        nodeToNode: true,
        desiredPeers: [],
        observedPeers: [],
      }),
    );
    const cidrs = out.filter((e) => e.kind === 'node').map((e) => e.cidr);
    for (const c of ['169.254.169.254/32', '224.0.0.251/32', '8.8.8.8/32', '198.18.0.1/32'])
      expect(cidrs).not.toContain(c);
    expect(cidrs).toContain('198.18.0.5/32');
  });

  it('marks instead of redirecting in XFRM mode', () => {
    const out = planSteering(input({ target: { action: 'mark', markFor: (n) => (n === 'b' ? 0x200 : 0x300) } }));
    expect(out.find((e) => e.cidr === '100.64.2.0/24')).toEqual({
      ...pod('100.64.2.0/24', 'b', 'ready'),
      action: 'mark',
      mark: 0x200,
    });
    expect(out.find((e) => e.cidr === '100.64.4.0/24')).toEqual({
      ...pod('100.64.4.0/24', 'd', 'not-ready'),
      action: 'mark',
    });
  });

  it('makes a prefix claimed by two nodes not ready', () => {
    const out = planSteering(input({ nodes: [...nodes, { name: 'f', podCIDRs: ['100.64.3.0/24'], internalIPs: [] }] }));
    expect(out.find((e) => e.cidr === '100.64.3.0/24')?.state).toBe('not-ready');
  });

  it('is deterministic in node order', () => {
    expect(planSteering(input({ nodes: [...nodes].reverse() }))).toEqual(planSteering(input()));
  });

  it('gives stable non-zero peer ids', () => {
    expect(peerIdOf('b')).toBe(peerIdOf('b'));
    expect(peerIdOf('b')).not.toBe(peerIdOf('c'));
    expect(peerIdOf('')).not.toBe(0);
  });
});

describe('steeringLinks', () => {
  it("puts a node address on the link of its node's pod CIDRs; routes keep theirs", () => {
    const routes = [
      { dst: '100.64.2.0/24', dev: 'sealwg1' },
      { dst: '100.64.3.0/24', dev: 'sealwg0' },
    ];
    const m = steeringLinks(routes, nodes);
    expect(Object.fromEntries(m)).toEqual({
      '100.64.2.0/24': 'sealwg1',
      '100.64.3.0/24': 'sealwg0',
      '198.18.0.2/32': 'sealwg1',
      '198.18.0.3/32': 'sealwg0',
    });
  });
});
