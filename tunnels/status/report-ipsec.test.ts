/**
 * Status of mode ipsec pairs (issue 6): the agent's StatusService reads the XFRM SAs through the
 * IPsec driver (FakeXfrm underneath), the report calls a pair `encrypted` only when the planned
 * outbound SA, inbound SAs and policies are all there with the configured AES-GCM, and reports
 * SPIs and counters; the join and the FIPS audit follow from both ends' reports.
 */
import { reportsOf } from '../../test/status-fixtures.js';
import { beforeAll, describe, expect, it } from '@jest/globals';
import { IpsecDriver } from '../../ipsec/driver.js';
import { FakeXfrm } from '../../ipsec/xfrm.fake.js';
import { spiHex } from '../ports/xfrm-types.js';
import { parsePrivateKey, sodiumReady, type PrivateKey, type PublicKey } from '../../keymgr/keys.js';
import { FakeSteering } from '../ports/steering.fake.js';
import { createFakeKernel, MemoryNodeStore } from '../ports/kernel.fake.js';
import {
  fixtureCluster,
  fixtureKey,
  FIXTURE_SEEDS,
  type FixtureCluster,
  type FixtureName,
} from '../../test/fixtures.js';
import { evaluate } from '../audit/report.js';
import { profile, validatePolicy } from '../audit/policy.js';
import { validateConfig } from '../agent/config.js';
import { ANNOTATIONS } from '../../common/constants.js';
import { silentLogger } from '../../common/logger.js';
import { createMetrics } from '../../common/metrics.js';
import { ipsecOf, type RawNode } from '../ports/model.js';
import { Reconciler } from '../reconcile/reconciler.js';
import { decodeStatus, type NodeStatusReport } from './report.js';
import { StatusService } from './service.js';
import { joinStatus } from './join.js';

const NAMES = ['node-a', 'node-b', 'node-c'] as const;
type Name = (typeof NAMES)[number];
const ipsecSeed = (n: FixtureName): number => FIXTURE_SEEDS[n] + 100;
const NOW = new Date('2025-06-01T12:00:00Z');

let C: FixtureCluster;
let IK: Record<Name, PublicKey>;
beforeAll(async () => {
  await sodiumReady();
  C = fixtureCluster();
  IK = Object.fromEntries(NAMES.map((n) => [n, fixtureKey(ipsecSeed(n))])) as Record<Name, PublicKey>;
});

/** Nodes a..c before any agent published (agents publish their own annotations). */
function storeOf(): MemoryNodeStore {
  const nodes: RawNode[] = C.nodes
    .filter((n) => (NAMES as readonly string[]).includes(n.name))
    .map((n) => ({ ...n, annotations: {} }));
  return new MemoryNodeStore(nodes, { synced: true });
}

interface Agent {
  readonly name: Name;
  readonly xfrm: FakeXfrm;
  readonly reconciler: Reconciler;
  readonly status: StatusService;
  /** Another status service over the same kernel and reconciler, configured for `keyBits`. */
  readonly statusFor: (keyBits: 128 | 256) => StatusService;
}

function agent(self: Name, store: MemoryNodeStore, keyBits: 128 | 256 = 128): Agent {
  const { routing, wg } = createFakeKernel();
  const i = FIXTURE_SEEDS[self];
  routing.addLink('eth0', { mtu: 1500, up: true });
  routing.addLink('cni0', { mtu: 1500, up: true });
  routing.addAddress(`198.18.0.${i}`, 15, 'eth0');
  routing.addAddress(`100.64.${i}.1`, 24, 'cni0');
  const xfrm = new FakeXfrm();
  const steering = new FakeSteering();
  const priv: PrivateKey = parsePrivateKey(new Uint8Array(32).fill(ipsecSeed(self)));
  const config = validateConfig({
    nodeName: self,
    mode: 'ipsec',
    store: { type: 'file', dir: '/unused' },
    debounceMs: 0,
    steering: { clusterCidrs: ['100.64.0.0/10'] },
    ipsec: { keyBits },
    status: { minIntervalSeconds: 1 },
  });
  const metrics = createMetrics();
  const port = new IpsecDriver({ xfrm, privateKey: (e) => (e === 1 ? priv : undefined) });
  const createdAt = new Date('2025-05-20T00:00:00Z');
  const reconciler = new Reconciler({
    config,
    key: { publicKey: C.keys[self], privateKeyFile: '/unused/wireguard.key', epoch: 1, createdAt },
    store,
    wg,
    routing,
    log: silentLogger,
    metrics,
    steering,
    ipsec: { port, key: { publicKey: IK[self], epoch: 1, createdAt }, checkedFamilies: [4] },
  });
  const statusFor = (bits: 128 | 256): StatusService =>
    new StatusService({
      config: { ...config, ipsec: { ...config.ipsec, keyBits: bits } },
      key: () => ({ publicKey: IK[self], epoch: 1, createdAt }),
      observeIpsec: () => port.observe(),
      ipsecEvidence: port,
      wg,
      steering,
      reconciler,
      store,
      metrics,
      log: silentLogger,
      now: () => NOW,
    });
  return { name: self, xfrm, reconciler, status: statusFor(keyBits), statusFor };
}

/** Three agents, reconciled until every pair is installed on both ends. */
async function cluster(keyBits: 128 | 256 = 128): Promise<{ store: MemoryNodeStore; agents: Agent[] }> {
  const store = storeOf();
  const agents = NAMES.map((n) => agent(n, store, keyBits));
  for (let round = 0; round < 2; round++)
    for (const a of agents) expect((await a.reconciler.runNow()).errors).toEqual([]);
  return { store, agents };
}

/** Traffic on every SA of every agent: n packets of 100 bytes. */
function traffic(agents: readonly Agent[], packets = 5): void {
  for (const a of agents)
    for (const s of a.xfrm.states()) a.xfrm.countTraffic(s.dst, s.spi, { bytes: packets * 100, packets });
}

async function report(a: Agent): Promise<NodeStatusReport> {
  await new Promise((r) => setTimeout(r, 1050)); // past the observation cache
  return a.status.report();
}

/** Puts every agent's full report on its node, standing for what its /status answers (read back with reportsOf). */
async function publishAll(store: MemoryNodeStore, agents: readonly Agent[]): Promise<void> {
  await new Promise((r) => setTimeout(r, 1050));
  for (const a of agents)
    await store.patchAnnotations(a.name, { [ANNOTATIONS.status]: JSON.stringify(await a.status.report()) });
}

describe('status of mode ipsec pairs', () => {
  it("reports every planned pair encrypted with the SAs' algorithm, SPIs and counters, and is ready", async () => {
    const { agents } = await cluster();
    traffic(agents);
    const a = agents[0]!;
    const r = await report(a);
    expect(r.mode).toBe('ipsec');
    expect(r.algorithm).toBe('ipsec-esp-aes-gcm-128');
    expect(r.ready).toBe(true);
    expect(r.errors).toEqual([]);
    const desired = ipsecOf(a.reconciler.report()!.desired)!;
    expect(r.peers.map((p) => [p.node, p.state, p.algorithm])).toEqual([
      ['node-b', 'encrypted', 'ipsec-esp-aes-gcm-128'],
      ['node-c', 'encrypted', 'ipsec-esp-aes-gcm-128'],
    ]);
    for (const p of r.peers) {
      const d = desired.peers.find((x) => x.node === p.node)!;
      expect(p.spiOut).toBe(spiHex(d.outbound.spi));
      expect(p.spiIn).toEqual(d.inbound.map((x) => spiHex(x.spi)));
      expect([p.rx, p.tx, p.rxPackets, p.txPackets]).toEqual([500, 500, 5, 5]);
    }
    // The annotation round-trips strictly and carries no key material.
    const text = JSON.stringify(r);
    expect(decodeStatus(text)).toEqual({ ok: true, report: r });
    expect(text).not.toContain(IK['node-b']);
  });

  it('a deleted SA makes the pair not encrypted (fail-closed: dropping), naming what is missing, and not ready', async () => {
    const { agents } = await cluster();
    const a = agents[0]!;
    const out = ipsecOf(a.reconciler.report()!.desired)!.peers.find((p) => p.node === 'node-b')!;
    await a.xfrm.deleteState({ dst: out.remoteAddress, spi: out.outbound.spi });
    const r = await report(a);
    const b = r.peers.find((p) => p.node === 'node-b')!;
    expect(b.state).toBe('dropping');
    expect(b.reason).toContain(`no outbound SA spi ${spiHex(out.outbound.spi)}`);
    expect(r.peers.find((p) => p.node === 'node-c')!.state).toBe('encrypted');
    expect(r.ready).toBe(false);
  });

  it('an outbound policy pinned to another SPI, or an SA with another algorithm, is not encrypted', async () => {
    const { agents } = await cluster();
    const a = agents[0]!;
    const peer = ipsecOf(a.reconciler.report()!.desired)!.peers.find((p) => p.node === 'node-b')!;
    const pol = a.xfrm.policies().find((p) => p.dir === 'out' && p.selector.dst === peer.remoteCIDRs[0])!;
    await a.xfrm.updatePolicy({ ...pol, templates: [{ ...pol.templates[0]!, spi: peer.outbound.spi + 1 }] });
    const r1 = await report(a);
    expect(r1.peers.find((p) => p.node === 'node-b')).toMatchObject({
      state: 'dropping',
      reason: expect.stringContaining('sends with spi'),
    });
    // Configured for AES-256 while the kernel holds the 128-bit SAs an earlier config installed.
    const r2 = await agents[1]!.statusFor(256).report();
    expect(r2.algorithm).toBe('ipsec-esp-aes-gcm-256');
    expect(r2.peers.map((p) => [p.state, p.algorithm, p.reason])).toEqual([
      [
        'misconfigured',
        'ipsec-esp-aes-gcm-128',
        'its SAs use ipsec-esp-aes-gcm-128, this node is configured for ipsec-esp-aes-gcm-256',
      ],
      [
        'misconfigured',
        'ipsec-esp-aes-gcm-128',
        'its SAs use ipsec-esp-aes-gcm-128, this node is configured for ipsec-esp-aes-gcm-256',
      ],
    ]);
  });

  it('inbound ICV failures with nothing accepted mean the ends hold different keys: pending', async () => {
    const { agents } = await cluster();
    const a = agents[0]!;
    const peer = ipsecOf(a.reconciler.report()!.desired)!.peers.find((p) => p.node === 'node-c')!;
    a.xfrm.countTraffic(peer.localAddress, peer.inbound[0]!.spi, { integrityFailed: 3 });
    const r = await report(a);
    expect(r.peers.find((p) => p.node === 'node-c')).toMatchObject({
      state: 'pending',
      reason: expect.stringContaining('integrity'),
    });
  });

  it('joined from both ends: every pair encrypted with AES-GCM; the FIPS audit passes, and fails naming the pair when an SA is gone or the policy wants 256-bit keys', async () => {
    const { store, agents } = await cluster();
    traffic(agents);
    await publishAll(store, agents);
    const s = joinStatus(store.list(), { now: NOW, reports: reportsOf(store.list()) });
    expect(s.partial).toBe(false);
    expect(s.pairs.map((p) => [p.a, p.b, p.state, p.algorithm])).toEqual([
      ['node-a', 'node-b', 'encrypted', 'ipsec-esp-aes-gcm-128'],
      ['node-a', 'node-c', 'encrypted', 'ipsec-esp-aes-gcm-128'],
      ['node-b', 'node-c', 'encrypted', 'ipsec-esp-aes-gcm-128'],
    ]);
    // Each side's outbound SPI is the other side's inbound one.
    for (const p of s.pairs) {
      const [x, y] = p.sides;
      expect(y.spiIn).toContain(x.spiOut);
      expect(x.spiIn).toContain(y.spiOut);
      expect(x.txPackets).toBeGreaterThan(0);
    }
    const audit = (policy = profile('fips')): ReturnType<typeof evaluate> =>
      evaluate({
        status: joinStatus(store.list(), { now: NOW, reports: reportsOf(store.list()) }),
        policy,
        now: NOW,
        store: 'memory',
        toolVersion: 'test',
        probe: undefined,
      });
    const ok = audit();
    expect([ok.verdict, ok.complete, ok.violations]).toEqual(['compliant', true, []]);

    const only256 = audit(
      validatePolicy({ version: 1, profile: 'fips', allowedAlgorithms: ['ipsec-esp-aes-gcm-256'] }, 'test'),
    );
    expect(only256.verdict).toBe('non-compliant');
    expect(
      only256.violations.some(
        (v) =>
          v.code === 'algorithm-not-allowed' &&
          v.subject === 'node-a~node-b' &&
          v.message.includes('ipsec-esp-aes-gcm-128'),
      ),
    ).toBe(true);

    const b = agents[1]!;
    const toC = ipsecOf(b.reconciler.report()!.desired)!.peers.find((p) => p.node === 'node-c')!;
    await b.xfrm.deleteState({ dst: toC.localAddress, spi: toC.inbound[0]!.spi });
    await publishAll(store, agents);
    const broken = audit();
    expect(broken.verdict).toBe('non-compliant');
    expect(broken.violations.map((v) => `${v.code}@${v.subject}`)).toEqual(['pair-not-encrypted@node-b~node-c']);
    expect(broken.violations[0]!.message).toContain(`no inbound SA spi ${spiHex(toC.inbound[0]!.spi)}`);
  });
});
