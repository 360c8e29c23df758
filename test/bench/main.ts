/**
 * `npm run bench [-- NAME ...] [--quick]`: runs the benchmarks, writes
 * `bench/results/<date>-<commit>.json` with every raw sample and the environment, and
 * regenerates `bench/SUMMARY.md` and the SVG charts. Performance targets live here and in the
 * summary, never in tests.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../harness/exec.js';
import { repoRoot, wireguardGoPath } from '../harness/paths.js';
import { installWatchdog } from '../harness/wait.js';
import { BENCH_USAGE, parseBenchArgs, type BenchArgs } from './args.js';
import { captureEnvironment, currentCommit, loadAverage } from './env.js';
import { runJoin } from './join.js';
import { kernelThroughputErrors } from './kernel-report.js';
import { runKernelThroughput } from './kernel-throughput.js';
import { ipFamilyErrors } from './ipfamily-report.js';
import { runIpFamily } from './ipfamily.js';
import { runMtuSweep } from './mtu.js';
import { rotationErrors } from './rotation-report.js';
import { runRotation } from './rotation.js';
import { runScale } from './scale.js';
import { steeringMapErrors } from './steering-report.js';
import { runSteeringMap } from './steering.js';
import { writeReports, writeResult } from './output.js';
import { newRunId, runThroughput } from './throughput.js';
import { RESULT_SCHEMA, type BenchResult } from './types.js';

/** Progress lines on stderr, with the time since start. */
function makeLog(t0: number): (line: string) => void {
  return (line) => {
    const s = Math.round((Date.now() - t0) / 1000);
    process.stderr.write(
      `[${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}] ${line}\n`,
    );
  };
}

/**
 * Makes sure the pinned wireguard-go exists (building it if `go` is available) and returns the
 * path the harness's agents will use. Throughput compares against that exact binary.
 */
async function pinnedWireGuardGo(log: (l: string) => void): Promise<string> {
  const script = join(repoRoot(), 'scripts', 'build-wireguard-go.sh');
  const r = await run(['bash', script], { check: false, timeoutMs: 15 * 60_000 }).catch((e: unknown) => ({
    code: 1,
    stdout: '',
    stderr: String(e),
  }));
  if (r.code !== 0)
    log(`warning: ${script} failed (${r.stderr.trim().split('\n').pop() ?? ''}); using whatever the harness finds`);
  return wireguardGoPath();
}

async function runAll(args: BenchArgs, log: (l: string) => void): Promise<BenchResult> {
  const pinned = await pinnedWireGuardGo(log);
  const runId = newRunId();
  const result: BenchResult = {
    schema: RESULT_SCHEMA,
    startedAt: new Date().toISOString(),
    finishedAt: undefined,
    commit: currentCommit(),
    argv: process.argv.slice(2),
    quick: args.quick,
    environment: await captureEnvironment({ pinnedWireGuardGo: pinned, ownPrefixes: [] }),
    benchmarks: {},
    errors: [],
  };
  const env = result.environment;
  log(
    `bench ${runId}: ${args.benchmarks.join(', ')} on ${env.cpus} CPUs, load ${env.loadBefore.join(' ')}, ${env.foreignNetnsAtStart} foreign namespaces; pinned wireguard-go ${pinned} (${env.wireguardGo.pinned.version ?? 'missing'})`,
  );
  for (const name of args.benchmarks) {
    const t0 = Date.now();
    log(`${name}: start`);
    try {
      if (name === 'throughput') {
        if (!pinned.startsWith('/'))
          throw new Error(
            `the pinned wireguard-go is missing (harness falls back to ${pinned} on PATH): run scripts/build-wireguard-go.sh`,
          );
        result.benchmarks.throughput = await runThroughput({
          rounds: args.rounds,
          durationS: args.durationS,
          latencyCount: args.latencyCount,
          pinnedWireGuardGo: pinned,
          runId,
          log,
          variants: args.variants,
          tests: args.tests,
          pin: args.pin,
        });
      } else if (name === 'join') {
        result.benchmarks.join = await runJoin({ initialNodes: 4, joins: args.joins, runId, log });
      } else if (name === 'mtu-sweep') {
        result.benchmarks['mtu-sweep'] = await runMtuSweep({ runId, log });
      } else if (name === 'ip-family') {
        const f = await runIpFamily({
          rounds: args.rounds,
          durationS: args.durationS,
          tests: args.tests,
          runId,
          log,
        });
        result.benchmarks['ip-family'] = f;
        for (const message of ipFamilyErrors(f)) result.errors.push({ benchmark: 'ip-family', message });
      } else if (name === 'steering-map') {
        const sm = await runSteeringMap({ runId, log });
        result.benchmarks['steering-map'] = sm;
        for (const message of steeringMapErrors(sm)) result.errors.push({ benchmark: 'steering-map', message });
      } else if (name === 'rotation') {
        const rot = await runRotation({ rounds: args.rotationRounds, runId, log });
        result.benchmarks.rotation = rot;
        for (const message of rotationErrors(rot)) result.errors.push({ benchmark: 'rotation', message });
      } else if (name === 'kernel-throughput') {
        const kt = await runKernelThroughput({ rounds: args.kernelRounds, durationS: args.durationS, runId, log });
        result.benchmarks['kernel-throughput'] = kt;
        for (const message of kernelThroughputErrors(kt))
          result.errors.push({ benchmark: 'kernel-throughput', message });
      } else {
        result.benchmarks.scale = await runScale({
          sizes: args.scaleSizes,
          stores: args.scaleStores,
          changesPerKind: args.scaleChanges,
          rotationSizes: args.rotationSizes,
          resyncIntervalSeconds: 2,
          nodeShape: args.nodeShape,
          statusShape: args.statusShape,
          churnSeconds: args.churnSeconds,
          churnSteady: args.churnSteady,
          resync: args.scaleResync,
          runId,
          log,
        });
        for (const e of result.benchmarks.scale.errors)
          result.errors.push({
            benchmark: 'scale',
            message: `${e.store}${e.nodes !== undefined ? ` ${e.nodes} nodes` : ''} ${e.phase}: ${e.message}`,
          });
      }
      log(`${name}: done in ${Math.round((Date.now() - t0) / 1000)} s`);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      result.errors.push({ benchmark: name, message });
      log(`${name}: FAILED after ${Math.round((Date.now() - t0) / 1000)} s: ${message}`);
    }
  }
  result.environment.loadAfter = loadAverage();
  result.finishedAt = new Date().toISOString();
  return result;
}

/** Prints the "Targets" table of the summary: the headline of the run. */
function printTargets(summary: string): void {
  const start = summary.indexOf('## Targets');
  const end = summary.indexOf('\n## ', start + 1);
  if (start >= 0) process.stdout.write(`${summary.slice(start, end < 0 ? undefined : end).trim()}\n`);
}

/** Entry point; returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  let args: BenchArgs;
  try {
    args = parseBenchArgs(argv);
  } catch (err) {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n\n${BENCH_USAGE}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(`${BENCH_USAGE}\n`);
    return 0;
  }
  const benchDir = args.out ?? join(repoRoot(), 'bench');
  const log = makeLog(Date.now());
  let code = 0;
  if (!args.summaryOnly) {
    if (process.getuid?.() !== 0) {
      process.stderr.write('bench: needs root (it builds network namespaces)\n');
      return 2;
    }
    // A bench must never hang silently (issue 17): SIGUSR2 prints every pending wait, a drained
    // event loop with the run unfinished is reported, and SEALNET_BENCH_DEADLINE_S bounds the run.
    let finished = false;
    const deadlineS = Number(process.env.SEALNET_BENCH_DEADLINE_S ?? '');
    const uninstall = installWatchdog({
      name: 'bench',
      finished: () => finished,
      ...(deadlineS > 0 ? { deadlineMs: deadlineS * 1000 } : {}),
    });
    let result: Awaited<ReturnType<typeof runAll>>;
    try {
      result = await runAll(args, log);
    } finally {
      finished = true;
      uninstall();
    }
    log(`wrote ${await writeResult(benchDir, result)}`);
    if (result.errors.length > 0) code = 1;
  }
  const written = await writeReports(benchDir);
  log(`wrote ${written.join(', ')}`);
  printTargets(await readFile(join(benchDir, 'SUMMARY.md'), 'utf8'));
  return code;
}
