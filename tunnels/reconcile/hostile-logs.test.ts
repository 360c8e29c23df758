/**
 * Hostile peers, class "noise" (issue 16 findings 2, 6 and 11), at the reconciler against the
 * kernel-like fakes: a node that rewrites its annotation every second gets a bounded number of
 * log lines (per node and reason, the rest counted and summed up), refused node addresses and
 * key-ownership conflicts are counted in O(1) series (by reason, never by node).
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { recordOwners, type KeyOwners } from '../../keymgr/keyowners.js';
import { sodiumReady } from '../../keymgr/keys.js';
import { createNodeAKernel, MemoryNodeStore } from '../ports/kernel.fake.js';
import { fixtureCluster, fixtureKey, sealnetAnnotations, type FixtureCluster } from '../../test/fixtures.js';
import { ANNOTATIONS } from '../../common/constants.js';
import { validateConfig } from '../agent/config.js';
import type { Logger } from '../../common/logger.js';
import { createMetrics, type AgentMetrics } from '../../common/metrics.js';
import type { LogRateLimitOptions } from '../../common/ratelimit.js';
import type { RawNode } from '../ports/model.js';
import { Reconciler } from './reconciler.js';

let C: FixtureCluster;
beforeAll(async () => {
  await sodiumReady();
  C = fixtureCluster();
});

interface Line {
  level: string;
  obj: Record<string, unknown>;
  msg: string;
}

function capture(): Logger & { lines: Line[] } {
  const lines: Line[] = [];
  const at =
    (level: string) =>
    (obj: object, msg: string): void => {
      lines.push({ level, obj: obj as Record<string, unknown>, msg });
    };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

async function metric(m: AgentMetrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const got = await m.registry.getSingleMetric(name)!.get();
  const want = Object.entries(labels);
  const v = got.values.find(
    (s) => Object.keys(s.labels).length === want.length && want.every(([k, x]) => s.labels[k] === x),
  );
  return v?.value ?? 0;
}

/** In-memory first-seen ownership, as keymgr/keyowners.ts keeps it minus the file. */
function memoryOwners(): { owners: KeyOwners; record: (c: Record<string, readonly string[]>, now: number) => any[] } {
  let owners: KeyOwners = {};
  return {
    get owners() {
      return owners;
    },
    record(claims, now) {
      const r = recordOwners(owners, claims, now);
      owners = r.owners;
      return [...r.conflicts];
    },
  };
}

function setup(
  opts: { nodeToNode?: boolean; logLimit?: LogRateLimitOptions; keyOwners?: ReturnType<typeof memoryOwners> } = {},
) {
  const { wg, routing } = createNodeAKernel({ loopbackAddress: true });
  const store = new MemoryNodeStore(
    C.nodes.filter((n) => n.name !== 'node-e'),
    { synced: true },
  );
  const config = validateConfig({
    nodeName: 'node-a',
    store: { type: 'file', dir: '/unused' },
    debounceMs: 0,
    ...(opts.nodeToNode === true ? { steering: { nodeToNode: true } } : {}),
  });
  const log = capture();
  const metrics = createMetrics();
  const clock = { now: 1_000_000 };
  const reconciler = new Reconciler({
    config,
    key: { publicKey: C.keys['node-a'], privateKeyFile: '/k', epoch: 1, createdAt: new Date(0) },
    store,
    wg,
    routing,
    log,
    metrics,
    now: () => clock.now,
    ...(opts.logLimit !== undefined ? { logLimit: opts.logLimit } : {}),
    ...(opts.keyOwners !== undefined ? { keyOwners: opts.keyOwners } : {}),
  });
  return { store, log, metrics, clock, reconciler };
}

/** node-h flipping between two malformed keys (`i` odd or even): a new skip detail each change. */
function churning(i: number): RawNode {
  return {
    name: 'node-h',
    annotations: sealnetAnnotations(i % 2 === 0 ? 'junk' : 'junkjunk', '198.18.0.66:51880'),
    podCIDRs: ['100.64.66.0/24'],
    internalIPs: ['198.18.0.66'],
  };
}

const about = (lines: Line[], node: string): Line[] => lines.filter((l) => l.level === 'warn' && l.obj.peer === node);

describe('a node that changes its annotation every second', () => {
  it('gets at most a burst and then one line a minute per reason on each agent; the rest is counted and summed up', async () => {
    const e = setup();
    const changes = 600; // ten minutes
    for (let i = 0; i < changes; i++) {
      e.store.upsert(churning(i));
      await e.reconciler.runNow({ full: false });
      e.clock.now += 1000;
    }
    // A quiet minute later (a periodic resync) the rest is summed up.
    e.clock.now += 60_000;
    await e.reconciler.runNow();
    const lines = about(e.log.lines, 'node-h');
    const skipLines = lines.filter((l) => l.msg.startsWith('skipping node node-h'));
    const summaries = lines.filter((l) => l.msg.startsWith('held back'));
    // 3 at once, then one a minute for ten minutes.
    expect(skipLines.length).toBeGreaterThanOrEqual(3);
    expect(skipLines.length).toBeLessThanOrEqual(3 + 10);
    const suppressed = await metric(e.metrics, 'sealnet_log_lines_suppressed_total', { reason: 'annotations-invalid' });
    expect(suppressed).toBe(changes - skipLines.length);
    // Every held-back line is accounted for in a later line (a skip line or a summary).
    const told = [...skipLines, ...summaries].reduce((n, l) => n + ((l.obj.suppressed as number | undefined) ?? 0), 0);
    expect(told).toBe(suppressed);
    expect(summaries.at(-1)?.msg).toMatch(/^held back \d+ lines about node node-h \(annotations-invalid\)/);
    // Counting is not rate-limited: every change is invalid input.
    expect(await metric(e.metrics, 'sealnet_invalid_input_total', { source: 'annotations' })).toBe(changes);
    expect(await metric(e.metrics, 'sealnet_nodes_skipped', { reason: 'annotations-invalid' })).toBe(1);
    // No per-node series anywhere.
    expect(await e.metrics.registry.metrics()).not.toContain('node-h');
  });

  it('control: without the limit (an unbounded burst) every change is a line', async () => {
    const e = setup({ logLimit: { burst: 1e9 } });
    for (let i = 0; i < 100; i++) {
      e.store.upsert(churning(i));
      await e.reconciler.runNow({ full: false });
      e.clock.now += 1000;
    }
    expect(about(e.log.lines, 'node-h').filter((l) => l.msg.startsWith('skipping node'))).toHaveLength(100);
  });

  it('does not silence another node: a second bad node still gets its line at once', async () => {
    const e = setup();
    for (let i = 0; i < 30; i++) {
      e.store.upsert(churning(i));
      await e.reconciler.runNow({ full: false });
      e.clock.now += 1000;
    }
    e.store.upsert({
      name: 'node-g',
      annotations: sealnetAnnotations(fixtureKey(67), '198.18.0.67:51880', { [ANNOTATIONS.version]: '9' }),
      podCIDRs: ['100.64.67.0/24'],
      internalIPs: ['198.18.0.67'],
    });
    await e.reconciler.runNow({ full: false });
    expect(about(e.log.lines, 'node-g')).toHaveLength(1);
    expect(about(e.log.lines, 'node-g')[0]!.obj.reason).toBe('version-unsupported');
  });
});

describe('refused node addresses (node-to-node mode) are counted by reason', () => {
  const claims = [
    '198.18.0.66', // its own: taken
    '169.254.169.254', // metadata: link-local
    '224.0.0.1', // multicast
    '8.8.8.8', // a public resolver: outside the node networks
    '198.18.0.2', // node-b's InternalIP and endpoint: node-b keeps it
    '198.18.0.1', // this node's own
    '100.64.2.5', // inside node-b's pod CIDR
  ];

  it('one gauge and one counter by reason, no per-node series; a line for each, once', async () => {
    const e = setup({ nodeToNode: true });
    e.store.upsert({
      name: 'node-h',
      annotations: sealnetAnnotations(fixtureKey(66), '198.18.0.66:51880'),
      podCIDRs: ['100.64.66.0/24'],
      internalIPs: claims,
    });
    let r;
    for (let i = 0; i < 3; i++) r = await e.reconciler.runNow();
    expect(r!.desired?.rejectedAddresses).toEqual([
      { node: 'node-h', address: '169.254.169.254', reason: 'not-unicast' },
      { node: 'node-h', address: '224.0.0.1', reason: 'not-unicast' },
      { node: 'node-h', address: '8.8.8.8', reason: 'outside-node-cidrs' },
      { node: 'node-h', address: '198.18.0.1', reason: 'own-address' },
      { node: 'node-h', address: '100.64.2.5', reason: 'in-pod-cidr' },
      { node: 'node-h', address: '198.18.0.2/32', reason: 'contested' },
    ]);
    const gauge = (reason: string): Promise<number> => metric(e.metrics, 'sealnet_node_addresses_rejected', { reason });
    const total = (reason: string): Promise<number> =>
      metric(e.metrics, 'sealnet_node_address_rejections_total', { reason });
    expect(await gauge('not-unicast')).toBe(2);
    expect(await gauge('outside-node-cidrs')).toBe(1);
    expect(await gauge('own-address')).toBe(1);
    expect(await gauge('in-pod-cidr')).toBe(1);
    expect(await gauge('contested')).toBe(1);
    // Three passes, each refusal counted once.
    expect(await total('not-unicast')).toBe(2);
    expect(await total('contested')).toBe(1);
    const lines = about(e.log.lines, 'node-h').filter((l) => l.msg.startsWith('not taking address'));
    expect(lines.map((l) => l.obj.reason)).toEqual([
      'address-not-unicast',
      'address-not-unicast',
      'address-outside-node-cidrs',
      'address-own-address',
      'address-in-pod-cidr',
      'address-contested',
    ]);
    expect(await e.metrics.registry.metrics()).not.toContain('node-h');
    // node-b keeps its address; node-h gets only its own.
    const desired = r!.desired!.tunnel;
    const allowed =
      desired.kind === 'wireguard' ? Object.fromEntries(desired.peers.map((p) => [p.node, p.allowedIPs])) : {};
    expect(allowed['node-b']).toEqual(['100.64.2.0/24', '198.18.0.2/32']);
    expect(allowed['node-h']).toEqual(['100.64.66.0/24', '198.18.0.66/32']);

    // The node withdraws its claims: the gauge goes back to 0, the counter stays.
    e.store.upsert({
      name: 'node-h',
      annotations: sealnetAnnotations(fixtureKey(66), '198.18.0.66:51880'),
      podCIDRs: ['100.64.66.0/24'],
      internalIPs: ['198.18.0.66'],
    });
    await e.reconciler.runNow();
    expect(await gauge('not-unicast')).toBe(0);
    expect(await total('not-unicast')).toBe(2);
  });

  it('a node listing thousands of addresses costs at most MAX_NODE_ADDRESSES rows', async () => {
    const e = setup({ nodeToNode: true });
    e.store.upsert({
      name: 'node-h',
      annotations: sealnetAnnotations(fixtureKey(66), '198.18.0.66:51880'),
      podCIDRs: ['100.64.66.0/24'],
      internalIPs: Array.from({ length: 5000 }, (_, i) => `224.0.${i >> 8}.${i & 255}`),
    });
    const r = await e.reconciler.runNow();
    expect(r.desired?.rejectedAddresses).toHaveLength(8);
  });
});

describe('key-ownership conflicts are counted', () => {
  it('a node copying an honest key: sealnet_key_owner_conflicts_total counts it once, the owner keeps its peer', async () => {
    const owners = memoryOwners();
    const e = setup({ keyOwners: owners });
    await e.reconciler.runNow();
    expect(await metric(e.metrics, 'sealnet_key_owner_conflicts_total')).toBe(0);
    e.store.upsert({
      name: 'node-h',
      annotations: sealnetAnnotations(C.keys['node-b'], '198.18.0.66:51880'),
      podCIDRs: ['100.64.66.0/24'],
      internalIPs: ['198.18.0.66'],
    });
    let r;
    for (let i = 0; i < 3; i++) r = await e.reconciler.runNow();
    expect(await metric(e.metrics, 'sealnet_key_owner_conflicts_total')).toBe(1);
    expect(r!.desired?.skipped.find((s) => s.name === 'node-h')?.reason).toBe('duplicate-key');
    const t = r!.desired!.tunnel;
    expect(t.kind === 'wireguard' && t.peers.some((p) => p.node === 'node-b')).toBe(true);
  });
});

describe("a node that was an honest member takes another node's endpoint (finding 9, found by the e2e suite)", () => {
  const member = (endpoint: string): RawNode => ({
    name: 'node-h',
    annotations: sealnetAnnotations(fixtureKey(66), endpoint),
    podCIDRs: ['100.64.66.0/24'],
    internalIPs: ['198.18.0.66'],
  });

  it.each([
    ['in-memory history', false],
    ['first-seen key owners as well', true],
  ])('the node that had the endpoint keeps it (%s); only the taker is skipped', async (_, withOwners) => {
    const e = setup(withOwners ? { keyOwners: memoryOwners() } : {});
    e.store.upsert(member('198.18.0.66:51880'));
    const first = await e.reconciler.runNow();
    const t0 = first.desired!.tunnel;
    expect(t0.kind === 'wireguard' && t0.peers.map((p) => p.node)).toEqual(['node-b', 'node-c', 'node-d', 'node-h']);
    // Both node-b and node-h are now established with their keys; node-h takes node-b's endpoint host.
    e.store.upsert(member('198.18.0.2:51880'));
    const r = await e.reconciler.runNow();
    expect(r.desired!.skipped.map((s) => [s.name, s.reason])).toEqual([['node-h', 'endpoint-conflict']]);
    const t = r.desired!.tunnel;
    expect(t.kind === 'wireguard' && t.peers.find((p) => p.node === 'node-b')?.endpoint).toBe('198.18.0.2:51880');
  });

  it('after a restart (no memory), the endpoint held in the kernel decides', async () => {
    const e = setup();
    e.store.upsert(member('198.18.0.66:51880'));
    await e.reconciler.runNow();
    e.store.upsert(member('198.18.0.2:51880'));
    // A new agent process over the same kernel and store.
    const again = new Reconciler({
      ...(e.reconciler as unknown as { d: ConstructorParameters<typeof Reconciler>[0] }).d,
    });
    const r = await again.runNow();
    expect(r.desired!.skipped.map((s) => [s.name, s.reason])).toEqual([['node-h', 'endpoint-conflict']]);
  });
});
