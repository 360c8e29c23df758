/**
 * Hostile peers, class "endpoints": a node publishes an endpoint no tunnel may send to
 * (reflection), another node's endpoint, or this node's own. Expected: that node skipped with a
 * counted reason (`annotations-invalid`, `endpoint-conflict`), the established owner of an
 * endpoint keeps it, every honest pair still planned; in mode ipsec no two desired SAs share
 * (destination, SPI).
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { generateKeyPair, sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import { fixtureCluster, fixtureKey, type FixtureCluster } from '../../test/fixtures.js';
import { ANNOTATIONS } from '../../common/constants.js';
import { plan, type PlanInput } from './planner.js';
import { planIpsec, type IpsecPlanNode } from './ipsec-sa.js';
import type { RawNode } from '../ports/model.js';

let C: FixtureCluster;
beforeAll(async () => {
  await sodiumReady();
  C = fixtureCluster();
});

function withEndpoint(name: string, endpoint: string): RawNode[] {
  return C.nodes.map((n) =>
    n.name === name ? { ...n, annotations: { ...n.annotations, [ANNOTATIONS.endpoint]: endpoint } } : n,
  );
}

function planA(nodes: RawNode[], extra: Partial<PlanInput> = {}): ReturnType<typeof plan> {
  return plan({
    nodes,
    self: { name: 'node-a', wireguardPublicKey: C.keys['node-a'], localAddresses: C.localAddresses['node-a'] },
    config: { mode: 'wireguard', listenPort: 51880, persistentKeepalive: 0, underlayMtu: 1500, underlayFamily: 4 },
    ...extra,
  });
}

const names = (d: ReturnType<typeof plan>): string[] => d.tunnel.peers.map((p) => p.node);

describe('hostile endpoints', () => {
  it.each([
    ['127.0.0.1:51880', 'loopback'],
    ['0.0.0.0:51880', 'unspecified'],
    ['224.0.0.1:51880', 'multicast'],
    ['255.255.255.255:51880', 'broadcast'],
    ['169.254.169.254:51880', 'link-local'],
    ['[::1]:51880', 'loopback'],
    ['[::]:51880', 'unspecified'],
    ['[fe80::1]:51880', 'link-local'],
    ['[ff02::1]:51880', 'multicast'],
    ['[::ffff:198.18.0.3]:51880', 'IPv4-mapped'],
  ])('endpoint %s (%s) skips the node, the others are planned', (endpoint, what) => {
    const d = planA(withEndpoint('node-c', endpoint));
    const s = d.skipped.find((x) => x.name === 'node-c');
    expect(s?.reason).toBe('annotations-invalid');
    expect(s?.detail).toContain(what);
    expect(names(d)).toEqual(['node-b', 'node-d', 'node-e']);
  });

  it('a next endpoint of such a class is ignored (the rotation is not followed)', () => {
    const nodes = C.nodes.map((n) =>
      n.name === 'node-c'
        ? {
            ...n,
            annotations: {
              ...n.annotations,
              [ANNOTATIONS.rotation]: JSON.stringify({ phase: 'staging', id: 'r-1' }),
              [ANNOTATIONS.wireguardNextPublicKey]: fixtureKey(77),
              [ANNOTATIONS.nextEndpoint]: '127.0.0.1:51881',
            },
          }
        : n,
    );
    const d = planA(nodes);
    expect(d.tunnel.peers.filter((p) => p.node === 'node-c').map((p) => p.endpoint)).toEqual(['198.18.0.3:51999']);
  });

  it("a node taking another node's endpoint host: with no history both are skipped, with history the established owner keeps it", () => {
    const nodes = withEndpoint('node-c', '198.18.0.2:51999');
    const fresh = planA(nodes);
    expect(fresh.skipped.filter((s) => s.reason === 'endpoint-conflict').map((s) => s.name)).toEqual([
      'node-b',
      'node-c',
    ]);
    expect(names(fresh)).toEqual(['node-d', 'node-e']);
    const held = planA(nodes, { established: { 'node-b': C.keys['node-b'] } });
    expect(held.skipped.find((s) => s.name === 'node-c')).toMatchObject({
      reason: 'endpoint-conflict',
      detail: expect.stringContaining('node-b had it first') as unknown as string,
    });
    expect(names(held)).toEqual(['node-b', 'node-d', 'node-e']);
  });

  it("a node publishing this node's own address as its endpoint is skipped", () => {
    const d = planA(withEndpoint('node-c', '198.18.0.1:51999'));
    expect(d.skipped.find((s) => s.name === 'node-c')?.reason).toBe('endpoint-conflict');
    expect(names(d)).toEqual(['node-b', 'node-d', 'node-e']);
  });
});

describe('duplicate (destination, SPI) in a desired IPsec set', () => {
  it('two peers at one address whose outbound SAs get the same SPI: the second is refused', async () => {
    const key = async (): Promise<PublicKey> => (await generateKeyPair()).publicKey;
    const node = async (name: string, address: string): Promise<IpsecPlanNode> => ({
      name,
      address,
      podCIDRs: [`100.64.${name.length}.0/24`],
      currentEpoch: 1,
      keys: [{ epoch: 1, publicKey: await key() }],
    });
    const self = await node('a', '198.18.0.1');
    // A two-SPI range: names chosen so that a→p1 and a→p2 both hash to one SPI.
    const range = { min: 256, max: 257 };
    let found: { p1: IpsecPlanNode; p2: IpsecPlanNode; spi: number } | undefined;
    for (let i = 0; i < 20 && found === undefined; i++) {
      const p1 = { ...(await node('p' + i, '198.18.0.9')), podCIDRs: ['100.64.10.0/24'] };
      const p2 = { ...(await node('q' + i, '198.18.0.9')), podCIDRs: ['100.64.11.0/24'] };
      const probe = planIpsec({
        self,
        peers: [p1],
        keyBits: 256,
        replayWindow: 64,
        spiRange: range,
        spiUniverse: [self, p1, p2].map((n) => ({ name: n.name, epochs: [1] })),
      });
      const probe2 = planIpsec({
        self,
        peers: [p2],
        keyBits: 256,
        replayWindow: 64,
        spiRange: range,
        spiUniverse: [self, p1, p2].map((n) => ({ name: n.name, epochs: [1] })),
      });
      const s1 = probe.desired.peers[0]!.outbound.spi;
      if (s1 === probe2.desired.peers[0]!.outbound.spi) found = { p1, p2, spi: s1 };
    }
    expect(found).toBeDefined();
    const { p1, p2, spi } = found!;
    const r = planIpsec({ self, peers: [p1, p2], keyBits: 256, replayWindow: 64, spiRange: range });
    expect(r.desired.peers.map((p) => p.node)).toEqual([p1.name]);
    expect(r.skipped).toEqual([
      { node: p2.name, detail: `SA (destination, SPI) 198.18.0.9/${spi} is already planned for node ${p1.name}` },
    ]);
  });
});
