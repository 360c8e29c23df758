/**
 * The chart under test: rendering it with the pinned helm and applying the result with the
 * pinned kubectl (server-side apply), as an operator would with `helm template | kubectl apply`.
 */
import * as k8s from '@kubernetes/client-node';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { run, type ExecResult } from '../harness/exec.js';
import { repoRoot } from '../harness/paths.js';
import type { TestApiServer } from './apiserver.js';

/** `charts/sealnet`. */
export const CHART_DIR = join(repoRoot(), 'charts', 'sealnet');

/** The representative values files under `charts/sealnet/ci/` (absolute paths, sorted). */
export function ciValuesFiles(): string[] {
  return readdirSync(join(CHART_DIR, 'ci'))
    .filter((f) => f.endsWith('-values.yaml'))
    .sort()
    .map((f) => join(CHART_DIR, 'ci', f));
}

/** Kubernetes version helm renders for (the API server's). */
export const KUBE_VERSION = 'v1.36.4';

/** A rendered object (loosely typed: tests look into arbitrary kinds). */
export type Manifest = k8s.KubernetesObject & Record<string, unknown>;

/** Runs the pinned helm without a cluster. */
export function helm(bin: string, args: readonly string[], opts: { check?: boolean } = {}): Promise<ExecResult> {
  return run([bin, ...args], {
    check: opts.check ?? true,
    timeoutMs: 60_000,
    env: {
      HELM_CACHE_HOME: '/tmp/sealnet-helm-cache',
      HELM_CONFIG_HOME: '/tmp/sealnet-helm-config',
      HELM_DATA_HOME: '/tmp/sealnet-helm-data',
    },
  });
}

/**
 * The values a cluster cannot tell the chart (it refuses to render without them, naming them):
 * the pod range of the test clusters (test/harness/topology.ts POD_RANGE).
 */
export const REQUIRED_VALUES: readonly string[] = ['steering.clusterCidrs={100.64.0.0/10}'];

/** Every monitoring object on; the monitors need a metrics address Prometheus can reach. */
export const MONITORING_ON: readonly string[] = [
  'agent.metrics.host=0.0.0.0',
  'monitoring.podMonitor.enabled=true',
  'monitoring.serviceMonitor.enabled=true',
  'monitoring.prometheusRule.enabled=true',
  'monitoring.dashboard.enabled=true',
];

/** `helm template` of the chart with {@link REQUIRED_VALUES} (then `set`); returns the YAML stream. */
export async function renderChart(
  bin: string,
  o: { release?: string; namespace?: string; valuesFile?: string; set?: readonly string[] } = {},
): Promise<string> {
  const args = [
    'template',
    o.release ?? 'sealnet',
    CHART_DIR,
    '--namespace',
    o.namespace ?? 'sealnet',
    '--kube-version',
    KUBE_VERSION,
  ];
  if (o.valuesFile !== undefined) args.push('--values', o.valuesFile);
  for (const s of [...REQUIRED_VALUES, ...(o.set ?? [])]) args.push('--set', s);
  return (await helm(bin, args)).stdout;
}

/** Parses a YAML stream into objects (empty documents dropped). */
export function parseManifests(yaml: string): Manifest[] {
  return k8s.loadAllYaml(yaml).filter((d): d is Manifest => typeof d === 'object' && d !== null);
}

/** Finds the one rendered object of `kind` (optionally by name); throws if absent or ambiguous. */
export function findManifest<T = Manifest>(objs: readonly Manifest[], kind: string, name?: string): T {
  const hits = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));
  if (hits.length !== 1)
    throw new Error(`expected one ${kind}${name === undefined ? '' : ` ${name}`}, found ${hits.length}`);
  return hits[0] as T;
}

/** Creates the namespace (labelled for privileged pod security, as the README says) if missing. */
export async function ensureNamespace(api: TestApiServer, name: string): Promise<void> {
  const ns = {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name, labels: { 'pod-security.kubernetes.io/enforce': 'privileged' } },
  };
  await api.kubectl(['apply', '--server-side', '--field-manager=sealnet-test', '-f', '-'], {
    input: JSON.stringify(ns),
  });
}

/** `helm template | kubectl apply --server-side` into the namespace (created if needed). */
export async function applyChart(
  api: TestApiServer,
  o: { release?: string; namespace?: string; set?: readonly string[] } = {},
): Promise<Manifest[]> {
  const namespace = o.namespace ?? 'sealnet';
  await ensureNamespace(api, namespace);
  const yaml = await renderChart(api.bins.helm, { ...o, namespace });
  await api.kubectl(['apply', '--server-side', '--field-manager=sealnet-test', '-f', '-'], { input: yaml });
  return parseManifests(yaml);
}
