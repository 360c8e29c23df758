/**
 * Kernel tier, inside the qemu guest (test/vm/run.sh), issue 18: mode ipsec over an IPv6
 * underlay with dual-stack pods. One 3-node namespace cluster (`NsCluster`, address plan
 * fd00:5ea1::/48: nodes fd00:5ea1::<i> first in their InternalIPs, pod CIDRs 100.64.<i>.0/24 and
 * fd00:5ea1:1:<i>::/64), booted once:
 *
 * 1. before the agents start (the sanity half): the routed "CNI" carries pod TCP, UDP, ICMP and
 *    ICMPv6 of both families in plaintext, and the underlay capture sees it and the canary — the
 *    same capture and judge as below can fail;
 * 2. agents started: tunnel-mode ESP SAs between the IPv6 node addresses, policies for both inner
 *    families (IPv4 pods in IPv6 ESP too); TCP, UDP and ICMP/ICMPv6 of both families on every
 *    pair, both directions, and host to every remote pod: the capture sees only ESP between IPv6
 *    node addresses, never a pod address or the canary;
 * 3. the MTU of ESP over IPv6 (1500 - 74 = 1426) on the routes of both families; a DF packet of
 *    1426 bytes crosses, one byte more gets "fragmentation needed" / Packet Too Big naming 1426.
 *
 * Runs only in the guest (SEALNET_VM_GUEST=1); outside it the suite is skipped, inside a skip
 * fails the run.
 */
import { jest } from '@jest/globals';
import { NsCluster } from '../harness/cluster.js';
import { toolPath } from '../harness/paths.js';
import { proveAllPairs, type PairsProof } from '../harness/prove.js';
import { IPSEC_STATUS_CONFIG, NODES, noter, waitFor } from './ipsec-cluster.js';
import { guestTitle, inGuest } from './pair.js';
import { xfrmStat } from './replay.js';

const suite = inGuest ? describe : describe.skip;
jest.setTimeout(360_000);

/**
 * DESIGN.md: ESP tunnel mode with AES-GCM over a 1500-byte IPv6 underlay: 40 (IPv6) + 8 (SPI,
 * sequence) + 8 (IV) + ALIGN(inner + 2, 4) + 16 (ICV) <= 1500, so the largest inner packet is 1426.
 */
const ESP6_MTU = 1426;
/** Directions exercised at once: each spawns processes, seconds of CPU each under TCG. */
const CONCURRENCY = 2;
const FAMILIES = [4, 6] as const;

const note = noter('ipsec-ipv6');

const isV6 = (a: string): boolean => a.includes(':');

/** Plaintext pod flows (`src>dst/proto`) whose pod addresses are of `family`. */
function flowsOf(p: PairsProof, family: 4 | 6): string[] {
  return Object.keys(p.capture.podPlaintextFlows).filter((k) => isV6(k) === (family === 6));
}

function summary(name: string, p: PairsProof): string {
  const c = p.capture;
  const kinds = Object.entries(c.byKind)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return `${name}: ${p.directions.length + p.hostDirections.length} directions, ${[...p.directions, ...p.hostDirections].filter((d) => d.errors.length > 0).length} failed; capture ${c.totalPackets} packets (${kinds}), plaintext pod ${c.podPlaintextPackets} (IPv4 flows ${flowsOf(p, 4).length}, IPv6 flows ${flowsOf(p, 6).length}), canary ${c.canaryHits}, ESP endpoints ${JSON.stringify(c.espByEndpoints)}`;
}

suite(guestTitle('mode ipsec over an IPv6 underlay with dual-stack pods (qemu guest kernel)'), () => {
  let c: NsCluster | undefined;
  beforeAll(async () => {
    c = await NsCluster.create({
      nodes: NODES,
      podsPerNode: 1,
      mode: 'ipsec',
      ipFamily: 'dual',
      underlayFamily: 6,
      startAgents: false,
      agentConfig: IPSEC_STATUS_CONFIG,
      log: note,
    });
    // The first node processes in the guest read node and its modules over 9p, cold: three canary
    // servers starting at once then take longer than their 10 s start budget. One run warms the cache.
    const t0 = Date.now();
    await c.execPod('n1p1', [process.execPath, '--check', toolPath('canary.mjs')], { timeoutMs: 120_000 });
    note(`node warmed up in ${Date.now() - t0} ms`);
  }, 240_000);
  afterAll(async () => {
    await c?.destroy();
  });

  it('sanity, before the agents run: pod TCP, UDP, ICMP and ICMPv6 of both families cross in plaintext and the capture sees them and the canary', async () => {
    const t0 = Date.now();
    const p = await proveAllPairs(c!, {
      mode: 'ipsec',
      captureName: 'vm-ipsec6-plain',
      families: FAMILIES,
      concurrency: CONCURRENCY,
    });
    note(`${summary('plaintext', p)} in ${Date.now() - t0} ms`);
    expect(p.directions).toHaveLength(NODES * (NODES - 1) * FAMILIES.length);
    expect(p.directions.filter((d) => d.errors.length > 0)).toEqual([]);
    expect(p.capture.complete).toBe(true);
    expect(p.capture.canaryHits).toBeGreaterThan(0);
    // Both families' pod traffic is visible, on every ordered pair.
    for (const f of FAMILIES) expect(flowsOf(p, f).length).toBeGreaterThanOrEqual(NODES * (NODES - 1));
    expect(p.capture.espPackets).toBe(0);
    expect(p.pairs.some((x) => x.encrypted)).toBe(false);
  });

  it('agents up: SAs between the IPv6 node addresses, policies for both inner families', async () => {
    const t0 = Date.now();
    await Promise.all(c!.nodeNames().map((n) => c!.startAgent(n)));
    await c!.waitEncrypted({ timeoutMs: 240_000, pollMs: 2000 }).catch(async (err: unknown) => {
      for (const n of c!.nodeNames()) {
        note(`${n} agent log tail:\n${c!.agentLogTail(n, 15).join('\n')}`);
        note(`${n} XFRM counters: ${JSON.stringify(await xfrmStat(c!, n))}`);
      }
      throw err;
    });
    note(`agents started and every pair encrypted after ${Date.now() - t0} ms`);
    const n1 = c!.node('n1');
    expect(n1.address).toBe('fd00:5ea1::1');
    const states = (await c!.execNode('n1', ['ip', '-o', 'xfrm', 'state', 'list'])).stdout;
    for (const peer of ['fd00:5ea1::2', 'fd00:5ea1::3']) {
      expect(states).toContain(`src fd00:5ea1::1 dst ${peer}`);
      expect(states).toContain(`src ${peer} dst fd00:5ea1::1`);
    }
    expect(states).not.toMatch(/src 198\.18\./);
    // `ip -o` joins a record's lines with a backslash and keeps the tabs.
    const policies = (await c!.execNode('n1', ['ip', '-o', 'xfrm', 'policy', 'list'])).stdout;
    for (const [local, remote] of [
      ['100.64.1.0/24', '100.64.2.0/24'],
      ['fd00:5ea1:1:1::/64', 'fd00:5ea1:1:2::/64'],
    ] as const) {
      expect(policies).toMatch(
        new RegExp(
          `src ${local} dst ${remote}[\\s\\\\]+dir out.*tmpl src fd00:5ea1::1 dst fd00:5ea1::2[\\s\\\\]+proto esp`,
        ),
      );
      for (const dir of ['in', 'fwd'])
        expect(policies).toMatch(
          new RegExp(
            `src ${remote} dst ${local}[\\s\\\\]+dir ${dir}.*tmpl src fd00:5ea1::2 dst fd00:5ea1::1[\\s\\\\]+proto esp`,
          ),
        );
    }
  });

  it('TCP, UDP, ICMP and ICMPv6 of both families on every pair, both directions, and host to every remote pod: only ESP between IPv6 node addresses, no canary', async () => {
    const t0 = Date.now();
    const p = await proveAllPairs(c!, {
      mode: 'ipsec',
      hostToPod: true,
      captureName: 'vm-ipsec6',
      families: FAMILIES,
      concurrency: CONCURRENCY,
    });
    note(`${summary('ipsec over IPv6', p)} in ${Date.now() - t0} ms`);
    const dirs = [...p.directions, ...p.hostDirections];
    for (const d of dirs.filter((x) => x.errors.length > 0)) note(`  ${d.from} -> ${d.to}: ${d.errors.join('; ')}`);
    if (dirs.some((d) => d.errors.length > 0))
      for (const n of c!.nodeNames()) {
        const moved = Object.entries(await xfrmStat(c!, n)).filter(([, v]) => v > 0);
        note(`${n} XFRM error counters: ${JSON.stringify(Object.fromEntries(moved))}`);
      }
    expect(dirs).toHaveLength(2 * NODES * (NODES - 1) * FAMILIES.length);
    expect(dirs.filter((d) => d.errors.length > 0)).toEqual([]);
    for (const f of FAMILIES) expect(dirs.filter((d) => d.to.endsWith(`/v${f}`))).toHaveLength(2 * NODES * (NODES - 1));
    expect(p.capture.complete).toBe(true);
    expect(p.capture.podPlaintextPackets).toBe(0);
    expect(p.capture.podAddressInIcmpErrors).toBe(0);
    expect(p.capture.canaryHits).toBe(0);
    expect(p.capture.wireguardPackets).toBe(0);
    // Nothing on the wire but ESP and link housekeeping (ARP, ICMPv6 neighbour discovery).
    const { esp, arp, icmpv6, ...rest } = p.capture.byKind;
    expect(Object.entries(rest).filter(([, v]) => v > 0)).toEqual([]);
    expect(esp).toBe(p.capture.espPackets);
    expect(esp).toBeGreaterThan(100);
    note(`housekeeping: arp ${arp}, icmpv6 ${icmpv6}`);
    const nodeAddresses = new Set(c!.nodes.map((n) => n.address));
    const endpoints = Object.keys(p.capture.espByEndpoints);
    expect(endpoints).toHaveLength(NODES * (NODES - 1));
    for (const e of endpoints)
      expect([e, e.split('>').every((a) => isV6(a) && nodeAddresses.has(a))]).toEqual([e, true]);
    expect(p.pairs.map((x) => [x.a, x.b, x.encrypted])).toEqual([
      ['n1', 'n2', true],
      ['n1', 'n3', true],
      ['n2', 'n3', true],
    ]);
  });

  it(`MTU: routes of both families at ${ESP6_MTU}; DF packets of ${ESP6_MTU} bytes cross, one byte more gets "fragmentation needed" / Packet Too Big naming ${ESP6_MTU}`, async () => {
    const routes4 = (await c!.execNode('n1', ['ip', 'route', 'show', 'table', '5188'])).stdout;
    const routes6 = (await c!.execNode('n1', ['ip', '-6', 'route', 'show', 'table', '5188'])).stdout;
    note(`n1 table 5188:\n${routes4}${routes6}`);
    for (const dst of ['100.64.2.0/24', '100.64.3.0/24'])
      expect(routes4).toMatch(new RegExp(`^${dst} dev eth0 .*mtu ${ESP6_MTU}`, 'm'));
    for (const dst of ['fd00:5ea1:1:2::/64', 'fd00:5ea1:1:3::/64'])
      expect(routes6).toMatch(new RegExp(`^${dst} dev eth0 .*mtu ${ESP6_MTU}`, 'm'));
    for (const [from, to] of [
      ['n1p1', 'n2p1'],
      ['n2p1', 'n1p1'],
    ] as const) {
      for (const family of FAMILIES) {
        // ICMP echo payload = MTU - IP header - 8 (ICMP/ICMPv6 header).
        const headers = family === 4 ? 28 : 48;
        const dst = c!.resolve(to, family);
        await c!.flushRouteCache(from);
        const fits = await waitFor(
          `a ${ESP6_MTU}-byte IPv${family} echo ${from} -> ${to}`,
          async () => {
            const r = await c!.ping(from, dst, { size: ESP6_MTU - headers, count: 2, df: true });
            return r.received === 2 ? r : undefined;
          },
          { timeoutMs: 20_000, pollMs: 1000 },
        );
        await c!.flushRouteCache(from);
        const over = await c!.ping(from, dst, { size: ESP6_MTU - headers + 1, count: 2, df: true });
        note(
          `IPv${family} ${from} -> ${to}: ${ESP6_MTU} bytes ${fits.received}/${fits.transmitted}; ${ESP6_MTU + 1} bytes ${over.received}/${over.transmitted}, too big ${over.fragNeeded}, local ${over.messageTooLong}, mtu ${over.reportedMtu}`,
        );
        expect([family, from, over.received]).toEqual([family, from, 0]);
        expect([family, from, over.fragNeeded || over.messageTooLong]).toEqual([family, from, true]);
        expect([family, from, over.reportedMtu]).toEqual([family, from, ESP6_MTU]);
        // The pod's link MTU is 1500: 1426 can only have been learned from the node's ICMP error.
        const route = (await c!.execPod(from, ['ip', `-${family}`, 'route', 'get', dst])).stdout;
        expect([family, from, route]).toEqual([family, from, expect.stringMatching(new RegExp(`mtu ${ESP6_MTU}`))]);
      }
    }
  });
});
