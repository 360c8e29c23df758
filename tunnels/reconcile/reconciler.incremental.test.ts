/**
 * Event passes on the incremental plan (plan/incremental.ts, plan/steering-incremental.ts and
 * the scoped diffs of wireguard-pass.ts) against an agent that passes in full every time: after
 * every random join, leave, key or endpoint change, both kernels (peers, routes, steering
 * entries) are the same.
 */
import { beforeAll, expect, it, jest } from '@jest/globals';
import { sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import { createFakeKernel, MemoryNodeStore } from '../ports/kernel.fake.js';
import { FakeSteering } from '../ports/steering.fake.js';
import { fixtureKey, sealnetAnnotations } from '../../test/fixtures.js';
import { validateConfig } from '../agent/config.js';
import type { Logger } from '../../common/logger.js';
import { createMetrics } from '../../common/metrics.js';
import { ROUTE_TABLE } from '../../common/constants.js';
import type { RawNode } from '../ports/model.js';
import { IncrementalPlanner } from '../plan/incremental.js';
import { Reconciler } from './reconciler.js';
import { seededRandom as rng } from '../../test/bench/stats.js';

let KEYS: PublicKey[];
let SELF: PublicKey;
beforeAll(async () => {
  await sodiumReady();
  SELF = fixtureKey(1);
  KEYS = Array.from({ length: 120 }, (_, i) => fixtureKey(20 + i));
});

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

function agent(nodes: readonly RawNode[], synced = true) {
  const { wg, routing } = createFakeKernel();
  routing.addLink('lo', { mtu: 65536, up: true });
  routing.addLink('eth0', { mtu: 1500, up: true });
  routing.addAddress('198.18.0.1', 15, 'eth0');
  const store = new MemoryNodeStore(nodes, { synced });
  const steering = new FakeSteering();
  const config = validateConfig({
    nodeName: 'node-000',
    store: { type: 'file', dir: '/unused' },
    debounceMs: 0,
    steering: { clusterCidrs: ['100.64.0.0/10'] },
  });
  const reconciler = new Reconciler({
    config,
    key: { publicKey: SELF, privateKeyFile: '/k', epoch: 1, createdAt: new Date(0) },
    store,
    wg,
    routing,
    log: quiet,
    metrics: createMetrics(),
    steering,
  });
  const kernel = () => ({
    peers: wg.peersOf('sealwg0'),
    routes: routing.routesIn(ROUTE_TABLE),
    steering: [...steering.kernel.entries.values()].sort((a, b) => (a.cidr < b.cidr ? -1 : 1)),
  });
  return { store, reconciler, kernel, steering };
}

function node(i: number, key: PublicKey, port = 51880): RawNode {
  return {
    name: `node-${String(i).padStart(3, '0')}`,
    internalIPs: [`198.18.1.${i}`],
    podCIDRs: [`100.70.${i}.0/24`],
    annotations: sealnetAnnotations(key, `198.18.1.${i}:${port}`),
  };
}

it.each([1, 2, 3])(
  'event passes leave the kernel as passes in full do, after every random change (seed %i)',
  async (seed) => {
    await sodiumReady();
    const r = rng(seed);
    const self: RawNode = {
      name: 'node-000',
      internalIPs: ['198.18.0.1'],
      podCIDRs: ['100.64.0.0/24'],
      annotations: sealnetAnnotations(SELF, '198.18.0.1:51880'),
    };
    const nodes = new Map<string, RawNode>([[self.name, self]]);
    for (let i = 1; i <= 40; i++) nodes.set(node(i, KEYS[i]!).name, node(i, KEYS[i]!));
    const inc = agent([...nodes.values()]);
    const full = agent([...nodes.values()]);
    await inc.reconciler.runNow();
    await full.reconciler.runNow();
    await inc.steering.ensure({
      settings: inc.steering.kernel.settings!,
      exempt: [],
      clusterCidrs: [],
      attachments: [],
    });
    let keyAt = 41;
    for (let step = 0; step < 60; step++) {
      const roll = r();
      const i = 1 + Math.floor(r() * 80);
      const name = `node-${String(i).padStart(3, '0')}`;
      const present = nodes.get(name);
      if (roll < 0.3 && present !== undefined) nodes.delete(name);
      else if (roll < 0.6) nodes.set(name, node(i, KEYS[(keyAt++ % 100) + 20]!));
      else if (roll < 0.8 && present !== undefined) nodes.set(name, node(i, KEYS[i]!, 51881 + step));
      // A key another node uses (a conflict: the plan goes full for it) or the same node again.
      else nodes.set(name, node(i, KEYS[1 + Math.floor(r() * 45)]!));
      for (const a of [inc, full]) {
        for (const n of a.store.list()) if (!nodes.has(n.name)) a.store.remove(n.name);
        for (const n of nodes.values()) if (a.store.get(n.name) !== n) a.store.upsert(n);
      }
      const ri = await inc.reconciler.runNow({ full: false });
      const rf = await full.reconciler.runNow({ full: true });
      expect({ step, errors: ri.errors }).toEqual({ step, errors: rf.errors });
      expect({ step, desired: ri.desired }).toStrictEqual({ step, desired: rf.desired });
      expect({ step, kernel: inc.kernel() }).toStrictEqual({ step, kernel: full.kernel() });
    }
  },
);

it('the first event pass after the store synced prunes what passes before it could not', async () => {
  const nodes = [
    {
      name: 'node-000',
      internalIPs: ['198.18.0.1'],
      podCIDRs: ['100.64.0.0/24'],
      annotations: sealnetAnnotations(SELF, '198.18.0.1:51880'),
    },
    ...Array.from({ length: 10 }, (_, i) => node(i + 1, KEYS[i + 1]!)),
  ];
  const inc = agent(nodes, false);
  await inc.reconciler.runNow();
  // Before the sync: a node leaves, another joins (nothing is pruned yet), then the store syncs.
  inc.store.remove('node-003');
  inc.store.upsert(node(20, KEYS[20]!));
  expect((await inc.reconciler.runNow({ full: false })).kernelOps).toStrictEqual({
    peer_set: 1,
    route_replace: 1,
    steering_write: 1,
  });
  inc.store.setSynced(true);
  inc.store.upsert(node(21, KEYS[21]!));
  await inc.reconciler.runNow({ full: false });
  const full = agent(inc.store.list());
  await full.reconciler.runNow();
  expect(inc.kernel()).toStrictEqual(full.kernel());
});

it('a Node that registers before its key (as kubelets do): the not-ready entry first, then peer, route and the ready entry', async () => {
  // The scale bench's Kubernetes joins write a Node in three steps (object, status, the agent's
  // annotations): 4 kernel operations where a join written at once costs 3. This is where the
  // fourth comes from, and it is the fail-closed entry, not a repeated write.
  const self = {
    name: 'node-000',
    internalIPs: ['198.18.0.1'],
    podCIDRs: ['100.64.0.0/24'],
    annotations: sealnetAnnotations(SELF, '198.18.0.1:51880'),
  };
  const a = agent([self, ...Array.from({ length: 5 }, (_, i) => node(i + 1, KEYS[i + 1]!))]);
  await a.reconciler.runNow();
  const joined = node(30, KEYS[30]!);
  a.store.upsert({ ...joined, annotations: {} });
  expect((await a.reconciler.runNow({ full: false })).kernelOps).toStrictEqual({ steering_write: 1 });
  expect(a.kernel().steering.find((e) => e.cidr === '100.70.30.0/24')?.state).toBe('not-ready');
  expect(a.kernel().peers.some((p) => p.publicKey === KEYS[30])).toBe(false);
  a.store.upsert(joined);
  expect((await a.reconciler.runNow({ full: false })).kernelOps).toStrictEqual({
    peer_set: 1,
    route_replace: 1,
    steering_write: 1,
  });
  expect(a.kernel().steering.find((e) => e.cidr === '100.70.30.0/24')?.state).toBe('ready');
});
