/**
 * IPsec key rotation (issue 5, mode ipsec) with three agents over FakeXfrm: after every single
 * XFRM mutation on any node, every pair's pod traffic leaves as ESP on an SA the receiving node
 * holds (never plaintext, never blocked, never an SPI the peer cannot decrypt); at the end the
 * rotated node has a new key and epoch, every SA of the old key is gone on every node, the old
 * private key is erased from disk, and the pairs that did not involve the node kept their SAs.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IpsecDriver } from '../../ipsec/driver.js';
import { FakeXfrm } from '../../ipsec/xfrm.fake.js';
import { sodiumReady, type PrivateKey } from '../../keymgr/keys.js';
import { KeyStore } from '../../keymgr/keystore.js';
import { RotationStateFile } from '../../keymgr/rotationstore.js';
import { FakeSteering } from '../ports/steering.fake.js';
import { createFakeKernel, MemoryNodeStore } from '../ports/kernel.fake.js';
import { fixtureCluster, FIXTURE_SEEDS } from '../../test/fixtures.js';
import { validateConfig } from '../agent/config.js';
import { ANNOTATIONS } from '../../common/constants.js';
import { IpsecRotation, decodeEpochKey, ownIpsecKeys, peerIpsecKeys } from './ipsec.js';
import { silentLogger } from '../../common/logger.js';
import { createMetrics } from '../../common/metrics.js';
import type { RawNode } from '../ports/model.js';
import { Reconciler } from '../reconcile/reconciler.js';
import { decodeRotationStatus, encodeRotateRequest } from '../plan/rotation-codec.js';
import { rotationSettings } from './wireguard.js';

const NAMES = ['node-a', 'node-b', 'node-c'] as const;
type Name = (typeof NAMES)[number];

let dir: string;
beforeAll(async () => {
  await sodiumReady();
  dir = await mkdtemp(join(tmpdir(), 'sealnet-ipsec-rot-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Agent {
  readonly name: Name;
  readonly address: string;
  readonly pod: string;
  readonly xfrm: FakeXfrm;
  readonly reconciler: Reconciler;
  readonly rotation: IpsecRotation;
  readonly keysDir: string;
}

async function agent(self: Name, store: MemoryNodeStore, clock: () => number): Promise<Agent> {
  const C = fixtureCluster();
  const { routing, wg } = createFakeKernel();
  const i = FIXTURE_SEEDS[self];
  routing.addLink('eth0', { mtu: 1500, up: true });
  routing.addLink('cni0', { mtu: 1500, up: true });
  routing.addAddress(`198.18.0.${i}`, 15, 'eth0');
  routing.addAddress(`100.64.${i}.1`, 24, 'cni0');
  const xfrm = new FakeXfrm();
  const stateDir = join(dir, `${self}-${Math.random().toString(36).slice(2)}`);
  const config = validateConfig({
    nodeName: self,
    mode: 'ipsec',
    stateDir,
    store: { type: 'file', dir: '/unused' },
    debounceMs: 0,
    steering: { clusterCidrs: ['100.64.0.0/10'] },
    rotation: { graceSeconds: 5, peerTimeoutSeconds: 30, maxKeyAgeSeconds: 0 },
  });
  const keystore = new KeyStore({ stateDir });
  const key = await keystore.loadOrCreate('ipsec');
  const privateKeys = new Map<number, PrivateKey>([[key.epoch, key.privateKey]]);
  const rotation = new IpsecRotation({
    nodeName: self,
    settings: rotationSettings(config.rotation),
    keystore,
    stateFile: new RotationStateFile(stateDir),
    privateKeys,
    current: { publicKey: key.publicKey, epoch: key.epoch, createdAt: key.createdAt },
    log: silentLogger,
    wake: () => undefined,
    now: clock,
  });
  await rotation.load();
  const reconciler = new Reconciler({
    config,
    key: {
      publicKey: C.keys[self],
      privateKeyFile: '/unused/wireguard.key',
      epoch: 1,
      createdAt: new Date('2025-01-01T00:00:00Z'),
    },
    store,
    wg,
    routing,
    log: silentLogger,
    metrics: createMetrics(),
    steering: new FakeSteering(),
    ipsec: {
      port: new IpsecDriver({ xfrm, privateKey: (e) => privateKeys.get(e) }),
      get key() {
        return rotation.published();
      },
      checkedFamilies: [4],
      rotation,
    },
  });
  return {
    name: self,
    address: `198.18.0.${i}`,
    pod: `100.64.${i}.10`,
    xfrm,
    reconciler,
    rotation,
    keysDir: join(stateDir, 'keys'),
  };
}

function ownSpis(a: Agent): number[] {
  return a.xfrm
    .states()
    .map((s) => s.spi)
    .sort((x, y) => x - y);
}

describe('IPsec key rotation, make-before-break (FakeXfrm)', () => {
  it("pure: own keys per phase, and a peer's keys and send epoch from its annotations", () => {
    const K = { epoch: 1, publicKey: 'A'.repeat(43) + '=' } as never;
    const r = {
      id: 'r-1',
      reason: 'request',
      phase: 'staging',
      startedAt: 0,
      phaseSince: 0,
      announcedAt: 0,
      nextEpoch: 2,
      nextPublicKey: 'B'.repeat(43) + '=',
      graceUntil: undefined,
      lagging: [],
    } as const;
    expect(ownIpsecKeys(K, r).send.epoch).toBe(1);
    expect(ownIpsecKeys(K, r).others.map((k) => k.epoch)).toEqual([2]);
    expect(ownIpsecKeys(K, { ...r, phase: 'moving' }).send.epoch).toBe(2);
    expect(ownIpsecKeys(K, { ...r, phase: 'grace' })).toMatchObject({
      published: { epoch: 2 },
      previous: { epoch: 1 },
      next: undefined,
    });
    expect(ownIpsecKeys(K, { ...r, phase: 'finishing' }).others).toEqual([]);
    expect(decodeEpochKey('2:not-a-key')).toBeUndefined();
  });

  it('an automatic rotation due in weeks arms no timer that fires at once (setTimeout overflow)', async () => {
    const stateDir = join(dir, 'timer');
    const keystore = new KeyStore({ stateDir });
    const key = await keystore.loadOrCreate('ipsec');
    let wakes = 0;
    const rot = new IpsecRotation({
      nodeName: 'node-a',
      settings: rotationSettings({
        graceSeconds: 30,
        peerTimeoutSeconds: 15,
        maxKeyAgeSeconds: 30 * 86400,
        maxConcurrentAuto: 1,
      }),
      keystore,
      stateFile: new RotationStateFile(stateDir),
      privateKeys: new Map([[key.epoch, key.privateKey]]),
      current: { publicKey: key.publicKey, epoch: key.epoch, createdAt: key.createdAt },
      log: silentLogger,
      wake: () => void wakes++,
    });
    await rot.load();
    await rot.after({ nodes: [], synced: true, applied: true, peers: [] });
    await new Promise((r) => setTimeout(r, 300));
    rot.close();
    expect(wakes).toBe(0);
  });

  it('rotates node-a while every pair keeps sending ESP the peer accepts; old SAs and the old key are gone afterwards', async () => {
    let now = Date.parse('2025-06-01T12:00:00Z');
    const clock = (): number => now;
    const C = fixtureCluster();
    const store = new MemoryNodeStore(
      C.nodes
        .filter((n) => (NAMES as readonly string[]).includes(n.name))
        .map((n): RawNode => ({ ...n, annotations: {} })),
      { synced: true },
    );
    const agents = await Promise.all(NAMES.map((n) => agent(n, store, clock)));
    const pass = async (): Promise<void> => {
      for (const a of agents) {
        const r = await a.reconciler.runNow();
        expect([a.name, r.errors]).toEqual([a.name, []]);
      }
      now += 1000;
    };
    await pass();
    await pass();

    // Invariant after every mutation anywhere: each direction goes out as ESP that the receiver holds.
    const violations: string[] = [];
    const check = (): void => {
      for (const x of agents) {
        for (const y of agents) {
          if (x === y) continue;
          const v = x.xfrm.outboundVerdict(x.pod, y.pod);
          if (v.kind !== 'esp') violations.push(`${x.name}→${y.name}: ${v.kind}`);
          else if (!y.xfrm.acceptsInbound(y.address, v.spi))
            violations.push(`${x.name}→${y.name}: spi ${v.spi} unknown to ${y.name}`);
        }
      }
    };
    check();
    expect(violations).toEqual([]);
    for (const a of agents) a.xfrm.onMutation = check;

    const before = Object.fromEntries(agents.map((a) => [a.name, ownSpis(a)]));
    const bc = (a: Agent): number[] =>
      a.xfrm
        .states()
        .filter((s) => [s.src, s.dst].every((h) => h !== '198.18.0.1'))
        .map((s) => s.spi)
        .sort();
    const bcBefore = bc(agents[1]!);
    const oldKey = store.get('node-a')!.annotations[ANNOTATIONS.ipsecPublicKey];
    await store.patchAnnotations('node-a', {
      [ANNOTATIONS.rotateRequest]: encodeRotateRequest({ id: 'r-test', requestedAt: new Date(now) }),
    });

    const phases: string[] = [];
    for (let i = 0; i < 40; i++) {
      await pass();
      const phase = decodeRotationStatus(store.get('node-a')!.annotations[ANNOTATIONS.rotation] ?? '')?.phase ?? '?';
      if (phases.at(-1) !== phase) phases.push(phase);
      const st = decodeRotationStatus(store.get('node-a')!.annotations[ANNOTATIONS.rotation] ?? '');
      if (st?.phase === 'idle' && st.last?.id === 'r-test') break;
    }
    expect(violations).toEqual([]);
    expect(phases).toEqual(expect.arrayContaining(['staging', 'moving', 'grace', 'finishing', 'idle']));
    const st = decodeRotationStatus(store.get('node-a')!.annotations[ANNOTATIONS.rotation]!);
    expect(st).toMatchObject({ phase: 'idle', last: { id: 'r-test', epoch: 2, lagging: [] } });

    // node-a publishes the new key and epoch, nothing else; peers plan with it alone.
    const a = store.get('node-a')!.annotations;
    expect(a[ANNOTATIONS.ipsecKeyEpoch]).toBe('2');
    expect(a[ANNOTATIONS.ipsecPublicKey]).not.toBe(oldKey);
    expect(a[ANNOTATIONS.ipsecNextKey]).toBeUndefined();
    expect(a[ANNOTATIONS.ipsecPreviousKey]).toBeUndefined();
    expect(
      peerIpsecKeys(store.get('node-a')!, { epoch: 2, publicKey: a[ANNOTATIONS.ipsecPublicKey] as never }).keys.map(
        (k) => k.epoch,
      ),
    ).toEqual([2]);
    // Every SA with node-a is new (new SPIs), none of the old ones is left anywhere; b↔c untouched.
    for (const x of agents) {
      expect(x.xfrm.states()).toHaveLength(4);
      const withA = x.xfrm
        .states()
        .filter((s) => s.src === '198.18.0.1' || s.dst === '198.18.0.1')
        .map((s) => s.spi);
      expect(withA.filter((spi) => before[x.name]!.includes(spi))).toEqual([]);
    }
    expect(bc(agents[1]!)).toEqual(bcBefore);
    // The old private key is erased: only the new current key (and its metadata) is on disk.
    expect((await readdir(agents[0]!.keysDir)).filter((f) => !f.startsWith('.')).sort()).toEqual([
      'ipsec.json',
      'ipsec.key',
    ]);
    // Peers report they moved to the new key.
    for (const n of ['node-b', 'node-c']) expect(store.get(n)!.annotations[ANNOTATIONS.rotationPeers]).toBeUndefined();
  });
});
