/**
 * The real-cluster tier (issue 15 item 3), routed CNI: three kubelet nodes (test/cluster/cluster.ts),
 * traffic pods placed by kube-scheduler, sealnet installed with `helm install` and the chart's
 * defaults plus the one required value, the agent image this repo builds (`npm run image`)
 * imported into each node's containerd.
 *
 * The agent archive: $SEALNET_AGENT_IMAGE, default <repo>/dist-image/sealnet-agent.oci.tar.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCapture, type CaptureResult } from '../harness/capture.js';
import { run, sleep } from '../harness/exec.js';
import { CHART_DIR, REQUIRED_VALUES } from '../k8s/chart.js';
import { killAgentProcesses, sealnetResidue, waitDaemonSet } from './agent.js';
import { RealCluster, TESTPOD_IMAGE, type RealNode } from './cluster.js';
import { operatorKubeconfig, sealctl, type StatusJson } from './operator.js';

const here = dirname(fileURLToPath(import.meta.url));
const AGENT_IMAGE = process.env.SEALNET_AGENT_IMAGE ?? join(here, '..', '..', 'dist-image', 'sealnet-agent.oci.tar');
const WG_PORT = 51880;
const POD_CIDRS = ['100.64.0.0/16'];

/** A traffic pod as the host sees it: its serve process (for nsenter) and its address. */
interface TrafficPod {
  readonly name: string;
  readonly node: string;
  readonly ip: string;
  readonly pid: number;
}

const podManifest = (i: number): object => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: `traffic-${i}`, namespace: 'default', labels: { app: 'traffic' } },
  spec: {
    // One per node, decided by kube-scheduler (not nodeName).
    affinity: {
      podAntiAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: [
          { labelSelector: { matchLabels: { app: 'traffic' } }, topologyKey: 'kubernetes.io/hostname' },
        ],
      },
    },
    tolerations: [{ operator: 'Exists' }],
    containers: [{ name: 'serve', image: TESTPOD_IMAGE, imagePullPolicy: 'Never', args: ['serve'] }],
  },
});

/** Finds the PID of the `testpod serve` process with `ip` (by its network namespace's address). */
async function findServePid(cluster: RealCluster, ip: string): Promise<number> {
  const hostNet = (await run(['readlink', '/proc/self/ns/net'])).stdout.trim();
  const { readdirSync, readFileSync: rf, readlinkSync } = await import('node:fs');
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let cmd: string;
    try {
      cmd = rf(`/proc/${e}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmd !== '/testpod\0serve\0') continue;
    // The process must be in a pod's namespace, never the host's (a wrong PID would probe from the host).
    if (readlinkSync(`/proc/${e}/ns/net`) === hostNet) continue;
    const cg = rf(`/proc/${e}/cgroup`, 'utf8');
    if (!cluster.nodes.some((n) => cg.includes(n.cgroupRoot))) continue;
    const addrs = await run(['nsenter', '-t', e, '-n', 'ip', '-4', '-o', 'addr', 'show'], { check: false });
    if (addrs.stdout.includes(` ${ip}/`)) return Number(e);
  }
  throw new Error(`no testpod serve process with address ${ip}`);
}

async function trafficPods(cluster: RealCluster): Promise<TrafficPod[]> {
  const r = await cluster.api.kubectl(['get', 'pods', '-n', 'default', '-l', 'app=traffic', '-o', 'json']);
  const items = (
    JSON.parse(r.stdout) as {
      items: { metadata: { name: string }; spec: { nodeName?: string }; status: { podIP?: string; phase?: string } }[];
    }
  ).items;
  const pods: TrafficPod[] = [];
  for (const it of items) {
    if (it.status.phase !== 'Running' || it.status.podIP === undefined || it.spec.nodeName === undefined)
      throw new Error(`pod ${it.metadata.name} not running`);
    pods.push({
      name: it.metadata.name,
      node: it.spec.nodeName,
      ip: it.status.podIP,
      pid: await findServePid(cluster, it.status.podIP),
    });
  }
  return pods;
}

/** Probes every ordered pair (TCP, UDP, ICMP with the canary) from inside the source pod's netns. */
async function probeAll(
  cluster: RealCluster,
  pods: readonly TrafficPod[],
  canary: string,
): Promise<{ pair: string; ok: boolean; out: string }[]> {
  const out: { pair: string; ok: boolean; out: string }[] = [];
  for (const a of pods) {
    for (const b of pods) {
      if (a === b) continue;
      const r = await run(['nsenter', '-t', String(a.pid), '-n', cluster.bins.testpod, 'probe', b.ip, canary], {
        check: false,
        timeoutMs: 30_000,
      });
      out.push({ pair: `${a.node}->${b.node}`, ok: r.code === 0, out: r.stdout.trim().replace(/\n/g, ', ') });
    }
  }
  return out;
}

/** Every ordered pair at once (a fail-closed window is short; dropped probes each take seconds). */
async function probePairsParallel(
  cluster: RealCluster,
  pods: readonly TrafficPod[],
  canary: string,
): Promise<{ pair: string; ok: boolean; out: string }[]> {
  const jobs: Promise<{ pair: string; ok: boolean; out: string }>[] = [];
  for (const a of pods)
    for (const b of pods)
      if (a !== b)
        jobs.push(
          run(['nsenter', '-t', String(a.pid), '-n', cluster.bins.testpod, 'probe', b.ip, canary], {
            check: false,
            timeoutMs: 30_000,
          }).then((r) => ({
            pair: `${a.node}->${b.node}`,
            ok: r.code === 0,
            out: r.stdout.trim().replace(/\n/g, ', '),
          })),
        );
  return Promise.all(jobs);
}

/** The sealnet tunnel links on a node (`ip -o link` lines), '' when none. */
async function sealnetLinks(cluster: RealCluster, node: RealNode): Promise<string> {
  const r = await cluster.nodeExec(node, ['ip', '-o', 'link', 'show'], { check: false });
  return r.stdout
    .split('\n')
    .filter((l) => /^\d+: sealwg\d[:@]/.test(l))
    .join('\n');
}

/** Pods, the kubelets' last events and the agents' logs, for a failure message. */
async function describeAgents(cluster: RealCluster): Promise<string> {
  const pods = await cluster.api.kubectl(['get', 'pods', '-n', 'sealnet', '-o', 'wide'], { check: false });
  // The kubelet's events name why a container was not created or started (e.g. CreateContainerError).
  const events = await cluster.api.kubectl(
    [
      'get',
      'events',
      '-n',
      'sealnet',
      '--sort-by=.lastTimestamp',
      '-o',
      'custom-columns=OBJ:.involvedObject.name,REASON:.reason,MSG:.message',
    ],
    { check: false },
  );
  const lastEvents = events.stdout.trim().split('\n').slice(-12).join('\n');
  return `${pods.stdout}\n${lastEvents}\n${agentLogs(cluster)}`;
}

/** Captures on the underlay bridge while `fn` runs. */
async function underCapture(
  cluster: RealCluster,
  file: string,
  canary: string,
  fn: () => Promise<void>,
): Promise<CaptureResult> {
  const cap = await startCapture({
    netns: cluster.underlayNetns,
    iface: 'br0',
    file: join(cluster.dir, file),
    podCidrs: POD_CIDRS,
    wireguardPorts: [WG_PORT, WG_PORT + 1],
    canaries: [canary],
  });
  try {
    await fn();
  } catch (err) {
    cap.abort();
    throw err;
  }
  return cap.stop();
}

const canaryHits = (c: CaptureResult): number => c.canaries.reduce((s, x) => s + x.hits, 0);

describe('real cluster, routed CNI (bridge + host-local, host-gw)', () => {
  let cluster: RealCluster;
  const log = (l: string): void => {
    process.stderr.write(`[cluster] ${l}\n`);
  };

  beforeAll(async () => {
    // Without the agent image the cluster and the plaintext baseline still run; the sealnet tests fail naming it.
    cluster = await RealCluster.start({
      nodes: 3,
      images: existsSync(AGENT_IMAGE) ? [AGENT_IMAGE] : [],
      imageBaseName: 'ghcr.io/sealnet/sealnet-agent',
      log,
    });
    for (let i = 1; i <= 3; i++)
      await cluster.api.kubectl(['apply', '-f', '-'], { input: JSON.stringify(podManifest(i)) });
    await cluster.api.kubectl(
      ['wait', '--for=condition=Ready', 'pod', '-l', 'app=traffic', '-n', 'default', '--timeout=180s'],
      { timeoutMs: 200_000 },
    );
  }, 1_800_000);

  afterAll(async () => {
    await cluster?.destroy();
  }, 120_000);

  it('schedules a traffic pod on every one of the 3 kubelet nodes', async () => {
    const pods = await trafficPods(cluster);
    expect(pods.map((p) => p.node).sort()).toEqual(cluster.nodes.map((n: RealNode) => n.name).sort());
  });

  it('without sealnet, pod-to-pod TCP/UDP/ICMP works and the underlay capture sees the canary (the capture can fail)', async () => {
    const pods = await trafficPods(cluster);
    const canary = `CANARY-plain-${Date.now()}`;
    let results: { pair: string; ok: boolean; out: string }[] = [];
    const cap = await underCapture(cluster, 'plain.pcap', canary, async () => {
      results = await probeAll(cluster, pods, canary);
    });
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(cap.complete).toBe(true);
    expect(canaryHits(cap)).toBeGreaterThan(0);
    expect(cap.podPlaintextPackets).toBeGreaterThan(0);
  }, 120_000);

  it('helm install with defaults + the required value: the DaemonSet is ready on all 3 kubelets', async () => {
    if (!existsSync(AGENT_IMAGE))
      throw new Error(`agent image ${AGENT_IMAGE} missing: run \`npm run image\` (or set SEALNET_AGENT_IMAGE)`);
    // The agents run with hostNetwork in the nodes' namespaces, where the API server is relayed on
    // 127.0.0.1:6443 (no kube-proxy serves the service address here).
    const set = [...REQUIRED_VALUES, 'agent.apiServer.host=127.0.0.1', 'agent.apiServer.port=6443'].flatMap((v) => [
      '--set',
      v,
    ]);
    await cluster.api.helm(['install', 'sealnet', CHART_DIR, '--namespace', 'sealnet', '--create-namespace', ...set], {
      timeoutMs: 120_000,
    });
    await waitDaemonSet(cluster, {
      namespace: 'sealnet',
      name: 'sealnet',
      want: 3,
      timeoutMs: 300_000,
      describe: () => describeAgents(cluster),
    });
  }, 360_000);

  it('with sealnet, pod-to-pod TCP/UDP/ICMP on every pair: only tunnel packets on the underlay, no canary', async () => {
    const pods = await trafficPods(cluster);
    const canary = `CANARY-sealed-${Date.now()}`;
    let results: { pair: string; ok: boolean; out: string }[] = [];
    const cap = await underCapture(cluster, 'sealed.pcap', canary, async () => {
      results = await probeAll(cluster, pods, canary);
    });
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(cap.complete).toBe(true);
    expect(canaryHits(cap)).toBe(0);
    expect(cap.podPlaintextPackets).toBe(0);
    expect(cap.wireguardPackets).toBeGreaterThan(0);
  }, 180_000);

  it("sealctl status with only the chart's operator role: through the API server's pod proxy to each agent's /status on its node address, every pair encrypted", async () => {
    const kubeconfig = await operatorKubeconfig(cluster);
    let last: { code: number; out: string } = { code: -1, out: '' };
    const deadline = Date.now() + 90_000;
    let status: StatusJson | undefined;
    while (Date.now() < deadline) {
      const r = await sealctl(kubeconfig, ['status', '--json']);
      last = { code: r.code ?? -1, out: `${r.stdout}${r.stderr}`.slice(0, 2000) };
      const j = (r.stdout.trim().startsWith('{') ? JSON.parse(r.stdout) : undefined) as StatusJson | undefined;
      if (r.code === 0 && j !== undefined && !j.partial) {
        status = j;
        break;
      }
      await sleep(3000);
    }
    if (status === undefined)
      throw new Error(`sealctl status never complete and encrypted: exit ${last.code}\n${last.out}`);
    expect(status.pairs.map((p) => [p.a, p.b, p.state])).toEqual([
      ['n1', 'n2', 'encrypted'],
      ['n1', 'n3', 'encrypted'],
      ['n2', 'n3', 'encrypted'],
    ]);
    // The reports came over TCP to each node's address, port 9589 (the chart's status.podProxy).
    expect(new Set(cluster.egressConnects().filter((c) => c.endsWith(':9589')))).toEqual(
      new Set(cluster.nodes.map((n) => `${n.address}:9589`)),
    );
  }, 180_000);

  it('fail-closed: agent container killed and sealwg0 deleted on one node: 0 plaintext pod packets, the other pair still encrypted', async () => {
    const pods = await trafficPods(cluster);
    const victim = cluster.nodes[0];
    if (victim === undefined) throw new Error('no node');
    const canary = `CANARY-down-${Date.now()}`;
    // Keep the agent dead for the whole window: kubelet restarts the container at once the first
    // time, so a single kill would leave a window of a few seconds only.
    let stop = false;
    let kills = 0;
    const killer = (async (): Promise<void> => {
      while (!stop) {
        kills += killAgentProcesses(victim);
        await cluster.nodeExec(victim, ['ip', 'link', 'del', 'sealwg0'], { check: false });
        await sleep(200);
      }
    })();
    let results: { pair: string; ok: boolean; out: string }[] = [];
    let linksDuring = '';
    try {
      const deadline = Date.now() + 30_000;
      while ((await sealnetLinks(cluster, victim)) !== '' || kills === 0) {
        if (Date.now() > deadline) throw new Error(`sealnet link still on ${victim.name} after killing its agent`);
        await sleep(200);
      }
      const cap = await underCapture(cluster, 'down.pcap', canary, async () => {
        results = await probePairsParallel(cluster, pods, canary);
        linksDuring = await sealnetLinks(cluster, victim);
      });
      // The window held: no tunnel link came back on the victim while the probes ran.
      expect(linksDuring).toBe('');
      const touching = results.filter((r) => r.pair.split('->').includes(victim.name));
      const others = results.filter((r) => !r.pair.split('->').includes(victim.name));
      expect(touching).toHaveLength(4);
      // Dropped, not delivered some other way: every probe to or from the victim failed.
      expect(touching.filter((r) => r.ok)).toEqual([]);
      expect(others.filter((r) => !r.ok)).toEqual([]);
      expect(cap.complete).toBe(true);
      expect(canaryHits(cap)).toBe(0);
      expect(cap.podPlaintextPackets).toBe(0);
      // The pair between the two healthy nodes went through their tunnel meanwhile.
      expect(cap.wireguardPackets).toBeGreaterThan(0);
    } finally {
      stop = true;
      await killer;
    }
  }, 180_000);

  it('after the kill, kubelet restarts the agent and every pair is encrypted again', async () => {
    // The DaemonSet's status may not show the victim unready yet: wait for its link to come back first.
    const victim = cluster.nodes[0];
    if (victim === undefined) throw new Error('no node');
    const deadline = Date.now() + 240_000;
    while ((await sealnetLinks(cluster, victim)) === '') {
      if (Date.now() > deadline)
        throw new Error(`no sealnet link on ${victim.name} 240 s after the kill\n${await describeAgents(cluster)}`);
      await sleep(1000);
    }
    await waitDaemonSet(cluster, {
      namespace: 'sealnet',
      name: 'sealnet',
      want: 3,
      timeoutMs: 240_000,
      describe: () => describeAgents(cluster),
    });
    const pods = await trafficPods(cluster);
    const canary = `CANARY-back-${Date.now()}`;
    let results: { pair: string; ok: boolean; out: string }[] = [];
    const cap = await underCapture(cluster, 'back.pcap', canary, async () => {
      // Ready means the agent converged its own node; a peer may need one more pass for the new link.
      const until = Date.now() + 90_000;
      do {
        results = await probePairsParallel(cluster, pods, canary);
        if (results.every((r) => r.ok)) break;
        await sleep(2000);
      } while (Date.now() < until);
    });
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(cap.complete).toBe(true);
    expect(canaryHits(cap)).toBe(0);
    expect(cap.podPlaintextPackets).toBe(0);
  }, 360_000);

  it('uninstall as the README says (upgrade to cleanup, then helm uninstall): no sealnet link, route, rule, filter, pin or key left on any node', async () => {
    // The check sees sealnet's state while the agents run (it can fail).
    for (const n of cluster.nodes) {
      const before = await sealnetResidue(cluster, n);
      expect(before.some((l) => l.startsWith('link sealwg0'))).toBe(true);
      expect(before.some((l) => l.startsWith('rule '))).toBe(true);
      expect(before.some((l) => l.startsWith('tc egress'))).toBe(true);
      expect(before.some((l) => l.startsWith('file /sys/fs/bpf/sealnet'))).toBe(true);
      expect(before.some((l) => l.startsWith('file /var/lib/sealnet/'))).toBe(true);
    }
    await cluster.api.helm(
      [
        'upgrade',
        'sealnet',
        CHART_DIR,
        '--namespace',
        'sealnet',
        '--reuse-values',
        '--set',
        'cleanup.enabled=true',
        '--set',
        'cleanup.purgeState=true',
      ],
      { timeoutMs: 120_000 },
    );
    await waitDaemonSet(cluster, {
      namespace: 'sealnet',
      name: 'sealnet',
      want: 3,
      timeoutMs: 300_000,
      describe: () => describeAgents(cluster),
    });
    await cluster.api.helm(['uninstall', 'sealnet', '--namespace', 'sealnet', '--wait', '--timeout', '120s'], {
      timeoutMs: 150_000,
    });
    await cluster.api.kubectl(
      ['wait', '--for=delete', 'pod', '-l', 'app.kubernetes.io/name=sealnet', '-n', 'sealnet', '--timeout=120s'],
      { timeoutMs: 150_000, check: false },
    );
    const left: string[] = [];
    for (const n of cluster.nodes) for (const l of await sealnetResidue(cluster, n)) left.push(`${n.name}: ${l}`);
    expect(left).toEqual([]);
    // Without sealnet the pods talk over the CNI's routes again (nothing left blackholing them).
    const pods = await trafficPods(cluster);
    const results = await probeAll(cluster, pods, `after-uninstall-${Date.now()}`);
    expect(results.filter((r) => !r.ok)).toEqual([]);
  }, 600_000);
});

/** The agents' container logs, read from the nodes' /var/log/pods (no kubelet:10250 path to the API server). */
function agentLogs(cluster: RealCluster): string {
  const out: string[] = [];
  for (const n of cluster.nodes) {
    const base = join(n.dir, 'log-up', 'pods');
    if (!existsSync(base)) continue;
    for (const pod of readdirSync(base).filter((d) => d.startsWith('sealnet_'))) {
      for (const c of readdirSync(join(base, pod))) {
        for (const f of readdirSync(join(base, pod, c))) {
          const lines = readFileSync(join(base, pod, c, f), 'utf8')
            .trim()
            .split('\n')
            .slice(-8);
          out.push(`== ${n.name} ${c}/${f}\n${lines.join('\n')}`);
        }
      }
    }
  }
  return out.join('\n');
}
