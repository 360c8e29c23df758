/**
 * Event passes on the kernel view (tunnels/reconcile/kernelview.ts): a store change is applied without
 * re-reading every peer and route, with exactly the kernel result a full pass gives; drift made
 * behind the agent's back is repaired by the next full pass; a recreated link forces a read.
 */
import { beforeAll, describe, expect, it, jest } from '@jest/globals';
import { sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import { createNodeAKernel, MemoryNodeStore, FakeWireGuard } from '../ports/kernel.fake.js';
import { fixtureCluster, fixtureKey, sealnetAnnotations, type FixtureCluster } from '../../test/fixtures.js';
import { validateConfig } from '../agent/config.js';
import { applyPeerChanges } from './kernelview.js';
import type { Logger } from '../../common/logger.js';
import { createMetrics } from '../../common/metrics.js';
import type { PeerChange } from '../ports/index.js';
import { Reconciler } from './reconciler.js';

let C: FixtureCluster;
let keys: PublicKey[];
beforeAll(async () => {
  await sodiumReady();
  C = fixtureCluster();
  keys = Array.from({ length: 6 }, (_, i) => fixtureKey(40 + i));
});

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

function setup() {
  const { wg, routing } = createNodeAKernel();
  const store = new MemoryNodeStore(C.nodes, { synced: true });
  const config = validateConfig({ nodeName: 'node-a', store: { type: 'file', dir: '/unused' }, debounceMs: 0 });
  const reconciler = new Reconciler({
    config,
    key: { publicKey: C.keys['node-a'], privateKeyFile: '/k', epoch: 1, createdAt: new Date(0) },
    store,
    wg,
    routing,
    log: quiet,
    metrics: createMetrics(),
  });
  const reads = {
    show: jest.spyOn(wg, 'show'),
    routes: jest.spyOn(routing, 'listRoutes'),
    ensure: jest.spyOn(wg, 'ensureLink'),
  };
  const resetReads = (): void => Object.values(reads).forEach((s) => s.mockClear());
  return { wg, routing, store, reconciler, reads, resetReads };
}

function rekey(e: ReturnType<typeof setup>, name: string, key: PublicKey, endpoint: string): void {
  const n = e.store.get(name)!;
  e.store.upsert({ ...n, annotations: { ...n.annotations, ...sealnetAnnotations(key, endpoint) } });
}

describe('event passes on the kernel view', () => {
  it('applies one key change with O(1) kernel writes and no kernel reads, exactly as a full pass would', async () => {
    const e = setup();
    await e.reconciler.runNow();
    e.resetReads();
    rekey(e, 'node-c', keys[0]!, '198.18.0.3:51999');
    const r = await e.reconciler.runNow({ full: false });
    expect(r.errors).toEqual([]);
    expect(r.kernelOps).toStrictEqual({ peer_set: 1, peer_remove: 1 });
    expect(e.reads.show).not.toHaveBeenCalled();
    expect(e.reads.routes).not.toHaveBeenCalled();
    expect(e.reads.ensure).not.toHaveBeenCalled();
    expect(e.wg.peersOf('sealwg0').map((p) => p.publicKey)).toContain(keys[0]);
    // A full pass right after finds nothing to do: the view matched the kernel.
    const full = await e.reconciler.runNow();
    expect(full.kernelOps).toStrictEqual({});
    expect(e.reads.show).toHaveBeenCalled();
  });

  it('adds and removes a node from the view (peer, route) and a later full pass agrees', async () => {
    const e = setup();
    await e.reconciler.runNow();
    e.store.upsert({
      name: 'node-x',
      annotations: sealnetAnnotations(keys[1]!, '198.18.0.9:51880'),
      podCIDRs: ['100.64.9.0/24'],
      internalIPs: ['198.18.0.9'],
    });
    const add = await e.reconciler.runNow({ full: false });
    expect(add.kernelOps).toStrictEqual({ peer_set: 1, route_replace: 1 });
    e.store.remove('node-b');
    const del = await e.reconciler.runNow({ full: false });
    expect(del.kernelOps).toStrictEqual({ route_delete: 1, peer_remove: 1 });
    expect((await e.reconciler.runNow()).kernelOps).toStrictEqual({});
  });

  it('does not see drift behind its back, and the next full pass repairs it', async () => {
    const e = setup();
    await e.reconciler.runNow();
    e.wg.links.get('sealwg0')!.peers.delete(C.keys['node-b']);
    expect((await e.reconciler.runNow({ full: false })).kernelOps).toStrictEqual({});
    expect((await e.reconciler.runNow()).kernelOps).toStrictEqual({ peer_set: 1 });
  });

  it('reads the kernel again when the link was recreated (new ifindex)', async () => {
    const e = setup();
    await e.reconciler.runNow();
    await e.wg.deleteLink('sealwg0');
    const r = await e.reconciler.runNow({ full: false });
    expect(r.kernelOps.link_create).toBe(1);
    expect(r.kernelOps.peer_set).toBe(4);
    expect(r.converged).toBe(true);
  });

  it('after a failed pass the next event pass reads the kernel in full', async () => {
    const e = setup();
    await e.reconciler.runNow();
    rekey(e, 'node-d', keys[2]!, '198.18.0.4:51880');
    e.wg.failNext('applyPeers');
    expect((await e.reconciler.runNow({ full: false })).errors.map((x) => x.step)).toEqual(['peers']);
    e.resetReads();
    const r = await e.reconciler.runNow({ full: false });
    expect(r.errors).toEqual([]);
    expect(e.reads.show).toHaveBeenCalled();
    expect(r.kernelOps).toStrictEqual({ peer_set: 1, peer_remove: 1 });
  });
});

describe('applyPeerChanges', () => {
  it('matches what WireGuard (the fake, kernel semantics) holds after random change sequences', async () => {
    const cidrs = ['100.64.1.0/24', '100.64.2.0/24', '100.64.3.0/24', '100.64.4.0/24', 'fd00:64:1::/64'];
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    for (let round = 0; round < 200; round++) {
      const wg = new FakeWireGuard();
      await wg.ensureLink({ name: 'wg0', privateKeyFile: '/k', publicKey: keys[5]!, listenPort: 1, fwmark: 0 });
      let view = (await wg.show('wg0'))!.peers;
      for (let step = 0; step < 4; step++) {
        const changes: PeerChange[] = Array.from({ length: 1 + rnd(3) }, () => {
          const publicKey = keys[rnd(4)]!;
          return rnd(4) === 0
            ? { op: 'remove' as const, publicKey }
            : {
                op: 'set' as const,
                publicKey,
                endpoint: `198.18.0.${1 + rnd(3)}:51880`,
                allowedIPs: [...new Set([cidrs[rnd(5)]!, cidrs[rnd(5)]!])].sort(),
                persistentKeepalive: 25,
              };
        });
        await wg.applyPeers('wg0', changes);
        view = applyPeerChanges(view, changes);
        const sort = (ps: readonly { publicKey: string }[]) =>
          [...ps].sort((a, b) => (a.publicKey < b.publicKey ? -1 : 1));
        expect(sort(view)).toEqual(sort((await wg.show('wg0'))!.peers));
      }
    }
  });
});
