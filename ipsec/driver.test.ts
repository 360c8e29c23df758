/**
 * IpsecDriver against FakeXfrm (kernel-like tables, see xfrm.fake.ts). The fake answers where a
 * pod's packet would go after every single mutation, so "never plaintext" and "no drop during a
 * rotation" are checked at every step, not only at the end.
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { generateKeyPair, type KeyPair } from '../keymgr/keys.js';
import { XFRM_GUARD_PRIORITY, XFRM_OUTPUT_MARK, XFRM_POLICY_PRIORITY, XFRM_REQID } from '../common/constants.js';
import { IpsecDriver } from './driver.js';
import { FakeXfrm, type OutboundVerdict } from './xfrm.fake.js';
import { GUARD_LIFETIME_SECONDS, isOwnedPolicy } from './objects.js';
import { planIpsec, type IpsecPlanNode } from '../tunnels/plan/ipsec-sa.js';
import type { DesiredIpsec } from '../tunnels/ports/ipsec.js';
import type { XfrmPolicy, XfrmState } from '../tunnels/ports/xfrm-types.js';

interface Node {
  name: string;
  address: string;
  pod: string;
  /** A pod address inside `pod`. */
  podIP: string;
  currentEpoch: number;
  epochs: number[];
}

const NODES: Node[] = [
  { name: 'node-a', address: '198.18.0.1', pod: '100.64.1.0/24', podIP: '100.64.1.10', currentEpoch: 1, epochs: [1] },
  { name: 'node-b', address: '198.18.0.2', pod: '100.64.2.0/24', podIP: '100.64.2.10', currentEpoch: 1, epochs: [1] },
  { name: 'node-c', address: '198.18.0.3', pod: '100.64.3.0/24', podIP: '100.64.3.10', currentEpoch: 1, epochs: [1] },
];

const keys = new Map<string, KeyPair>();

async function keyFor(node: string, epoch: number): Promise<KeyPair> {
  const id = `${node}/${epoch}`;
  if (!keys.has(id)) keys.set(id, await generateKeyPair());
  return keys.get(id)!;
}

/** Fresh keys for every node (tests that "reinstall" a node replace one of them). */
async function resetKeys(): Promise<void> {
  keys.clear();
  for (const n of NODES) await keyFor(n.name, 1);
}

beforeAll(resetKeys);

function planNode(n: Node): IpsecPlanNode {
  return {
    name: n.name,
    address: n.address,
    podCIDRs: [n.pod],
    currentEpoch: n.currentEpoch,
    keys: n.epochs.map((epoch) => ({ epoch, publicKey: keys.get(`${n.name}/${epoch}`)!.publicKey })),
  };
}

function desiredFor(self: string, nodes: readonly Node[] = NODES, over: Partial<DesiredIpsec> = {}): DesiredIpsec {
  const me = nodes.find((n) => n.name === self)!;
  const { desired } = planIpsec({
    self: planNode(me),
    peers: nodes.filter((n) => n !== me).map(planNode),
    keyBits: 128,
    replayWindow: 1024,
  });
  return { ...desired, ...over };
}

function driverFor(self: string, xfrm: FakeXfrm): IpsecDriver {
  return new IpsecDriver({ xfrm, privateKey: (epoch) => keys.get(`${self}/${epoch}`)?.privateKey });
}

const hex = (b: Uint8Array | undefined): string => Buffer.from(b ?? []).toString('hex');
const node = (name: string): Node => NODES.find((n) => n.name === name)!;
const verdict = (fake: FakeXfrm, from: string, to: string): OutboundVerdict =>
  fake.outboundVerdict(node(from).podIP, node(to).podIP);

describe('fresh install', () => {
  it('installs inbound and outbound SAs and in/fwd/out policies per peer, states first, out policy last', async () => {
    const fake = new FakeXfrm();
    const result = await driverFor('node-a', fake).apply(desiredFor('node-a'), { prune: true });
    expect(result).toMatchObject({ ready: ['node-b', 'node-c'], failed: [], unpruned: 0, warnings: [] });
    expect(fake.states()).toHaveLength(4);
    expect(fake.policies()).toHaveLength(6);
    // Per peer: inbound state, outbound state, in, fwd, out.
    expect(result.changes.map((c) => `${c.node} ${c.op}`)).toEqual([
      'node-b add-state',
      'node-b add-state',
      'node-b add-policy',
      'node-b add-policy',
      'node-b add-policy',
      'node-c add-state',
      'node-c add-state',
      'node-c add-policy',
      'node-c add-policy',
      'node-c add-policy',
    ]);
    const desired = desiredFor('node-a');
    const b = desired.peers.find((p) => p.node === 'node-b')!;
    const out = fake.states().find((s) => s.spi === b.outbound.spi)!;
    expect(out).toMatchObject({
      src: '198.18.0.1',
      dst: '198.18.0.2',
      reqid: XFRM_REQID,
      esn: true,
      replayWindow: 1024,
      mode: 'tunnel',
      outputMark: { value: XFRM_OUTPUT_MARK, mask: 0xffffffff },
    });
    expect(out.aead?.key).toHaveLength(20);
    const outPolicy = fake.policies().find((p) => p.dir === 'out' && p.selector.dst === '100.64.2.0/24')!;
    expect(outPolicy).toMatchObject({
      selector: { src: '100.64.1.0/24', dst: '100.64.2.0/24' },
      action: 'allow',
      priority: XFRM_POLICY_PRIORITY,
      templates: [{ src: '198.18.0.1', dst: '198.18.0.2', spi: b.outbound.spi, reqid: XFRM_REQID, mode: 'tunnel' }],
    });
    expect(
      fake
        .policies()
        .filter((p) => p.selector.src === '100.64.2.0/24')
        .map((p) => p.dir)
        .sort(),
    ).toEqual(['fwd', 'in']);
    expect(verdict(fake, 'node-a', 'node-b')).toEqual({ kind: 'esp', spi: b.outbound.spi });
  });

  it('gives both ends of each pair the same key for each SA, and every SA its own key', async () => {
    const fakes = new Map(NODES.map((n) => [n.name, new FakeXfrm()]));
    for (const n of NODES) await driverFor(n.name, fakes.get(n.name)!).apply(desiredFor(n.name), { prune: true });
    const all: XfrmState[] = [...fakes.values()].flatMap((f) => f.states());
    for (const [name, fake] of fakes) {
      for (const s of fake.states().filter((x) => x.src === node(name).address)) {
        // The outbound SA here is the inbound SA on the destination node, same SPI and key.
        const peerName = NODES.find((n) => n.address === s.dst)!.name;
        const twin = fakes
          .get(peerName)!
          .states()
          .find((x) => x.spi === s.spi && x.dst === s.dst);
        expect(twin).toBeDefined();
        expect(hex(twin!.aead?.key)).toBe(hex(s.aead?.key));
      }
    }
    // 3 nodes: 6 directed SAs, each present twice (once per end), 6 distinct keys.
    expect(all).toHaveLength(12);
    expect(new Set(all.map((s) => hex(s.aead?.key))).size).toBe(6);
    expect(new Set(all.map((s) => `${s.dst}/${s.spi}`)).size).toBe(6);
  });

  it('is idempotent and adopts what a previous agent installed', async () => {
    const fake = new FakeXfrm();
    await driverFor('node-a', fake).apply(desiredFor('node-a'), { prune: true });
    const mark = fake.journal.length;
    // Same driver again, then a "restarted agent" (new driver instance), before and after sync.
    expect((await driverFor('node-a', fake).apply(desiredFor('node-a'), { prune: false })).changes).toEqual([]);
    const again = await driverFor('node-a', fake).apply(desiredFor('node-a'), { prune: true });
    expect(again).toMatchObject({ changes: [], unpruned: 0, ready: ['node-b', 'node-c'] });
    expect(fake.journal.length).toBe(mark);
  });
});

describe('make before break', () => {
  it("rotates a peer's key without a single step where node-a's pod traffic is dropped or in plaintext", async () => {
    const fake = new FakeXfrm();
    const a = driverFor('node-a', fake);
    await a.apply(desiredFor('node-a'), { prune: true });
    const seen: string[] = [];
    fake.onMutation = () => {
      const v = verdict(fake, 'node-a', 'node-b');
      seen.push(v.kind);
      expect(v.kind).toBe('esp');
    };
    // node-b publishes its next key (epoch 2): node-a adds the inbound SA for it, changes nothing else.
    await keyFor('node-b', 2);
    const rotating = NODES.map((n) => (n.name === 'node-b' ? { ...n, epochs: [1, 2] } : n));
    const step1 = await a.apply(desiredFor('node-a', rotating), { prune: true });
    expect(step1.changes.map((c) => c.op)).toEqual(['add-state']);
    // node-b switches to epoch 2: node-a adds its new outbound SA, repoints the out policy, then
    // removes the old outbound SA (prune). Inbound for both of node-b's epochs stays (grace).
    const switched = NODES.map((n) => (n.name === 'node-b' ? { ...n, epochs: [1, 2], currentEpoch: 2 } : n));
    const step2 = await a.apply(desiredFor('node-a', switched), { prune: true });
    expect(step2.changes.map((c) => c.op)).toEqual(['add-state', 'update-policy', 'delete-state']);
    // Grace period over: node-b's epoch 1 disappears; node-a drops the inbound SA of epoch 1.
    const done = NODES.map((n) => (n.name === 'node-b' ? { ...n, epochs: [2], currentEpoch: 2 } : n));
    const step3 = await a.apply(desiredFor('node-a', done), { prune: true });
    expect(step3.changes.map((c) => c.op)).toEqual(['delete-state']);
    expect(seen.length).toBeGreaterThanOrEqual(5);
    const b = desiredFor('node-a', done).peers.find((p) => p.node === 'node-b')!;
    expect(verdict(fake, 'node-a', 'node-b')).toEqual({ kind: 'esp', spi: b.outbound.spi });
    expect(fake.states().filter((s) => s.dst === '198.18.0.2' || s.src === '198.18.0.2')).toHaveLength(2);
  });

  it('replaces an outbound SA whose key changed under the same SPI behind guards: blocked, never plaintext', async () => {
    const fake = new FakeXfrm();
    await driverFor('node-a', fake).apply(desiredFor('node-a'), { prune: true });
    // node-b was reinstalled: a new key under the same name and epoch, hence the same SPIs.
    keys.set('node-b/1', await generateKeyPair());
    const kinds: string[] = [];
    fake.onMutation = () => {
      const v = verdict(fake, 'node-a', 'node-b');
      kinds.push(v.kind);
      expect(v.kind).not.toBe('plaintext');
    };
    const r = await driverFor('node-a', fake).apply(desiredFor('node-a'), { prune: true });
    expect(r.failed).toEqual([]);
    expect(r.changes.filter((c) => c.node === 'node-b').map((c) => c.op)).toEqual([
      'replace-state',
      'add-guard',
      'add-guard',
      'replace-state',
      'delete-guard',
      'delete-guard',
    ]);
    // While the outbound state was swapped the guards blocked (and no step fell back to plaintext).
    expect(kinds).toContain('blocked');
    expect(fake.policies().filter((p) => p.priority === XFRM_GUARD_PRIORITY)).toEqual([]);
    expect(verdict(fake, 'node-a', 'node-b').kind).toBe('esp');
    await resetKeys();
  });

  it('splits guards on a free bit of the policy mark, so they cover exactly the marked traffic', async () => {
    const fake = new FakeXfrm();
    const marked = (n: string): DesiredIpsec => desiredFor(n, NODES, { policyMark: { value: 0x0e00, mask: 0x0f00 } });
    await driverFor('node-a', fake).apply(marked('node-a'), { prune: true });
    expect(fake.outboundVerdict('100.64.1.10', '100.64.2.10', 0)).toEqual({ kind: 'plaintext' }); // unmarked: not ours (BPF decides)
    expect(fake.outboundVerdict('100.64.1.10', '100.64.2.10', 0x0e00).kind).toBe('esp');
    keys.set('node-b/1', await generateKeyPair());
    const guards: XfrmPolicy[][] = [];
    fake.onMutation = () => {
      guards.push(fake.policies().filter((p) => p.action === 'block'));
      expect(fake.outboundVerdict('100.64.1.10', '100.64.2.10', 0x0e00).kind).not.toBe('plaintext');
      expect(fake.outboundVerdict('100.64.1.10', '100.64.2.10', 0x1e01).kind).not.toBe('plaintext');
    };
    await driverFor('node-a', fake).apply(marked('node-a'), { prune: true });
    const both = guards.find((g) => g.length === 2)!;
    // The lowest bit outside the mask 0x0f00 is bit 0.
    expect(both.map((g) => g.mark).sort((x, y) => x!.value - y!.value)).toEqual([
      { value: 0x0e00, mask: 0x0f01 },
      { value: 0x0e01, mask: 0x0f01 },
    ]);
    expect(both.every((g) => g.lifetime.hardAddSeconds === GUARD_LIFETIME_SECONDS)).toBe(true);
    await resetKeys();
    await expect(
      driverFor('node-a', new FakeXfrm()).apply(
        desiredFor('node-a', NODES, { policyMark: { value: 1, mask: 0xffffffff } }),
        { prune: true },
      ),
    ).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    await expect(
      driverFor('node-a', new FakeXfrm()).apply(
        desiredFor('node-a', NODES, { policyMark: { value: 0x10, mask: 0x0f } }),
        { prune: true },
      ),
    ).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });
});

describe('failures', () => {
  it('fails every peer with the missing-feature sentence on a kernel without ESP, and leaves nothing behind', async () => {
    const fake = new FakeXfrm({ esp: 'no-esp' });
    const driver = driverFor('node-a', fake);
    await expect(driver.checkKernel([4])).rejects.toMatchObject({
      code: 'KERNEL_FEATURE_MISSING',
      message:
        'the kernel has no ESP support (CONFIG_INET_ESP / esp4 module); mode ipsec cannot run on this node — use mode wireguard or load esp4',
    });
    const r = await driver.apply(desiredFor('node-a'), { prune: true });
    expect(r.ready).toEqual([]);
    expect(r.failed.map((f) => [f.node, (f.error as { code?: string }).code])).toEqual([
      ['node-b', 'KERNEL_FEATURE_MISSING'],
      ['node-c', 'KERNEL_FEATURE_MISSING'],
    ]);
    expect(fake.states()).toEqual([]);
    expect(fake.policies()).toEqual([]);
  });

  it('rolls back a new peer whose step failed and keeps the other peers working', async () => {
    const fake = new FakeXfrm();
    fake.failNext('addPolicy', { errno: 'EIO' });
    const r = await driverFor('node-a', fake).apply(desiredFor('node-a'), { prune: true });
    expect(r.ready).toEqual(['node-c']);
    expect(r.failed.map((f) => f.node)).toEqual(['node-b']);
    expect(r.failed[0]!.error.message).toMatch(/injected/);
    // Nothing of node-b is left half-installed.
    expect(fake.states().filter((s) => s.src === '198.18.0.2' || s.dst === '198.18.0.2')).toEqual([]);
    expect(
      fake.policies().filter((p) => p.selector.src === '100.64.2.0/24' || p.selector.dst === '100.64.2.0/24'),
    ).toEqual([]);
    expect(verdict(fake, 'node-a', 'node-c').kind).toBe('esp');
    // The next apply finishes the job.
    expect((await driverFor('node-a', fake).apply(desiredFor('node-a'), { prune: true })).ready).toEqual([
      'node-b',
      'node-c',
    ]);
  });

  it("keeps an established peer's old SAs when its update fails, even with prune", async () => {
    const fake = new FakeXfrm();
    await driverFor('node-a', fake).apply(desiredFor('node-a'), { prune: true });
    await keyFor('node-b', 2);
    const switched = NODES.map((n) => (n.name === 'node-b' ? { ...n, epochs: [2], currentEpoch: 2 } : n));
    fake.failNext('addState', { errno: 'EIO' });
    const r = await driverFor('node-a', fake).apply(desiredFor('node-a', switched), { prune: true });
    expect(r.failed.map((f) => f.node)).toEqual(['node-b']);
    expect(r.unpruned).toBeGreaterThan(0);
    // Traffic to node-b still uses the old SA.
    expect(verdict(fake, 'node-a', 'node-b').kind).toBe('esp');
  });

  it('fails a peer whose local key of the needed epoch is gone', async () => {
    const fake = new FakeXfrm();
    const driver = new IpsecDriver({ xfrm: fake, privateKey: () => undefined });
    const r = await driver.apply(desiredFor('node-a'), { prune: true });
    expect(r.failed.map((f) => (f.error as { code?: string }).code)).toEqual(['KEY_INVALID', 'KEY_INVALID']);
    expect(r.failed[0]!.error.message).toMatch(/no local IPsec private key for epoch 1/);
  });

  it('never touches objects it does not own, and fails the peer they collide with', async () => {
    const fake = new FakeXfrm();
    const b = desiredFor('node-a').peers.find((p) => p.node === 'node-b')!;
    // Another tool's ESP state on node-b's inbound (destination, SPI), and a foreign policy.
    const inbound = b.inbound[0]!;
    fake.putForeignState({
      src: '198.18.0.2',
      dst: '198.18.0.1',
      spi: inbound.spi,
      proto: 50,
      family: 4,
      mode: 'tunnel',
      reqid: 1,
      flags: 0,
      extraFlags: 0,
      esn: false,
      replayWindow: 0,
      aead: undefined,
      otherAlgorithms: ['cbc(aes)'],
      mark: undefined,
      outputMark: undefined,
      selector: { src: '0.0.0.0/0', dst: '0.0.0.0/0' },
      lifetime: {},
      current: { bytes: 0n, packets: 0n, addTime: 1n, useTime: 0n },
      stats: { replayWindow: 0, replay: 0, integrityFailed: 0 },
      sequence: { outbound: 0n, inbound: 0n },
      lastUsed: undefined,
    });
    const foreignPolicy: XfrmPolicy = {
      selector: { src: '10.0.0.0/8', dst: '10.1.0.0/16' },
      dir: 'out',
      action: 'allow',
      priority: 0,
      templates: [{ src: '192.0.2.1', dst: '192.0.2.2', spi: 0, reqid: 7, mode: 'tunnel', optional: false }],
      lifetime: {},
      index: 1,
      type: 0,
      ifId: 0,
      current: { bytes: 0n, packets: 0n, addTime: 0n, useTime: 0n },
      templateProtos: [50],
    };
    fake.putForeignPolicy(foreignPolicy);
    const r = await driverFor('node-a', fake).apply(desiredFor('node-a'), { prune: true });
    expect(r.ready).toEqual(['node-c']);
    expect(r.failed[0]).toMatchObject({
      node: 'node-b',
      error: expect.objectContaining({
        message: expect.stringMatching(/collides with an ESP state sealnet does not own/),
      }),
    });
    expect(fake.states().find((s) => s.reqid === 1)).toBeDefined();
    expect(fake.policies().find((p) => p.priority === 0)).toBeDefined();
  });
});

describe('pruning and leftovers', () => {
  it("deletes a departed peer's objects only with prune, outbound policy first", async () => {
    const fake = new FakeXfrm();
    await driverFor('node-a', fake).apply(desiredFor('node-a'), { prune: true });
    const withoutC = NODES.filter((n) => n.name !== 'node-c');
    const early = await driverFor('node-a', fake).apply(desiredFor('node-a', withoutC), { prune: false });
    expect(early).toMatchObject({ changes: [], unpruned: 5 });
    const synced = await driverFor('node-a', fake).apply(desiredFor('node-a', withoutC), { prune: true });
    expect(synced.changes.map((c) => c.op)).toEqual([
      'delete-policy',
      'delete-policy',
      'delete-policy',
      'delete-state',
      'delete-state',
    ]);
    expect(
      fake
        .policies()
        .filter((p) => p.dir === 'out')
        .map((p) => p.selector.dst),
    ).toEqual(['100.64.2.0/24']);
    expect(fake.journal.find((j) => j.op === 'delete-policy')?.target).toMatch(/^out\|/);
    expect(synced.unpruned).toBe(0);
  });

  it('removes a guard a crashed run left behind, and takes over an existing policy that is stale', async () => {
    const fake = new FakeXfrm();
    await driverFor('node-a', fake).apply(desiredFor('node-a'), { prune: true });
    const out = fake.policies().find((p) => p.dir === 'out' && p.selector.dst === '100.64.2.0/24')!;
    fake.putForeignPolicy({
      ...out,
      action: 'block',
      priority: XFRM_GUARD_PRIORITY,
      templates: [],
      templateProtos: [],
      mark: { value: 0, mask: 1 },
      lifetime: { hardAddSeconds: GUARD_LIFETIME_SECONDS },
    });
    fake.putForeignPolicy({ ...out, templates: [{ ...out.templates[0]!, spi: 0x51000000 }] });
    expect(verdict(fake, 'node-a', 'node-b').kind).toBe('blocked');
    const r = await driverFor('node-a', fake).apply(desiredFor('node-a'), { prune: true });
    expect(r.changes.map((c) => c.op).sort()).toEqual(['delete-guard', 'update-policy']);
    expect(verdict(fake, 'node-a', 'node-b').kind).toBe('esp');
  });

  it('observes owned states with counters, direction and no key material', async () => {
    const fake = new FakeXfrm();
    const driver = driverFor('node-a', fake);
    await driver.apply(desiredFor('node-a'), { prune: true });
    const seen = await driver.observe();
    expect(seen.states.map((s) => s.direction).sort()).toEqual(['in', 'in', 'out', 'out']);
    expect(seen.states.map((s) => s.spi)).toEqual([...seen.states.map((s) => s.spi)].sort((x, y) => x - y));
    expect(JSON.stringify(seen.states, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))).not.toMatch(
      /key/i,
    );
    expect(seen.policies.every(isOwnedPolicy)).toBe(true);
    expect(seen.policies).toHaveLength(6);
  });
});
