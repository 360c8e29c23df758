/**
 * Polling and Prometheus helpers shared by the e2e, k8s and qemu tiers.
 *
 * Two guarantees every harness wait gives (issue 17):
 * - fail fast: a wait given a {@link FailFast} source (a cluster's agents) ends at once, with
 *   its reason, when that source fails (an agent process exits), not at its deadline;
 * - no silent hang: each wait registers what it waits for while it runs, so a watchdog
 *   ({@link installWatchdog}) can print every pending wait on SIGUSR2, on a global deadline, or
 *   when the event loop drains while work is still pending.
 */
import type { NsCluster } from './cluster.js';
import { sleep } from './exec.js';

/** Something whose failure makes a wait pointless (e.g. "an agent exited"). */
export interface FailFast {
  /** Why the wait cannot succeed any more, or undefined while all is well. */
  check(): string | undefined;
  /** Resolves when `check()` may have changed (a process exit); may never resolve. */
  changed(): Promise<void>;
}

/** Thrown when a {@link FailFast} source failed during a wait. */
export class WaitAbortedError extends Error {
  constructor(what: string, reason: string, elapsedMs: number) {
    super(`gave up after ${elapsedMs} ms waiting for ${what}: ${reason}`);
    this.name = 'WaitAbortedError';
  }
}

/** A wait in progress, as the watchdog prints it. */
export interface PendingWait {
  readonly id: number;
  readonly what: string;
  readonly startedAt: number;
  /** Epoch ms of its own deadline, if it has one. */
  readonly deadline: number | undefined;
}

const pending = new Map<number, PendingWait>();
let nextId = 1;

/**
 * Registers a wait for the watchdog; returns the function that unregisters it. Use it around
 * any await that may take long (a child's exit, a stream's close) and is not a {@link waitFor}.
 */
export function trackWait(what: string, deadline?: number): () => void {
  const id = nextId++;
  pending.set(id, { id, what, startedAt: Date.now(), deadline });
  return () => void pending.delete(id);
}

/** Waits now pending, oldest first. */
export function pendingWaits(): PendingWait[] {
  return [...pending.values()].sort((a, b) => a.startedAt - b.startedAt);
}

/**
 * Resolves with `p`, or rejects with {@link WaitAbortedError} as soon as `ff` reports a failure
 * (checked at once, then on every `changed()`).
 */
export async function raceFailFast<T>(
  p: Promise<T>,
  ff: FailFast | undefined,
  what: string,
  t0 = Date.now(),
): Promise<T> {
  if (ff === undefined) return p;
  const now = ff.check();
  if (now !== undefined) throw new WaitAbortedError(what, now, Date.now() - t0);
  let settled = false;
  const watch = (async (): Promise<never> => {
    for (;;) {
      await ff.changed();
      if (settled) return new Promise<never>(() => undefined);
      const why = ff.check();
      if (why !== undefined) throw new WaitAbortedError(what, why, Date.now() - t0);
    }
  })();
  try {
    return await Promise.race([p, watch]);
  } finally {
    settled = true;
    watch.catch(() => undefined);
  }
}

/** Options of {@link waitFor}. */
export interface WaitOptions {
  readonly timeoutMs: number;
  readonly pollMs?: number;
  /** Ends the wait at once when this source fails (e.g. `cluster.agentGuard()`). */
  readonly failFast?: FailFast;
}

/**
 * Polls `fn` until it returns something other than undefined; throws after `timeoutMs`, or at
 * once when `failFast` reports a failure.
 */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, opts: WaitOptions): Promise<T> {
  const t0 = Date.now();
  const deadline = t0 + opts.timeoutMs;
  const done = trackWait(what, deadline);
  try {
    for (;;) {
      const v = await raceFailFast(fn(), opts.failFast, what, t0);
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${what}`);
      await raceFailFast(sleep(opts.pollMs ?? 100), opts.failFast, what, t0);
    }
  } finally {
    done();
  }
}

/** Options of {@link installWatchdog}. */
export interface WatchdogOptions {
  /** After this many ms the watchdog prints what is pending and exits with 124 (default: never). */
  readonly deadlineMs?: number;
  /** Where the dump goes (default stderr). */
  readonly write?: (text: string) => void;
  /** Name in the messages ("bench", "demo"). */
  readonly name?: string;
  /** When the event loop drains while this returns false, print the dump and exit 1 (default: no check). */
  readonly finished?: () => boolean;
}

/**
 * A text dump of what the process waits for: the registered waits, plus the event loop's
 * active resources (timers, sockets, child processes, pipes) as Node reports them.
 */
export function dumpPending(now = Date.now()): string {
  const lines = pendingWaits().map(
    (w) =>
      `  - ${w.what} (for ${((now - w.startedAt) / 1000).toFixed(1)} s${w.deadline === undefined ? ', no deadline' : `, deadline in ${((w.deadline - now) / 1000).toFixed(1)} s`})`,
  );
  const counts = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) counts.set(r, (counts.get(r) ?? 0) + 1);
  const res = [...counts].map(([k, v]) => `${k}×${v}`).join(', ');
  return [
    `pending waits: ${lines.length === 0 ? 'none registered' : ''}`,
    ...lines,
    `event loop resources: ${res || 'none'}`,
  ].join('\n');
}

/**
 * Installs the hang watchdog: SIGUSR2 prints {@link dumpPending}; the optional global deadline
 * prints it and exits 124; the optional drain check catches an event loop that went idle with
 * work unfinished (a promise nobody will ever settle). Returns the uninstaller.
 */
export function installWatchdog(o: WatchdogOptions = {}): () => void {
  const write = o.write ?? ((t: string) => void process.stderr.write(t));
  const name = o.name ?? 'watchdog';
  const onUsr2 = (): void => write(`${name}: SIGUSR2\n${dumpPending()}\n`);
  process.on('SIGUSR2', onUsr2);
  let timer: NodeJS.Timeout | undefined;
  if (o.deadlineMs !== undefined) {
    timer = setTimeout(() => {
      write(
        `${name}: global deadline of ${Math.round((o.deadlineMs ?? 0) / 1000)} s passed; giving up\n${dumpPending()}\n`,
      );
      // exit hooks (NsCluster teardown) still run.
      process.exit(124);
    }, o.deadlineMs);
    // The deadline must not itself keep a finished process alive.
    timer.unref();
  }
  const onDrain = (): void => {
    if (o.finished === undefined || o.finished()) return;
    write(`${name}: the event loop went idle with work unfinished (a promise nobody settles)\n${dumpPending()}\n`);
    process.exit(1);
  };
  process.on('beforeExit', onDrain);
  return () => {
    process.off('SIGUSR2', onUsr2);
    process.off('beforeExit', onDrain);
    if (timer !== undefined) clearTimeout(timer);
  };
}

/** Scrapes a node agent's Prometheus endpoint from inside the node. */
export async function scrapeMetrics(c: NsCluster, node: string): Promise<string> {
  const script =
    "fetch('http://127.0.0.1:9588/metrics').then(r=>r.text()).then(t=>process.stdout.write(t),e=>{console.error(String(e));process.exit(1)})";
  return (await c.execNode(node, [process.execPath, '-e', script])).stdout;
}

/** Sum of a metric's samples whose label set contains `labelFilter` (0 when absent). */
export function metricValue(text: string, name: string, labelFilter = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
    if (m === null || m[1] !== name || !(m[2] ?? '').includes(labelFilter)) continue;
    sum += Number(m[3]);
  }
  return sum;
}
