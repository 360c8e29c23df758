/**
 * An operator of the real-cluster tier: a service account bound only to the chart's operator
 * roles (`sealnet-operator`: read Nodes, list agent pods, pods/proxy, the status token Secret),
 * and `sealctl` run with its kubeconfig — what a platform engineer with ordinary RBAC runs.
 */
import { join } from 'node:path';
import { writeKubeconfig } from '../k8s/pki.js';
export { sealctl, type StatusJson } from '../k8s/sealctl.js';
import type { RealCluster } from './cluster.js';

/** Creates the operator (namespace `ops`, service account `auditor`) and returns its kubeconfig. */
export async function operatorKubeconfig(cluster: RealCluster, release = 'sealnet'): Promise<string> {
  const k = (args: string[]): Promise<unknown> => cluster.api.kubectl(args);
  await k(['create', 'namespace', 'ops']);
  await k(['-n', 'ops', 'create', 'serviceaccount', 'auditor']);
  await k([
    'create',
    'clusterrolebinding',
    'auditor-sealnet',
    `--clusterrole=${release}-operator`,
    '--serviceaccount=ops:auditor',
  ]);
  await k([
    '-n',
    'sealnet',
    'create',
    'rolebinding',
    'auditor-sealnet',
    `--role=${release}-operator`,
    '--serviceaccount=ops:auditor',
  ]);
  const file = join(cluster.dir, 'auditor.kubeconfig');
  await writeKubeconfig(file, {
    server: cluster.api.url,
    caCert: cluster.api.pki.caCert,
    user: 'auditor',
    auth: { token: await cluster.api.unboundToken({ namespace: 'ops', serviceAccount: 'auditor' }) },
  });
  return file;
}
