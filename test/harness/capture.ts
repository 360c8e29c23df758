/**
 * Packet capture on the underlay: tcpdump writes a pcap inside a namespace, and the pcap is
 * analysed here in TypeScript ({@link summarizeCapture}), so a leak verdict never depends on
 * parsing tcpdump's text output.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { SealnetError } from '../../common/errors.js';
import { childEnv, sleep } from './exec.js';
import { summarizeCapture, type CaptureSummary, type SummarizeOptions } from './leaks.js';
import { readPcap } from './pcap.js';

/** Options for {@link startCapture}. */
export interface CaptureOptions extends SummarizeOptions {
  /** Network namespace to capture in (by name, as in /run/netns). */
  readonly netns: string;
  readonly iface: string;
  /** pcap output file. */
  readonly file: string;
  /** How long to wait for tcpdump to start listening (default 10 s). */
  readonly startTimeoutMs?: number;
  /** Kernel capture buffer in KiB (`tcpdump -B`; default libpcap's, 2 MiB): raise it for long, busy captures on a loaded machine. */
  readonly bufferKiB?: number;
}

/** The verdict of one capture: the pcap summary plus tcpdump's own counters. */
export interface CaptureResult extends CaptureSummary {
  readonly file: string;
  /** tcpdump's "packets dropped by kernel" (a capture with drops proves less). */
  readonly kernelDropped: number | undefined;
  readonly tcpdumpCaptured: number | undefined;
  /**
   * The capture is trustworthy: tcpdump reported its counters, dropped nothing, and the file
   * holds exactly the packets tcpdump says it captured, none truncated.
   */
  readonly complete: boolean;
}

/** A running capture. */
export interface Capture {
  readonly file: string;
  readonly pid: number;
  /** Waits `settleMs` (default 300) for in-flight packets, stops tcpdump, analyses the file. */
  stop(opts?: { settleMs?: number }): Promise<CaptureResult>;
  /** Kills tcpdump without analysing (teardown path). Safe to call twice. */
  abort(): void;
}

/** Starts `tcpdump -i IFACE -U -s 0 -w FILE` in a namespace and waits until it listens. */
export async function startCapture(opts: CaptureOptions): Promise<Capture> {
  // --immediate-mode: without it libpcap's TPACKET_V3 ring hands packets over in blocks that
  // retire after up to a second, and packets of a block still open at SIGINT are never
  // written: a short capture came back empty. -Z root: Debian's tcpdump otherwise drops to
  // the `tcpdump` user and cannot write into a root-owned run directory. -n: no DNS lookups.
  const argv = [
    'nsenter',
    `--net=/run/netns/${opts.netns}`,
    '--',
    'tcpdump',
    '-i',
    opts.iface,
    '--immediate-mode',
    '-U',
    '-s',
    '0',
    '-n',
    '-Z',
    'root',
    ...(opts.bufferKiB !== undefined ? ['-B', String(opts.bufferKiB)] : []),
    '-w',
    opts.file,
  ];
  const child = spawn(argv[0] as string, argv.slice(1), {
    env: childEnv(),
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  child.unref();
  let stderr = '';
  let exited = false;
  const exitP = new Promise<void>((resolve) => {
    child.on('exit', () => {
      exited = true;
      resolve();
    });
    child.on('error', () => {
      exited = true;
      resolve();
    });
  });
  const listening = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new SealnetError(
            'SPAWN_FAILED',
            `tcpdump on ${opts.netns}/${opts.iface} did not start listening; stderr: ${stderr.trim()}`,
          ),
        ),
      opts.startTimeoutMs ?? 10_000,
    );
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString('utf8');
      if (/listening on /.test(stderr)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exitP.then(() => {
      clearTimeout(timer);
      reject(
        new SealnetError(
          'SPAWN_FAILED',
          `tcpdump on ${opts.netns}/${opts.iface} exited before listening; stderr: ${stderr.trim()}`,
        ),
      );
    });
  });
  try {
    await listening;
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  const pid = child.pid as number;
  const kill = (sig: NodeJS.Signals): void => {
    if (exited) return;
    try {
      process.kill(pid, sig);
    } catch {
      // gone already
    }
  };
  return {
    file: opts.file,
    pid,
    abort: () => kill('SIGKILL'),
    async stop(o = {}) {
      await sleep(o.settleMs ?? 300);
      kill('SIGINT'); // tcpdump flushes the file and prints its counters on SIGINT
      const t = setTimeout(() => kill('SIGKILL'), 5000);
      await exitP;
      clearTimeout(t);
      const pcap = readPcap(await readFile(opts.file));
      const summary = summarizeCapture(pcap, opts);
      const counters = parseTcpdumpCounters(stderr);
      const complete =
        counters.kernelDropped === 0 &&
        counters.tcpdumpCaptured === summary.totalPackets &&
        !summary.truncatedFile &&
        summary.snappedPackets === 0;
      return { ...summary, file: opts.file, ...counters, complete };
    },
  };
}

/** Reads tcpdump's exit counters ("N packets captured", "N packets dropped by kernel"). */
export function parseTcpdumpCounters(stderr: string): {
  kernelDropped: number | undefined;
  tcpdumpCaptured: number | undefined;
} {
  const num = (re: RegExp): number | undefined => {
    const m = re.exec(stderr);
    return m?.[1] === undefined ? undefined : Number(m[1]);
  };
  return { kernelDropped: num(/(\d+) packets? dropped by kernel/), tcpdumpCaptured: num(/(\d+) packets? captured/) };
}
