/**
 * The reconcile loop: when passes run (store events debounced, a full pass on request, retries
 * with backoff and jitter after a failed pass, close). What one pass does is the mode's pass:
 * wireguard-pass.ts or ipsec-pass.ts, sharing the bookkeeping in context.ts.
 *
 * Contract of a pass ({@link Reconciler.reconcileOnce}): it may run any number of times
 * with identical input and then changes nothing; it reads the kernel before changing it,
 * changes only what differs, adds before it deletes, keeps going past independent failures,
 * stops at dependent ones, and reports what it reached. Nothing is pruned before the store has
 * synced, and only sealnet-owned objects are ever deleted.
 */
import { BPF_XFRM_MARK_MASK, WG_FWMARK } from '../../common/constants.js';
import { backoffDelay } from '../../common/backoff.js';
import type { DesiredState, ReconcileReport } from '../ports/model.js';
import { InputReporter } from './inputlog.js';
import type { SteeringAttachment } from '../ports/index.js';
import { PassContext, type PassHost } from './context.js';
import type { ReconcilerDeps } from './deps.js';
import { newIpsecPassState, reconcileIpsec } from './ipsec-pass.js';
import { newWireGuardPassState, WireGuardPass } from './wireguard-pass.js';
import { restoreLastApplied, type RestoreResult } from './restore.js';

export type { OwnKey, ReconcilerDeps } from './deps.js';
export type { ReconcileReport } from '../ports/model.js';

/** Runs reconcile passes; one at a time, debounced. */
export class Reconciler {
  private readonly d: ReconcilerDeps;
  /** Skipped nodes and refused addresses: counted, logged once each, rate-limited per (node, reason). */
  private readonly input: InputReporter;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<ReconcileReport> | undefined;
  /** The start-up restore while it runs: passes wait for it. */
  private restoring: Promise<RestoreResult> | undefined;
  private rerun = false;
  /** When the first trigger not yet served by a pass came (ms since the epoch). */
  private firstTriggerMs: number | undefined;
  private closed = false;
  private lastReport: ReconcileReport | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryAttempt = 0;
  /** What steering was last ensured with (interfaces + settings); re-ensured when it changes. */
  private steeringKey: string | undefined;
  /** Mode ipsec's state between passes. */
  private readonly ipsecState = newIpsecPassState();
  /** Mode wireguard's state between passes. */
  private readonly wgState: ReturnType<typeof newWireGuardPassState>;
  /** The next pass reads the kernel in full (first pass, resync, retry, rotation timers). */
  private fullRequested = true;
  constructor(deps: ReconcilerDeps) {
    this.d = deps;
    this.input = new InputReporter(deps);
    this.wgState = newWireGuardPassState(deps.rpFilter);
  }

  /**
   * True once the BPF guard has been attached by this agent run (at start-up or by a pass): pod
   * traffic to a peer without a ready tunnel is dropped from then on. The not-ready taint waits
   * for it (tunnels/agent/not-ready-taint.ts).
   */
  steeringAttached(): boolean {
    return this.steeringKey !== undefined;
  }

  /** The last pass's report (for /readyz and status). */
  report(): ReconcileReport | undefined {
    return this.lastReport;
  }

  /**
   * Schedules a pass after the debounce window; coalesces bursts of events. A pass triggered
   * only by node store changes may work from the kernel view the previous pass left (no full
   * re-read of thousands of peers and routes); `{ full: true }` (periodic resync, retries,
   * anything the view cannot know about) makes the next pass read the kernel in full.
   */
  trigger(opts: { readonly full?: boolean } = {}): void {
    if (opts.full === true) this.fullRequested = true;
    if (this.closed) return;
    this.firstTriggerMs ??= Date.now();
    if (this.running !== undefined) {
      this.rerun = true;
      return;
    }
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.runNow({ full: false });
    }, this.d.config.debounceMs);
  }

  /**
   * Runs one pass now (waiting for a running one first). It reads the kernel in full unless
   * `full: false` (the debounced event path of {@link trigger}).
   */
  async runNow(opts: { readonly full?: boolean } = {}): Promise<ReconcileReport> {
    if (opts.full !== false) this.fullRequested = true;
    await this.restoring;
    while (this.running !== undefined) await this.running.catch(() => undefined);
    this.running = this.reconcileOnce();
    try {
      this.lastReport = await this.running;
      this.scheduleRetry(this.lastReport);
      return this.lastReport;
    } finally {
      this.running = undefined;
      if (this.rerun && !this.closed) {
        this.rerun = false;
        this.trigger();
      }
    }
  }

  /**
   * A pass that failed somewhere (a key publish the store refused, a netlink error) is retried
   * with exponential backoff and jitter (0.5 s … the resync interval), not only at the next
   * periodic resync: a node whose key did not get published stays unreachable until it is.
   */
  private scheduleRetry(report: ReconcileReport): void {
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (report.errors.length === 0 || this.closed) {
      this.retryAttempt = 0;
      return;
    }
    const delay = backoffDelay(this.retryAttempt++, {
      baseMs: 500,
      capMs: this.d.config.resyncIntervalSeconds * 1000,
      random: Math.random,
    });
    this.retryTimer = setTimeout(
      () => {
        this.retryTimer = undefined;
        this.trigger({ full: true });
      },
      Math.max(delay, 100),
    );
    // The periodic resync keeps a running agent alive; a pending retry alone must not.
    this.retryTimer.unref();
  }

  /**
   * Start-up, before the node store synced (mode wireguard): programs the last applied state
   * (tunnels/reconcile/restore.ts). Passes wait for it; call it once, after
   * {@link prepareSteering} and before the first pass. Never throws.
   */
  restoreLastApplied(): Promise<RestoreResult> {
    if (this.restoring !== undefined || this.running !== undefined || this.lastReport !== undefined)
      return Promise.resolve({ restored: false, reason: 'a pass ran already' });
    this.restoring = restoreLastApplied(this.d, {
      steeringAttached: () => this.steeringAttached(),
      prepareSteering: (dev) => this.prepareSteering(dev),
    }).catch((err: unknown) => {
      this.d.log.error({ err: String(err) }, 'restoring the last applied state failed');
      return { restored: false, reason: 'failed' } as const;
    });
    return this.restoring;
  }

  /** Stops scheduling; waits for a running pass. Kernel state is left as it is. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    await this.running?.catch(() => undefined);
  }

  /**
   * Attaches the steering programs (idempotent; a no-op when nothing changed since the last
   * call). Called at start-up before the node store is read, when the underlay is known from
   * the config, so pod traffic is dropped from the first packet until a tunnel is ready.
   */
  async prepareSteering(underlay: string): Promise<void> {
    const { config, steering, log } = this.d;
    if (steering === undefined) return;
    const st = config.steering;
    const devs = st.interfaces.length > 0 ? st.interfaces : [underlay];
    const attachments: SteeringAttachment[] = devs.flatMap((dev) => [
      { dev, hook: 'egress' as const },
      ...(st.enforceIngress ? [{ dev, hook: 'ingress' as const }] : []),
    ]);
    const settings = {
      failClosed: st.failClosed,
      wireguardPort: config.mode === 'ipsec' ? 0 : config.wireguard.listenPort,
      espUdpPort: 0,
      esp: config.mode === 'ipsec',
      tunnelFwmark: WG_FWMARK,
      markMask: BPF_XFRM_MARK_MASK,
    };
    const key = JSON.stringify({ attachments, settings, exempt: st.exemptCidrs, cluster: st.clusterCidrs });
    if (key === this.steeringKey) return;
    const r = await steering.ensure({ settings, exempt: st.exemptCidrs, clusterCidrs: st.clusterCidrs, attachments });
    this.steeringKey = key;
    this.d.metrics.steeringFailClosed.set(st.failClosed ? 1 : 0);
    log.info(
      { attached: r.attached, mapsCreated: r.mapsCreated, programsLoaded: r.programsLoaded, failClosed: st.failClosed },
      'BPF steering in place',
    );
    if (!st.failClosed)
      log.warn(
        {},
        'steering.failClosed is false: pod traffic to a node without a ready tunnel is passed in PLAINTEXT (counted as fail_open)',
      );
  }

  /**
   * One pass (the mode's: {@link WireGuardPass} or `reconcileIpsec`). It reads the kernel in
   * full when one was requested (start, resync, retry); else it may start from the view the last
   * clean pass left. Never throws: failures are in the report, the log and the metrics.
   */
  async reconcileOnce(): Promise<ReconcileReport> {
    const startedAt = Date.now();
    const firstTrigger = this.firstTriggerMs;
    const queuedMs = firstTrigger === undefined ? undefined : startedAt - firstTrigger;
    this.firstTriggerMs = undefined;
    const last = this.lastPass;
    const queuedBehind =
      firstTrigger !== undefined && last !== undefined && firstTrigger < last.endedAt
        ? { full: last.full, ms: last.endedAt - Math.max(firstTrigger, last.startedAt) }
        : undefined;
    const pass = new PassContext(this.d, queuedMs, queuedBehind);
    const full = this.fullRequested;
    try {
      return await this.passOnce(pass, full);
    } finally {
      this.lastPass = { full, startedAt, endedAt: Date.now() };
    }
  }

  /** When the last pass ran and whether a full one was asked for (see PassContext `queuedBehind`). */
  private lastPass: { readonly full: boolean; readonly startedAt: number; readonly endedAt: number } | undefined;

  private async passOnce(pass: PassContext, full: boolean): Promise<ReconcileReport> {
    const host: PassHost = {
      prepareSteering: (dev) => this.prepareSteering(dev),
      steeringAttached: () => this.steeringAttached(),
      reportSkipped: (s) => this.reportSkipped(s),
      retriggerFull: () => this.trigger({ full: true }),
    };
    if (this.d.config.mode === 'ipsec') return reconcileIpsec({ deps: this.d, state: this.ipsecState, pass, host });
    this.fullRequested = false;
    return new WireGuardPass({ deps: this.d, state: this.wgState, pass, host, full }).run();
  }

  private reportSkipped(desired: Pick<DesiredState, 'skipped' | 'rejectedAddresses'>): void {
    this.input.skipped(desired.skipped);
    this.input.addresses(desired.rejectedAddresses);
  }
}
