/**
 * A per-key rate limit for log lines about other nodes' input (issue 16 finding 11). A hostile
 * node that rewrites its annotation every second must not make every agent write a line per
 * change forever: lines about one (node, reason) pass a token bucket (a short burst, then one
 * per interval); what the bucket holds back is counted and reported with the next line let
 * through, or by {@link LogRateLimiter.drain} once a token is back. Pure: the clock is an input.
 */

/** Options of {@link LogRateLimiter}. */
export interface LogRateLimitOptions {
  /** Lines let through at once for a fresh key (default 3). */
  readonly burst?: number;
  /** One more line per this many milliseconds (default 60 s). */
  readonly intervalMs?: number;
  /** Keys remembered, the least recently used forgotten first (default 4096): memory stays bounded. */
  readonly maxKeys?: number;
}

interface Bucket {
  tokens: number;
  updated: number;
  suppressed: number;
}

/** Token buckets by key. One per agent (or per kind of line); not shared between processes. */
export class LogRateLimiter {
  readonly burst: number;
  readonly intervalMs: number;
  readonly maxKeys: number;
  private readonly buckets = new Map<string, Bucket>();
  /** Held-back lines of keys that were forgotten (over maxKeys) before their count was reported. */
  private lost = 0;

  constructor(opts: LogRateLimitOptions = {}) {
    this.burst = Math.max(1, Math.floor(opts.burst ?? 3));
    this.intervalMs = Math.max(1, opts.intervalMs ?? 60_000);
    this.maxKeys = Math.max(1, Math.floor(opts.maxKeys ?? 4096));
  }

  /**
   * Whether a line about `key` may be written at `now` (ms). When it may, `suppressed` is how
   * many lines about the key were held back since the last one written (say so in the line).
   */
  admit(key: string, now: number): { readonly ok: true; readonly suppressed: number } | { readonly ok: false } {
    const b = this.bucket(key, now);
    if (b.tokens < 1) {
      b.suppressed++;
      return { ok: false };
    }
    b.tokens -= 1;
    const suppressed = b.suppressed;
    b.suppressed = 0;
    return { ok: true, suppressed };
  }

  /**
   * Keys with held-back lines whose bucket has a token again, with their counts (each costs a
   * token, like a line): the summary lines to write. Lines held back for forgotten keys are
   * reported under the key `''`.
   */
  drain(now: number): { readonly key: string; readonly suppressed: number }[] {
    const out: { key: string; suppressed: number }[] = [];
    for (const [key, b] of this.buckets) {
      if (b.suppressed === 0) continue;
      this.refill(b, now);
      if (b.tokens < 1) continue;
      b.tokens -= 1;
      out.push({ key, suppressed: b.suppressed });
      b.suppressed = 0;
    }
    if (this.lost > 0) {
      out.push({ key: '', suppressed: this.lost });
      this.lost = 0;
    }
    return out;
  }

  /** Keys currently remembered (tests; bounded by maxKeys). */
  get size(): number {
    return this.buckets.size;
  }

  private bucket(key: string, now: number): Bucket {
    let b = this.buckets.get(key);
    if (b === undefined) {
      b = { tokens: this.burst, updated: now, suppressed: 0 };
      while (this.buckets.size >= this.maxKeys) {
        const [oldest, old] = this.buckets.entries().next().value as [string, Bucket];
        this.lost += old.suppressed;
        this.buckets.delete(oldest);
      }
    } else {
      this.refill(b, now);
      this.buckets.delete(key); // re-inserted below: Map order is least recently used first
    }
    this.buckets.set(key, b);
    return b;
  }

  private refill(b: Bucket, now: number): void {
    if (now <= b.updated) return;
    const earned = Math.floor((now - b.updated) / this.intervalMs);
    if (earned === 0) return;
    b.tokens = Math.min(this.burst, b.tokens + earned);
    b.updated = b.tokens >= this.burst ? now : b.updated + earned * this.intervalMs;
  }
}
