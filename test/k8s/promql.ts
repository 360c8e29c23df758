/**
 * Checks the PromQL the chart ships (alert rules, dashboard panels) with the Prometheus
 * project's own grammar (@prometheus-io/lezer-promql, the parser of Prometheus's web UI), and
 * the metric names it uses against the metrics the agent registers, collected from the agent's
 * own registration code (not a list kept by hand): a renamed metric fails.
 *
 * The grammar checks syntax and function names; it does not type-check (a `rate()` of an instant
 * vector parses), so {@link checkPromql} adds the one type rule the chart could get wrong: the
 * range functions it uses take a range selector.
 */
import { parser } from '@prometheus-io/lezer-promql';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { createMetrics, registerSteeringCounters } from '../../common/metrics.js';
import { registerStatusMetrics } from '../../tunnels/status/metrics.js';
import { RotationController, type RotationControllerOptions } from '../../tunnels/rotation/wireguard.js';
import { registerPqMetrics } from '../../tunnels/pq/metrics.js';
import { repoRoot } from '../harness/paths.js';

/** Suffixes Prometheus exposes for a histogram `name`. */
const HISTOGRAM_SERIES = ['_bucket', '_sum', '_count'];

/**
 * Every metric name the agent's /metrics can expose: the registry `tunnels/agent/main.ts` builds
 * (createMetrics, the BPF counters, the status metrics with per-peer series on, the rotation
 * phase gauge), histograms expanded to their series.
 */
export async function agentMetricNames(): Promise<Set<string>> {
  const metrics = createMetrics();
  registerSteeringCounters(metrics, async () => []);
  registerStatusMetrics(metrics, () => Promise.reject(new Error('no report in this test')), { perPeerMax: 1 });
  // The constructor only registers its gauge on opts.metrics; nothing else is touched before load().
  new RotationController({ metrics } as unknown as RotationControllerOptions);
  registerPqMetrics(metrics.registry);
  const names = new Set<string>();
  for (const m of await metrics.registry.getMetricsAsJSON()) {
    if (String(m.type) === 'histogram') for (const s of HISTOGRAM_SERIES) names.add(`${m.name}${s}`);
    else names.add(m.name);
  }
  return names;
}

/**
 * Every `name: 'sealnet_…'` literal in the product's TypeScript (tests excluded): the check that
 * {@link agentMetricNames} misses no registration site.
 */
export function metricNamesInSource(): Map<string, string> {
  const root = repoRoot();
  const out = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir)) {
      if (['node_modules', 'dist', 'test', '.cache', '.git', 'dist-image'].includes(e)) continue;
      const p = join(dir, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith('.test.ts') && !p.endsWith('.fake.ts'))
        for (const m of readFileSync(p, 'utf8').matchAll(/\bname: '(sealnet_[a-z0-9_]+)'/g))
          out.set(m[1] as string, relative(root, p));
    }
  };
  walk(root);
  return out;
}

/**
 * Grafana's built-in variables and the dashboard's own, replaced by values of the right kind
 * (durations in ranges, regexes in label matchers) before parsing: Grafana substitutes them
 * before Prometheus sees the query.
 */
export function substituteGrafanaVariables(expr: string): string {
  return expr
    .replace(/\$__rate_interval|\$__interval|\$__range/g, '5m')
    .replace(/\$\{?node\}?/g, 'node-a|node-b')
    .replace(/\$\{?datasource\}?/g, 'prometheus');
}

/** Functions whose argument must be a range vector (those the chart may use). */
const RANGE_FUNCTIONS = new Set(['rate', 'irate', 'increase', 'delta', 'idelta', 'deriv', 'changes', 'resets']);

/** What is wrong with one expression (empty: nothing). */
export function checkPromql(
  expr: string,
  known: ReadonlySet<string>,
  opts: { allowExtra?: ReadonlySet<string> } = {},
): string[] {
  const problems: string[] = [];
  const tree = parser.parse(expr);
  const used: string[] = [];
  tree.iterate({
    enter(n) {
      if (n.type.isError) problems.push(`syntax error at offset ${n.from}: …${expr.slice(n.from, n.from + 20)}`);
      if (n.name === 'Identifier' && n.node.parent?.name === 'VectorSelector') used.push(expr.slice(n.from, n.to));
      if (n.name === 'FunctionCall') {
        const fn = expr.slice(n.from, n.node.firstChild?.to ?? n.from);
        const body = n.node.getChild('FunctionCallBody');
        if (RANGE_FUNCTIONS.has(fn) && body?.getChild('MatrixSelector') === null && !body.getChild('SubqueryExpr'))
          problems.push(`${fn}() needs a range selector: ${expr.slice(n.from, n.to)}`);
      }
    },
  });
  if (tree.topNode.name !== 'PromQL') problems.push(`not a PromQL expression (top node ${tree.topNode.name})`);
  if (used.length === 0) problems.push('uses no metric');
  for (const name of used)
    if (!known.has(name) && !(opts.allowExtra?.has(name) ?? false))
      problems.push(`metric ${name} is not one the agent exports`);
  return problems;
}

/** The metric names an expression selects (for coverage checks). */
export function metricsOf(expr: string): string[] {
  const used: string[] = [];
  parser.parse(expr).iterate({
    enter(n) {
      if (n.name === 'Identifier' && n.node.parent?.name === 'VectorSelector') used.push(expr.slice(n.from, n.to));
    },
  });
  return used;
}
