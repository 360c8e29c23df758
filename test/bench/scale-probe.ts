/**
 * What the scale benchmark reads about the one real agent: its log (tailed incrementally; the
 * "kernel state updated" lines carry each pass's end time and kernel operations), its process
 * (peak RSS, CPU seconds from /proc), its metrics, and its WireGuard peers over UAPI.
 *
 * The agent and this process share the clock, so a log line's `time` minus the moment the
 * bench wrote to the store is the write-to-applied latency.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';
import type { NsCluster } from '../harness/cluster.js';
import { sleep } from '../harness/exec.js';
import { scrapeMetrics } from '../harness/wait.js';
import { BPF_MAP_NAMES, BPF_MAPS_SUBDIR, BPF_PIN_DIR, WG_INTERFACE } from '../../common/constants.js';
import type { KernelOps, ProcessSample } from './types.js';
import { uapiPeers, uapiSocketVia, type UapiPeer } from './uapi.js';

/** The agent log lines the bench uses. */
export interface LogLine {
  readonly time: number;
  readonly msg: string;
  readonly ops?: KernelOps;
  readonly seconds?: number;
  readonly nodes?: number;
  /** A pass's wait from its first trigger to its start (agent log `queuedMs`). */
  readonly queuedMs?: number;
  /** The pass this one waited behind (agent log `queuedBehind`). */
  readonly queuedBehind?: { readonly full: boolean; readonly ms: number };
  /** On a "reconcile step X failed" line: the step, and the agent's message. */
  readonly failedStep?: string;
  readonly err?: string;
}

const WANTED = new Set(['kernel state updated', 'node store synced', 'sealnet agent running']);
/** msg of the agent's error line for a failed pass step (tunnels/reconcile/context.ts). */
const STEP_FAILED = /^reconcile step ([a-z-]+) failed$/;

/**
 * Parses complete JSON log lines and keeps the ones the bench uses. The agent's status lines
 * list every peer (hundreds of kB at 5,000 nodes), so lines are filtered by a cheap substring
 * test before parsing.
 */
export function parseLogLines(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (
      !line.startsWith('{') ||
      !/"msg":"(kernel state updated|node store synced|sealnet agent running|reconcile step [a-z-]+ failed)"/.test(line)
    )
      continue;
    try {
      const o = JSON.parse(line) as Record<string, unknown>;
      if (typeof o.time !== 'number' || typeof o.msg !== 'string') continue;
      const failed = STEP_FAILED.exec(o.msg);
      if (failed !== null) {
        out.push({ time: o.time, msg: o.msg, failedStep: failed[1]!, err: typeof o.err === 'string' ? o.err : '' });
        continue;
      }
      if (!WANTED.has(o.msg)) continue;
      out.push({
        time: o.time,
        msg: o.msg,
        ...(o.ops !== undefined ? { ops: o.ops as KernelOps } : {}),
        ...(typeof o.seconds === 'number' ? { seconds: o.seconds } : {}),
        ...(typeof o.nodes === 'number' ? { nodes: o.nodes } : {}),
        ...(typeof o.queuedMs === 'number' ? { queuedMs: o.queuedMs } : {}),
        ...(isQueuedBehind(o.queuedBehind)
          ? { queuedBehind: { full: o.queuedBehind.full, ms: o.queuedBehind.ms } }
          : {}),
      });
    } catch {
      // torn line
    }
  }
  return out;
}

function isQueuedBehind(v: unknown): v is { full: boolean; ms: number } {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return typeof o.full === 'boolean' && typeof o.ms === 'number';
}

/** Tails the agent log from where it stood when created (restarts append to the same file). */
export class AgentLog {
  private offset = 0;
  private rest = '';
  readonly lines: LogLine[] = [];

  private constructor(private readonly path: string) {}

  /** A tail starting at the current end of the file. */
  static async at(path: string): Promise<AgentLog> {
    const l = new AgentLog(path);
    const fh = await open(path, 'r').catch(() => undefined);
    if (fh !== undefined) {
      l.offset = (await fh.stat()).size;
      await fh.close();
    }
    return l;
  }

  /** Reads what was appended since the last call; returns the new wanted lines. */
  async poll(): Promise<LogLine[]> {
    const fh = await open(this.path, 'r').catch(() => undefined);
    if (fh === undefined) return [];
    try {
      const size = (await fh.stat()).size;
      if (size <= this.offset) return [];
      const buf = Buffer.alloc(size - this.offset);
      await fh.read(buf, 0, buf.length, this.offset);
      this.offset = size;
      const text = this.rest + buf.toString('utf8');
      const cut = text.lastIndexOf('\n');
      this.rest = text.slice(cut + 1);
      const fresh = parseLogLines(text.slice(0, cut + 1));
      this.lines.push(...fresh);
      return fresh;
    } finally {
      await fh.close();
    }
  }

  /** "kernel state updated" lines at or after `since` (ms epoch). */
  passes(since: number): LogLine[] {
    return this.lines.filter((l) => l.msg === 'kernel state updated' && l.time >= since);
  }

  /** "reconcile step X failed" lines at or after `since` (ms epoch). */
  failures(since: number): LogLine[] {
    return this.lines.filter((l) => l.failedStep !== undefined && l.time >= since);
  }

  /**
   * Throws when the agent reported a failed pass step at or after `since`: its figures would be
   * those of an agent that does not do its job (a bench once timed passes that failed steering
   * on every try, each one a full retry, and reported them as change latencies).
   */
  assertNoFailures(since: number, during: string): void {
    const f = this.failures(since);
    if (f.length === 0) return;
    const steps = [...new Set(f.map((l) => l.failedStep))].join(', ');
    throw new Error(
      `the agent reported ${f.length} failed reconcile step(s) (${steps}) ${during}; first: ${f[0]!.failedStep}: ${f[0]!.err}`,
    );
  }

  /** Polls until `pred` returns something, every `pollMs`; throws after `timeoutMs`. */
  async until<T>(
    what: string,
    pred: () => Promise<T | undefined> | T | undefined,
    o: { timeoutMs: number; pollMs?: number },
  ): Promise<T> {
    const deadline = Date.now() + o.timeoutMs;
    for (;;) {
      await this.poll();
      const v = await pred();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out after ${o.timeoutMs} ms waiting for ${what}`);
      await sleep(o.pollMs ?? 20);
    }
  }

  /** Waits until no "kernel state updated" line arrived for `quietMs`; returns the last line's time (or undefined). */
  async quiet(quietMs: number, timeoutMs: number): Promise<number | undefined> {
    const deadline = Date.now() + timeoutMs;
    let last = this.lines.filter((l) => l.msg === 'kernel state updated').at(-1)?.time;
    let since = Date.now();
    while (Date.now() < deadline) {
      const fresh = (await this.poll()).filter((l) => l.msg === 'kernel state updated');
      if (fresh.length > 0) {
        last = fresh.at(-1)?.time;
        since = Date.now();
      } else if (Date.now() - since >= quietMs) return last;
      await sleep(50);
    }
    throw new Error(`the agent did not go quiet (no kernel change for ${quietMs} ms) within ${timeoutMs} ms`);
  }
}

/** Sum of kernel ops over log lines. */
export function sumOps(lines: readonly { readonly ops?: KernelOps }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of lines) for (const [k, v] of Object.entries(l.ops ?? {})) out[k] = (out[k] ?? 0) + v;
  return out;
}

/** `a - b` per op, zero entries dropped. */
export function diffOps(a: KernelOps, b: KernelOps): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const d = (a[k] ?? 0) - (b[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

/** Samples of one Prometheus metric by the value of one label (`{op="peer_set"} 3` → {peer_set: 3}). */
export function metricByLabel(text: string, name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  const re = new RegExp(`^${name}\\{([^}]*)\\} ([0-9.e+-]+)$`);
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (m === null) continue;
    const lv = new RegExp(`(?:^|,)${label}="([^"]*)"`).exec(m[1] as string);
    if (lv === null) continue;
    out[lv[1] as string] = (out[lv[1] as string] ?? 0) + Number(m[2]);
  }
  return out;
}

/** A metric without labels (`name 12.5`); undefined when absent. */
export function metricPlain(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text);
  return m === null ? undefined : Number(m[1]);
}

/** The agent's counters the bench diffs: kernel operations, passes, and time spent in passes. */
export interface AgentCounters {
  readonly ops: Record<string, number>;
  readonly reconciles: number;
  readonly passSecondsSum: number | undefined;
  readonly passCount: number | undefined;
}

/** Reads {@link AgentCounters} from the agent's metrics endpoint. */
export async function agentCounters(c: NsCluster, node: string): Promise<AgentCounters> {
  const text = await scrapeMetrics(c, node);
  const reconciles = Object.values(metricByLabel(text, 'sealnet_reconciles_total', 'result')).reduce(
    (a, b) => a + b,
    0,
  );
  return {
    ops: metricByLabel(text, 'sealnet_kernel_operations_total', 'op'),
    reconciles,
    passSecondsSum: metricPlain(text, 'sealnet_reconcile_duration_seconds_sum'),
    passCount: metricPlain(text, 'sealnet_reconcile_duration_seconds_count'),
  };
}

/** USER_HZ: /proc reports CPU times in these ticks (100 on every Linux architecture we run on). */
const USER_HZ = 100;

/** Parses `/proc/<pid>/status` memory lines (kB) into MiB. */
export function parseProcStatus(text: string): { rssPeakMiB: number | undefined; rssMiB: number | undefined } {
  const kb = (field: string): number | undefined => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text);
    return m === null ? undefined : Number(m[1]) / 1024;
  };
  return { rssPeakMiB: kb('VmHWM'), rssMiB: kb('VmRSS') };
}

/** utime + stime in clock ticks from `/proc/<pid>/stat` (the comm field may hold spaces and parens). */
export function parseProcStatTicks(text: string): number | undefined {
  const after = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of the whole line; `after` starts at field 3 (state).
  const ut = Number(after[11]);
  const st = Number(after[12]);
  return Number.isFinite(ut) && Number.isFinite(st) ? ut + st : undefined;
}

function procSample(pid: number | undefined): {
  rssPeakMiB: number | undefined;
  rssMiB: number | undefined;
  cpuSeconds: number | undefined;
} {
  if (pid === undefined) return { rssPeakMiB: undefined, rssMiB: undefined, cpuSeconds: undefined };
  try {
    const mem = parseProcStatus(readFileSync(`/proc/${pid}/status`, 'utf8'));
    const ticks = parseProcStatTicks(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    return { ...mem, cpuSeconds: ticks === undefined ? undefined : ticks / USER_HZ };
  } catch {
    return { rssPeakMiB: undefined, rssMiB: undefined, cpuSeconds: undefined };
  }
}

/** The wireguard-go process in the same network namespace as `holderPid`. */
function wireguardGoPid(holderPid: number): number | undefined {
  let ns: string;
  try {
    ns = readlinkSync(`/proc/${holderPid}/ns/net`);
  } catch {
    return undefined;
  }
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() === 'wireguard-go' && readlinkSync(`/proc/${d}/ns/net`) === ns)
        return Number(d);
    } catch {
      // exited meanwhile
    }
  }
  return undefined;
}

/** The agent of `node` and its node's wireguard-go, now. */
export function sampleProcesses(c: NsCluster, node: string): ProcessSample {
  const agent = procSample(c.agentStatus(node).pid);
  const holder = c.topology().nodes.find((n) => n.name === node)?.holderPid;
  const wg = procSample(holder === undefined ? undefined : wireguardGoPid(holder));
  return { ...agent, wireguardGoRssMiB: wg.rssMiB, wireguardGoCpuSeconds: wg.cpuSeconds };
}

/** Reads `node`'s sealwg0 peers over UAPI (no process spawned). */
export function peerReader(c: NsCluster, node: string): () => Promise<UapiPeer[]> {
  const holder = c.topology().nodes.find((n) => n.name === node)?.holderPid;
  if (holder === undefined) throw new Error(`node ${node} has no mount-namespace holder`);
  const path = uapiSocketVia(holder, WG_INTERFACE);
  return () => uapiPeers(path, 20_000).catch(() => []);
}

/**
 * The keys (hex, as `routing/bpf/layout.ts` `encodeKey` writes them) of one `bpftool -j map
 * dump` of an LPM trie: bpftool prints each key as an array of `0x..` byte strings.
 */
export function lpmKeysFromDump(json: string): Set<string> {
  const rows = JSON.parse(json) as { key?: unknown }[];
  if (!Array.isArray(rows)) throw new Error('bpftool map dump: not a JSON array');
  const out = new Set<string>();
  for (const r of rows) {
    if (!Array.isArray(r.key)) throw new Error(`bpftool map dump: an entry without a byte-array key`);
    out.add((r.key as unknown[]).map((b) => (parseInt(String(b), 16) & 0xff).toString(16).padStart(2, '0')).join(''));
  }
  return out;
}

/**
 * The steering program's remote-prefix map on `node`, read from the kernel with bpftool (not
 * through the agent, whose metrics report its own view): the keys it holds.
 */
export async function steeringKeys(c: NsCluster, node: string): Promise<Set<string>> {
  const path = `${BPF_PIN_DIR}/${BPF_MAPS_SUBDIR}/${BPF_MAP_NAMES.remote}`;
  const r = await c.execNode(node, ['bpftool', '-j', 'map', 'dump', 'pinned', path], { timeoutMs: 30_000 });
  return lpmKeysFromDump(r.stdout);
}
