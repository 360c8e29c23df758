/**
 * Load generators run inside pod namespaces: iperf3 (bulk TCP) and the ping-pong tool
 * (request/response latency, `tools/pingpong.mjs`). Failures come back as values, so one bad
 * sample is recorded and the round goes on.
 */
import { join } from 'node:path';
import type { NsCluster } from '../harness/cluster.js';
import { sleep, type BackgroundProcess } from '../harness/exec.js';
import { repoRoot } from '../harness/paths.js';

/** The ping-pong tool (plain JS, not compiled: it runs as is with `node`). */
export function pingPongToolPath(): string {
  return join(repoRoot(), 'test', 'bench', 'tools', 'pingpong.mjs');
}

/** Resolves once something in `pod` listens on TCP `port`; fails early if `proc` exited. */
export async function waitListening(
  c: NsCluster,
  opts: { pod: string; port: number; proc: BackgroundProcess; timeoutMs?: number },
): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  while (Date.now() < deadline) {
    if (!opts.proc.running())
      throw new Error(`${opts.proc.argv.slice(-4).join(' ')} in ${opts.pod} exited before listening`);
    const r = await c.execPod(opts.pod, ['ss', '-Hltn', `sport = :${opts.port}`], { check: false });
    if (r.stdout.trim() !== '') return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${opts.pod}:${opts.port} after ${opts.timeoutMs ?? 10_000} ms`);
}

/** A long-running iperf3 server in a pod; restartable after a failed test leaves it stuck. */
export class IperfServer {
  private proc: BackgroundProcess | undefined;

  constructor(
    private readonly c: NsCluster,
    /** `cpus`: a taskset CPU list the server is pinned to (e.g. "0"); default unpinned. */
    private readonly opts: { pod: string; port: number; cpus?: string },
  ) {}

  /** Starts (or restarts) the server and waits until it listens. */
  async restart(): Promise<void> {
    await this.proc?.stop({ timeoutMs: 2000 });
    const log = join(await this.c.workDir('bench'), `iperf3-${this.opts.pod}-${this.opts.port}.log`);
    const pin = this.opts.cpus === undefined ? [] : ['taskset', '-c', this.opts.cpus];
    this.proc = this.c.spawnPod(this.opts.pod, [...pin, 'iperf3', '-s', '-p', String(this.opts.port)], {
      logFile: log,
    });
    await waitListening(this.c, { pod: this.opts.pod, port: this.opts.port, proc: this.proc });
  }

  /** Stops the server. */
  async stop(): Promise<void> {
    await this.proc?.stop({ timeoutMs: 2000 });
  }
}

/** What one iperf3 client run measured. */
export interface IperfOutcome {
  readonly bitsPerSecond: number | undefined;
  readonly retransmits: number | undefined;
  readonly cpuLocal: number | undefined;
  readonly cpuRemote: number | undefined;
  /** Bytes the receiver got (goodput × duration, as iperf3 counted it). */
  readonly bytes: number | undefined;
  readonly error: string | undefined;
}

interface IperfJson {
  error?: string;
  end?: {
    sum_received?: { bits_per_second?: number; bytes?: number };
    sum_sent?: { retransmits?: number };
    cpu_utilization_percent?: { host_total?: number; remote_total?: number };
  };
}

/** Runs an iperf3 client in `from` against the server in `to`; `reverse` makes `to` send. */
export async function runIperf(
  c: NsCluster,
  o: { from: string; to: string; port: number; seconds: number; streams: number; reverse: boolean; cpus?: string },
): Promise<IperfOutcome> {
  const argv = [
    ...(o.cpus === undefined ? [] : ['taskset', '-c', o.cpus]),
    'iperf3',
    '-c',
    c.resolve(o.to),
    '-p',
    String(o.port),
    '-t',
    String(o.seconds),
    '-P',
    String(o.streams),
    '--connect-timeout',
    '3000',
    '-J',
  ];
  if (o.reverse) argv.push('-R');
  const r = await c
    .execPod(o.from, argv, { check: false, timeoutMs: (o.seconds + 15) * 1000 })
    .catch((e: unknown) => ({ stdout: '', stderr: String(e), code: undefined }));
  let j: IperfJson;
  try {
    j = JSON.parse(r.stdout) as IperfJson;
  } catch {
    return failed(`iperf3 exit ${r.code ?? 'signal'}: ${r.stderr.trim().slice(0, 300) || 'no JSON output'}`);
  }
  const bps = j.end?.sum_received?.bits_per_second;
  if (j.error !== undefined || bps === undefined || r.code !== 0)
    return failed(`iperf3: ${j.error ?? `exit ${r.code ?? 'signal'}`}`);
  return {
    bitsPerSecond: bps,
    retransmits: j.end?.sum_sent?.retransmits,
    cpuLocal: j.end?.cpu_utilization_percent?.host_total,
    cpuRemote: j.end?.cpu_utilization_percent?.remote_total,
    bytes: j.end?.sum_received?.bytes,
    error: undefined,
  };
}

function failed(error: string): IperfOutcome {
  return {
    bitsPerSecond: undefined,
    retransmits: undefined,
    cpuLocal: undefined,
    cpuRemote: undefined,
    bytes: undefined,
    error,
  };
}

/** Starts the ping-pong echo server in a pod and waits until it listens. */
export async function startPingPongServer(
  c: NsCluster,
  opts: { pod: string; port: number },
): Promise<BackgroundProcess> {
  const log = join(await c.workDir('bench'), `pingpong-${opts.pod}.log`);
  const proc = c.spawnPod(opts.pod, [process.execPath, pingPongToolPath(), 'server', '--port', String(opts.port)], {
    logFile: log,
  });
  await waitListening(c, { pod: opts.pod, port: opts.port, proc });
  return proc;
}

/** Round trips of one ping-pong client run (µs), or the error. */
export async function runPingPong(
  c: NsCluster,
  o: { from: string; to: string; port: number; count: number; warmup: number; size: number },
): Promise<{ rttUs: number[]; error: string | undefined }> {
  const argv = [
    process.execPath,
    pingPongToolPath(),
    'client',
    '--host',
    c.resolve(o.to),
    '--port',
    String(o.port),
    '--count',
    String(o.count),
    '--warmup',
    String(o.warmup),
    '--size',
    String(o.size),
    '--timeout-ms',
    '20000',
  ];
  const r = await c
    .execPod(o.from, argv, { check: false, timeoutMs: 30_000 })
    .catch((e: unknown) => ({ stdout: '', stderr: String(e), code: undefined }));
  try {
    const j = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as { ok: boolean; rttUs: number[]; error?: string };
    return { rttUs: j.rttUs, error: j.ok ? undefined : (j.error ?? 'failed') };
  } catch {
    return { rttUs: [], error: `ping-pong exit ${r.code ?? 'signal'}: ${r.stderr.trim().slice(0, 300)}` };
  }
}
