import { beforeAll, describe, expect, it } from '@jest/globals';
import { sodiumReady } from '../../keymgr/keys.js';
import { createNodeAKernel, MemoryNodeStore, type FakeRouting, type FakeWireGuard } from '../ports/kernel.fake.js';
import { FakeSteering } from '../ports/steering.fake.js';
import { fixtureCluster, type FixtureCluster } from '../../test/fixtures.js';
import { validateConfig } from '../agent/config.js';
import type { Logger } from '../../common/logger.js';
import { createMetrics } from '../../common/metrics.js';
import type { LastAppliedPort } from '../ports/index.js';
import type { RawNode } from '../ports/model.js';
import { decodeLastApplied } from '../plan/lastapplied.js';
import { Reconciler } from './reconciler.js';

// Start-up restore (tunnels/reconcile/restore.ts) against the fakes: an agent whose link died with
// it (wireguard-go in the old pod) programs its last applied state before the store synced, and
// the first pass after the sync prunes what the store no longer has. Node-a is "us".

let C: FixtureCluster;
beforeAll(async () => {
  await sodiumReady();
  C = fixtureCluster();
});

class QuietLogger implements Logger {
  readonly lines: { level: string; msg: string; obj: object }[] = [];
  debug(obj: object, msg: string): void {
    this.lines.push({ level: 'debug', msg, obj });
  }
  info(obj: object, msg: string): void {
    this.lines.push({ level: 'info', msg, obj });
  }
  warn(obj: object, msg: string): void {
    this.lines.push({ level: 'warn', msg, obj });
  }
  error(obj: object, msg: string): void {
    this.lines.push({ level: 'error', msg, obj });
  }
}

/** The state file in memory: what the agent wrote is what the next run reads. */
class MemoryFile implements LastAppliedPort {
  text: string | undefined;
  writes = 0;
  async read(): Promise<string | undefined> {
    return this.text;
  }
  async write(text: string): Promise<void> {
    this.text = text;
    this.writes++;
  }
}

interface World {
  wg: FakeWireGuard;
  routing: FakeRouting;
  steering: FakeSteering;
  file: MemoryFile;
  log: QuietLogger;
  /** A new agent process over the same kernel, steering pins and state file. */
  agent(
    store: MemoryNodeStore,
    opts?: { restore?: boolean; interfaces?: string[]; postQuantum?: 'off' | 'required' },
  ): Reconciler;
}

function world(): World {
  const { wg, routing } = createNodeAKernel();
  const steering = new FakeSteering();
  const file = new MemoryFile();
  const log = new QuietLogger();
  return {
    wg,
    routing,
    steering,
    file,
    log,
    agent(store, opts = {}) {
      steering.restart();
      const config = validateConfig({
        nodeName: 'node-a',
        store: { type: 'file', dir: '/unused' },
        debounceMs: 0,
        steering: { clusterCidrs: ['100.64.0.0/10', 'fd00:64::/32'], interfaces: opts.interfaces ?? ['eth0'] },
        wireguard: { restoreLastApplied: opts.restore ?? true },
        ...(opts.postQuantum !== undefined ? { postQuantum: { mode: opts.postQuantum } } : {}),
      });
      return new Reconciler({
        config,
        key: {
          publicKey: C.keys['node-a'],
          privateKeyFile: '/var/lib/sealnet/wireguard.key',
          epoch: 1,
          createdAt: new Date('2024-03-04T05:06:07Z'),
        },
        store,
        wg,
        routing,
        log,
        metrics: createMetrics(),
        steering,
        lastApplied: file,
      });
    },
  };
}

/** First run: a synced store, one pass, then the crash that takes the link (and its routes) along. */
/** A new agent process after a first run: its store not synced yet, its steering prepared. */
async function restartUnsynced(w: World, opts?: Parameters<World['agent']>[1]): Promise<Reconciler> {
  const again = w.agent(new MemoryNodeStore([], { synced: false }), opts);
  await again.prepareSteering('eth0');
  return again;
}

async function firstRunThenCrash(w: World): Promise<void> {
  const first = w.agent(new MemoryNodeStore(C.nodes, { synced: true }));
  await first.prepareSteering('eth0');
  const r = await first.runNow();
  expect(r.errors).toEqual([]);
  await first.close();
  expect(w.file.text).toBeDefined();
  await w.wg.deleteLink('sealwg0');
  expect(await w.routing.getLink('sealwg0')).toBeUndefined();
}

const verdict = (w: World, dst: string): string => {
  const v = w.steering.egress('eth0', dst);
  return `${v.verdict}${v.ifindex !== undefined ? `@${v.ifindex}` : ''}`;
};

describe('restore of the last applied state at start-up', () => {
  it('programs link, peers, routes and ready steering entries before the store synced', async () => {
    const w = world();
    await firstRunThenCrash(w);
    const persisted = decodeLastApplied(w.file.text!, {
      nodeName: 'node-a',
      linkNames: ['sealwg0', 'sealwg1'],
      table: 5188,
      clusterCidrs: ['100.64.0.0/10', 'fd00:64::/32'],
      exemptCidrs: [],
      nodeToNode: false,
    });
    expect(persisted.ok).toBe(true);
    expect(w.file.text).not.toContain('PRIVATE');
    // The restarted agent: its store has not synced and knows no node yet.
    const store = new MemoryNodeStore([], { synced: false });
    const again = w.agent(store);
    await again.prepareSteering('eth0');
    expect(verdict(w, '100.64.2.7')).toMatch(/^(drop|redirect@\d+)$/);
    const res = await again.restoreLastApplied();
    expect(res).toMatchObject({ restored: true, peers: 4, linkCreated: true, errors: [] });
    const link = await w.routing.getLink('sealwg0');
    expect(link?.up).toBe(true);
    const peers = (await w.wg.show('sealwg0'))!.peers;
    expect(peers.map((p) => p.publicKey).sort()).toEqual(
      [C.keys['node-b'], C.keys['node-c'], C.keys['node-d'], C.keys['node-e']].sort(),
    );
    expect((await w.routing.listRoutes(5188)).map((r) => `${r.dst} ${r.dev}`)).toEqual(
      expect.arrayContaining(['100.64.2.0/24 sealwg0', '100.64.4.0/24 sealwg0']),
    );
    expect(verdict(w, '100.64.2.7')).toBe(`redirect@${link!.ifindex}`);
    expect(verdict(w, '100.64.4.7')).toBe(`redirect@${link!.ifindex}`);
    // A pass before the sync changes nothing and removes nothing.
    await again.runNow();
    expect((await w.wg.show('sealwg0'))!.peers).toHaveLength(4);
    await again.close();
  });

  it('attaches the guard itself when the config names no interface (the underlay carries the endpoint)', async () => {
    const w = world();
    await firstRunThenCrash(w);
    const again = w.agent(new MemoryNodeStore([], { synced: false }), { interfaces: [] });
    // No prepareSteering here: without steering.interfaces the agent learns the underlay in a pass.
    const res = await again.restoreLastApplied();
    expect(res).toMatchObject({ restored: true, errors: [] });
    expect(again.steeringAttached()).toBe(true);
    const link = await w.routing.getLink('sealwg0');
    expect(verdict(w, '100.64.3.7')).toBe(`redirect@${link!.ifindex}`);
    await again.close();
  });

  it('then the first pass after the sync removes a peer deleted meanwhile (route and steering with it)', async () => {
    const w = world();
    await firstRunThenCrash(w);
    const store = new MemoryNodeStore([], { synced: false });
    const again = w.agent(store);
    await again.prepareSteering('eth0');
    await again.restoreLastApplied();
    expect((await w.wg.show('sealwg0'))!.peers.map((p) => p.publicKey)).toContain(C.keys['node-d']);
    // Node-d was deleted while the agent was down; the store syncs without it.
    for (const n of C.nodes) if (n.name !== 'node-d') store.upsert(n as RawNode);
    store.setSynced(true);
    const r = await again.runNow();
    expect(r.errors).toEqual([]);
    expect(r.pruned).toBe(true);
    const keys = (await w.wg.show('sealwg0'))!.peers.map((p) => p.publicKey);
    expect(keys).not.toContain(C.keys['node-d']);
    expect(keys).toContain(C.keys['node-b']);
    expect((await w.routing.listRoutes(5188)).map((x) => x.dst)).not.toContain('100.64.4.0/24');
    expect(verdict(w, '100.64.4.7')).toBe('drop');
    // The state file follows: node-d is gone from it too.
    expect(w.file.text).not.toContain(C.keys['node-d']);
    await again.close();
  });

  it('a corrupted or foreign file is logged and ignored: nothing is programmed before the sync, as before', async () => {
    for (const mangle of [
      (t: string) => t.slice(0, t.length / 2),
      (t: string) => t.replace('"node-a"', '"node-x"'),
      (t: string) => t.replace('"100.64.2.0/24"', '"0.0.0.0/0"'),
    ]) {
      const w = world();
      await firstRunThenCrash(w);
      w.file.text = mangle(w.file.text!);
      const again = await restartUnsynced(w);
      const res = await again.restoreLastApplied();
      expect(res.restored).toBe(false);
      expect(await w.routing.getLink('sealwg0')).toBeUndefined();
      expect(w.log.lines.some((l) => l.level === 'warn' && l.msg.startsWith('ignoring the last applied state'))).toBe(
        true,
      );
      expect(verdict(w, '100.64.2.7')).not.toMatch(/^pass/);
      await again.close();
    }
  });

  it('a peer that cannot be programmed keeps its prefix dropping (never ready, never plaintext)', async () => {
    const w = world();
    await firstRunThenCrash(w);
    const again = await restartUnsynced(w);
    w.wg.failNext('applyPeers');
    const res = await again.restoreLastApplied();
    expect(res).toMatchObject({ restored: true });
    expect(verdict(w, '100.64.2.7')).toBe('drop');
    expect(verdict(w, '100.64.3.7')).toBe('drop');
    await again.close();
  });

  it('with wireguard.restoreLastApplied false nothing is restored', async () => {
    const w = world();
    await firstRunThenCrash(w);
    const again = await restartUnsynced(w, { restore: false });
    expect(await again.restoreLastApplied()).toEqual({
      restored: false,
      reason: 'wireguard.restoreLastApplied is false',
    });
    expect(await w.routing.getLink('sealwg0')).toBeUndefined();
    await again.close();
  });

  it('a link that survived the restart (kill -9, wireguard-go kept) is left alone: the file is older than the kernel', async () => {
    const w = world();
    const first = w.agent(new MemoryNodeStore(C.nodes, { synced: true }));
    await first.prepareSteering('eth0');
    expect((await first.runNow()).errors).toEqual([]);
    await first.close();
    const peersBefore = (await w.wg.show('sealwg0'))?.peers.length;
    const entriesBefore = JSON.stringify([...w.steering.kernel.entries.values()]);
    const again = await restartUnsynced(w);
    expect(await again.restoreLastApplied()).toEqual({ restored: false, reason: 'the link survived' });
    expect((await w.wg.show('sealwg0'))?.peers.length).toBe(peersBefore);
    expect(JSON.stringify([...w.steering.kernel.entries.values()])).toBe(entriesBefore);
    await again.close();
  });

  it('with postQuantum required nothing is restored (the file has no preshared keys: classical-only peers)', async () => {
    const w = world();
    await firstRunThenCrash(w);
    const again = await restartUnsynced(w, { postQuantum: 'required' });
    expect(await again.restoreLastApplied()).toEqual({
      restored: false,
      reason: 'postQuantum.mode is required (no preshared keys to restore)',
    });
    expect(await w.routing.getLink('sealwg0')).toBeUndefined();
    await again.close();
  });
});
