/**
 * `sealctl` as an operator runs it against a real API server (the k8s and the real-cluster
 * tiers): the built CLI with `--store kubernetes` and the operator's kubeconfig.
 */
import { join } from 'node:path';
import { run, type ExecResult } from '../harness/exec.js';
import { repoRoot } from '../harness/paths.js';

/** `sealctl status --json` as the operator sees it. */
export interface StatusJson {
  partial: boolean;
  nodes: { name: string; health: string; problem?: string }[];
  pairs: { a: string; b: string; state: string; partial: boolean; notes: string[] }[];
}

/** Runs `sealctl --store kubernetes --kubeconfig <kubeconfig> args…` (never throws on exit codes). */
export function sealctl(kubeconfig: string, args: readonly string[]): Promise<ExecResult> {
  return run(
    [
      process.execPath,
      join(repoRoot(), 'bin', 'sealctl.js'),
      '--store',
      'kubernetes',
      '--kubeconfig',
      kubeconfig,
      ...args,
    ],
    { check: false, timeoutMs: 120_000 },
  );
}
