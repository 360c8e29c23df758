/**
 * Mode ipsec (tunnels/reconcile/ipsec-pass.ts): config, the IPsec annotation codec, the plan from every
 * fixture node, and the reconciler in mode ipsec against fakes that behave like the kernel
 * (FakeXfrm under the real IpsecDriver, FakeRouting, FakeSteering).
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyOwnerBook } from '../../keymgr/keyowners.js';
import { IpsecDriver } from '../../ipsec/driver.js';
import { FakeXfrm, type FakeEsp } from '../../ipsec/xfrm.fake.js';
import { parsePrivateKey, sodiumReady, type PrivateKey, type PublicKey } from '../../keymgr/keys.js';
import { FakeSteering } from '../ports/steering.fake.js';
import { createFakeKernel, MemoryNodeStore, type FakeRouting } from '../ports/kernel.fake.js';
import {
  fixtureCluster,
  fixtureKey,
  FIXTURE_NAMES,
  FIXTURE_SEEDS,
  type FixtureCluster,
  type FixtureName,
} from '../../test/fixtures.js';
import { decodeIpsecKey } from '../plan/annotations.js';
import { validateConfig } from '../agent/config.js';
import { ANNOTATIONS, ROUTE_TABLE } from '../../common/constants.js';
import { planIpsecMode, type IpsecModePlanInput } from './ipsec-pass.js';
import type { Logger } from '../../common/logger.js';
import { createMetrics } from '../../common/metrics.js';
import { ipsecOf, wireguardOf, type DesiredState, type RawNode } from '../ports/model.js';
import { Reconciler } from './reconciler.js';

/** IPsec keys are separate from the (identity) WireGuard keys: another seed per node. */
const ipsecSeed = (n: FixtureName): number => FIXTURE_SEEDS[n] + 100;
const LOW_ORDER = 'AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

let C: FixtureCluster;
let IK: Record<FixtureName, PublicKey>;
beforeAll(async () => {
  await sodiumReady();
  C = fixtureCluster();
  IK = Object.fromEntries(FIXTURE_NAMES.map((n) => [n, fixtureKey(ipsecSeed(n))])) as Record<FixtureName, PublicKey>;
});

/** The fixture cluster as mode-ipsec agents would have published it. */
function ipsecNodes(over: Partial<Record<FixtureName, Record<string, string | undefined>>> = {}): RawNode[] {
  return C.nodes.map((n) => {
    const name = n.name as FixtureName;
    const merged: Record<string, string | undefined> = {
      ...n.annotations,
      [ANNOTATIONS.mode]: 'ipsec',
      [ANNOTATIONS.ipsecPublicKey]: IK[name],
      [ANNOTATIONS.ipsecKeyEpoch]: '1',
      ...over[name],
    };
    return {
      ...n,
      annotations: Object.fromEntries(Object.entries(merged).filter((e): e is [string, string] => e[1] !== undefined)),
    };
  });
}

function planFrom(
  self: FixtureName,
  nodes: RawNode[] = ipsecNodes(),
  extra: Partial<IpsecModePlanInput['ipsec']> = {},
): DesiredState {
  const raw = nodes.find((n) => n.name === self)!;
  return planIpsecMode({
    nodes,
    self: { name: self, wireguardPublicKey: C.keys[self], localAddresses: C.localAddresses[self] },
    config: { mode: 'ipsec', listenPort: 51880, persistentKeepalive: 0, underlayMtu: 1500, underlayFamily: 4 },
    ipsec: {
      publicKey: IK[self],
      epoch: 1,
      address: raw.internalIPs[0]!,
      underlayDev: 'eth0',
      keyBits: 256,
      replayWindow: 1024,
      ...extra,
    },
  });
}

describe('ipsec config', () => {
  it('defaults to AES-GCM 256 with a 1024-packet replay window', () => {
    expect(validateConfig({ nodeName: 'node-a' }).ipsec).toEqual({ keyBits: 256, replayWindow: 1024 });
    expect(
      validateConfig({ nodeName: 'node-a', mode: 'ipsec', ipsec: { keyBits: 128, replayWindow: 4096 } }).ipsec,
    ).toEqual({ keyBits: 128, replayWindow: 4096 });
  });

  it('refuses other key sizes, replay windows outside 1–4096 and unknown fields, naming the field', () => {
    expect(() => validateConfig({ nodeName: 'node-a', ipsec: { keyBits: 192 } })).toThrow(
      'ipsec.keyBits must be 128 or 256',
    );
    expect(() => validateConfig({ nodeName: 'node-a', ipsec: { keyBits: '256' } })).toThrow(
      'ipsec.keyBits must be 128 or 256',
    );
    expect(() => validateConfig({ nodeName: 'node-a', ipsec: { replayWindow: 0 } })).toThrow(
      'ipsec.replayWindow must be an integer from 1 to 4096',
    );
    expect(() => validateConfig({ nodeName: 'node-a', ipsec: { replayWindow: 4097 } })).toThrow(
      'ipsec.replayWindow must be an integer from 1 to 4096',
    );
    expect(() => validateConfig({ nodeName: 'node-a', ipsec: { algorithm: 'cbc(aes)' } })).toThrow(
      'ipsec.algorithm is not a known field',
    );
  });
});

describe('decodeIpsecKey', () => {
  const raw = (ann: Record<string, string>): RawNode => ({
    name: 'n',
    annotations: ann,
    podCIDRs: [],
    internalIPs: [],
  });

  it('reads the key and its epoch', () => {
    expect(
      decodeIpsecKey(raw({ [ANNOTATIONS.ipsecPublicKey]: IK['node-a'], [ANNOTATIONS.ipsecKeyEpoch]: '7' })),
    ).toEqual({ ok: true, publicKey: IK['node-a'], epoch: 7, generation: 0 });
    expect(
      decodeIpsecKey(
        raw({
          [ANNOTATIONS.ipsecPublicKey]: IK['node-a'],
          [ANNOTATIONS.ipsecKeyEpoch]: '7',
          [ANNOTATIONS.ipsecGeneration]: '0000beef',
        }),
      ),
    ).toEqual({ ok: true, publicKey: IK['node-a'], epoch: 7, generation: 0xbeef });
  });

  it.each([
    [{}, 'sealnet.io/ipsec-public-key is missing'],
    [{ [ANNOTATIONS.ipsecPublicKey]: 'AAAA', [ANNOTATIONS.ipsecKeyEpoch]: '1' }, 'is 4 characters'],
    [{ [ANNOTATIONS.ipsecPublicKey]: LOW_ORDER, [ANNOTATIONS.ipsecKeyEpoch]: '1' }, 'low-order'],
    [{ [ANNOTATIONS.ipsecPublicKey]: 'KEY' }, 'sealnet.io/ipsec-key-epoch is missing'],
    [{ [ANNOTATIONS.ipsecPublicKey]: 'KEY', [ANNOTATIONS.ipsecKeyEpoch]: '-1' }, 'sealnet.io/ipsec-key-epoch is "-1"'],
    ...['00000000', '1', 'BEEFBEEF', '0x0000be', '123456789', ' 1234567'].map(
      (g) =>
        [
          { [ANNOTATIONS.ipsecPublicKey]: 'KEY', [ANNOTATIONS.ipsecKeyEpoch]: '1', [ANNOTATIONS.ipsecGeneration]: g },
          'sealnet.io/ipsec-generation is',
        ] as [Record<string, string>, string],
    ),
  ])('refuses %j', (ann, why) => {
    const a = Object.fromEntries(Object.entries(ann).map(([k, v]) => [k, v === 'KEY' ? IK['node-b'] : v]));
    const r = decodeIpsecKey(raw(a));
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reason).toBe('annotations-invalid');
      expect(r.detail).toContain(why);
    }
  });
});

describe('planIpsecMode from every node', () => {
  const SELVES = ['node-a', 'node-b', 'node-c', 'node-d', 'node-e'] as const;

  it.each(SELVES)(
    '%s: one pair per other node, routes out of the underlay at the ESP MTU, no WireGuard peers',
    (self) => {
      const d = planFrom(self);
      const others = FIXTURE_NAMES.filter((n) => n !== self);
      expect(d.tunnel.kind).toBe('ipsec');
      expect(wireguardOf(d)).toBeUndefined();
      expect(d.skipped).toEqual([]);
      expect(ipsecOf(d)!.peers.map((p) => p.node)).toEqual(others);
      expect(ipsecOf(d)!).toMatchObject({ self, keyBits: 256, replayWindow: 1024 });
      expect(ipsecOf(d)!.policyMark).toBeUndefined();
      const gateway = C.localAddresses[self].find((a) => a.startsWith('100.64.'));
      for (const r of d.routes)
        expect(r).toEqual({
          dst: r.dst,
          dev: 'eth0',
          mtu: 1446,
          src: r.dst.includes(':') ? r.src : gateway,
          table: ROUTE_TABLE,
        });
      // Every remote pod CIDR has its route (node-e's IPv6 one too: a route without a policy is
      // plaintext the egress guard drops, never a leak).
      expect(d.routes.map((r) => r.dst).sort()).toEqual(
        C.nodes
          .filter((n) => n.name !== self)
          .flatMap((n) => n.podCIDRs.map((c) => (c === 'fd00:64:5:0::/64' ? 'fd00:64:5::/64' : c)))
          .sort(),
      );
      // Receiving SPIs never collide on a node.
      const inbound = ipsecOf(d)!.peers.flatMap((p) => p.inbound.map((s) => s.spi));
      expect(new Set(inbound).size).toBe(inbound.length);
    },
  );

  it('both ends of every pair agree on SPIs, epochs and keys', () => {
    const plans = Object.fromEntries(SELVES.map((s) => [s, planFrom(s)])) as Record<FixtureName, DesiredState>;
    for (const a of SELVES) {
      for (const pa of ipsecOf(plans[a])!.peers) {
        const b = pa.node as FixtureName;
        const pb = ipsecOf(plans[b])!.peers.find((p) => p.node === a)!;
        expect(pa.outbound.peerPublicKey).toBe(IK[b]);
        expect(pb.inbound).toEqual([{ spi: pa.outbound.spi, srcEpoch: 1, dstEpoch: 1, peerPublicKey: IK[a] }]);
        expect([pa.localAddress, pa.remoteAddress]).toEqual([pb.remoteAddress, pb.localAddress]);
      }
    }
  });

  it('skips a node without a usable IPsec key, and the other pairs keep their SPIs', () => {
    const full = planFrom('node-a');
    const spis = (d: DesiredState): Record<string, number> =>
      Object.fromEntries(ipsecOf(d)!.peers.map((p) => [p.node, p.outbound.spi]));
    for (const bad of [{ [ANNOTATIONS.ipsecPublicKey]: undefined }, { [ANNOTATIONS.ipsecPublicKey]: LOW_ORDER }]) {
      const d = planFrom('node-a', ipsecNodes({ 'node-b': bad }));
      expect(d.skipped).toEqual([
        {
          name: 'node-b',
          reason: 'annotations-invalid',
          detail: expect.stringContaining('sealnet.io/ipsec-public-key'),
        },
      ]);
      expect(ipsecOf(d)!.peers.map((p) => p.node)).toEqual(['node-c', 'node-d', 'node-e']);
      expect(d.routes.some((r) => r.dst === '100.64.2.0/24')).toBe(false);
      const { 'node-b': _gone, ...rest } = spis(full);
      expect(spis(d)).toEqual(rest);
    }
  });

  it('skips two nodes publishing one IPsec key, unless one of them alone had it first', () => {
    const nodes = ipsecNodes({ 'node-c': { [ANNOTATIONS.ipsecPublicKey]: IK['node-b'] } });
    const both = planFrom('node-a', nodes);
    expect(both.skipped.map((s) => [s.name, s.reason])).toEqual([
      ['node-b', 'duplicate-key'],
      ['node-c', 'duplicate-key'],
    ]);
    const kept = planFrom('node-a', nodes, { established: { 'node-b': IK['node-b'] } });
    expect(kept.skipped).toEqual([
      {
        name: 'node-c',
        reason: 'duplicate-key',
        detail: 'nodes node-c and node-b publish the same IPsec public key; node-b had it first',
      },
    ]);
    expect(ipsecOf(kept)!.peers.map((p) => p.node)).toEqual(['node-b', 'node-d', 'node-e']);
  });

  it("skips a node publishing this node's own IPsec key, and a node running mode wireguard", () => {
    const d = planFrom(
      'node-a',
      ipsecNodes({
        'node-d': { [ANNOTATIONS.ipsecPublicKey]: IK['node-a'] },
        'node-e': { [ANNOTATIONS.mode]: 'wireguard' },
      }),
    );
    expect(d.skipped.map((s) => [s.name, s.reason])).toEqual([
      ['node-d', 'key-equals-self'],
      ['node-e', 'mode-mismatch'],
    ]);
  });

  it('skips a peer whose underlay is of another family than this node', () => {
    const nodes = ipsecNodes({ 'node-c': { [ANNOTATIONS.endpoint]: '[fd00:198:18::3]:51999' } });
    const d = planFrom('node-a', nodes);
    expect(d.skipped).toEqual([
      { name: 'node-c', reason: 'ipsec-unusable', detail: expect.stringContaining('is not IPv4') },
    ]);
    expect(d.routes.some((r) => r.dst === '100.64.3.0/24')).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
// The reconciler in mode ipsec

const silent: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

interface Agent {
  reconciler: Reconciler;
  xfrm: FakeXfrm;
  routing: FakeRouting;
  steering: FakeSteering;
  store: MemoryNodeStore;
  metrics: ReturnType<typeof createMetrics>;
  restart(): Reconciler;
}

function agent(
  self: FixtureName,
  store: MemoryNodeStore,
  opts: { esp?: FakeEsp; checked?: (4 | 6)[]; generation?: number; keyOwners?: KeyOwnerBook } = {},
): Agent {
  const { routing, wg } = createFakeKernel();
  const i = FIXTURE_SEEDS[self];
  routing.addLink('eth0', { mtu: 1500, up: true });
  routing.addLink('cni0', { mtu: 1500, up: true });
  routing.addAddress(`198.18.0.${i}`, 15, 'eth0');
  routing.addAddress(`100.64.${i}.1`, 24, 'cni0');
  const xfrm = new FakeXfrm({ esp: opts.esp ?? 'supported' });
  const steering = new FakeSteering();
  const priv: PrivateKey = parsePrivateKey(new Uint8Array(32).fill(ipsecSeed(self)));
  const config = validateConfig({
    nodeName: self,
    mode: 'ipsec',
    store: { type: 'file', dir: '/unused' },
    debounceMs: 0,
    steering: { clusterCidrs: ['100.64.0.0/10'] },
  });
  const metrics = createMetrics();
  const make = (): Reconciler => {
    steering.restart();
    return new Reconciler({
      config,
      key: {
        publicKey: C.keys[self],
        privateKeyFile: '/unused/wireguard.key',
        epoch: 1,
        createdAt: new Date('2024-01-01T00:00:00Z'),
      },
      store,
      wg,
      routing,
      log: silent,
      metrics,
      steering,
      keyOwners: opts.keyOwners,
      ipsec: {
        port: new IpsecDriver({ xfrm, privateKey: (e) => (e === 1 ? priv : undefined) }),
        key: { publicKey: IK[self], epoch: 1 },
        checkedFamilies: opts.checked ?? [4],
        generation: opts.generation,
      },
    });
  };
  return { reconciler: make(), xfrm, routing, steering, store, metrics, restart: make };
}

/** Nodes a..c as the store holds them before node-a's agent published anything. */
function storeFor(synced = true): MemoryNodeStore {
  const nodes = ipsecNodes().filter((n) => ['node-a', 'node-b', 'node-c'].includes(n.name));
  return new MemoryNodeStore(
    nodes.map((n) => (n.name === 'node-a' ? { ...n, annotations: {} } : n)),
    { synced },
  );
}

describe('Reconciler in mode ipsec', () => {
  it('publishes the IPsec key, installs SAs, policies, routes and ready steering entries; a second pass changes nothing', async () => {
    const a = agent('node-a', storeFor());
    const r1 = await a.reconciler.runNow();
    expect(r1.errors).toEqual([]);
    expect(r1.converged).toBe(true);
    const published = a.store.get('node-a')!.annotations;
    expect(published).toMatchObject({
      [ANNOTATIONS.mode]: 'ipsec',
      [ANNOTATIONS.ipsecPublicKey]: IK['node-a'],
      [ANNOTATIONS.ipsecKeyEpoch]: '1',
      [ANNOTATIONS.endpoint]: '198.18.0.1:51880',
    });
    // Two peers: one outbound and one inbound SA each; out + in + fwd policies each.
    expect(a.xfrm.states()).toHaveLength(4);
    expect(a.xfrm.policies()).toHaveLength(6);
    expect(r1.kernelOps).toMatchObject({ xfrm_add_state: 4, xfrm_add_policy: 6, route_replace: 2 });
    expect(a.xfrm.outboundVerdict('100.64.1.10', '100.64.2.10')).toEqual({
      kind: 'esp',
      spi: ipsecOf(r1.desired)!.peers[0]!.outbound.spi,
    });
    expect(a.xfrm.outboundVerdict('100.64.1.1', '100.64.3.10')).toMatchObject({ kind: 'esp' }); // host traffic with the pod-CIDR source
    expect(a.routing.routesIn(ROUTE_TABLE).map((r) => [r.dst, r.dev, r.mtu, r.src])).toEqual([
      ['100.64.2.0/24', 'eth0', 1446, '100.64.1.1'],
      ['100.64.3.0/24', 'eth0', 1446, '100.64.1.1'],
    ]);
    expect(a.steering.kernel.settings).toMatchObject({ wireguardPort: 0, tunnelFwmark: 0x5188 });
    const entries = [...a.steering.kernel.entries.values()].map((e) => [e.cidr, e.state, e.action]);
    expect(entries).toEqual([
      ['100.64.0.0/10', 'no-peer', 'redirect'],
      ['100.64.2.0/24', 'ready', 'mark'],
      ['100.64.3.0/24', 'ready', 'mark'],
    ]);
    const r2 = await a.reconciler.runNow();
    expect(r2.errors).toEqual([]);
    expect(r2.kernelOps).toEqual({});
    // A restarted agent adopts everything as it is.
    const r3 = await a.restart().runNow();
    expect(r3.errors).toEqual([]);
    expect(r3.kernelOps).toEqual({});
  });

  it('derives the same SA key on both ends of a pair (through the planner, SPI allocation and the driver)', async () => {
    const store = storeFor();
    const a = agent('node-a', store);
    const b = agent('node-b', store);
    await a.reconciler.runNow();
    await b.reconciler.runNow();
    await a.reconciler.runNow();
    const key = (x: Agent, spi: number): string =>
      Buffer.from(x.xfrm.states().find((s) => s.spi === spi)!.aead!.key).toString('hex');
    const spis = a.xfrm
      .states()
      .filter((s) => b.xfrm.states().some((t) => t.spi === s.spi))
      .map((s) => s.spi);
    expect(spis).toHaveLength(2); // a→b and b→a
    for (const spi of spis) expect(key(a, spi)).toBe(key(b, spi));
    expect(new Set(a.xfrm.states().map((s) => Buffer.from(s.aead!.key).toString('hex'))).size).toBe(4);
  });

  it('IPsec generations: both ends derive the same keys; a rebooted node (new generation, no XFRM state) gets new SPIs and keys on its pairs only', async () => {
    const store = storeFor();
    const a = agent('node-a', store, { generation: 0x0a0a0a0a });
    const b = agent('node-b', store, { generation: 0x0b0b0b0b });
    await a.reconciler.runNow();
    await b.reconciler.runNow();
    await a.reconciler.runNow();
    expect(store.get('node-b')!.annotations[ANNOTATIONS.ipsecGeneration]).toBe('0b0b0b0b');
    const sas = (x: Agent, peer: string): Map<number, string> =>
      new Map(
        x.xfrm
          .states()
          .filter((s) => s.src === peer || s.dst === peer)
          .map((s) => [s.spi, Buffer.from(s.aead!.key).toString('hex')]),
      );
    const ab = sas(a, '198.18.0.2');
    expect([...ab.keys()].sort()).toEqual([...sas(b, '198.18.0.1').keys()].sort());
    for (const [spi, k] of ab) expect(sas(b, '198.18.0.1').get(spi)).toBe(k);
    // node-c publishes no generation (an agent from before them): that pair derives as before.
    const ac = sas(a, '198.18.0.3');
    const legacy = agent('node-a', storeFor());
    await legacy.reconciler.runNow();
    expect(sas(legacy, '198.18.0.3')).toEqual(ac);
    expect([...sas(legacy, '198.18.0.2').keys()].some((spi) => ab.has(spi))).toBe(false);

    // node-b reboots: its XFRM state is gone and it draws a new generation.
    const b2 = agent('node-b', store, { generation: 0x0b0b0b0c });
    await b2.reconciler.runNow();
    await a.reconciler.runNow();
    await b2.reconciler.runNow();
    const ab2 = sas(a, '198.18.0.2');
    expect(ab2.size).toBe(2);
    for (const [spi, k] of ab2) {
      expect(ab.has(spi)).toBe(false); // a replay of old traffic finds no SA
      expect([...ab.values()]).not.toContain(k);
      expect(sas(b2, '198.18.0.1').get(spi)).toBe(k);
    }
    expect(sas(a, '198.18.0.3')).toEqual(ac); // the pair with node-c is untouched
  });

  it('a restarted agent keeps a copied IPsec key with the node first seen with it (first-seen ownership in the state dir)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sealnet-ipsec-owners-'));
    try {
      const store = storeFor();
      const book = await KeyOwnerBook.open(dir, (e) => {
        throw e;
      });
      const a = agent('node-a', store, { keyOwners: book });
      expect((await a.reconciler.runNow()).errors).toEqual([]);
      await book.flush();
      // node-c now publishes node-b's IPsec key; node-a's agent restarts (no in-memory history).
      const c = store.get('node-c')!;
      store.upsert({ ...c, annotations: { ...c.annotations, [ANNOTATIONS.ipsecPublicKey]: IK['node-b'] } });
      const reopened = await KeyOwnerBook.open(dir, (e) => {
        throw e;
      });
      const after = agent('node-a', store, { keyOwners: reopened });
      const r = await after.reconciler.runNow();
      expect(r.desired!.skipped.map((s) => [s.name, s.reason])).toEqual([['node-c', 'duplicate-key']]);
      expect(ipsecOf(r.desired)!.peers.map((p) => p.node)).toEqual(['node-b']);
      // Control: the same restart without the book cannot tell the owner and skips both.
      const blind = agent('node-a', store);
      const rb = await blind.reconciler.runNow();
      expect(rb.desired!.skipped.map((s) => [s.name, s.reason])).toEqual([
        ['node-b', 'duplicate-key'],
        ['node-c', 'duplicate-key'],
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('prunes a departed peer only after the store synced', async () => {
    const store = storeFor(false);
    const a = agent('node-a', store);
    await a.reconciler.runNow();
    expect(a.xfrm.states()).toHaveLength(4);
    store.remove('node-c');
    const unsynced = await a.reconciler.runNow();
    expect(unsynced.pruned).toBe(false);
    expect(a.xfrm.states()).toHaveLength(4);
    store.setSynced(true);
    await a.reconciler.runNow();
    expect(
      a.xfrm
        .states()
        .map((s) => [s.src, s.dst])
        .sort(),
    ).toEqual([
      ['198.18.0.1', '198.18.0.2'],
      ['198.18.0.2', '198.18.0.1'],
    ]);
    expect(a.routing.routesIn(ROUTE_TABLE).map((r) => r.dst)).toEqual(['100.64.2.0/24']);
    expect([...a.steering.kernel.entries.keys()]).toEqual(['100.64.0.0/10', '100.64.2.0/24']);
  });

  it('on a kernel without ESP for the endpoint family publishes nothing and changes nothing', async () => {
    const store = storeFor();
    const a = agent('node-a', store, { esp: 'no-esp', checked: [] });
    const r = await a.reconciler.runNow();
    expect(r.errors).toEqual([{ step: 'ipsec', message: expect.stringContaining('ESP') }]);
    expect(store.patches).toEqual([]);
    expect(a.xfrm.states()).toEqual([]);
    expect(a.routing.routesIn(ROUTE_TABLE)).toEqual([]);
    expect(a.steering.calls).toEqual([]);
  });

  it('a peer the kernel refuses is reported; the other pair works', async () => {
    const a = agent('node-a', storeFor());
    a.xfrm.failNext('addState', { errno: 'EINVAL' });
    const r = await a.reconciler.runNow();
    expect(r.errors.map((e) => e.step)).toEqual(['ipsec']);
    expect(r.errors[0]!.message).toContain('IPsec pair with node-b not installed');
    expect(
      a.xfrm
        .states()
        .map((s) => s.dst)
        .sort(),
    ).toEqual(['198.18.0.1', '198.18.0.3']);
    const states = Object.fromEntries([...a.steering.kernel.entries.values()].map((e) => [e.cidr, e.state]));
    expect(states).toMatchObject({ '100.64.2.0/24': 'not-ready', '100.64.3.0/24': 'ready' });
    const again = await a.reconciler.runNow();
    expect(again.errors).toEqual([]);
    expect(a.xfrm.states()).toHaveLength(4);
  });
});
