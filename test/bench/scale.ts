/**
 * `scale`: the control plane with one real agent and N simulated nodes in the node store
 * (`file` and a real API server), N = 100, 1,000, 5,000 (quick: 100, 1,000). Measures:
 *
 * - convergence: agent start → every peer, route and steering entry programmed (the agent's
 *   "kernel state updated" log times, confirmed by reading the peers over UAPI), peak RSS and
 *   CPU seconds of the agent, kernel operations (`sealnet_kernel_operations_total`);
 * - at the largest N: single joins, key changes and leaves, store write → applied, and the
 *   kernel operations each one cost;
 * - rotation of every simulated key (staging announcement, then the switch), at the sizes asked;
 * - at the largest N: a restarted agent resyncing every few seconds with nothing changed.
 *
 * Every simulated node is only a Node object (no namespace, no agent), so no handshake with a
 * simulated next key ever completes: the `moving` phase (pod CIDRs move to the next key after
 * its handshake) cannot be simulated, and the switch is timed from `grace` (the next key
 * published as the key), which moves every pod CIDR and removes every old peer in one step.
 */
import { loadAverage } from './env.js';
import { sleep } from '../harness/exec.js';
import { AGENT_NODE, fileEnv, kubeEnv, type ScaleBench, type ScaleEnv } from './scale-env.js';
import { agentCounters, AgentLog, diffOps, peerReader, sampleProcesses, sumOps, type LogLine } from './scale-probe.js';
import { newPublicKey, simNode, type SimNode } from './scale-sim.js';
import type { ChangeKind, ScaleChange, ScaleChanges, ScaleConvergence, ScaleResult, ScaleResync, ScaleRotation, ScaleStore } from './types.js';
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

/** Throws when the agent is not running (so a crash ends a phase at once, not at its timeout). */
function alive(p: Probe): void {
  const st = p.b.c.agentStatus(AGENT_NODE);
  if (!st.running) throw new Error(`the agent exited (${JSON.stringify(st.lastExit)}); see ${p.b.c.agentLogPath(AGENT_NODE)}`);
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
function holds(peers: readonly UapiPeer[], want: ReadonlyMap<string, string>, gone: ReadonlySet<string> = new Set()): boolean {
  const byKey = new Map(peers.map((p) => [p.publicKey, p]));
  for (const [key, cidr] of want) if (!(byKey.get(key)?.allowedIPs.includes(cidr) ?? false)) return false;
  for (const key of gone) if (byKey.has(key)) return false;
  return true;
}

/** Waits for a pass that reached `op ≥ n`, then for a UAPI read that satisfies `check`; returns both times. */
async function appliedAndConfirmed(p: Probe, o: { what: string; since: number; op: string; n: number; check: (peers: UapiPeer[]) => boolean; timeoutMs: number; pollMs: number }): Promise<{ line: LogLine; confirmedAt: number }> {
  const line = await p.log.until(o.what, () => {
    alive(p);
    return passReaching(p.log, o.since, o.op, o.n);
  }, { timeoutMs: o.timeoutMs, pollMs: o.pollMs });
  const confirmedAt = await p.log.until(`${o.what} (confirmed over UAPI)`, async () => (o.check(await p.peers()) ? Date.now() : undefined), { timeoutMs: o.timeoutMs, pollMs: 200 });
  return { line, confirmedAt };
}

async function convergence(p: Probe, store: ScaleStore, sims: readonly SimNode[], populateMs: number): Promise<ScaleConvergence> {
  const n = sims.length;
  const load1 = loadAverage()[0];
  const t0 = Date.now();
  await p.b.startAgent();
  const synced = await p.log.until('node store synced', () => {
    alive(p);
    return p.log.lines.find((l) => l.msg === 'node store synced' && l.time >= t0);
  }, { timeoutMs: CONVERGE_TIMEOUT_MS, pollMs: 50 });
  const want = new Map(sims.map((s) => [s.key, s.podCIDR]));
  const { line, confirmedAt } = await appliedAndConfirmed(p, { what: `all ${n} peers set`, since: t0, op: 'peer_set', n, check: (ps) => holds(ps, want), timeoutMs: CONVERGE_TIMEOUT_MS, pollMs: 50 });
  const lastAt = await p.log.quiet(2000, 120_000);
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
    process,
    kernelOps: ops,
    passes: p.log.passes(t0).map((l) => ({ atMs: l.time - t0, seconds: l.seconds ?? 0, ops: l.ops ?? {} })),
    error: undefined,
  };
}

/** One store write, timed to the pass that applied it and to its confirmation over UAPI. */
async function oneChange(p: Probe, o: { kind: ChangeKind; node: string; write: () => Promise<void>; op: string; check: (peers: UapiPeer[]) => boolean }): Promise<ScaleChange> {
  await p.log.poll();
  const t = Date.now();
  try {
    await o.write();
    const writeMs = Date.now() - t;
    // The first pass after the write that did the expected op and left the kernel as wanted.
    let seen = 0;
    const line = await p.log.until(`${o.kind} of ${o.node} applied`, async () => {
      alive(p);
      const ls = p.log.passes(t).filter((l) => (l.ops?.[o.op] ?? 0) > 0);
      while (seen < ls.length) {
        const l = ls[seen++] as LogLine;
        if (o.check(await p.peers())) return l;
      }
      return undefined;
    }, { timeoutMs: CHANGE_TIMEOUT_MS, pollMs: 5 });
    const confirmedMs = Date.now() - t;
    await p.log.quiet(500, 30_000);
    const passes = p.log.passes(t);
    return { kind: o.kind, node: o.node, writeMs, appliedMs: line.time - t, confirmedMs, kernelOps: sumOps(passes), passes: passes.length, error: undefined };
  } catch (err) {
    return { kind: o.kind, node: o.node, writeMs: Date.now() - t, appliedMs: undefined, confirmedMs: undefined, kernelOps: sumOps(p.log.passes(t)), passes: p.log.passes(t).length, error: msg(err) };
  }
}

async function changes(p: Probe, store: ScaleStore, sims: SimNode[], rounds: number, log: (l: string) => void): Promise<ScaleChanges> {
  const n = sims.length;
  const before = await agentCounters(p.b.c, AGENT_NODE).catch(() => undefined);
  const out: ScaleChange[] = [];
  for (let r = 0; r < rounds; r++) {
    const j = simNode(n + 1 + r, 'j');
    out.push(await oneChange(p, { kind: 'join', node: j.name, write: () => p.b.sim.write([j]), op: 'peer_set', check: (ps) => holds(ps, new Map([[j.key, j.podCIDR]])) }));
    const victim = sims[Math.floor(((r + 0.5) * n) / rounds)] as SimNode;
    const old = victim.key;
    victim.key = newPublicKey();
    victim.epoch++;
    out.push(await oneChange(p, { kind: 'key-change', node: victim.name, write: () => p.b.sim.patch([victim]), op: 'peer_remove', check: (ps) => holds(ps, new Map([[victim.key, victim.podCIDR]]), new Set([old])) }));
    out.push(await oneChange(p, { kind: 'leave', node: j.name, write: () => p.b.sim.remove(j.name), op: 'peer_remove', check: (ps) => holds(ps, new Map(), new Set([j.key])) }));
    const last = out.slice(-3).map((c) => `${c.kind} ${c.appliedMs ?? c.error} ms`).join(', ');
    log(`scale ${store} ${n}: round ${r + 1}/${rounds}: ${last}`);
  }
  const after = await agentCounters(p.b.c, AGENT_NODE).catch(() => undefined);
  return { store, nodes: n, changes: out, metricsOps: before !== undefined && after !== undefined ? diffOps(after.ops, before.ops) : undefined };
}

async function rotation(p: Probe, store: ScaleStore, sims: SimNode[]): Promise<ScaleRotation> {
  const n = sims.length;
  const id = `r-bench-${n}`;
  const res: { -readonly [K in keyof ScaleRotation]: ScaleRotation[K] } = { store, nodes: n, stageWriteMs: 0, stagedMs: undefined, stageOps: {}, switchWriteMs: 0, switchedMs: undefined, switchOps: {}, idleOps: {}, process: sampleProcesses(p.b.c, AGENT_NODE), error: undefined };
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
    const st = await appliedAndConfirmed(p, { what: `all ${n} next-key peers staged`, since: t0, op: 'peer_set', n, check: (ps) => holds(ps, staged) && nexts.every((k) => ps.some((x) => x.publicKey === k)), timeoutMs: CONVERGE_TIMEOUT_MS, pollMs: 50 });
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
    const sw = await appliedAndConfirmed(p, { what: `all ${n} nodes switched to their new key`, since: t1, op: 'peer_remove', n, check: (ps) => holds(ps, moved, olds), timeoutMs: CONVERGE_TIMEOUT_MS, pollMs: 50 });
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
  const res: { -readonly [K in keyof ScaleResync]: ScaleResync[K] } = { store, nodes: n, intervalSeconds, restartSyncedMs: undefined, restartOps: {}, windowMs: 0, reconciles: undefined, kernelOps: undefined, process: sampleProcesses(p.b.c, AGENT_NODE), error: undefined };
  try {
    await p.b.c.stopAgent(AGENT_NODE, { timeoutMs: 120_000 });
    await p.log.poll();
    const t0 = Date.now();
    await p.b.startAgent({ resyncIntervalSeconds: intervalSeconds });
    const synced = await p.log.until('node store synced after the restart', () => {
      alive(p);
      return p.log.lines.find((l) => l.msg === 'node store synced' && l.time >= t0);
    }, { timeoutMs: CONVERGE_TIMEOUT_MS, pollMs: 50 });
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
    if (passes > 0 && m1.passSecondsSum !== undefined && m2.passSecondsSum !== undefined) res.meanPassMs = (1000 * (m2.passSecondsSum - m1.passSecondsSum)) / passes;
    if (cpu1 !== undefined && res.process.cpuSeconds !== undefined) res.cpuSecondsInWindow = res.process.cpuSeconds - cpu1;
  } catch (err) {
    res.error = msg(err);
  }
  return res;
}

async function runStore(env: ScaleEnv, o: ScaleOptions, result: ScaleResult): Promise<void> {
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
    try {
      b = await env.cluster(`b${o.runId}s${store[0]}${k}`, (l) => o.log(`  [scale] ${l}`));
      const tp = Date.now();
      await b.populate(nodes);
      const populateMs = Date.now() - tp;
      o.log(`scale ${store} ${n}: ${n} simulated nodes in the store (${populateMs} ms); starting the agent`);
      const p: Probe = { b, log: await AgentLog.at(b.c.agentLogPath(AGENT_NODE)), peers: peerReader(b.c, AGENT_NODE) };
      let conv: ScaleConvergence;
      try {
        conv = await convergence(p, store, nodes, populateMs);
      } catch (err) {
        const pr = sampleProcesses(b.c, AGENT_NODE);
        result.convergence.push({ store, nodes: n, load1: loadAverage()[0], populateMs, syncedMs: undefined, peersMs: undefined, convergedMs: undefined, confirmedMs: undefined, process: pr, kernelOps: {}, passes: [], error: msg(err) });
        fail('convergence', err);
        continue;
      }
      result.convergence.push(conv);
      o.log(`scale ${store} ${n}: synced ${conv.syncedMs} ms, all peers ${conv.peersMs} ms, converged ${conv.convergedMs} ms after start; peak RSS ${conv.process.rssPeakMiB?.toFixed(0)} MiB, CPU ${conv.process.cpuSeconds?.toFixed(1)} s`);
      if (n === largest && o.changesPerKind > 0) {
        const ch = await changes(p, store, nodes, o.changesPerKind, o.log);
        result.changes.push(ch);
      }
      if (o.rotationSizes.includes(n)) {
        const rot = await rotation(p, store, nodes);
        result.rotation.push(rot);
        o.log(`scale ${store} ${n}: rotation: staged ${rot.stagedMs ?? '—'} ms, switched ${rot.switchedMs ?? '—'} ms after the first write${rot.error !== undefined ? `; ${rot.error}` : ''}`);
      }
      if (n === largest) {
        const rs = await resync(p, store, n, o.resyncIntervalSeconds);
        result.resync.push(rs);
        o.log(`scale ${store} ${n}: resync every ${rs.intervalSeconds} s: ${rs.reconciles ?? '—'} passes, kernel ops ${JSON.stringify(rs.kernelOps)}${rs.error !== undefined ? `; ${rs.error}` : ''}`);
      }
    } catch (err) {
      fail('setup', err);
    } finally {
      await b?.destroy();
    }
  }
}

/** Runs the scale benchmark; every cluster and API server is destroyed on return or failure. */
export async function runScale(o: ScaleOptions): Promise<ScaleResult> {
  const result: ScaleResult = { sizes: o.sizes, stores: o.stores, changesPerKind: o.changesPerKind, rotationSizes: o.rotationSizes, convergence: [], changes: [], resync: [], rotation: [], errors: [] };
  // The harness's child-process handles are unref'd: keep the event loop alive while awaiting them.
  const keepAlive = setInterval(() => undefined, 1000);
  try {
    for (const store of o.stores) {
      let env: ScaleEnv | undefined;
      try {
        env = store === 'file' ? fileEnv() : await kubeEnv((l) => o.log(`  [scale] ${l}`));
        await runStore(env, o, result);
      } catch (err) {
        result.errors.push({ store, nodes: undefined, phase: 'setup', message: msg(err) });
        o.log(`scale ${store}: FAILED: ${msg(err)}`);
      } finally {
        await env?.close();
      }
    }
  } finally {
    clearInterval(keepAlive);
  }
  return result;
}
