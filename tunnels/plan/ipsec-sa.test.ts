/**
 * planIpsec from every node's point of view of one fixture cluster: each node's outbound SA to
 * a peer is exactly one of the inbound SAs the peer plans for it (same SPI, epochs and keys).
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { generateKeyPair, type KeyPair } from '../../keymgr/keys.js';
import type { DesiredIpsec } from '../ports/ipsec.js';
import { planIpsec, type IpsecPlanNode } from './ipsec-sa.js';

interface FixtureNode {
  name: string;
  address: string;
  podCIDRs: string[];
  currentEpoch: number;
  epochs: number[];
}

// b is mid-rotation (its next key, epoch 2, is published); c is on epoch 3; d is dual-stack;
// e has an IPv6 underlay; f has only an IPv6 pod CIDR.
const FIXTURE: FixtureNode[] = [
  { name: 'node-a', address: '198.18.0.1', podCIDRs: ['100.64.1.0/24'], currentEpoch: 1, epochs: [1] },
  { name: 'node-b', address: '198.18.0.2', podCIDRs: ['100.64.2.0/24'], currentEpoch: 1, epochs: [1, 2] },
  { name: 'node-c', address: '198.18.0.3', podCIDRs: ['100.64.3.0/24'], currentEpoch: 3, epochs: [3] },
  {
    name: 'node-d',
    address: '198.18.0.4',
    podCIDRs: ['fd00:64:4::/64', '100.64.4.0/24'],
    currentEpoch: 1,
    epochs: [1],
  },
  { name: 'node-e', address: '2001:db8::5', podCIDRs: ['100.64.5.0/24'], currentEpoch: 1, epochs: [1] },
  { name: 'node-f', address: '198.18.0.6', podCIDRs: ['fd00:64:6::/64'], currentEpoch: 1, epochs: [1] },
];

const keys = new Map<string, KeyPair>();
const keyOf = (node: string, epoch: number): KeyPair => keys.get(`${node}/${epoch}`)!;

beforeAll(async () => {
  for (const n of FIXTURE) for (const e of n.epochs) keys.set(`${n.name}/${e}`, await generateKeyPair());
});

function planNode(n: FixtureNode): IpsecPlanNode {
  return {
    name: n.name,
    address: n.address,
    podCIDRs: n.podCIDRs,
    currentEpoch: n.currentEpoch,
    keys: n.epochs.map((epoch) => ({ epoch, publicKey: keyOf(n.name, epoch).publicKey })),
  };
}

function viewOf(name: string): ReturnType<typeof planIpsec> {
  const self = FIXTURE.find((n) => n.name === name)!;
  return planIpsec({
    self: planNode(self),
    peers: FIXTURE.filter((n) => n !== self)
      .map(planNode)
      .reverse(),
    keyBits: 256,
    replayWindow: 1024,
  });
}

const peer = (d: DesiredIpsec, node: string) => d.peers.find((p) => p.node === node);

describe('planIpsec from every node', () => {
  it.each(FIXTURE.map((n) => n.name))('%s: outbound SAs are the inbound SAs its peers plan for it', (name) => {
    const { desired } = viewOf(name);
    expect(desired.peers.map((p) => p.node)).toEqual([...desired.peers.map((p) => p.node)].sort());
    for (const p of desired.peers) {
      const theirs = peer(viewOf(p.node).desired, name);
      expect(theirs).toBeDefined();
      // My outbound to p is one of p's inbound SAs from me, with my current key as the peer key.
      expect(theirs!.inbound).toContainEqual({
        ...p.outbound,
        peerPublicKey: keyOf(name, p.outbound.srcEpoch).publicKey,
      });
      // And every SA p sends me is one I accept.
      expect(p.inbound).toContainEqual({
        ...theirs!.outbound,
        peerPublicKey: keyOf(p.node, theirs!.outbound.srcEpoch).publicKey,
      });
      expect(p.outbound.peerPublicKey).toBe(keyOf(p.node, p.outbound.dstEpoch).publicKey);
    }
  });

  it('accepts every combination of published keys during a rotation, and sends with the current ones', () => {
    const a = peer(viewOf('node-a').desired, 'node-b')!;
    expect(a.inbound.map((s) => [s.srcEpoch, s.dstEpoch])).toHaveLength(2);
    expect(new Set(a.inbound.map((s) => s.srcEpoch))).toEqual(new Set([1, 2]));
    expect(a.outbound).toMatchObject({ srcEpoch: 1, dstEpoch: 1 });
    const b = peer(viewOf('node-b').desired, 'node-c')!;
    expect(b.inbound.map((s) => `${s.srcEpoch}->${s.dstEpoch}`).sort()).toEqual(['3->1', '3->2']);
    expect(b.outbound).toMatchObject({ srcEpoch: 1, dstEpoch: 3 });
    expect(b.inbound.map((s) => s.spi)).toEqual([...b.inbound.map((s) => s.spi)].sort((x, y) => x - y));
  });

  it('skips peers it cannot pair with, with a reason', () => {
    expect(viewOf('node-a').skipped).toEqual([
      { node: 'node-e', detail: "underlay address 2001:db8::5 is not IPv4 like this node's 198.18.0.1" },
      { node: 'node-f', detail: 'no pod CIDR of an address family this node also has' },
    ]);
    const d = viewOf('node-d').desired;
    expect(peer(d, 'node-f')).toMatchObject({
      localCIDRs: ['100.64.4.0/24', 'fd00:64:4::/64'],
      remoteCIDRs: ['fd00:64:6::/64'],
    });
  });

  it('skips a peer without a key for its current epoch', () => {
    const a = FIXTURE[0]!;
    const broken = { ...planNode(FIXTURE[1]!), currentEpoch: 7 };
    const plan = planIpsec({ self: planNode(a), peers: [broken], keyBits: 128, replayWindow: 64 });
    expect(plan.skipped).toEqual([{ node: 'node-b', detail: 'no IPsec public key for its current epoch 7' }]);
    expect(plan.desired.peers).toEqual([]);
  });

  it('allocates SPIs over the whole universe, so a node another node skips cannot move SPIs', () => {
    const universe = FIXTURE.map((n) => ({ name: n.name, epochs: n.epochs }));
    const a = FIXTURE[0]!;
    const withAll = planIpsec({
      self: planNode(a),
      peers: FIXTURE.slice(1, 3).map(planNode),
      spiUniverse: universe,
      keyBits: 256,
      replayWindow: 1024,
    });
    const fewerPeers = planIpsec({
      self: planNode(a),
      peers: FIXTURE.slice(1, 2).map(planNode),
      spiUniverse: universe,
      keyBits: 256,
      replayWindow: 1024,
    });
    expect(peer(fewerPeers.desired, 'node-b')).toEqual(peer(withAll.desired, 'node-b'));
  });

  it('refuses a node without its own current key or with a bad underlay address', () => {
    const a = planNode(FIXTURE[0]!);
    expect(() => planIpsec({ self: { ...a, currentEpoch: 9 }, peers: [], keyBits: 128, replayWindow: 64 })).toThrow(
      /current epoch 9/,
    );
    expect(() => planIpsec({ self: { ...a, address: 'node-a' }, peers: [], keyBits: 128, replayWindow: 64 })).toThrow(
      /not an IP address/,
    );
  });
});
