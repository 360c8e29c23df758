import { beforeAll, describe, expect, it } from '@jest/globals';
import { sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import {
  createNodeAKernel,
  MAIN_TABLE,
  MemoryNodeStore,
  type FakeRoute,
  type FakeRouting,
  type FakeWireGuard,
  type KernelJournal,
} from '../ports/kernel.fake.js';
import { fixtureCluster, fixtureKey, sealnetAnnotations, type FixtureCluster } from '../../test/fixtures.js';
import { validateConfig } from '../agent/config.js';
import type { Logger } from '../../common/logger.js';
import { createMetrics, type AgentMetrics } from '../../common/metrics.js';
import type { RawNode } from '../ports/model.js';
import { Reconciler, type OwnKey, type ReconcileReport } from './reconciler.js';

// The reconciler against fakes that behave like the kernel (tunnels/ports/kernel.fake.ts). Node-a is "us".

let C: FixtureCluster;
beforeAll(async () => {
  await sodiumReady();
  C = fixtureCluster();
});

/** A logger that keeps every call. */
class CapturingLogger implements Logger {
  readonly entries: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  debug(obj: object, msg: string): void {
    this.entries.push({ level: 'debug', obj: obj as Record<string, unknown>, msg });
  }
  info(obj: object, msg: string): void {
    this.entries.push({ level: 'info', obj: obj as Record<string, unknown>, msg });
  }
  warn(obj: object, msg: string): void {
    this.entries.push({ level: 'warn', obj: obj as Record<string, unknown>, msg });
  }
  error(obj: object, msg: string): void {
    this.entries.push({ level: 'error', obj: obj as Record<string, unknown>, msg });
  }
  at(level: string): { obj: Record<string, unknown>; msg: string }[] {
    return this.entries.filter((e) => e.level === level);
  }
}

/** Value of a counter/gauge sample with exactly these labels (0 when absent). */
async function metric(m: AgentMetrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const got = await m.registry.getSingleMetric(name)!.get();
  const want = Object.entries(labels);
  const v = got.values.find(
    (s) => Object.keys(s.labels).length === want.length && want.every(([k, x]) => s.labels[k] === x),
  );
  return v?.value ?? 0;
}

const KEY_FILE = '/var/lib/sealnet/wireguard.key';
const CREATED = new Date('2024-03-04T05:06:07.000Z');
const FOREIGN_IN_OUR_TABLE: FakeRoute = {
  dst: '100.64.200.0/24',
  dev: 'eth0',
  mtu: undefined,
  src: undefined,
  table: 5188,
  protocol: 4,
};
const CNI_ROUTE: FakeRoute = {
  dst: '100.64.2.0/24',
  dev: 'eth0',
  mtu: undefined,
  src: undefined,
  table: MAIN_TABLE,
  protocol: 4,
};

interface Env {
  journal: KernelJournal;
  wg: FakeWireGuard;
  routing: FakeRouting;
  store: MemoryNodeStore;
  log: CapturingLogger;
  metrics: AgentMetrics;
  reconciler: Reconciler;
  key: OwnKey;
  /** A new agent process over the same kernel and store. */
  restart(): Reconciler;
}

function setup(opts: { synced?: boolean; nodes?: RawNode[] } = {}): Env {
  const { journal, wg, routing } = createNodeAKernel({ loopbackAddress: true });
  // Not ours: a static route someone put into our table, and the CNI's host-gw route.
  routing.seedRoute(FOREIGN_IN_OUR_TABLE);
  routing.seedRoute(CNI_ROUTE);
  // Node-a as a fresh agent finds it: no sealnet annotations yet.
  const nodes =
    opts.nodes ??
    C.nodes.map((n) => (n.name === 'node-a' ? { ...n, annotations: { 'node.alpha.kubernetes.io/ttl': '0' } } : n));
  const store = new MemoryNodeStore(nodes, { synced: opts.synced ?? true });
  const config = validateConfig({ nodeName: 'node-a', store: { type: 'file', dir: '/unused' }, debounceMs: 0 });
  const key: OwnKey = { publicKey: C.keys['node-a'], privateKeyFile: KEY_FILE, epoch: 1, createdAt: CREATED };
  const log = new CapturingLogger();
  const metrics = createMetrics();
  const make = (): Reconciler => new Reconciler({ config, key, store, wg, routing, log, metrics });
  return { journal, wg, routing, store, log, metrics, key, reconciler: make(), restart: make };
}

const K = (n: keyof FixtureCluster['keys']): PublicKey => C.keys[n];

function expectedPeers(): { publicKey: string; endpoint: string; allowedIPs: string[]; persistentKeepalive: number }[] {
  return [
    { publicKey: K('node-b'), endpoint: '198.18.0.2:51880', allowedIPs: ['100.64.2.0/24'], persistentKeepalive: 25 },
    { publicKey: K('node-c'), endpoint: '198.18.0.3:51999', allowedIPs: ['100.64.3.0/24'], persistentKeepalive: 25 },
    { publicKey: K('node-d'), endpoint: '198.18.0.4:51880', allowedIPs: ['100.64.4.0/24'], persistentKeepalive: 25 },
    {
      publicKey: K('node-e'),
      endpoint: '198.18.0.5:51880',
      allowedIPs: ['100.64.5.0/24', 'fd00:64:5::/64'],
      persistentKeepalive: 25,
    },
  ];
}

const ourRoute = (dst: string, src: string | undefined, mtu = 1440): FakeRoute => ({
  dst,
  dev: 'sealwg0',
  mtu,
  src,
  table: 5188,
  protocol: 206,
});

function expectedTable(mtu = 1440): FakeRoute[] {
  return [
    ourRoute('100.64.2.0/24', '100.64.1.1', mtu),
    ourRoute('100.64.3.0/24', '100.64.1.1', mtu),
    ourRoute('100.64.4.0/24', '100.64.1.1', mtu),
    ourRoute('100.64.5.0/24', '100.64.1.1', mtu),
    FOREIGN_IN_OUR_TABLE,
    ourRoute('fd00:64:5::/64', undefined, mtu),
  ];
}

/** The whole fake kernel as plain data, for "nothing changed" comparisons. */
function kernelState(e: Env): unknown {
  return {
    peers: e.wg.peersOf('sealwg0'),
    table: e.routing.routesIn(5188),
    main: e.routing.routesIn(MAIN_TABLE),
    rules: [...e.routing.rules],
    links: [...e.routing.links.entries()],
  };
}

function expectConverged(e: Env, mtu = 1440): void {
  expect(e.wg.peersOf('sealwg0')).toStrictEqual(expectedPeers());
  expect(e.routing.routesIn(5188)).toStrictEqual(expectedTable(mtu));
  expect(e.routing.routesIn(MAIN_TABLE)).toStrictEqual([CNI_ROUTE]);
  expect(e.routing.links.get('sealwg0')).toMatchObject({ mtu, up: true });
}

async function converged(opts: { synced?: boolean } = {}): Promise<Env> {
  const e = setup(opts);
  const r = await e.reconciler.runNow();
  expect(r.errors).toStrictEqual([]);
  return e;
}

describe('Reconciler: first pass', () => {
  it('creates the link, sets peers and routes, adds the rules, publishes annotations', async () => {
    const e = setup();
    const r = await e.reconciler.runNow();

    expect(r.errors).toStrictEqual([]);
    expect(r.converged).toBe(true);
    expect(r.pruned).toBe(true);
    expect(r.kernelOps).toStrictEqual({ link_create: 1, link_set: 1, peer_set: 4, route_replace: 5 });
    // Peers and routes are written concurrently (outside a rotation): each in its own order,
    // interleaved however the two calls happen to run; the rules after both.
    const peersAndRoutes = e.journal.entries.slice(2, 11);
    expect(peersAndRoutes.filter((j) => j.op === 'wg.peer_set')).toStrictEqual(
      [K('node-b'), K('node-c'), K('node-d'), K('node-e')].map((target) => ({ op: 'wg.peer_set', target })),
    );
    expect(peersAndRoutes.filter((j) => j.op === 'route.replace')).toStrictEqual(
      ['100.64.2.0/24', '100.64.3.0/24', '100.64.4.0/24', '100.64.5.0/24', 'fd00:64:5::/64'].map((target) => ({
        op: 'route.replace',
        target,
      })),
    );
    expect([...e.journal.entries.slice(0, 2), ...e.journal.entries.slice(11)]).toStrictEqual([
      { op: 'wg.link_create', target: 'sealwg0' },
      { op: 'link.set', target: 'sealwg0' },
      { op: 'rule.ensure', target: '4 90 5188' },
      // node-e's IPv6 pod CIDR is routed through our table, so IPv6 needs the rule as well.
      { op: 'rule.ensure', target: '6 90 5188' },
    ]);
    expectConverged(e);
    expect(e.routing.rules).toStrictEqual([
      { priority: 90, table: 5188, family: 4, protocol: 206 },
      { priority: 90, table: 5188, family: 6, protocol: 206 },
    ]);
    expect(e.wg.links.get('sealwg0')).toMatchObject({
      publicKey: K('node-a'),
      privateKeyFile: KEY_FILE,
      listenPort: 51880,
      fwmark: 0x5188,
    });
    expect(e.wg.privateKeyLoads).toBe(1);
    expect(e.wg.sessionResets).toBe(0);

    expect(e.store.patches).toStrictEqual([
      {
        name: 'node-a',
        annotations: {
          'sealnet.io/version': '1',
          'sealnet.io/mode': 'wireguard',
          'sealnet.io/wireguard-public-key': K('node-a'),
          'sealnet.io/endpoint': '198.18.0.1:51880',
          'sealnet.io/key-epoch': '1',
          'sealnet.io/key-created': '2024-03-04T05:06:07.000Z',
        },
      },
    ]);
    // Foreign annotations survive the merge.
    expect(e.store.get('node-a')!.annotations['node.alpha.kubernetes.io/ttl']).toBe('0');

    expect(await metric(e.metrics, 'sealnet_kernel_operations_total', { op: 'peer_set' })).toBe(4);
    expect(await metric(e.metrics, 'sealnet_kernel_operations_total', { op: 'route_replace' })).toBe(5);
    expect(await metric(e.metrics, 'sealnet_kernel_operations_total', { op: 'link_create' })).toBe(1);
    expect(await metric(e.metrics, 'sealnet_peers')).toBe(4);
    expect(await metric(e.metrics, 'sealnet_reconciles_total', { result: 'ok' })).toBe(1);
  });

  it('second pass with nothing changed: zero kernel writes, no patch', async () => {
    const e = await converged();
    const mark = e.journal.count;
    const [wgMut, rtMut, patches] = [e.wg.mutations, e.routing.mutations, e.store.patches.length];
    const before = kernelState(e);

    const r = await e.reconciler.runNow();

    expect(r.errors).toStrictEqual([]);
    expect(r.kernelOps).toStrictEqual({});
    expect(r.converged).toBe(true);
    expect(e.journal.count).toBe(mark);
    expect(e.wg.mutations).toBe(wgMut);
    expect(e.routing.mutations).toBe(rtMut);
    expect(e.store.patches).toHaveLength(patches);
    expect(kernelState(e)).toStrictEqual(before);
    expect(e.log.entries.filter((x) => x.msg === 'kernel state updated')).toHaveLength(1); // the first pass only
  });

  it('uses the configured underlay MTU, follows underlay changes', async () => {
    const e = await converged();
    e.routing.links.get('eth0')!.mtu = 9000;
    const mark = e.journal.count;
    const r = await e.reconciler.runNow();
    expect(r.kernelOps).toStrictEqual({ link_set: 1, route_replace: 5 });
    expect(e.journal.since(mark).map((j) => j.op)).toStrictEqual([
      'link.set',
      'route.replace',
      'route.replace',
      'route.replace',
      'route.replace',
      'route.replace',
    ]);
    expectConverged(e, 8940);
  });

  it('waits (no kernel writes) while its own node is not in the store', async () => {
    const e = setup({ nodes: C.nodes.filter((n) => n.name !== 'node-a') });
    const r = await e.reconciler.runNow();
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.step).toBe('self');
    expect(r.errors[0]!.message).toContain('node node-a is not in the node store yet');
    expect(r.converged).toBe(false);
    expect(e.journal.count).toBe(0);
  });

  it('a failed publish is reported but the tunnels are still programmed', async () => {
    const e = setup();
    e.store.failNextPatch();
    const r = await e.reconciler.runNow();
    expect(r.errors.map((x) => x.step)).toStrictEqual(['publish']);
    expectConverged(e);
    // Next pass publishes, and touches nothing else.
    const mark = e.journal.count;
    const r2 = await e.reconciler.runNow();
    expect(r2.errors).toStrictEqual([]);
    expect(e.store.patches).toHaveLength(1);
    expect(e.journal.count).toBe(mark);
  });
});

describe('Reconciler: adopt, then prune only after sync, and only what it owns', () => {
  it('before sync nothing is pruned, even with a partial node list', async () => {
    const e = await converged();
    // A restarted agent whose store has so far delivered only its own node.
    e.store.remove('node-b');
    e.store.remove('node-c');
    e.store.remove('node-d');
    e.store.remove('node-e');
    e.store.setSynced(false);
    const before = kernelState(e);
    const r = await e.restart().runNow();
    expect(r.pruned).toBe(false);
    expect(r.converged).toBe(false);
    expect(r.kernelOps).toStrictEqual({});
    expect(kernelState(e)).toStrictEqual(before);
  });

  it('after sync, stale peers and routes are pruned: routes first, foreign routes untouched', async () => {
    // The agent knew node-x; node-x was deleted while the agent was down.
    const keyX = fixtureKey(24);
    const nodeX: RawNode = {
      name: 'node-x',
      annotations: sealnetAnnotations(keyX, '198.18.0.24:51880'),
      podCIDRs: ['100.64.24.0/24'],
      internalIPs: ['198.18.0.24'],
    };
    const e = setup({ nodes: [...C.nodes.map((n) => (n.name === 'node-a' ? { ...n, annotations: {} } : n)), nodeX] });
    await e.reconciler.runNow();
    expect(e.wg.peersOf('sealwg0').map((p) => p.publicKey)).toContain(keyX);
    expect(e.routing.routesIn(5188).map((r) => r.dst)).toContain('100.64.24.0/24');

    e.store.remove('node-x');
    e.store.setSynced(false);
    const agent = e.restart();
    const mark = e.journal.count;
    const r1 = await agent.runNow();
    expect(r1.pruned).toBe(false);
    expect(e.journal.count).toBe(mark);

    e.store.setSynced(true);
    const r2 = await agent.runNow();
    expect(r2.errors).toStrictEqual([]);
    expect(r2.pruned).toBe(true);
    expect(r2.converged).toBe(true);
    expect(r2.kernelOps).toStrictEqual({ route_delete: 1, peer_remove: 1 });
    expect(e.journal.since(mark)).toStrictEqual([
      { op: 'route.delete', target: '100.64.24.0/24' },
      { op: 'wg.peer_remove', target: keyX },
    ]);
    expectConverged(e);
  });

  it('a route of another protocol in our table is never deleted, even when nothing wants it', async () => {
    const e = await converged();
    // Every remote node gone: everything sealnet owns goes, the foreign route stays.
    for (const n of ['node-b', 'node-c', 'node-d', 'node-e']) e.store.remove(n);
    const r = await e.reconciler.runNow();
    expect(r.errors).toStrictEqual([]);
    expect(e.routing.routesIn(5188)).toStrictEqual([FOREIGN_IN_OUR_TABLE]);
    expect(e.routing.routesIn(MAIN_TABLE)).toStrictEqual([CNI_ROUTE]);
    expect(e.wg.peersOf('sealwg0')).toStrictEqual([]);
  });

  it('a restart performs zero kernel writes and never reloads the private key', async () => {
    const e = await converged();
    const mark = e.journal.count;
    const before = kernelState(e);
    for (const synced of [false, true]) {
      e.store.setSynced(synced);
      const r = await e.restart().runNow();
      expect(r.errors).toStrictEqual([]);
      expect(r.kernelOps).toStrictEqual({});
      expect(r.converged).toBe(synced);
    }
    expect(e.journal.count).toBe(mark);
    expect(e.wg.privateKeyLoads).toBe(1);
    expect(e.wg.sessionResets).toBe(0);
    expect(kernelState(e)).toStrictEqual(before);
  });

  it('the fake does observe a private-key change as a session reset (so the test above can fail)', async () => {
    const e = await converged();
    await e.wg.ensureLink({
      name: 'sealwg0',
      privateKeyFile: KEY_FILE,
      publicKey: K('node-b'),
      listenPort: 51880,
      fwmark: 0x5188,
    });
    expect(e.wg.sessionResets).toBe(1);
    expect(e.wg.privateKeyLoads).toBe(2);
  });

  it("after a restart, a node copying a working peer's key does not tear the working pair down", async () => {
    const e = await converged();
    const copycat: RawNode = {
      name: 'node-f',
      annotations: sealnetAnnotations(K('node-b'), '198.18.0.6:51880'),
      podCIDRs: ['100.64.6.0/24'],
      internalIPs: ['198.18.0.6'],
    };
    e.store.upsert(copycat);
    const mark = e.journal.count;
    const r = await e.restart().runNow();
    expect(r.desired!.skipped).toStrictEqual([
      {
        name: 'node-f',
        reason: 'duplicate-key',
        detail: 'nodes node-b and node-f publish the same public key; node-b had it first',
      },
    ]);
    expect(e.journal.count).toBe(mark);
    expectConverged(e);
  });

  it('while running, the established owner of a key keeps it', async () => {
    const e = await converged();
    e.store.upsert({
      name: 'node-f',
      annotations: sealnetAnnotations(K('node-c'), '198.18.0.6:51880'),
      podCIDRs: ['100.64.6.0/24'],
      internalIPs: ['198.18.0.6'],
    });
    const mark = e.journal.count;
    const r = await e.reconciler.runNow();
    expect(r.desired!.skipped.map((s) => [s.name, s.reason])).toStrictEqual([['node-f', 'duplicate-key']]);
    expect(e.journal.count).toBe(mark);
    expectConverged(e);
  });
});

describe('Reconciler: changes', () => {
  it('node key change: new peer set before the old one is removed, allowed IPs never unowned', async () => {
    const e = await converged();
    const newKey = fixtureKey(22);
    const b = e.store.get('node-b')!;
    e.store.upsert({
      ...b,
      annotations: { ...b.annotations, 'sealnet.io/wireguard-public-key': newKey, 'sealnet.io/key-epoch': '2' },
    });
    const mark = e.journal.count;
    const historyMark = e.wg.ownershipHistory.length;

    const r = await e.reconciler.runNow();

    expect(r.errors).toStrictEqual([]);
    expect(r.kernelOps).toStrictEqual({ peer_set: 1, peer_remove: 1 });
    expect(e.journal.since(mark)).toStrictEqual([
      { op: 'wg.peer_set', target: newKey },
      { op: 'wg.peer_remove', target: K('node-b') },
    ]);
    // After every single change, every remote pod CIDR belonged to some peer.
    const snapshots = e.wg.ownershipHistory.slice(historyMark);
    expect(snapshots).toHaveLength(2);
    for (const s of snapshots) {
      expect([...s.keys()].sort()).toStrictEqual([
        '100.64.2.0/24',
        '100.64.3.0/24',
        '100.64.4.0/24',
        '100.64.5.0/24',
        'fd00:64:5::/64',
      ]);
    }
    expect(snapshots[0]!.get('100.64.2.0/24')).toBe(newKey);
    expect(e.wg.ownership('sealwg0').get('100.64.2.0/24')).toBe(newKey);
    expect(e.wg.peersOf('sealwg0').map((p) => p.publicKey)).toStrictEqual([
      K('node-c'),
      K('node-d'),
      K('node-e'),
      newKey,
    ]);
    expect(e.wg.sessionResets).toBe(0);
  });

  it('node leaves: its route is deleted before its peer', async () => {
    const e = await converged();
    e.store.remove('node-c');
    const mark = e.journal.count;
    const r = await e.reconciler.runNow();
    expect(r.errors).toStrictEqual([]);
    expect(e.journal.since(mark)).toStrictEqual([
      { op: 'route.delete', target: '100.64.3.0/24' },
      { op: 'wg.peer_remove', target: K('node-c') },
    ]);
    expect(e.wg.peersOf('sealwg0').map((p) => p.publicKey)).toStrictEqual([K('node-b'), K('node-d'), K('node-e')]);
    expect(e.routing.routesIn(5188).map((x) => x.dst)).toStrictEqual([
      '100.64.2.0/24',
      '100.64.4.0/24',
      '100.64.5.0/24',
      '100.64.200.0/24',
      'fd00:64:5::/64',
    ]);
  });

  it('endpoint change re-sets only that peer', async () => {
    const e = await converged();
    const d = e.store.get('node-d')!;
    e.store.upsert({ ...d, annotations: { ...d.annotations, 'sealnet.io/endpoint': '198.18.0.44:51880' } });
    const mark = e.journal.count;
    const r = await e.reconciler.runNow();
    expect(r.kernelOps).toStrictEqual({ peer_set: 1 });
    expect(e.journal.since(mark)).toStrictEqual([{ op: 'wg.peer_set', target: K('node-d') }]);
    expect(e.wg.peersOf('sealwg0')[2]!.endpoint).toBe('198.18.0.44:51880');
  });

  it('an IPv6 endpoint spelled non-canonically does not cause a write on every pass', async () => {
    const e = await converged();
    const d = e.store.get('node-d')!;
    e.store.upsert({ ...d, annotations: { ...d.annotations, 'sealnet.io/endpoint': '[FD00:198:18:0:0:0:0:4]:51880' } });
    await e.reconciler.runNow();
    expect(e.wg.peersOf('sealwg0')[2]!.endpoint).toBe('[fd00:198:18::4]:51880');
    const mark = e.journal.count;
    const r = await e.reconciler.runNow();
    expect(r.kernelOps).toStrictEqual({});
    expect(e.journal.count).toBe(mark);
  });
});

describe('Reconciler: failures', () => {
  it('a failing peer update is reported, routes for every node still go in, next pass recovers', async () => {
    const e = setup();
    e.wg.failNext('applyPeers', 1, 'wg set sealwg0: Operation not permitted');
    const r = await e.reconciler.runNow();

    expect(r.errors).toStrictEqual([{ step: 'peers', message: 'wg set sealwg0: Operation not permitted' }]);
    expect(r.converged).toBe(false);
    expect(e.wg.peersOf('sealwg0')).toStrictEqual([]);
    expect(e.routing.routesIn(5188)).toStrictEqual(expectedTable());
    expect(await metric(e.metrics, 'sealnet_reconcile_errors_total', { step: 'peers' })).toBe(1);
    expect(await metric(e.metrics, 'sealnet_reconciles_total', { result: 'error' })).toBe(1);
    expect(e.log.at('error').map((x) => x.obj.step)).toStrictEqual(['peers']);

    const mark = e.journal.count;
    const r2 = await e.reconciler.runNow();
    expect(r2.errors).toStrictEqual([]);
    expect(r2.kernelOps).toStrictEqual({ peer_set: 4 });
    expect(e.journal.since(mark).every((j) => j.op === 'wg.peer_set')).toBe(true);
    expectConverged(e);
  });

  it('a failing key-change set keeps the old peer (no gap), and the next pass completes the move', async () => {
    const e = await converged();
    const newKey = fixtureKey(22);
    const b = e.store.get('node-b')!;
    e.store.upsert({ ...b, annotations: { ...b.annotations, 'sealnet.io/wireguard-public-key': newKey } });
    e.wg.failNext('applyPeers');
    const r = await e.reconciler.runNow();
    expect(r.errors.map((x) => x.step)).toStrictEqual(['peers']);
    expect(e.wg.ownership('sealwg0').get('100.64.2.0/24')).toBe(K('node-b'));

    const r2 = await e.reconciler.runNow();
    expect(r2.errors).toStrictEqual([]);
    expect(r2.kernelOps).toStrictEqual({ peer_set: 1, peer_remove: 1 });
    expect(e.wg.ownership('sealwg0').get('100.64.2.0/24')).toBe(newKey);
  });

  it('one failing route does not stop the others; the next pass installs just that one', async () => {
    const e = setup();
    e.routing.failNext('replaceRoute', 1, 'RTNETLINK answers: No buffer space available');
    const r = await e.reconciler.runNow();
    expect(r.errors).toStrictEqual([{ step: 'routes', message: 'RTNETLINK answers: No buffer space available' }]);
    expect(r.kernelOps).toMatchObject({ peer_set: 4, route_replace: 4 });
    expect(e.routing.routesIn(5188).map((x) => x.dst)).toStrictEqual([
      '100.64.3.0/24',
      '100.64.4.0/24',
      '100.64.5.0/24',
      '100.64.200.0/24',
      'fd00:64:5::/64',
    ]);
    expect(e.routing.rules).toHaveLength(2);

    const mark = e.journal.count;
    const r2 = await e.reconciler.runNow();
    expect(r2.kernelOps).toStrictEqual({ route_replace: 1 });
    expect(e.journal.since(mark)).toStrictEqual([{ op: 'route.replace', target: '100.64.2.0/24' }]);
    expectConverged(e);
  });

  it('a link that cannot be created stops the pass before anything else', async () => {
    const e = setup();
    e.wg.failNext('ensureLink', 1, 'RTNETLINK answers: Operation not supported');
    const r = await e.reconciler.runNow();
    expect(r.errors).toStrictEqual([{ step: 'link', message: 'RTNETLINK answers: Operation not supported' }]);
    expect(e.journal.count).toBe(0);
    expect(e.store.patches).toStrictEqual([]);
  });

  it('never throws: an observe failure is a report', async () => {
    const e = await converged();
    e.routing.failNext('listRoutes');
    const r: ReconcileReport = await e.reconciler.runNow();
    expect(r.errors.map((x) => x.step)).toStrictEqual(['observe']);
    expect(r.desired).toBeUndefined();
  });
});

describe('Reconciler: malformed nodes', () => {
  const broken = (): RawNode => ({
    name: 'node-f',
    annotations: sealnetAnnotations('this-is-not-a-key', '198.18.0.6:51880'),
    podCIDRs: ['100.64.6.0/24'],
    internalIPs: ['198.18.0.6'],
  });

  it('skipped, logged once, counted, and every other pair stays programmed', async () => {
    const e = setup();
    e.store.upsert(broken());
    const reports: ReconcileReport[] = [];
    for (let i = 0; i < 3; i++) reports.push(await e.reconciler.runNow());

    for (const r of reports) {
      expect(r.errors).toStrictEqual([]);
      expect(r.desired!.skipped).toStrictEqual([
        {
          name: 'node-f',
          reason: 'annotations-invalid',
          detail:
            'node node-f: sealnet.io/wireguard-public-key: public key is 17 characters, want 44 (base64 of 32 bytes)',
        },
      ]);
    }
    expect(reports[1]!.kernelOps).toStrictEqual({});
    expect(reports[2]!.kernelOps).toStrictEqual({});
    const warnings = e.log.at('warn').filter((x) => x.msg.includes('node-f'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.msg).toBe(
      'skipping node node-f: node node-f: sealnet.io/wireguard-public-key: public key is 17 characters, want 44 (base64 of 32 bytes)',
    );
    expect(warnings[0]!.obj.reason).toBe('annotations-invalid');
    expect(await metric(e.metrics, 'sealnet_invalid_input_total', { source: 'annotations' })).toBe(1);
    expect(await metric(e.metrics, 'sealnet_nodes_skipped', { reason: 'annotations-invalid' })).toBe(1);
    expectConverged(e);
  });

  it('a second malformed node is logged without logging the first one again', async () => {
    const e = setup();
    e.store.upsert(broken());
    await e.reconciler.runNow();
    e.store.upsert({
      ...broken(),
      name: 'node-g',
      annotations: sealnetAnnotations(fixtureKey(7), '198.18.0.7:51880', { 'sealnet.io/version': '2' }),
    });
    await e.reconciler.runNow();
    await e.reconciler.runNow();
    expect(e.log.at('warn').filter((x) => x.msg.includes('node-f'))).toHaveLength(1);
    expect(e.log.at('warn').filter((x) => x.msg.includes('node-g'))).toHaveLength(1);
    expect(await metric(e.metrics, 'sealnet_invalid_input_total', { source: 'annotations' })).toBe(2);
    expect(await metric(e.metrics, 'sealnet_nodes_skipped', { reason: 'annotations-invalid' })).toBe(1);
    expect(await metric(e.metrics, 'sealnet_nodes_skipped', { reason: 'version-unsupported' })).toBe(1);
  });

  it('fixed, it is programmed and no longer counted; broken again, it is logged again', async () => {
    const e = setup();
    e.store.upsert(broken());
    await e.reconciler.runNow();
    const keyF = fixtureKey(6);
    e.store.upsert({ ...broken(), annotations: sealnetAnnotations(keyF, '198.18.0.6:51880') });
    const r = await e.reconciler.runNow();
    expect(r.kernelOps).toStrictEqual({ peer_set: 1, route_replace: 1 });
    expect(await metric(e.metrics, 'sealnet_nodes_skipped', { reason: 'annotations-invalid' })).toBe(0);

    e.store.upsert(broken());
    const r3 = await e.reconciler.runNow();
    expect(r3.kernelOps).toStrictEqual({ route_delete: 1, peer_remove: 1 });
    expect(e.log.at('warn').filter((x) => x.msg.includes('node-f'))).toHaveLength(2);
    expect(await metric(e.metrics, 'sealnet_invalid_input_total', { source: 'annotations' })).toBe(2);
    expectConverged(e);
  });

  it('a node that simply has not published yet is not counted as invalid input', async () => {
    const e = setup();
    e.store.upsert({ name: 'node-f', annotations: {}, podCIDRs: ['100.64.6.0/24'], internalIPs: ['198.18.0.6'] });
    await e.reconciler.runNow();
    expect(await metric(e.metrics, 'sealnet_invalid_input_total', { source: 'annotations' })).toBe(0);
    expect(await metric(e.metrics, 'sealnet_nodes_skipped', { reason: 'annotations-missing' })).toBe(1);
  });
});

describe('Reconciler: scheduling', () => {
  it('coalesces a burst of triggers into one pass; close() stops scheduling', async () => {
    const e = setup();
    for (let i = 0; i < 5; i++) e.reconciler.trigger();
    await new Promise((r) => setTimeout(r, 50));
    expect(await metric(e.metrics, 'sealnet_reconciles_total', { result: 'ok' })).toBe(1);
    expect(e.reconciler.report()?.converged).toBe(true);
    await e.reconciler.close();
    e.reconciler.trigger();
    await new Promise((r) => setTimeout(r, 30));
    expect(await metric(e.metrics, 'sealnet_reconciles_total', { result: 'ok' })).toBe(1);
  });

  it('logs how long a triggered pass was queued after its first trigger (none for a pass run directly)', async () => {
    const e = setup();
    await e.reconciler.runNow();
    const first = e.log.entries.filter((x) => x.msg === 'kernel state updated');
    expect(first).toHaveLength(1);
    expect(first[0]?.obj).not.toHaveProperty('queuedMs');
    e.store.upsert({
      name: 'node-f',
      annotations: sealnetAnnotations(fixtureKey(26), '198.18.0.6:51880'),
      podCIDRs: ['100.64.6.0/24'],
      internalIPs: ['198.18.0.6'],
    });
    const t0 = Date.now();
    e.reconciler.trigger();
    e.reconciler.trigger();
    await new Promise((r) => setTimeout(r, 100));
    const lines = e.log.entries.filter((x) => x.msg === 'kernel state updated');
    expect(lines).toHaveLength(2);
    const queued = lines[1]?.obj.queuedMs;
    expect(typeof queued).toBe('number');
    expect(queued as number).toBeGreaterThanOrEqual(0);
    expect(queued as number).toBeLessThanOrEqual(Date.now() - t0);
  });

  it('names the pass a change waited behind: a store event during a full pass logs queuedBehind with that pass', async () => {
    const e = setup();
    await e.reconciler.runNow();
    // The next full pass takes 80 ms in its kernel read; a node joins while it runs.
    const show = e.wg.show.bind(e.wg);
    let slow = true;
    e.wg.show = async (...args: Parameters<typeof e.wg.show>) => {
      if (slow) {
        slow = false;
        setTimeout(() => {
          e.store.upsert({
            name: 'node-f',
            annotations: sealnetAnnotations(fixtureKey(26), '198.18.0.6:51880'),
            podCIDRs: ['100.64.6.0/24'],
            internalIPs: ['198.18.0.6'],
          });
          e.reconciler.trigger();
        }, 20);
        await new Promise((r) => setTimeout(r, 80));
      }
      return show(...args);
    };
    await e.reconciler.runNow({ full: true });
    await new Promise((r) => setTimeout(r, 100));
    const lines = e.log.entries.filter((x) => x.msg === 'kernel state updated');
    const last = lines[lines.length - 1]?.obj;
    expect(last?.ops).toMatchObject({ peer_set: 1 });
    const behind = last?.queuedBehind as { full: boolean; ms: number } | undefined;
    expect(behind?.full).toBe(true);
    expect(behind?.ms).toBeGreaterThanOrEqual(40);
    expect(behind?.ms).toBeLessThanOrEqual(last?.queuedMs as number);
    // A pass whose trigger came while nothing ran waited behind nothing.
    expect(lines[0]?.obj).not.toHaveProperty('queuedBehind');
  });
});
