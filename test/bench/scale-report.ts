/**
 * The scale benchmark's figures and its "Control plane at scale" section of SUMMARY.md. Pure:
 * everything comes from a {@link ScaleResult}.
 */
import { quantile, under, type Verdict } from './stats.js';
import {
  CHANGE_KINDS,
  type ChangeKind,
  type KernelOps,
  type ScaleChange,
  type ScaleChanges,
  type ScaleChurn,
  type ScaleResult,
  type ScaleStore,
} from './types.js';

/** The node count the absolute targets are set for. */
export const TARGET_SCALE_NODES = 5000;
/** Target: a fresh agent programs every peer of a 5,000-node cluster within this many ms. */
export const TARGET_CONVERGE_MS = 3000;
/** Target (issue 14): one node's change reaches the kernel within this many ms (p99). */
export const TARGET_CHANGE_P99_MS = 50;
/** Target (issue 14): the agent's peak resident set at 5,000 nodes, every phase, MiB. */
export const TARGET_RSS_MIB = 150;
/** Target (issue 14): the agent's CPU under kubelet churn (every Node's status every 5 min), % of one core. */
export const TARGET_CHURN_CPU_PERCENT = 2;
/** Target (issue 14): bytes an agent receives per Node update that changes nothing it reads. */
export const TARGET_BYTES_PER_IRRELEVANT_UPDATE = 1024;
/**
 * Target: kernel operations one change may cost, whatever N: one peer, one route, one steering
 * entry (a key change also removes the old key's peer).
 */
export const CHANGE_OPS_BUDGET: Readonly<Record<ChangeKind, number>> = { join: 3, leave: 3, 'key-change': 4 };
/**
 * A join in two steps: with kubelet-shaped Nodes through the Kubernetes store the Node registers
 * (spec with its pod CIDR, then status) before its agent's key arrives in a third write, as on a
 * real cluster. The agent first writes the fail-closed (not-ready) steering entry for the new pod
 * CIDR, then the ready one with the key: one steering write more, by design.
 */
export const TWO_STEP_JOIN_OPS_BUDGET: Readonly<Record<ChangeKind, number>> = { ...CHANGE_OPS_BUDGET, join: 4 };

/** The budget for `store` in run `s`: {@link TWO_STEP_JOIN_OPS_BUDGET} when joins register before their key. */
export function opsBudget(s: Pick<ScaleResult, 'shape'>, store: ScaleStore): Readonly<Record<ChangeKind, number>> {
  return store === 'kubernetes' && s.shape?.node === 'kubelet' ? TWO_STEP_JOIN_OPS_BUDGET : CHANGE_OPS_BUDGET;
}

const KIND_LABELS: Readonly<Record<ChangeKind, string>> = {
  join: 'node joins',
  leave: 'node leaves',
  'key-change': 'node changes its key',
};

/** Sum of a kernel-ops record. */
export function opsTotal(ops: KernelOps | undefined): number {
  return Object.values(ops ?? {}).reduce((a, b) => a + b, 0);
}

/** "15002 (link_create 1, peer_set 5000, …)", "0", or "—". */
export function fmtOps(ops: KernelOps | undefined): string {
  if (ops === undefined) return '—';
  const parts = Object.entries(ops)
    .filter(([, v]) => v !== 0)
    .sort(([a], [b]) => (a < b ? -1 : 1));
  if (parts.length === 0) return '0';
  return `${opsTotal(ops)} (${parts.map(([k, v]) => `${k} ${v}`).join(', ')})`;
}

/** Latency and kernel-operation figures of one kind of change (or all kinds pooled). */
export interface ChangeStats {
  readonly kind: ChangeKind | 'all';
  readonly n: number;
  readonly failed: number;
  readonly p50Ms: number | undefined;
  readonly p99Ms: number | undefined;
  readonly maxMs: number | undefined;
  readonly writeMedianMs: number | undefined;
  readonly opsMedian: number | undefined;
  readonly opsMax: number | undefined;
  /** The ops of the most expensive change. */
  readonly worstOps: KernelOps | undefined;
  /**
   * Medians of where a change's time went (changes that carry the split): the store write, from
   * the write to the agent's trigger (API server, watch delivery, the agent's event handling),
   * queued (debounce, a pass before it), the applying pass.
   */
  readonly split: { write: number; delivery: number; queued: number; pass: number } | undefined;
  /**
   * Changes whose first trigger came while another pass ran (`queuedBehind` in the agent's log):
   * behind a full pass (resync, retry, rotation wake) or an event pass, and the longest wait
   * behind a full one. Undefined when no change carries the field (results before it).
   */
  readonly behind: { full: number; event: number; maxFullMs: number | undefined } | undefined;
}

function statsOf(kind: ChangeKind | 'all', list: readonly ScaleChange[]): ChangeStats {
  const ok = list.filter((c) => c.error === undefined && c.appliedMs !== undefined);
  const ms = ok.map((c) => c.appliedMs as number);
  const ops = list.map((c) => opsTotal(c.kernelOps));
  const worst = list.reduce<ScaleChange | undefined>(
    (w, c) => (w === undefined || opsTotal(c.kernelOps) > opsTotal(w.kernelOps) ? c : w),
    undefined,
  );
  const q = (v: readonly number[], p: number): number | undefined => (v.length === 0 ? undefined : quantile(v, p));
  return {
    kind,
    n: list.length,
    failed: list.length - ok.length,
    p50Ms: q(ms, 0.5),
    p99Ms: q(ms, 0.99),
    maxMs: ms.length === 0 ? undefined : Math.max(...ms),
    writeMedianMs: q(
      list.map((c) => c.writeMs),
      0.5,
    ),
    opsMedian: q(ops, 0.5),
    opsMax: ops.length === 0 ? undefined : Math.max(...ops),
    worstOps: worst?.kernelOps,
    split: splitOf(ok),
    behind: behindOf(list),
  };
}

function behindOf(list: readonly ScaleChange[]): ChangeStats['behind'] {
  if (!list.some((c) => c.queuedMs !== undefined)) return undefined;
  const full = list.filter((c) => c.queuedBehind?.full === true);
  return {
    full: full.length,
    event: list.filter((c) => c.queuedBehind?.full === false).length,
    maxFullMs: full.length === 0 ? undefined : Math.max(...full.map((c) => c.queuedBehind!.ms)),
  };
}

function splitOf(ok: readonly ScaleChange[]): ChangeStats['split'] {
  const with_ = ok.filter((c) => c.passMs !== undefined && c.queuedMs !== undefined);
  if (with_.length === 0) return undefined;
  const med = (f: (c: ScaleChange) => number): number => quantile(with_.map(f), 0.5);
  return {
    write: med((c) => c.writeMs),
    delivery: med((c) => (c.appliedMs as number) - c.writeMs - (c.queuedMs as number) - (c.passMs as number)),
    queued: med((c) => c.queuedMs as number),
    pass: med((c) => c.passMs as number),
  };
}

/** `full / event (max ms)`, or — for results without the field. */
function behindCell(b: ChangeStats['behind']): string {
  if (b === undefined) return '—';
  return `${b.full} / ${b.event}${b.maxFullMs === undefined ? '' : ` (${ms(b.maxFullMs)})`}`;
}

/** Per kind, then all kinds pooled. */
export function changeStats(ch: ScaleChanges): ChangeStats[] {
  return [
    ...CHANGE_KINDS.map((k) =>
      statsOf(
        k,
        ch.changes.filter((c) => c.kind === k),
      ),
    ),
    statsOf('all', ch.changes),
  ];
}

/** Milliseconds for a table: one decimal below 10, whole above. */
export function ms(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return '—';
  return Math.abs(x) < 10 && !Number.isInteger(x) ? x.toFixed(1) : Math.round(x).toString();
}
const mib = (x: number | undefined): string => (x === undefined ? '—' : x.toFixed(0));

/** Whether every change of every kind stayed within `budget` ({@link CHANGE_OPS_BUDGET} by default). */
export function opsVerdict(
  stats: readonly ChangeStats[],
  budget: Readonly<Record<ChangeKind, number>> = CHANGE_OPS_BUDGET,
): Verdict {
  const per = stats.filter((s): s is ChangeStats & { kind: ChangeKind } => s.kind !== 'all' && s.n > 0);
  if (per.length === 0) return { met: false, text: 'not measured' };
  const over = per.filter((s) => (s.opsMax ?? 0) > budget[s.kind]);
  if (over.length === 0) return { met: true, text: 'met' };
  return {
    met: false,
    text: `**missed**: ${over.map((s) => `${s.kind} max ${s.opsMax} > ${budget[s.kind]} (${fmtOps(s.worstOps)})`).join('; ')}`,
  };
}

/** Peak RSS of the agent over every phase at `nodes` in `store`, and the phase it was seen in. */
export function peakRss(s: ScaleResult, store: ScaleStore, nodes: number): { mib: number; phase: string } | undefined {
  const vals = [
    ...s.convergence
      .filter((c) => c.store === store && c.nodes === nodes)
      .map((c) => ({ mib: c.process.rssPeakMiB, phase: 'convergence' })),
    ...s.rotation
      .filter((r) => r.store === store && r.nodes === nodes)
      .map((r) => ({ mib: r.process.rssPeakMiB, phase: 'changes + rotation' })),
    ...s.resync
      .filter((r) => r.store === store && r.nodes === nodes)
      .map((r) => ({ mib: r.process.rssPeakMiB, phase: 'restart + resyncs' })),
  ].filter((x): x is { mib: number; phase: string } => x.mib !== undefined);
  return vals.reduce<{ mib: number; phase: string } | undefined>(
    (best, v) => (best === undefined || v.mib > best.mib ? v : best),
    undefined,
  );
}

/** How a churn window is labelled: its phase (older results measured the startup window). */
export function churnPhase(c: ScaleChurn): string {
  return c.phase === 'steady' ? 'after the startup window' : 'first minute after convergence';
}

/** Watch bytes per churn update (bytes to the agent per minute ÷ updates per minute), or undefined. */
export function churnBytesPerUpdate(c: ScaleChurn | undefined): number | undefined {
  if (c === undefined || c.bytesToAgentPerMinute === undefined || c.achievedPerSecond <= 0) return undefined;
  return c.bytesToAgentPerMinute / (c.achievedPerSecond * 60);
}

function targetRows(s: ScaleResult, store: ScaleStore): string[] {
  const largest = Math.max(...s.sizes);
  const at = TARGET_SCALE_NODES;
  const notAt = `not measured (largest N in this run: ${largest})`;
  const conv = s.convergence.find((c) => c.store === store && c.nodes === at);
  const rows: string[] = [];
  const row = (what: string, target: string, measured: string, v: Verdict | string): void => {
    rows.push(`| scale (${store} store): ${what} | ${target} | ${measured} | ${typeof v === 'string' ? v : v.text} |`);
  };
  row(
    `agent start → every peer, route and steering entry programmed, ${at} nodes`,
    `< ${TARGET_CONVERGE_MS} ms`,
    conv === undefined ? '—' : `${ms(conv.convergedMs)} ms`,
    conv === undefined ? notAt : under(conv.convergedMs, TARGET_CONVERGE_MS, { unit: 'ms', label: 'converged' }),
  );
  const rss = peakRss(s, store, at);
  const atConv = conv?.process.rssPeakMiB;
  row(
    `agent peak RSS (VmHWM), ${at} nodes, every phase`,
    `< ${TARGET_RSS_MIB} MiB`,
    rss === undefined ? '—' : `${mib(rss.mib)} MiB (${rss.phase}); ${mib(atConv)} MiB at convergence`,
    conv === undefined ? notAt : under(rss?.mib, TARGET_RSS_MIB, { unit: 'MiB', label: 'peak' }),
  );
  const ch = s.changes.find((c) => c.store === store);
  if (ch !== undefined) {
    const st = changeStats(ch);
    const all = st.find((x) => x.kind === 'all') as ChangeStats;
    row(
      `one node joins/leaves/changes its key, store write → applied, p99 of ${all.n} at ${ch.nodes} nodes`,
      `< ${TARGET_CHANGE_P99_MS} ms`,
      `p50 ${ms(all.p50Ms)}, p99 ${ms(all.p99Ms)} ms${all.failed > 0 ? `, ${all.failed} failed` : ''}`,
      all.failed > 0
        ? `**missed**: ${all.failed} change(s) not applied in time`
        : under(all.p99Ms, TARGET_CHANGE_P99_MS, { unit: 'ms', label: 'p99' }),
    );
    const per = st.filter((x) => x.kind !== 'all');
    const budget = opsBudget(s, store);
    row(
      `kernel operations per change at ${ch.nodes} nodes: O(1)`,
      `join ≤ ${budget.join}${budget.join !== CHANGE_OPS_BUDGET.join ? ' (registered before its key: the fail-closed entry first)' : ''}, leave ≤ ${budget.leave}, key change ≤ ${budget['key-change']}`,
      per.map((x) => `${x.kind} max ${x.opsMax ?? '—'}`).join(', '),
      opsVerdict(st, budget),
    );
  } else {
    row('one change, store write → applied, p99', `< ${TARGET_CHANGE_P99_MS} ms`, '—', 'not measured');
  }
  // The steady window (after the agent's startup window) when the run has one: what an agent
  // that has run for a while costs; else the window right after convergence.
  const churns = (s.churn ?? []).filter((c) => c.store === store && c.nodes === at && c.error === undefined);
  const churn = churns.find((c) => c.phase === 'steady') ?? churns[0];
  const churnWhat = (x: string): string =>
    `${x} under kubelet churn, ${at} nodes${churn !== undefined ? ` (${churn.achievedPerSecond.toFixed(1)} updates/s, ${churnPhase(churn)})` : ''}`;
  row(
    churnWhat('agent CPU'),
    `< ${TARGET_CHURN_CPU_PERCENT} % of one core`,
    churn?.agentCpuPercent === undefined ? '—' : `${churn.agentCpuPercent.toFixed(1)} %`,
    churn?.agentCpuPercent === undefined
      ? 'not measured'
      : under(churn.agentCpuPercent, TARGET_CHURN_CPU_PERCENT, { unit: '%', label: 'CPU' }),
  );
  const perUpdate = churnBytesPerUpdate(churn);
  row(
    churnWhat('bytes the agent receives per irrelevant Node update'),
    `≤ ${TARGET_BYTES_PER_IRRELEVANT_UPDATE} B`,
    perUpdate === undefined ? '—' : `${Math.round(perUpdate)} B`,
    perUpdate === undefined
      ? store === 'kubernetes'
        ? 'not measured'
        : 'not applicable (the file store is read from disk, not a watch)'
      : perUpdate <= TARGET_BYTES_PER_IRRELEVANT_UPDATE
        ? 'met'
        : `**missed**: ${(perUpdate / 1024).toFixed(1)} KiB per update (the whole Node object: a Node watch delivers every kubelet status update)`,
  );
  const rs = s.resync.find((r) => r.store === store);
  const rsOps = rs?.kernelOps === undefined ? undefined : opsTotal(rs.kernelOps);
  row(
    `periodic resync with nothing changed${rs !== undefined ? ` (${rs.nodes} nodes, every ${rs.intervalSeconds} s)` : ''}`,
    '0 kernel operations',
    rs === undefined || rs.kernelOps === undefined
      ? '—'
      : `${fmtOps(rs.kernelOps)} over ${rs.reconciles ?? '?'} passes in ${(rs.windowMs / 1000).toFixed(1)} s`,
    rs === undefined || rsOps === undefined
      ? 'not measured'
      : (rs.reconciles ?? 0) === 0
        ? '**not shown**: no pass ran in the window'
        : rsOps === 0
          ? 'met'
          : `**missed** by ${rsOps} operations`,
  );
  return rows;
}

/** The section body and the Targets rows of the scale benchmark. */
export function scaleSection(s: ScaleResult, targets: string[], part?: string): string[] {
  const out = [
    part === undefined ? '## Control plane at scale' : `## Control plane at scale: ${part}`,
    '',
    `One real agent (node n1 of a namespace cluster, userspace wireguard-go, BPF steering on) and N simulated nodes in the node store: Node objects with a key, an endpoint, an InternalIP and a pod CIDR, as their agents would have published them, but no agent or namespace behind them. Stores: \`file\` (the harness's directory of Node documents) and \`kubernetes\` (a real kube-apiserver + etcd with the chart's RBAC and admission policy, the agent on a node-bound token). Times come from the agent's own "kernel state updated" log lines (same clock as the bench), confirmed by reading the peers back over wireguard-go's UAPI socket. Kernel operations are \`sealnet_kernel_operations_total\`. Peak RSS is the agent's VmHWM; CPU is its utime + stime since start. The machine's 1-minute load average at each agent start is shown: other test runs share these 2 CPUs.`,
    '',
    '### Fresh agent: start → converged',
    '',
    '| store | N | load | store synced | all peers set | converged | confirmed (UAPI) | agent peak RSS MiB | agent CPU s | wireguard-go RSS MiB | passes | kernel operations |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const c of s.convergence) {
    const p = c.process;
    if (c.error !== undefined) {
      out.push(
        `| ${c.store} | ${c.nodes} | ${c.load1.toFixed(1)} | failed: ${c.error} | | | | ${mib(p.rssPeakMiB)} | ${p.cpuSeconds?.toFixed(1) ?? '—'} | | | |`,
      );
      continue;
    }
    out.push(
      `| ${c.store} | ${c.nodes} | ${c.load1.toFixed(1)} | ${ms(c.syncedMs)} | ${ms(c.peersMs)} | **${ms(c.convergedMs)}** | ${ms(c.confirmedMs)} | ${mib(p.rssPeakMiB)} | ${p.cpuSeconds?.toFixed(1) ?? '—'} | ${mib(p.wireguardGoRssMiB)} | ${c.passes.length} | ${fmtOps(c.kernelOps)} |`,
    );
  }
  out.push(
    '',
    'Times in ms after the agent process was started. "All peers set": the pass by which `peer_set` summed to N; "converged": the last pass that changed the kernel before 2 s without changes.',
  );
  if (s.changes.length > 0) {
    out.push(
      '',
      '### One change at a time',
      '',
      `Each round: a new node joins (a Node with its key written to the store), an existing node changes its key, the new node leaves (its Node deleted); ${s.changesPerKind} rounds. ms from the start of the store write to the end of the agent pass that applied it; kernel operations summed over every pass until 500 ms without changes.`,
      '',
    );
    out.push(
      '| store | N | change | n | p50 ms | p99 ms | max ms | store write ms (median) | medians: write / to the agent / queued / pass ms | waited behind a full / an event pass (longest behind a full one, ms) | kernel ops per change, median / max | most expensive |',
      '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    );
    for (const ch of s.changes) {
      for (const st of changeStats(ch)) {
        const label = st.kind === 'all' ? '**all**' : KIND_LABELS[st.kind];
        out.push(
          `| ${ch.store} | ${ch.nodes} | ${label}${st.failed > 0 ? ` (${st.failed} failed)` : ''} | ${st.n} | ${ms(st.p50Ms)} | ${ms(st.p99Ms)} | ${ms(st.maxMs)} | ${ms(st.writeMedianMs)} | ${st.split === undefined ? '—' : [st.split.write, st.split.delivery, st.split.queued, st.split.pass].map(ms).join(' / ')} | ${behindCell(st.behind)} | ${ms(st.opsMedian)} / ${ms(st.opsMax)} | ${fmtOps(st.worstOps)} |`,
        );
      }
      if (ch.metricsOps !== undefined)
        out.push(
          `| ${ch.store} | ${ch.nodes} | metrics delta over all ${ch.changes.length} changes | | | | | | | | ${opsTotal(ch.metricsOps)} | ${fmtOps(ch.metricsOps)} |`,
        );
    }
  }
  if ((s.churn ?? []).length > 0) {
    out.push(
      '',
      '### Under kubelet churn',
      '',
      "Every simulated Node's status rewritten once per 5 minutes, spread evenly (what kubelets do: heartbeat conditions, images), nothing sealnet reads changed. Two windows: the first minute after convergence, while the agent still publishes every status change at once (the bench's simulated peers never handshake, so it does not settle sooner), and one after that startup window, as an agent that has run for a while (the Targets row uses it when the run has it). Agent CPU is its utime + stime in the window; watch bytes are what the API server sent the agent (TLS, counted at the bench's relay), per minute and per update; × N is what one API server sends when every node runs an agent.",
      '',
      '| store | N | window | updates/s (asked) | window s | agent CPU % of a core | watch MiB/min | bytes per update | × N agents, GiB/min | agent reads MiB/min | passes | kernel ops |',
      '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    );
    const mibMin = (b: number | undefined): string => (b === undefined ? '—' : (b / 1048576).toFixed(1));
    for (const c of s.churn ?? []) {
      if (c.error !== undefined) {
        out.push(`| ${c.store} | ${c.nodes} | ${churnPhase(c)} | | | failed: ${c.error} | | | | | | |`);
        continue;
      }
      const per = churnBytesPerUpdate(c);
      out.push(
        `| ${c.store} | ${c.nodes} | ${churnPhase(c)} | ${c.achievedPerSecond.toFixed(1)} (${c.targetPerSecond.toFixed(1)}) | ${(c.windowMs / 1000).toFixed(0)} | ${c.agentCpuPercent?.toFixed(1) ?? '—'} | ${mibMin(c.bytesToAgentPerMinute)} | ${per === undefined ? '—' : Math.round(per)} | ${c.apiBytesPerMinuteAllAgents === undefined ? '—' : (c.apiBytesPerMinuteAllAgents / 2 ** 30).toFixed(1)} | ${mibMin(c.agentReadBytesPerMinute)} | ${c.passes} | ${fmtOps(c.kernelOps)} |`,
      );
    }
  }
  if (s.resync.length > 0) {
    out.push(
      '',
      '### Periodic resync, nothing changed',
      '',
      "The agent restarted with a short resync interval (it adopts what the kernel holds: the restart's kernel operations should be 0 too), then its counters read twice, four intervals apart: passes (`sealnet_reconciles_total`), their mean duration (`sealnet_reconcile_duration_seconds`), the agent's CPU time and kernel operations in between.",
      '',
    );
    out.push(
      '| store | N | restart → store synced ms | kernel ops of the restart | resync interval | window s | passes in window | mean pass ms | agent CPU s in window | kernel ops in window | agent peak RSS MiB |',
      '| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |',
    );
    for (const r of s.resync)
      out.push(
        `| ${r.store} | ${r.nodes} | ${ms(r.restartSyncedMs)} | ${fmtOps(r.restartOps)} | ${r.intervalSeconds} s | ${(r.windowMs / 1000).toFixed(1)} | ${r.reconciles ?? '—'} | ${ms(r.meanPassMs)} | ${r.cpuSecondsInWindow?.toFixed(2) ?? '—'} | ${r.error !== undefined ? `failed: ${r.error}` : fmtOps(r.kernelOps)} | ${mib(r.process.rssPeakMiB)} |`,
      );
  }
  if (s.rotation.length > 0) {
    out.push(
      '',
      '### Every key rotating',
      '',
      'Every simulated node announces a next key (`sealnet.io/rotation` phase `staging`, `sealnet.io/wireguard-next-public-key`, `sealnet.io/next-endpoint`), all written at once; then every node switches (phase `grace`: the next key published as its key, the next-key annotations gone); then back to `idle`. The `moving` phase cannot be simulated (it waits for a real handshake with the next key), so the switch moves every pod CIDR to the new key and removes every old peer in one step. ms from the first write of each step.',
      '',
      '| store | N | staging: write ms | every next-key peer staged ms (after the last write) | staging kernel ops | switch: write ms | every CIDR on the new key, old peers gone ms (after the last write) | switch kernel ops | back to idle: kernel ops | agent peak RSS MiB |',
      '| --- | ---: | ---: | ---: | --- | ---: | ---: | --- | --- | ---: |',
    );
    const after = (t: number | undefined, w: number): string => (t === undefined ? '—' : `${ms(t)} (${ms(t - w)})`);
    for (const r of s.rotation) {
      const staged =
        r.error !== undefined && r.stagedMs === undefined ? `failed: ${r.error}` : after(r.stagedMs, r.stageWriteMs);
      const switched =
        r.error !== undefined && r.stagedMs !== undefined ? `failed: ${r.error}` : after(r.switchedMs, r.switchWriteMs);
      out.push(
        `| ${r.store} | ${r.nodes} | ${ms(r.stageWriteMs)} | ${staged} | ${fmtOps(r.stageOps)} | ${ms(r.switchWriteMs)} | ${switched} | ${fmtOps(r.switchOps)} | ${fmtOps(r.idleOps)} | ${mib(r.process.rssPeakMiB)} |`,
      );
    }
  }
  if (s.errors.length > 0)
    out.push(
      '',
      ...s.errors.map(
        (e) => `- ${e.store}${e.nodes !== undefined ? `, ${e.nodes} nodes` : ''}, ${e.phase}: ${e.message}`,
      ),
    );
  for (const store of s.stores) targets.push(...targetRows(s, store));
  return out;
}
