/**
 * Issue 5's figures, pure: the `rotation` benchmark's raw data (its types live here) and what
 * the summary makes of it — time from a `sealctl keys rotate` request to every key switched and
 * to every old key gone, and what the traffic running across the rotation lost.
 */
import { cell } from './summary.js';
import { fmt, spread, type Spread } from './stats.js';

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
