/**
 * Is the namespace cluster encrypted? Per node pair: does each side hold a ready tunnel to
 * the other (WireGuard: a peer with the other node's published key and a completed
 * handshake; IPsec: SAs both ways), and does pod-to-pod traffic get through.
 */
import { readFileSync } from 'node:fs';
import { ANNOTATIONS } from '../../common/constants.js';
import type { NsCluster } from './cluster.js';
import { ExecTimeoutError, mapLimit, sleep } from './exec.js';
import { decodeSummary } from '../../tunnels/status/summary.js';
import { raceFailFast, trackWait, waitFor, WaitAbortedError } from './wait.js';
import type { EncryptionStatus, NodeInfo, PairStatus, PodInfo } from './types.js';

/**
 * Tunnel state of every node pair; with `probe`, also one ping each way between the first
 * pods of the two nodes (which also triggers WireGuard handshakes).
 */
export async function encryptionStatus(c: NsCluster, opts: { probe?: boolean } = {}): Promise<EncryptionStatus> {
  const nodes = c.nodes;
  const pairs: [NodeInfo, NodeInfo][] = [];
  for (let x = 0; x < nodes.length; x++)
    for (let y = x + 1; y < nodes.length; y++) pairs.push([nodes[x] as NodeInfo, nodes[y] as NodeInfo]);
  const pingOk = new Map<string, boolean>();
  if (opts.probe === true) {
    const ordered = pairs
      .flatMap(
        ([a, b]) =>
          [
            [a, b],
            [b, a],
          ] as const,
      )
      .filter(([a, b]) => a.pods.length > 0 && b.pods.length > 0);
    await mapLimit(
      ordered,
      async ([a, b]) => {
        // A ping the harness had to kill (a loaded machine, a TCG guest) is a probe that did
        // not succeed yet: the caller polls again until its own deadline.
        const r = await c
          .ping((a.pods[0] as PodInfo).name, (b.pods[0] as PodInfo).name, { count: 1, waitS: 1, df: false })
          .catch((e: unknown) => {
            if (e instanceof ExecTimeoutError) return undefined;
            throw e;
          });
        pingOk.set(`${a.name}>${b.name}`, r !== undefined && r.received > 0);
      },
      { limit: 8 },
    );
  }
  const tunnels = await tunnelMatrix(c, nodes);
  const missing: string[] = [];
  const result = pairs.map(([a, b]): PairStatus => {
    const st: PairStatus = {
      a: a.name,
      b: b.name,
      tunnelAB: tunnels.get(`${a.name}>${b.name}`) ?? false,
      tunnelBA: tunnels.get(`${b.name}>${a.name}`) ?? false,
      pingAB: pingOk.get(`${a.name}>${b.name}`),
      pingBA: pingOk.get(`${b.name}>${a.name}`),
    };
    if (!st.tunnelAB) missing.push(`${a.name} has no ${c.mode} tunnel to ${b.name}`);
    if (!st.tunnelBA) missing.push(`${b.name} has no ${c.mode} tunnel to ${a.name}`);
    if (st.pingAB === false) missing.push(`ping ${a.name} → ${b.name} failed`);
    if (st.pingBA === false) missing.push(`ping ${b.name} → ${a.name} failed`);
    return st;
  });
  return { pairs: result, ok: missing.length === 0, missing };
}

/**
 * Polls {@link encryptionStatus} (with probes) until it is ok; throws with what is missing.
 * Unless `failFast` is false, it ends at once, with the agent's last log lines, when an agent
 * exits without the harness asking (an agent that refuses to start: no ESP, a bad config).
 */
export async function waitEncrypted(
  c: NsCluster,
  opts: { timeoutMs?: number; pollMs?: number; failFast?: boolean } = {},
): Promise<EncryptionStatus> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const t0 = Date.now();
  const deadline = t0 + timeoutMs;
  const what = `cluster ${c.prefix} to be encrypted`;
  const guard = opts.failFast === false || !c.encryption ? undefined : c.agentGuard();
  const done = trackWait(what, deadline);
  let last: EncryptionStatus | undefined;
  try {
    while (Date.now() < deadline) {
      last = await raceFailFast(encryptionStatus(c, { probe: true }), guard, what, t0);
      if (last.ok) return last;
      await raceFailFast(sleep(opts.pollMs ?? 500), guard, what, t0);
    }
  } catch (e) {
    if (e instanceof WaitAbortedError)
      throw new Error(
        `cluster ${c.prefix} not encrypted: ${e.message}${last === undefined ? '' : `; still missing: ${last.missing.join('; ')}`}`,
      );
    throw e;
  } finally {
    done();
  }
  const dead = c.nodeNames().filter((n) => c.encryption && !c.agentStatus(n).running);
  const agents =
    dead.length > 0
      ? `; agents not running: ${dead.map((n) => `${n} (last log lines: ${c.agentLogTail(n, 3).join(' | ')})`).join(', ')}; logs in ${c.runDir}/<node>/agent.log`
      : '';
  throw new Error(
    `cluster ${c.prefix} not encrypted after ${timeoutMs} ms: ${last?.missing.join('; ') ?? 'no status'}${agents}`,
  );
}

/** For each ordered pair "a>b": does a have a ready tunnel to b? */
async function tunnelMatrix(c: NsCluster, nodes: readonly NodeInfo[]): Promise<Map<string, boolean>> {
  const m = new Map<string, boolean>();
  if (!c.encryption) return m;
  if (c.mode === 'ipsec') {
    await Promise.all(
      nodes.map(async (a) => {
        const r = await c.execNode(a.name, ['ip', '-o', 'xfrm', 'state', 'list'], { check: false });
        for (const b of nodes)
          if (b !== a)
            m.set(
              `${a.name}>${b.name}`,
              r.stdout.includes(`src ${a.address} dst ${b.address}`) &&
                r.stdout.includes(`src ${b.address} dst ${a.address}`),
            );
      }),
    );
    return m;
  }
  const keys = new Map<string, string | undefined>();
  await Promise.all(
    nodes.map(async (n) =>
      keys.set(n.name, (await c.nodeDoc(n.name))?.metadata.annotations[ANNOTATIONS.wireguardPublicKey]),
    ),
  );
  await Promise.all(
    nodes.map(async (a) => {
      const dump = await c.wgDump(a.name).catch(() => undefined);
      for (const b of nodes) {
        if (b === a) continue;
        const key = keys.get(b.name);
        const peer = key === undefined ? undefined : dump?.peers.find((p) => p.publicKey === key);
        m.set(`${a.name}>${b.name}`, peer !== undefined && peer.latestHandshake > 0);
      }
    }),
  );
  return m;
}

/**
 * What one node's published status summary (`sealnet.io/status`) says, in one line, or undefined
 * when it says every other node of the cluster is encrypted and the agent is ready: what an audit
 * run right now would read.
 */
export async function statusNotYetPublished(c: NsCluster, node: string): Promise<string | undefined> {
  const text = (await c.nodeDoc(node))?.metadata.annotations[ANNOTATIONS.status];
  if (text === undefined) return `${node} publishes no ${ANNOTATIONS.status}`;
  const d = decodeSummary(text);
  if (!d.ok) return `${node}'s ${ANNOTATIONS.status} does not decode: ${d.error}`;
  const s = d.summary;
  const peers = c.nodes.length - 1;
  if (!s.ready || s.counts.encrypted !== peers)
    return `${node}'s published status says ${s.ready ? 'ready' : 'not ready'}, ${s.counts.encrypted} of ${peers} peers encrypted`;
  return undefined;
}

/**
 * Waits until every node has published a status summary that says it is ready with every other
 * node encrypted (after {@link waitEncrypted}: the tunnels carry traffic; after this, a `sealctl
 * audit` reads the same). Ends at once when an agent exits. Throws naming what each node still
 * publishes.
 */
export async function waitStatusPublished(c: NsCluster, opts: { timeoutMs?: number } = {}): Promise<void> {
  let pending: string[] = [];
  try {
    await waitFor(
      `every node of ${c.prefix} to publish an all-encrypted status`,
      async () => {
        pending = (await Promise.all(c.nodeNames().map((n) => statusNotYetPublished(c, n)))).filter(
          (x): x is string => x !== undefined,
        );
        return pending.length === 0 ? true : undefined;
      },
      { timeoutMs: opts.timeoutMs ?? 60_000, pollMs: 100, ...(c.encryption ? { failFast: c.agentGuard() } : {}) },
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}${pending.length > 0 ? `: ${pending.join('; ')}` : ''}`);
  }
}
