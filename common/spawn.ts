/**
 * Spawning helper tools (`ip`, `wg`) like a syscall: `execFile` with an argument
 * array (never a shell), `LC_ALL=C` so messages and number formats are stable, a timeout, and an
 * error that carries the command, exit code and stderr. Secrets go through files, never argv.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { SealnetError } from './errors.js';

/** Options for {@link run}. */
export interface RunOptions {
  /** Kill the child (SIGKILL) after this many milliseconds. Default 30 000. */
  readonly timeoutMs?: number;
  /** Written to the child's stdin, which is then closed. */
  readonly input?: string;
  /** Extra environment; the child otherwise gets only `PATH` and `LC_ALL=C`. */
  readonly env?: Record<string, string>;
  /**
   * Applied to stderr before it goes into an error (message and {@link SpawnError.stderr}),
   * for tools that may echo secrets (`wg` quotes a malformed key file's content).
   */
  readonly redact?: (text: string) => string;
}

/** Default timeout of {@link run}. */
export const DEFAULT_SPAWN_TIMEOUT_MS = 30_000;

// 64 MiB: `wg show dump` of a few thousand peers is ~1 MB; a runaway tool must not eat memory.
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;
// Longest stderr excerpt put into an error message.
const MAX_STDERR_IN_MESSAGE = 2000;

/** A failed spawn: `code` is `SPAWN_FAILED`; the fields say what ran and how it ended. */
export class SpawnError extends SealnetError {
  /** The program (as passed to {@link run}). */
  readonly cmd: string;
  /** Its arguments. */
  readonly args: readonly string[];
  /** Exit code, or undefined when it did not exit normally (signal, timeout, not found). */
  readonly exitCode: number | undefined;
  /** Signal that ended it, if any. */
  readonly signal: string | undefined;
  /** Its stderr, after the caller's `redact`. */
  readonly stderr: string;
  /** True when it was killed because the timeout expired. */
  readonly timedOut: boolean;
  /** errno name when the program could not be started (`ENOENT`, `EACCES`). */
  readonly errno: string | undefined;

  constructor(fields: {
    cmd: string;
    args: readonly string[];
    exitCode: number | undefined;
    signal: string | undefined;
    stderr: string;
    timedOut: boolean;
    errno: string | undefined;
    timeoutMs: number;
  }) {
    super('SPAWN_FAILED', describeFailure(fields));
    this.name = 'SpawnError';
    this.cmd = fields.cmd;
    this.args = fields.args;
    this.exitCode = fields.exitCode;
    this.signal = fields.signal;
    this.stderr = fields.stderr;
    this.timedOut = fields.timedOut;
    this.errno = fields.errno;
  }
}

function describeFailure(f: {
  cmd: string;
  args: readonly string[];
  exitCode: number | undefined;
  signal: string | undefined;
  stderr: string;
  timedOut: boolean;
  errno: string | undefined;
  timeoutMs: number;
}): string {
  const what = [f.cmd, ...f.args].map(quoteArg).join(' ');
  let how: string;
  if (f.timedOut) how = `timed out after ${f.timeoutMs} ms`;
  else if (f.errno !== undefined) how = `could not start (${f.errno})`;
  else if (f.signal !== undefined) how = `killed by ${f.signal}`;
  else how = `exit code ${f.exitCode ?? 'unknown'}`;
  const err = f.stderr.trim();
  const excerpt = err.length > MAX_STDERR_IN_MESSAGE ? `${err.slice(0, MAX_STDERR_IN_MESSAGE)}…` : err;
  return excerpt === '' ? `${what}: ${how}` : `${what}: ${how}: ${excerpt}`;
}

function quoteArg(a: string): string {
  return a === '' || /[^\w@%+=:,./-]/.test(a) ? JSON.stringify(a) : a;
}

/**
 * Runs `cmd args…` without a shell and resolves with its output when it exits 0.
 * @throws SpawnError (`SPAWN_FAILED`) on a non-zero exit, a signal, a timeout or a failed start.
 */
export async function run(
  cmd: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<{ stdout: string; stderr: string }> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_SPAWN_TIMEOUT_MS;
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    LC_ALL: 'C',
    ...opts.env,
  };
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      [...args],
      {
        env,
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: MAX_OUTPUT_BYTES,
        encoding: 'utf8',
        windowsHide: true,
      },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve({ stdout, stderr });
          return;
        }
        const e = error as NodeJS.ErrnoException & { killed?: boolean; signal?: NodeJS.Signals | null; code?: unknown };
        const errno = typeof e.code === 'string' ? e.code : undefined;
        const exitCode = typeof e.code === 'number' ? e.code : undefined;
        const signal = typeof e.signal === 'string' ? e.signal : undefined;
        const timedOut = e.killed === true && signal === 'SIGKILL' && errno === undefined;
        const redact = opts.redact ?? ((s: string): string => s);
        reject(
          new SpawnError({
            cmd,
            args,
            exitCode,
            signal,
            stderr: redact(String(stderr ?? '')),
            timedOut,
            errno: errno === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER' ? 'output too large' : errno,
            timeoutMs,
          }),
        );
      },
    );
    // Without input, close stdin at once so tools that read it see EOF instead of hanging.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(opts.input ?? '');
  });
}

/** One program of a {@link runPiped} pipeline. */
export interface PipedCommand {
  readonly cmd: string;
  readonly args: readonly string[];
}

/**
 * Runs `first | second` without a shell: `first`'s stdout goes straight into `second`'s stdin
 * through a kernel pipe between the two children, so this process never reads what `first`
 * prints — only `second`'s output. It is how secrets in a tool's output (the private key on the
 * first line of `wg show dump`) are cut away before they reach the agent's memory.
 * Resolves when both exited 0.
 * @throws SpawnError for `second` if it failed (then `first` may only have lost its reader), else
 *   for `first` (non-zero exit, signal, timeout, failed start).
 */
export async function runPiped(
  first: PipedCommand,
  second: PipedCommand,
  opts: Pick<RunOptions, 'timeoutMs' | 'redact'> = {},
): Promise<{ stdout: string }> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_SPAWN_TIMEOUT_MS;
  const env = { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };
  const redact = opts.redact ?? ((s: string): string => s);
  return new Promise((resolve, reject) => {
    let timedOut = false;
    const a = spawn(first.cmd, [...first.args], { env, stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    // Node stops reading a stream handed to another child and gives the child the pipe's fd.
    const b = spawn(second.cmd, [...second.args], {
      env,
      stdio: [a.stdout ?? 'ignore', 'pipe', 'pipe'],
      windowsHide: true,
    });
    // Our copy of the read end is not needed: close it, so `first` sees EPIPE if `second` dies.
    a.stdout?.destroy();
    const timer = setTimeout(() => {
      timedOut = true;
      a.kill('SIGKILL');
      b.kill('SIGKILL');
    }, timeoutMs);
    const out: Buffer[] = [];
    let outBytes = 0;
    const errA = boundedSink(MAX_STDERR_IN_MESSAGE * 4);
    const errB = boundedSink(MAX_STDERR_IN_MESSAGE * 4);
    b.stdout?.on('data', (c: Buffer) => {
      outBytes += c.length;
      if (outBytes > MAX_OUTPUT_BYTES) b.kill('SIGKILL');
      else out.push(c);
    });
    a.stderr?.on('data', errA.push);
    b.stderr?.on('data', errB.push);
    const ended = (p: ChildProcess): Promise<Ending> =>
      new Promise((r) => {
        p.once('error', (e: NodeJS.ErrnoException) => r({ code: null, signal: null, errno: e.code ?? 'spawn error' }));
        p.once('close', (code, signal) => r({ code, signal }));
      });
    void Promise.all([ended(a), ended(b)]).then(([ea, eb]) => {
      clearTimeout(timer);
      const failed = (e: Ending): boolean => e.errno !== undefined || e.code !== 0;
      // When both failed, `second` is the cause: `first` then only lost its reader (EPIPE).
      const pick: [PipedCommand, Ending, { text(): string }] | undefined = failed(eb)
        ? [second, eb, errB]
        : failed(ea)
          ? [first, ea, errA]
          : outBytes > MAX_OUTPUT_BYTES
            ? [second, { ...eb, errno: 'output too large' }, errB]
            : undefined;
      if (pick === undefined) {
        resolve({ stdout: Buffer.concat(out).toString('utf8') });
        return;
      }
      const [c, e, err] = pick;
      reject(
        new SpawnError({
          cmd: c.cmd,
          args: c.args,
          exitCode: e.code ?? undefined,
          signal: e.signal ?? undefined,
          stderr: redact(err.text()),
          timedOut,
          errno: e.errno,
          timeoutMs,
        }),
      );
    });
  });
}

interface Ending {
  readonly code: number | null;
  readonly signal: string | null;
  readonly errno?: string;
}

/** Collects chunks up to `limit` bytes and drops the rest. */
function boundedSink(limit: number): { push: (c: Buffer) => void; text: () => string } {
  const chunks: Buffer[] = [];
  let bytes = 0;
  return {
    push: (c: Buffer): void => {
      if (bytes >= limit) return;
      chunks.push(c);
      bytes += c.length;
    },
    text: (): string => Buffer.concat(chunks).toString('utf8'),
  };
}
