/**
 * Kernel tier, inside the qemu guest (test/vm/run.sh): the namespace cluster of the end-to-end
 * suites with real agents (`NsCluster`, test/harness/cluster.ts) on a kernel that has WireGuard
 * and XFRM ESP, proving both datapaths carry pod traffic encrypted:
 *
 * - mode wireguard: every agent picks KERNEL WireGuard by itself (`implementation: auto`; link
 *   kind `wireguard`, no wireguard-go process); every pair carries TCP, UDP and ICMP (pod to pod
 *   and host to pod) and a capture on the underlay bridge sees only WireGuard, never the canary;
 * - sanity: the same proof with encryption off sees plaintext pod packets and the canary;
 * - mode ipsec: every pair, the capture sees only ESP between node addresses and never the
 *   canary; the MTU boundary (a DF packet at the ESP tunnel MTU 1500 - 54 = 1446 crosses, one
 *   byte more gets "fragmentation needed" with mtu 1446); kill -9 and restart of an agent
 *   without breaking a TCP stream and without a kernel write; SA counters grow.
 *
 * Traffic is short: crypto under TCG runs at tens of Mbit/s. Runs only in the guest
 * (SEALNET_VM_GUEST=1); outside it the suite is skipped, inside a skip fails the run.
 */
import { jest } from '@jest/globals';
import { readFile } from 'node:fs/promises';
import { NsCluster } from '../harness/cluster.js';
import { run, sleep } from '../harness/exec.js';
import { proveAllPairs, type PairsProof } from '../harness/prove.js';
import { startTcpStream } from '../harness/traffic.js';
import { guestTitle, inGuest } from './pair.js';
import { metricValue, waitFor as pollUntil } from '../harness/wait.js';

const suite = inGuest ? describe : describe.skip;
jest.setTimeout(240_000);

const NODES = 3;
/** DESIGN.md: ESP tunnel mode with AES-GCM over a 1500-byte IPv4 underlay: 1500 - 54. */
const ESP_MTU = 1446;
/** Directions exercised at once: each spawns two node processes, seconds of CPU each under TCG. */
const CONCURRENCY = 2;

const note = (line: string): void => {
  process.stderr.write(`kernel-vm cluster: ${line}\n`);
};

/** Scrapes the agent's Prometheus endpoint from inside the node (curl: a node process costs seconds of CPU under TCG). */
async function metrics(c: NsCluster, node: string): Promise<string> {
  return (await c.execNode(node, ['curl', '-sf', '--max-time', '10', 'http://127.0.0.1:9588/metrics'], { timeoutMs: 15_000 })).stdout;
}

/** {@link pollUntil} with a slower default poll: the guest is emulated. */
function waitFor<T>(what: string, fn: () => Promise<T | undefined>, opts: { timeoutMs: number; pollMs?: number }): Promise<T> {
  return pollUntil(what, fn, { pollMs: 250, ...opts });
}

/** Builds a cluster and waits until every pair pings through its tunnels; logs the timings. */
async function encryptedCluster(mode: 'wireguard' | 'ipsec'): Promise<NsCluster> {
  const t0 = Date.now();
  const c = await NsCluster.create({ nodes: NODES, podsPerNode: 1, mode, log: note });
  try {
    await c.waitEncrypted({ timeoutMs: 120_000, pollMs: 1000 });
  } catch (err) {
    for (const n of c.nodeNames()) note(`${n} agent log tail:\n${(await readFile(c.agentLogPath(n), 'utf8').catch(() => '')).split('\n').slice(-15).join('\n')}`);
    await c.destroy();
    throw err;
  }
  note(`mode ${mode}: ${NODES} nodes built in ${c.timings.buildMs} ms, agents started in ${c.timings.agentsStartMs} ms, all pairs encrypted after ${Date.now() - t0} ms`);
  return c;
}

/** Every pair and direction got its traffic through, and the capture saw no plaintext and no canary. */
function expectEncryptedProof(proof: PairsProof, tunnelPackets: number): void {
  expect(proof.directions.filter((d) => d.errors.length > 0)).toEqual([]);
  expect(proof.hostDirections.filter((d) => d.errors.length > 0)).toEqual([]);
  expect(proof.directions).toHaveLength(NODES * (NODES - 1));
  expect(proof.hostDirections).toHaveLength(NODES * (NODES - 1));
  expect(proof.capture.complete).toBe(true);
  expect(proof.capture.podPlaintextPackets).toBe(0);
  expect(proof.capture.canaryHits).toBe(0);
  // Everything IP on the underlay is tunnel traffic (ARP is link-layer housekeeping).
  expect(proof.capture.totalPackets - proof.capture.byKind.arp).toBe(tunnelPackets);
  expect(tunnelPackets).toBeGreaterThan(50);
  expect(proof.pairs.map((p) => [p.a, p.b, p.encrypted])).toEqual([
    ['n1', 'n2', true],
    ['n1', 'n3', true],
    ['n2', 'n3', true],
  ]);
}

/** One SA as `ip -s xfrm state` shows it. */
interface SaCounters {
  readonly src: string;
  readonly dst: string;
  readonly spi: string;
  readonly bytes: number;
  readonly packets: number;
}

/** Parses `ip -s xfrm state list` (the AEAD key lines are ignored, never printed). */
function parseXfrmStates(text: string): SaCounters[] {
  const out: SaCounters[] = [];
  for (const block of text.split(/^(?=src )/m)) {
    const head = /^src (\S+) dst (\S+)\s*\n\s*proto esp spi (0x[0-9a-f]+)/.exec(block);
    const cur = /lifetime current:\s*\n\s*(\d+)\(bytes\), (\d+)\(packets\)/.exec(block);
    if (head === null || cur === null) continue;
    out.push({ src: head[1]!, dst: head[2]!, spi: head[3]!, bytes: Number(cur[1]), packets: Number(cur[2]) });
  }
  return out;
}

async function xfrmStates(c: NsCluster, node: string): Promise<SaCounters[]> {
  return parseXfrmStates((await c.execNode(node, ['ip', '-s', 'xfrm', 'state', 'list'])).stdout);
}

/** The kernel objects an agent restart must leave alone: SAs (no counters), policies, routes, rules. */
async function ipsecKernelView(c: NsCluster, node: string): Promise<Record<string, string>> {
  const sh = async (argv: string[]): Promise<string> => (await c.execNode(node, argv)).stdout;
  return {
    states: (await xfrmStates(c, node)).map((s) => `${s.src}>${s.dst} ${s.spi}`).sort().join('\n'),
    policies: await sh(['ip', 'xfrm', 'policy', 'list']),
    routes: await sh(['ip', 'route', 'show', 'table', '5188']),
    rules: await sh(['ip', 'rule', 'show']),
  };
}

suite(guestTitle('namespace cluster with real agents, mode wireguard: the agent picks kernel WireGuard (qemu guest kernel)'), () => {
  let c: NsCluster | undefined;
  beforeAll(async () => {
    c = await encryptedCluster('wireguard');
  }, 240_000);
  afterAll(async () => {
    await c?.destroy();
  });

  it('every agent created a kernel WireGuard link by itself: link kind wireguard, no wireguard-go process', async () => {
    for (const n of c!.nodes) {
      const link = JSON.parse((await c!.execNode(n.name, ['ip', '-d', '-j', 'link', 'show', 'dev', 'sealwg0'])).stdout) as { linkinfo?: { info_kind?: string } }[];
      expect([n.name, link[0]?.linkinfo?.info_kind]).toEqual([n.name, 'wireguard']);
      const pids = (await run(['ip', 'netns', 'pids', n.netns])).stdout.trim().split('\n').filter((p) => p !== '');
      const comms = await Promise.all(pids.map(async (p) => (await readFile(`/proc/${p}/comm`, 'utf8').catch(() => '')).trim()));
      expect([n.name, comms.filter((x) => x.startsWith('wireguard'))]).toEqual([n.name, []]);
      const log = await readFile(c!.agentLogPath(n.name), 'utf8');
      expect(log).toMatch(/"impl":"kernel".*"msg":"created sealwg0"/);
    }
  });

  it('carries TCP, UDP and ICMP on every pair, both directions, and host to remote pods, only as WireGuard on the underlay', async () => {
    const t0 = Date.now();
    const proof = await proveAllPairs(c!, { mode: 'wireguard', hostToPod: true, captureName: 'vm-wireguard', concurrency: CONCURRENCY });
    note(`wireguard proof: ${proof.capture.totalPackets} packets captured, ${proof.capture.wireguardPackets} WireGuard, in ${Date.now() - t0} ms`);
    expectEncryptedProof(proof, proof.capture.wireguardPackets);
  });
});

suite(guestTitle('sanity: the same proof with encryption off sees plaintext (qemu guest kernel)'), () => {
  it('sees plaintext pod packets and the canary on the underlay', async () => {
    const c = await NsCluster.create({ nodes: NODES, podsPerNode: 1, encryption: false, log: note });
    try {
      const proof = await proveAllPairs(c, { mode: 'wireguard', hostToPod: true, captureName: 'vm-plain', concurrency: CONCURRENCY });
      expect(proof.directions.filter((d) => d.errors.length > 0)).toEqual([]);
      expect(proof.capture.complete).toBe(true);
      expect(proof.capture.podPlaintextPackets).toBeGreaterThan(50);
      expect(proof.capture.canaryHits).toBeGreaterThan(0);
      expect(proof.capture.wireguardPackets + proof.capture.espPackets).toBe(0);
      expect(proof.pairs.some((p) => p.encrypted)).toBe(false);
    } finally {
      await c.destroy();
    }
  });
});

suite(guestTitle('namespace cluster with real agents, mode ipsec: XFRM ESP (qemu guest kernel)'), () => {
  let c: NsCluster | undefined;
  beforeAll(async () => {
    c = await encryptedCluster('ipsec');
  }, 240_000);
  afterAll(async () => {
    await c?.destroy();
  });

  it('carries TCP, UDP and ICMP on every pair, both directions, and host to remote pods, only as ESP between node addresses', async () => {
    const t0 = Date.now();
    const proof = await proveAllPairs(c!, { mode: 'ipsec', hostToPod: true, captureName: 'vm-ipsec', concurrency: CONCURRENCY });
    note(`ipsec proof: ${proof.capture.totalPackets} packets captured, ${proof.capture.espPackets} ESP, in ${Date.now() - t0} ms`);
    expectEncryptedProof(proof, proof.capture.espPackets);
    expect(proof.capture.wireguardPackets).toBe(0);
    const nodeAddresses = new Set(c!.nodes.map((n) => n.address));
    const endpoints = Object.keys(proof.capture.espByEndpoints);
    expect(endpoints.length).toBe(NODES * (NODES - 1));
    for (const e of endpoints) expect(e.split('>').every((a) => nodeAddresses.has(a))).toBe(true);
  });

  it('installs routes at the ESP tunnel MTU out of the underlay, no WireGuard link', async () => {
    expect((await c!.execNode('n1', ['ip', 'route', 'show', 'table', '5188'])).stdout).toBe(
      `100.64.2.0/24 dev eth0 proto 206 scope link src 100.64.1.1 mtu ${ESP_MTU} \n100.64.3.0/24 dev eth0 proto 206 scope link src 100.64.1.1 mtu ${ESP_MTU} \n`,
    );
    expect((await c!.execNode('n1', ['ip', 'link', 'show', 'sealwg0'], { check: false })).code).not.toBe(0);
  });

  it(`passes DF packets of the ESP tunnel MTU (${ESP_MTU}) and answers one byte more with "fragmentation needed", both directions`, async () => {
    for (const [from, to] of [
      ['n1p1', 'n2p1'],
      ['n2p1', 'n1p1'],
    ] as const) {
      await c!.flushRouteCache(from);
      const fits = await c!.ping(from, to, { size: ESP_MTU - 28, count: 2, df: true });
      expect([from, fits.transmitted, fits.received]).toEqual([from, 2, 2]);
      const tooBig = await c!.ping(from, to, { size: ESP_MTU - 28 + 1, count: 2, df: true });
      expect(tooBig.received).toBe(0);
      expect(tooBig.fragNeeded || tooBig.messageTooLong).toBe(true);
      expect(tooBig.reportedMtu).toBe(ESP_MTU);
      // The pod's link MTU is 1500: mtu 1446 can only have been learned from the node's ICMP.
      expect((await c!.execPod(from, ['ip', 'route', 'get', c!.resolve(to)])).stdout).toMatch(new RegExp(`mtu ${ESP_MTU}`));
    }
  });

  it('SA counters grow with traffic, on both ends of a pair', async () => {
    const [n1, n2] = [c!.node('n1').address, c!.node('n2').address];
    const pick = (states: SaCounters[], src: string, dst: string): SaCounters => {
      const s = states.filter((x) => x.src === src && x.dst === dst);
      expect(s).toHaveLength(1);
      return s[0]!;
    };
    const before = { out: pick(await xfrmStates(c!, 'n1'), n1, n2), in: pick(await xfrmStates(c!, 'n2'), n1, n2) };
    expect(before.out.spi).toBe(before.in.spi);
    const r = await c!.ping('n1p1', 'n2p1', { count: 5, size: 500 });
    expect(r.received).toBe(5);
    const after = { out: pick(await xfrmStates(c!, 'n1'), n1, n2), in: pick(await xfrmStates(c!, 'n2'), n1, n2) };
    note(`SA ${before.out.spi} n1→n2: out ${before.out.packets}→${after.out.packets} packets, in ${before.in.packets}→${after.in.packets}`);
    expect(after.out.packets - before.out.packets).toBeGreaterThanOrEqual(5);
    expect(after.in.packets - before.in.packets).toBeGreaterThanOrEqual(5);
    expect(after.out.bytes - before.out.bytes).toBeGreaterThanOrEqual(5 * 528);
  });

  it('survives kill -9 of an agent: a TCP stream through its SAs never breaks and the restart writes nothing to the kernel', async () => {
    const stream = await startTcpStream(c!, { from: 'n1p1', to: 'n2p1', rateBps: 500_000 });
    const before = await ipsecKernelView(c!, 'n1');
    await c!.killAgent('n1', 'SIGKILL');
    await sleep(2000);
    const t0 = Date.now();
    await c!.startAgent('n1');
    const m = await waitFor('a reconcile of the restarted agent', async () => {
      const text = await metrics(c!, 'n1').catch(() => '');
      return metricValue(text, 'sealnet_reconciles_total') >= 1 ? text : undefined;
    }, { timeoutMs: 90_000, pollMs: 2000 });
    note(`restarted agent reconciled after ${Date.now() - t0} ms`);
    expect(metricValue(m, 'sealnet_reconciles_total', 'result="ok"')).toBeGreaterThanOrEqual(1);
    expect(metricValue(m, 'sealnet_kernel_operations_total')).toBe(0);
    expect(await ipsecKernelView(c!, 'n1')).toEqual(before);
    // The stream keeps flowing after the restart (not only survived it).
    const received = (await stream.status()).server?.recordsReceived ?? 0;
    await waitFor('records after the restart', async () => (((await stream.status()).server?.recordsReceived ?? 0) > received + 50 ? true : undefined), { timeoutMs: 20_000 });
    // Stopping the client with acknowledgements still unread makes its kernel send an RST
    // (slow under TCG): only breaks before the stop count.
    const stoppedAt = Date.now();
    const final = await stream.stop();
    note(`tcp stream: ${final.server?.recordsReceived} records, client max stall ${final.client?.maxStallMs} ms`);
    expect(final.client?.breaks).toEqual([]);
    expect(final.server?.breaks.filter((b) => b.at < stoppedAt)).toEqual([]);
    expect(final.server?.gaps).toEqual([]);
    expect(final.client?.connections).toBe(1);
    expect(final.server?.recordsReceived).toBeGreaterThan(100);
  });
});
