/**
 * `bench/SUMMARY.md`: generated from result files only. Each section comes from the newest
 * result file that holds that benchmark, and names it. Every target sits next to its measured
 * value with a plain verdict, and a missed target says by how much.
 */
import {
  joinFigures,
  latencyFigures,
  mtuTable,
  RATIOS,
  TARGET_JOIN_MS,
  TARGET_VS_HAND,
  throughputFigures,
} from './analysis.js';
import { cpuSection, ranOf, throughputCiSection } from './precision-report.js';
import { ipFamilySection, type IpFamilyResult } from './ipfamily-report.js';
import { kernelThroughputSection, type KernelThroughputResult } from './kernel-report.js';
import { rotationSection, type RotationResult } from './rotation-report.js';
import { scaleSection, TARGET_SCALE_NODES } from './scale-report.js';
import { steeringMapSection, steeringVsRouteSection, type SteeringMapResult } from './steering-report.js';
import { atLeast, below, fmt, type Spread } from './stats.js';
import {
  BENCHMARKS,
  SCALE_STORES,
  TEST_LABELS,
  THROUGHPUT_TESTS,
  VARIANT_LABELS,
  VARIANTS,
  type BenchmarkName,
  type BenchResult,
  type JoinResult,
  type MtuProbe,
  type MtuSweepResult,
  type ScaleResult,
  type ScaleStore,
  type ThroughputResult,
} from './types.js';

/** A result file and its name relative to `bench/`. */
export interface Source {
  readonly file: string;
  readonly result: BenchResult;
}

/** The sources, newest run first. */
function newestFirst(sources: readonly Source[]): Source[] {
  return [...sources].sort((a, b) => (a.result.startedAt < b.result.startedAt ? 1 : -1));
}

/** For each benchmark, the newest source holding it. */
export function latestPerBenchmark(sources: readonly Source[]): Partial<Record<BenchmarkName, Source>> {
  const sorted = newestFirst(sources);
  const out: Partial<Record<BenchmarkName, Source>> = {};
  for (const name of BENCHMARKS) {
    const s = sorted.find((x) => x.result.benchmarks[name] !== undefined);
    if (s !== undefined) out[name] = s;
  }
  return out;
}

/** One store's scale figures from one run; `targets` false: shown beside the run that judges the targets. */
export interface ScaleShown {
  readonly source: Source;
  readonly scale: ScaleResult;
  readonly targets: boolean;
}

/**
 * The scale benchmark runs per store (`--store file|kubernetes`) and per size, often in separate
 * runs: for each store, the newest source that measured the target size ({@link TARGET_SCALE_NODES})
 * for it judges the targets (the newest with any rows when none did); a newer source that
 * measured the store only at other sizes is shown after it, not judged. Each result is cut to
 * that store's rows. A newer run of one store does not hide the other store's figures, and a run
 * at 10,000 does not hide the 5,000 figures the targets are stated for.
 */
export function latestScalePerStore(sources: readonly Source[]): ScaleShown[] {
  const sorted = newestFirst(sources);
  const out: ScaleShown[] = [];
  for (const store of SCALE_STORES) {
    const has = (r: ScaleResult | undefined): r is ScaleResult =>
      r !== undefined && (r.convergence.some((c) => c.store === store) || r.errors.some((e) => e.store === store));
    const atTarget = (x: Source): boolean =>
      (x.result.benchmarks.scale as ScaleResult).convergence.some(
        (c) => c.store === store && c.nodes === TARGET_SCALE_NODES,
      );
    const withStore = sorted.filter((x) => has(x.result.benchmarks.scale as ScaleResult | undefined));
    const judged = withStore.find(atTarget) ?? withStore[0];
    if (judged === undefined) continue;
    const newer = withStore.slice(0, withStore.indexOf(judged));
    const beside = newer.find((x) => !atTarget(x));
    out.push({ source: judged, scale: cutToStore(judged, store), targets: true });
    if (beside !== undefined) out.push({ source: beside, scale: cutToStore(beside, store), targets: false });
  }
  return out;
}

/** A source's scale result with only `store`'s rows. */
function cutToStore(source: Source, store: ScaleStore): ScaleResult {
  const r = source.result.benchmarks.scale as ScaleResult;
  const mine = <T extends { readonly store: ScaleStore }>(xs: readonly T[] | undefined): T[] =>
    (xs ?? []).filter((x) => x.store === store);
  return {
    ...r,
    stores: [store],
    convergence: mine(r.convergence),
    changes: mine(r.changes),
    resync: mine(r.resync),
    rotation: mine(r.rotation),
    ...(r.churn !== undefined ? { churn: mine(r.churn) } : {}),
    ...(r.shape !== undefined ? { shape: { ...r.shape, objectBytes: mine(r.shape.objectBytes) } } : {}),
    errors: mine(r.errors),
  };
}

/** How a shown scale result is named: its store, and its sizes when it is not the judged one. */
function scaleLabel(x: ScaleShown): string {
  const sizes = [...new Set(x.scale.convergence.map((c) => c.nodes))].sort((a, b) => a - b);
  return x.targets
    ? `${x.scale.stores[0]} store`
    : `${x.scale.stores[0]} store at ${sizes.join(', ')} nodes, not judged against the targets`;
}

/** "median [min–max]" with `digits` decimals, or "—". */
export function cell(s: Spread | undefined, digits = 0): string {
  if (s === undefined) return '—';
  return `${s.median.toFixed(digits)} [${s.min.toFixed(digits)}–${s.max.toFixed(digits)}]`;
}

function environmentRows(s: Source): string[] {
  const r = s.result;
  const e = r.environment;
  const wg = e.wireguardGo;
  const load = (l: readonly number[] | undefined): string => (l === undefined ? '—' : l.join(' / '));
  return [
    `| file | [${s.file}](${s.file}) |`,
    `| started | ${r.startedAt} (commit ${r.commit.short}${r.quick ? ', --quick' : ''}) |`,
    `| machine | ${e.cpus} × ${e.cpuModel}, ${e.memTotalMiB} MiB, kernel ${e.kernel} |`,
    `| load average before / after (1/5/15 min) | ${load(e.loadBefore)} → ${load(e.loadAfter ?? undefined)} |`,
    `| other namespaces on the machine at start | ${e.foreignNetnsAtStart} |`,
    `| pinned wireguard-go | \`${wg.pinned.path}\`: ${wg.pinned.version ?? 'missing'}${wg.pinned.module !== undefined ? ` (module ${wg.pinned.module})` : ''} |`,
    `| Debian wireguard-go | \`${wg.debian.path}\`: ${wg.debian.version ?? 'missing'}${wg.debian.debianPackage !== undefined ? ` (package ${wg.debian.debianPackage})` : ''} |`,
    `| tools | Node ${e.node}, ${e.iperf3 ?? 'iperf3 missing'}, ${e.wgTools ?? 'wg missing'} |`,
  ];
}

function throughputSection(t: ThroughputResult, targets: string[]): string[] {
  const f = throughputFigures(t);
  const { variants: VARIANTS, tests: THROUGHPUT_TESTS } = ranOf(t);
  const out = [
    '## Pod-to-pod TCP throughput',
    '',
    `iperf3, ${t.durationS} s per run, ${t.rounds} rounds; in every round each shape ran once per variant, the 2-node clusters side by side, variant order rotating per round. Mbit/s at the receiver: median [min–max] over rounds.`,
    '',
    `| test | ${VARIANTS.map((v) => VARIANT_LABELS[v]).join(' | ')} |`,
    `| --- | ${VARIANTS.map(() => '---:').join(' | ')} |`,
    ...THROUGHPUT_TESTS.map(
      (test) => `| ${TEST_LABELS[test]} | ${VARIANTS.map((v) => cell(f.mbps[test][v])).join(' | ')} |`,
    ),
    '',
    'Ratios of samples from the same round (paired), median [min–max]:',
    '',
    `| test | ${RATIOS.map((r) => (r.target === undefined ? r.label : `${r.label} (target ≥ ${r.target})`)).join(' | ')} |`,
    `| --- | ${RATIOS.map(() => '---:').join(' | ')} |`,
  ];
  for (const test of THROUGHPUT_TESTS)
    out.push(`| ${TEST_LABELS[test]} | ${RATIOS.map((r) => cell(f.ratios[test][r.id], 3)).join(' | ')} |`);
  out.push(`| all shapes pooled | ${RATIOS.map((r) => cell(f.pooledRatios[r.id], 3)).join(' | ')} |`);
  out.push('', ...throughputCiSection(t, targets));
  if (f.failures > 0) out.push('', `${f.failures} iperf3 run(s) failed and are left out; see the result file.`);
  const sn = t.setups.find((s) => s.variant === 'sealnet');
  if (sn !== undefined) {
    const progs = sn.bpfPrograms as readonly string[] | undefined;
    const bpf =
      progs === undefined
        ? 'not recorded'
        : progs.length === 0
          ? 'none attached'
          : progs.map((p) => `\`${p}\``).join(', ');
    out.push(
      '',
      `Data path of the sealnet variant (n1): route \`${sn.routeToPeerPods.split('\n')[0]?.trim() ?? ''}\`; BPF steering: ${bpf}. The hand-configured variants route the remote pod CIDR straight into their tunnel link in the main table, nothing else.`,
    );
  }
  const pooled = f.pooledRatios['sealnet/hand-pinned'];
  targets.push(
    `| throughput, ${THROUGHPUT_TESTS.length === 4 ? 'all four shapes' : 'all shapes run'} pooled (${pooled?.n ?? 0} paired runs): sealnet ÷ hand-configured | ≥ ${TARGET_VS_HAND} | ${cell(pooled, 3)} | ${atLeast(pooled, TARGET_VS_HAND).text} |`,
  );
  for (const test of THROUGHPUT_TESTS) {
    const s = f.ratios[test]['sealnet/hand-pinned'];
    targets.push(
      `| throughput ${TEST_LABELS[test]}: sealnet ÷ hand-configured | ≥ ${TARGET_VS_HAND} | ${cell(s, 3)} | ${atLeast(s, TARGET_VS_HAND).text} |`,
    );
  }
  const l = latencyFigures(t);
  out.push(
    '',
    '## Request/response latency',
    '',
    `One TCP connection (TCP_NODELAY), 64-byte messages, ${t.latencyCount} round trips per run after 100 warm-up, one run per variant per round (\`test/bench/tools/pingpong.mjs\`: both ends are Node.js, which adds its event-loop time to every variant alike). µs: median [min–max] over rounds of each run's percentile.`,
    '',
    `| percentile | ${VARIANTS.map((v) => VARIANT_LABELS[v]).join(' | ')} | sealnet ÷ plaintext |`,
    `| --- | ${VARIANTS.map(() => '---:').join(' | ')} | ---: |`,
    `| p50 | ${VARIANTS.map((v) => cell(l.p50[v])).join(' | ')} | ${cell(l.ratioP50, 2)} |`,
    `| p99 | ${VARIANTS.map((v) => cell(l.p99[v])).join(' | ')} | ${cell(l.ratioP99, 2)} |`,
    '',
    `sealnet adds ${cell(l.addedP50Us)} µs to the median round trip (paired per round). No latency target is set yet.`,
  );
  if (l.failures > 0) out.push('', `${l.failures} latency run(s) failed and are left out.`);
  const cpu = cpuSection(t);
  if (cpu.length > 0) out.push('', ...cpu);
  return out;
}

function joinSection(j: JoinResult, targets: string[]): string[] {
  const f = joinFigures(j);
  const ms = (x: number | undefined): string => (x === undefined ? '—' : `${Math.round(x)}`);
  const out = [
    '## Node join',
    '',
    `A ${j.initialNodes}-node sealnet cluster grows by one node at a time. Times in ms from the new node's key appearing in the node store to: every existing node's WireGuard device holding the new peer with its pod CIDR (read over the UAPI socket, what \`wg show dump\` prints, polled; the worst poll resolution is shown), and the first echo reply from the new pod at every existing pod (\`ping -D\` every ${j.pingIntervalMs} ms, started before the agent). The bench deletes the harness's host-gw routes between the newcomer and the others before its agent starts, so those replies can only come through the tunnel, whatever sealnet's steering does with traffic to a node that has no tunnel yet.`,
    '',
    '| node | nodes before | agent start → key published | key → programmed on every node | poll resolution | key → first ping from every pod | key → new node has every peer |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...f.rows.map(
      (r) =>
        `| ${r.node} | ${r.nodesBefore} | ${ms(r.agentStartToKeyMs)} | ${r.error !== undefined ? `failed: ${r.error}` : ms(r.programmedAllMs)} | ${ms(r.worstResolutionMs)} | ${ms(r.firstPingAllMs)} | ${ms(r.newNodeProgrammedMs)} |`,
    ),
    `| **median [min–max]** | | ${cell(f.agentStartToKey)} | ${cell(f.programmedAll)} | | ${cell(f.firstPingAll)} | |`,
  ];
  targets.push(
    `| join: key → programmed on every node (max over ${f.rows.length} joins) | < ${TARGET_JOIN_MS} ms | median ${fmt(f.programmedAll?.median ?? Number.NaN)}, max ${fmt(f.programmedAll?.max ?? Number.NaN)} ms | ${below(f.programmedAll?.max, TARGET_JOIN_MS, 'ms').text} |`,
  );
  targets.push(
    `| join: key → first ping from every existing pod (max over ${f.rows.length} joins) | < ${TARGET_JOIN_MS} ms | median ${fmt(f.firstPingAll?.median ?? Number.NaN)}, max ${fmt(f.firstPingAll?.max ?? Number.NaN)} ms | ${below(f.firstPingAll?.max, TARGET_JOIN_MS, 'ms').text} |`,
  );
  const failed = f.rows.filter((r) => r.error !== undefined).length;
  if (failed > 0)
    targets.push(
      `| join: every join completes | all | ${f.rows.length - failed}/${f.rows.length} | **missed**: ${failed} join(s) failed |`,
    );
  return out;
}

function probeCell(p: MtuProbe | undefined): string {
  if (p === undefined) return '—';
  const what =
    p.outcome === 'reply'
      ? `reply ${p.received}/${p.transmitted}`
      : p.outcome === 'frag-needed'
        ? `refused, mtu ${p.reportedMtu ?? '?'}`
        : p.outcome === 'wrong-mtu'
          ? `refused, mtu ${p.reportedMtu ?? '?'}`
          : p.outcome === 'partial'
            ? `partial ${p.received}/${p.transmitted}`
            : 'BLACK HOLE';
  return p.ok ? what : `**${what} (unexpected)**`;
}

function mtuSection(m: MtuSweepResult, targets: string[]): string[] {
  const t = mtuTable(m);
  const total = m.probes.length;
  const out = [
    '## MTU sweep',
    '',
    `ICMP echo with DF set (\`ping -M do\`, 2 per size, route cache flushed before each size), pod to pod across the tunnel (tunnel MTU ${m.tunnelMtu} on a ${m.underlayMtu}-byte underlay) and, as the reference that shows the sweep can tell the difference, on a plaintext cluster (path MTU ${m.underlayMtu}). Expected: a reply for every packet ≤ the path MTU; "fragmentation needed" / EMSGSIZE naming the path MTU for every larger one; never silence.`,
    '',
    `| ICMP payload | IPv4 packet | ${t.columns.join(' | ')} |`,
    `| ---: | ---: | ${t.columns.map(() => '---').join(' | ')} |`,
    ...t.rows.map(
      (r) => `| ${r.payload} | ${r.payload + 28} | ${t.columns.map((c) => probeCell(r.cells[c])).join(' | ')} |`,
    ),
  ];
  const bad = t.unexpected;
  targets.push(
    `| MTU sweep: replies up to ${m.tunnelMtu}, refusal naming ${m.tunnelMtu} above, no black hole | all ${total} probes | ${total - bad.length}/${total} as expected | ${bad.length === 0 ? 'met' : `**missed**: ${bad.map((p) => `${p.cluster} ${p.from}→${p.to} ${p.payload} B ${p.outcome}`).join('; ')}`} |`,
  );
  return out;
}

/** A section followed by a blank line, or nothing for an empty section. */
function withBlank(section: readonly string[]): string[] {
  return section.length === 0 ? [] : [...section, ''];
}

/** Renders SUMMARY.md from the newest source of each benchmark. */
export function renderSummary(sources: readonly Source[]): string {
  const latest = latestPerBenchmark(sources);
  const targets: string[] = [];
  const body: string[] = [];
  if (latest.throughput !== undefined)
    body.push(...throughputSection(latest.throughput.result.benchmarks.throughput as ThroughputResult, targets), '');
  if (latest.throughput !== undefined)
    body.push(...withBlank(steeringVsRouteSection(latest.throughput.result.benchmarks.throughput as ThroughputResult)));
  if (latest.join !== undefined)
    body.push(...joinSection(latest.join.result.benchmarks.join as JoinResult, targets), '');
  if (latest['mtu-sweep'] !== undefined)
    body.push(...mtuSection(latest['mtu-sweep'].result.benchmarks['mtu-sweep'] as MtuSweepResult, targets), '');
  if (latest['ip-family'] !== undefined)
    body.push(...ipFamilySection(latest['ip-family'].result.benchmarks['ip-family'] as IpFamilyResult, targets), '');
  const scales = latestScalePerStore(sources);
  for (const x of scales)
    body.push(...scaleSection(x.scale, x.targets ? targets : [], scales.length > 1 ? scaleLabel(x) : undefined), '');
  if (latest['steering-map'] !== undefined)
    body.push(...steeringMapSection(latest['steering-map'].result.benchmarks['steering-map'] as SteeringMapResult), '');
  if (latest.rotation !== undefined)
    body.push(...rotationSection(latest.rotation.result.benchmarks.rotation as RotationResult, targets), '');
  if (latest['kernel-throughput'] !== undefined)
    body.push(
      ...kernelThroughputSection(
        latest['kernel-throughput'].result.benchmarks['kernel-throughput'] as KernelThroughputResult,
      ),
      '',
    );
  const named: [string, Source][] = [
    ...(Object.entries(latest) as [BenchmarkName, Source][]).filter(([n]) => n !== 'scale'),
    ...scales.map((x): [string, Source] => [`scale (${scaleLabel(x)})`, x.source]),
  ];
  const used = [...new Map(named.map(([, s]) => [s.file, s])).values()];
  const out = [
    '# sealnet benchmarks',
    '',
    '<!-- Generated by `npm run bench` from bench/results/*.json. Do not edit: rerun the bench. -->',
    '',
    'Measured on a shared, noisy machine: every figure is a median with its spread, and every comparison is a ratio of samples taken side by side in the same run. Absolute numbers move with the load; the ratios are what to compare.',
    '',
  ];
  if (latest.throughput !== undefined)
    out.push('![Pod-to-pod TCP throughput](throughput.svg)', '', '![Request/response latency](latency.svg)', '');
  out.push(
    '## Targets',
    '',
    '| what | target | measured | verdict |',
    '| --- | --- | --- | --- |',
    ...(targets.length > 0 ? targets : ['| (no benchmark results yet) | | | |']),
    '',
  );
  out.push(...body);
  out.push('## Where these numbers come from', '');
  for (const s of used) {
    const names = named.filter(([, x]) => x === s).map(([n]) => n);
    out.push(`${names.join(', ')}:`, '', '| | |', '| --- | --- |', ...environmentRows(s));
    if (s.result.errors.length > 0)
      out.push('', ...s.result.errors.map((e) => `- ${e.benchmark} failed in this run: ${e.message}`));
    out.push('');
  }
  out.push(
    'Reproduce (as root): `npm run build && npm run bench` (all of them; throughput, join and mtu-sweep take about 5–6 minutes on 2 vCPUs, scale about 6), `npm run bench -- throughput --quick`, `npm run bench -- throughput --variants plaintext,sealnet,hand-pinned --tests 1x-fwd,4x-fwd --rounds 12 --duration 5` (the interval run; add `--pin` to taskset iperf3 to CPU 0 and wireguard-go to CPU 1; `kill -USR2 <bench pid>` prints what a running bench waits for, `SEALNET_BENCH_DEADLINE_S=N` bounds it), `npm run bench -- ip-family --rounds 4 --duration 2 --tests 1x-fwd,1x-rev` (IPv4 vs IPv6, about 2 minutes), `npm run bench -- scale --quick`, `npm run bench -- steering-map` (under a minute), `npm run bench -- rotation` (5 rounds, about 3 minutes; `--quick`: 2), `npm run bench -- kernel-throughput` (IPsec and kernel WireGuard in the qemu guest; `--quick`: 2 rounds of 2 s), `npm run bench -- --summary` (regenerate this file and the charts from the stored results).',
    '',
  );
  return out.join('\n');
}
