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
import { WG_INTERFACES } from '../../common/constants.js';
import { loadAverage } from './env.js';
import { ROTATION_SCOPES, type RotationResult, type RotationSample, type RotationScope } from './rotation-report.js';

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
  o: { round: number; scope: RotationScope; targets: readonly string[]; port0: number },
): Promise<RotationSample> {
  const base = { round: o.round, scope: o.scope, targets: o.targets };
  let traffic: Traffic | undefined;
  let timed: TimedRotation | undefined;
  let at = Date.now();
  let load1 = loadAverage()[0];
  let error: string | undefined;
  let result: TrafficResult | undefined;
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
    if (traffic !== undefined) result = await stopTraffic(traffic);
  }
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
  try {
    await c.waitEncrypted({ timeoutMs: 60_000 });
    const samples: RotationSample[] = [];
    let block = 0;
    for (let round = 0; round < o.rounds; round++) {
      for (const scope of ROTATION_SCOPES) {
        const targets = scope === 'one' ? ['n1'] : c.nodeNames();
        const s = await oneRotation(c, { round, scope, targets, port0: PORT_BASE + PORT_BLOCK * block++ });
        samples.push(s);
        const udp = s.udp.map((u) => `${u.from}→${u.to} ${u.lost}/${u.sent}`).join(', ');
        o.log(
          `rotation: round ${round + 1}/${o.rounds}, ${scope === 'one' ? 'n1' : `all ${NODES}`}: ${s.error !== undefined ? `FAILED (${s.error}); ` : ''}switched ${s.switchedMs ?? '—'} ms, old keys gone ${s.doneMs ?? '—'} ms; UDP lost ${udp}; ${s.tcpBreaks.length} TCP breaks${s.leftovers.length > 0 ? `; left behind: ${s.leftovers.join('; ')}` : ''}`,
        );
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
    await c.destroy();
  }
}
