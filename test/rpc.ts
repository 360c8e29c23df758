/**
 * A line-oriented JSON RPC to a fixture process, used by the kernel-object tests: the fixture
 * runs inside a scratch network (and mount) namespace, so the sockets it opens are that
 * namespace's and the test process never touches its own. Requests are `{id, method, args}`,
 * replies `{id, ok, value}` or `{id, ok: false, error: {name, code, errno?, message}}`.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';

/** A fixture process serving method calls over stdin/stdout. */
export class RpcChild {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #nextId = 1;
  #stderr = '';

  /** Starts `argv` (e.g. `ip netns exec NS node fixture.mjs …`). */
  constructor(argv: readonly string[]) {
    const [cmd, ...args] = argv;
    if (cmd === undefined) throw new Error('RpcChild needs a command');
    this.#child = spawn(cmd, args, { env: { ...process.env, LC_ALL: 'C' }, stdio: 'pipe' });
    this.#child.stderr.on('data', (d: Buffer) => (this.#stderr += d.toString()));
    createInterface({ input: this.#child.stdout }).on('line', (line) => {
      const reply = JSON.parse(line) as {
        id: number;
        ok: boolean;
        value?: unknown;
        error?: { name: string; code: string; errno?: string; message: string };
      };
      const waiter = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      if (reply.ok) waiter?.resolve(reply.value);
      else waiter?.reject(Object.assign(new Error(reply.error?.message), reply.error));
    });
    this.#child.on('exit', (code, signal) => {
      for (const w of this.#pending.values())
        w.reject(new Error(`rpc child exited (${code ?? signal}): ${this.#stderr}`));
      this.#pending.clear();
    });
  }

  /** What the fixture wrote to stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** Calls `method(...args)` in the fixture. */
  call<T = unknown>(method: string, ...args: unknown[]): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#child.stdin.write(`${JSON.stringify({ id, method, args })}\n`);
    });
  }

  /** Closes stdin and waits for the fixture to exit (SIGKILL after 5 s). */
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    this.#child.stdin.end();
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}
