/**
 * The environment a run happened in: CPU, memory, kernel, tool versions, both wireguard-go
 * binaries, load average, and the commit (read from `.git` directly: the bench runs no git).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { cpus, hostname, loadavg, release, totalmem, version as kernelVersion } from 'node:os';
import { join, resolve } from 'node:path';
import { run } from '../harness/exec.js';
import { repoRoot } from '../harness/paths.js';
import { listNetns } from '../harness/teardown.js';
import type { Environment, LoadAvg, WireGuardGoInfo } from './types.js';

/** Debian's wireguard-go (package `wireguard-go`). */
export const DEBIAN_WIREGUARD_GO = '/usr/bin/wireguard-go';

/** The current 1/5/15-minute load average. */
export function loadAverage(): LoadAvg {
  const [a = 0, b = 0, c = 0] = loadavg();
  return [round2(a), round2(b), round2(c)];
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/** First line of a command's output, or undefined when it cannot run. */
async function firstLine(argv: readonly string[]): Promise<string | undefined> {
  const r = await run(argv, { check: false, timeoutMs: 10_000 }).catch(() => undefined);
  if (r === undefined || r.code !== 0) return undefined;
  return `${r.stdout}\n${r.stderr}`.trim().split('\n')[0]?.trim();
}

/** What a wireguard-go binary is: `--version`, embedded module version, Debian package, hash. */
export async function describeWireGuardGo(path: string, opts: { debian: boolean }): Promise<WireGuardGoInfo> {
  if (!existsSync(path))
    return { path, version: undefined, module: undefined, debianPackage: undefined, sha256: undefined };
  const buildInfo = await run(['go', 'version', '-m', path], { check: false, timeoutMs: 10_000 }).catch(
    () => undefined,
  );
  const mod = buildInfo?.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((f) => f[0] === 'mod' && f[1] === 'golang.zx2c4.com/wireguard')?.[2];
  const deb = opts.debian ? await firstLine(['dpkg-query', '-W', '-f', '${Version}', 'wireguard-go']) : undefined;
  return {
    path,
    version: await firstLine([path, '--version']),
    module: mod,
    debianPackage: deb,
    sha256: createHash('sha256')
      .update(await readFile(path))
      .digest('hex'),
  };
}

/** Captures the environment at the start of a run (load "after" is filled in at the end). */
export async function captureEnvironment(opts: {
  pinnedWireGuardGo: string;
  ownPrefixes: readonly string[];
}): Promise<Environment> {
  const c = cpus();
  const foreign = listNetns().filter((ns) => !opts.ownPrefixes.some((p) => ns.startsWith(`${p}-`))).length;
  return {
    hostname: hostname(),
    cpus: c.length,
    cpuModel: c[0]?.model ?? 'unknown',
    memTotalMiB: Math.round(totalmem() / 2 ** 20),
    kernel: release(),
    kernelVersion: kernelVersion(),
    node: process.version,
    iperf3: await firstLine(['iperf3', '--version']),
    wgTools: await firstLine(['wg', '--version']),
    wireguardGo: {
      pinned: await describeWireGuardGo(opts.pinnedWireGuardGo, { debian: false }),
      debian: await describeWireGuardGo(DEBIAN_WIREGUARD_GO, { debian: true }),
    },
    loadBefore: loadAverage(),
    loadAfter: undefined,
    foreignNetnsAtStart: foreign,
  };
}

/**
 * The checked-out commit, read from `.git` (HEAD, loose ref, or packed-refs). `short` is
 * "unknown" outside a repository. Uncommitted changes are not detected.
 */
export function currentCommit(root = repoRoot()): { full: string | undefined; short: string } {
  let gitDir = join(root, '.git');
  try {
    // A linked worktree: .git is a file naming its own git dir; refs live in the common dir.
    let commonDir = gitDir;
    if (statSync(gitDir).isFile()) {
      gitDir = resolve(
        root,
        readFileSync(gitDir, 'utf8')
          .replace(/^gitdir: /, '')
          .trim(),
      );
      commonDir = existsSync(join(gitDir, 'commondir'))
        ? resolve(gitDir, readFileSync(join(gitDir, 'commondir'), 'utf8').trim())
        : gitDir;
    }
    const head = readFileSync(join(gitDir, 'HEAD'), 'utf8').trim();
    let full: string | undefined;
    if (/^[0-9a-f]{40}$/.test(head)) {
      full = head;
    } else {
      const ref = /^ref: (\S+)$/.exec(head)?.[1];
      if (ref !== undefined) {
        const loose = [join(gitDir, ref), join(commonDir, ref)].find((f) => existsSync(f));
        if (loose !== undefined) full = readFileSync(loose, 'utf8').trim();
        else
          full = readFileSync(join(commonDir, 'packed-refs'), 'utf8')
            .split('\n')
            .find((l) => l.endsWith(` ${ref}`))
            ?.split(' ')[0];
      }
    }
    if (full !== undefined && /^[0-9a-f]{40}$/.test(full)) return { full, short: full.slice(0, 7) };
  } catch {
    // not a repository, or an unusual layout
  }
  return { full: undefined, short: 'unknown' };
}
