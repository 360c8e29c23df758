/**
 * `ip-family` (issue 18): IPv4 vs IPv6 pod-to-pod TCP through sealnet, over an IPv4 and over an
 * IPv6 underlay, side by side in one run, plus the path MTU of each leg. Two dual-stack 2-node
 * clusters (WireGuard endpoints of either family) are built first; each round then runs every
 * iperf3 shape once per leg in the throughput bench's rotating order, so the ratios are paired
 * per round (report and intervals: ipfamily-report.ts).
 */
import { NsCluster } from '../harness/cluster.js';
import { sleep } from '../harness/exec.js';
import { WG_INTERFACE } from '../../common/constants.js';
import { loadAverage } from './env.js';
import {
  LEGS,
  legName,
  type Family,
  type IpFamilyMtu,
  type IpFamilyResult,
  type IpFamilySample,
  type IpFamilySetup,
  type Leg,
} from './ipfamily-report.js';
import { IperfServer, runIperf } from './load.js';
import { roundOrder, testShape } from './throughput.js';
import type { ThroughputTest } from './types.js';

const IPERF_PORT = 5201;
const FROM = 'n1p1';
const TO = 'n2p1';
const UNDERLAY_MTU = 1500;
/** DESIGN.md: WireGuard adds 60 bytes over IPv4, 80 over IPv6. */
const WG_OVERHEAD: Readonly<Record<Family, number>> = { 4: 60, 6: 80 };
/** IP + ICMP echo header bytes in front of a ping payload. */
const ECHO_HEADERS: Readonly<Record<Family, number>> = { 4: 28, 6: 48 };
/** The IPv6 minimum link MTU: where the search starts (a tunnel below it is broken for IPv6). */
const SEARCH_FLOOR = 1280;

/** Options of {@link runIpFamily}. */
export interface IpFamilyOptions {
  readonly rounds: number;
  readonly durationS: number;
  readonly tests: readonly ThroughputTest[];
  readonly runId: string;
  readonly log: (line: string) => void;
}

async function buildCluster(underlay: Family, o: IpFamilyOptions): Promise<NsCluster> {
  const c = await NsCluster.create({
    nodes: 2,
    podsPerNode: 1,
    ipFamily: 'dual',
    underlayFamily: underlay,
    mtu: UNDERLAY_MTU,
    prefix: `b${o.runId}f${underlay}`,
    log: (l) => o.log(`  [u${underlay}] ${l}`),
  });
  try {
    await c.waitEncrypted({ timeoutMs: 90_000 });
    return c;
  } catch (err) {
    await c.destroy();
    throw err;
  }
}

async function describeSetup(underlay: Family, c: NsCluster, setupMs: number): Promise<IpFamilySetup> {
  const endpoints: Record<string, string> = {};
  const dump = await c.wgDump('n1');
  if (dump === undefined) throw new Error(`cluster ${c.prefix}: no WireGuard dump from n1`);
  for (const p of dump.peers) endpoints[p.publicKey.slice(0, 8)] = p.endpoint ?? '(none)';
  const tunnelLink = (await c.execNode('n1', ['ip', '-o', 'link', 'show', 'dev', WG_INTERFACE])).stdout.trim();
  // Each peer's endpoint must be of the underlay family, or the leg is not what it claims.
  for (const e of Object.values(endpoints))
    if (e.startsWith('[') !== (underlay === 6))
      throw new Error(`cluster ${c.prefix}: WireGuard endpoint ${e} is not IPv${underlay}`);
  return { underlay, prefix: c.prefix, endpoints, tunnelLink, setupMs };
}

/** Whether a DF echo of `size` bytes (whole IP packet) from FROM to TO's `family` address gets replies. */
async function echo(c: NsCluster, family: Family, size: number): ReturnType<NsCluster['ping']> {
  await c.flushRouteCache(FROM);
  return c.ping(FROM, c.resolve(TO, family), {
    size: size - ECHO_HEADERS[family],
    count: 2,
    df: true,
    intervalS: 0.2,
    waitS: 1,
  });
}

/** Binary search for the largest packet that passes, then one byte more. */
async function measureMtu(c: NsCluster, leg: Leg): Promise<IpFamilyMtu> {
  let probes = 0;
  const passes = async (size: number): Promise<boolean> => {
    probes++;
    return (await echo(c, leg.inner, size)).received > 0;
  };
  let largest: number | undefined;
  if (await passes(SEARCH_FLOOR)) {
    let lo = SEARCH_FLOOR;
    let hi = UNDERLAY_MTU + 1; // invariant: lo passes, hi does not (or is past the underlay)
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (await passes(mid)) lo = mid;
      else hi = mid;
    }
    largest = lo;
  }
  const over = await echo(c, leg.inner, (largest ?? SEARCH_FLOOR - 1) + 1);
  probes++;
  return {
    ...leg,
    from: FROM,
    to: TO,
    expectedMtu: UNDERLAY_MTU - WG_OVERHEAD[leg.underlay],
    largestPassing: largest,
    overFragNeeded: over.fragNeeded,
    overMessageTooLong: over.messageTooLong,
    overReceived: over.received,
    overReportedMtu: over.reportedMtu,
    probes,
  };
}

/** Runs the benchmark; both clusters are destroyed on return or failure. */
export async function runIpFamily(o: IpFamilyOptions): Promise<IpFamilyResult> {
  const clusters = new Map<Family, NsCluster>();
  const setups: IpFamilySetup[] = [];
  const iperf: IpFamilySample[] = [];
  const loadByRound: number[] = [];
  try {
    for (const underlay of [4, 6] as const) {
      const t0 = Date.now();
      const c = await buildCluster(underlay, o);
      clusters.set(underlay, c);
      setups.push(await describeSetup(underlay, c, Date.now() - t0));
      o.log(`ip-family: IPv${underlay} underlay ready in ${Date.now() - t0} ms (${c.prefix})`);
    }
    const cluster = (f: Family): NsCluster => clusters.get(f) as NsCluster;
    // Path MTU first, on an idle tunnel (iperf3 load would make pings lossy).
    const mtu: IpFamilyMtu[] = [];
    for (const leg of LEGS) {
      const m = await measureMtu(cluster(leg.underlay), leg);
      mtu.push(m);
      o.log(
        `  mtu ${legName(leg)}: largest passing ${m.largestPassing ?? 'none'} (expected ${m.expectedMtu}), one byte more: ${m.overReceived} replies, refused ${m.overFragNeeded || m.overMessageTooLong}, mtu ${m.overReportedMtu ?? 'none'} (${m.probes} probes)`,
      );
    }
    for (const underlay of [4, 6] as const) {
      const c = cluster(underlay);
      await new IperfServer(c, { pod: TO, port: IPERF_PORT }).restart();
      // Warm-up (not recorded) of both pod families: neighbour and route caches, iperf3 paged in.
      for (const inner of [4, 6] as const)
        await runIperf(c, {
          from: FROM,
          to: c.resolve(TO, inner),
          port: IPERF_PORT,
          seconds: 1,
          streams: 1,
          reverse: false,
        });
    }
    for (let r = 0; r < o.rounds; r++) {
      const order = roundOrder(r, LEGS);
      const load = loadAverage()[0];
      loadByRound.push(load);
      o.log(`ip-family: round ${r + 1}/${o.rounds} (order: ${order.map(legName).join(', ')}; load ${load.toFixed(2)})`);
      for (const test of o.tests) {
        for (const leg of order) {
          const c = cluster(leg.underlay);
          const at = Date.now();
          const out = await runIperf(c, {
            from: FROM,
            to: c.resolve(TO, leg.inner),
            port: IPERF_PORT,
            seconds: o.durationS,
            ...testShape(test),
          });
          iperf.push({
            ...leg,
            round: r,
            test,
            at,
            bitsPerSecond: out.bitsPerSecond,
            retransmits: out.retransmits,
            error: out.error,
          });
          o.log(
            `  ${test} ${legName(leg)}: ${out.bitsPerSecond === undefined ? `FAILED ${out.error ?? ''}` : `${(out.bitsPerSecond / 1e6).toFixed(0)} Mbit/s, ${out.retransmits ?? '?'} retransmits`}`,
          );
          await sleep(200);
        }
      }
    }
    return { rounds: o.rounds, durationS: o.durationS, tests: o.tests, loadByRound, setups, iperf, mtu };
  } finally {
    await Promise.all([...clusters.values()].map((c) => c.destroy()));
  }
}
