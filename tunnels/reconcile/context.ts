/**
 * The bookkeeping one reconcile pass shares with its steps, in both modes: kernel writes counted
 * by operation (report and metric), failures collected by step (report, metric, log), phase
 * timings for the "kernel state updated" line, and the report at the end.
 */
import { describeError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { AgentMetrics } from '../../common/metrics.js';
import type { DesiredState, ReconcileReport } from '../ports/model.js';

/** What the reconcile loop lends a pass besides the bookkeeping. */
export interface PassHost {
  /** Attaches the steering programs for `underlay` (idempotent). */
  readonly prepareSteering: (underlay: string) => Promise<void>;
  /** True once steering is attached (entries can be written). */
  readonly steeringAttached: () => boolean;
  /** Logs and counts the nodes the planner skipped and the addresses it refused (each new one once, rate-limited). */
  readonly reportSkipped: (desired: Pick<DesiredState, 'skipped' | 'rejectedAddresses'>) => void;
  /** Asks for another pass that reads the kernel in full. */
  readonly retriggerFull: () => void;
}

/** One pass's counters, failures and timings. Its methods are bound: steps pass them around. */
export class PassContext {
  /** Kernel writes of this pass by operation. */
  readonly ops: Record<string, number> = {};
  /** Failed steps, in order. */
  readonly errors: { step: string; message: string }[] = [];
  /** Milliseconds per named phase (where a pass at 5,000 nodes spends its time). */
  readonly phases: Record<string, number> = {};
  private readonly started = process.hrtime.bigint();
  private lastMark = this.started;

  /**
   * `queuedMs`: from the first trigger this pass serves (a store event, a timer) to its start:
   * debounce plus any pass it waited for. Logged with the pass, so a latency can be split into
   * delivery to the agent, queueing and the pass itself. `queuedBehind`: when the first
   * trigger came while another pass ran, that pass (full or event) and how long this one waited
   * for it — which pass holds the event path up.
   */
  constructor(
    private readonly d: { readonly metrics: AgentMetrics; readonly log: Logger },
    private readonly queuedMs?: number | undefined,
    private readonly queuedBehind?: { readonly full: boolean; readonly ms: number } | undefined,
  ) {}

  /** Runs one kernel write and counts it; a throw is the caller's to {@link fail}. */
  readonly op = async (name: string, fn: () => Promise<void>): Promise<void> => {
    await fn();
    this.count(name, 1);
  };

  /** Counts `n` kernel writes of one operation (a batch already done). */
  readonly count = (name: string, n: number): void => {
    if (n <= 0) return;
    this.ops[name] = (this.ops[name] ?? 0) + n;
    this.d.metrics.kernelOps.inc({ op: name }, n);
  };

  /** Records a failed step: report, `sealnet_reconcile_errors_total{step}`, one log line. */
  readonly fail = (step: string, err: unknown): void => {
    const message = describeError(err);
    this.errors.push({ step, message });
    this.d.metrics.errors.inc({ step });
    this.d.log.error({ step, err: message }, `reconcile step ${step} failed`);
  };

  /** Closes the phase that ends now under `name`. */
  readonly mark = (name: string): void => {
    const t = process.hrtime.bigint();
    this.phases[name] = Math.round(Number(t - this.lastMark) / 1e4) / 100;
    this.lastMark = t;
  };

  /** The pass's report (converged only without errors); observes the duration metrics. */
  readonly finish = (desired: DesiredState | undefined, pruned: boolean, converged: boolean): ReconcileReport => {
    const seconds = Number(process.hrtime.bigint() - this.started) / 1e9;
    this.d.metrics.reconcileDuration.observe(seconds);
    this.d.metrics.reconciles.inc({ result: this.errors.length === 0 ? 'ok' : 'error' });
    if (Object.keys(this.ops).length > 0)
      this.d.log.info(
        {
          ops: this.ops,
          seconds,
          phasesMs: this.phases,
          ...(this.queuedMs === undefined ? {} : { queuedMs: this.queuedMs }),
          ...(this.queuedBehind === undefined ? {} : { queuedBehind: this.queuedBehind }),
        },
        'kernel state updated',
      );
    return {
      kernelOps: this.ops,
      errors: this.errors,
      desired,
      pruned,
      converged: converged && this.errors.length === 0,
    };
  };
}
