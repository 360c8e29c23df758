/**
 * The real-cluster tier (issue 15 item 4b), overlay CNI: flannel with its VXLAN backend
 * (flanneld with `--kube-subnet-mgr` against the real API server on every node, flannel's CNI
 * plugin delegating to bridge), three kubelet nodes, sealnet installed with `helm install` and the
 * chart's defaults plus the required value.
 *
 * Under an overlay a pod packet to another node leaves inside an outer node-to-node VXLAN header
 * (UDP 8472). The underlay capture therefore looks inside VXLAN: a VXLAN packet whose inner
 * frame has a pod address counts as plaintext pod traffic, and the canary is searched in every
 * byte (the baseline without sealnet shows both, so the check can fail).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ANNOTATION_PREFIX } from '../../common/constants.js';
import { startCapture, type CaptureResult } from '../harness/capture.js';
import { run, sleep } from '../harness/exec.js';
import { CHART_DIR, REQUIRED_VALUES } from '../k8s/chart.js';
import { killAgentProcesses, waitDaemonSet } from './agent.js';
import { FLANNEL_VXLAN_PORT, RealCluster, TESTPOD_IMAGE, type RealNode } from './cluster.js';

const here = dirname(fileURLToPath(import.meta.url));
const AGENT_IMAGE = process.env.SEALNET_AGENT_IMAGE ?? join(here, '..', '..', 'dist-image', 'sealnet-agent.oci.tar');
const WG_PORT = 51880;
const POD_CIDRS = ['100.64.0.0/16'];

interface TrafficPod {
  readonly name: string;
  readonly node: string;
  readonly ip: string;
  readonly pid: number;
}
type ProbeResult = { pair: string; ok: boolean; out: string };

const podManifest = (i: number): object => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: `traffic-${i}`, namespace: 'default', labels: { app: 'traffic' } },
  spec: {
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

/** The PID of the `testpod serve` process with address `ip`, in a pod's (never the host's) netns. */
async function findServePid(cluster: RealCluster, ip: string): Promise<number> {
  const { readlinkSync } = await import('node:fs');
  const hostNet = readlinkSync('/proc/self/ns/net');
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let cmd: string;
    let cg: string;
    try {
      cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      cg = readFileSync(`/proc/${e}/cgroup`, 'utf8');
      if (cmd !== '/testpod\0serve\0' || readlinkSync(`/proc/${e}/ns/net`) === hostNet) continue;
    } catch {
      continue;
    }
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

/** Every ordered pair (TCP, UDP, ICMP with the canary), all at once. */
async function probePairs(cluster: RealCluster, pods: readonly TrafficPod[], canary: string): Promise<ProbeResult[]> {
  const jobs: Promise<ProbeResult>[] = [];
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

async function sealnetLinks(cluster: RealCluster, node: RealNode): Promise<string> {
  const r = await cluster.nodeExec(node, ['ip', '-o', 'link', 'show'], { check: false });
  return r.stdout
    .split('\n')
    .filter((l) => /^\d+: sealwg\d[:@]/.test(l))
    .join('\n');
}

/** The agents' pods and last log lines (from the nodes' /var/log/pods), for a failure message. */
async function describeAgents(cluster: RealCluster): Promise<string> {
  const pods = await cluster.api.kubectl(['get', 'pods', '-n', 'sealnet', '-o', 'wide'], { check: false });
  const out: string[] = [pods.stdout];
  for (const n of cluster.nodes) {
    const base = join(n.dir, 'log-up', 'pods');
    if (!existsSync(base)) continue;
    for (const pod of readdirSync(base).filter((d) => d.startsWith('sealnet_')))
      for (const c of readdirSync(join(base, pod)))
        for (const f of readdirSync(join(base, pod, c)))
          out.push(
            `== ${n.name} ${c}/${f}\n${readFileSync(join(base, pod, c, f), 'utf8')
              .trim()
              .split('\n')
              .slice(-8)
              .join('\n')}`,
          );
  }
  return out.join('\n');
}

/** Captures on the underlay bridge while `fn` runs, looking inside flannel's VXLAN. */
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
    vxlanPorts: [FLANNEL_VXLAN_PORT],
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

describe('real cluster, overlay CNI (flannel VXLAN)', () => {
  let cluster: RealCluster;
  const log = (l: string): void => {
    process.stderr.write(`[overlay] ${l}\n`);
  };
  const t0 = Date.now();

  beforeAll(async () => {
    cluster = await RealCluster.start({
      nodes: 3,
      cni: 'flannel',
      images: existsSync(AGENT_IMAGE) ? [AGENT_IMAGE] : [],
      imageBaseName: 'ghcr.io/sealnet/sealnet-agent',
      log,
    });
    await cluster.waitFlannelRoutes();
    for (let i = 1; i <= 3; i++)
      await cluster.api.kubectl(['apply', '-f', '-'], { input: JSON.stringify(podManifest(i)) });
    await cluster.api.kubectl(
      ['wait', '--for=condition=Ready', 'pod', '-l', 'app=traffic', '-n', 'default', '--timeout=180s'],
      { timeoutMs: 200_000 },
    );
    log(`cluster, flannel and traffic pods ready after ${Date.now() - t0} ms`);
  }, 1_800_000);

  afterAll(async () => {
    await cluster?.destroy();
    log(`tier wall time ${Date.now() - t0} ms`);
  }, 300_000);

  it('flannel runs as users run it: VXLAN device flannel.1 (UDP 8472), kube subnet manager leases on the Nodes, pods on flannel subnets', async () => {
    for (const n of cluster.nodes) {
      const d = await cluster.nodeExec(n, ['ip', '-d', 'link', 'show', 'flannel.1']);
      expect(d.stdout).toMatch(new RegExp(`vxlan id 1 .*dstport ${FLANNEL_VXLAN_PORT}`));
      const ann = await cluster.api.kubectl([
        'get',
        'node',
        n.name,
        '-o',
        'jsonpath={.metadata.annotations.flannel\\.alpha\\.coreos\\.com/backend-type}',
      ]);
      expect(ann.stdout).toBe('vxlan');
    }
    const pods = await trafficPods(cluster);
    expect(pods.map((p) => p.node).sort()).toEqual(cluster.nodes.map((n) => n.name).sort());
    for (const p of pods) {
      const node = cluster.nodes.find((n) => n.name === p.node);
      expect(p.ip.startsWith(node!.podCidr.replace(/0\/24$/, ''))).toBe(true);
    }
  }, 60_000);

  it('without sealnet, pod-to-pod TCP/UDP/ICMP works and the capture sees the canary inside VXLAN (the capture can fail)', async () => {
    const pods = await trafficPods(cluster);
    const canary = `CANARY-vxlan-plain-${Date.now()}`;
    let results: ProbeResult[] = [];
    const cap = await underCapture(cluster, 'plain.pcap', canary, async () => {
      results = await probePairs(cluster, pods, canary);
    });
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(cap.complete).toBe(true);
    expect(cap.canaryHits).toBeGreaterThan(0);
    // Every plaintext pod packet is inside VXLAN: none with an outer pod address.
    expect(cap.vxlanPodPlaintextPackets).toBeGreaterThan(0);
    expect(cap.podPlaintextPackets).toBe(cap.vxlanPodPlaintextPackets);
  }, 300_000);

  it('helm install with defaults + the required value: the DaemonSet is ready on all 3 kubelets', async () => {
    if (!existsSync(AGENT_IMAGE))
      throw new Error(`agent image ${AGENT_IMAGE} missing: run \`npm run image\` (or set SEALNET_AGENT_IMAGE)`);
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

  it('with sealnet, pod-to-pod TCP/UDP/ICMP on every pair: only tunnel packets on the underlay, nothing in VXLAN, no canary', async () => {
    const pods = await trafficPods(cluster);
    const canary = `CANARY-vxlan-sealed-${Date.now()}`;
    let results: ProbeResult[] = [];
    const cap = await underCapture(cluster, 'sealed.pcap', canary, async () => {
      results = await probePairs(cluster, pods, canary);
    });
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(cap.complete).toBe(true);
    expect(cap.canaryHits).toBe(0);
    expect(cap.podPlaintextPackets).toBe(0);
    expect(cap.wireguardPackets).toBeGreaterThan(0);
  }, 180_000);

  /**
   * Keeps `victim`'s agent dead (kubelet restarts it at once) with its tunnel link deleted, and
   * optionally its published key removed, while `fn` runs.
   */
  async function withAgentDown(victim: RealNode, o: { unpublish: boolean }, fn: () => Promise<void>): Promise<void> {
    let stop = false;
    let kills = 0;
    const killer = (async (): Promise<void> => {
      while (!stop) {
        kills += killAgentProcesses(victim);
        await cluster.nodeExec(victim, ['ip', 'link', 'del', 'sealwg0'], { check: false });
        await sleep(200);
      }
    })();
    try {
      const deadline = Date.now() + 30_000;
      while ((await sealnetLinks(cluster, victim)) !== '' || kills === 0) {
        if (Date.now() > deadline) throw new Error(`sealnet link still on ${victim.name} after killing its agent`);
        await sleep(200);
      }
      if (o.unpublish) {
        const ann = await cluster.api.kubectl(['get', 'node', victim.name, '-o', 'jsonpath={.metadata.annotations}']);
        const keys = Object.keys(JSON.parse(ann.stdout || '{}') as Record<string, string>).filter((k) =>
          k.startsWith(ANNOTATION_PREFIX),
        );
        await cluster.api.kubectl(['annotate', 'node', victim.name, ...keys.map((k) => `${k}-`)]);
        // The other agents see a node without a key (as before its agent first published one).
        await sleep(3000);
      }
      await fn();
    } finally {
      stop = true;
      await killer;
    }
  }

  for (const scenario of [
    { name: 'agent killed and sealwg0 deleted', unpublish: false, file: 'down.pcap' },
    { name: 'no key published (annotations removed, agent kept down)', unpublish: true, file: 'nokey.pcap' },
  ]) {
    it(`fail-closed under VXLAN, one node's ${scenario.name}: 0 plaintext pod packets (inner VXLAN included), the other pair still encrypted`, async () => {
      const pods = await trafficPods(cluster);
      const victim = cluster.nodes[0]!;
      const canary = `CANARY-vxlan-${scenario.unpublish ? 'nokey' : 'down'}-${Date.now()}`;
      let results: ProbeResult[] = [];
      let cap: CaptureResult | undefined;
      await withAgentDown(victim, scenario, async () => {
        cap = await underCapture(cluster, scenario.file, canary, async () => {
          results = await probePairs(cluster, pods, canary);
        });
      });
      const touching = results.filter((r) => r.pair.split('->').includes(victim.name));
      const others = results.filter((r) => !r.pair.split('->').includes(victim.name));
      expect(touching).toHaveLength(4);
      expect(touching.filter((r) => r.ok)).toEqual([]);
      expect(others.filter((r) => !r.ok)).toEqual([]);
      expect(cap!.complete).toBe(true);
      expect(cap!.canaryHits).toBe(0);
      expect(cap!.podPlaintextFlows).toEqual({});
      expect(cap!.podPlaintextPackets).toBe(0);
      expect(cap!.wireguardPackets).toBeGreaterThan(0);
      // kubelet brings the agent back; it republishes and every pair is encrypted again.
      const deadline = Date.now() + 240_000;
      while ((await sealnetLinks(cluster, victim)) === '') {
        if (Date.now() > deadline)
          throw new Error(`no sealnet link on ${victim.name}\n${await describeAgents(cluster)}`);
        await sleep(1000);
      }
      await waitDaemonSet(cluster, {
        namespace: 'sealnet',
        name: 'sealnet',
        want: 3,
        timeoutMs: 240_000,
        describe: () => describeAgents(cluster),
      });
      const until = Date.now() + 90_000;
      let back: ProbeResult[] = [];
      do {
        back = await probePairs(cluster, pods, `back-${Date.now()}`);
        if (back.every((r) => r.ok)) break;
        await sleep(2000);
      } while (Date.now() < until);
      expect(back.filter((r) => !r.ok)).toEqual([]);
    }, 600_000);
  }
});
