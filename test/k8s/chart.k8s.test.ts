/**
 * The Helm chart against the real tools and a real API server: helm lint and template for the
 * default values and every representative values file under `charts/sealnet/ci/`, every rendered
 * object accepted by the API server (`kubectl apply --dry-run=server`), the schema rejecting bad
 * values, the rendered agent config accepted by the agent's own validator, the pod's privileges,
 * and the supervisor script's restart behaviour.
 */
import * as k8s from '@kubernetes/client-node';
import { jest } from '@jest/globals';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { validateConfig } from '../../tunnels/agent/config.js';
import { run, sleep, spawnBackground } from '../harness/exec.js';
import { TestApiServer } from './apiserver.js';
import {
  applyChart,
  CHART_DIR,
  ciValuesFiles,
  ensureNamespace,
  findManifest,
  helm,
  parseManifests,
  renderChart,
  REQUIRED_VALUES,
  type Manifest,
} from './chart.js';

jest.setTimeout(120_000);

const VALUE_SETS: readonly { name: string; file: string | undefined }[] = [
  { name: 'default values', file: undefined },
  ...ciValuesFiles().map((f) => ({ name: basename(f), file: f })),
];

describe('the sealnet Helm chart', () => {
  let api: TestApiServer;
  beforeAll(async () => {
    api = await TestApiServer.start();
    await ensureNamespace(api, 'sealnet');
  }, 300_000);
  afterAll(async () => {
    await api?.destroy();
  });

  it.each(VALUE_SETS)('passes helm lint --strict with $name', async ({ file }) => {
    const r = await helm(api.bins.helm, [
      'lint',
      '--strict',
      CHART_DIR,
      ...REQUIRED_VALUES.flatMap((v) => ['--set', v]),
      ...(file === undefined ? [] : ['--values', file]),
    ]);
    expect(r.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
  });

  // Issue 15 item 5: default values used to render an agent.json without steering.clusterCidrs,
  // and every agent exited 2 (CrashLoopBackOff). Now the chart refuses, naming the value.
  it('refuses to render without steering.clusterCidrs, naming the value', async () => {
    const r = await helm(api.bins.helm, ['template', 'sealnet', CHART_DIR, '--kube-version', '1.36.4'], {
      check: false,
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('steering.clusterCidrs is required');
    const off = await helm(
      api.bins.helm,
      ['template', 'sealnet', CHART_DIR, '--kube-version', '1.36.4', '--set', 'steering.failClosed=false'],
      { check: false },
    );
    expect(off.code).toBe(0);
  });

  it.each(VALUE_SETS)('renders $name into objects the real API server accepts (dry-run=server)', async ({ file }) => {
    const yaml = await renderChart(api.bins.helm, { valuesFile: file });
    const objs = parseManifests(yaml);
    const kinds = objs.map((o) => o.kind).sort();
    expect(kinds).toEqual(expect.arrayContaining(['ConfigMap', 'DaemonSet']));
    const r = await api.kubectl(
      ['apply', '--server-side', '--dry-run=server', '--field-manager=sealnet-test', '-f', '-'],
      { input: yaml },
    );
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(objs.length);
    for (const line of lines) expect(line).toMatch(/serverside-applied \(server dry run\)$/);
  });

  it.each([
    ['a port out of range', 'wireguard.listenPort=0', 'listenPort'],
    ['an unknown key', 'agent.colour=blue', 'colour'],
    ['an unknown implementation', 'wireguard.implementation=magic', 'implementation'],
    ['an unsupported seccomp profile', 'seccompProfile=Localhost', 'seccompProfile'],
  ])('the schema rejects %s', async (_what, set, field) => {
    const r = await helm(api.bins.helm, ['template', 'sealnet', CHART_DIR, '--set', set], { check: false });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("values don't meet the specifications of the schema");
    expect(r.stderr).toContain(field);
  });

  it.each(VALUE_SETS)('renders an agent config ($name) that the agent itself accepts', async ({ file }) => {
    const objs = parseManifests(await renderChart(api.bins.helm, { valuesFile: file }));
    const cm = findManifest<k8s.V1ConfigMap>(objs, 'ConfigMap');
    const cfg = JSON.parse(cm.data?.['agent.json'] ?? '') as Record<string, unknown>;
    const valid = validateConfig({ ...cfg, nodeName: 'node-a' });
    expect(valid.store).toEqual({ type: 'kubernetes', kubeconfig: undefined, removeNotReadyTaint: true });
    const ds = findManifest<k8s.V1DaemonSet>(objs, 'DaemonSet');
    const c = ds.spec?.template.spec?.containers[0];
    if (ds.spec?.template.spec?.containers[0]?.name === 'agent') {
      // The probes hit the address the agent's config makes it listen on.
      const [host, port] = valid.metricsAddress.split(':');
      expect(c?.livenessProbe?.httpGet).toEqual({ host, port: Number(port), path: '/healthz' });
      expect(c?.readinessProbe?.httpGet).toEqual({ host, port: Number(port), path: '/readyz' });
    }
  });

  it('runs the agent with host networking and only NET_ADMIN + BPF', async () => {
    const objs = parseManifests(await renderChart(api.bins.helm));
    const ds = findManifest<k8s.V1DaemonSet>(objs, 'DaemonSet');
    const pod = ds.spec?.template.spec;
    const c = pod?.containers[0] as k8s.V1Container;
    expect(pod?.hostNetwork).toBe(true);
    expect(pod?.priorityClassName).toBe('system-node-critical');
    // The not-ready taint's toleration always comes first (the agent is what lifts it).
    expect(pod?.tolerations).toEqual([
      { key: 'sealnet.io/not-ready', operator: 'Exists', effect: 'NoSchedule' },
      { operator: 'Exists' },
    ]);
    expect(ds.spec?.updateStrategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxUnavailable: 1, maxSurge: 0 },
    });
    expect(c.securityContext).toMatchObject({
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'], add: ['NET_ADMIN', 'BPF'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(c.env).toContainEqual({ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } });
    expect(c.command?.slice(0, 4)).toEqual(['/usr/bin/tini', '--', '/bin/sh', '/etc/sealnet/supervise.sh']);
    const hostPaths = Object.fromEntries(
      (pod?.volumes ?? []).filter((v) => v.hostPath !== undefined).map((v) => [v.hostPath?.path, v.hostPath?.type]),
    );
    expect(hostPaths).toEqual({
      '/var/lib/sealnet': 'DirectoryOrCreate',
      '/sys/fs/bpf': 'Directory',
      '/var/run/wireguard': 'DirectoryOrCreate',
      '/dev/net/tun': 'CharDevice',
    });
    // Kernels without CAP_BPF get SYS_ADMIN only when asked for.
    const legacy = findManifest<k8s.V1DaemonSet>(
      parseManifests(await renderChart(api.bins.helm, { set: ['bpf.sysAdminFallback=true'] })),
      'DaemonSet',
    );
    expect(legacy.spec?.template.spec?.containers[0]?.securityContext?.capabilities?.add).toEqual([
      'NET_ADMIN',
      'BPF',
      'SYS_ADMIN',
    ]);
  });

  it('grants the agent get/list/watch/patch on nodes and nothing else; the operator role reads nodes and reaches agents only through pods/proxy, bound to no one', async () => {
    const objs = parseManifests(await renderChart(api.bins.helm));
    const role = findManifest<k8s.V1ClusterRole>(objs, 'ClusterRole', 'sealnet');
    expect(role.rules).toEqual([{ apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch', 'patch'] }]);
    const binding = findManifest<k8s.V1ClusterRoleBinding>(objs, 'ClusterRoleBinding');
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'sealnet', namespace: 'sealnet' }]);
    expect(binding.roleRef.name).toBe('sealnet');
    // The operator's roles (sealctl status / audit): read-only, bound by the operator, not by the chart.
    const op = findManifest<k8s.V1ClusterRole>(objs, 'ClusterRole', 'sealnet-operator');
    expect(op.rules).toEqual([{ apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] }]);
    const opNs = findManifest<k8s.V1Role>(objs, 'Role', 'sealnet-operator');
    expect(opNs.rules).toEqual([
      { apiGroups: [''], resources: ['pods'], verbs: ['list'] },
      { apiGroups: [''], resources: ['pods/proxy'], verbs: ['get'] },
      { apiGroups: [''], resources: ['secrets'], resourceNames: ['sealnet-status-token'], verbs: ['get'] },
    ]);
    expect(objs.filter((o) => o.kind === 'RoleBinding')).toEqual([]);
  });

  it('installs for real with helm template | kubectl apply --server-side: every object exists afterwards', async () => {
    const objs = await applyChart(api);
    for (const o of objs) {
      const ns = o.metadata?.namespace;
      const r = await api.kubectl([
        'get',
        `${String(o.kind).toLowerCase()}/${o.metadata?.name}`,
        ...(ns === undefined ? [] : ['-n', ns]),
        '-o',
        'name',
      ]);
      expect(r.stdout.trim()).toMatch(new RegExp(`/${o.metadata?.name}$`));
    }
    // The policy's expressions compiled when the API server admitted it; whether they do what they
    // should is policy.k8s.test.ts's job (its type-check status needs kube-controller-manager).
    expect(objs.map((o) => o.kind)).toEqual(
      expect.arrayContaining(['ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding']),
    );
  });

  it("README's helm install, upgrade to cleanup mode, and uninstall work against the API server", async () => {
    await ensureNamespace(api, 'sealnet-helm');
    const install = await api.helm([
      'install',
      'sn',
      CHART_DIR,
      '--namespace',
      'sealnet-helm',
      ...REQUIRED_VALUES.flatMap((v) => ['--set', v]),
    ]);
    expect(install.stdout).toContain('STATUS: deployed');
    expect(install.stdout).toContain('kubectl -n sealnet-helm rollout status daemonset/sn-sealnet');
    expect(install.stdout).toContain('sealnet\\.io/wireguard-public-key');
    const upgrade = await api.helm([
      'upgrade',
      'sn',
      CHART_DIR,
      '--namespace',
      'sealnet-helm',
      '--reuse-values',
      '--set',
      'cleanup.enabled=true',
      '--set',
      'cleanup.purgeState=true',
    ]);
    expect(upgrade.stdout).toContain('CLEANUP mode');
    expect(upgrade.stdout).toContain(
      `-o go-template='{{range $k, $v := .metadata.annotations}}{{$k}}{{"\\n"}}{{end}}'`,
    );
    const ds = JSON.parse(
      (await api.kubectl(['get', 'daemonset', 'sn-sealnet', '-n', 'sealnet-helm', '-o', 'json'])).stdout,
    ) as k8s.V1DaemonSet;
    expect(ds.spec?.template.spec?.containers[0]?.command).toEqual([
      '/usr/bin/tini',
      '--',
      '/bin/sh',
      '/etc/sealnet/cleanup.sh',
    ]);
    expect(ds.spec?.template.spec?.containers[0]?.env).toContainEqual({ name: 'SEALNET_PURGE_STATE', value: 'true' });
    await api.helm(['uninstall', 'sn', '--namespace', 'sealnet-helm']);
    const left = await api.kubectl([
      'get',
      'all,configmap,serviceaccount,clusterrole,clusterrolebinding,validatingadmissionpolicy,validatingadmissionpolicybinding',
      '-A',
      '-l',
      'app.kubernetes.io/instance=sn',
      '-o',
      'name',
    ]);
    expect(left.stdout.trim()).toBe('');
  });
  it("README's uninstall step 3 removes every sealnet.io/ annotation and nothing else", async () => {
    const core = api.adminConfig().makeApiClient(k8s.CoreV1Api);
    for (const name of ['un-a', 'un-b']) {
      await core.createNode({
        body: {
          metadata: {
            name,
            annotations: {
              'sealnet.io/wireguard-public-key': 'x',
              'sealnet.io/endpoint': 'y',
              'sealnet.io/status': '{}',
              'example.com/keep': 'z',
            },
          },
        },
      });
    }
    const readme = await readFile(join(CHART_DIR, 'README.md'), 'utf8');
    const step = /# 3\. Remove the published annotations\.\n([\s\S]*?)\n```/.exec(readme)?.[1];
    expect(step).toBeDefined();
    await run(['bash', '-euo', 'pipefail', '-c', step as string], {
      env: { PATH: `${dirname(api.bins.kubectl)}:${process.env.PATH ?? ''}`, KUBECONFIG: api.adminKubeconfig },
    });
    for (const name of ['un-a', 'un-b']) {
      expect((await core.readNode({ name })).metadata?.annotations).toEqual({ 'example.com/keep': 'z' });
      await core.deleteNode({ name });
    }
  });
});

describe('supervise.sh (the container entrypoint under tini)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sealnet-supervise-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A fake agent: logs each start, then exits with the codes listed in `codes` in turn, then runs until signalled. */
  async function fakeAgent(codes: readonly number[]): Promise<string> {
    const path = join(dir, `agent-${codes.join('-')}.sh`);
    const counter = join(dir, `count-${codes.join('-')}`);
    await writeFile(counter, '0');
    const script = `#!/bin/sh
n=$(cat ${counter}); n=$((n+1)); echo $n > ${counter}; echo "start $n $*" >> ${path}.log
set -- ${codes.join(' ')}
eval "code=\\\${$n:-}"
if [ -n "$code" ]; then exit $code; fi
trap 'echo "term $n" >> ${path}.log; exit 0' TERM
while :; do sleep 0.1; done
`;
    await writeFile(path, script);
    await chmod(path, 0o755);
    return path;
  }

  it('restarts a crashed agent (with backoff), keeps the rest, and stops on SIGTERM', async () => {
    const agent = await fakeAgent([1, 137]);
    const p = spawnBackground(['sh', join(CHART_DIR, 'files', 'supervise.sh'), agent, '--config', 'x.json'], {
      logFile: join(dir, 'sup1.log'),
    });
    let log = '';
    for (let i = 0; i < 100 && !log.includes('start 3'); i++) {
      await sleep(100);
      log = await readFile(`${agent}.log`, 'utf8').catch(() => '');
    }
    expect(log).toContain('start 3 --config x.json');
    p.kill('SIGTERM');
    const exit = await p.exited;
    expect(exit.code).toBe(0);
    expect(await readFile(`${agent}.log`, 'utf8')).toContain('term 3');
    const sup = await readFile(join(dir, 'sup1.log'), 'utf8');
    expect(sup).toContain('exited with 1; restarting in 1 s');
    expect(sup).toContain('exited with 137; restarting in 2 s');
  });

  it('does not restart after exit status 2 (configuration error)', async () => {
    const agent = await fakeAgent([2]);
    const p = spawnBackground(['sh', join(CHART_DIR, 'files', 'supervise.sh'), agent], {
      logFile: join(dir, 'sup2.log'),
    });
    const exit = await p.exited;
    expect(exit.code).toBe(2);
    expect((await readFile(`${agent}.log`, 'utf8')).trim().split('\n')).toHaveLength(1);
  });
});
