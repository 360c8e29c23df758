/**
 * No silent hangs in the scale benchmark: every await on something outside this process (an API
 * request, a child process, a cluster build or teardown) goes through {@link bounded}, which
 * fails with what it waited for; and a {@link Watchdog} says every minute which step the bench is
 * in and for how long, so even a wait that is bounded by many minutes is never silent.
 *
 * Why the bench could hang with an idle event loop: it keeps a 1 s interval alive on purpose
 * (the harness's child handles are unref'd), so a promise that never settles does not end the
 * process, it parks it. Requests of the Kubernetes client have no timeout of their own.
 */

/** Rejects with "timed out after … waiting for <what>" if `p` has not settled within `ms`. */
export async function bounded<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`timed out after ${Math.round(ms / 1000)} s waiting for ${what}`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Logs the current step every `everyMs` while one is set. */
export class Watchdog {
  private step: { what: string; since: number } | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly log: (line: string) => void,
    everyMs = 60_000,
  ) {
    this.timer = setInterval(() => {
      if (this.step !== undefined)
        this.log(`scale: still waiting for ${this.step.what} (${Math.round((Date.now() - this.step.since) / 1000)} s)`);
    }, everyMs);
  }

  /** Runs `fn` as the current step (bounded by `ms`), restoring the previous step afterwards. */
  async run<T>(what: string, ms: number, fn: () => Promise<T>): Promise<T> {
    const prev = this.step;
    this.step = { what, since: Date.now() };
    try {
      return await bounded(what, ms, fn());
    } finally {
      this.step = prev;
    }
  }

  /** Stops the watchdog. */
  close(): void {
    clearInterval(this.timer);
  }
}
