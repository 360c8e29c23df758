/**
 * Kubelet churn for the scale benchmark: every simulated Node's status updated once per period
 * (a kubelet's `nodeStatusReportFrequency`, 5 minutes), spread evenly, round-robin: at 5,000
 * nodes ≈ 17 updates/s, at 10,000 ≈ 33/s. Each update changes nothing sealnet reads (condition
 * heartbeats), yet every Node watcher receives the whole object again.
 *
 * Updates are issued on a fixed schedule, not back to back: when the store is slower than the
 * schedule, at most `maxInFlight` wait and the rest are counted as `skipped` (the achieved rate
 * is reported next to the target, so a store that cannot keep up is visible, not hidden).
 */
import type { SimNode, SimStore } from './scale-sim.js';

/** Default kubelet status report period, seconds. */
export const KUBELET_STATUS_PERIOD_S = 300;

/** What one churn run did. */
export interface ChurnStats {
  readonly targetPerSecond: number;
  readonly issued: number;
  readonly done: number;
  readonly failed: number;
  readonly skipped: number;
  readonly lastError: string | undefined;
  /** Wall time the churn ran, ms. */
  readonly ranMs: number;
}

/** A running churn; {@link Churn.stop} ends it and waits (bounded) for updates in flight. */
export class Churn {
  private issued = 0;
  private done = 0;
  private failed = 0;
  private skipped = 0;
  private inFlight = 0;
  private next = 0;
  private lastError: string | undefined;
  private readonly t0 = Date.now();
  private readonly timer: NodeJS.Timeout;
  private readonly pending = new Set<Promise<void>>();

  /** Starts updating `nodes` at `nodes.length / periodS` per second. */
  constructor(
    private readonly store: SimStore,
    private readonly nodes: readonly SimNode[],
    o: { periodS?: number; maxInFlight?: number; timeoutMs?: number } = {},
  ) {
    this.targetPerSecond = nodes.length / (o.periodS ?? KUBELET_STATUS_PERIOD_S);
    const maxInFlight = o.maxInFlight ?? 64;
    const timeoutMs = o.timeoutMs ?? 30_000;
    this.timer = setInterval(() => {
      const due = Math.floor(((Date.now() - this.t0) / 1000) * this.targetPerSecond);
      while (this.issued + this.skipped < due) {
        if (this.inFlight >= maxInFlight || this.nodes.length === 0) {
          this.skipped++;
          continue;
        }
        const n = this.nodes[this.next++ % this.nodes.length] as SimNode;
        this.issued++;
        this.inFlight++;
        let timer: NodeJS.Timeout | undefined;
        const p = Promise.race([
          this.store.heartbeat([n]),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`status update of ${n.name} took over ${timeoutMs} ms`)),
              timeoutMs,
            );
          }),
        ])
          .then(
            () => {
              this.done++;
            },
            (err: unknown) => {
              this.failed++;
              this.lastError = err instanceof Error ? err.message : String(err);
            },
          )
          .finally(() => {
            clearTimeout(timer);
            this.inFlight--;
            this.pending.delete(p);
          });
        this.pending.add(p);
      }
    }, 50);
  }

  readonly targetPerSecond: number;

  /** Counters so far. */
  stats(): ChurnStats {
    return {
      targetPerSecond: this.targetPerSecond,
      issued: this.issued,
      done: this.done,
      failed: this.failed,
      skipped: this.skipped,
      lastError: this.lastError,
      ranMs: Date.now() - this.t0,
    };
  }

  /** Stops issuing; waits for the updates in flight (each bounded by its own timeout). */
  async stop(): Promise<ChurnStats> {
    clearInterval(this.timer);
    await Promise.allSettled([...this.pending]);
    return this.stats();
  }
}
