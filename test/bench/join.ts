/**
 * `join`: a sealnet cluster grows one node at a time. For each join it measures, from the
 * moment the new node's key appears in the node store:
 *  - until every existing node's WireGuard device holds the new peer with its pod CIDR (read
 *    over the UAPI socket, see uapi.ts), and
 *  - until every existing pod gets its first echo reply from the new node's pod.
 *
 * The harness builds a flannel-host-gw-like pod network, so without sealnet's fail-closed
 * datapath a ping would succeed in plaintext before any tunnel exists. To time the *encrypted*
 * path, the bench deletes the host-gw routes between the newcomer and the existing nodes before
 * its agent starts: from then on only the tunnel can carry their pod traffic.
 */
import { join as joinPath } from 'node:path';
import { readFile } from 'node:fs/promises';
import { NsCluster } from '../harness/cluster.js';
import { sleep, type BackgroundProcess } from '../harness/exec.js';
import type { NodeInfo, PodInfo } from '../harness/types.js';
import { ANNOTATIONS, WG_INTERFACE } from '../../common/constants.js';
import type { JoinResult, JoinSample } from './types.js';
import { uapiPeers, uapiSocketVia, type UapiPeer } from './uapi.js';

/** Options of {@link runJoin}. */
export interface JoinOptions {
  readonly initialNodes: number;
  readonly joins: number;
  readonly runId: string;
  readonly log: (line: string) => void;
  /** Per-join limit for every wait (default 30 s). */
  readonly timeoutMs?: number;
}

const PING_INTERVAL_MS = 10;
const PEER_POLL_MS = 10;

/** Parses the first reply of `ping -D` output: its receive time in Unix ms. */
export function firstReplyAt(text: string): number | undefined {
  const m = /^\[(\d+\.\d+)\] \d+ bytes from /m.exec(text);
  return m === null ? undefined : Math.round(Number(m[1]) * 1000);
}

async function until<T>(what: string, deadline: number, fn: () => Promise<T | undefined>, pollMs: number): Promise<T> {
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(pollMs);
  }
}

/** A node's sealwg0 peers, read over UAPI (what `wg show dump` prints, without spawning it). */
function peersOf(c: NsCluster, node: string): () => Promise<UapiPeer[]> {
  const holder = c.topology().nodes.find((n) => n.name === node)?.holderPid;
  if (holder === undefined) throw new Error(`node ${node} has no mount-namespace holder`);
  const path = uapiSocketVia(holder, WG_INTERFACE);
  return () => uapiPeers(path).catch(() => []);
}

/**
 * Polls a node's peers until it has `key` with `cidr`. Returns the time of the first positive
 * look (an upper bound) and the resolution: how long before it the last negative look began.
 */
async function programmedOn(
  c: NsCluster,
  node: string,
  want: { key: string; cidr: string; since: number; deadline: number },
): Promise<{ ms: number; resolutionMs: number }> {
  const peers = peersOf(c, node);
  let lastLook = want.since;
  return until(
    `${node} to program the new peer`,
    want.deadline,
    async () => {
      const start = Date.now();
      const list = await peers();
      const now = Date.now();
      if (list.some((p) => p.publicKey === want.key && p.allowedIPs.includes(want.cidr)))
        return { ms: now - want.since, resolutionMs: now - lastLook };
      lastLook = start;
      return undefined;
    },
    PEER_POLL_MS,
  );
}

/** Removes the host-gw routes between the newcomer and every existing node (both ways). */
async function tunnelOnly(c: NsCluster, fresh: NodeInfo, existing: readonly NodeInfo[]): Promise<void> {
  await Promise.all(existing.map((n) => c.execNode(n.name, ['ip', 'route', 'del', fresh.podCIDR])));
  await c.execNode(fresh.name, ['ip', '-batch', '-'], {
    input: `${existing.map((n) => `route del ${n.podCIDR}`).join('\n')}\n`,
  });
}

async function oneJoin(c: NsCluster, o: JoinOptions): Promise<JoinSample> {
  const existing = c.nodes;
  const fresh = await c.addNode({ pods: 1, startAgent: false });
  const deadline = Date.now() + (o.timeoutMs ?? 30_000);
  await tunnelOnly(c, fresh, existing);
  const target = (fresh.pods[0] as PodInfo).name;
  const dir = await c.workDir('join');
  const pingers: { pod: string; log: string; proc: BackgroundProcess }[] = existing.map((n) => {
    const pod = (n.pods[0] as PodInfo).name;
    const log = joinPath(dir, `${fresh.name}-from-${pod}.log`);
    const proc = c.spawnPod(pod, ['ping', '-n', '-D', '-i', String(PING_INTERVAL_MS / 1000), c.resolve(target)], {
      logFile: log,
    });
    return { pod, log, proc };
  });
  const base = { node: fresh.name, nodesBefore: existing.length };
  try {
    const agentStart = Date.now();
    await c.startAgent(fresh.name);
    const key = await until(
      'the new key in the store',
      deadline,
      async () => {
        const k = (await c.nodeDoc(fresh.name))?.metadata.annotations[ANNOTATIONS.wireguardPublicKey];
        return k === undefined ? undefined : { key: k, at: Date.now() };
      },
      5,
    );
    const existingKeys = await Promise.all(
      existing.map(async (n) => (await c.nodeDoc(n.name))?.metadata.annotations[ANNOTATIONS.wireguardPublicKey]),
    );
    const freshPeers = peersOf(c, fresh.name);
    const [programmed, newNode, pings] = await Promise.all([
      Promise.all(
        existing.map(
          async (n) =>
            [
              n.name,
              await programmedOn(c, n.name, { key: key.key, cidr: fresh.podCIDR, since: key.at, deadline }),
            ] as const,
        ),
      ),
      until(
        `${fresh.name} to program every existing node`,
        deadline,
        async () => {
          const list = await freshPeers();
          const ok = existingKeys.every((k) => list.some((p) => p.publicKey === k));
          return ok ? Date.now() - key.at : undefined;
        },
        PEER_POLL_MS,
      ),
      Promise.all(
        pingers.map(
          async (p) =>
            [
              p.pod,
              await until(
                `a reply from ${target} to ${p.pod}`,
                deadline,
                async () => firstReplyAt(await readFile(p.log, 'utf8').catch(() => '')),
                20,
              ),
            ] as const,
        ),
      ),
    ]);
    return {
      ...base,
      agentStartToKeyMs: key.at - agentStart,
      programmedMs: Object.fromEntries(programmed.map(([n, r]) => [n, r.ms])),
      programmedResolutionMs: Object.fromEntries(programmed.map(([n, r]) => [n, r.resolutionMs])),
      newNodeProgrammedMs: newNode,
      firstPingMs: Object.fromEntries(pings.map(([pod, at]) => [pod, at - key.at])),
      error: undefined,
    };
  } catch (err) {
    return {
      ...base,
      agentStartToKeyMs: undefined,
      programmedMs: {},
      programmedResolutionMs: {},
      newNodeProgrammedMs: undefined,
      firstPingMs: {},
      error: err instanceof Error ? err.message : String(err),
    };
  } finally {
    await Promise.all(pingers.map((p) => p.proc.stop({ signal: 'SIGINT', timeoutMs: 2000 })));
  }
}

/** Runs the join benchmark; the cluster is destroyed on return or failure. */
export async function runJoin(o: JoinOptions): Promise<JoinResult> {
  const c = await NsCluster.create({
    nodes: o.initialNodes,
    podsPerNode: 1,
    prefix: `b${o.runId}jn`,
    log: (l) => o.log(`  [join] ${l}`),
  });
  try {
    await c.waitEncrypted({ timeoutMs: 60_000 });
    const joins: JoinSample[] = [];
    for (let j = 0; j < o.joins; j++) {
      const s = await oneJoin(c, o);
      joins.push(s);
      const prog = Math.max(...Object.values(s.programmedMs));
      const ping = Math.max(...Object.values(s.firstPingMs));
      o.log(
        `join: ${s.node} (${s.nodesBefore} → ${s.nodesBefore + 1} nodes): ${s.error ?? `programmed everywhere ${prog} ms, first ping from every pod ${ping} ms after its key appeared`}`,
      );
      await sleep(500);
    }
    return { initialNodes: o.initialNodes, pingIntervalMs: PING_INTERVAL_MS, joins };
  } finally {
    await c.destroy();
  }
}
