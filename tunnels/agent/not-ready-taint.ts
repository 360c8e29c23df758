/**
 * The `sealnet.io/not-ready:NoSchedule` taint (README "Before the guard is attached"): a kubelet
 * registers its Node with it, so the scheduler places no pod there before sealnet can guard that
 * pod's traffic. This agent removes it from its own Node once
 *   1. the node store has synced, and a reconcile pass that started after the sync converged
 *      (every desired peer and route in the kernel, no error), and
 *   2. the BPF guard is attached (pod traffic to a peer without a ready tunnel is dropped).
 *
 * It never adds the taint. After an agent restart the guard pinned by the earlier run stays
 * attached (the kernel keeps it), so re-tainting on every restart would only block scheduling
 * during every rolling update, and would need the agent to be allowed to add taints. A Node
 * that never carried the taint (or that an operator untainted) is left as it is.
 *
 * Nothing is read from the API server until both conditions hold: a node costs one GET and one
 * PATCH per agent start, then nothing.
 */
import { NOT_READY_TAINT } from '../../common/constants.js';
import { describeError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { NodeTaintPort } from '../ports/index.js';
import type { ReconcileReport } from '../ports/model.js';

/** What {@link NotReadyTaint} reads. */
export interface NotReadyTaintDeps {
  readonly nodeName: string;
  readonly port: NodeTaintPort;
  /** `steering.enabled`: without steering there is no guard to wait for (the agent warns about that already). */
  readonly steeringEnabled: boolean;
  /** True once the BPF guard is attached (the reconciler's `steeringAttached()`). */
  readonly guardAttached: () => boolean;
  readonly storeSynced: () => boolean;
  /** The last reconcile pass's report (the reconciler's `report()`). */
  readonly lastPass: () => ReconcileReport | undefined;
  readonly log: Logger;
}

/** The outcome of one {@link NotReadyTaint.check}. */
export type TaintCheck =
  | { readonly state: 'waiting'; readonly reason: string }
  | { readonly state: 'removed' }
  | { readonly state: 'absent' }
  | { readonly state: 'failed'; readonly error: string };

/** Longest wait between two attempts after failed removals. */
const MAX_RETRY_MS = 60_000;

/** Removes the not-ready taint from the agent's own Node, once, when it is safe to. */
export class NotReadyTaint {
  private readonly d: NotReadyTaintDeps;
  private outcome: 'removed' | 'absent' | undefined;
  private failures = 0;
  private lastError = '';
  /** The pass report current when the store first counted as synced (null: none yet). */
  private reportAtSync: ReconcileReport | null | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(deps: NotReadyTaintDeps) {
    this.d = deps;
  }

  /** True once the taint was removed or found absent: nothing more will be done. */
  get done(): boolean {
    return this.outcome !== undefined;
  }

  /**
   * Tells it the node store just synced (call before triggering the pass that follows): the
   * pass report current now predates the sync and does not count. Without this call the first
   * check after the sync takes that mark, which may wait one pass longer than needed.
   */
  storeSynced(): void {
    if (this.reportAtSync === undefined) this.reportAtSync = this.d.lastPass() ?? null;
  }

  /** Why the taint may not be removed yet, or undefined when it may. */
  whyNotYet(): string | undefined {
    if (!this.d.storeSynced()) return 'the node store has not synced';
    // A pass that ran before the sync saw a partial node list: wait for one that started after.
    this.storeSynced();
    const pass = this.d.lastPass();
    if (pass === undefined || pass === this.reportAtSync)
      return 'no reconcile pass has finished since the store synced';
    if (pass.errors.length > 0 || !pass.converged)
      return `the last reconcile pass did not converge${pass.errors.length > 0 ? ` (${pass.errors.length} errors)` : ''}`;
    if (this.d.steeringEnabled && !this.d.guardAttached()) return 'the BPF guard is not attached';
    return undefined;
  }

  /** One attempt: removes the taint if it is time to (at most once per agent run). */
  async check(): Promise<TaintCheck> {
    if (this.outcome !== undefined) return { state: this.outcome };
    const reason = this.whyNotYet();
    if (reason !== undefined) return { state: 'waiting', reason };
    const { nodeName, port, log } = this.d;
    try {
      const r = await port.removeTaint(nodeName, NOT_READY_TAINT);
      this.outcome = r;
      if (r === 'removed')
        log.info(
          { taint: `${NOT_READY_TAINT.key}:${NOT_READY_TAINT.effect}`, guard: this.d.steeringEnabled },
          this.d.steeringEnabled
            ? 'guard attached and first pass converged: removed the not-ready taint from this node'
            : 'first pass converged: removed the not-ready taint from this node (steering disabled: no guard)',
        );
      return { state: r };
    } catch (err) {
      this.failures++;
      const error = describeError(err);
      if (error !== this.lastError)
        log.error(
          { err: error },
          `cannot remove the ${NOT_READY_TAINT.key} taint from this node; no pod is scheduled here until it is (retrying)`,
        );
      this.lastError = error;
      return { state: 'failed', error };
    }
  }

  /** Checks every `intervalMs` (backing off after failures) until done or {@link stop}. */
  start(intervalMs = 1000): void {
    const next = (): void => {
      if (this.stopped || this.done) return;
      const delay = this.failures === 0 ? intervalMs : Math.min(intervalMs * 2 ** this.failures, MAX_RETRY_MS);
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.check().finally(next);
      }, delay);
      this.timer.unref();
    };
    next();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
