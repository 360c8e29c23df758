import { beforeAll, describe, expect, it } from '@jest/globals';
import { sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import {
  FIXTURE_NAMES,
  fixtureCluster,
  fixtureKey,
  sealnetAnnotations,
  type FixtureCluster,
  type FixtureName,
} from '../../test/fixtures.js';
import { ANNOTATIONS } from '../../common/constants.js';
import type { DesiredWireGuardState, RawNode } from '../ports/model.js';
import { plan, type PlanConfig } from './planner.js';
import { encodeRotationStatus } from './rotation-codec.js';

// Node-to-node (host network) encryption in the planner: the fixture cluster of
// test/fixtures.ts from every node with `nodeToNode` on. Remote InternalIPs join the peers'
// allowed IPs as host prefixes; routes never change (the BPF egress program steers node
// addresses, a route would loop the tunnel's own UDP into the tunnel).

let C: FixtureCluster;
let keyF: PublicKey;
let NB: PublicKey;
beforeAll(async () => {
  await sodiumReady();
  C = fixtureCluster();
  keyF = fixtureKey(6);
  NB = fixtureKey(12);
});

const WG: PlanConfig = {
  mode: 'wireguard',
  listenPort: 51880,
  persistentKeepalive: 25,
  underlayMtu: 1500,
  underlayFamily: 4,
};
const N2N = (exemptCidrs: string[] = []): Partial<PlanConfig> => ({ nodeToNode: { exemptCidrs } });

function from(
  self: FixtureName,
  opts: { nodes?: readonly RawNode[]; config?: Partial<PlanConfig>; handshakes?: string[] } = {},
): DesiredWireGuardState {
  return plan({
    nodes: opts.nodes ?? C.nodes,
    self: { name: self, wireguardPublicKey: C.keys[self], localAddresses: C.localAddresses[self] },
    config: { ...WG, ...opts.config },
    ...(opts.handshakes !== undefined ? { handshakes: new Set(opts.handshakes) } : {}),
  });
}

const allowed = (d: DesiredWireGuardState): Record<string, readonly string[]> =>
  Object.fromEntries(d.tunnel.peers.map((p) => [p.node, p.allowedIPs]));

function nodeF(internalIPs: string[], podCIDRs = ['100.64.6.0/24']): RawNode {
  return { name: 'node-f', annotations: sealnetAnnotations(keyF, '198.18.0.6:51880'), podCIDRs, internalIPs };
}

describe('plan with node-to-node encryption: the fixture cluster from every node', () => {
  it('from node-a: every peer owns its node addresses (both families) besides its pod CIDRs', () => {
    expect(allowed(from('node-a', { config: N2N() }))).toStrictEqual({
      'node-b': ['100.64.2.0/24', '198.18.0.2/32'],
      'node-c': ['100.64.3.0/24', '198.18.0.3/32', 'fd00:198:18::3/128'],
      'node-d': ['100.64.4.0/24', '198.18.0.4/32'],
      'node-e': ['100.64.5.0/24', '198.18.0.5/32', 'fd00:64:5::/64'],
    });
  });

  it("from node-c: its own addresses are never a peer's", () => {
    expect(allowed(from('node-c', { config: N2N() }))).toStrictEqual({
      'node-a': ['100.64.1.0/24', '198.18.0.1/32'],
      'node-b': ['100.64.2.0/24', '198.18.0.2/32'],
      'node-d': ['100.64.4.0/24', '198.18.0.4/32'],
      'node-e': ['100.64.5.0/24', '198.18.0.5/32', 'fd00:64:5::/64'],
    });
  });

  it.each(FIXTURE_NAMES.map((n) => [n] as const))(
    'from %s: routes, link and skipped nodes are exactly those without it; allowed IPs only grow by the node addresses',
    (self) => {
      const off = from(self);
      const on = from(self, { config: N2N() });
      expect(on.routes).toStrictEqual(off.routes);
      expect(on.tunnel.link).toStrictEqual(off.tunnel.link);
      expect(on.skipped).toStrictEqual(off.skipped);
      expect(on.routes.some((r) => r.dst.startsWith('198.18.') || r.dst.startsWith('fd00:198:'))).toBe(false);
      for (const [i, p] of on.tunnel.peers.entries()) {
        const base = off.tunnel.peers[i]!;
        expect({ ...p, allowedIPs: base.allowedIPs }).toStrictEqual(base);
        const raw = C.nodes.find((n) => n.name === p.node)!;
        const hosts = raw.internalIPs.map((a) => (a.includes(':') ? `${a}/128` : `${a}/32`));
        expect([...p.allowedIPs].sort()).toStrictEqual([...base.allowedIPs, ...hosts].sort());
      }
    },
  );

  it('off (the default) adds no node address', () => {
    expect(allowed(from('node-a', { config: { nodeToNode: undefined } }))['node-b']).toStrictEqual(['100.64.2.0/24']);
  });
});

describe('plan with node-to-node encryption: addresses left out', () => {
  it('an address inside steering.exemptCidrs (the API server) stays out of the tunnel', () => {
    expect(allowed(from('node-a', { config: N2N(['198.18.0.3/32']) }))['node-c']).toStrictEqual([
      '100.64.3.0/24',
      'fd00:198:18::3/128',
    ]);
    const wide = allowed(from('node-a', { config: N2N(['198.18.0.0/15']) }));
    expect(
      Object.values(wide)
        .flat()
        .some((c) => c.startsWith('198.18.')),
    ).toBe(false);
    expect(wide['node-c']).toStrictEqual(['100.64.3.0/24', 'fd00:198:18::3/128']);
  });

  it("an address two nodes claim goes to the node whose endpoint it is (a copier cannot take a node's own address)", () => {
    const got = allowed(from('node-a', { nodes: [...C.nodes, nodeF(['198.18.0.2', '198.18.0.6'])], config: N2N() }));
    expect(got['node-b']).toStrictEqual(['100.64.2.0/24', '198.18.0.2/32']);
    expect(got['node-f']).toStrictEqual(['100.64.6.0/24', '198.18.0.6/32']);
  });

  it("an address inside a pod CIDR (own or a peer's) or equal to an own address is left out", () => {
    expect(
      allowed(
        from('node-a', { nodes: [...C.nodes, nodeF(['100.64.3.7', '100.64.1.9', '198.18.0.1'])], config: N2N() }),
      )['node-f'],
    ).toStrictEqual(['100.64.6.0/24']);
  });

  it('a node without pod CIDRs but with an address is skipped as before (no peer, no address)', () => {
    const d = from('node-a', { nodes: [...C.nodes, nodeF(['198.18.0.6'], [])], config: N2N() });
    expect(d.tunnel.peers.map((p) => p.node)).not.toContain('node-f');
  });

  it('is deterministic whatever the order of nodes and addresses', () => {
    const a = from('node-a', { nodes: [...C.nodes, nodeF(['198.18.0.6', 'fd00:198:18::6'])], config: N2N() });
    const b = from('node-a', {
      nodes: [nodeF(['fd00:198:18::6', '198.18.0.6']), ...[...C.nodes].reverse()],
      config: N2N(),
    });
    expect(b).toStrictEqual(a);
    expect(allowed(a)['node-f']).toStrictEqual(['100.64.6.0/24', '198.18.0.6/32', 'fd00:198:18::6/128']);
  });
});

describe('plan with node-to-node encryption: a peer rotating', () => {
  const T = new Date('2026-02-03T04:05:06.000Z');
  const rotating = (phase: 'staging' | 'moving'): RawNode[] =>
    C.nodes.map((n) =>
      n.name !== 'node-b'
        ? n
        : {
            ...n,
            annotations: {
              ...n.annotations,
              [ANNOTATIONS.rotation]: encodeRotationStatus({ phase, id: 'r-b', since: T, epoch: 2 }),
              [ANNOTATIONS.wireguardNextPublicKey]: NB,
              [ANNOTATIONS.nextEndpoint]: '198.18.0.2:51881',
            },
          },
    );

  it.each([
    ['staging', [], 'current'],
    ['moving', [], 'current'],
    ['moving', ['next'], 'next'],
  ] as ['staging' | 'moving', string[], 'current' | 'next'][])(
    '%s, handshakes %j: the node address moves with the pod CIDR, to the %s key',
    (phase, hs, owner) => {
      const d = from('node-a', { nodes: rotating(phase), handshakes: hs.map(() => NB), config: N2N() });
      const b = d.tunnel.peers.filter((p) => p.node === 'node-b');
      const both = ['100.64.2.0/24', '198.18.0.2/32'];
      expect(b.map((p) => [p.publicKey, p.allowedIPs])).toStrictEqual([
        [C.keys['node-b'], owner === 'current' ? both : []],
        [NB, owner === 'next' ? both : []],
      ]);
      // What the rotation reports on stays the pod CIDRs.
      expect(d.tunnel.following).toStrictEqual([{ node: 'node-b', publicKey: NB, podCIDRs: ['100.64.2.0/24'] }]);
    },
  );
});
