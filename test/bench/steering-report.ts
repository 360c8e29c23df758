/**
 * Issue 3's figures, pure: BPF steering against route-only steering (from the throughput
 * benchmark's `sealnet` and `sealnet-route-only` variants, paired per round), and the
 * `steering-map` benchmark (map updates through the bpf() addon against spawning bpftool,
 * paired per round). Types of the `steering-map` result live here too.
 */
import { byRound, percentileByRound } from './analysis.js';
import { cell } from './summary.js';
import { pairedRatios, spread, type Spread } from './stats.js';
import { TEST_LABELS, THROUGHPUT_TESTS, type ThroughputResult, type VariantSetup } from './types.js';

/**
 * Milliseconds per recorded round, in round order, as routing/bpf/fixtures/bench-maps.mjs
 * returns them. Every round: addon load (write only) and load through the diff (`syncRemote`,
 * the agent's path), a full dump, one change written alone and through the diff; then the same
 * map emptied and loaded by one `bpftool batch file`, and one `bpftool map update` spawn.
 */
export interface SteeringMapSamples {
  readonly loadRaw: readonly number[];
  readonly loadSync: readonly number[];
  readonly dump: readonly number[];
  readonly changeRaw: readonly number[];
  readonly changeSync: readonly number[];
  readonly bpLoad: readonly number[];
  readonly bpChange: readonly number[];
}

/** One map size. */
export interface SteeringMapRun {
  readonly prefixes: number;
  readonly rounds: number;
  /** Unrecorded rounds run first. */
  readonly warmup: number;
  readonly samples: SteeringMapSamples | undefined;
  /** Both ways left the map holding the same bytes. */
  readonly sameContent: boolean;
  readonly error: string | undefined;
}

/** Raw data of the `steering-map` benchmark. */
export interface SteeringMapResult {
  /** First line of `bpftool --version`. */
  readonly bpftool: string | undefined;
  /** Scratch network namespace and the pin directory inside its private bpffs. */
  readonly netns: string;
  readonly pinDir: string;
  readonly runs: readonly SteeringMapRun[];
}

/** Ratios `num[i] / den[i]` of samples of the same round (index). */
function pairedByIndex(num: readonly number[], den: readonly number[]): number[] {
  return pairedRatios(new Map(num.map((x, i) => [i, x])), new Map(den.map((x, i) => [i, x])));
}

/** One operation at one size: both sides and bpftool ÷ addon (how many times the addon is faster). */
export interface MapOpFigures {
  readonly addon: Spread | undefined;
  readonly bpftool: Spread | undefined;
  readonly ratio: Spread | undefined;
}

/** Reported figures of one map size (ms). */
export interface SteeringMapFigures {
  readonly prefixes: number;
  readonly rounds: number;
  readonly load: MapOpFigures;
  readonly change: MapOpFigures;
  /** The agent's diff-based path: dump, then write what differs. */
  readonly loadWithDiff: Spread | undefined;
  readonly changeWithDiff: Spread | undefined;
  readonly dump: Spread | undefined;
  readonly error: string | undefined;
}

/** Medians and paired ratios per map size. */
export function steeringMapFigures(r: SteeringMapResult): SteeringMapFigures[] {
  return r.runs.map((run) => {
    const s = run.samples;
    const op = (addon: readonly number[] | undefined, bp: readonly number[] | undefined): MapOpFigures => ({
      addon: spread(addon ?? []),
      bpftool: spread(bp ?? []),
      ratio: spread(pairedByIndex(bp ?? [], addon ?? [])),
    });
    return {
      prefixes: run.prefixes,
      rounds: run.rounds,
      load: op(s?.loadRaw, s?.bpLoad),
      change: op(s?.changeRaw, s?.bpChange),
      loadWithDiff: spread(s?.loadSync ?? []),
      changeWithDiff: spread(s?.changeSync ?? []),
      dump: spread(s?.dump ?? []),
      error:
        run.error ?? (run.sameContent || s === undefined ? undefined : 'addon and bpftool left different map contents'),
    };
  });
}

/** Failures of a `steering-map` run, one message per map size that did not complete. */
export function steeringMapErrors(r: SteeringMapResult): string[] {
  return steeringMapFigures(r).flatMap((f) => (f.error === undefined ? [] : [`${f.prefixes} prefixes: ${f.error}`]));
}

const thousands = (n: number): string => n.toLocaleString('en-US');

/** The `## BPF map updates` section of SUMMARY.md. */
export function steeringMapSection(r: SteeringMapResult): string[] {
  const figs = steeringMapFigures(r);
  const rounds = r.runs[0]?.rounds ?? 0;
  const warmup = r.runs[0]?.warmup ?? 0;
  const out = [
    '## BPF map updates: addon vs bpftool',
    '',
    `The steering maps as the agent creates them (\`BpfSteering.ensure\`: \`bpftool prog loadall\` of \`steer.o\`, pinned), in a scratch network namespace with a private bpffs (pins under \`${r.pinDir}\` there, never the host's \`/sys/fs/bpf/sealnet\`). The remote-prefix LPM map is loaded with N distinct /24s and one prefix is changed, through the bpf() Node-API addon the agent uses and by spawning ${r.bpftool ?? 'bpftool'} (\`bpftool batch file\` with one \`map update\` line per prefix: one process for the whole load; one \`bpftool map update\` for a change). ${rounds} rounds after ${warmup} warm-up, both ways in every round; ms, median [min–max]; bpftool ÷ addon paired per round (how many times faster the addon is).`,
    '',
    '| prefixes | operation | addon | bpftool | bpftool ÷ addon |',
    '| ---: | --- | ---: | ---: | ---: |',
  ];
  for (const f of figs) {
    if (f.error !== undefined) {
      out.push(`| ${thousands(f.prefixes)} | — | failed: ${f.error} | | |`);
      continue;
    }
    out.push(
      `| ${thousands(f.prefixes)} | load all | ${cell(f.load.addon, 2)} | ${cell(f.load.bpftool, 2)} | ${cell(f.load.ratio, 1)} |`,
    );
    out.push(
      `| ${thousands(f.prefixes)} | change one | ${cell(f.change.addon, 3)} | ${cell(f.change.bpftool, 2)} | ${cell(f.change.ratio, 1)} |`,
    );
  }
  out.push(
    '',
    'The agent does not write blindly: each pass dumps the map and writes only what differs (`SteeringMaps.syncRemote`), so its own cost is the dump plus the writes. Addon, same rounds (ms):',
    '',
    '| prefixes | full dump | load all through the diff | change one through the diff |',
    '| ---: | ---: | ---: | ---: |',
    ...figs
      .filter((f) => f.error === undefined)
      .map(
        (f) =>
          `| ${thousands(f.prefixes)} | ${cell(f.dump, 2)} | ${cell(f.loadWithDiff, 2)} | ${cell(f.changeWithDiff, 2)} |`,
      ),
  );
  return out;
}

/** Throughput (Mbit/s) or latency (µs) of steering on and off, and on ÷ off paired per round. */
export interface SteeringVsRouteRow {
  readonly label: string;
  readonly bpf: Spread | undefined;
  readonly routeOnly: Spread | undefined;
  readonly ratio: Spread | undefined;
}

/** `sealnet` ÷ `sealnet-route-only` for every iperf3 shape and latency p50/p99; undefined when the run had no route-only variant. */
export function steeringVsRouteFigures(t: ThroughputResult): SteeringVsRouteRow[] | undefined {
  if (
    !t.iperf.some((s) => s.variant === 'sealnet-route-only') &&
    !t.latency.some((s) => s.variant === 'sealnet-route-only')
  )
    return undefined;
  const row = (label: string, on: Map<number, number>, off: Map<number, number>): SteeringVsRouteRow => ({
    label,
    bpf: spread([...on.values()]),
    routeOnly: spread([...off.values()]),
    ratio: spread(pairedRatios(on, off)),
  });
  const shapes = THROUGHPUT_TESTS.map((test) =>
    row(`${TEST_LABELS[test]} (Mbit/s)`, byRound(t, 'sealnet', test), byRound(t, 'sealnet-route-only', test)),
  );
  const pooled = THROUGHPUT_TESTS.flatMap((test) =>
    pairedRatios(byRound(t, 'sealnet', test), byRound(t, 'sealnet-route-only', test)),
  );
  return [
    ...shapes,
    { label: 'throughput, all four shapes pooled', bpf: undefined, routeOnly: undefined, ratio: spread(pooled) },
    row('latency p50 (µs)', percentileByRound(t, 'sealnet', 0.5), percentileByRound(t, 'sealnet-route-only', 0.5)),
    row('latency p99 (µs)', percentileByRound(t, 'sealnet', 0.99), percentileByRound(t, 'sealnet-route-only', 0.99)),
  ];
}

function dataPath(s: VariantSetup | undefined): string {
  if (s === undefined) return 'not recorded';
  const route = `route \`${s.routeToPeerPods.split('\n')[0]?.trim() ?? ''}\``;
  const bpf =
    s.bpfPrograms.length === 0
      ? 'no BPF program on eth0 or cni0'
      : `BPF ${s.bpfPrograms.map((p) => `\`${p}\``).join(', ')}`;
  const egress =
    s.eth0Egress === undefined
      ? ''
      : `; \`tc filter show dev eth0 egress\`: ${Object.entries(s.eth0Egress)
          .map(([n, out]) => `${n} ${out.trim() === '' ? 'empty' : `${out.trim().split('\n').length} line(s)`}`)
          .join(', ')}`;
  return `${route}; ${bpf}${egress}`;
}

/** The `## BPF steering vs route-only` section of SUMMARY.md (empty for a run without the variant). */
export function steeringVsRouteSection(t: ThroughputResult): string[] {
  const rows = steeringVsRouteFigures(t);
  if (rows === undefined) return [];
  return [
    '## BPF steering vs route-only',
    '',
    `Two of the clusters above differ in one setting only: \`sealnet\` runs the agents as shipped (BPF steering at TC on the underlay, fail-closed), \`sealnet route-only\` the same agents with \`steering: { enabled: false }\` (the policy rule and table-5188 routes into \`sealwg0\`, no TC program, no fail-closed). Same rounds, same rotation; median [min–max] over ${t.rounds} rounds; the ratio is taken per round (paired). Throughput ratio > 1: steering is faster; latency ratio > 1: steering is slower.`,
    '',
    '| measure | BPF steering | route-only | BPF ÷ route-only |',
    '| --- | ---: | ---: | ---: |',
    ...rows.map((r) => `| ${r.label} | ${cell(r.bpf)} | ${cell(r.routeOnly)} | ${cell(r.ratio, 3)} |`),
    '',
    `Data path on n1 — BPF steering: ${dataPath(t.setups.find((s) => s.variant === 'sealnet'))}. Route-only: ${dataPath(t.setups.find((s) => s.variant === 'sealnet-route-only'))}.`,
  ];
}
