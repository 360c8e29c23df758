/**
 * Spawning for the test harness, "like a syscall" (STYLE.md 8): argument arrays, no shell,
 * `LC_ALL=C`, a timeout, and errors that carry the command, exit code and stderr. Stdout is
 * never copied into an error: some commands (`wg show dump`) print secrets there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { SealnetError } from '../../common/errors.js';
import { trackWait } from './wait.js';

/** What a finished command produced. */
export interface ExecResult {
  readonly stdout: string;
  readonly stderr: string;
  /** Exit code, or undefined when the process was killed by a signal. */
  readonly code: number | undefined;
  readonly signal: NodeJS.Signals | undefined;
}

/** Options for {@link run}. */
export interface RunOptions {
  /** Milliseconds before the process is SIGKILLed and the call fails (default 30 s). */
  readonly timeoutMs?: number;
  /** Written to stdin, then stdin is closed. */
  readonly input?: string;
  /** When false a non-zero exit is returned, not thrown (default true). */
  readonly check?: boolean;
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
}

const MAX_STDERR_IN_ERROR = 2000;
/**
 * How long {@link run} waits for a child's stdio to close after the child exited. A grandchild
 * that inherited the pipes (a daemon that did not redirect them) would otherwise keep 'close'
 * from ever firing: the caller hangs with an idle event loop (issue 17).
 */
export const STDIO_GRACE_MS = 3000;

/** A command the harness killed because it outlived its timeout (a probe may treat it as "not yet"). */
export class ExecTimeoutError extends SealnetError {
  constructor(message: string) {
    super('SPAWN_FAILED', message);
    this.name = 'ExecTimeoutError';
  }
}

/**
 * The environment every harness child gets: the caller's plus `LC_ALL=C`, minus NODE_OPTIONS
 * (jest's `--experimental-vm-modules` is meant for jest, not for agents and tools).
 */
export function childEnv(extra?: Readonly<Record<string, string>>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C', ...extra };
  if (extra?.NODE_OPTIONS === undefined) delete env.NODE_OPTIONS;
  return env;
}

/** Runs `argv` to completion and collects its output. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<ExecResult> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return Promise.reject(new SealnetError('INTERNAL', 'run: empty argv'));
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: childEnv(opts.env), cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let stdioHeld = false;
    const done = trackWait(`${describeArgv(argv).slice(0, 200)} (pid ${child.pid ?? '?'})`, Date.now() + timeoutMs);
    const dropStdio = (): void => {
      for (const s of [child.stdin, child.stdout, child.stderr]) s?.destroy();
    };
    let grace: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
      // If the child is long gone and a grandchild holds the pipes, killing does nothing.
      grace = setTimeout(dropStdio, STDIO_GRACE_MS);
    }, timeoutMs);
    child.on('exit', () => {
      clearTimeout(grace);
      grace = setTimeout(() => {
        stdioHeld = true;
        dropStdio();
      }, STDIO_GRACE_MS);
    });
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.stdin.on('error', () => undefined); // the child may exit without reading its input
    child.stdin.end(opts.input ?? '');
    child.on('error', (e) => {
      clearTimeout(timer);
      clearTimeout(grace);
      done();
      reject(new SealnetError('SPAWN_FAILED', `cannot start ${describeArgv(argv)}`, { cause: e }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(grace);
      done();
      const held = stdioHeld
        ? `\n[harness: the process exited but its output pipes stayed open ${STDIO_GRACE_MS} ms longer (a child of it holds them); output cut there]`
        : '';
      const result: ExecResult = {
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8') + held,
        code: code ?? undefined,
        signal: signal ?? undefined,
      };
      if (timedOut) {
        reject(
          new ExecTimeoutError(`${describeArgv(argv)} timed out after ${timeoutMs} ms; stderr: ${clip(result.stderr)}`),
        );
      } else if (opts.check !== false && code !== 0) {
        const how = code === null ? `was killed by ${signal}` : `exited with ${code}`;
        reject(new SealnetError('SPAWN_FAILED', `${describeArgv(argv)} ${how}; stderr: ${clip(result.stderr)}`));
      } else {
        resolve(result);
      }
    });
  });
}

/** Options for {@link spawnBackground}. */
export interface BackgroundOptions {
  /** stdout and stderr are appended to this file (default: discarded). */
  readonly logFile?: string;
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  /**
   * Own process group and no tie to this process's lifetime (default true), so that a
   * Ctrl-C in the terminal reaches the harness, which then tears down in order, and so
   * that `demo --keep` can leave the process running after the harness exits.
   */
  readonly detached?: boolean;
}

/** A long-running child. */
export interface BackgroundProcess {
  readonly pid: number;
  readonly argv: readonly string[];
  /** Resolves with the exit code / signal once the process ended. */
  readonly exited: Promise<{ code: number | undefined; signal: NodeJS.Signals | undefined }>;
  /** True until the process exited. */
  running(): boolean;
  /** Sends a signal; a no-op if it already exited. */
  kill(signal?: NodeJS.Signals): void;
  /** Sends `signal`, waits up to `timeoutMs`, then SIGKILLs; resolves after exit. */
  stop(opts?: { signal?: NodeJS.Signals; timeoutMs?: number }): Promise<void>;
}

/** Starts `argv` in the background with output to a log file. */
export function spawnBackground(argv: readonly string[], opts: BackgroundOptions = {}): BackgroundProcess {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new SealnetError('INTERNAL', 'spawnBackground: empty argv');
  const fd = opts.logFile === undefined ? undefined : openSync(opts.logFile, 'a', 0o600);
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, {
      env: childEnv(opts.env),
      cwd: opts.cwd,
      detached: opts.detached ?? true,
      stdio: ['ignore', fd ?? 'ignore', fd ?? 'ignore'],
    });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  if (child.pid === undefined) throw new SealnetError('SPAWN_FAILED', `cannot start ${describeArgv(argv)}`);
  let alive = true;
  const exited = new Promise<{ code: number | undefined; signal: NodeJS.Signals | undefined }>((resolve) => {
    child.on('error', () => {
      alive = false;
      resolve({ code: undefined, signal: undefined });
    });
    child.on('exit', (code, signal) => {
      alive = false;
      resolve({ code: code ?? undefined, signal: signal ?? undefined });
    });
  });
  // The harness must be able to exit while these run (demo --keep); teardown tracks them by pid.
  child.unref();
  const pid = child.pid;
  const kill = (signal: NodeJS.Signals = 'SIGTERM'): void => {
    if (!alive) return;
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  };
  return {
    pid,
    argv,
    exited,
    running: () => alive,
    kill,
    async stop(o = {}) {
      if (!alive) return;
      kill(o.signal ?? 'SIGTERM');
      const t = setTimeout(() => kill('SIGKILL'), o.timeoutMs ?? 5000);
      const done = trackWait(`${describeArgv(argv).slice(0, 200)} (pid ${pid}) to exit after ${o.signal ?? 'SIGTERM'}`);
      await exited;
      done();
      clearTimeout(t);
    },
  };
}

/** Runs `fn` over `items` with at most `opts.limit` calls in flight; results keep input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  fn: (item: T, index: number) => Promise<R>,
  opts: { limit: number },
): Promise<R[]> {
  const limit = Math.max(1, opts.limit);
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A command line for messages (arguments are never secrets: keys travel through files). */
export function describeArgv(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

function clip(s: string): string {
  const t = s.trim();
  if (t === '') return '(empty)';
  return t.length > MAX_STDERR_IN_ERROR ? `${t.slice(0, MAX_STDERR_IN_ERROR)}…` : t;
}
