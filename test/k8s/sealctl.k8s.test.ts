/**
 * `sealctl status` and `sealctl audit` through a real API server, as an operator with the
 * chart's operator RBAC (not the agents'): Nodes are listed through the API server, each agent's
 * full report is fetched through the API server's pod proxy
 * (`/api/v1/namespaces/sealnet/pods/POD:9589/proxy/status`), the status token comes from the
 * Secret the operator role may read. The test plays the kubelet (Pod objects with the node's
 * address as pod IP: the agents run on the host network) and the konnectivity agent (podproxy.ts).
 * Shown: every pair encrypted and the audit complete; an agent that does not answer makes exactly
 * its pairs PARTIAL, with the reason; the agents' own credentials cannot use the pod proxy; an
 * operator without the binding is refused.
 */
import { jest } from '@jest/globals';
import * as k8s from '@kubernetes/client-node';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestApiServer } from './apiserver.js';
import { applyChart } from './chart.js';
import { K8sCluster } from './cluster.js';
import { writeKubeconfig } from './pki.js';
import { AgentEgressProxy } from './podproxy.js';
import { waitFor } from './util.js';
import { sealctl, type StatusJson } from './sealctl.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) throw new Error('sealctl.k8s needs root (network namespaces); run the suite as root');

jest.setTimeout(120_000);

describe('sealctl status and audit through the API server with the operator role', () => {
  let api: TestApiServer;
  let c: K8sCluster;
  let proxy: AgentEgressProxy;
  let work: string;
  let operatorKubeconfig: string;
  let strangerKubeconfig: string;
  let token = '';

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'sealnet-sealctl-k8s-'));
    const byAddress = new Map<string, string>();
    proxy = new AgentEgressProxy(join(work, 'egress.sock'), (address) => {
      const dir = byAddress.get(address);
      return dir === undefined ? undefined : join(dir, 'status.sock');
    });
    await proxy.start();
    api = await TestApiServer.start({ clusterEgressUds: proxy.socketPath });
    await applyChart(api);
    // The shared status token: the chart's Secret for operators; the agents get the same token
    // in a file, as the chart's Secret volume gives it to them (the test plays the kubelet).
    const admin = api.adminConfig().makeApiClient(k8s.CoreV1Api);
    const secret = await admin.readNamespacedSecret({ namespace: 'sealnet', name: 'sealnet-status-token' });
    token = Buffer.from(secret.data?.['token'] ?? '', 'base64').toString('utf8');
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    const tokenFile = join(work, 'status.token');
    await writeFile(tokenFile, `${token}\n`, { mode: 0o400 });
    c = await K8sCluster.create({ api, nodes: 3, podsPerNode: 1, agentConfig: { status: { tokenFile } } });
    for (const n of c.ns.nodes) byAddress.set(n.address, join(c.ns.runDir, n.name, 'state'));
    // The kubelet's part: one running agent Pod per node, host network (pod IP = node address).
    for (const n of c.ns.nodes) {
      const name = `sealnet-${n.name}`;
      await admin.createNamespacedPod({
        namespace: 'sealnet',
        body: {
          metadata: { name, labels: { 'app.kubernetes.io/name': 'sealnet', 'app.kubernetes.io/instance': 'sealnet' } },
          spec: {
            nodeName: n.name,
            hostNetwork: true,
            serviceAccountName: 'sealnet',
            automountServiceAccountToken: false,
            containers: [{ name: 'agent', image: 'sealnet:test', ports: [{ name: 'status', containerPort: 9589 }] }],
          },
        },
      });
      await admin.patchNamespacedPodStatus(
        {
          name,
          namespace: 'sealnet',
          body: { status: { phase: 'Running', podIP: n.address, podIPs: [{ ip: n.address }], hostIP: n.address } },
        },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
      );
    }
    // The operator: a service account of its own, bound to the chart's operator roles only.
    await api.kubectl(['create', 'namespace', 'ops']);
    await api.kubectl(['-n', 'ops', 'create', 'serviceaccount', 'auditor']);
    await api.kubectl(['-n', 'ops', 'create', 'serviceaccount', 'stranger']);
    await api.kubectl([
      'create',
      'clusterrolebinding',
      'auditor-sealnet',
      '--clusterrole=sealnet-operator',
      '--serviceaccount=ops:auditor',
    ]);
    await api.kubectl([
      '-n',
      'sealnet',
      'create',
      'rolebinding',
      'auditor-sealnet',
      '--role=sealnet-operator',
      '--serviceaccount=ops:auditor',
    ]);
    operatorKubeconfig = join(work, 'auditor.kubeconfig');
    await writeKubeconfig(operatorKubeconfig, {
      server: api.url,
      caCert: api.pki.caCert,
      user: 'auditor',
      auth: { token: await api.unboundToken({ namespace: 'ops', serviceAccount: 'auditor' }) },
    });
    strangerKubeconfig = join(work, 'stranger.kubeconfig');
    await writeKubeconfig(strangerKubeconfig, {
      server: api.url,
      caCert: api.pki.caCert,
      user: 'stranger',
      auth: { token: await api.unboundToken({ namespace: 'ops', serviceAccount: 'stranger' }) },
    });
    await c.waitEncrypted({ timeoutMs: 60_000 });
  }, 300_000);

  afterAll(async () => {
    await c?.destroy();
    await api?.destroy();
    await proxy?.stop();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  }, 300_000);

  it('the operator sees every pair encrypted from both ends, fetched through the pod proxy; the audit is complete and compliant', async () => {
    const s = await waitFor(
      'every pair encrypted via sealctl',
      async () => {
        const r = await sealctl(operatorKubeconfig, ['status', '--json']);
        const j = JSON.parse(r.stdout || '{}') as StatusJson;
        return r.code === 0 ? j : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect(s.partial).toBe(false);
    expect(s.pairs.map((p) => [p.a, p.b, p.state])).toEqual([
      ['n1', 'n2', 'encrypted'],
      ['n1', 'n3', 'encrypted'],
      ['n2', 'n3', 'encrypted'],
    ]);
    // The reports came through the API server's egress, one CONNECT per agent and command.
    expect(new Set(proxy.connects)).toEqual(new Set(c.ns.nodes.map((n) => `${n.address}:9589`)));
    const out = join(work, 'audit-ok');
    const a = await sealctl(operatorKubeconfig, [
      'audit',
      '--json',
      '--out',
      out,
      '--signing-key',
      join(work, 'signing.key'),
    ]);
    const j = JSON.parse(a.stdout) as { verdict: string; complete: boolean; violations: unknown[] };
    expect([a.code, j.verdict, j.complete, j.violations]).toEqual([0, 'compliant', true, []]);
  });

  it('an agent that does not answer makes exactly its pairs PARTIAL, with the reason', async () => {
    await c.ns.killAgent('n2', 'SIGKILL');
    try {
      const r = await sealctl(operatorKubeconfig, ['status', '--json', '--fetch-timeout', '5']);
      expect(r.code).toBe(1);
      const s = JSON.parse(r.stdout) as StatusJson;
      expect(s.nodes.map((n) => [n.name, n.health])).toEqual([
        ['n1', 'ok'],
        ['n2', 'unreachable'],
        ['n3', 'ok'],
      ]);
      expect(s.nodes.find((n) => n.name === 'n2')?.problem).toMatch(
        /^the agent on n2 did not give its status: HTTP 50\d via pod sealnet-n2/,
      );
      expect(s.pairs.map((p) => [p.a, p.b, p.partial])).toEqual([
        ['n1', 'n2', true],
        ['n1', 'n3', false],
        ['n2', 'n3', true],
      ]);
      const out = join(work, 'audit-partial');
      const a = await sealctl(operatorKubeconfig, [
        'audit',
        '--json',
        '--out',
        out,
        '--signing-key',
        join(work, 'signing.key'),
        '--fetch-timeout',
        '5',
      ]);
      const j = JSON.parse(a.stdout) as {
        verdict: string;
        complete: boolean;
        pairs: { a: string; b: string; partial: boolean; violations: string[] }[];
      };
      expect([a.code, j.verdict, j.complete]).toEqual([1, 'non-compliant', false]);
      expect(j.pairs.filter((p) => p.partial).map((p) => `${p.a}~${p.b}`)).toEqual(['n1~n2', 'n2~n3']);
      expect(j.pairs.find((p) => p.a === 'n1' && p.b === 'n2')?.violations).toContain('status-unreachable');
    } finally {
      await c.startAgent('n2');
    }
  });

  it("the agents' own credentials cannot use the pod proxy, and an operator without the binding is refused", async () => {
    const agentKubeconfig = c.kubeconfigPath('n1');
    // The agent's kubeconfig points at its relay inside the node namespace; use its token directly.
    const agentToken = (
      JSON.parse(await import('node:fs/promises').then((f) => f.readFile(agentKubeconfig, 'utf8'))) as {
        users: { user: { token: string } }[];
      }
    ).users[0]!.user.token;
    const asAgent = join(work, 'agent.kubeconfig');
    await writeKubeconfig(asAgent, {
      server: api.url,
      caCert: api.pki.caCert,
      user: 'agent',
      auth: { token: agentToken },
    });
    const proxied = await api.kubectl(
      ['get', '--raw', '/api/v1/namespaces/sealnet/pods/sealnet-n1:9589/proxy/status'],
      { kubeconfig: asAgent, check: false },
    );
    expect(proxied.code).not.toBe(0);
    expect(proxied.stderr).toMatch(/forbidden/i);
    const r = await sealctl(strangerKubeconfig, ['status', '--json']);
    expect(r.code).not.toBe(0);
    expect(`${r.stdout}${r.stderr}`).toMatch(/forbidden|403/i);
  });
});
