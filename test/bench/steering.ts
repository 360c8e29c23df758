/**
 * `steering-map`: how fast the steering maps take thousands of prefixes, through the bpf()
 * Node-API addon the agent uses against spawning `bpftool` (issue 3). The measurement itself is
 * routing/bpf/fixtures/bench-maps.mjs (shared with the kernel test); this runs it, once per map
 * size, inside a scratch network namespace and a fresh mount namespace with a private bpffs on
 * /sys/fs/bpf. The pins live and die with that mount namespace: the host's /sys/fs/bpf (and
 * /sys/fs/bpf/sealnet on it) is never touched, and a crash leaves no pin behind.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../harness/exec.js';
import { repoRoot } from '../harness/paths.js';
import type { SteeringMapResult, SteeringMapRun, SteeringMapSamples } from './steering-report.js';

/** Map sizes measured (the issue asks for 5,000; 1,000 shows how it scales). */
export const STEERING_MAP_SIZES = [1000, 5000] as const;

/** Options of {@link runSteeringMap}. */
export interface SteeringMapOptions {
  readonly sizes?: readonly number[];
  /** Recorded rounds per size (default 10) after `warmup` unrecorded ones (default 1). */
  readonly rounds?: number;
  readonly warmup?: number;
  /** Run id: the namespace is `b<runId>-steermap`, the pin directory `/sys/fs/bpf/sealbench<runId>`. */
  readonly runId: string;
  readonly log: (line: string) => void;
}

/**
 * Shell run inside the new mount namespace: mounts a fresh bpffs and proves it is one (type
 * bpf_fs, no `seal*` pin: a new instance holds only what the kernel's bpf_preload puts in every
 * bpffs, maps.debug and progs.debug) before anything is pinned, then execs the fixture.
 */
const PRIVATE_BPFFS =
  'set -e; mount -t bpf bpf /sys/fs/bpf; [ "$(stat -f -c %T /sys/fs/bpf)" = bpf_fs ]; if ls -A /sys/fs/bpf | grep -q "^seal"; then echo "fresh bpffs already holds seal* pins" >&2; exit 1; fi; exec "$@"';

/** Reads what the fixture prints into a {@link SteeringMapRun}. */
export function parseBenchMapsOutput(
  stdout: string,
  want: { prefixes: number; rounds: number; warmup: number },
): SteeringMapRun {
  const line = stdout.trim().split('\n').pop() ?? '';
  const r = JSON.parse(line) as { n?: number; samples?: SteeringMapSamples; sameContent?: boolean };
  if (r.n !== want.prefixes || r.samples === undefined)
    throw new Error(`bench-maps.mjs printed no samples for ${want.prefixes} prefixes: ${line.slice(0, 200)}`);
  return { ...want, samples: r.samples, sameContent: r.sameContent === true, error: undefined };
}

/** Runs the benchmark; the namespace is deleted on return or failure. */
export async function runSteeringMap(o: SteeringMapOptions): Promise<SteeringMapResult> {
  const root = repoRoot();
  const rounds = o.rounds ?? 10;
  const warmup = o.warmup ?? 1;
  // The object and the addon the agent loads (both idempotent: rebuilt only when stale).
  await run(['bash', join(root, 'scripts', 'build-bpf.sh')], { timeoutMs: 120_000 });
  await run(['bash', join(root, 'scripts', 'build-addons.sh')], { timeoutMs: 240_000 });
  const fixture = join(root, 'routing', 'bpf', 'fixtures', 'bench-maps.mjs');
  const dist = join(root, 'dist');
  if (!existsSync(join(dist, 'routing', 'bpf', 'datapath.js')))
    throw new Error('dist/ has no routing/bpf/datapath.js: run npm run build');
  const bpftool = (await run(['bpftool', '--version'], { check: false })).stdout.split('\n')[0]?.trim() || undefined;
  const netns = `b${o.runId}-steermap`;
  const pinDir = `/sys/fs/bpf/sealbench${o.runId}`;
  const runs: SteeringMapRun[] = [];
  await run(['ip', 'netns', 'add', netns]);
  try {
    for (const prefixes of o.sizes ?? STEERING_MAP_SIZES) {
      const want = { prefixes, rounds, warmup };
      const argv = [
        'ip',
        'netns',
        'exec',
        netns,
        'unshare',
        '--mount',
        '--propagation',
        'private',
        '--',
        'sh',
        '-c',
        PRIVATE_BPFFS,
        'sh',
      ];
      argv.push(process.execPath, fixture, dist, pinDir, String(prefixes), String(rounds), String(warmup));
      try {
        const out = await run(argv, { timeoutMs: 300_000 });
        const r = parseBenchMapsOutput(out.stdout, want);
        runs.push(r);
        o.log(`steering-map: ${prefixes} prefixes, ${rounds} rounds done${r.sameContent ? '' : ' (contents differ!)'}`);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        o.log(`steering-map: ${prefixes} prefixes failed: ${message}`);
        runs.push({ ...want, samples: undefined, sameContent: false, error: message.split('\n')[0] ?? message });
      }
    }
  } finally {
    await run(['ip', 'netns', 'del', netns], { check: false });
  }
  // The pins were in the private bpffs only; a pin directory on the host's would be a leak.
  if (existsSync(pinDir))
    throw new Error(`${pinDir} exists on the host's bpffs after the run: the private mount did not hold`);
  return { bpftool, netns, pinDir, runs };
}
