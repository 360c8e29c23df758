/**
 * The binaries of the Kubernetes API tier, built and cached by `scripts/k8s-binaries.sh`
 * (kube-apiserver, kubectl, etcd, helm at pinned versions). The first build takes a while;
 * `npm run test:k8s` runs the script before jest so a test never waits for a compiler.
 */
import { join } from 'node:path';
import { run } from '../harness/exec.js';
import { repoRoot } from '../harness/paths.js';

/** Absolute paths of the tier's tools. */
export interface K8sBinaries {
  readonly kubeApiserver: string;
  readonly kubectl: string;
  readonly etcd: string;
  readonly helm: string;
}

/** Parses the script's `NAME=/path` lines. Pure. */
export function parseBinaryPaths(stdout: string): K8sBinaries {
  const vars = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const m = /^([A-Z_]+)=(\/\S+)$/.exec(line.trim());
    if (m !== null) vars.set(m[1] as string, m[2] as string);
  }
  const get = (k: string): string => {
    const v = vars.get(k);
    if (v === undefined)
      throw new Error(`scripts/k8s-binaries.sh printed no ${k}= line; output: ${stdout.slice(0, 500)}`);
    return v;
  };
  return { kubeApiserver: get('KUBE_APISERVER'), kubectl: get('KUBECTL'), etcd: get('ETCD'), helm: get('HELM') };
}

/**
 * Runs `scripts/k8s-binaries.sh` (a cache hit returns in well under a second; a cold build
 * can take half an hour on 2 cores, hence the long timeout) and returns the paths.
 */
export async function k8sBinaries(opts: { timeoutMs?: number } = {}): Promise<K8sBinaries> {
  const r = await run(['bash', join(repoRoot(), 'scripts', 'k8s-binaries.sh')], {
    timeoutMs: opts.timeoutMs ?? 60 * 60_000,
  });
  return parseBinaryPaths(r.stdout);
}
