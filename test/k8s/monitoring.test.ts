/**
 * The chart's monitoring pieces (issue 15 item 6), rendered with the pinned helm (the unit tier;
 * the API server's side is monitoring.k8s.test.ts): off by default; every PromQL expression of
 * the alerts and the dashboard parses with Prometheus's grammar and uses only metrics the agent
 * exports (derived from its registration code); the dashboard JSON is well formed.
 */
import * as k8s from '@kubernetes/client-node';
import { jest } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { k8sBinaries } from './binaries.js';
import {
  CHART_DIR,
  findManifest,
  helm,
  MONITORING_ON,
  parseManifests,
  renderChart,
  REQUIRED_VALUES,
  type Manifest,
} from './chart.js';
import { agentMetricNames, checkPromql, metricNamesInSource, metricsOf, substituteGrafanaVariables } from './promql.js';

jest.setTimeout(120_000);

interface Rule {
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface Target {
  expr?: string;
  refId?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id?: unknown;
  type?: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  gridPos?: { h: number; w: number; x: number; y: number };
}
interface Dashboard {
  uid?: string;
  title?: string;
  schemaVersion?: unknown;
  panels?: Panel[];
  templating?: { list?: { name: string; type: string; query?: unknown; definition?: string }[] };
}

const DASHBOARD_FILE = join(CHART_DIR, 'files', 'dashboard.json');
/** Series Prometheus makes itself for every target (not the agent's): only the scrape-down alert uses one. */
const PROMETHEUS_SERIES = new Set(['up']);

let helmBin: string;
let known: Set<string>;
let objs: Manifest[];
beforeAll(async () => {
  helmBin = (await k8sBinaries()).helm;
  known = await agentMetricNames();
  objs = parseManifests(await renderChart(helmBin, { set: MONITORING_ON }));
}, 60 * 60_000);

const rulesOf = (o: readonly Manifest[]): Rule[] =>
  findManifest<{ spec: { groups: { rules: Rule[] }[] } }>(o, 'PrometheusRule').spec.groups.flatMap((g) => g.rules);
const dashboardOf = (o: readonly Manifest[]): Dashboard => {
  const cm = findManifest<k8s.V1ConfigMap>(o, 'ConfigMap', 'sealnet-dashboard');
  return JSON.parse(cm.data?.['sealnet.json'] ?? '') as Dashboard;
};
const panelExprs = (d: Dashboard): { where: string; expr: string }[] =>
  (d.panels ?? []).flatMap((p) =>
    (p.targets ?? []).map((t) => ({ where: `panel ${String(p.id)} "${p.title}" ${t.refId}`, expr: t.expr ?? '' })),
  );

describe('the metric catalogue comes from the agent code', () => {
  it('holds every metric the product source registers, and the ones the chart needs', () => {
    const inSource = metricNamesInSource();
    const missing = [...inSource].filter(([n]) => !known.has(n) && !known.has(`${n}_bucket`));
    expect(missing).toEqual([]);
    expect(inSource.size).toBeGreaterThan(20);
    for (const n of ['sealnet_ready', 'sealnet_peers_by_state', 'sealnet_bpf_packets_total', 'sealnet_key_age_seconds'])
      expect(known).toContain(n);
  });
});

describe('monitoring objects', () => {
  it('are all off by default', async () => {
    const kinds = parseManifests(await renderChart(helmBin)).map((o) => `${o.kind}/${o.metadata?.name}`);
    expect(kinds.filter((k) => /PodMonitor|ServiceMonitor|PrometheusRule|Service\/|dashboard/.test(k))).toEqual([]);
  });

  it('render when enabled: PodMonitor, ServiceMonitor with its headless Service, PrometheusRule, dashboard ConfigMap', () => {
    const pm = findManifest<{ spec: { podMetricsEndpoints: { port: string }[] } }>(objs, 'PodMonitor');
    expect(pm.spec.podMetricsEndpoints[0]?.port).toBe('metrics');
    findManifest(objs, 'ServiceMonitor');
    const svc = findManifest<k8s.V1Service>(objs, 'Service');
    expect(svc.spec?.clusterIP).toBe('None');
    // The port the monitors scrape is the agent container's named metrics port.
    const ds = findManifest<k8s.V1DaemonSet>(objs, 'DaemonSet');
    const port = ds.spec?.template.spec?.containers[0]?.ports?.find((p) => p.name === 'metrics');
    expect(port?.containerPort).toBe(9588);
    expect(svc.spec?.ports?.[0]?.targetPort).toBe('metrics');
    const cm = findManifest<k8s.V1ConfigMap>(objs, 'ConfigMap', 'sealnet-dashboard');
    expect(cm.metadata?.labels?.grafana_dashboard).toBe('1');
    // The agent listens on every address; kubelet still probes loopback.
    const cfg = JSON.parse(findManifest<k8s.V1ConfigMap>(objs, 'ConfigMap', 'sealnet').data?.['agent.json'] ?? '');
    expect((cfg as { metricsAddress: string }).metricsAddress).toBe('0.0.0.0:9588');
    expect(ds.spec?.template.spec?.containers[0]?.readinessProbe?.httpGet?.host).toBe('127.0.0.1');
  });

  it('refuses a monitor while the agent listens on loopback only (Prometheus could not scrape it)', async () => {
    for (const set of ['monitoring.podMonitor.enabled=true', 'monitoring.serviceMonitor.enabled=true']) {
      const r = await helm(
        helmBin,
        [
          'template',
          'sealnet',
          CHART_DIR,
          '--kube-version',
          'v1.36.4',
          ...[...REQUIRED_VALUES, set].flatMap((s) => ['--set', s]),
        ],
        { check: false },
      );
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('need agent.metrics.host to be an address Prometheus can reach');
    }
  });

  it('pass helm lint --strict with everything on', async () => {
    const r = await helm(helmBin, [
      'lint',
      '--strict',
      CHART_DIR,
      ...[...REQUIRED_VALUES, ...MONITORING_ON].flatMap((s) => ['--set', s]),
    ]);
    expect(r.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
  });

  it('the schema refuses a malformed duration or severity', async () => {
    for (const set of ['monitoring.prometheusRule.dropsFor=ten', 'monitoring.prometheusRule.severity.keyAge=page']) {
      const r = await helm(helmBin, ['template', 'sealnet', CHART_DIR, '--set', set], { check: false });
      expect([set, r.code === 0]).toEqual([set, false]);
      expect(r.stderr).toContain("values don't meet the specifications of the schema");
    }
  });
});

describe('alert rules', () => {
  it('cover a pair not encrypted, plaintext drops rising, a key past its max age, an agent not ready', () => {
    const byName = new Map(rulesOf(objs).map((r) => [r.alert, r]));
    expect([...byName.keys()].sort()).toEqual(
      [
        'SealnetAgentDown',
        'SealnetAgentNotReady',
        'SealnetKeyTooOld',
        'SealnetPairNotEncrypted',
        'SealnetPlaintextDropsRising',
        'SealnetPlaintextPassed',
      ].sort(),
    );
    expect(metricsOf(byName.get('SealnetPairNotEncrypted')!.expr)).toEqual(['sealnet_peers_by_state']);
    expect(metricsOf(byName.get('SealnetPlaintextDropsRising')!.expr)).toEqual(['sealnet_bpf_packets_total']);
    expect(metricsOf(byName.get('SealnetKeyTooOld')!.expr)).toEqual(['sealnet_key_age_seconds']);
    expect(byName.get('SealnetKeyTooOld')!.expr).toMatch(/> 2592000$/);
    expect(metricsOf(byName.get('SealnetAgentNotReady')!.expr)).toEqual(['sealnet_ready']);
    for (const r of byName.values()) {
      expect([r.alert, r.labels?.severity]).toEqual([r.alert, expect.stringMatching(/^(info|warning|critical)$/)]);
      expect([r.alert, typeof r.annotations?.summary]).toEqual([r.alert, 'string']);
    }
  });

  it('every expression parses with the Prometheus grammar and uses only metrics the agent exports', () => {
    const rules = rulesOf(objs);
    expect(rules.length).toBeGreaterThanOrEqual(5);
    for (const r of rules) {
      const allow = r.alert === 'SealnetAgentDown' ? PROMETHEUS_SERIES : undefined;
      expect([r.alert, checkPromql(r.expr, known, { allowExtra: allow })]).toEqual([r.alert, []]);
    }
  });

  it('the scrape-down alert exists only with a monitor (without one nothing scrapes the agent)', async () => {
    const only = parseManifests(await renderChart(helmBin, { set: ['monitoring.prometheusRule.enabled=true'] }));
    expect(rulesOf(only).map((r) => r.alert)).not.toContain('SealnetAgentDown');
  });

  it('the threshold of the key-age alert follows monitoring.prometheusRule.maxKeyAgeSeconds', async () => {
    const o = parseManifests(
      await renderChart(helmBin, {
        set: ['monitoring.prometheusRule.enabled=true', 'monitoring.prometheusRule.maxKeyAgeSeconds=86400'],
      }),
    );
    expect(rulesOf(o).find((r) => r.alert === 'SealnetKeyTooOld')?.expr).toMatch(/> 86400$/);
  });
});

describe('the Grafana dashboard', () => {
  it('is the chart file, byte for byte, in the sidecar ConfigMap', () => {
    const cm = findManifest<k8s.V1ConfigMap>(objs, 'ConfigMap', 'sealnet-dashboard');
    expect(cm.data?.['sealnet.json']).toBe(readFileSync(DASHBOARD_FILE, 'utf8'));
  });

  it('is structurally a Grafana dashboard: schemaVersion, uid, unique panel ids, datasource and targets on every panel', () => {
    const d = dashboardOf(objs);
    expect(typeof d.schemaVersion).toBe('number');
    expect(d.schemaVersion as number).toBeGreaterThanOrEqual(36);
    expect(d.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    expect(typeof d.title).toBe('string');
    const panels = d.panels ?? [];
    expect(panels.length).toBeGreaterThanOrEqual(8);
    const ids = panels.map((p) => p.id);
    expect(ids.every((i) => Number.isInteger(i))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    const vars = d.templating?.list ?? [];
    expect(vars.find((v) => v.name === 'datasource')?.type).toBe('datasource');
    for (const p of panels) {
      const where = `panel ${String(p.id)} ${p.title}`;
      expect([where, typeof p.type, typeof p.title]).toEqual([where, 'string', 'string']);
      expect([where, p.datasource]).toEqual([where, { type: 'prometheus', uid: '${datasource}' }]);
      const g = p.gridPos;
      expect([where, g !== undefined && g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.h > 0 && g.y >= 0]).toEqual([
        where,
        true,
      ]);
      const targets = p.targets ?? [];
      expect([where, targets.length > 0]).toEqual([where, true]);
      expect([where, new Set(targets.map((t) => t.refId)).size]).toEqual([where, targets.length]);
      for (const t of targets) {
        expect([where, typeof t.expr, t.datasource?.type]).toEqual([where, 'string', 'prometheus']);
      }
    }
  });

  it('every panel query parses with the Prometheus grammar and uses only metrics the agent exports', () => {
    const d = dashboardOf(objs);
    const exprs = panelExprs(d);
    expect(exprs.length).toBeGreaterThanOrEqual(10);
    for (const { where, expr } of exprs)
      expect([where, checkPromql(substituteGrafanaVariables(expr), known)]).toEqual([where, []]);
    // The node variable's query (Grafana's label_values(metric, label)) names an agent metric too.
    const node = (d.templating?.list ?? []).find((v) => v.name === 'node');
    const m = /^label_values\((\w+), *(\w+)\)$/.exec(node?.definition ?? '');
    expect(m).not.toBeNull();
    expect(known).toContain(m?.[1]);
  });
});

describe('the checks can fail', () => {
  it('a renamed metric, an unknown function, a syntax error and a rate() without a range are each caught', () => {
    const rule = rulesOf(objs).find((r) => r.alert === 'SealnetAgentNotReady')!.expr;
    expect(checkPromql(rule, known)).toEqual([]);
    expect(checkPromql(rule.replace('sealnet_ready', 'sealnet_agent_ready'), known)).toEqual([
      'metric sealnet_agent_ready is not one the agent exports',
    ]);
    expect(checkPromql(rule.replace('max by', 'maximum by'), known).join()).toMatch(/syntax error/);
    expect(checkPromql('sum(rate(sealnet_bpf_packets_total[5m)', known).join()).toMatch(/syntax error/);
    expect(checkPromql('sum(rate(sealnet_bpf_packets_total))', known)).toEqual([
      'rate() needs a range selector: rate(sealnet_bpf_packets_total)',
    ]);
    // Unsubstituted Grafana variables are not PromQL: the substitution is what makes them parse.
    const panel = panelExprs(dashboardOf(objs)).find((e) => e.expr.includes('$__rate_interval'))!;
    expect(checkPromql(panel.expr, known).join()).toMatch(/syntax error/);
    // A metric the catalogue does not know, as when the agent renames one the dashboard uses.
    const fewer = new Set([...known].filter((n) => n !== 'sealnet_key_age_seconds'));
    const bad = panelExprs(dashboardOf(objs)).filter(
      (e) => checkPromql(substituteGrafanaVariables(e.expr), fewer).length > 0,
    );
    expect(bad.length).toBeGreaterThan(0);
  });
});
