/**
 * `scale`: the control plane with one real agent and N simulated nodes in the node store
 * (`file` and a real API server), N = 1,000, 5,000, 10,000 (quick: 100, 1,000). The simulated
 * Nodes are kubelet-sized by default (scale-kubelet.ts: ~50 images, conditions, node info,
 * labels, managed fields from server-side apply) and carry a status annotation (`summary`,
 * `legacy` or `none`). Measures:
 *
 * - convergence: agent start → every peer, route and steering entry programmed (the agent's
 *   "kernel state updated" log times, confirmed by reading the peers over UAPI and every pod
 *   CIDR in the kernel's steering map with bpftool), peak RSS and
 *   CPU seconds of the agent, kernel operations (`sealnet_kernel_operations_total`);
 * - under kubelet churn (every Node's status once per 5 minutes, spread; scale-churn.ts): the
 *   agent's CPU per second, its peak RSS, the bytes the API server sent it per minute (counted
 *   at the relay's socket) and × N for all agents, its `rchar`, and the passes the churn caused;
 * - at the largest N, with the churn still running: single joins, key changes and leaves,
 *   store write → applied, and the kernel operations each one cost;
 * - rotation of every simulated key (staging announcement, then the switch), at the sizes asked;
 * - at the largest N: a restarted agent resyncing every few seconds with nothing changed.
 *
 * Every simulated node is only a Node object (no namespace, no agent), so no handshake with a
 * simulated next key ever completes: the `moving` phase (pod CIDRs move to the next key after
 * its handshake) cannot be simulated, and the switch is timed from `grace` (the next key
 * published as the key), which moves every pod CIDR and removes every old peer in one step.
 */
import { readFileSync } from 'node:fs';
import { loadAverage } from './env.js';
import { sleep } from '../harness/exec.js';
import { Churn } from './scale-churn.js';
import { STARTUP_WINDOW_MS } from '../../tunnels/status/service.js';
import type { NodeShape, StatusShape } from './scale-kubelet.js';
import { Watchdog } from './scale-wait.js';
import { AGENT_NODE, fileEnv, kubeEnv, type ScaleBench, type ScaleEnv } from './scale-env.js';
import {
  agentCounters,
  AgentLog,
  diffOps,
  peerReader,
  sampleProcesses,
  steeringKeys,
  sumOps,
  type LogLine,
} from './scale-probe.js';
import { encodeKey } from '../../routing/bpf/layout.js';
import { newPublicKey, simNode, type SimNode } from './scale-sim.js';
import type {
  ChangeKind,
  ScaleChange,
  ScaleChanges,
  ScaleChurn,
  ScaleConvergence,
  ScaleResult,
  ScaleResync,
  ScaleRotation,
  ScaleStore,
} from './types.js';
import type { UapiPeer } from './uapi.js';

/** Options of {@link runScale}. */
export interface ScaleOptions {
  readonly sizes: readonly number[];
  readonly stores: readonly ScaleStore[];
  readonly changesPerKind: number;
  readonly rotationSizes: readonly number[];
  readonly resyncIntervalSeconds: number;
  readonly runId: string;
  readonly log: (line: string) => void;
  /** Simulated Node objects: kubelet-sized (default) or the old toy ones. */
  readonly nodeShape?: NodeShape;
  /** Status annotation on every simulated Node (default `summary`). */
  readonly statusShape?: StatusShape;
  /** Measuring window under kubelet churn, seconds (0: no churn; default 60). */
  readonly churnSeconds?: number;
  /** Also measure churn after the agent's startup window (default true). */
  readonly churnSteady?: boolean;
  /** Run the no-op resync phase at the largest N (default true). */
  readonly resync?: boolean;
}

const CONVERGE_TIMEOUT_MS = 15 * 60_000;
const CHANGE_TIMEOUT_MS = 60_000;

/** One agent run: the log tail, the peers reader and a liveness check shared by the phases. */
interface Probe {
  readonly b: ScaleBench;
  readonly log: AgentLog;
  readonly peers: () => Promise<UapiPeer[]>;
}

function msg(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The line of a log that says why the agent ended (read from its last 64 KiB), clipped: V8's
 * `FATAL ERROR` line when the tail has one (a heap-limit abort prints a stack trace after it),
 * else the last non-empty line; undefined if none.
 */
export function lastLine(path: string, max = 400): string | undefined {
  let text: string;
  try {
    const buf = readFileSync(path);
    text = buf.subarray(Math.max(0, buf.length - 65536)).toString('utf8');
  } catch {
    return undefined;
  }
  const lines = text.trimEnd().split('\n');
  const line = (lines.filter((l) => l.includes('FATAL ERROR')).pop() ?? lines.pop())?.trim();
  if (line === undefined || line === '') return undefined;
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

/** Thrown when the agent exited during a phase. */
class AgentExited extends Error {
  constructor(
    readonly exit: string,
    readonly lastLogLine: string | undefined,
    logPath: string,
  ) {
    super(`the agent exited (${exit}); its last log line: ${lastLogLine ?? '(none)'}; see ${logPath}`);
  }
}

/** Throws when the agent is not running (so a crash ends a phase at once, not at its timeout). */
function alive(p: Probe): void {
  const st = p.b.c.agentStatus(AGENT_NODE);
  if (!st.running) {
    const path = p.b.c.agentLogPath(AGENT_NODE);
    throw new AgentExited(JSON.stringify(st.lastExit), lastLine(path), path);
  }
}

/** The agent's `rchar` from /proc/<pid>/io: bytes it read by any read call (sockets and files). */
function readChars(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /^rchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

/** The first pass at or after `since` by which `op` summed to at least `n`. */
function passReaching(log: AgentLog, since: number, op: string, n: number): LogLine | undefined {
  let sum = 0;
  for (const l of log.passes(since)) {
    sum += l.ops?.[op] ?? 0;
    if (sum >= n) return l;
  }
  return undefined;
}

/** Whether the peers hold every `key → cidr` pair, and (if given) none of `gone`. */
function holds(
  peers: readonly UapiPeer[],
  want: ReadonlyMap<string, string>,
  gone: ReadonlySet<string> = new Set(),
): boolean {
  const byKey = new Map(peers.map((p) => [p.publicKey, p]));
  for (const [key, cidr] of want) if (!(byKey.get(key)?.allowedIPs.includes(cidr) ?? false)) return false;
  for (const key of gone) if (byKey.has(key)) return false;
  return true;
}

/** Waits for a pass that reached `op ≥ n`, then for a UAPI read that satisfies `check`; returns both times. */
async function appliedAndConfirmed(
  p: Probe,
  o: {
    what: string;
    since: number;
    op: string;
    n: number;
    check: (peers: UapiPeer[]) => boolean;
    timeoutMs: number;
    pollMs: number;
  },
): Promise<{ line: LogLine; confirmedAt: number }> {
  const line = await p.log.until(
    o.what,
    () => {
      alive(p);
      return passReaching(p.log, o.since, o.op, o.n);
    },
    { timeoutMs: o.timeoutMs, pollMs: o.pollMs },
  );
  const confirmedAt = await p.log.until(
    `${o.what} (confirmed over UAPI)`,
    async () => (o.check(await p.peers()) ? Date.now() : undefined),
    { timeoutMs: o.timeoutMs, pollMs: 200 },
  );
  return { line, confirmedAt };
}

async function convergence(
  p: Probe,
  store: ScaleStore,
  sims: readonly SimNode[],
  populateMs: number,
): Promise<ScaleConvergence> {
  const n = sims.length;
  const load1 = loadAverage()[0];
  const t0 = Date.now();
  await p.b.startAgent();
  const synced = await p.log.until(
    'node store synced',
    () => {
      alive(p);
      return p.log.lines.find((l) => l.msg === 'node store synced' && l.time >= t0);
    },
    { timeoutMs: CONVERGE_TIMEOUT_MS, pollMs: 50 },
  );
  const want = new Map(sims.map((s) => [s.key, s.podCIDR]));
  const { line, confirmedAt } = await appliedAndConfirmed(p, {
    what: `all ${n} peers set`,
    since: t0,
    op: 'peer_set',
    n,
    check: (ps) => holds(ps, want),
    timeoutMs: CONVERGE_TIMEOUT_MS,
    pollMs: 50,
  });
  const lastAt = await p.log.quiet(2000, 120_000);
  // Before the store synced the agent waits for its own Node ("step self"); after it, nothing may fail.
  p.log.assertNoFailures(synced.time, 'after the node store synced');
  // Every pod CIDR in the kernel's steering map, read with bpftool (the agent's log and metrics
  // are its own account; a silently missing entry would make traffic to that node fail closed).
  const wantKeys = sims.map((s) => encodeKey(s.podCIDR).toString('hex'));
  let steering = { held: 0, missing: wantKeys.length };
  const steeringAt = await p.log
    .until(
      `all ${n} pod CIDRs in the steering map (read with bpftool)`,
      async () => {
        alive(p);
        const held = await steeringKeys(p.b.c, AGENT_NODE);
        steering = { held: held.size, missing: wantKeys.filter((k) => !held.has(k)).length };
        return steering.missing === 0 ? Date.now() : undefined;
      },
      { timeoutMs: 60_000, pollMs: 500 },
    )
    .catch((err: unknown) => {
      throw new Error(
        `steering map check after convergence by log and UAPI failed (last read: ${steering.missing} of ${n} pod CIDRs missing, ${steering.held} entries held): ${msg(err)}`,
      );
    });
  const process = sampleProcesses(p.b.c, AGENT_NODE);
  const { ops } = await agentCounters(p.b.c, AGENT_NODE);
  return {
    store,
    nodes: n,
    load1,
    populateMs,
    syncedMs: synced.time - t0,
    peersMs: line.time - t0,
    convergedMs: (lastAt ?? line.time) - t0,
    confirmedMs: confirmedAt - t0,
    steeringConfirmedMs: steeringAt - t0,
    steeringEntries: steering.held,
    process,
    kernelOps: ops,
    passes: p.log.passes(t0).map((l) => ({ atMs: l.time - t0, seconds: l.seconds ?? 0, ops: l.ops ?? {} })),
    error: undefined,
  };
}

/** One store write, timed to the pass that applied it and to its confirmation over UAPI. */
async function oneChange(
  p: Probe,
  o: { kind: ChangeKind; node: string; write: () => Promise<void>; op: string; check: (peers: UapiPeer[]) => boolean },
): Promise<ScaleChange> {
  await p.log.poll();
  const t = Date.now();
  try {
    await o.write();
    const writeMs = Date.now() - t;
    // The first pass after the write that did the expected op and left the kernel as wanted.
    let seen = 0;
    const line = await p.log.until(
      `${o.kind} of ${o.node} applied`,
      async () => {
        alive(p);
        const ls = p.log.passes(t).filter((l) => (l.ops?.[o.op] ?? 0) > 0);
        while (seen < ls.length) {
          const l = ls[seen++] as LogLine;
          if (o.check(await p.peers())) return l;
        }
        return undefined;
      },
      { timeoutMs: CHANGE_TIMEOUT_MS, pollMs: 5 },
    );
    const confirmedMs = Date.now() - t;
    await p.log.quiet(500, 30_000);
    p.log.assertNoFailures(t, `while applying the ${o.kind} of ${o.node}`);
    const passes = p.log.passes(t);
    return {
      kind: o.kind,
      node: o.node,
      writeMs,
      appliedMs: line.time - t,
      confirmedMs,
      ...(line.seconds === undefined ? {} : { passMs: Math.round(line.seconds * 10_000) / 10 }),
      ...(line.queuedMs === undefined ? {} : { queuedMs: line.queuedMs }),
      ...(line.queuedBehind === undefined ? {} : { queuedBehind: line.queuedBehind }),
      kernelOps: sumOps(passes),
      passes: passes.length,
      error: undefined,
    };
  } catch (err) {
    return {
      kind: o.kind,
      node: o.node,
      writeMs: Date.now() - t,
      appliedMs: undefined,
      confirmedMs: undefined,
      kernelOps: sumOps(p.log.passes(t)),
      passes: p.log.passes(t).length,
      error: msg(err),
    };
  }
}

async function changes(
  p: Probe,
  store: ScaleStore,
  sims: SimNode[],
  rounds: number,
  log: (l: string) => void,
): Promise<ScaleChanges> {
  const n = sims.length;
  const before = await agentCounters(p.b.c, AGENT_NODE).catch(() => undefined);
  const out: ScaleChange[] = [];
  for (let r = 0; r < rounds; r++) {
    const j = simNode(n + 1 + r, 'j');
    out.push(
      await oneChange(p, {
        kind: 'join',
        node: j.name,
        write: () => p.b.sim.write([j]),
        op: 'peer_set',
        check: (ps) => holds(ps, new Map([[j.key, j.podCIDR]])),
      }),
    );
    const victim = sims[Math.floor(((r + 0.5) * n) / rounds)] as SimNode;
    const old = victim.key;
    victim.key = newPublicKey();
    victim.epoch++;
    out.push(
      await oneChange(p, {
        kind: 'key-change',
        node: victim.name,
        write: () => p.b.sim.patch([victim]),
        op: 'peer_remove',
        check: (ps) => holds(ps, new Map([[victim.key, victim.podCIDR]]), new Set([old])),
      }),
    );
    out.push(
      await oneChange(p, {
        kind: 'leave',
        node: j.name,
        write: () => p.b.sim.remove(j.name),
        op: 'peer_remove',
        check: (ps) => holds(ps, new Map(), new Set([j.key])),
      }),
    );
    const last = out
      .slice(-3)
      .map((c) => `${c.kind} ${c.appliedMs ?? c.error} ms`)
      .join(', ');
    log(`scale ${store} ${n}: round ${r + 1}/${rounds}: ${last}`);
  }
  const after = await agentCounters(p.b.c, AGENT_NODE).catch(() => undefined);
  return {
    store,
    nodes: n,
    changes: out,
    metricsOps: before !== undefined && after !== undefined ? diffOps(after.ops, before.ops) : undefined,
  };
}

async function rotation(p: Probe, store: ScaleStore, sims: SimNode[]): Promise<ScaleRotation> {
  const n = sims.length;
  const id = `r-bench-${n}`;
  const res: { -readonly [K in keyof ScaleRotation]: ScaleRotation[K] } = {
    store,
    nodes: n,
    stageWriteMs: 0,
    stagedMs: undefined,
    stageOps: {},
    switchWriteMs: 0,
    switchedMs: undefined,
    switchOps: {},
    idleOps: {},
    process: sampleProcesses(p.b.c, AGENT_NODE),
    error: undefined,
  };
  const olds = new Set(sims.map((s) => s.key));
  try {
    // 1. staging: every node announces a next key (and the endpoint of the link holding it).
    for (const s of sims) s.rotation = { phase: 'staging', id, since: new Date(), nextKey: newPublicKey() };
    await p.log.poll();
    const t0 = Date.now();
    await p.b.sim.patch(sims);
    res.stageWriteMs = Date.now() - t0;
    const staged = new Map(sims.map((s) => [s.key, s.podCIDR]));
    const nexts = sims.map((s) => (s.rotation?.phase === 'staging' ? s.rotation.nextKey : ''));
    const st = await appliedAndConfirmed(p, {
      what: `all ${n} next-key peers staged`,
      since: t0,
      op: 'peer_set',
      n,
      check: (ps) => holds(ps, staged) && nexts.every((k) => ps.some((x) => x.publicKey === k)),
      timeoutMs: CONVERGE_TIMEOUT_MS,
      pollMs: 50,
    });
    res.stagedMs = st.line.time - t0;
    await p.log.quiet(1000, 120_000);
    res.stageOps = sumOps(p.log.passes(t0));
    // 2. switch: the next key becomes the key (phase grace), the next-key annotations go.
    for (const s of sims) {
      if (s.rotation?.phase !== 'staging') continue;
      s.key = s.rotation.nextKey;
      s.epoch++;
      s.rotation = { phase: 'grace', id, since: new Date() };
    }
    await p.log.poll();
    const t1 = Date.now();
    await p.b.sim.patch(sims);
    res.switchWriteMs = Date.now() - t1;
    const moved = new Map(sims.map((s) => [s.key, s.podCIDR]));
    const sw = await appliedAndConfirmed(p, {
      what: `all ${n} nodes switched to their new key`,
      since: t1,
      op: 'peer_remove',
      n,
      check: (ps) => holds(ps, moved, olds),
      timeoutMs: CONVERGE_TIMEOUT_MS,
      pollMs: 50,
    });
    res.switchedMs = sw.line.time - t1;
    await p.log.quiet(1000, 120_000);
    res.switchOps = sumOps(p.log.passes(t1));
    res.process = sampleProcesses(p.b.c, AGENT_NODE);
    // 3. idle again (not timed): nothing should change in the kernel.
    for (const s of sims) s.rotation = { phase: 'idle', id, completedAt: new Date() };
    await p.log.poll();
    const t2 = Date.now();
    await p.b.sim.patch(sims);
    await p.log.quiet(3000, 120_000);
    res.idleOps = sumOps(p.log.passes(t2));
  } catch (err) {
    res.error = msg(err);
  }
  return res;
}

async function resync(p: Probe, store: ScaleStore, n: number, intervalSeconds: number): Promise<ScaleResync> {
  const res: { -readonly [K in keyof ScaleResync]: ScaleResync[K] } = {
    store,
    nodes: n,
    intervalSeconds,
    restartSyncedMs: undefined,
    restartOps: {},
    windowMs: 0,
    reconciles: undefined,
    kernelOps: undefined,
    process: sampleProcesses(p.b.c, AGENT_NODE),
    error: undefined,
  };
  try {
    await p.b.c.stopAgent(AGENT_NODE, { timeoutMs: 120_000 });
    await p.log.poll();
    const t0 = Date.now();
    await p.b.startAgent({ resyncIntervalSeconds: intervalSeconds });
    const synced = await p.log.until(
      'node store synced after the restart',
      () => {
        alive(p);
        return p.log.lines.find((l) => l.msg === 'node store synced' && l.time >= t0);
      },
      { timeoutMs: CONVERGE_TIMEOUT_MS, pollMs: 50 },
    );
    res.restartSyncedMs = synced.time - t0;
    // The restart adopts what the kernel holds; give its first passes time to finish.
    await sleep(Math.max(3000, 2 * intervalSeconds * 1000));
    await p.log.quiet(1000, 60_000).catch(() => undefined);
    res.restartOps = sumOps(p.log.passes(t0));
    const m1 = await agentCounters(p.b.c, AGENT_NODE);
    const cpu1 = sampleProcesses(p.b.c, AGENT_NODE).cpuSeconds;
    const w0 = Date.now();
    await sleep((4 * intervalSeconds + 1) * 1000);
    const m2 = await agentCounters(p.b.c, AGENT_NODE);
    res.windowMs = Date.now() - w0;
    res.process = sampleProcesses(p.b.c, AGENT_NODE);
    res.reconciles = m2.reconciles - m1.reconciles;
    res.kernelOps = diffOps(m2.ops, m1.ops);
    const passes = (m2.passCount ?? 0) - (m1.passCount ?? 0);
    if (passes > 0 && m1.passSecondsSum !== undefined && m2.passSecondsSum !== undefined)
      res.meanPassMs = (1000 * (m2.passSecondsSum - m1.passSecondsSum)) / passes;
    if (cpu1 !== undefined && res.process.cpuSeconds !== undefined)
      res.cpuSecondsInWindow = res.process.cpuSeconds - cpu1;
  } catch (err) {
    res.error = msg(err);
  }
  return res;
}

/** Starts churn, lets it settle for `warmupMs`, then measures the agent over `windowS` seconds. The churn keeps running (the caller stops it). */
async function underChurn(
  p: Probe,
  store: ScaleStore,
  sims: readonly SimNode[],
  churn: Churn,
  windowS: number,
  warmupMs = 5000,
  phase: 'startup' | 'steady' = 'startup',
): Promise<ScaleChurn> {
  const n = sims.length;
  const base = { store, nodes: n, phase, targetPerSecond: churn.targetPerSecond };
  try {
    const warmEnd = Date.now() + warmupMs;
    while (Date.now() < warmEnd) {
      alive(p);
      await sleep(500);
    }
    await p.log.poll();
    const pid = p.b.c.agentStatus(AGENT_NODE).pid;
    const s0 = {
      t: Date.now(),
      cpu: sampleProcesses(p.b.c, AGENT_NODE).cpuSeconds,
      bytes: p.b.apiBytesToAgent(),
      rchar: readChars(pid),
      churn: churn.stats(),
    };
    const end = s0.t + windowS * 1000;
    while (Date.now() < end) {
      alive(p);
      await sleep(Math.min(1000, Math.max(0, end - Date.now())));
    }
    await p.log.poll();
    const process = sampleProcesses(p.b.c, AGENT_NODE);
    const s1 = {
      t: Date.now(),
      cpu: process.cpuSeconds,
      bytes: p.b.apiBytesToAgent(),
      rchar: readChars(pid),
      churn: churn.stats(),
    };
    const windowMs = s1.t - s0.t;
    const perMin = (a: number | undefined, b: number | undefined): number | undefined =>
      a === undefined || b === undefined ? undefined : ((b - a) * 60_000) / windowMs;
    const cpu = s0.cpu === undefined || s1.cpu === undefined ? undefined : s1.cpu - s0.cpu;
    const passes = p.log.passes(s0.t).filter((l) => l.time <= s1.t);
    const bytesPerMin = perMin(s0.bytes, s1.bytes);
    return {
      ...base,
      achievedPerSecond: ((s1.churn.done - s0.churn.done) * 1000) / windowMs,
      windowMs,
      updatesDone: s1.churn.done - s0.churn.done,
      updatesFailed: s1.churn.failed - s0.churn.failed,
      updatesSkipped: s1.churn.skipped - s0.churn.skipped,
      lastUpdateError: s1.churn.lastError,
      agentCpuSeconds: cpu,
      agentCpuPercent: cpu === undefined ? undefined : (100 * cpu * 1000) / windowMs,
      bytesToAgentPerMinute: bytesPerMin,
      apiBytesPerMinuteAllAgents: bytesPerMin === undefined ? undefined : bytesPerMin * n,
      agentReadBytesPerMinute: perMin(s0.rchar, s1.rchar),
      passes: passes.length,
      kernelOps: sumOps(passes),
      process,
      error: undefined,
    };
  } catch (err) {
    const st = churn.stats();
    return {
      ...base,
      achievedPerSecond: 0,
      windowMs: 0,
      updatesDone: st.done,
      updatesFailed: st.failed,
      updatesSkipped: st.skipped,
      lastUpdateError: st.lastError,
      agentCpuSeconds: undefined,
      agentCpuPercent: undefined,
      bytesToAgentPerMinute: undefined,
      apiBytesPerMinuteAllAgents: undefined,
      agentReadBytesPerMinute: undefined,
      passes: 0,
      kernelOps: {},
      process: sampleProcesses(p.b.c, AGENT_NODE),
      error: msg(err),
    };
  }
}

function mib(bytes: number | undefined): string {
  return bytes === undefined ? '—' : `${(bytes / 1048576).toFixed(1)} MiB`;
}

async function runStore(env: ScaleEnv, o: ScaleOptions, result: ScaleResult, dog: Watchdog): Promise<void> {
  const store = env.kind;
  const largest = Math.max(...o.sizes);
  const sims: SimNode[] = [];
  for (const [k, n] of o.sizes.entries()) {
    while (sims.length < n) sims.push(simNode(sims.length + 1));
    const nodes = sims.slice(0, n);
    const fail = (phase: string, err: unknown): void => {
      result.errors.push({ store, nodes: n, phase, message: msg(err) });
      o.log(`scale ${store} ${n}: ${phase} FAILED: ${msg(err)}`);
    };
    let b: ScaleBench | undefined;
    let churn: Churn | undefined;
    try {
      const shape = { node: o.nodeShape ?? 'kubelet', status: o.statusShape ?? 'summary' } as const;
      b = await dog.run(`the ${store} cluster for ${n} nodes`, 15 * 60_000, () =>
        env.cluster(`b${o.runId}s${store[0]}${k}`, (l) => o.log(`  [scale] ${l}`), shape),
      );
      const bench = b;
      bench.setClusterSize(n + 1);
      const tp = Date.now();
      await dog.run(`${n} simulated nodes to be written to the ${store} store`, 60 * 60_000, () =>
        bench.populate(nodes),
      );
      const populateMs = Date.now() - tp;
      const objectBytes = await bench.objectBytes((nodes[0] as SimNode).name).catch(() => undefined);
      const statusBytes = await statusAnnotationBytes(bench, (nodes[0] as SimNode).name).catch(() => undefined);
      result.shape?.objectBytes.push({ store, nodes: n, bytes: objectBytes, statusBytes });
      o.log(
        `scale ${store} ${n}: ${n} simulated ${shape.node} nodes in the store (${populateMs} ms; one object ${objectBytes ?? '—'} bytes, status annotation ${shape.status} ${statusBytes ?? '—'} bytes); starting the agent`,
      );
      const p: Probe = {
        b: bench,
        log: await AgentLog.at(bench.c.agentLogPath(AGENT_NODE)),
        peers: peerReader(bench.c, AGENT_NODE),
      };
      let conv: ScaleConvergence;
      try {
        conv = await dog.run(`the agent to converge on ${n} nodes`, CONVERGE_TIMEOUT_MS * 2 + 300_000, () =>
          convergence(p, store, nodes, populateMs),
        );
      } catch (err) {
        const pr = sampleProcesses(bench.c, AGENT_NODE);
        const path = bench.c.agentLogPath(AGENT_NODE);
        const st = bench.c.agentStatus(AGENT_NODE);
        result.convergence.push({
          store,
          nodes: n,
          load1: loadAverage()[0],
          populateMs,
          syncedMs: undefined,
          peersMs: undefined,
          convergedMs: undefined,
          confirmedMs: undefined,
          process: pr,
          kernelOps: {},
          passes: [],
          error: msg(err),
          agentExit: err instanceof AgentExited ? err.exit : st.running ? 'still running' : JSON.stringify(st.lastExit),
          lastLogLine: err instanceof AgentExited ? err.lastLogLine : lastLine(path),
        });
        fail('convergence', err);
        continue;
      }
      result.convergence.push(conv);
      const convergedAt = Date.now();
      o.log(
        `scale ${store} ${n}: synced ${conv.syncedMs} ms, all peers ${conv.peersMs} ms, converged ${conv.convergedMs} ms after start; peak RSS ${conv.process.rssPeakMiB?.toFixed(0)} MiB, CPU ${conv.process.cpuSeconds?.toFixed(1)} s`,
      );
      const churnS = o.churnSeconds ?? 60;
      if (churnS > 0) {
        churn = new Churn(bench.sim, nodes);
        const c = churn;
        o.log(
          `scale ${store} ${n}: kubelet churn at ${c.targetPerSecond.toFixed(1)} status updates/s; measuring ${churnS} s`,
        );
        const ch = await dog.run(`the churn window at ${n} nodes`, (churnS + 120) * 1000, () =>
          underChurn(p, store, nodes, c, churnS),
        );
        const logChurn = (ch: ScaleChurn): void =>
          o.log(
            `scale ${store} ${n}: under churn, ${ch.phase} (${ch.achievedPerSecond.toFixed(1)}/s achieved, ${ch.updatesFailed} failed, ${ch.updatesSkipped} skipped): agent CPU ${ch.agentCpuPercent?.toFixed(1) ?? '—'} % of a core, ${ch.passes} passes, from the API ${mib(ch.bytesToAgentPerMinute)}/min (× ${n} agents: ${mib(ch.apiBytesPerMinuteAllAgents)}/min), read ${mib(ch.agentReadBytesPerMinute)}/min, peak RSS ${ch.process.rssPeakMiB?.toFixed(0) ?? '—'} MiB${ch.error !== undefined ? `; ${ch.error}` : ''}`,
          );
        result.churn?.push(ch);
        if (ch.error !== undefined) fail('churn', new Error(ch.error));
        logChurn(ch);
        // The same again once the agent's startup window is over (it then checks its status
        // every minIntervalSeconds instead of publishing every change at once): the figure an
        // agent that has run for a while shows.
        if (ch.error === undefined && o.churnSteady !== false) {
          const waitMs = Math.max(5000, convergedAt + STARTUP_WINDOW_MS + 10_000 - Date.now());
          const st = await dog.run(`the steady churn window at ${n} nodes`, (churnS + 120) * 1000 + waitMs, () =>
            underChurn(p, store, nodes, c, churnS, waitMs, 'steady'),
          );
          result.churn?.push(st);
          if (st.error !== undefined) fail('churn', new Error(st.error));
          logChurn(st);
        }
      }
      if (n === largest && o.changesPerKind > 0) {
        const ch = await dog.run(
          `single changes at ${n} nodes`,
          o.changesPerKind * 3 * (CHANGE_TIMEOUT_MS * 2 + 40_000),
          () => changes(p, store, nodes, o.changesPerKind, o.log),
        );
        result.changes.push(ch);
      }
      if (churn !== undefined) {
        const c = churn;
        churn = undefined;
        await dog.run('the churn to stop', 120_000, () => c.stop());
      }
      if (o.rotationSizes.includes(n)) {
        const rot = await dog.run(`the rotation of ${n} keys`, CONVERGE_TIMEOUT_MS * 2 + 600_000, () =>
          rotation(p, store, nodes),
        );
        result.rotation.push(rot);
        o.log(
          `scale ${store} ${n}: rotation: staged ${rot.stagedMs ?? '—'} ms, switched ${rot.switchedMs ?? '—'} ms after the first write${rot.error !== undefined ? `; ${rot.error}` : ''}`,
        );
      }
      if (n === largest && (o.resync ?? true)) {
        const rs = await dog.run(`the resync phase at ${n} nodes`, CONVERGE_TIMEOUT_MS + 300_000, () =>
          resync(p, store, n, o.resyncIntervalSeconds),
        );
        result.resync.push(rs);
        o.log(
          `scale ${store} ${n}: resync every ${rs.intervalSeconds} s: ${rs.reconciles ?? '—'} passes, kernel ops ${JSON.stringify(rs.kernelOps)}${rs.error !== undefined ? `; ${rs.error}` : ''}`,
        );
      }
    } catch (err) {
      fail('setup', err);
    } finally {
      if (churn !== undefined) await churn.stop();
      await b?.destroy().catch((err: unknown) => o.log(`scale ${store} ${n}: teardown FAILED: ${msg(err)}`));
    }
  }
}

/** Bytes of the `sealnet.io/status` annotation of one simulated node, as stored. */
async function statusAnnotationBytes(b: ScaleBench, name: string): Promise<number | undefined> {
  const v = await b.statusAnnotation(name);
  return v === undefined ? 0 : Buffer.byteLength(v);
}

/** Runs the scale benchmark; every cluster and API server is destroyed on return or failure. */
export async function runScale(o: ScaleOptions): Promise<ScaleResult> {
  const shape = { node: o.nodeShape ?? 'kubelet', status: o.statusShape ?? 'summary' } as const;
  const result: ScaleResult = {
    sizes: o.sizes,
    stores: o.stores,
    changesPerKind: o.changesPerKind,
    rotationSizes: o.rotationSizes,
    convergence: [],
    changes: [],
    resync: [],
    rotation: [],
    churn: [],
    shape: { ...shape, objectBytes: [] },
    errors: [],
  };
  // The harness's child-process handles are unref'd: keep the event loop alive while awaiting
  // them. That is also why a promise that never settles would park the bench silently: every
  // wait below is bounded and the watchdog names the step every minute.
  const keepAlive = setInterval(() => undefined, 1000);
  const dog = new Watchdog(o.log);
  try {
    for (const store of o.stores) {
      let env: ScaleEnv | undefined;
      try {
        env =
          store === 'file'
            ? fileEnv()
            : await dog.run('the test API server and the chart', 15 * 60_000, () =>
                kubeEnv((l) => o.log(`  [scale] ${l}`), shape),
              );
        await runStore(env, o, result, dog);
      } catch (err) {
        result.errors.push({ store, nodes: undefined, phase: 'setup', message: msg(err) });
        o.log(`scale ${store}: FAILED: ${msg(err)}`);
      } finally {
        await env?.close().catch((err: unknown) => o.log(`scale ${store}: closing FAILED: ${msg(err)}`));
      }
    }
  } finally {
    clearInterval(keepAlive);
    dog.close();
  }
  return result;
}
