/**
 * `kernel-throughput` (issue 9): pod-to-pod TCP throughput on the kernel datapaths this host's
 * kernel lacks — IPsec ESP and kernel WireGuard — measured inside the kernel test tier's qemu
 * guest (test/vm/run.sh, test/vm/README.md). Boots the guest once; the guest script
 * (test/vm/throughput-guest.ts, run from `dist/`) builds the variants side by side and runs
 * iperf3 round-robin, and its JSON comes back through `SEALNET_VM_OUT`.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describeArgv, STDIO_GRACE_MS } from '../harness/exec.js';
import { repoRoot } from '../harness/paths.js';
import { trackWait } from '../harness/wait.js';
import type { GuestThroughputOutput, KernelThroughputResult } from './kernel-report.js';

/** Options of {@link runKernelThroughput}. */
export interface KernelThroughputOptions {
  readonly rounds: number;
  readonly durationS: number;
  /** Run id: the guest's cluster prefixes are `k<runId><tag>`. */
  readonly runId: string;
  readonly log: (line: string) => void;
}

/** Guest time limit: boot, four clusters (two with agents, seconds of CPU each under TCG), the runs. */
export function guestTimeoutS(rounds: number, durationS: number): number {
  return 600 + rounds * 2 * 4 * (durationS + 20);
}

/** Runs `argv`, passing every output line to `line`; resolves with the exit code. */
function streamed(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  line: (l: string) => void,
): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0] as string, argv.slice(1), { cwd: repoRoot(), env, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [p.stdout, p.stderr]) createInterface({ input: stream }).on('line', line);
    const done = trackWait(`${describeArgv(argv).slice(0, 200)} (pid ${p.pid ?? '?'}) to finish`);
    let grace: NodeJS.Timeout | undefined;
    // Its output pipes may outlive it (a left-over child of the VM runner holds them): do not
    // wait for 'close' forever once the process itself is gone.
    p.on('exit', () => {
      grace = setTimeout(() => {
        line(
          `[bench: ${argv[0] ?? '?'} exited but its output pipes stayed open ${STDIO_GRACE_MS} ms; no longer reading them]`,
        );
        p.stdout.destroy();
        p.stderr.destroy();
      }, STDIO_GRACE_MS);
    });
    p.on('error', (e) => {
      done();
      reject(e);
    });
    p.on('close', (code) => {
      clearTimeout(grace);
      done();
      resolve(code ?? p.exitCode ?? undefined);
    });
  });
}

/** Boots the guest, runs the measurement in it and returns its result; throws when it produced none. */
export async function runKernelThroughput(o: KernelThroughputOptions): Promise<KernelThroughputResult> {
  const script = join(repoRoot(), 'dist', 'test', 'vm', 'throughput-guest.js');
  if (!existsSync(script))
    throw new Error(`${script} is missing: run npm run build first (the guest runs the host's dist/)`);
  const out = await mkdtemp(join(tmpdir(), 'sealnet-kt-'));
  try {
    const command = [
      'bash',
      join(repoRoot(), 'test', 'vm', 'run.sh'),
      '--',
      process.execPath,
      script,
      '--rounds',
      String(o.rounds),
      '--duration',
      String(o.durationS),
      '--run-id',
      o.runId,
    ];
    const env = {
      ...process.env,
      SEALNET_VM_OUT: out,
      SEALNET_VM_TIMEOUT: String(guestTimeoutS(o.rounds, o.durationS)),
    };
    o.log(
      `kernel-throughput: booting the qemu guest (${o.rounds} rounds × ${o.durationS} s; time limit ${env.SEALNET_VM_TIMEOUT} s)`,
    );
    const t0 = Date.now();
    const code = await streamed(command, env, (l) => o.log(`  [guest] ${l}`));
    const guestWallMs = Date.now() - t0;
    const file = join(out, 'kernel-throughput.json');
    if (!existsSync(file))
      throw new Error(
        `the guest wrote no result (test/vm/run.sh exited ${code ?? 'by a signal'}; 125 = the guest did not boot or report)`,
      );
    const r = JSON.parse(await readFile(file, 'utf8')) as GuestThroughputOutput;
    if (code !== 0) o.log(`kernel-throughput: the guest exited ${code ?? 'by a signal'}; keeping the samples it wrote`);
    return { ...r, guestWallMs, command: command.map((a) => a.replace(repoRoot(), '.')) };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}
