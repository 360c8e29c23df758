/**
 * `throughput`: five 2-node clusters side by side — plaintext, sealnet (agents), a
 * hand-configured WireGuard mesh with the agents' wireguard-go binary, one with Debian's, and
 * sealnet with BPF steering off (route-only; issue 3) — measured round-robin: in each round every iperf3 shape (1 and 4 streams, both directions)
 * runs once per variant, in a variant order that rotates from round to round, followed by a
 * request/response latency run per variant. Ratios are taken within a round (paired).
 */
import { randomBytes } from 'node:crypto';
import { NsCluster } from '../harness/cluster.js';
import { run, sleep } from '../harness/exec.js';
import { WG_DEFAULT_KEEPALIVE, WG_DEFAULT_PORT, WG_INTERFACE } from '../../common/constants.js';
import { cpuSince, cpuSnapshot, cpuSubjects, type CpuSubjects } from './cpu.js';
import { DEBIAN_WIREGUARD_GO, loadAverage } from './env.js';
import { HAND_INTERFACE, handConfigureMesh, handDump, wireguardGoExes } from './handtunnel.js';
import { IperfServer, runIperf, runPingPong, startPingPongServer } from './load.js';
import {
  THROUGHPUT_TESTS,
  VARIANTS,
  type IperfSample,
  type LatencySample,
  type ThroughputResult,
  type ThroughputTest,
  type Variant,
  type VariantSetup,
} from './types.js';

/** Tunnel MTU of a 1500-byte IPv4 underlay (DESIGN.md: WireGuard overhead 60). */
export const TUNNEL_MTU = 1440;
const IPERF_PORT = 5201;
const PINGPONG_PORT = 7301;
const FROM = 'n1p1';
const TO = 'n2p1';

/** Options of {@link runThroughput}. */
export interface ThroughputOptions {
  readonly rounds: number;
  readonly durationS: number;
  readonly latencyCount: number;
  /** wireguard-go the agents use (the harness's pinned build). */
  readonly pinnedWireGuardGo: string;
  /** Run id: cluster prefixes are `b<runId><tag>`. */
  readonly runId: string;
  readonly log: (line: string) => void;
  /** Variants to build (default all of {@link VARIANTS}). */
  readonly variants?: readonly Variant[];
  /** iperf3 shapes (default all of {@link THROUGHPUT_TESTS}). */
  readonly tests?: readonly ThroughputTest[];
  /** Pin iperf3 (client and server) to CPU 0 and every wireguard-go to CPU 1. */
  readonly pin?: boolean;
}

/** CPUs of {@link ThroughputOptions.pin}: the load on one core, the tunnel on the other. */
export const PIN = { iperf3: '0', wireguardGo: '1' } as const;

/** Variant (or leg) order of round `r` (0-based): rotated so none always runs first or last. */
export function roundOrder<T>(r: number, variants: readonly T[]): T[] {
  const k = r % variants.length;
  return [...variants.slice(k), ...variants.slice(0, k)];
}

/** iperf3 parameters of a test shape. */
export function testShape(t: ThroughputTest): { streams: number; reverse: boolean } {
  return { streams: t.startsWith('4x') ? 4 : 1, reverse: t.endsWith('-rev') };
}

const TAGS: Readonly<Record<Variant, string>> = {
  plaintext: 'pt',
  sealnet: 'sn',
  'hand-pinned': 'hp',
  'hand-debian': 'hd',
  'sealnet-route-only': 'sr',
};

/** Agent config of the route-only variant: the one difference to `sealnet`. */
export const ROUTE_ONLY_CONFIG = { steering: { enabled: false } } as const;

async function buildVariant(v: Variant, o: ThroughputOptions): Promise<NsCluster> {
  const prefix = `b${o.runId}${TAGS[v]}`;
  const log = (l: string): void => o.log(`  [${v}] ${l}`);
  if (v === 'sealnet' || v === 'sealnet-route-only') {
    const c = await NsCluster.create({
      nodes: 2,
      podsPerNode: 1,
      prefix,
      log,
      ...(v === 'sealnet-route-only' ? { agentConfig: ROUTE_ONLY_CONFIG } : {}),
    });
    await c.waitEncrypted({ timeoutMs: 60_000 });
    return c;
  }
  const c = await NsCluster.create({ nodes: 2, podsPerNode: 1, encryption: false, prefix, log });
  if (v === 'plaintext') return c;
  try {
    const binary = v === 'hand-pinned' ? o.pinnedWireGuardGo : DEBIAN_WIREGUARD_GO;
    await handConfigureMesh(c, {
      binary,
      listenPort: WG_DEFAULT_PORT,
      mtu: TUNNEL_MTU,
      persistentKeepalive: WG_DEFAULT_KEEPALIVE,
    });
    // Under load the first handshake can take seconds: retry for up to 15 s, one ping at a time.
    let ping = await c.ping(FROM, TO, { count: 3, df: false });
    for (const t0 = Date.now(); ping.received === 0 && Date.now() - t0 < 15_000;)
      ping = await c.ping(FROM, TO, { count: 1, waitS: 2, df: false });
    const dump = await handDump(c, 'n1');
    if (ping.received === 0 || dump?.peers[0]?.latestHandshake === 0)
      throw new Error(
        `hand-configured tunnel ${prefix} does not carry traffic after 15 s (last ping ${ping.received}/${ping.transmitted})`,
      );
    return c;
  } catch (err) {
    await c.destroy();
    throw err;
  }
}

/** What carries a variant's traffic, recorded so the result file shows it was what we claim. */
async function describeSetup(v: Variant, c: NsCluster, setupMs: number): Promise<VariantSetup> {
  const iface =
    v === 'sealnet' || v === 'sealnet-route-only' ? WG_INTERFACE : v === 'plaintext' ? undefined : HAND_INTERFACE;
  const link =
    iface === undefined
      ? undefined
      : (await c.execNode('n1', ['ip', '-o', 'link', 'show', 'dev', iface])).stdout.trim();
  const route = (
    await c.execNode('n1', ['ip', 'route', 'get', c.resolve(TO), 'from', c.resolve(FROM), 'iif', 'cni0'])
  ).stdout.trim();
  const exes = Object.fromEntries(c.nodeNames().map((n) => [n, wireguardGoExes(c, n)]));
  const rules = (await c.execNode('n1', ['ip', 'rule', 'show'])).stdout.trim();
  const bpf: string[] = [];
  for (const [dev, dir] of [
    ['eth0', 'egress'],
    ['eth0', 'ingress'],
    ['cni0', 'ingress'],
    ['cni0', 'egress'],
  ] as const) {
    const r = await c.execNode('n1', ['tc', 'filter', 'show', 'dev', dev, dir], { check: false });
    for (const m of r.stdout.matchAll(/ name (\S+)/g)) bpf.push(`${dev} ${dir}: ${m[1] ?? '?'}`);
  }
  const eth0Egress = v === 'sealnet' || v === 'sealnet-route-only' ? await eth0EgressFilters(c) : undefined;
  return {
    variant: v,
    prefix: c.prefix,
    wireguardGoExe: exes,
    tunnelLink: link,
    routeToPeerPods: route,
    rules,
    bpfPrograms: bpf,
    setupMs,
    ...(eth0Egress === undefined ? {} : { eth0Egress }),
  };
}

/** `tc filter show dev eth0 egress` on every node. */
async function eth0EgressFilters(c: NsCluster): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const n of c.nodeNames())
    out[n] = (await c.execNode(n, ['tc', 'filter', 'show', 'dev', 'eth0', 'egress'], { check: false })).stdout;
  return out;
}

/**
 * Checks the two sealnet variants differ in steering only as claimed: `sealnet` has a classifier
 * on every node's eth0 egress, `sealnet-route-only` has nothing there (and no BPF program on eth0
 * or cni0); both route the remote pods into the tunnel link.
 */
export function checkSteering(setups: readonly VariantSetup[]): void {
  for (const s of setups) {
    if (s.variant !== 'sealnet' && s.variant !== 'sealnet-route-only') continue;
    const on = s.variant === 'sealnet';
    for (const [node, out] of Object.entries(s.eth0Egress ?? {})) {
      if ((out.trim() !== '') !== on)
        throw new Error(
          `${s.variant}/${node}: tc filter show dev eth0 egress is ${on ? 'empty, expected the steering classifier' : `not empty, expected nothing: ${out.trim()}`}`,
        );
    }
    if (!on && s.bpfPrograms.length > 0)
      throw new Error(`${s.variant}: BPF programs attached: ${s.bpfPrograms.join(', ')}`);
    if (!s.routeToPeerPods.includes(`dev ${WG_INTERFACE}`))
      throw new Error(`${s.variant}: pod traffic is not routed into ${WG_INTERFACE}: ${s.routeToPeerPods}`);
  }
}

/** Checks the variants run the binaries they claim: sealnet and hand-pinned the same one. */
function checkBinaries(setups: readonly VariantSetup[], pinned: string): void {
  for (const s of setups) {
    const want = s.variant === 'plaintext' ? [] : s.variant === 'hand-debian' ? [DEBIAN_WIREGUARD_GO] : [pinned];
    for (const [node, exes] of Object.entries(s.wireguardGoExe)) {
      if (JSON.stringify(exes) !== JSON.stringify(want))
        throw new Error(`${s.variant}/${node} runs ${JSON.stringify(exes)}, expected ${JSON.stringify(want)}`);
    }
  }
}

/** Runs the throughput and latency benchmark; every cluster is destroyed on return or failure. */
export async function runThroughput(o: ThroughputOptions): Promise<ThroughputResult> {
  const clusters = new Map<Variant, NsCluster>();
  const setups: VariantSetup[] = [];
  const iperf: IperfSample[] = [];
  const latency: LatencySample[] = [];
  const variants = o.variants ?? VARIANTS;
  const tests = o.tests ?? THROUGHPUT_TESTS;
  const iperfCpus = o.pin === true ? PIN.iperf3 : undefined;
  const loadByRound: number[] = [];
  try {
    for (const v of variants) {
      const t0 = Date.now();
      const c = await buildVariant(v, o);
      clusters.set(v, c);
      setups.push(await describeSetup(v, c, Date.now() - t0));
      o.log(`throughput: ${v} ready in ${Date.now() - t0} ms (${c.prefix})`);
    }
    checkBinaries(setups, o.pinnedWireGuardGo);
    checkSteering(setups);
    const servers = new Map<Variant, IperfServer>();
    const subjects = new Map<Variant, CpuSubjects>();
    for (const [v, c] of clusters) {
      subjects.set(v, cpuSubjects(c));
      if (o.pin === true)
        for (const pid of subjects.get(v)?.wireguardGo ?? [])
          await run(['taskset', '-a', '-p', '-c', PIN.wireguardGo, String(pid)]);
      const s = new IperfServer(c, {
        pod: TO,
        port: IPERF_PORT,
        ...(iperfCpus === undefined ? {} : { cpus: iperfCpus }),
      });
      await s.restart();
      servers.set(v, s);
      await startPingPongServer(c, { pod: TO, port: PINGPONG_PORT });
      // Warm-up (not recorded): handshakes done, ARP and route caches filled, iperf3 paged in.
      await runIperf(c, { from: FROM, to: TO, port: IPERF_PORT, seconds: 1, streams: 1, reverse: false });
    }
    const get = <T>(m: Map<Variant, T>, v: Variant): T => m.get(v) as T;
    for (let r = 0; r < o.rounds; r++) {
      const order = roundOrder(r, variants);
      const load = loadAverage()[0];
      loadByRound.push(load);
      o.log(`throughput: round ${r + 1}/${o.rounds} (order: ${order.join(', ')}; load ${load.toFixed(2)})`);
      for (const test of tests) {
        for (const v of order) {
          const c = get(clusters, v);
          const at = Date.now();
          const shape = testShape(test);
          const who = get(subjects, v);
          let before = cpuSnapshot(who);
          let out = await runIperf(c, {
            from: FROM,
            to: TO,
            port: IPERF_PORT,
            seconds: o.durationS,
            ...shape,
            ...(iperfCpus === undefined ? {} : { cpus: iperfCpus }),
          });
          if (out.error !== undefined) {
            o.log(`  ${v} ${test}: ${out.error}; restarting the server and retrying once`);
            await get(servers, v).restart();
            before = cpuSnapshot(who);
            out = await runIperf(c, {
              from: FROM,
              to: TO,
              port: IPERF_PORT,
              seconds: o.durationS,
              ...shape,
              ...(iperfCpus === undefined ? {} : { cpus: iperfCpus }),
            });
          }
          const cpu = cpuSince(who, before);
          iperf.push({ round: r, variant: v, test, at, ...out, cpu });
          const gbit = out.bytes === undefined ? undefined : (out.bytes * 8) / 1e9;
          const perGbit =
            gbit === undefined || gbit === 0
              ? ''
              : `, ${((cpu.agentS + cpu.wireguardGoS) / gbit).toFixed(3)} CPU-s/Gbit`;
          o.log(
            `  ${test} ${v}: ${out.bitsPerSecond === undefined ? `FAILED ${out.error ?? ''}` : `${(out.bitsPerSecond / 1e6).toFixed(0)} Mbit/s${perGbit}`}`,
          );
          await sleep(200);
        }
      }
      for (const v of order) {
        const at = Date.now();
        const pp = await runPingPong(get(clusters, v), {
          from: FROM,
          to: TO,
          port: PINGPONG_PORT,
          count: o.latencyCount,
          warmup: 100,
          size: 64,
        });
        latency.push({ round: r, variant: v, at, size: 64, rttUs: pp.rttUs, error: pp.error });
      }
    }
    return {
      variants,
      tests,
      ...(o.pin === true ? { pinned: PIN } : {}),
      loadByRound,
      rounds: o.rounds,
      durationS: o.durationS,
      latencyCount: o.latencyCount,
      setups,
      iperf,
      latency,
    };
  } finally {
    await Promise.all([...clusters.values()].map((c) => c.destroy()));
  }
}

/** A fresh 4-hex-digit run id. */
export function newRunId(): string {
  return randomBytes(2).toString('hex');
}
