/**
 * Typed wrappers around the traffic tools in `test/tools/` (canary echo, numbered TCP stream,
 * numbered UDP stream), run with `node` inside pod namespaces of an {@link NsCluster}.
 */
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { NsCluster } from './cluster.js';
import { sleep, type BackgroundProcess } from './exec.js';
import { toolPath } from './paths.js';

/** A fresh canary: exactly 16 ASCII bytes, so `ping -p` can carry it whole. */
export function newCanary(): string {
  return `SEALCANARY${randomBytes(3).toString('hex')}`;
}

/** Hex of a canary for `ping -p` (at most 16 bytes). */
export function canaryPingPattern(canary: string): string {
  return Buffer.from(canary, 'utf8').subarray(0, 16).toString('hex');
}

/** Polls `path` until `ready(text)` holds; fails early when `proc` exits. */
async function waitForFile(
  path: string,
  opts: { ready: (text: string) => boolean; proc: BackgroundProcess; timeoutMs: number },
): Promise<string> {
  const { ready: test, proc, timeoutMs } = opts;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const text = await readFile(path, 'utf8').catch(() => '');
    if (test(text)) return text;
    if (!proc.running()) throw new Error(`${proc.argv.join(' ')} exited early; output: ${text.trim()}`);
    await sleep(20);
  }
  throw new Error(`${proc.argv.join(' ')} not ready after ${timeoutMs} ms`);
}

/**
 * Waits like {@link waitForFile}; when that fails, stops every process of the stream started so
 * far (a stream that never started must not leave a half behind, loading the host or the guest
 * for the tests after it) and rethrows.
 */
async function readyOrStop(
  path: string,
  opts: { ready: (text: string) => boolean; proc: BackgroundProcess; timeoutMs: number },
  started: readonly BackgroundProcess[],
): Promise<string> {
  try {
    return await waitForFile(path, opts);
  } catch (err) {
    await Promise.all(started.map((p) => p.stop({ signal: 'SIGTERM', timeoutMs: 3000 }).catch(() => undefined)));
    throw err;
  }
}

let canaryServerStarts = 0;

/** Starts the canary echo server (TCP and UDP on `port`) in a pod; resolves once it listens. */
export async function startCanaryServer(
  cluster: NsCluster,
  opts: { pod: string; port?: number },
): Promise<BackgroundProcess> {
  const { pod, port = 7001 } = opts;
  // A log of its own per start: the log is opened for appending, and a name shared with an
  // earlier server in the same pod held that server's "listening" line, so the wait returned at
  // once and the first client could connect before this server listened (ECONNREFUSED in CI).
  const log = join(await cluster.workDir('canary'), `${pod}-server-${Date.now()}-${++canaryServerStarts}.log`);
  // With IPv6 in the cluster, one dual-stack socket serves both families.
  const bind = cluster.addressPlan.v6 ? ['--bind', '::'] : [];
  const proc = cluster.spawnPod(
    pod,
    [process.execPath, toolPath('canary.mjs'), 'server', '--port', String(port), ...bind],
    { logFile: log },
  );
  // In the qemu guest (TCG, a shared host) a node process can take tens of seconds to start.
  const timeoutMs = process.env['SEALNET_VM_GUEST'] === '1' ? 60_000 : 10_000;
  await waitForFile(log, { ready: (t) => t.includes('"listening"'), proc, timeoutMs });
  return proc;
}

/** Result line of `canary.mjs client`. */
export interface CanaryResult {
  readonly ok: boolean;
  readonly proto: 'tcp' | 'udp';
  readonly sent: number;
  readonly echoed: number;
  readonly bytes: number;
  readonly ms: number;
  readonly error?: string;
}

/** Sends canary messages from a pod to a pod (or address) and waits for the echo. */
export async function runCanary(
  cluster: NsCluster,
  opts: {
    from: string;
    to: string;
    proto: 'tcp' | 'udp';
    canary: string;
    port?: number;
    count?: number;
    size?: number;
    timeoutMs?: number;
  },
): Promise<CanaryResult> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const argv = [
    process.execPath,
    toolPath('canary.mjs'),
    'client',
    '--proto',
    opts.proto,
    '--host',
    cluster.resolve(opts.to),
    '--port',
    String(opts.port ?? 7001),
    '--canary',
    opts.canary,
    '--count',
    String(opts.count ?? 3),
    '--size',
    String(opts.size ?? 200),
    '--timeout-ms',
    String(timeoutMs),
  ];
  const r = await cluster.execPod(opts.from, argv, { check: false, timeoutMs: timeoutMs + 10_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as CanaryResult;
  } catch {
    return {
      ok: false,
      proto: opts.proto,
      sent: 0,
      echoed: 0,
      bytes: 0,
      ms: 0,
      error: `no result (exit ${r.code}): ${r.stderr.trim().slice(0, 500)}`,
    };
  }
}

/** Status file of the TCP stream client. */
export interface TcpStreamClientStatus {
  readonly connected: boolean;
  readonly connections: number;
  readonly breaks: readonly { at: number; error: string; ackedSeq: number }[];
  readonly recordsSent: number;
  readonly bytesSent: number;
  readonly ackedSeq: number;
  readonly bytesAcked: number;
  readonly maxStallMs: number;
  readonly stalls: readonly { from: number; ms: number; open?: boolean }[];
  readonly done: boolean;
}

/** Status file of the TCP stream server. */
export interface TcpStreamServerStatus {
  readonly connections: number;
  readonly active: number;
  readonly recordsReceived: number;
  readonly bytesReceived: number;
  readonly gaps: readonly { expected: number; got: number; at: number }[];
  readonly duplicates: number;
  readonly corrupt: number;
  readonly breaks: readonly { at: number; error: string }[];
  readonly done: boolean;
}

/** A numbered TCP stream between two pods. */
export interface TcpStream {
  readonly name: string;
  /** Current status of both ends (either may be undefined before the first write). */
  status(): Promise<{ client: TcpStreamClientStatus | undefined; server: TcpStreamServerStatus | undefined }>;
  /** Stops the client, then the server; returns their final status. */
  stop(): Promise<{ client: TcpStreamClientStatus | undefined; server: TcpStreamServerStatus | undefined }>;
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** Starts a numbered TCP stream `from` → `to`; resolves once the client is connected. */
export async function startTcpStream(
  cluster: NsCluster,
  opts: {
    from: string;
    to: string;
    port?: number;
    rateBps?: number;
    recordSize?: number;
    name?: string;
    stallReportMs?: number;
    /** How long the server may take to listen (default 10 s; the client's first acknowledgement gets 5 s more). */
    readyTimeoutMs?: number;
  },
): Promise<TcpStream> {
  const readyMs = opts.readyTimeoutMs ?? 10_000;
  const name = opts.name ?? `tcp-${opts.from}-${opts.to}-${Date.now()}`;
  const dir = await cluster.workDir('streams');
  const port = String(opts.port ?? 7101);
  const serverStatus = join(dir, `${name}.server.json`);
  const clientStatus = join(dir, `${name}.client.json`);
  const size = String(opts.recordSize ?? 1024);
  // A stream started again under the same name must not be judged ready by the last one's status.
  await Promise.all([rm(serverStatus, { force: true }), rm(clientStatus, { force: true })]);
  const server = cluster.spawnPod(
    opts.to,
    [
      process.execPath,
      toolPath('tcp-stream.mjs'),
      'server',
      '--port',
      port,
      '--status',
      serverStatus,
      '--record-size',
      size,
    ],
    { logFile: join(dir, `${name}.server.log`) },
  );
  await readyOrStop(serverStatus, { ready: (t) => t.length > 0, proc: server, timeoutMs: readyMs }, [server]);
  const client = cluster.spawnPod(
    opts.from,
    [
      process.execPath,
      toolPath('tcp-stream.mjs'),
      'client',
      '--host',
      cluster.resolve(opts.to),
      '--port',
      port,
      '--status',
      clientStatus,
      '--record-size',
      size,
      '--rate-bps',
      String(opts.rateBps ?? 2_000_000),
      '--stall-report-ms',
      String(opts.stallReportMs ?? 1000),
    ],
    { logFile: join(dir, `${name}.client.log`) },
  );
  // Ready once the server acknowledged the first record: the path works end to end.
  await readyOrStop(
    clientStatus,
    {
      ready: (t) => t !== '' && (JSON.parse(t) as { ackedSeq: number }).ackedSeq >= 0,
      proc: client,
      timeoutMs: readyMs + 5_000,
    },
    [client, server],
  );
  const status = async (): Promise<{
    client: TcpStreamClientStatus | undefined;
    server: TcpStreamServerStatus | undefined;
  }> => ({
    client: await readJson<TcpStreamClientStatus>(clientStatus),
    server: await readJson<TcpStreamServerStatus>(serverStatus),
  });
  return {
    name,
    status,
    async stop() {
      await client.stop({ signal: 'SIGTERM', timeoutMs: 3000 });
      await server.stop({ signal: 'SIGTERM', timeoutMs: 3000 });
      return status();
    },
  };
}

/** Status of a UDP stream, combined from both ends. */
export interface UdpStreamResult {
  readonly sent: number;
  readonly received: number;
  readonly lost: number;
  readonly duplicates: number;
  readonly reordered: number;
  readonly longestGap: number;
  readonly gaps: readonly { from: number; count: number }[];
  readonly sendErrors: number;
  readonly pps: number;
  /** When the sender started (ms since the epoch): sequence n left at about startedAt + n / pps. */
  readonly startedAt: number;
  /**
   * The receiver namespace's Udp RcvbufErrors when the receiver last wrote its status (cumulative;
   * datagrams that arrived and were dropped because the receiver did not read in time), with
   * that time; undefined when unreadable or not yet written.
   */
  readonly rcvbufErrors?: { readonly at: number; readonly count: number };
  /** The receive buffer the kernel granted the receiver's socket (bytes, as SO_RCVBUF reports it). */
  readonly rcvbufBytes?: number;
}

/** A numbered UDP stream between two pods. */
export interface UdpStream {
  readonly name: string;
  status(): Promise<UdpStreamResult | undefined>;
  /** Stops the sender, lets the last datagrams arrive, stops the receiver. */
  stop(): Promise<UdpStreamResult | undefined>;
}

interface UdpSenderStatus {
  stream: string;
  startedAt: number;
  sent: number;
  sendErrors: number;
  pps: number;
}
interface UdpReceiverStatus {
  now?: number;
  rcvbufErrors?: number | null;
  rcvbufBytes?: number | null;
  streams: Record<
    string,
    {
      received: number;
      duplicates: number;
      reordered: number;
      longestGap: number;
      gaps: { from: number; count: number }[];
      maxSeq: number;
    }
  >;
}

/**
 * Starts a numbered UDP stream `from` → `to` at `pps` datagrams per second; with `canary`, every
 * datagram carries it (after the 24-byte header, repeated).
 */
export async function startUdpStream(
  cluster: NsCluster,
  opts: {
    from: string;
    to: string;
    port?: number;
    pps?: number;
    size?: number;
    name?: string;
    canary?: string;
    /** A larger receive buffer for the receiver's socket (capped by the kernel's net.core.rmem_max). */
    rcvbufBytes?: number;
    /** How long each end may take to start (default 10 s). */
    readyTimeoutMs?: number;
  },
): Promise<UdpStream> {
  const readyMs = opts.readyTimeoutMs ?? 10_000;
  const name = opts.name ?? `udp-${opts.from}-${opts.to}-${Date.now()}`;
  const dir = await cluster.workDir('streams');
  const port = String(opts.port ?? 7201);
  const rxStatus = join(dir, `${name}.receiver.json`);
  const txStatus = join(dir, `${name}.sender.json`);
  // A stream started again under the same name must not be judged ready by the last one's status.
  await Promise.all([rm(rxStatus, { force: true }), rm(txStatus, { force: true })]);
  const rx = cluster.spawnPod(
    opts.to,
    [
      process.execPath,
      toolPath('udp-stream.mjs'),
      'receiver',
      '--port',
      port,
      '--status',
      rxStatus,
      ...(opts.rcvbufBytes !== undefined ? ['--rcvbuf', String(opts.rcvbufBytes)] : []),
    ],
    { logFile: join(dir, `${name}.receiver.log`) },
  );
  await readyOrStop(rxStatus, { ready: (t) => t.length > 0, proc: rx, timeoutMs: readyMs }, [rx]);
  const tx = cluster.spawnPod(
    opts.from,
    [
      process.execPath,
      toolPath('udp-stream.mjs'),
      'sender',
      '--host',
      cluster.resolve(opts.to),
      '--port',
      port,
      '--status',
      txStatus,
      '--pps',
      String(opts.pps ?? 500),
      '--size',
      String(opts.size ?? 200),
      ...(opts.canary !== undefined ? ['--canary', opts.canary] : []),
    ],
    {
      logFile: join(dir, `${name}.sender.log`),
    },
  );
  await readyOrStop(txStatus, { ready: (t) => t.length > 0, proc: tx, timeoutMs: readyMs }, [tx, rx]);
  const status = async (): Promise<UdpStreamResult | undefined> => {
    const s = await readJson<UdpSenderStatus>(txStatus);
    const r = await readJson<UdpReceiverStatus>(rxStatus);
    if (s === undefined) return undefined;
    const mine = r?.streams[s.stream];
    const received = mine?.received ?? 0;
    return {
      sent: s.sent,
      received,
      lost: s.sent - received,
      duplicates: mine?.duplicates ?? 0,
      reordered: mine?.reordered ?? 0,
      longestGap: mine?.longestGap ?? 0,
      gaps: mine?.gaps ?? [],
      sendErrors: s.sendErrors,
      pps: s.pps,
      startedAt: s.startedAt,
      ...(typeof r?.rcvbufErrors === 'number' && r.now !== undefined
        ? { rcvbufErrors: { at: r.now, count: r.rcvbufErrors } }
        : {}),
      ...(typeof r?.rcvbufBytes === 'number' ? { rcvbufBytes: r.rcvbufBytes } : {}),
    };
  };
  return {
    name,
    status,
    async stop() {
      await tx.stop({ signal: 'SIGTERM', timeoutMs: 3000 });
      await sleep(200);
      await rx.stop({ signal: 'SIGTERM', timeoutMs: 3000 });
      return status();
    },
  };
}
