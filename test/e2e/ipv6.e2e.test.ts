/**
 * IPv6 and dual stack end to end (issue 18): real agents, real wireguard-go tunnels, BPF at TC,
 * real IPv6 packets, address plan fd00:5ea1::/48 (test/harness/topology.ts).
 *
 *   1. IPv6-only cluster (IPv6 underlay): TCP, UDP and ICMPv6 with a canary from the first pod of
 *      every node to the first pod of every other node, and from every host to every remote pod,
 *      under an underlay capture: every pair encrypted, 0 plaintext pod packets, canary unseen.
 *   2. The same cluster, path MTU: the largest ICMPv6 echo that fits the tunnel (1420 over an
 *      IPv6 underlay: 1500 - 80) passes with DF; one byte more is answered with ICMPv6 Packet Too
 *      Big naming 1420 (no black hole).
 *   3. Dual-stack cluster over an IPv6 underlay: the same proof for both families.
 *   4. Dual-stack cluster over an IPv4 underlay: the same proof, and the IPv6 MTU is 1440 there.
 *   5. Fail-closed for IPv6 (IPv6-only cluster, agents started by the test): a node whose peer has
 *      no key yet, a node that never gets a key, and an agent killed with -9 whose tunnel link was
 *      deleted: 0 plaintext IPv6 pod packets on the wire, drops counted by the guard.
 *   6. Sanity: an IPv6-only cluster without encryption: the same capture sees IPv6 plaintext and
 *      the canary (the capture can fail).
 *   7. Node-to-node encryption (steering.nodeToNode) in a dual-stack cluster over an IPv6
 *      underlay: host-to-host ICMP and ICMPv6 with the canary between node addresses of both
 *      families, full size with DF: before the agents start the canary is on the wire, after it
 *      only WireGuard between the IPv6 node addresses carries it.
 *
 * Per-test numbers are printed to stderr (IPV6 lines) for the report.
 */
import { jest } from '@jest/globals';
import { ANNOTATIONS } from '../../common/constants.js';
import { NsCluster } from '../harness/cluster.js';
import type { CaptureResult } from '../harness/capture.js';
import { sleep } from '../harness/exec.js';
import { bpfCounters, counterOf } from '../harness/faults.js';
import { proveAllPairs, type PairsProof } from '../harness/prove.js';
import { canaryPingPattern, newCanary, runCanary, startCanaryServer } from '../harness/traffic.js';
import { POD_RANGE6 } from '../harness/topology.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) throw new Error('ipv6.e2e needs root (network namespaces); run the suite as root');

jest.setTimeout(600_000);

const report = (line: string): void => void process.stderr.write(`IPV6 ${line}\n`);

/** Guard attached before the store is read, fail-closed explicit (it is also the default). */
const AGENT_CONFIG = { steering: { failClosed: true, interfaces: ['eth0'] } };

function summarize(name: string, p: PairsProof): void {
  const c = p.capture;
  report(
    `${name}: ${p.pairs.filter((x) => x.encrypted).length}/${p.pairs.length} pairs encrypted; directions ${p.directions.length + p.hostDirections.length}, failed ${[...p.directions, ...p.hostDirections].filter((d) => d.errors.length > 0).length}; capture ${c.totalPackets} packets (${Object.entries(
      c.byKind,
    )
      .filter(([, v]) => v > 0)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}), complete ${c.complete}, plaintext pod ${c.podPlaintextPackets}, canary ${c.canaryHits}`,
  );
  for (const d of [...p.directions, ...p.hostDirections])
    for (const e of d.errors) report(`  ${d.from} -> ${d.to}: ${e}`);
}

function expectProof(p: PairsProof, families: readonly (4 | 6)[], nodes: number): void {
  const dirs = [...p.directions, ...p.hostDirections];
  // Every ordered pair, pod and host, once per family.
  expect(dirs.length).toBe(2 * nodes * (nodes - 1) * families.length);
  expect(dirs.filter((d) => d.errors.length > 0)).toEqual([]);
  for (const f of families) expect(dirs.filter((d) => d.to.endsWith(`/v${f}`)).length).toBe(2 * nodes * (nodes - 1));
  expect(p.capture.complete).toBe(true);
  expect(p.capture.podPlaintextPackets).toBe(0);
  expect(p.capture.canaryHits).toBe(0);
  expect(p.pairs.map((x) => [x.a, x.b, x.encrypted])).toEqual(p.pairs.map((x) => [x.a, x.b, true]));
  // Tunnel packets over the underlay family actually carried the traffic.
  expect(p.capture.wireguardPackets).toBeGreaterThan(0);
}

/** The largest ICMPv6 echo payload that fits an MTU: 40 (IPv6) + 8 (ICMPv6) bytes of headers. */
const icmp6Payload = (mtu: number): number => mtu - 48;

async function mtuProbe(c: NsCluster, from: string, to: string, mtu: number): Promise<void> {
  await c.flushRouteCache(from);
  const fit = await c.ping(from, to, { size: icmp6Payload(mtu), count: 3, df: true });
  await c.flushRouteCache(from);
  const over = await c.ping(from, to, { size: icmp6Payload(mtu) + 1, count: 2, df: true });
  report(
    `MTU ${from} -> ${to}: ${icmp6Payload(mtu) + 48} bytes: ${fit.received}/${fit.transmitted}; ${icmp6Payload(mtu) + 49} bytes: ${over.received}/${over.transmitted} received, too big ${over.fragNeeded}, local ${over.messageTooLong}, mtu ${over.reportedMtu}`,
  );
  expect(fit.received).toBe(fit.transmitted);
  expect(fit.transmitted).toBe(3);
  expect(over.received).toBe(0);
  // The path MTU cache was flushed: the first oversized echo must come back as an ICMPv6 Packet
  // Too Big from the node, naming the tunnel's MTU (no black hole, no stale cached value).
  expect(over.fragNeeded).toBe(true);
  expect(over.reportedMtu).toBe(mtu);
}

describe('IPv6-only cluster over an IPv6 underlay', () => {
  let c: NsCluster;
  beforeAll(async () => {
    c = await NsCluster.create({ nodes: 3, podsPerNode: 1, ipFamily: 'ipv6', agentConfig: AGENT_CONFIG });
    await c.waitEncrypted({ timeoutMs: 120_000 });
  });
  afterAll(async () => {
    await c?.destroy();
  });

  it('TCP, UDP and ICMPv6 on every pair and host to every remote pod: only tunnel packets, no canary', async () => {
    const p = await proveAllPairs(c, {
      mode: 'wireguard',
      hostToPod: true,
      captureName: 'v6only',
      families: [6],
      concurrency: 2,
    });
    summarize('ipv6-only', p);
    expectProof(p, [6], 3);
    // Every tunnel packet ran between IPv6 node addresses.
    expect(Object.keys(p.capture.wireguardByEndpoints).every((k) => k.startsWith('fd00:5ea1::'))).toBe(true);
  });

  it('MTU: 1420-byte IPv6 packets pass, 1421 get Packet Too Big with mtu 1420', async () => {
    const link = await c.execNode('n1', ['ip', '-o', 'link', 'show', 'sealwg0']);
    expect(link.stdout).toMatch(/ mtu 1420 /);
    await mtuProbe(c, 'n1p1', c.resolve('n2p1', 6), 1420);
    await mtuProbe(c, 'n2p1', c.resolve('n3p1', 6), 1420);
  });
});

describe('dual-stack clusters', () => {
  for (const underlay of [6, 4] as const) {
    it(`over an IPv${underlay} underlay: both families on every pair and host to every remote pod, encrypted; IPv6 MTU ${underlay === 6 ? 1420 : 1440}`, async () => {
      const c = await NsCluster.create({
        nodes: 3,
        podsPerNode: 1,
        ipFamily: 'dual',
        underlayFamily: underlay,
        agentConfig: AGENT_CONFIG,
      });
      try {
        await c.waitEncrypted({ timeoutMs: 120_000 });
        const p = await proveAllPairs(c, {
          mode: 'wireguard',
          hostToPod: true,
          captureName: `dual${underlay}`,
          families: [4, 6],
          concurrency: 2,
        });
        summarize(`dual over IPv${underlay}`, p);
        expectProof(p, [4, 6], 3);
        const prefix = underlay === 6 ? 'fd00:5ea1::' : '198.18.0.';
        expect(Object.keys(p.capture.wireguardByEndpoints).every((k) => k.startsWith(prefix))).toBe(true);
        const mtu = underlay === 6 ? 1420 : 1440;
        await mtuProbe(c, 'n1p1', c.resolve('n2p1', 6), mtu);
      } finally {
        await c.destroy();
      }
    });
  }
});

/** ICMPv6, UDP and TCP with the canary from `from` to an IPv6 address; returns what got through. */
async function burst(
  c: NsCluster,
  from: string,
  to: string,
  canary: string,
): Promise<{ icmp: number; udp: boolean; tcp: boolean }> {
  const [ping, udp, tcp] = await Promise.all([
    c.ping(from, to, {
      count: 5,
      intervalS: 0.2,
      waitS: 1,
      size: 120,
      df: false,
      patternHex: canaryPingPattern(canary),
    }),
    c.pods().some((p) => p.name === from)
      ? runCanary(c, { from, to, proto: 'udp', canary, size: 300, timeoutMs: 2000 })
      : Promise.resolve({ ok: false }),
    c.pods().some((p) => p.name === from)
      ? runCanary(c, { from, to, proto: 'tcp', canary, size: 300, timeoutMs: 2000 })
      : Promise.resolve({ ok: false }),
  ]);
  return { icmp: ping.received, udp: udp.ok, tcp: tcp.ok };
}

function dropsOf(rows: Awaited<ReturnType<typeof bpfCounters>>): number {
  return ['no_peer', 'not_ready', 'bad_entry', 'no_tunnel'].reduce((n, r) => n + counterOf(rows, 'egress', r), 0);
}

function expectSealed(name: string, cap: CaptureResult): void {
  report(
    `${name}: capture ${cap.totalPackets} packets, complete ${cap.complete}, plaintext IPv6 pod ${cap.podPlaintextPackets} (flows ${JSON.stringify(cap.podPlaintextFlows)}), canary ${cap.canaryHits}`,
  );
  expect(cap.complete).toBe(true);
  expect(cap.podPlaintextPackets).toBe(0);
  expect(cap.canaryHits).toBe(0);
}

describe('fail-closed for IPv6 (IPv6-only cluster)', () => {
  let c: NsCluster;
  const canary = newCanary();
  beforeAll(async () => {
    c = await NsCluster.create({
      nodes: 3,
      podsPerNode: 1,
      ipFamily: 'ipv6',
      startAgents: false,
      agentConfig: AGENT_CONFIG,
    });
    await Promise.all(c.pods().map((p) => startCanaryServer(c, { pod: p.name })));
  });
  afterAll(async () => {
    await c?.destroy();
  });

  it('sanity first: with no agent at all the same burst crosses in plaintext and the capture sees it', async () => {
    const cap = await c.startCapture({ name: 'noagent', podCidrs: [POD_RANGE6], canaries: [canary] });
    const got = await burst(c, 'n1p1', c.resolve('n2p1', 6), canary);
    const r = await cap.stop();
    report(
      `no agent: n1p1 -> n2p1 icmp ${got.icmp}/5 udp ${got.udp} tcp ${got.tcp}; capture plaintext IPv6 pod ${r.podPlaintextPackets}, canary ${r.canaryHits}`,
    );
    expect(got.icmp).toBe(5);
    expect(got.udp && got.tcp).toBe(true);
    expect(r.podPlaintextPackets).toBeGreaterThan(0);
    expect(r.canaryHits).toBeGreaterThan(0);
  });

  it('start-up before keys: n1 guarded, n2 and n3 have no key yet: IPv6 to their pods is dropped (counted), never plaintext', async () => {
    await c.startAgent('n1');
    // The guard is attached and the own key published before the burst.
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const tc = await c.execNode('n1', ['tc', 'filter', 'show', 'dev', 'eth0', 'egress'], { check: false });
      const doc = await c.nodeDoc('n1');
      if (
        tc.stdout.includes('sealnet_egress') &&
        doc?.metadata.annotations[ANNOTATIONS.wireguardPublicKey] !== undefined
      )
        break;
      await sleep(200);
    }
    const before = dropsOf(await bpfCounters(c, 'n1'));
    const cap = await c.startCapture({ name: 'nokeys', podCidrs: [POD_RANGE6], canaries: [canary] });
    const toN2 = await burst(c, 'n1p1', c.resolve('n2p1', 6), canary);
    const toN3 = await burst(c, 'n1p1', c.resolve('n3p1', 6), canary);
    const host = await burst(c, 'n1', c.resolve('n2p1', 6), canary);
    const r = await cap.stop();
    const drops = dropsOf(await bpfCounters(c, 'n1')) - before;
    report(
      `before keys: to n2 ${JSON.stringify(toN2)}, to n3 ${JSON.stringify(toN3)}, host ${JSON.stringify(host)}; n1 egress drops +${drops}`,
    );
    expect([toN2, toN3, host].map((x) => x.icmp)).toEqual([0, 0, 0]);
    expect(toN2.udp || toN2.tcp || toN3.udp || toN3.tcp).toBe(false);
    expect(drops).toBeGreaterThanOrEqual(15);
    expectSealed('before keys', r);
  });

  it('a node without a key: n1 and n2 encrypted to each other, n3 (no agent, no key) gets nothing in plaintext', async () => {
    await c.startAgent('n2');
    const deadline = Date.now() + 90_000;
    let ok = false;
    while (!ok && Date.now() < deadline) {
      ok = (await c.ping('n1p1', c.resolve('n2p1', 6), { count: 1, waitS: 1, df: false })).received === 1;
      if (!ok) await sleep(500);
    }
    expect(ok).toBe(true);
    const cap = await c.startCapture({ name: 'nokey', podCidrs: [POD_RANGE6], canaries: [canary] });
    const n1n2 = await burst(c, 'n1p1', c.resolve('n2p1', 6), canary);
    const n1n3 = await burst(c, 'n1p1', c.resolve('n3p1', 6), canary);
    const n2n3 = await burst(c, 'n2p1', c.resolve('n3p1', 6), canary);
    const r = await cap.stop();
    report(
      `n3 without key: n1->n2 ${JSON.stringify(n1n2)}, n1->n3 ${JSON.stringify(n1n3)}, n2->n3 ${JSON.stringify(n2n3)}; wireguard packets ${r.wireguardPackets}`,
    );
    expect(n1n2).toEqual({ icmp: 5, udp: true, tcp: true });
    expect([n1n3.icmp, n2n3.icmp]).toEqual([0, 0]);
    expect(n1n3.udp || n1n3.tcp || n2n3.udp || n2n3.tcp).toBe(false);
    expect(r.wireguardPackets).toBeGreaterThan(0);
    expectSealed('node without key', r);
  });

  it('kill -9 of n1 agent and its tunnel link deleted: IPv6 pod traffic is dropped, never plaintext; a restart heals it', async () => {
    await c.killAgent('n1', 'SIGKILL');
    const del = await c.execNode('n1', ['ip', 'link', 'del', 'sealwg0'], { check: false });
    const gone = await c.execNode('n1', ['ip', 'link', 'show', 'sealwg0'], { check: false });
    expect(gone.code).not.toBe(0);
    const before = dropsOf(await bpfCounters(c, 'n1'));
    const cap = await c.startCapture({ name: 'killed', podCidrs: [POD_RANGE6], canaries: [canary] });
    const pod = await burst(c, 'n1p1', c.resolve('n2p1', 6), canary);
    const host = await burst(c, 'n1', c.resolve('n2p1', 6), canary);
    const r = await cap.stop();
    const rows = await bpfCounters(c, 'n1');
    report(
      `killed + link deleted (ip link del exit ${del.code}): pod ${JSON.stringify(pod)}, host ${JSON.stringify(host)}; n1 egress drops +${dropsOf(rows) - before}, redirected ${counterOf(rows, 'egress', 'redirected')}`,
    );
    expect([pod.icmp, host.icmp]).toEqual([0, 0]);
    expect(pod.udp || pod.tcp).toBe(false);
    expectSealed('kill -9 + link deleted', r);
    await c.startAgent('n1');
    const deadline = Date.now() + 90_000;
    let healed = false;
    while (!healed && Date.now() < deadline) {
      healed = (await c.ping('n1p1', c.resolve('n2p1', 6), { count: 1, waitS: 1, df: false })).received === 1;
      if (!healed) await sleep(500);
    }
    expect(healed).toBe(true);
  });
});

describe('sanity: IPv6-only cluster without encryption', () => {
  it('the same proof sees IPv6 plaintext and the canary on the wire', async () => {
    const c = await NsCluster.create({ nodes: 2, podsPerNode: 1, ipFamily: 'ipv6', encryption: false });
    try {
      const p = await proveAllPairs(c, {
        mode: 'wireguard',
        hostToPod: true,
        captureName: 'plain6',
        families: [6],
        concurrency: 2,
      });
      summarize('ipv6-only, encryption off', p);
      expect([...p.directions, ...p.hostDirections].filter((d) => d.errors.length > 0)).toEqual([]);
      expect(p.capture.podPlaintextPackets).toBeGreaterThan(0);
      expect(p.capture.canaryHits).toBeGreaterThan(0);
      expect(Object.keys(p.capture.podPlaintextFlows).every((k) => k.includes('fd00:5ea1:1:'))).toBe(true);
      expect(p.pairs.some((x) => x.encrypted)).toBe(false);
    } finally {
      await c.destroy();
    }
  });
});

describe('node-to-node encryption, dual stack over an IPv6 underlay', () => {
  it('host-to-host ICMP and ICMPv6 to both node addresses: plaintext before the agents, only IPv6 WireGuard after', async () => {
    const c = await NsCluster.create({
      nodes: 2,
      podsPerNode: 1,
      ipFamily: 'dual',
      underlayFamily: 6,
      startAgents: false,
      agentConfig: { steering: { failClosed: true, interfaces: ['eth0'], nodeToNode: true } },
    });
    const hostPings = async (canary: string): Promise<number[]> => {
      const got: number[] = [];
      for (const f of [4, 6] as const) {
        for (const [from, to] of [
          ['n1', 'n2'],
          ['n2', 'n1'],
        ] as const) {
          const small = await c.ping(from, c.resolve(to, f), {
            count: 3,
            df: false,
            size: 120,
            patternHex: canaryPingPattern(canary),
          });
          // Full size for the tunnel (1420 over IPv6): 1392 + 28 (IPv4) / 1372 + 48 (IPv6).
          const full = await c.ping(from, c.resolve(to, f), {
            count: 2,
            df: true,
            size: f === 4 ? 1392 : 1372,
            patternHex: canaryPingPattern(canary),
          });
          got.push(small.received, full.received);
        }
      }
      return got;
    };
    try {
      const canary0 = newCanary();
      const plain = await c.startCapture({ name: 'n2n-plain', canaries: [canary0] });
      const before = await hostPings(canary0);
      const p = await plain.stop();
      report(
        `node-to-node before agents: replies ${before.join(',')}; canary packets ${p.canaryHits} ${JSON.stringify(p.canaries[0]?.byEndpoints)}`,
      );
      expect(p.canaryHits).toBeGreaterThan(0);
      expect(Object.keys(p.canaries[0]?.byEndpoints ?? {}).some((k) => k.startsWith('198.18.0.'))).toBe(true);
      expect(Object.keys(p.canaries[0]?.byEndpoints ?? {}).some((k) => k.startsWith('fd00:5ea1::'))).toBe(true);

      await Promise.all(c.nodeNames().map((n) => c.startAgent(n)));
      await c.waitEncrypted({ timeoutMs: 120_000 });
      const canary = newCanary();
      const cap = await c.startCapture({ name: 'n2n', canaries: [canary] });
      const after = await hostPings(canary);
      const r = await cap.stop();
      report(
        `node-to-node with agents: replies ${after.join(',')}; capture ${r.totalPackets} (${JSON.stringify(r.byKind)}), wireguard ${JSON.stringify(r.wireguardByEndpoints)}, canary ${r.canaryHits}`,
      );
      expect(after).toEqual([3, 2, 3, 2, 3, 2, 3, 2]);
      expect(r.complete).toBe(true);
      expect(r.canaryHits).toBe(0);
      expect(r.byKind.icmp).toBe(0);
      expect(r.podPlaintextPackets).toBe(0);
      // 4 directions x 5 echoes, request and reply, all inside WireGuard between IPv6 node addresses.
      expect(r.wireguardPackets).toBeGreaterThanOrEqual(40);
      expect(Object.keys(r.wireguardByEndpoints).every((k) => k.startsWith('fd00:5ea1::'))).toBe(true);
    } finally {
      await c.destroy();
    }
  });
});
