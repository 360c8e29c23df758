/**
 * Key ownership in mode ipsec (issue 16 finding 6): node-d copies node-b's IPsec key while
 * node-a's agent restarts (no in-memory history). With the first-seen book in the state dir,
 * node-a keeps node-b and skips only node-d; without it, both were skipped (the control).
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { IpsecDriver } from '../../ipsec/driver.js';
import { FakeXfrm } from '../../ipsec/xfrm.fake.js';
import { recordOwners, type KeyOwners } from '../../keymgr/keyowners.js';
import { parsePrivateKey, sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import { FakeSteering } from '../ports/steering.fake.js';
import { createFakeKernel, MemoryNodeStore } from '../ports/kernel.fake.js';
import {
  fixtureCluster,
  fixtureKey,
  FIXTURE_NAMES,
  FIXTURE_SEEDS,
  type FixtureCluster,
  type FixtureName,
} from '../../test/fixtures.js';
import { validateConfig } from '../agent/config.js';
import { ANNOTATIONS } from '../../common/constants.js';
import { silentLogger } from '../../common/logger.js';
import { createMetrics, type AgentMetrics } from '../../common/metrics.js';
import { ipsecOf, type RawNode } from '../ports/model.js';
import { Reconciler } from './reconciler.js';

let C: FixtureCluster;
let IK: Record<FixtureName, PublicKey>;
beforeAll(async () => {
  await sodiumReady();
  C = fixtureCluster();
  IK = Object.fromEntries(FIXTURE_NAMES.map((n) => [n, fixtureKey(FIXTURE_SEEDS[n] + 100)])) as Record<
    FixtureName,
    PublicKey
  >;
});

function ipsecNode(name: FixtureName, ipsecKey?: PublicKey): RawNode {
  const n = C.nodes.find((x) => x.name === name)!;
  return {
    ...n,
    annotations: {
      ...n.annotations,
      [ANNOTATIONS.mode]: 'ipsec',
      [ANNOTATIONS.ipsecPublicKey]: ipsecKey ?? IK[name],
      [ANNOTATIONS.ipsecKeyEpoch]: '1',
    },
  };
}

/** The book as keymgr/keyowners.ts keeps it, minus the file (it outlives the agent like the state dir). */
function memoryBook() {
  let owners: KeyOwners = {};
  return {
    get owners() {
      return owners;
    },
    record(claims: Readonly<Record<string, readonly string[]>>, now: number) {
      const r = recordOwners(owners, claims, now);
      owners = r.owners;
      return r.conflicts;
    },
  };
}

function nodeA(store: MemoryNodeStore, keyOwners: ReturnType<typeof memoryBook> | undefined) {
  const { routing, wg } = createFakeKernel();
  routing.addLink('eth0', { mtu: 1500, up: true });
  routing.addLink('cni0', { mtu: 1500, up: true });
  routing.addAddress('198.18.0.1', 15, 'eth0');
  routing.addAddress('100.64.1.1', 24, 'cni0');
  const xfrm = new FakeXfrm({ esp: 'supported' });
  const steering = new FakeSteering();
  const priv = parsePrivateKey(new Uint8Array(32).fill(101));
  const config = validateConfig({
    nodeName: 'node-a',
    mode: 'ipsec',
    store: { type: 'file', dir: '/unused' },
    debounceMs: 0,
    steering: { clusterCidrs: ['100.64.0.0/10'] },
  });
  const metrics = createMetrics();
  const make = (): Reconciler => {
    steering.restart();
    return new Reconciler({
      config,
      key: { publicKey: C.keys['node-a'], privateKeyFile: '/unused', epoch: 1, createdAt: new Date(0) },
      store,
      wg,
      routing,
      log: silentLogger,
      metrics,
      steering,
      ...(keyOwners !== undefined ? { keyOwners } : {}),
      ipsec: {
        port: new IpsecDriver({ xfrm, privateKey: (e) => (e === 1 ? priv : undefined) }),
        key: { publicKey: IK['node-a'], epoch: 1 },
        checkedFamilies: [4],
      },
    });
  };
  return { first: make(), restart: make, metrics };
}

async function conflicts(m: AgentMetrics): Promise<number> {
  return (await m.registry.getSingleMetric('sealnet_key_owner_conflicts_total')!.get()).values[0]?.value ?? 0;
}

describe('mode ipsec: a copied IPsec key and a restarted agent', () => {
  it.each([
    ['with the first-seen book', true],
    ['control: without it', false],
  ])('%s', async (_, withBook) => {
    const store = new MemoryNodeStore(
      [{ ...ipsecNode('node-a'), annotations: {} }, ipsecNode('node-b'), ipsecNode('node-c')],
      { synced: true },
    );
    const a = nodeA(store, withBook ? memoryBook() : undefined);
    const r1 = await a.first.runNow();
    expect(r1.errors).toEqual([]);
    expect(ipsecOf(r1.desired)!.peers.map((p) => p.node)).toEqual(['node-b', 'node-c']);
    // node-d appears with node-b's IPsec key while node-a's agent restarts.
    store.upsert(ipsecNode('node-d', IK['node-b']));
    const r2 = await a.restart().runNow();
    const skipped = r2.desired!.skipped.map((s) => [s.name, s.reason]);
    if (withBook) {
      expect(skipped).toEqual([['node-d', 'duplicate-key']]);
      expect(ipsecOf(r2.desired)!.peers.map((p) => p.node)).toEqual(['node-b', 'node-c']);
      expect(await conflicts(a.metrics)).toBe(1);
    } else {
      // What finding 6 describes: the honest owner is cut off with the copier.
      expect(skipped).toEqual([
        ['node-b', 'duplicate-key'],
        ['node-d', 'duplicate-key'],
      ]);
    }
  });
});
