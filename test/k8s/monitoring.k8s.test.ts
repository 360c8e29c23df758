/**
 * The chart's monitoring objects on a real API server: the Prometheus Operator's CRDs
 * (PodMonitor, ServiceMonitor, PrometheusRule) installed from the operator's Go module at a
 * pinned version and hash (scripts/monitoring-crds.sh), then everything the chart renders with
 * monitoring on applied with server-side dry-run: the API server validates each object against
 * its CRD's OpenAPI schema (and the Service, ConfigMap and DaemonSet against core's).
 */
import { jest } from '@jest/globals';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../harness/exec.js';
import { repoRoot } from '../harness/paths.js';
import { TestApiServer } from './apiserver.js';
import { ensureNamespace, findManifest, MONITORING_ON, parseManifests, renderChart } from './chart.js';
import { waitFor } from './util.js';

jest.setTimeout(120_000);

describe('monitoring objects on a real API server with the Prometheus Operator CRDs', () => {
  let api: TestApiServer;
  beforeAll(async () => {
    api = await TestApiServer.start();
    await ensureNamespace(api, 'sealnet');
    const dir = (
      await run(['bash', join(repoRoot(), 'scripts', 'monitoring-crds.sh')], { timeoutMs: 300_000 })
    ).stdout.trim();
    const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml')).sort();
    expect(files).toEqual([
      'monitoring.coreos.com_podmonitors.yaml',
      'monitoring.coreos.com_prometheusrules.yaml',
      'monitoring.coreos.com_servicemonitors.yaml',
    ]);
    for (const f of files)
      await api.kubectl(['apply', '--server-side', '--field-manager=sealnet-test', '-f', join(dir, f)]);
    await api.kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/podmonitors.monitoring.coreos.com',
      'crd/servicemonitors.monitoring.coreos.com',
      'crd/prometheusrules.monitoring.coreos.com',
    ]);
  }, 600_000);
  afterAll(async () => {
    await api?.destroy();
  });

  /** Server-side dry-run apply of a YAML stream; the API server's result per object. */
  const dryRun = (yaml: string) =>
    api.kubectl(['apply', '--server-side', '--dry-run=server', '--field-manager=sealnet-test', '-f', '-'], {
      input: yaml,
      check: false,
    });

  it('accepts every object the chart renders with monitoring on', async () => {
    const yaml = await renderChart(api.bins.helm, { set: MONITORING_ON });
    const objs = parseManifests(yaml);
    expect(objs.map((o) => o.kind)).toEqual(
      expect.arrayContaining(['PodMonitor', 'ServiceMonitor', 'PrometheusRule', 'Service', 'ConfigMap']),
    );
    // The API server's discovery can lag the CRDs' Established condition by a moment.
    const r = await waitFor(
      'the monitoring kinds to be served',
      async () => {
        const res = await dryRun(yaml);
        return res.code === 0 ? res : /no matches for kind/.test(res.stderr) ? undefined : res;
      },
      { timeoutMs: 30_000, pollMs: 500 },
    );
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(objs.length);
    for (const line of lines) expect(line).toMatch(/serverside-applied \(server dry run\)$/);
  });

  it("validates against the CRDs' schemas: a malformed rule or monitor is refused (the check can fail)", async () => {
    const objs = parseManifests(await renderChart(api.bins.helm, { set: MONITORING_ON }));
    const rule = findManifest<{ spec: { groups: { rules: { for?: string }[] }[] } }>(objs, 'PrometheusRule');
    (rule.spec.groups[0]!.rules[0] as { for?: string }).for = 'ten minutes';
    const badRule = await dryRun(JSON.stringify(rule));
    expect(badRule.code).not.toBe(0);
    expect(badRule.stderr).toMatch(/spec\.groups\[0\]\.rules\[0\]\.for/);
    const pm = findManifest<{ spec: { podMetricsEndpoints: { scheme?: string }[] } }>(objs, 'PodMonitor');
    pm.spec.podMetricsEndpoints[0]!.scheme = 'gopher';
    const badPm = await dryRun(JSON.stringify(pm));
    expect(badPm.code).not.toBe(0);
    expect(badPm.stderr).toMatch(/scheme/);
  });
});
