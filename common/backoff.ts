/**
 * Exponential backoff with full jitter (AWS architecture blog's "full jitter"): the delay is
 * uniform in [0, min(cap, base·2^attempt)], so agents restarted together do not retry together.
 * The random source is injected so tests are deterministic.
 */
export interface BackoffOptions {
  readonly baseMs: number;
  readonly capMs: number;
  /** Returns a number in [0, 1). */
  readonly random: () => number;
}

/** The delay's upper bound for retry number `attempt` (0-based): min(cap, base·2^attempt). */
export function backoffCeiling(attempt: number, opts: Pick<BackoffOptions, 'baseMs' | 'capMs'>): number {
  return Math.min(opts.capMs, opts.baseMs * 2 ** Math.min(attempt, 30));
}

/** Delay before retry number `attempt` (0-based); a server's Retry-After, if longer, wins. */
export function backoffDelay(attempt: number, opts: BackoffOptions, retryAfterMs?: number): number {
  const ceiling = backoffCeiling(attempt, opts);
  const jittered = Math.floor(opts.random() * ceiling);
  return retryAfterMs !== undefined && retryAfterMs > jittered ? Math.min(retryAfterMs, opts.capMs * 5) : jittered;
}
