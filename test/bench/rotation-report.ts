/**
 * Issue 5's figures, pure: the `rotation` benchmark's raw data (its types live here) and what
 * the summary makes of it — time from a `sealctl keys rotate` request to every key switched and
 * to every old key gone, and what the traffic running across the rotation lost.
 */
import { cell } from './summary.js';
import { fmt, spread, type Spread } from './stats.js';
import type { NsIncrements } from '../harness/netcounters.js';

/** What one round rotates: node n1 alone, or every node at once (`--all`). */
export const ROTATION_SCOPES = ['one', 'all'] as const;
/** One of {@link ROTATION_SCOPES}. */
export type RotationScope = (typeof ROTATION_SCOPES)[number];

/** Issue 5's target: every key of a 5-node cluster switched within this, ms. */
export const TARGET_ROTATE_ALL_MS = 10_000;

/** One numbered UDP stream across one rotation. */
export interface RotationUdpSample {
  readonly from: string;
  readonly to: string;
  readonly sent: number;
  readonly lost: number;
  readonly duplicates: number;
  readonly reordered: number;
  readonly longestGap: number;
  /** Runs of lost datagrams: when the first one left, ms after the request (negative: before it), and how many. */
  readonly gaps?: readonly { readonly atMs: number; readonly count: number }[];
}

/**
 * One UDP direction's loss beside the kernel's drop counters on its path (sender pod, sender
 * node, receiver node, receiver pod). The node namespaces' counters are shared by everything
 * the node tunnels (both directions, the TCP streams); the receiver pod's are this stream's own.
 */
export interface RotationUdpAttribution {
  readonly from: string;
  readonly to: string;
  readonly lost: number;
  /** Namespaces on the path, sender pod first. */
  readonly path: readonly string[];
  /**
   * Increments on the path: in both nodes Udp(6) InErrors (RcvbufErrors among them) + SndbufErrors
   * + NoPorts; in the sender pod SndbufErrors, in the receiver pod InErrors + NoPorts (each pod
   * also receives the other stream); IPv4 drops and every interface's rx/tx drops in all four.
   */
  readonly pathDrops: number;
  /** Of those, RcvbufErrors in the receiver pod (this stream's receiving socket). */
  readonly receiverPodRcvbuf: number;
  /** Steering drops (BPF, any hook and reason) on the sender and receiver nodes; not in `pathDrops`. */
  readonly pathBpfDrops?: number;
}

/** The kernel's drop counters across one rotation (from before the traffic started to after it stopped). */
export interface RotationCounters {
  /** Increments per namespace (node or pod name); namespaces with none are left out. */
  readonly ns: Readonly<Record<string, NsIncrements>>;
  /** The host's per-CPU input backlog drops (/proc/net/softnet_stat; every namespace and the rest of the host). */
  readonly backlogDrops: number | undefined;
  /** Namespaces that could not be read at some sample. */
  readonly unread: readonly string[];
  /** Steering drops per node: `sealnet_bpf_packets_total{verdict="drop"}` increments by "hook/reason", nonzero ones only. */
  readonly bpfDrops?: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /** Nodes whose agent metrics could not be scraped before or after. */
  readonly bpfUnread?: readonly string[];
  readonly udp: readonly RotationUdpAttribution[];
}

/** One rotation under traffic (the traffic starts 1 s before the request and stops 1 s after sealctl returns). */
export interface RotationSample {
  readonly round: number;
  readonly scope: RotationScope;
  readonly targets: readonly string[];
  /** Unix ms of the request. */
  readonly at: number;
  /** Load average (1 min) at the request. */
  readonly load1: number;
  /** Request → every target published its new key. */
  readonly switchedMs: number | undefined;
  /** Request → `sealctl keys rotate --wait` returned: every old key erased, old link gone, every peer moved. */
  readonly doneMs: number | undefined;
  /** sealctl's exit code (0: every target done, every peer moved). */
  readonly sealctlCode: number | undefined;
  readonly udp: readonly RotationUdpSample[];
  readonly tcpStreams: number;
  /** One line per broken TCP stream problem (break, gap, reconnect, nothing received). */
  readonly tcpBreaks: readonly string[];
  /** Nodes not clean afterwards (more than one link or key, a mirror left, still rotating…), described. */
  readonly leftovers: readonly string[];
  readonly error: string | undefined;
  /** Drop counters around this rotation (absent in results written before they were recorded). */
  readonly counters?: RotationCounters;
}

/** Raw data of the `rotation` benchmark. */
export interface RotationResult {
  readonly nodes: number;
  readonly rounds: number;
  readonly graceSeconds: number;
  readonly peerTimeoutSeconds: number;
  readonly udpPps: number;
  readonly tcpBytesPerSecond: number;
  readonly samples: readonly RotationSample[];
}

/** One UDP direction over every rotation of a scope. */
export interface RotationUdpFigures {
  readonly direction: string;
  readonly sent: number;
  readonly lost: number;
  readonly duplicates: number;
  readonly reordered: number;
  /** Datagrams lost per rotation. */
  readonly lostPerRotation: Spread | undefined;
}

/** Figures of one scope. */
export interface RotationScopeFigures {
  readonly scope: RotationScope;
  readonly rotations: number;
  readonly failed: number;
  readonly switched: Spread | undefined;
  readonly done: Spread | undefined;
  readonly udp: readonly RotationUdpFigures[];
  /** Datagrams lost per rotation, both directions together. */
  readonly lostPerRotation: Spread | undefined;
  readonly tcpStreams: number;
  readonly tcpBreaks: number;
  readonly unclean: number;
}

const direction = (u: { from: string; to: string }): string => `${u.from}→${u.to}`;

/** Medians and totals per scope, in {@link ROTATION_SCOPES} order (scopes never run are left out). */
export function rotationFigures(r: RotationResult): RotationScopeFigures[] {
  const out: RotationScopeFigures[] = [];
  for (const scope of ROTATION_SCOPES) {
    const samples = r.samples.filter((s) => s.scope === scope);
    if (samples.length === 0) continue;
    const directions = [...new Set(samples.flatMap((s) => s.udp.map(direction)))];
    const udp = directions.map((d): RotationUdpFigures => {
      const per = samples
        .map((s) => s.udp.find((u) => direction(u) === d))
        .filter((u): u is RotationUdpSample => u !== undefined);
      const sum = (k: 'sent' | 'lost' | 'duplicates' | 'reordered'): number => per.reduce((a, u) => a + u[k], 0);
      return {
        direction: d,
        sent: sum('sent'),
        lost: sum('lost'),
        duplicates: sum('duplicates'),
        reordered: sum('reordered'),
        lostPerRotation: spread(per.map((u) => u.lost)),
      };
    });
    const measured = samples.filter((s) => s.udp.length > 0);
    out.push({
      scope,
      rotations: samples.length,
      failed: samples.filter((s) => s.error !== undefined).length,
      switched: spread(samples.map((s) => s.switchedMs ?? Number.NaN)),
      done: spread(samples.map((s) => s.doneMs ?? Number.NaN)),
      udp,
      lostPerRotation: spread(measured.map((s) => s.udp.reduce((a, u) => a + u.lost, 0))),
      tcpStreams: samples.reduce((a, s) => a + s.tcpStreams, 0),
      tcpBreaks: samples.reduce((a, s) => a + s.tcpBreaks.length, 0),
      unclean: samples.filter((s) => s.leftovers.length > 0).length,
    });
  }
  return out;
}

/** Failures worth an error in the result file: rotations that did not complete. */
export function rotationErrors(r: RotationResult): string[] {
  return r.samples
    .filter((s) => s.error !== undefined)
    .map((s) => `round ${s.round + 1}, ${scopeLabel(s.scope, r.nodes)}: ${s.error}`);
}

function scopeLabel(scope: RotationScope, nodes: number): string {
  return scope === 'one' ? 'one node (n1)' : `all ${nodes} nodes`;
}

/** Milliseconds as "median [min–max]" in seconds with two decimals. */
function seconds(s: Spread | undefined): string {
  return s === undefined ? '—' : cell({ ...s, median: s.median / 1000, min: s.min / 1000, max: s.max / 1000 }, 2);
}

/** The verdict on "every key switched < 10 s": judged on the median, every round over it named. */
function switchVerdict(s: Spread | undefined, samples: readonly RotationSample[]): string {
  if (s === undefined) return 'not measured';
  const over = samples.filter((x) => x.switchedMs !== undefined && x.switchedMs >= TARGET_ROTATE_ALL_MS).length;
  const t = fmt(TARGET_ROTATE_ALL_MS / 1000);
  if (s.median >= TARGET_ROTATE_ALL_MS)
    return `**missed** by ${fmt((s.median - TARGET_ROTATE_ALL_MS) / 1000)} s (median ${fmt(s.median / 1000)} s ≥ ${t} s)`;
  return `met (median ${fmt(s.median / 1000)} s < ${t} s${over > 0 ? `; but ${over} of ${s.n} rounds took ${t} s or more` : ''})`;
}

function lossCell(f: RotationScopeFigures, nodes: number): string {
  return `${scopeLabel(f.scope, nodes)}: ${f.udp.reduce((a, u) => a + u.lost, 0)} lost of ${f.udp.reduce((a, u) => a + u.sent, 0)} in ${f.rotations} rotations`;
}

/** Renders the "Key rotation" section and adds its rows to the Targets table. */
export function rotationSection(r: RotationResult, targets: string[]): string[] {
  const figs = rotationFigures(r);
  const all = figs.find((f) => f.scope === 'all');
  const directions = [...new Set(r.samples.flatMap((s) => s.udp.map(direction)))];
  const out = [
    '## Key rotation',
    '',
    `A ${r.nodes}-node namespace cluster with real agents and wireguard-go (grace period ${r.graceSeconds} s, peer timeout ${r.peerTimeoutSeconds} s, as in \`test/e2e/rotation.e2e.test.ts\`). Each of ${r.rounds} rounds rotates n1 alone, then every node at once, with \`sealctl keys rotate … --wait\`. Across each rotation a long-lived TCP stream runs between every node pair (${fmt(r.tcpBytesPerSecond / 1000)} kB/s each) and a numbered UDP stream each way between n1 and n2 (${r.udpPps}/s each), started 1 s before the request and stopped 1 s after sealctl returned. *Switched*: request → every target published its new key (polled every 20 ms); *old keys gone*: request → sealctl returned (old keys erased, old links gone, every peer moved; includes the grace period). Seconds, median [min–max] over rounds.`,
    '',
    `| rotation | rounds | switched (s) | old keys gone (s) | ${directions.map((d) => `UDP ${d} lost/sent`).join(' | ')} | lost per rotation | duplicates | TCP breaks | nodes not clean after |`,
    `| --- | ---: | ---: | ---: | ${directions.map(() => '---:').join(' | ')} | ---: | ---: | ---: | ---: |`,
  ];
  for (const f of figs) {
    const udp = directions.map((d) => {
      const u = f.udp.find((x) => x.direction === d);
      return u === undefined ? '—' : `${u.lost}/${u.sent}`;
    });
    const dups = f.udp.reduce((a, u) => a + u.duplicates, 0);
    out.push(
      `| ${scopeLabel(f.scope, r.nodes)} | ${f.rotations}${f.failed > 0 ? ` (${f.failed} failed)` : ''} | ${seconds(f.switched)} | ${seconds(f.done)} | ${udp.join(' | ')} | ${cell(f.lostPerRotation)} | ${dups} | ${f.tcpBreaks} of ${f.tcpStreams} | ${f.unclean} |`,
    );
  }
  out.push(
    '',
    'Every rotation:',
    '',
    `| round | rotation | load (1 min) | switched (ms) | old keys gone (ms) | ${directions.map((d) => `UDP ${d} lost/sent (dup)`).join(' | ')} | TCP | outcome |`,
    `| ---: | --- | ---: | ---: | ---: | ${directions.map(() => '---:').join(' | ')} | --- | --- |`,
  );
  for (const s of r.samples) {
    const udp = directions.map((d) => {
      const u = s.udp.find((x) => direction(x) === d);
      return u === undefined ? '—' : `${u.lost}/${u.sent} (${u.duplicates})`;
    });
    const tcp = s.tcpBreaks.length === 0 ? `${s.tcpStreams} unbroken` : s.tcpBreaks.join('; ');
    const gaps = s.udp.flatMap((u) =>
      (u.gaps ?? []).map((g) => `${direction(u)} lost ${g.count} from +${fmt(g.atMs / 1000)} s`),
    );
    const outcome = [
      s.error !== undefined
        ? `failed: ${s.error}`
        : s.leftovers.length > 0
          ? `left behind: ${s.leftovers.join('; ')}`
          : 'ok',
      ...gaps,
    ].join('; ');
    out.push(
      `| ${s.round + 1} | ${scopeLabel(s.scope, r.nodes)} | ${s.load1.toFixed(1)} | ${s.switchedMs ?? '—'} | ${s.doneMs ?? '—'} | ${udp.join(' | ')} | ${tcp} | ${outcome} |`,
    );
  }
  const counterLines = ROTATION_SCOPES.map((sc) => countersSummary(r, sc)).filter((l): l is string => l !== undefined);
  if (counterLines.length > 0) {
    out.push(
      '',
      "Kernel drop counters, from before each rotation's traffic started to after it stopped (every node's and pod's namespace: Udp InErrors/RcvbufErrors/SndbufErrors/NoPorts, IPv4 InDiscards/InAddrErrors/OutDiscards/OutNoRoutes/InNoRoutes/reverse-path filter, every interface's rx/tx drops; the host's input backlog drops; the agents' steering drops, `sealnet_bpf_packets_total{verdict=\"drop\"}`): a lost datagram is *covered* when its path (sender pod, sender node, receiver node, receiver pod) counted at least as many kernel drops (steering drops not included).",
      '',
      ...counterLines.map((l) => `- ${l}`),
    );
  }
  const allSamples = r.samples.filter((s) => s.scope === 'all');
  targets.push(
    `| rotation of all keys, ${r.nodes} real nodes: request → every key switched (${all?.switched?.n ?? 0} rounds) | < ${fmt(TARGET_ROTATE_ALL_MS / 1000)} s | median ${seconds(all?.switched)} s; old keys gone ${seconds(all?.done)} s (grace ${r.graceSeconds} s) | ${switchVerdict(all?.switched, allSamples)} |`,
  );
  const lost = figs.reduce((a, f) => a + f.udp.reduce((b, u) => b + u.lost, 0), 0);
  const worst = Math.max(0, ...figs.map((f) => f.lostPerRotation?.max ?? 0));
  const lossVerdict = figs.every((f) => f.lostPerRotation === undefined)
    ? 'not measured'
    : lost === 0
      ? 'met'
      : `**missed**: ${lost} datagrams lost, at most ${worst} in one rotation`;
  targets.push(
    `| packets lost per rotation (UDP ${directions.join(' and ')}, ${r.udpPps}/s each) | 0 | ${figs.map((f) => lossCell(f, r.nodes)).join('; ')} | ${lossVerdict} |`,
  );
  const breaks = figs.reduce((a, f) => a + f.tcpBreaks, 0);
  targets.push(
    `| TCP connections broken by a rotation (one stream per node pair) | 0 | ${breaks} in ${figs.reduce((a, f) => a + f.rotations, 0)} rotations | ${breaks === 0 ? 'met' : `**missed**: ${breaks}`} |`,
  );
  return out;
}

/** One namespace's increments as "n2 RcvbufErrors +3, n2 sealwg1 tx drops +2" parts. */
function nsParts(name: string, e: NsIncrements): string[] {
  const out: string[] = [];
  const add = (k: string, v: number | undefined): void => {
    if (v !== undefined && v !== 0) out.push(`${name} ${k} +${v}`);
  };
  add('Udp InErrors', e.udpInErrors);
  add('RcvbufErrors', e.udpRcvbufErrors);
  add('SndbufErrors', e.udpSndbufErrors);
  add('NoPorts', e.udpNoPorts);
  for (const [k, v] of Object.entries(e.ip ?? {})) add(`Ip ${k}`, v);
  for (const [ifname, l] of Object.entries(e.links ?? {})) {
    add(`${ifname} rx drops`, l.rx);
    add(`${ifname} tx drops`, l.tx);
  }
  return out;
}

/** One rotation's counters in a line: every nonzero increment, the host backlog, and each direction's loss beside its path's drops. */
export function describeCounters(c: RotationCounters | undefined): string {
  if (c === undefined) return 'counters not recorded';
  const parts = Object.entries(c.ns).flatMap(([n, e]) => nsParts(n, e));
  const bpf = Object.entries(c.bpfDrops ?? {}).flatMap(([n, r]) =>
    Object.entries(r).map(([k, v]) => `${n} ${k} +${v}`),
  );
  const udp = c.udp
    .map((u) => `${u.from}→${u.to} lost ${u.lost} vs path drops ${u.pathDrops} (steering ${u.pathBpfDrops ?? '?'})`)
    .join(', ');
  const unread = [...c.unread, ...(c.bpfUnread ?? []).map((n) => `${n} metrics`)];
  return `counters: ${parts.length > 0 ? parts.join(', ') : 'no drops in any namespace'}; steering drops: ${bpf.length > 0 ? bpf.join(', ') : 'none'}; host backlog drops +${c.backlogDrops ?? '?'}${unread.length > 0 ? `; unreadable: ${unread.join(',')}` : ''}; ${udp}`;
}

/** Totals of {@link RotationCounters} over samples. */
export interface CounterTotals {
  readonly rotations: number;
  readonly lost: number;
  /** Udp(6) InErrors in pod / node namespaces (RcvbufErrors among them). */
  readonly podInErrors: number;
  readonly nodeInErrors: number;
  readonly podRcvbuf: number;
  readonly nodeRcvbuf: number;
  readonly sndbuf: number;
  readonly noPorts: number;
  /** IPv4 drops (no route, reverse-path filter, discards). */
  readonly ipDrops: number;
  readonly linkDrops: number;
  readonly backlogDrops: number;
  /** Steering (BPF) drops on every node. */
  readonly bpfDrops: number;
  /** Rotations that lost datagrams, and of those, ones whose every direction's loss is covered by its path's drops. */
  readonly lossy: number;
  readonly explained: number;
}

/** Sums the counters of samples (those without counters are left out); `isPod` tells pod namespaces from nodes. */
export function counterTotals(samples: readonly RotationSample[], isPod: (ns: string) => boolean): CounterTotals {
  const t = {
    rotations: 0,
    lost: 0,
    podInErrors: 0,
    nodeInErrors: 0,
    podRcvbuf: 0,
    nodeRcvbuf: 0,
    sndbuf: 0,
    noPorts: 0,
    ipDrops: 0,
    linkDrops: 0,
    backlogDrops: 0,
    bpfDrops: 0,
    lossy: 0,
    explained: 0,
  };
  for (const s of samples) {
    const c = s.counters;
    if (c === undefined) continue;
    t.rotations++;
    for (const [n, e] of Object.entries(c.ns)) {
      if (isPod(n)) {
        t.podInErrors += e.udpInErrors ?? 0;
        t.podRcvbuf += e.udpRcvbufErrors ?? 0;
      } else {
        t.nodeInErrors += e.udpInErrors ?? 0;
        t.nodeRcvbuf += e.udpRcvbufErrors ?? 0;
      }
      t.sndbuf += e.udpSndbufErrors ?? 0;
      t.noPorts += e.udpNoPorts ?? 0;
      t.ipDrops += Object.values(e.ip ?? {}).reduce((a, v) => a + (v ?? 0), 0);
      t.linkDrops += Object.values(e.links ?? {}).reduce((a, l) => a + (l.rx ?? 0) + (l.tx ?? 0), 0);
    }
    t.backlogDrops += c.backlogDrops ?? 0;
    for (const r of Object.values(c.bpfDrops ?? {})) t.bpfDrops += Object.values(r).reduce((a, v) => a + v, 0);
    const lost = c.udp.reduce((a, u) => a + u.lost, 0);
    t.lost += lost;
    if (lost > 0) {
      t.lossy++;
      if (c.udp.every((u) => u.lost <= u.pathDrops)) t.explained++;
    }
  }
  return t;
}

/** The one-line drop-counter summary of a scope, or undefined when no sample of it has counters. */
export function countersSummary(r: RotationResult, scope: RotationScope): string | undefined {
  const pods = new Set(r.samples.flatMap((s) => s.counters?.udp.flatMap((u) => [u.path[0], u.path[3]]) ?? []));
  const t = counterTotals(
    r.samples.filter((s) => s.scope === scope),
    (n) => pods.has(n) || /^n\d+p\d+$/.test(n),
  );
  if (t.rotations === 0) return undefined;
  return `${scopeLabel(scope, r.nodes)}, ${t.rotations} rotations: ${t.lost} datagrams lost; drop counters over the cluster: Udp InErrors pods +${t.podInErrors} (RcvbufErrors +${t.podRcvbuf}), nodes +${t.nodeInErrors} (RcvbufErrors +${t.nodeRcvbuf}), SndbufErrors +${t.sndbuf}, NoPorts +${t.noPorts}, IPv4 drops +${t.ipDrops}, interface drops +${t.linkDrops}, host backlog drops +${t.backlogDrops}, steering drops +${t.bpfDrops}; ${t.explained} of ${t.lossy} rotations with loss covered by the drops on their paths`;
}
