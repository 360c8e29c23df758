/**
 * `postQuantum` in the WireGuard pass, against the kernel fakes: the pass publishes the exchange's
 * annotations, a pair the exchange blocks (`required`, no confirmed secret) keeps its peer but
 * loses its pod route to a host route to the peer's exchange address, and its steering entry is
 * not ready (dropped); once unblocked the pod route and a ready entry come back. The pass reports
 * what it programmed to the exchange.
 */
import { beforeAll, expect, it, jest } from '@jest/globals';
import { ANNOTATIONS } from '../../common/constants.js';
import { silentLogger } from '../../common/logger.js';
import { createMetrics } from '../../common/metrics.js';
import { sodiumReady } from '../../keymgr/keys.js';
import { fixtureCluster, type FixtureCluster } from '../../test/fixtures.js';
import { validateConfig } from '../agent/config.js';
import { createNodeAKernel, MemoryNodeStore } from '../ports/kernel.fake.js';
import type { PqPassHook } from '../ports/pq.js';
import { FakeSteering } from '../ports/steering.fake.js';
import { Reconciler } from './reconciler.js';

let C: FixtureCluster;
beforeAll(async () => {
  await sodiumReady();
  C = fixtureCluster();
});

class StubPq implements PqPassHook {
  block = new Map<string, string | undefined>();
  programmedPeers: string[] = [];
  ownAnnotations(): Record<string, string> {
    return { [ANNOTATIONS.pqAddress]: '100.64.1.1' };
  }
  blocked(): ReadonlyMap<string, string | undefined> {
    return this.block;
  }
  programmed(a: Parameters<PqPassHook['programmed']>[0]): void {
    this.programmedPeers = [...a.peers.keys()].sort();
  }
}

/** node-a with `postQuantum: required`, steering on, and the pair with node-b blocked. */
async function setup() {
  const { wg, routing } = createNodeAKernel();
  const store = new MemoryNodeStore(C.nodes, { synced: true });
  const config = validateConfig({
    nodeName: 'node-a',
    store: { type: 'file', dir: '/unused' },
    debounceMs: 0,
    steering: { clusterCidrs: ['100.64.0.0/10'] },
    postQuantum: { mode: 'required' },
  });
  const steering = new FakeSteering();
  const pq = new StubPq();
  pq.block.set('node-b', '100.64.2.1');
  const r = new Reconciler({
    config,
    key: { publicKey: C.keys['node-a'], privateKeyFile: '/k', epoch: 1, createdAt: new Date(0) },
    store,
    wg,
    routing,
    log: silentLogger,
    metrics: createMetrics(),
    steering,
    pq,
  });
  await r.prepareSteering('eth0');
  return { wg, routing, store, steering, pq, r };
}

it('a blocked pair is routed only to its exchange address and steered as not ready, then restored', async () => {
  const { wg, routing, store, steering, pq, r } = await setup();
  const rep = await r.runNow();
  expect(rep.errors).toStrictEqual([]);
  // Published through the pass.
  expect(store.list().find((n) => n.name === 'node-a')!.annotations[ANNOTATIONS.pqAddress]).toBe('100.64.1.1');
  // The peer stays (the exchange runs through it); its pod route is gone, the exchange route is in.
  expect(wg.peersOf('sealwg0').some((p) => p.publicKey === C.keys['node-b'])).toBe(true);
  const dsts = routing.routesIn(5188).map((x) => x.dst);
  expect(dsts).toContain('100.64.2.1/32');
  expect(dsts).not.toContain('100.64.2.0/24');
  expect(dsts).toContain('100.64.3.0/24');
  const entry = async (cidr: string) => (await steering.listEntries()).find((e) => e.cidr === cidr);
  expect((await entry('100.64.2.0/24'))?.state).toBe('not-ready');
  expect((await entry('100.64.3.0/24'))?.state).toBe('ready');
  expect(pq.programmedPeers).toContain('node-b');

  // The exchange confirmed: the next pass restores the pod route and a ready entry.
  pq.block.clear();
  expect((await r.runNow()).errors).toStrictEqual([]);
  const after = routing.routesIn(5188).map((x) => x.dst);
  expect(after).toContain('100.64.2.0/24');
  expect(after).not.toContain('100.64.2.1/32');
  expect((await entry('100.64.2.0/24'))?.state).toBe('ready');
});

it('with the exchange on, an event pass reads the kernel in full: an unblocked pair is restored without a node change', async () => {
  // Which pairs `required` blocks is the exchange's state, not a node change: an event pass on
  // the kernel view (incremental plan, scoped diffs) would see nothing to do and leave the pair
  // routed to its exchange address only, dropped by steering, until the next periodic resync.
  const { wg, routing, steering, pq, r } = await setup();
  expect((await r.runNow()).errors).toStrictEqual([]);
  expect(routing.routesIn(5188).map((x) => x.dst)).not.toContain('100.64.2.0/24');
  const show = jest.spyOn(wg, 'show');
  pq.block.clear();
  expect((await r.runNow({ full: false })).errors).toStrictEqual([]);
  expect(show).toHaveBeenCalled();
  expect(routing.routesIn(5188).map((x) => x.dst)).toContain('100.64.2.0/24');
  expect((await steering.listEntries()).find((e) => e.cidr === '100.64.2.0/24')?.state).toBe('ready');
});
