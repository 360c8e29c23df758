import { afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fingerprint, sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import { KeyStore, type StoredKey } from '../../keymgr/keystore.js';
import { DEFAULT_ROTATION_SETTINGS } from '../../keymgr/rotation.js';
import { RotationStateFile } from '../../keymgr/rotationstore.js';
import {
  createFakeKernel,
  FakeMirror,
  MemoryNodeStore,
  type FakeRouting,
  type FakeWireGuard,
  type KernelJournal,
} from '../ports/kernel.fake.js';
import { fixtureCluster, fixtureKey, type FixtureCluster } from '../../test/fixtures.js';
import { validateConfig } from '../agent/config.js';
import { SealnetError } from '../../common/errors.js';
import { ANNOTATIONS } from '../../common/constants.js';
import type { Logger } from '../../common/logger.js';
import { createMetrics, type AgentMetrics } from '../../common/metrics.js';
import type { RawNode } from '../ports/model.js';
import { Reconciler } from './reconciler.js';
import { RotationController } from '../rotation/wireguard.js';
import { encodeRotateRequest, encodeRotationReports, encodeRotationStatus } from '../plan/rotation-codec.js';

// Key rotation through the reconciler, against kernel-like fakes (tunnels/ports/kernel.fake.ts) and a real key
// store and state file in a temporary directory. node-a is "us". Part 1: node-a rotates. Part 2:
// node-b rotates and node-a follows.

let C: FixtureCluster;
beforeAll(async () => {
  await sodiumReady();
  C = fixtureCluster();
});

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const T0 = Date.parse('2026-03-01T00:00:00.000Z');
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

interface Env {
  journal: KernelJournal;
  wg: FakeWireGuard;
  routing: FakeRouting;
  mirror: FakeMirror;
  store: MemoryNodeStore;
  keystore: KeyStore;
  stateDir: string;
  clock: { now: number };
  reconciler: Reconciler;
  rotation: RotationController;
  /** The metrics of the current agent process. */
  metrics: AgentMetrics;
  /** A new agent process over the same kernel, store and state directory. */
  restart(): Promise<void>;
  pass(): Promise<void>;
  ownKey(): PublicKey;
}

async function setup(): Promise<Env> {
  const stateDir = await mkdtemp(join(tmpdir(), 'sealnet-rot-'));
  dirs.push(stateDir);
  const { journal, wg, routing } = createFakeKernel();
  const mirror = new FakeMirror(wg);
  routing.addLink('lo', { mtu: 65536, up: true });
  routing.addLink('eth0', { mtu: 1500, up: true });
  routing.addLink('cni0', { mtu: 1500, up: true });
  routing.addAddress('198.18.0.1', 15, 'eth0');
  routing.addAddress('100.64.1.1', 24, 'cni0');
  const store = new MemoryNodeStore(
    C.nodes.map((n) => (n.name === 'node-a' ? { ...n, annotations: {} } : n)),
    { synced: true },
  );
  const config = validateConfig({
    nodeName: 'node-a',
    store: { type: 'file', dir: '/unused' },
    debounceMs: 0,
    steering: { enabled: false },
  });
  const clock = { now: T0 };
  const keystore = new KeyStore({ stateDir, now: () => new Date(clock.now) });
  const loaded = await keystore.loadOrCreate('wireguard');
  const settings = { ...DEFAULT_ROTATION_SETTINGS, graceMs: 30_000, peerTimeoutMs: 10_000, maxKeyAgeMs: 0 };
  const env = { journal, wg, routing, mirror, store, keystore, stateDir, clock } as Env;
  const make = async (): Promise<void> => {
    const metrics = createMetrics();
    env.metrics = metrics;
    const rotation = new RotationController({
      nodeName: 'node-a',
      listenPort: 51880,
      settings,
      keystore,
      stateFile: new RotationStateFile(stateDir),
      log: quiet,
      wake: () => undefined,
      now: () => clock.now,
      metrics,
    });
    await rotation.load();
    env.rotation = rotation;
    env.reconciler = new Reconciler({
      config,
      key: {
        publicKey: loaded.publicKey,
        privateKeyFile: loaded.privateKeyFile,
        epoch: loaded.epoch,
        createdAt: loaded.createdAt,
      },
      store,
      wg,
      routing,
      log: quiet,
      metrics,
      rotation,
      mirror,
    });
  };
  await make();
  env.restart = make;
  env.pass = async () => {
    const r = await env.reconciler.runNow();
    expect(r.errors).toStrictEqual([]);
  };
  env.ownKey = () => store.get('node-a')!.annotations[ANNOTATIONS.wireguardPublicKey] as PublicKey;
  return env;
}

/** Sets annotations on a peer node (as its agent would). */
function annotate(e: Env, node: string, ann: Record<string, string | undefined>): void {
  const n = e.store.get(node)!;
  const merged: Record<string, string> = { ...n.annotations };
  for (const [k, v] of Object.entries(ann)) {
    if (v === undefined) delete merged[k];
    else merged[k] = v;
  }
  e.store.upsert({ ...n, annotations: merged });
}

const PEERS = ['node-b', 'node-c', 'node-d', 'node-e'] as const;

/** Every peer reports `state` for node-a's next key. */
function report(e: Env, state: 'staged' | 'moved', key: PublicKey, only: readonly string[] = PEERS): void {
  for (const p of only)
    annotate(e, p, {
      [ANNOTATIONS.rotationPeers]: encodeRotationReports({ 'node-a': { fingerprint: fingerprint(key), state } }),
    });
}

/**
 * A settled agent, then sealctl's rotation request and the two passes that start it (staging):
 * returns the next key.
 */
async function requestRotation(e: Env, id: string): Promise<StoredKey> {
  await e.pass();
  annotate(e, 'node-a', {
    [ANNOTATIONS.rotateRequest]: encodeRotateRequest({ id, requestedAt: new Date(T0) }),
  });
  await e.pass();
  await e.pass();
  return (await e.keystore.read('wireguard', 'next'))!;
}

/** Peers (all, or `only`) report `key` staged, and every peer has shaken hands with the new link. */
function stagedEverywhere(e: Env, key: PublicKey, only: readonly string[] = PEERS): void {
  report(e, 'staged', key, only);
  for (const k of Object.values(C.keys)) e.wg.handshaken.add(k);
}

function phase(e: Env): string | undefined {
  return e.rotation.current().rotation?.phase;
}

/**
 * Who owns each allowed IP, per link, after every single peer change: once a link holds every
 * remote pod CIDR, no later change on that link leaves one without an owner (cilium#34612).
 */
function expectNeverUnowned(e: Env, opts: { changes: boolean }): void {
  const all = ['100.64.2.0/24', '100.64.3.0/24', '100.64.4.0/24', '100.64.5.0/24', 'fd00:64:5::/64'];
  const full = new Set<string>();
  let checked = 0;
  e.wg.ownershipHistory.forEach((owners, i) => {
    const link = e.wg.ownershipLinks[i]!;
    const complete = all.every((c) => owners.get(c) !== undefined);
    if (full.has(link)) {
      expect({ link, change: i, unowned: all.filter((c) => owners.get(c) === undefined) }).toStrictEqual({
        link,
        change: i,
        unowned: [],
      });
      checked++;
    } else if (complete) full.add(link);
  });
  if (opts.changes) expect(checked).toBeGreaterThan(0);
}

describe('node-a rotates its key', () => {
  it('make-before-break, step by step: second link, mirror, routes, grace, then the old link and key go', async () => {
    const e = await setup();
    await e.pass();
    const oldKey = e.ownKey();
    expect(phase(e)).toBeUndefined();
    expect(e.store.get('node-a')!.annotations[ANNOTATIONS.rotation]).toBe(encodeRotationStatus({ phase: 'idle' }));

    // sealctl's request.
    annotate(e, 'node-a', {
      [ANNOTATIONS.rotateRequest]: encodeRotateRequest({ id: 'r-1', requestedAt: new Date(T0) }),
    });
    await e.pass();
    expect(phase(e)).toBe('staging');
    const next = (await e.keystore.read('wireguard', 'next'))!;
    expect(next.epoch).toBe(2);

    // Staging pass: the second link with the next key and the same peers; announced only now.
    await e.pass();
    expect(e.wg.links.get('sealwg1')).toMatchObject({ publicKey: next.publicKey, listenPort: 51881 });
    expect(e.wg.peersOf('sealwg1')).toStrictEqual(e.wg.peersOf('sealwg0'));
    expect(e.mirror.of('sealwg1')).toMatchObject({ clsact: true, mirrorTo: undefined, addresses: ['100.64.1.1'] });
    expect(e.mirror.of('sealwg0')?.addresses).toEqual(['100.64.1.1']);
    const a = e.store.get('node-a')!.annotations;
    expect(a[ANNOTATIONS.wireguardPublicKey]).toBe(oldKey);
    expect(a[ANNOTATIONS.wireguardNextPublicKey]).toBe(next.publicKey);
    expect(a[ANNOTATIONS.nextEndpoint]).toBe('198.18.0.1:51881');
    expect(JSON.parse(a[ANNOTATIONS.rotation]!)).toMatchObject({ phase: 'staging', id: 'r-1', epoch: 2 });
    // Every route still uses the old link.
    expect(
      e.routing
        .routesIn(5188)
        .filter((r) => r.protocol === 206)
        .every((r) => r.dev === 'sealwg0'),
    ).toBe(true);

    // Peers stage and shake hands with the new link: moving.
    stagedEverywhere(e, next.publicKey);
    await e.pass();
    expect(phase(e)).toBe('moving');
    const mark = e.journal.count;
    await e.pass();
    const moved = e.journal.since(mark).map((j) => j.op);
    // The mirror is in place before the first route moves into the new link.
    expect(moved.indexOf('tc.mirror_set')).toBeGreaterThanOrEqual(0);
    expect(moved.indexOf('tc.mirror_set')).toBeLessThan(moved.indexOf('route.replace'));
    expect(e.mirror.of('sealwg1')?.mirrorTo).toBe('sealwg0');
    expect(
      e.routing
        .routesIn(5188)
        .filter((r) => r.protocol === 206)
        .map((r) => r.dev),
    ).toEqual(['sealwg1', 'sealwg1', 'sealwg1', 'sealwg1', 'sealwg1']);
    expect(JSON.parse(e.store.get('node-a')!.annotations[ANNOTATIONS.rotation]!)).toMatchObject({ phase: 'moving' });

    // Peers move: grace. The new key is published as the node's key.
    report(e, 'moved', next.publicKey);
    await e.pass();
    expect(phase(e)).toBe('grace');
    await e.pass();
    const g = e.store.get('node-a')!.annotations;
    expect(g[ANNOTATIONS.wireguardPublicKey]).toBe(next.publicKey);
    expect(g[ANNOTATIONS.endpoint]).toBe('198.18.0.1:51881');
    expect(g[ANNOTATIONS.keyEpoch]).toBe('2');
    expect(g[ANNOTATIONS.wireguardNextPublicKey]).toBeUndefined();

    // Within the grace period the old link and key stay, however many passes run.
    for (let i = 0; i < 3; i++) {
      e.clock.now += 9_000;
      await e.pass();
      expect(e.wg.links.has('sealwg0')).toBe(true);
      expect((await e.keystore.read('wireguard', 'current'))!.publicKey).toBe(oldKey);
    }
    // Grace over: mirror off first, then the old link, then the old key.
    e.clock.now += 4_000;
    const before = e.journal.count;
    await e.pass();
    await e.pass();
    const end = e.journal.since(before).map((j) => `${j.op} ${j.target}`);
    expect(end.indexOf('tc.mirror_clear sealwg1')).toBeLessThan(end.indexOf('wg.link_delete sealwg0'));
    expect(e.wg.links.has('sealwg0')).toBe(false);
    expect(phase(e)).toBeUndefined();
    expect(e.rotation.current()).toMatchObject({
      activeSlot: 1,
      handledRequestId: 'r-1',
      last: { id: 'r-1', epoch: 2, lagging: [] },
    });
    const rotations = (await e.metrics.registry.getSingleMetric('sealnet_key_rotations_total')!.get()).values;
    expect(rotations.find((v) => v.labels.kind === 'wireguard' && v.labels.result === 'completed')?.value).toBe(1);
    const cur = (await e.keystore.read('wireguard', 'current'))!;
    expect(cur.publicKey).toBe(next.publicKey);
    expect(await e.keystore.read('wireguard', 'next')).toBeUndefined();
    // Nothing of the old key left in the key directory, not even a scrubbed leftover.
    expect((await readdir(e.keystore.keysDir)).sort()).toEqual(['wireguard.json', 'wireguard.key']);
    await e.pass();
    expect(JSON.parse(e.store.get('node-a')!.annotations[ANNOTATIONS.rotation]!)).toMatchObject({
      phase: 'idle',
      last: { id: 'r-1', epoch: 2, lagging: [] },
    });

    // Sessions were never reset by a key reload; allowed IPs never went unowned (this node's own
    // rotation never changes its peers' allowed IPs at all).
    expect(e.wg.sessionResets).toBe(0);
    expectNeverUnowned(e, { changes: false });

    // Resync with nothing changed: zero kernel writes, no patch.
    const m = e.journal.count;
    const patches = e.store.patches.length;
    const r = await e.reconciler.runNow();
    expect(r.kernelOps).toStrictEqual({});
    expect(e.journal.count).toBe(m);
    expect(e.store.patches).toHaveLength(patches);
  });

  it('a restart in the middle of every phase adopts what is there: zero kernel writes', async () => {
    const e = await setup();
    await e.pass();
    annotate(e, 'node-a', {
      [ANNOTATIONS.rotateRequest]: encodeRotateRequest({ id: 'r-2', requestedAt: new Date(T0) }),
    });
    const restartedIn: string[] = [];
    for (let i = 0; i < 12; i++) {
      // Run until this phase's datapath is in place and a pass changes nothing.
      for (let j = 0; j < 5; j++) {
        const was = phase(e);
        const r = await e.reconciler.runNow();
        expect(r.errors).toStrictEqual([]);
        if (Object.keys(r.kernelOps).length === 0 && phase(e) === was) break;
      }
      const p = phase(e) ?? 'idle';
      if (p === 'idle' && restartedIn.length > 0) break;
      // A fresh agent over the same kernel, store and state directory: nothing to redo.
      await e.restart();
      const mark = e.journal.count;
      const r = await e.reconciler.runNow();
      expect({ phase: p, ops: r.kernelOps, journal: e.journal.since(mark) }).toStrictEqual({
        phase: p,
        ops: {},
        journal: [],
      });
      restartedIn.push(p);
      // Then let the rotation go on: peers follow, time passes.
      const next = await e.keystore.read('wireguard', 'next');
      if (next !== undefined) report(e, p === 'staging' ? 'staged' : 'moved', next.publicKey);
      for (const k of Object.values(C.keys)) e.wg.handshaken.add(k);
      if (p === 'grace') e.clock.now += 31_000;
      await e.pass();
    }
    expect(restartedIn).toEqual(expect.arrayContaining(['staging', 'moving', 'grace']));
    expect(phase(e)).toBeUndefined();
    expect(e.wg.links.has('sealwg0')).toBe(false);
    expect(e.wg.sessionResets).toBe(0);
  });

  it('a peer that never answers: the rotation goes on without it after the timeout, and it is named as lagging', async () => {
    const e = await setup();
    const next = await requestRotation(e, 'r-3');
    stagedEverywhere(e, next.publicKey, ['node-b', 'node-c', 'node-d']);
    await e.pass();
    expect(phase(e)).toBe('staging');
    e.clock.now += 10_000;
    await e.pass();
    expect(phase(e)).toBe('moving');
    report(e, 'moved', next.publicKey, ['node-b', 'node-c', 'node-d']);
    await e.pass();
    expect(phase(e)).toBe('grace');
    // node-e keeps the old key through the grace period: the old link and its peer stay.
    await e.pass();
    expect(e.wg.peersOf('sealwg0').find((p) => p.publicKey === C.keys['node-e'])?.allowedIPs).toEqual([
      '100.64.5.0/24',
      'fd00:64:5::/64',
    ]);
    e.clock.now += 31_000;
    for (let i = 0; i < 3; i++) await e.pass();
    expect(e.rotation.current().last).toMatchObject({ id: 'r-3', lagging: ['node-e'] });
    expect(JSON.parse(e.store.get('node-a')!.annotations[ANNOTATIONS.rotation]!).last.lagging).toEqual(['node-e']);
  });

  it('a staging timeout reached at the end of a pass still leads through moving: mirror and routes announced before the new key', async () => {
    const e = await setup();
    await e.pass();
    annotate(e, 'node-a', {
      [ANNOTATIONS.rotateRequest]: encodeRotateRequest({ id: 'r-6', requestedAt: new Date(T0) }),
    });
    await e.pass();
    await e.pass();
    expect(phase(e)).toBe('staging');
    // Every peer silent. The next pass begins 9 s after the announcement and takes 2 s: the
    // 10 s peer timeout passes during it, so its closing step leaves staging.
    e.clock.now += 9_000;
    const ensureLink = e.wg.ensureLink.bind(e.wg);
    e.wg.ensureLink = async (opts) => {
      e.clock.now += 1_000;
      return ensureLink(opts);
    };
    await e.pass();
    // Moving, but nothing of it applied or announced yet: no mirror, routes still in the old link,
    // the old key still the published one.
    expect(phase(e)).toBe('moving');
    expect(e.mirror.of('sealwg1')?.mirrorTo).toBeUndefined();
    expect(JSON.parse(e.store.get('node-a')!.annotations[ANNOTATIONS.rotation]!)).toMatchObject({ phase: 'staging' });
    const next = (await e.keystore.read('wireguard', 'next'))!;
    expect(e.ownKey()).not.toBe(next.publicKey);
    // The moving pass: mirror, routes into the new link, `moving` announced; only then grace.
    await e.pass();
    expect(e.mirror.of('sealwg1')?.mirrorTo).toBe('sealwg0');
    expect(
      e.routing
        .routesIn(5188)
        .filter((r) => r.protocol === 206)
        .every((r) => r.dev === 'sealwg1'),
    ).toBe(true);
    await e.pass();
    expect(phase(e)).toBe('grace');
    // Each patch of node-a: the phase it published, `+new key` when it published the new key
    // (which goes out with `grace` in one patch).
    const published = e.store.patches
      .filter((p) => p.name === 'node-a')
      .map((p) => {
        const ph = (JSON.parse(p.annotations[ANNOTATIONS.rotation] ?? '{}') as { phase?: string }).phase;
        return p.annotations[ANNOTATIONS.wireguardPublicKey] === next.publicKey ? `${ph}+new key` : ph;
      })
      .filter((x) => x !== undefined);
    expect(published.slice(published.indexOf('staging'))).toEqual(['staging', 'moving', 'grace+new key']);
  });

  it('the end of the grace period counts the reports that arrived while the pass ran', async () => {
    const e = await setup();
    const next = await requestRotation(e, 'r-7');
    stagedEverywhere(e, next.publicKey);
    await e.pass();
    await e.pass();
    expect(phase(e)).toBe('moving');
    // The peers are slow: the timeout passes with all of them staged, none moved yet.
    e.clock.now += 10_000;
    await e.pass();
    await e.pass();
    expect(phase(e)).toBe('grace');
    // The pass that crosses the end of the grace period: while it runs, every peer reports that
    // it moved (they follow the published key). None of them lags.
    e.clock.now += 29_000;
    const ensureLink = e.wg.ensureLink.bind(e.wg);
    e.wg.ensureLink = async (opts) => {
      if (opts.name === 'sealwg1') {
        e.clock.now += 2_000;
        report(e, 'moved', next.publicKey);
      }
      return ensureLink(opts);
    };
    await e.pass();
    expect(e.rotation.current().rotation).toMatchObject({ phase: 'finishing', lagging: [] });
  });

  it('a failing mirror holds the rotation in moving (retried), and the old link is never deleted while an error is pending', async () => {
    const e = await setup();
    const next = await requestRotation(e, 'r-4');
    stagedEverywhere(e, next.publicKey);
    await e.pass();
    expect(phase(e)).toBe('moving');
    e.mirror.failNext('setMirror', 1, 'injected: act_mirred missing');
    const r = await e.reconciler.runNow();
    expect(r.errors.map((x) => x.step)).toEqual(['mirror']);
    report(e, 'moved', next.publicKey);
    await e.reconciler.runNow();
    // The failed pass did not count as applied; the next one did.
    expect(e.mirror.of('sealwg1')?.mirrorTo).toBe('sealwg0');
  });
});

describe('node-a rotates on a kernel without act_mirred', () => {
  it('goes on without the mirror (a warning, not a stuck rotation)', async () => {
    const e = await setup();
    e.mirror.setMirror = async () => {
      throw new SealnetError('KERNEL_FEATURE_MISSING', 'cannot mirror (needs cls_u32 and act_mirred)');
    };
    const next = await requestRotation(e, 'r-5');
    stagedEverywhere(e, next.publicKey);
    await e.pass();
    await e.pass();
    expect(phase(e)).toBe('moving');
    report(e, 'moved', next.publicKey);
    await e.pass();
    expect(phase(e)).toBe('grace');
  });
});

describe("node-a follows node-b's rotation", () => {
  const nextB = (): PublicKey => fixtureKey(12);

  function rotateB(e: Env, phaseB: 'staging' | 'moving' | 'grace'): void {
    if (phaseB === 'grace') {
      annotate(e, 'node-b', {
        [ANNOTATIONS.wireguardPublicKey]: nextB(),
        [ANNOTATIONS.endpoint]: '198.18.0.2:51881',
        [ANNOTATIONS.wireguardNextPublicKey]: undefined,
        [ANNOTATIONS.nextEndpoint]: undefined,
        [ANNOTATIONS.rotation]: encodeRotationStatus({ phase: 'grace', id: 'rb', since: new Date(T0), epoch: 2 }),
      });
      return;
    }
    annotate(e, 'node-b', {
      [ANNOTATIONS.wireguardNextPublicKey]: nextB(),
      [ANNOTATIONS.nextEndpoint]: '198.18.0.2:51881',
      [ANNOTATIONS.rotation]: encodeRotationStatus({ phase: phaseB, id: 'rb', since: new Date(T0), epoch: 2 }),
    });
  }

  function myReport(e: Env): unknown {
    const t = e.store.get('node-a')!.annotations[ANNOTATIONS.rotationPeers];
    return t === undefined ? undefined : JSON.parse(t);
  }

  it('stages the next key without allowed IPs, moves them in one change once shaken hands, drops the old key last', async () => {
    const e = await setup();
    await e.pass();
    const B = C.keys['node-b'];

    rotateB(e, 'staging');
    await e.pass();
    expect(e.wg.peersOf('sealwg0').filter((p) => p.publicKey === B || p.publicKey === nextB())).toStrictEqual([
      { publicKey: B, endpoint: '198.18.0.2:51880', allowedIPs: ['100.64.2.0/24'], persistentKeepalive: 25 },
      { publicKey: nextB(), endpoint: '198.18.0.2:51881', allowedIPs: [], persistentKeepalive: 25 },
    ]);
    expect(myReport(e)).toStrictEqual({ 'node-b': `${fingerprint(nextB())}:staged` });

    // moving, but no handshake with the next key yet: nothing moves (never onto a dead path).
    rotateB(e, 'moving');
    await e.pass();
    expect(e.wg.ownership('sealwg0').get('100.64.2.0/24')).toBe(B);

    e.wg.handshaken.add(nextB());
    const mark = e.journal.count;
    await e.pass();
    const ops = e.journal.since(mark);
    // One applyPeers call: the gaining peer first, then the old one shrinks.
    expect(ops.filter((j) => j.op === 'wg.peer_set').map((j) => j.target)).toEqual([nextB(), B]);
    expect(e.wg.ownership('sealwg0').get('100.64.2.0/24')).toBe(nextB());
    expect(myReport(e)).toStrictEqual({ 'node-b': `${fingerprint(nextB())}:moved` });
    expectNeverUnowned(e, { changes: true });

    // node-b publishes the new key (grace): the old peer goes, the report stays "moved".
    rotateB(e, 'grace');
    await e.pass();
    expect(e.wg.peersOf('sealwg0').map((p) => p.publicKey)).not.toContain(B);
    expect(e.wg.ownership('sealwg0').get('100.64.2.0/24')).toBe(nextB());
    expect(myReport(e)).toStrictEqual({ 'node-b': `${fingerprint(nextB())}:moved` });

    // node-b done: the report is withdrawn.
    annotate(e, 'node-b', { [ANNOTATIONS.rotation]: encodeRotationStatus({ phase: 'idle' }) });
    await e.pass();
    expect(myReport(e)).toBeUndefined();
    expectNeverUnowned(e, { changes: true });
  });

  it("ignores a next key that another node uses (it would take that node's traffic)", async () => {
    const e = await setup();
    await e.pass();
    annotate(e, 'node-b', {
      [ANNOTATIONS.wireguardNextPublicKey]: C.keys['node-c'],
      [ANNOTATIONS.nextEndpoint]: '198.18.0.2:51881',
      [ANNOTATIONS.rotation]: encodeRotationStatus({ phase: 'moving', id: 'rb', since: new Date(T0), epoch: 2 }),
    });
    e.wg.handshaken.add(C.keys['node-c']);
    await e.pass();
    const c = e.wg.peersOf('sealwg0').find((p) => p.publicKey === C.keys['node-c']);
    expect(c).toMatchObject({ endpoint: '198.18.0.3:51999', allowedIPs: ['100.64.3.0/24'] });
    expect(e.wg.ownership('sealwg0').get('100.64.2.0/24')).toBe(C.keys['node-b']);
  });
});

export type { RawNode };
