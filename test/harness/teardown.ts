/**
 * Finding and removing everything a harness run created: processes (found by the network
 * namespace they live in, or by the run's prefix in their command line), network namespaces
 * and the run directory. Synchronous on purpose: it must also work from a `process.on('exit')`
 * handler, where no event loop runs.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where `ip netns` keeps its namespace handles. */
export const NETNS_DIR = '/run/netns';

/** Named network namespaces (as `ip netns list` shows them). */
export function listNetns(): string[] {
  try {
    return readdirSync(NETNS_DIR).sort();
  } catch {
    return [];
  }
}

/** Namespace inode of each named netns that exists. */
function netnsInodes(names: readonly string[]): Map<number, string> {
  const m = new Map<number, string>();
  for (const n of names) {
    try {
      m.set(statSync(join(NETNS_DIR, n)).ino, n);
    } catch {
      // already deleted
    }
  }
  return m;
}

/** One live (non-zombie) process. */
export interface ProcInfo {
  readonly pid: number;
  readonly netns: string | undefined;
  readonly cmdline: string;
}

function isZombieOrGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state follows the parenthesised command name, which may contain spaces.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

/**
 * Live processes whose network namespace is one of `netnsNames`, or whose command line
 * contains one of `markers` (e.g. the run directory). The caller's own pid is never listed.
 */
export function findProcesses(netnsNames: readonly string[], markers: readonly string[] = []): ProcInfo[] {
  const inodes = netnsInodes(netnsNames);
  const out: ProcInfo[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    let netns: string | undefined;
    try {
      const link = readlinkSync(`/proc/${pid}/ns/net`); // "net:[4026532xyz]"
      const ino = Number(/\[(\d+)\]/.exec(link)?.[1]);
      netns = inodes.get(ino);
    } catch {
      continue; // gone, zombie or kernel thread
    }
    let cmdline = '';
    if (netns === undefined && markers.length > 0) {
      try {
        cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      } catch {
        continue;
      }
      if (!markers.some((m) => cmdline.includes(m))) continue;
    } else if (netns === undefined) {
      continue;
    }
    if (isZombieOrGone(pid)) continue;
    out.push({ pid, netns, cmdline });
  }
  return out;
}

/** Sends `signal` to each pid, ignoring ones that are gone. */
export function signalAll(pids: readonly number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone
    }
  }
}

/** Busy-waits (sleeping via a child-free Atomics.wait) until the pids are gone or zombies. */
export function waitGoneSync(pids: readonly number[], timeoutMs: number): number[] {
  const deadline = Date.now() + timeoutMs;
  const sab = new Int32Array(new SharedArrayBuffer(4));
  let left = pids.filter((p) => !isZombieOrGone(p));
  while (left.length > 0 && Date.now() < deadline) {
    Atomics.wait(sab, 0, 0, 20);
    left = left.filter((p) => !isZombieOrGone(p));
  }
  return left;
}

/** Deletes network namespaces with one `ip -force -batch`; missing ones are ignored. */
export function deleteNetnsSync(names: readonly string[]): void {
  const existing = new Set(listNetns());
  const todo = names.filter((n) => existing.has(n));
  if (todo.length === 0) return;
  spawnSync('ip', ['-force', '-batch', '-'], {
    input: todo.map((n) => `netns del ${n}\n`).join(''),
    env: { ...process.env, LC_ALL: 'C' },
    stdio: ['pipe', 'ignore', 'pipe'],
    timeout: 30_000,
  });
}

/** What {@link teardownSync} removed. */
export interface TeardownReport {
  readonly killed: number;
  readonly survivors: readonly number[];
  readonly netns: readonly string[];
  readonly runDirRemoved: boolean;
}

/**
 * Kills every process in `netns` (and any whose command line names `runDir`), deletes the
 * namespaces, and removes `runDir` unless `keepRunDir`. Idempotent.
 */
export function teardownSync(opts: {
  netns: readonly string[];
  runDir: string | undefined;
  keepRunDir?: boolean;
}): TeardownReport {
  const markers = opts.runDir !== undefined ? [`${opts.runDir}/`] : [];
  let killed = 0;
  let survivors: number[] = [];
  // Two rounds: a process may fork (wireguard-go daemonizes) while the first round runs.
  for (let round = 0; round < 2; round++) {
    const pids = findProcesses(opts.netns, markers).map((p) => p.pid);
    if (pids.length === 0) break;
    signalAll(pids, 'SIGKILL');
    killed += pids.length;
    survivors = waitGoneSync(pids, 3000);
  }
  deleteNetnsSync(opts.netns);
  let runDirRemoved = false;
  if (opts.runDir !== undefined && opts.keepRunDir !== true && existsSync(opts.runDir)) {
    rmSync(opts.runDir, { recursive: true, force: true });
    runDirRemoved = true;
  }
  return { killed, survivors, netns: opts.netns, runDirRemoved };
}

/** Identity of the process that owns a run, written to `<runDir>/owner.json`. */
export interface OwnerRecord {
  readonly pid: number;
  /** Process start time in clock ticks since boot (field 22 of /proc/pid/stat): pid reuse guard. */
  readonly startTicks: number;
  readonly createdAt: string;
  /** Set by `demo --keep`: the cluster outlives its owner on purpose. */
  readonly kept?: boolean;
}

/** Start time of a process, or undefined if it does not exist. */
export function processStartTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[19]); // field 22 overall; fields[0] is field 3 (state)
  } catch {
    return undefined;
  }
}

function ownerAlive(runDir: string): { alive: boolean; kept: boolean } {
  try {
    const o = JSON.parse(readFileSync(join(runDir, 'owner.json'), 'utf8')) as OwnerRecord;
    return { alive: processStartTicks(o.pid) === o.startTicks, kept: o.kept === true };
  } catch {
    return { alive: false, kept: false };
  }
}

/** Options for {@link cleanupStale}. */
export interface CleanupStaleOptions {
  /** Directory holding run directories (default: the OS temp dir). */
  readonly runDirBase?: string;
  /**
   * Also remove runs whose owner process is still alive, and runs kept by `demo --keep`
   * (default false: only orphans of crashed or killed harness processes).
   */
  readonly force?: boolean;
}

/** Result of {@link cleanupStale}. */
export interface CleanupStaleReport {
  readonly prefixes: readonly string[];
  readonly skipped: readonly { prefix: string; reason: string }[];
  readonly killed: number;
  readonly netns: readonly string[];
}

/**
 * Removes leftovers of earlier runs whose prefix matches `prefixPattern` (a RegExp tested
 * against the whole prefix, or an exact prefix string): processes, namespaces, run dirs.
 */
export function cleanupStale(prefixPattern: RegExp | string, opts: CleanupStaleOptions = {}): CleanupStaleReport {
  const base = opts.runDirBase ?? tmpdir();
  const matches = (p: string): boolean =>
    typeof prefixPattern === 'string'
      ? p === prefixPattern
      : new RegExp(`^(?:${prefixPattern.source})$`, prefixPattern.flags.replace('g', '')).test(p);
  const byPrefix = new Map<string, string[]>();
  for (const ns of listNetns()) {
    const dash = ns.indexOf('-');
    if (dash <= 0) continue;
    const prefix = ns.slice(0, dash);
    if (!matches(prefix)) continue;
    byPrefix.set(prefix, [...(byPrefix.get(prefix) ?? []), ns]);
  }
  let dirs: string[] = [];
  try {
    dirs = readdirSync(base).filter((d) => matches(d) && existsSync(join(base, d, 'owner.json')));
  } catch {
    // no base dir
  }
  for (const d of dirs) if (!byPrefix.has(d)) byPrefix.set(d, []);

  const removed: string[] = [];
  const skipped: { prefix: string; reason: string }[] = [];
  const allNetns: string[] = [];
  let killed = 0;
  for (const [prefix, netns] of [...byPrefix.entries()].sort()) {
    const runDir = join(base, prefix);
    const owner = ownerAlive(runDir);
    if (opts.force !== true && owner.alive) {
      skipped.push({ prefix, reason: 'its owner process is still running' });
      continue;
    }
    if (opts.force !== true && owner.kept) {
      skipped.push({ prefix, reason: 'kept by demo --keep (use demo --down)' });
      continue;
    }
    const r = teardownSync({ netns, runDir });
    killed += r.killed;
    allNetns.push(...netns);
    removed.push(prefix);
  }
  return { prefixes: removed, skipped, killed, netns: allNetns };
}
