/**
 * Hostile peers, class "node addresses" (node-to-node mode): a node lists addresses in
 * `status.addresses` that are not its own to take. Expected: only unicast addresses inside the
 * configured node networks become allowed IPs, at most MAX_NODE_ADDRESSES per node, and an
 * address another node holds stays with that node; every honest pair keeps its addresses.
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import { fixtureCluster, fixtureKey, sealnetAnnotations, type FixtureCluster } from '../../test/fixtures.js';
import { MAX_NODE_ADDRESSES, plan, type PlanConfig, type PlanInput } from './planner.js';
import type { RawNode } from '../ports/model.js';

let C: FixtureCluster;
let KH: PublicKey;
let KG: PublicKey;
beforeAll(async () => {
  await sodiumReady();
  C = fixtureCluster();
  KH = fixtureKey(66);
  KG = fixtureKey(67);
});

const CONFIG = (nodeCidrs?: string[]): PlanConfig => ({
  mode: 'wireguard',
  listenPort: 51880,
  persistentKeepalive: 0,
  underlayMtu: 1500,
  underlayFamily: 4,
  nodeToNode: { exemptCidrs: ['198.18.0.100/32'], ...(nodeCidrs !== undefined ? { nodeCidrs } : {}) },
});

function hostile(internalIPs: string[], name = 'node-h', key?: PublicKey, endpoint = '198.18.0.66:51880'): RawNode {
  return {
    name,
    annotations: sealnetAnnotations(key ?? KH, endpoint),
    podCIDRs: [name === 'node-h' ? '100.64.66.0/24' : '100.64.67.0/24'],
    internalIPs,
  };
}

function allowedFromA(
  nodes: RawNode[],
  extra: Partial<PlanInput> = {},
  nodeCidrs?: string[],
): Record<string, readonly string[]> {
  const d = plan({
    nodes,
    self: { name: 'node-a', wireguardPublicKey: C.keys['node-a'], localAddresses: C.localAddresses['node-a'] },
    config: CONFIG(nodeCidrs),
    ...extra,
  });
  return Object.fromEntries(d.tunnel.peers.map((p) => [p.node, p.allowedIPs]));
}

const HONEST = { 'node-b': ['100.64.2.0/24', '198.18.0.2/32'], 'node-d': ['100.64.4.0/24', '198.18.0.4/32'] };

describe('hostile node addresses', () => {
  it('metadata, public resolvers, loopback, multicast, unspecified, link-local, mapped and exempt addresses are never taken', () => {
    const got = allowedFromA([
      ...C.nodes,
      hostile([
        '169.254.169.254',
        '8.8.8.8',
        '1.1.1.1',
        '127.0.0.1',
        '224.0.0.251',
        '0.0.0.0',
        '255.255.255.255',
        'fe80::1',
        '::ffff:198.18.0.9',
        '::',
        '198.18.0.100',
        '198.18.0.66',
      ]),
    ]);
    expect(got['node-h']).toEqual(['100.64.66.0/24', '198.18.0.66/32']);
    expect(got).toMatchObject(HONEST);
  });

  it('only addresses inside steering.nodeCidrs when it is set', () => {
    const got = allowedFromA([...C.nodes, hostile(['10.1.2.3', '198.18.0.66'])], {}, ['198.18.0.0/24']);
    expect(got['node-h']).toEqual(['100.64.66.0/24', '198.18.0.66/32']);
    const dflt = allowedFromA([...C.nodes, hostile(['10.1.2.3', '198.18.0.66'])]);
    expect(dflt['node-h']).toEqual(['10.1.2.3/32', '100.64.66.0/24', '198.18.0.66/32']);
  });

  it(`at most ${MAX_NODE_ADDRESSES} addresses per node`, () => {
    const many = Array.from({ length: 1000 }, (_, i) => `10.9.${i >> 8}.${i & 255}`).filter((a) => !a.endsWith('.0'));
    const got = allowedFromA([...C.nodes, hostile(many)]);
    expect(got['node-h']!.length).toBe(1 + MAX_NODE_ADDRESSES);
    expect(got).toMatchObject(HONEST);
  });

  it("another node's InternalIP stays with that node (its endpoint), so host traffic to it keeps working", () => {
    const got = allowedFromA([...C.nodes, hostile(['198.18.0.2', '198.18.0.4', '198.18.0.66'])]);
    expect(got['node-h']).toEqual(['100.64.66.0/24', '198.18.0.66/32']);
    expect(got).toMatchObject(HONEST);
  });

  it('an address two nodes claim, neither as endpoint: its previous owner keeps it; with no history nobody gets it', () => {
    const nodes = [
      ...C.nodes,
      hostile(['10.7.7.7', '198.18.0.66']),
      hostile(['10.7.7.7', '198.18.0.67'], 'node-g', KG, '198.18.0.67:51880'),
    ];
    const fresh = allowedFromA(nodes);
    expect(fresh['node-h']).toEqual(['100.64.66.0/24', '198.18.0.66/32']);
    expect(fresh['node-g']).toEqual(['100.64.67.0/24', '198.18.0.67/32']);
    const held = allowedFromA(nodes, { establishedAddresses: { '10.7.7.7/32': 'node-g' } });
    expect(held['node-g']).toEqual(['10.7.7.7/32', '100.64.67.0/24', '198.18.0.67/32']);
    expect(held['node-h']).toEqual(['100.64.66.0/24', '198.18.0.66/32']);
  });
});

describe('steering.nodeCidrs config', () => {
  it('is validated: CIDRs only, no /0-like ranges, no non-unicast networks', async () => {
    const { validateConfig } = await import('../agent/config.js');
    const st = (nodeCidrs: unknown): unknown => ({ nodeName: 'node-a', steering: { failClosed: false, nodeCidrs } });
    expect(validateConfig(st(['198.18.0.0/15'])).steering.nodeCidrs).toEqual(['198.18.0.0/15']);
    expect(validateConfig({ nodeName: 'node-a', steering: { failClosed: false } }).steering.nodeCidrs).toEqual([]);
    expect(() => validateConfig(st(['0.0.0.0/0']))).toThrow('steering.nodeCidrs[0]');
    expect(() => validateConfig(st(['169.254.0.0/16']))).toThrow('link-local');
    expect(() => validateConfig(st(['224.0.0.0/8']))).toThrow('multicast');
    expect(() => validateConfig(st(['nope']))).toThrow('steering.nodeCidrs[0]');
  });
});
