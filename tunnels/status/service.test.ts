import { mkdtemp, rm, stat, writeFile, chmod } from 'node:fs/promises';
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
import { decodeStatus } from './report.js';
import { bearerMatches, loadOrCreateStatusToken, relevantChangeFilter, StatusService } from './service.js';

beforeAll(async () => {
  await sodiumReady();
});

describe('StatusService publication', () => {
  it('publishes once, then only on a state change (after the minimum interval) or the heartbeat', async () => {
    const fx = fixtureCluster();
    const store = new MemoryNodeStore(fx.nodes, { synced: true });
    const { wg } = createFakeKernel();
    await wg.ensureLink({ name: 'sealwg0', privateKeyFile: '/k', publicKey: fx.keys['node-a'], listenPort: 51880, fwmark: 0x5188 });
    const desired = plan({ nodes: fx.nodes, self: { name: 'node-a', wireguardPublicKey: fx.keys['node-a'], localAddresses: fx.localAddresses['node-a'] }, config: { mode: 'wireguard', listenPort: 51880, persistentKeepalive: 25, underlayMtu: 1500, underlayFamily: 4 }, established: {} });
    let clock = Date.parse('2025-06-01T12:00:00.000Z');
    const config = validateConfig({ nodeName: 'node-a', store: { type: 'file', dir: '/unused' }, steering: { enabled: false }, status: { heartbeatSeconds: 60, minIntervalSeconds: 5 } });
    const s = new StatusService({
      config,
      key: () => ({ publicKey: fx.keys['node-a'], epoch: 1, createdAt: new Date('2025-05-01T00:00:00Z') }),
      wg,
      steering: undefined,
      reconciler: { report: () => ({ kernelOps: {}, errors: [], desired, pruned: true, converged: true }) },
      store,
      metrics: createMetrics(),
      log: silentLogger,
      now: () => new Date(clock),
    });
    const published = (): number => store.patches.filter((p) => p.annotations[ANNOTATIONS.status] !== undefined).length;
    await s.publishIfDue();
    expect(published()).toBe(1);
    const first = decodeStatus(store.get('node-a')!.annotations[ANNOTATIONS.status]!);
    expect(first.ok && first.report.peers.every((p) => p.state === 'misconfigured')).toBe(true); // no peers programmed, no guard
    clock += 10_000;
    await s.publishIfDue();
    expect(published()).toBe(1); // nothing changed, heartbeat not due
    for (const p of desired.tunnel.peers) wg.seedPeer('sealwg0', { publicKey: p.publicKey, allowedIPs: [...p.allowedIPs] });
    await new Promise((r) => setTimeout(r, 1100)); // observation cache
    clock += 1000;
    await s.publishIfDue();
    expect(published()).toBe(2); // state changed: published at once
    const second = decodeStatus(store.get('node-a')!.annotations[ANNOTATIONS.status]!);
    expect(second.ok && second.report.peers.map((p) => p.state)).toEqual(['pending', 'pending', 'pending', 'pending']); // no handshake in the fake
    clock += 59_000;
    await s.publishIfDue();
    expect(published()).toBe(2);
    clock += 2_000;
    await s.publishIfDue();
    expect(published()).toBe(3); // heartbeat
    await s.stop();
    const last = decodeStatus(store.get('node-a')!.annotations[ANNOTATIONS.status]!);
    expect(last.ok && last.report.agent).toBe('stopped');
  });

  it('ignores status-only changes when deciding whether to reconcile', () => {
    const fx = fixtureCluster();
    const relevant = relevantChangeFilter();
    expect(relevant(fx.nodes)).toBe(true);
    const withStatus = fx.nodes.map((n) => ({ ...n, annotations: { ...n.annotations, [ANNOTATIONS.status]: `{"at":"${Math.random()}"}` } }));
    expect(relevant(withStatus)).toBe(false);
    expect(relevant(withStatus.map((n, i) => (i === 0 ? { ...n, podCIDRs: ['100.64.99.0/24'] } : n)))).toBe(true);
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
    expect([again.created, again.token, again.warning]).toEqual([false, t.token, expect.stringContaining('had mode 0644; set to 0600')]);
    expect(bearerMatches(`Bearer ${t.token}`, t.token)).toBe(true);
    expect(bearerMatches(`Bearer ${t.token}x`, t.token)).toBe(false);
    expect(bearerMatches(`bearer ${t.token}`, t.token)).toBe(false);
    expect(bearerMatches(undefined, t.token)).toBe(false);
    await writeFile(t.file, 'short\n');
    await expect(loadOrCreateStatusToken(config)).rejects.toThrow('must hold 32 to 128 lowercase hex digits');
  });
});
