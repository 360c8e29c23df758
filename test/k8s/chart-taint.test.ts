/**
 * The chart's side of the not-ready taint and of steering.nodeCidrs, rendered with the pinned
 * helm (the unit tier; the API server's side is policy.k8s.test.ts and mesh.k8s.test.ts).
 */
import * as k8s from '@kubernetes/client-node';
import { jest } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NOT_READY_TAINT } from '../../common/constants.js';
import { validateConfig } from '../../tunnels/agent/config.js';
import { repoRoot } from '../harness/paths.js';
import { k8sBinaries } from './binaries.js';
import { CHART_DIR, findManifest, helm, parseManifests, renderChart, REQUIRED_VALUES } from './chart.js';

jest.setTimeout(120_000);

let helmBin: string;
beforeAll(async () => {
  helmBin = (await k8sBinaries()).helm;
}, 60 * 60_000);

type Policy = { spec: { variables: { name: string; expression: string }[]; validations: { message?: string }[] } };
const render = async (set: string[] = []) => parseManifests(await renderChart(helmBin, { set }));
const agentJson = (objs: ReturnType<typeof parseManifests>) =>
  JSON.parse(findManifest<k8s.V1ConfigMap>(objs, 'ConfigMap', 'sealnet').data?.['agent.json'] ?? '') as Record<
    string,
    unknown
  >;

describe('the not-ready taint in the chart', () => {
  it('the DaemonSet tolerates it even when tolerations are overridden', async () => {
    for (const set of [
      [],
      ['tolerations=null'],
      ['tolerations[0].key=example.com/x', 'tolerations[0].operator=Exists'],
    ]) {
      const ds = findManifest<k8s.V1DaemonSet>(await render(set), 'DaemonSet');
      expect([set, ds.spec?.template.spec?.tolerations?.[0]]).toEqual([
        set,
        { key: NOT_READY_TAINT.key, operator: 'Exists', effect: NOT_READY_TAINT.effect },
      ]);
    }
  });

  it('the agent removes it by default; notReadyTaint.remove=false turns that off in the agent and in the policy', async () => {
    const on = await render();
    expect(validateConfig({ ...agentJson(on), nodeName: 'node-a' }).store).toEqual({
      type: 'kubernetes',
      kubeconfig: undefined,
      removeNotReadyTaint: true,
    });
    const onExpr = findManifest<Policy>(on, 'ValidatingAdmissionPolicy').spec.variables.find(
      (v) => v.name === 'onlyNotReadyTaintRemoved',
    )?.expression;
    // The policy names the very taint the agent removes (common/constants.ts).
    expect(onExpr).toContain(`t.key == '${NOT_READY_TAINT.key}' && t.effect == '${NOT_READY_TAINT.effect}'`);

    const off = await render(['notReadyTaint.remove=false']);
    expect(validateConfig({ ...agentJson(off), nodeName: 'node-a' }).store).toMatchObject({
      removeNotReadyTaint: false,
    });
    const policy = findManifest<Policy>(off, 'ValidatingAdmissionPolicy');
    expect(policy.spec.variables.find((v) => v.name === 'onlyNotReadyTaintRemoved')?.expression.trim()).toBe('false');
    expect(policy.spec.validations.map((v) => v.message ?? '').join('\n')).toContain(
      'notReadyTaint.remove is false: not even the sealnet.io/not-ready taint',
    );
  });

  it('the README install section and the chart README tell kubelets to register with it', () => {
    const flag = `--register-with-taints=${NOT_READY_TAINT.key}:${NOT_READY_TAINT.effect}`;
    expect(readFileSync(join(repoRoot(), 'README.md'), 'utf8')).toContain(flag);
    expect(readFileSync(join(CHART_DIR, 'README.md'), 'utf8')).toContain(flag);
  });
});

describe('steering.nodeCidrs', () => {
  it('is rendered into the agent config, which the agent accepts', async () => {
    const cfg = agentJson(await render(['steering.nodeCidrs={198.18.0.0/15,fd00:5ea1::/48}']));
    expect((cfg.steering as { nodeCidrs: string[] }).nodeCidrs).toEqual(['198.18.0.0/15', 'fd00:5ea1::/48']);
    expect(validateConfig({ ...cfg, nodeName: 'node-a' }).steering.nodeCidrs).toEqual([
      '198.18.0.0/15',
      'fd00:5ea1::/48',
    ]);
    // Default: empty (the agent's private/shared/documentation ranges).
    expect((agentJson(await render()).steering as { nodeCidrs: string[] }).nodeCidrs).toEqual([]);
  });

  const tmpl = (set: string, skipSchema: boolean) =>
    helm(
      helmBin,
      [
        'template',
        'sealnet',
        CHART_DIR,
        '--kube-version',
        'v1.36.4',
        ...(skipSchema ? ['--skip-schema-validation'] : []),
        ...[...REQUIRED_VALUES, set].flatMap((s) => ['--set', s]),
      ],
      { check: false },
    );

  it.each([
    ['127.0.0.0/8', 'loopback'],
    ['0.0.0.0/8', 'unspecified'],
    ['169.254.0.0/16', 'link-local'],
    ['169.0.0.0/8', 'link-local'],
    ['224.0.0.0/8', 'multicast'],
    ['240.0.0.0/8', 'multicast or reserved'],
    ['10.0.0.0/7', 'wider than a /8'],
    ['fe80::/10', 'link-local'],
    ['ff02::/16', 'multicast'],
    ['::/8', '::/80'],
    ['::ffff:0:0/96', '::/80'],
    ['2001:db8::/6', 'wider than a /7'],
    ['300.1.1.0/24', 'not an IPv4 address'],
  ])('the template refuses %s (%s), naming the value, and the agent would too', async (cidr, why) => {
    const r = await tmpl(`steering.nodeCidrs={${cidr}}`, true);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`steering.nodeCidrs[0]: ${cidr}`);
    expect(r.stderr).toContain(why);
    // The agent's own validation refuses what the chart refuses (so the chart is not the stricter
    // one by accident), except where the chart says it is stricter: a range starting in ::/80,
    // and an IPv4 range covering (not starting in) 169.254.0.0/16.
    if (!cidr.startsWith('::') && cidr !== '169.0.0.0/8')
      expect(() => validateConfig({ nodeName: 'node-a', steering: { nodeCidrs: [cidr] } })).toThrow(/nodeCidrs/);
  });

  it.each(['10.0.0.0/4', '2001:db8::/6', 'not-a-cidr'])('the schema refuses %s', async (cidr) => {
    const r = await tmpl(`steering.nodeCidrs={${cidr}}`, false);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("values don't meet the specifications of the schema");
    expect(r.stderr).toContain('nodeCidrs');
  });
});
