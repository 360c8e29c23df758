/**
 * `rotation` (issue 5): a 5-node namespace cluster with real agents rotates its keys under
 * traffic, round after round: n1 alone, then every node at once. Each rotation is timed from the
 * `sealctl keys rotate --wait` request to every target's new key published (switched) and to
 * sealctl returning (old keys gone), while a TCP stream per node pair and a numbered UDP stream
 * each way between n1 and n2 count breaks and lost datagrams. The traffic, the timing and the
 * cleanliness check are the rotation e2e test's own (test/harness/rotation.ts).
 */
import { NsCluster } from '../harness/cluster.js';
import { sleep } from '../harness/exec.js';
import {
  leftovers,
  parseRotateSummary,
  ROTATION_AGENT_CONFIG,
  ROTATION_GRACE_S,
  ROTATION_PEER_TIMEOUT_S,
  startTraffic,
  stateFile,
  stopTraffic,
  timeRotation,
  TRAFFIC_TCP_BPS,
  TRAFFIC_UDP_PPS,
  type TimedRotation,
  type Traffic,
  type TrafficResult,
  type UdpTrafficResult,
} from '../harness/rotation.js';
import { newCanary } from '../harness/traffic.js';
import { DropTracker, ipDropSum, linkDropSum, type NsIncrements, type NsProbe } from '../harness/netcounters.js';
import type { BackgroundProcess } from '../harness/exec.js';
import { parseProm } from '../harness/prom.js';
import { scrapeMetrics } from '../harness/wait.js';
import { WG_INTERFACES } from '../../common/constants.js';
import { loadAverage } from './env.js';
import {
  describeCounters,
  ROTATION_SCOPES,
  type RotationCounters,
  type RotationResult,
  type RotationSample,
  type RotationScope,
} from './rotation-report.js';

/** Options of {@link runRotation}. */
export interface RotationOptions {
  readonly rounds: number;
  readonly runId: string;
  readonly log: (line: string) => void;
}

const NODES = 5;
/** First port of the traffic; each rotation takes a fresh block (no reuse of a port in TIME_WAIT). */
const PORT_BASE = 7300;
const PORT_BLOCK = 20;
/** How often the drop counters are sampled during a rotation (links deleted meanwhile keep their last sample), ms. */
const COUNTER_SAMPLE_MS = 500;

/**
 * A process in every namespace of the cluster, through which its counters are read: each node's
 * mount-namespace holder, and a `sleep` started in each pod (pods have no process of their own
 * before the traffic starts and after it stops).
 */
class CounterProbes {
  private readonly sleepers = new Map<string, BackgroundProcess>();

  constructor(private readonly c: NsCluster) {
    for (const n of c.nodes)
      for (const p of n.pods) this.sleepers.set(p.name, c.spawnPod(p.name, ['sleep', 'infinity']));
  }

  list(): NsProbe[] {
    const out: NsProbe[] = [];
    for (const n of this.c.topology().nodes) {
      if (n.holderPid !== undefined) out.push({ name: n.name, netns: n.netns, pid: n.holderPid });
      for (const p of n.pods) {
        const s = this.sleepers.get(p.name);
        if (s !== undefined) out.push({ name: p.name, netns: p.netns, pid: s.pid });
      }
    }
    return out;
  }

  async stop(): Promise<void> {
    await Promise.all([...this.sleepers.values()].map((s) => s.stop({ signal: 'SIGTERM', timeoutMs: 3000 })));
  }
}

/** Every node's steering drops (`sealnet_bpf_packets_total{verdict="drop"}`) as "hook/reason" → packets; unscraped nodes left out. */
async function bpfDrops(c: NsCluster): Promise<Map<string, Map<string, number>>> {
  const out = new Map<string, Map<string, number>>();
  await Promise.all(
    c.nodeNames().map(async (n) => {
      try {
        const m = parseProm(await scrapeMetrics(c, n));
        const per = new Map<string, number>();
        for (const x of m.samples('sealnet_bpf_packets_total', { verdict: 'drop' })) {
          per.set(`${x.labels.hook}/${x.labels.reason}`, x.value);
        }
        out.set(n, per);
      } catch {
        // agent not answering: this node's steering drops stay unknown
      }
    }),
  );
  return out;
}

/** Increments between two {@link bpfDrops} readings, nonzero ones only; nodes read only once are named in `unread`. */
function bpfIncrements(
  a: Map<string, Map<string, number>>,
  b: Map<string, Map<string, number>>,
  nodes: readonly string[],
): { inc: Record<string, Record<string, number>>; unread: string[] } {
  const inc: Record<string, Record<string, number>> = {};
  const unread: string[] = [];
  for (const n of nodes) {
    const x = a.get(n);
    const y = b.get(n);
    if (x === undefined || y === undefined) {
      unread.push(n);
      continue;
    }
    for (const [k, v] of y) {
      const d = v - (x.get(k) ?? 0);
      if (d !== 0) (inc[n] ??= {})[k] = d;
    }
  }
  return { inc, unread };
}

/** Every drop a node namespace counted that a tunnelled datagram could have suffered (either direction). */
function nsDrops(e: NsIncrements | undefined): number {
  return (e?.udpInErrors ?? 0) + (e?.udpSndbufErrors ?? 0) + (e?.udpNoPorts ?? 0) + ipDropSum(e) + linkDropSum(e);
}

/**
 * Drops a pod namespace counted on one side of a stream: sending (SndbufErrors) or receiving
 * (InErrors, NoPorts); IPv4 and interface drops on both. A pod both sends one stream and
 * receives the other, so its receive errors belong to the stream it receives.
 */
function podDrops(e: NsIncrements | undefined, side: 'send' | 'receive'): number {
  const udp = side === 'send' ? (e?.udpSndbufErrors ?? 0) : (e?.udpInErrors ?? 0) + (e?.udpNoPorts ?? 0);
  return udp + ipDropSum(e) + linkDropSum(e);
}

/** The tracker's increments, with each UDP direction's loss beside the drops on its path. */
export function countersOf(
  t: DropTracker,
  bpf: { inc: Record<string, Record<string, number>>; unread: string[] },
  udp: readonly UdpTrafficResult[],
): RotationCounters {
  const ns = t.increments();
  const bpfSum = (n: string): number => Object.values(bpf.inc[n] ?? {}).reduce((a, v) => a + v, 0);
  return {
    ns,
    backlogDrops: t.backlogDrops(),
    unread: t.unreadable(),
    bpfDrops: bpf.inc,
    bpfUnread: bpf.unread,
    udp: udp.map((u) => {
      const path = [`${u.from}p1`, u.from, u.to, `${u.to}p1`];
      return {
        from: u.from,
        to: u.to,
        lost: u.lost,
        path,
        pathDrops:
          podDrops(ns[path[0]!], 'send') +
          nsDrops(ns[path[1]!]) +
          nsDrops(ns[path[2]!]) +
          podDrops(ns[path[3]!], 'receive'),
        pathBpfDrops: bpfSum(u.from) + bpfSum(u.to),
        receiverPodRcvbuf: ns[`${u.to}p1`]?.udpRcvbufErrors ?? 0,
      };
    }),
  };
}

/** Why a finished `sealctl keys rotate --wait --json` run does not count as a complete rotation, if it does not. */
function sealctlProblem(r: TimedRotation): string | undefined {
  const ctl = r.sealctl;
  const summary = parseRotateSummary(ctl.stdout);
  const lagging =
    summary?.results
      .filter((x) => !x.done || x.lagging.length > 0)
      .map(
        (x) =>
          `${x.node}${x.done ? '' : ' not done'}${x.lagging.length > 0 ? ` (peers never moved: ${x.lagging.join(', ')})` : ''}`,
      ) ?? [];
  if (ctl.code === 0 && summary?.ok === true && lagging.length === 0) return undefined;
  const why = lagging.length > 0 ? lagging.join('; ') : (ctl.stderr.trim() || ctl.stdout.trim()).split('\n').pop();
  return `sealctl exited ${ctl.code}: ${why ?? 'no output'}`;
}

/** Nodes that hold more than one of anything once the rotation is over, described. */
async function unclean(c: NsCluster): Promise<string[]> {
  const out: string[] = [];
  for (const n of c.nodeNames()) {
    const l = await leftovers(c, n);
    const slot = (await stateFile(c, n))?.activeSlot ?? 0;
    const problems = [
      ...(l.links.length === 1 && l.links[0] === WG_INTERFACES[slot] ? [] : [`links ${l.links.join(',') || 'none'}`]),
      ...(l.keyFiles.join(',') === 'wireguard.json,wireguard.key' ? [] : [`key files ${l.keyFiles.join(',')}`]),
      ...(l.mirrors.length === 0 ? [] : [`mirror on ${l.mirrors.join(',')}`]),
      ...(l.wireguardGo === 1 ? [] : [`${l.wireguardGo} wireguard-go`]),
      ...(l.rotating === undefined ? [] : [`still ${l.rotating}`]),
      ...(l.published ? [] : ['device key ≠ published key']),
    ];
    if (problems.length > 0) out.push(`${n}: ${problems.join(', ')}`);
  }
  return out;
}

/**
 * A stream's runs of lost datagrams, placed in time relative to the request: datagram n left at
 * about startedAt + n / pps (the sender paces itself; the receiver reports gaps by sequence).
 * The datagrams still unreceived at the end (stopped sender) are not gaps.
 */
function gapTimes(u: UdpTrafficResult, requestAt: number): { atMs: number; count: number }[] {
  return u.gaps.map((g) => ({ atMs: Math.round(u.startedAt + (1000 * g.from) / u.pps - requestAt), count: g.count }));
}

/** One rotation of `targets` under fresh traffic. */
async function oneRotation(
  c: NsCluster,
  o: { round: number; scope: RotationScope; targets: readonly string[]; port0: number; probes: CounterProbes },
): Promise<RotationSample> {
  const base = { round: o.round, scope: o.scope, targets: o.targets };
  let traffic: Traffic | undefined;
  let timed: TimedRotation | undefined;
  let at = Date.now();
  let load1 = loadAverage()[0];
  let error: string | undefined;
  let result: TrafficResult | undefined;
  const tracker = new DropTracker(() => o.probes.list());
  const bpf0 = await bpfDrops(c);
  tracker.sample();
  const sampler = setInterval(() => tracker.sample(), COUNTER_SAMPLE_MS);
  try {
    traffic = await startTraffic(c, newCanary(), o.port0);
    await sleep(1000);
    at = Date.now();
    load1 = loadAverage()[0];
    timed = await timeRotation(c, o.targets);
    error = sealctlProblem(timed);
    await sleep(1000);
  } catch (err) {
    error = err instanceof Error ? err.message : String(err);
  } finally {
    try {
      if (traffic !== undefined) result = await stopTraffic(traffic);
    } finally {
      clearInterval(sampler);
      tracker.sample();
    }
  }
  const bpf1 = await bpfDrops(c);
  return {
    ...base,
    at,
    load1,
    switchedMs: timed?.switchedMs,
    doneMs: timed?.doneMs,
    sealctlCode: timed?.sealctl.code,
    udp: (result?.udp ?? []).map((u) => ({
      from: u.from,
      to: u.to,
      sent: u.sent,
      lost: u.lost,
      duplicates: u.duplicates,
      reordered: u.reordered,
      longestGap: u.longestGap,
      gaps: gapTimes(u, at),
    })),
    tcpStreams: result?.tcpStreams ?? 0,
    tcpBreaks: result?.tcpBreaks ?? [],
    leftovers: await unclean(c).catch((e: unknown) => [
      `could not check: ${e instanceof Error ? e.message : String(e)}`,
    ]),
    error,
    counters: countersOf(tracker, bpfIncrements(bpf0, bpf1, c.nodeNames()), result?.udp ?? []),
  };
}

/** Runs the rotation benchmark; the cluster is destroyed on return or failure. */
export async function runRotation(o: RotationOptions): Promise<RotationResult> {
  const c = await NsCluster.create({
    nodes: NODES,
    podsPerNode: 1,
    prefix: `b${o.runId}rt`,
    agentConfig: ROTATION_AGENT_CONFIG,
    log: (l) => o.log(`  [rotation] ${l}`),
  });
  let probes: CounterProbes | undefined;
  try {
    await c.waitEncrypted({ timeoutMs: 60_000 });
    probes = new CounterProbes(c);
    const samples: RotationSample[] = [];
    let block = 0;
    for (let round = 0; round < o.rounds; round++) {
      for (const scope of ROTATION_SCOPES) {
        const targets = scope === 'one' ? ['n1'] : c.nodeNames();
        const s = await oneRotation(c, {
          round,
          scope,
          targets,
          port0: PORT_BASE + PORT_BLOCK * block++,
          probes,
        });
        samples.push(s);
        const udp = s.udp.map((u) => `${u.from}→${u.to} ${u.lost}/${u.sent}`).join(', ');
        o.log(
          `rotation: round ${round + 1}/${o.rounds}, ${scope === 'one' ? 'n1' : `all ${NODES}`}: ${s.error !== undefined ? `FAILED (${s.error}); ` : ''}switched ${s.switchedMs ?? '—'} ms, old keys gone ${s.doneMs ?? '—'} ms; UDP lost ${udp}; ${s.tcpBreaks.length} TCP breaks${s.leftovers.length > 0 ? `; left behind: ${s.leftovers.join('; ')}` : ''}`,
        );
        o.log(`rotation:   ${describeCounters(s.counters)}`);
        await sleep(500);
      }
    }
    return {
      nodes: NODES,
      rounds: o.rounds,
      graceSeconds: ROTATION_GRACE_S,
      peerTimeoutSeconds: ROTATION_PEER_TIMEOUT_S,
      udpPps: TRAFFIC_UDP_PPS,
      tcpBytesPerSecond: TRAFFIC_TCP_BPS,
      samples,
    };
  } finally {
    await probes?.stop();
    await c.destroy();
  }
}
