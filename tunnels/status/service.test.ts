import { jest } from '@jest/globals';
import { mkdtemp, mkdir, rm, stat, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sodiumReady } from '../../keymgr/keys.js';
import { createFakeKernel, MemoryNodeStore } from '../ports/kernel.fake.js';
import { fixtureCluster } from '../../test/fixtures.js';
import { validateConfig } from '../agent/config.js';
import { ANNOTATIONS } from '../../common/constants.js';
import { silentLogger } from '../../common/logger.js';
import { createMetrics } from '../../common/metrics.js';
import { plan } from '../plan/planner.js';
import {
  bearerMatches,
  loadOrCreateStatusToken,
  relevantChangeFilter,
  StatusService,
  STARTUP_WINDOW_MS,
  type StatusDeps,
} from './service.js';
import { decodeSummary, SUMMARY_MAX_BYTES } from './summary.js';

beforeAll(async () => {
  await sodiumReady();
});

describe('StatusService publication', () => {
  function setup(pass: { converged: boolean } = { converged: true }) {
    const fx = fixtureCluster();
    const store = new MemoryNodeStore(fx.nodes, { synced: true });
    const { wg } = createFakeKernel();
    const desired = plan({
      nodes: fx.nodes,
      self: { name: 'node-a', wireguardPublicKey: fx.keys['node-a'], localAddresses: fx.localAddresses['node-a'] },
      config: { mode: 'wireguard', listenPort: 51880, persistentKeepalive: 25, underlayMtu: 1500, underlayFamily: 4 },
      established: {},
    });
    const clock = { t: Date.parse('2025-06-01T12:00:00.000Z') };
    const config = validateConfig({
      nodeName: 'node-a',
      store: { type: 'file', dir: '/unused' },
      steering: { enabled: false },
      status: { heartbeatSeconds: 60, minIntervalSeconds: 5 },
    });
    const state = { report: undefined as ReturnType<StatusDeps['reconciler']['report']>, pass };
    const s = new StatusService({
      config,
      key: () => ({ publicKey: fx.keys['node-a'], epoch: 1, createdAt: new Date('2025-05-01T00:00:00Z') }),
      wg,
      steering: undefined,
      reconciler: { report: () => state.report },
      store,
      metrics: createMetrics(),
      log: silentLogger,
      now: () => new Date(clock.t),
    });
    const published = (): number => store.patches.filter((p) => p.annotations[ANNOTATIONS.status] !== undefined).length;
    const summary = () => {
      const text = store.get('node-a')!.annotations[ANNOTATIONS.status]!;
      const d = decodeSummary(text);
      if (!d.ok) throw new Error(d.error);
      return { ...d.summary, bytes: Buffer.byteLength(text) };
    };
    /** The tunnel link, as a first pass creates it. */
    const linkUp = () =>
      wg.ensureLink({
        name: 'sealwg0',
        privateKeyFile: '/k',
        publicKey: desired.tunnel.peers[0]!.publicKey,
        listenPort: 51880,
        fwmark: 0x5188,
      });
    /** Every desired peer on the link (no handshake in the fake: they read `pending`). */
    const programPeers = (): void => {
      for (const p of desired.tunnel.peers)
        wg.seedPeer('sealwg0', { publicKey: p.publicKey, allowedIPs: [...p.allowedIPs] });
    };
    return { fx, store, wg, desired, clock, s, state, published, summary, linkUp, programPeers };
  }

  it('publishes a bounded summary once the first pass converged, then only when the summary changes (after the minimum interval), never on a heartbeat', async () => {
    const { desired, clock, s, state, published, summary, linkUp, programPeers } = setup();
    await linkUp();
    await s.publishIfDue();
    expect(published()).toBe(0); // no pass yet: nothing to say
    state.report = { kernelOps: {}, errors: [], desired, pruned: true, converged: false };
    await s.publishIfDue();
    expect(published()).toBe(0); // a pass, but not converged
    state.report = { ...state.report, converged: true };
    await s.publishIfDue();
    expect(published()).toBe(1);
    const first = summary();
    expect(first.counts).toEqual({ encrypted: 0, pending: 0, dropping: 0, misconfigured: 4 }); // no peers programmed, no guard
    expect(first.worst).toHaveLength(3);
    expect(first.bytes).toBeLessThanOrEqual(SUMMARY_MAX_BYTES);
    clock.t += 10_000;
    await s.publishIfDue();
    expect(published()).toBe(1); // nothing changed
    programPeers();
    await new Promise((r) => setTimeout(r, 1100)); // observation cache
    clock.t += 1000;
    await s.publishIfDue();
    expect(published()).toBe(2); // the summary changed: published at once
    expect(summary().counts).toEqual({ encrypted: 0, pending: 4, dropping: 0, misconfigured: 0 }); // no handshake in the fake
    clock.t += 3600_000;
    await s.publishIfDue();
    expect(published()).toBe(2); // an hour later, nothing changed: nothing published (no heartbeat)
    await s.stop();
    expect(published()).toBe(3);
    expect(summary().agent).toBe('stopped');
  });

  it('rate-limits changes once the startup window is over, but not the first summary', async () => {
    const { desired, clock, s, state, published, linkUp, programPeers } = setup();
    await linkUp();
    state.report = { kernelOps: {}, errors: [], desired, pruned: true, converged: true };
    await s.publishIfDue();
    expect(published()).toBe(1);
    clock.t += STARTUP_WINDOW_MS; // never settled (no peer encrypted in the fake): the window ends it
    await s.publishIfDue();
    expect(published()).toBe(1); // nothing changed
    programPeers();
    await new Promise((r) => setTimeout(r, 1100));
    await s.publishIfDue();
    expect(published()).toBe(2); // the last publication was a minute ago
    state.report = { ...state.report, errors: [{ step: 'routes', message: 'a failed step' }] };
    clock.t += 1000; // 1 s < minIntervalSeconds (5)
    await s.publishIfDue();
    expect(published()).toBe(2);
    clock.t += 4000;
    await s.publishIfDue();
    expect(published()).toBe(3);
  });

  it('publishes every change at once while the agent settles after a start (an audit right after reads the tunnels as they are)', async () => {
    const { desired, clock, s, state, published, summary, linkUp, programPeers } = setup();
    await linkUp();
    state.report = { kernelOps: {}, errors: [], desired, pruned: true, converged: true };
    await s.publishIfDue();
    expect(published()).toBe(1);
    expect(summary().counts.misconfigured).toBe(4);
    programPeers();
    await new Promise((r) => setTimeout(r, 1100)); // observation cache
    clock.t += 1000; // 1 s < minIntervalSeconds (5), inside the startup window
    await s.publishIfDue();
    expect(published()).toBe(2);
    expect(summary().counts).toEqual({ encrypted: 0, pending: 4, dropping: 0, misconfigured: 0 });
  });

  it('while settling, checks wait at least 20 times what the last check took (a 5,000-peer report must not hold the agent busy)', async () => {
    const { desired, clock, s, state, published, wg, linkUp, programPeers } = setup();
    await linkUp();
    expect(s.nextCheckDelayMs()).toBe(100); // nothing published yet
    state.report = { kernelOps: {}, errors: [], desired, pruned: true, converged: true };
    await s.publishIfDue();
    expect(published()).toBe(1);
    expect(s.nextCheckDelayMs()).toBe(250); // settling, a cheap check
    programPeers();
    await new Promise((r) => setTimeout(r, 1100)); // observation cache
    // A check whose kernel read takes 100 ms (the fake clock moves while `wg show` runs).
    const show = wg.show.bind(wg);
    jest.spyOn(wg, 'show').mockImplementation(async (name) => {
      clock.t += 100;
      return show(name);
    });
    await s.publishIfDue();
    expect(published()).toBe(2); // still settling: published at once
    expect(s.nextCheckDelayMs()).toBe(2000);
    clock.t += STARTUP_WINDOW_MS; // settled by the window: the rate limit's interval
    expect(s.nextCheckDelayMs()).toBe(5000);
  });

  it('after a failed publication the next check backs off (500 ms doubling to 16 s) in every lane, and a success resets it', async () => {
    const { desired, clock, s, state, store, published, linkUp, programPeers } = setup();
    await linkUp();
    state.report = { kernelOps: {}, errors: [], desired, pruned: true, converged: true };
    // Before the first summary (checked every 100 ms): the API server is down.
    store.failNextPatch(2);
    await s.publishIfDue();
    expect(published()).toBe(0);
    expect(s.nextCheckDelayMs()).toBe(500);
    await s.publishIfDue();
    expect(s.nextCheckDelayMs()).toBe(1000);
    await s.publishIfDue();
    expect(published()).toBe(1);
    expect(s.nextCheckDelayMs()).toBe(250); // settling again, at the settling pace
    // Settling, the summary changes while the API server is away: 500, 1000, …, capped at 16 s.
    programPeers();
    await new Promise((r) => setTimeout(r, 1100)); // observation cache
    store.failNextPatch(100);
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      await s.publishIfDue();
      delays.push(s.nextCheckDelayMs());
    }
    expect(published()).toBe(1);
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 16000, 16000, 16000]);
    store.failNextPatch(0);
    clock.t += 1000;
    await s.publishIfDue();
    expect(published()).toBe(2);
    expect(s.nextCheckDelayMs()).toBe(250);
  });

  it('start(): the first summary follows the first converged pass within a tick, not after minIntervalSeconds', async () => {
    const { desired, s, state, published } = setup();
    s.start();
    await new Promise((r) => setTimeout(r, 250));
    expect(published()).toBe(0);
    state.report = { kernelOps: {}, errors: [], desired, pruned: true, converged: true };
    const t0 = Date.now();
    while (published() === 0 && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 10));
    const took = Date.now() - t0;
    await s.stop();
    expect(published()).toBeGreaterThanOrEqual(1);
    expect(took).toBeLessThan(2000); // minIntervalSeconds is 5: the old loop waited that long
  });

  it('ignores status-only changes when deciding whether to reconcile', () => {
    const fx = fixtureCluster();
    const relevant = relevantChangeFilter();
    expect(relevant(fx.nodes)).toBe(true);
    const withStatus = fx.nodes.map((n) => ({
      ...n,
      annotations: { ...n.annotations, [ANNOTATIONS.status]: `{"at":"${Math.random()}"}` },
    }));
    expect(relevant(withStatus)).toBe(false);
    expect(relevant(withStatus.map((n, i) => (i === 0 ? { ...n, podCIDRs: ['100.64.99.0/24'] } : n)))).toBe(true);
  });

  it('compares by identity first: the same list, or a list with the same node objects, is not a change', () => {
    const fx = fixtureCluster();
    const relevant = relevantChangeFilter();
    const nodes = [...fx.nodes];
    expect(relevant(nodes)).toBe(true);
    expect(relevant(nodes)).toBe(false);
    expect(relevant([...nodes])).toBe(false);
    expect(relevant(nodes.slice(1))).toBe(true); // a node left
    const back = [...nodes];
    expect(relevant(back)).toBe(true); // it came back
    const moved = back.map((n, i) =>
      i === 2 ? { ...n, annotations: { ...n.annotations, 'sealnet.io/endpoint': '198.18.9.9:51880' } } : n,
    );
    expect(relevant(moved)).toBe(true);
    expect(relevant(moved.map((n, i) => (i === 2 ? { ...n } : n)))).toBe(false); // a new object, same content
  });
});

describe('/status token', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sealnet-token-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is created 0600 once, tightened if loose, and compared exactly', async () => {
    const config = validateConfig({ nodeName: 'node-a', stateDir: dir });
    const t = await loadOrCreateStatusToken(config);
    expect(t.created).toBe(true);
    expect(t.token).toMatch(/^[0-9a-f]{64}$/);
    expect((await stat(t.file)).mode & 0o777).toBe(0o600);
    await chmod(t.file, 0o644);
    const again = await loadOrCreateStatusToken(config);
    expect([again.created, again.token, again.warning]).toEqual([
      false,
      t.token,
      expect.stringContaining('had mode 0644; set to 0600'),
    ]);
    expect(bearerMatches(`Bearer ${t.token}`, t.token)).toBe(true);
    expect(bearerMatches(`Bearer ${t.token}x`, t.token)).toBe(false);
    expect(bearerMatches(`bearer ${t.token}`, t.token)).toBe(false);
    expect(bearerMatches(undefined, t.token)).toBe(false);
    await writeFile(t.file, 'short\n');
    await expect(loadOrCreateStatusToken(config)).rejects.toThrow('must hold 32 to 128 lowercase hex digits');
  });

  it('a token file that exists is only read, never written next to (the chart mounts it read-only from a Secret)', async () => {
    const secretDir = join(dir, 'secret');
    await mkdir(secretDir);
    const file = join(secretDir, 'token');
    await writeFile(file, `${'ab'.repeat(32)}\n`, { mode: 0o400 });
    const before = await stat(secretDir, { bigint: true });
    const config = validateConfig({ nodeName: 'node-a', stateDir: dir, status: { tokenFile: file } });
    const t = await loadOrCreateStatusToken(config);
    expect([t.created, t.token, t.warning]).toEqual([false, 'ab'.repeat(32), undefined]);
    // No temporary file was created and removed in the directory (its mtime would move).
    expect((await stat(secretDir, { bigint: true })).mtimeNs).toBe(before.mtimeNs);
  });
});
