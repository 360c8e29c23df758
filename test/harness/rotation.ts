/**
 * Key rotation under load, shared by the rotation e2e test and the `rotation` benchmark: the
 * traffic that must survive a rotation (a long-lived TCP stream per node pair, a numbered UDP
 * stream each way between n1 and n2), `sealctl keys rotate` against the cluster's file store,
 * the timing of one rotation, and what a node holds once its rotations are over.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ANNOTATIONS } from '../../common/constants.js';
import { decodeRotationStatus, type RotationStatus } from '../../tunnels/plan/rotation-codec.js';
import type { NsCluster } from './cluster.js';
import { repoRoot } from './paths.js';
import { findProcesses } from './teardown.js';
import { startTcpStream, startUdpStream, type TcpStream, type UdpStream, type UdpStreamResult } from './traffic.js';
import { waitFor } from './wait.js';

const execFileAsync = promisify(execFile);

/** Grace period of the rotation scenarios under load (old key kept after the switch), seconds. */
export const ROTATION_GRACE_S = 5;
/**
 * How long a rotating node waits for a peer to stage its next key before moving on, seconds: the
 * agent's default (`rotation.peerTimeoutSeconds`, 15). It bounds a wait that ends as soon as every
 * peer answered, so it costs nothing while peers keep up; a shorter one (4 s until 2026-12-07)
 * named a busy peer "lagging" on a loaded 2-core CI host when all five nodes rotated twice in a
 * row (each peer then stages four other nodes' keys while creating its own second link: one
 * wireguard-go start alone measured 5.6-6.9 s under load), which is the timeout's doing, not a
 * fault of the peer.
 */
export const ROTATION_PEER_TIMEOUT_S = 15;
/** The agent configuration of the 5-node rotation cluster (e2e test and benchmark alike). */
export const ROTATION_AGENT_CONFIG = {
  rotation: { graceSeconds: ROTATION_GRACE_S, peerTimeoutSeconds: ROTATION_PEER_TIMEOUT_S },
} as const;

/** Exit code and output of one `sealctl` run. */
export interface SealctlResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** `sealctl --store file …` against the cluster's store; never throws on a non-zero exit. */
export async function sealctl(c: NsCluster, args: readonly string[]): Promise<SealctlResult> {
  return execFileAsync(
    process.execPath,
    [join(repoRoot(), 'bin', 'sealctl.js'), '--store', 'file', '--store-dir', c.storeDir, ...args],
    { timeout: 180_000 },
  ).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** A node's published rotation progress (`sealnet.io/rotation`), if any. */
export async function rotationStatus(c: NsCluster, node: string): Promise<RotationStatus | undefined> {
  const t = (await c.nodeDoc(node))?.metadata.annotations[ANNOTATIONS.rotation];
  return t === undefined ? undefined : decodeRotationStatus(t);
}

/** A node's published WireGuard public key. */
export async function publishedKey(c: NsCluster, node: string): Promise<string | undefined> {
  return (await c.nodeDoc(node))?.metadata.annotations[ANNOTATIONS.wireguardPublicKey];
}

/** Every node's published key, for "it changed" checks. */
export async function publishedKeys(c: NsCluster): Promise<Record<string, string | undefined>> {
  const out: Record<string, string | undefined> = {};
  for (const n of c.nodeNames()) out[n] = await publishedKey(c, n);
  return out;
}

/** The parts of an agent's rotation state file the tests read (public data). */
export interface RotationStateFile {
  readonly activeSlot: number;
  readonly rotation?: { readonly phase: string; readonly graceUntil?: string };
}

/** The rotation state file of a node's agent, or undefined when absent or unreadable. */
export async function stateFile(c: NsCluster, node: string): Promise<RotationStateFile | undefined> {
  try {
    return JSON.parse(await readFile(join(c.runDir, node, 'state', 'rotation.json'), 'utf8')) as RotationStateFile;
  } catch {
    return undefined;
  }
}

/** A UDP stream with the nodes at its ends. */
export interface DirectedUdpStream {
  readonly from: string;
  readonly to: string;
  readonly stream: UdpStream;
}

/** Traffic across every node pair: one TCP stream per pair, UDP both ways between n1 and n2. */
export interface Traffic {
  readonly tcp: readonly TcpStream[];
  readonly udp: readonly DirectedUdpStream[];
}

/** Rate of each UDP stream of {@link startTraffic}, datagrams per second. */
export const TRAFFIC_UDP_PPS = 500;
/** Rate of each TCP stream of {@link startTraffic}, bytes per second. */
export const TRAFFIC_TCP_BPS = 64_000;

/**
 * Starts {@link Traffic} on ports from `port0` up (one per stream: nodes × (nodes − 1) / 2 + 2);
 * every UDP datagram carries `canary`.
 */
export async function startTraffic(c: NsCluster, canary: string, port0: number): Promise<Traffic> {
  const nodes = c.nodes;
  const tcp: TcpStream[] = [];
  let port = port0;
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const [a, b] = [nodes[i]!, nodes[j]!];
      tcp.push(
        await startTcpStream(c, {
          from: a.pods[0]!.name,
          to: b.pods[0]!.name,
          port: port++,
          rateBps: TRAFFIC_TCP_BPS,
          recordSize: 1024,
          name: `tcp-${a.name}-${b.name}-${port}`,
        }),
      );
    }
  }
  const udp: DirectedUdpStream[] = [];
  for (const [from, to] of [
    ['n1', 'n2'],
    ['n2', 'n1'],
  ] as const) {
    const stream = await startUdpStream(c, {
      from: `${from}p1`,
      to: `${to}p1`,
      port: port++,
      pps: TRAFFIC_UDP_PPS,
      canary,
      name: `udp-${from}-${to}-${port}`,
    });
    udp.push({ from, to, stream });
  }
  return { tcp, udp };
}

/** One UDP stream's counts once stopped, with its name and ends. */
export type UdpTrafficResult = UdpStreamResult & { readonly name: string; readonly from: string; readonly to: string };

/** What the traffic of {@link startTraffic} went through. */
export interface TrafficResult {
  readonly tcpStreams: number;
  /** One line per problem: a break on either end, a gap, a reconnect, nothing received. */
  readonly tcpBreaks: string[];
  readonly udp: UdpTrafficResult[];
}

/** Stops every stream and collects the verdicts. */
export async function stopTraffic(t: Traffic): Promise<TrafficResult> {
  const tcpBreaks: string[] = [];
  for (const s of t.tcp) {
    // Server-side breaks are judged before the client is stopped: a client that exits with an
    // unread acknowledgement in its socket makes its kernel send a RST, which is the test
    // ending, not a broken connection.
    const before = await s.status();
    const r = await s.stop();
    const problems = [
      ...(r.client?.breaks ?? []).map((b) => `client break ${b.error}`),
      ...(before.server?.breaks ?? []).map((b) => `server break ${b.error}`),
      ...(r.server?.gaps ?? []).map((g) => `gap at ${g.expected}`),
      ...(r.client?.connections === 1 ? [] : [`${r.client?.connections ?? 0} connections`]),
      ...((r.server?.recordsReceived ?? 0) > 0 ? [] : ['nothing received']),
    ];
    for (const p of problems) tcpBreaks.push(`${s.name}: ${p}`);
  }
  const udp: UdpTrafficResult[] = [];
  for (const u of t.udp) {
    const r = await u.stream.stop();
    if (r !== undefined) udp.push({ ...r, name: u.stream.name, from: u.from, to: u.to });
  }
  return { tcpStreams: t.tcp.length, tcpBreaks, udp };
}

/** One line on a {@link TrafficResult}: TCP breaks and each UDP stream's loss. */
export function describeTraffic(r: TrafficResult): string {
  const udp = r.udp
    .map(
      (u) =>
        `${u.name.replace(/-\d+$/, '')} lost ${u.lost}/${u.sent} (dup ${u.duplicates}, reordered ${u.reordered}, longest gap ${u.longestGap})`,
    )
    .join('; ');
  return `${r.tcpStreams} TCP streams, ${r.tcpBreaks.length} broken; UDP ${udp}`;
}

/** One timed rotation (see {@link timeRotation}). */
export interface TimedRotation {
  /** Request → every target published its new key (every pair uses it from there on). */
  readonly switchedMs: number;
  /** Request → `sealctl --wait` returned: old keys erased, old links gone, every peer moved. */
  readonly doneMs: number;
  /** The `sealctl keys rotate … --wait --json` run itself. */
  readonly sealctl: SealctlResult;
}

/**
 * Requests a rotation of `targets` (`--all` when that is every node) with `sealctl keys rotate
 * --wait`, and times it from the request: until every target publishes a new key (polled every
 * 20 ms) and until sealctl returns. Throws only when no new key appears within `timeoutMs`;
 * the caller judges sealctl's exit code and output.
 */
export async function timeRotation(
  c: NsCluster,
  targets: readonly string[],
  opts: { timeoutMs?: number } = {},
): Promise<TimedRotation> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const before = await publishedKeys(c);
  const t0 = Date.now();
  const which = targets.length === c.nodeNames().length ? ['--all'] : targets.flatMap((t) => ['--node', t]);
  const ctl = sealctl(c, [
    'keys',
    'rotate',
    ...which,
    '--wait',
    '--timeout',
    String(Math.ceil((2 * timeoutMs) / 1000)),
    '--json',
  ]);
  const switchedMs = await waitFor(
    'every target to publish its new key',
    async () => {
      const now = await publishedKeys(c);
      return targets.every((t) => now[t] !== before[t]) ? Date.now() - t0 : undefined;
    },
    { timeoutMs, pollMs: 20, failFast: c.agentGuard() },
  ).catch(async (err: unknown) => {
    await ctl;
    throw err;
  });
  const r = await ctl;
  return { switchedMs, doneMs: Date.now() - t0, sealctl: r };
}

/** The last line of `sealctl keys rotate --json`: the outcome per target. */
export interface RotateSummary {
  readonly ok: boolean;
  readonly results: readonly { readonly node: string; readonly done: boolean; readonly lagging: readonly string[] }[];
}

/** Parses the JSON summary sealctl prints last; undefined when there is none. */
export function parseRotateSummary(stdout: string): RotateSummary | undefined {
  try {
    return JSON.parse(stdout.trim().split('\n').pop() ?? '') as RotateSummary;
  } catch {
    return undefined;
  }
}

/** What a node holds in the kernel and on disk regarding its keys. */
export interface Leftovers {
  readonly links: string[];
  readonly keyFiles: string[];
  readonly mirrors: string[];
  readonly wireguardGo: number;
  readonly rotating: string | undefined;
  readonly published: boolean;
}

/** What is left on a node once its rotations are over (clean: exactly one of everything). */
export async function leftovers(c: NsCluster, node: string): Promise<Leftovers> {
  const links = (await c.execNode(node, ['ip', '-o', 'link', 'show'])).stdout
    .split('\n')
    .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined && n.startsWith('sealwg'));
  const mirrors: string[] = [];
  for (const l of links) {
    const f = (await c.execNode(node, ['tc', 'filter', 'show', 'dev', l, 'egress'], { check: false })).stdout;
    if (f.includes('mirred')) mirrors.push(l);
  }
  const keyFiles = (await readdir(join(c.runDir, node, 'state', 'keys'))).sort();
  const st = await stateFile(c, node);
  const dump = await c.wgDump(node);
  return {
    links,
    keyFiles,
    mirrors,
    wireguardGo: wireguardGoCount(c, node),
    rotating: st?.rotation?.phase,
    published: dump?.publicKey === (await publishedKey(c, node)),
  };
}

/** wireguard-go daemons in a node's network namespace. */
export function wireguardGoCount(c: NsCluster, node: string): number {
  let n = 0;
  for (const p of findProcesses([c.node(node).netns])) {
    try {
      if (readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').includes('wireguard-go')) n++;
    } catch {
      // exited meanwhile
    }
  }
  return n;
}
