/**
 * The real-cluster tier (issue 15 item 3), routed CNI: three kubelet nodes (test/cluster/cluster.ts),
 * traffic pods placed by kube-scheduler, sealnet installed with `helm install` and the chart's
 * defaults plus the one required value, the agent image this repo builds (`npm run image`)
 * imported into each node's containerd.
 *
 * The agent archive: $SEALNET_AGENT_IMAGE, default <repo>/dist-image/sealnet-agent.oci.tar.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCapture, type CaptureResult } from '../harness/capture.js';
import { run, sleep } from '../harness/exec.js';
import { CHART_DIR, REQUIRED_VALUES } from '../k8s/chart.js';
import { killAgentProcesses, sealnetResidue, waitDaemonSet } from './agent.js';
import { RealCluster, TESTPOD_IMAGE, type RealNode } from './cluster.js';
import { operatorKubeconfig, sealctl, type StatusJson } from './operator.js';
import {
  agentPods,
  importImage,
  linkIds,
  publishedKey,
  restartKubelet,
  waitFor,
  wgPeers,
  type AgentPod,
} from './lifecycle.js';
import { variantOciArchive } from './oci.js';
import { spawnBackground } from '../harness/exec.js';

const here = dirname(fileURLToPath(import.meta.url));
const AGENT_IMAGE = process.env.SEALNET_AGENT_IMAGE ?? join(here, '..', '..', 'dist-image', 'sealnet-agent.oci.tar');
const IMAGE_REPO = 'ghcr.io/sealnet/sealnet-agent';
/** The tag of the second image `helm upgrade` moves to (the first is the chart's appVersion). */
const UPGRADE_TAG = 'upgrade-2';
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

/** The traffic pod `name` (its node, address and serve process). */
async function trafficPodByName(cluster: RealCluster, name: string): Promise<TrafficPod> {
  const r = await cluster.api.kubectl(['get', 'pod', name, '-n', 'default', '-o', 'json']);
  const it = JSON.parse(r.stdout) as { spec: { nodeName?: string }; status: { podIP?: string; phase?: string } };
  if (it.status.phase !== 'Running' || it.status.podIP === undefined || it.spec.nodeName === undefined)
    throw new Error(`pod ${name} not running`);
  return { name, node: it.spec.nodeName, ip: it.status.podIP, pid: await findServePid(cluster, it.status.podIP) };
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
  o: { bufferKiB?: number } = {},
): Promise<CaptureResult> {
  const cap = await startCapture({
    ...o,
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
  /** The second agent image (same layers, one more label: a different digest) and its digests. */
  let variantDir: string | undefined;
  let variant: { archive: string; manifestDigest: string; configDigest: string } | undefined;
  const log = (l: string): void => {
    process.stderr.write(`[cluster] ${l}\n`);
  };

  beforeAll(async () => {
    // Without the agent image the cluster and the plaintext baseline still run; the sealnet tests fail naming it.
    const images: string[] = [];
    if (existsSync(AGENT_IMAGE)) {
      const t0 = Date.now();
      variantDir = mkdtempSync(join(tmpdir(), 'sealnet-variant-'));
      const archive = join(variantDir, 'sealnet-agent-upgrade.oci.tar');
      const d = await variantOciArchive({
        src: AGENT_IMAGE,
        out: archive,
        work: join(variantDir, 'work'),
        tag: UPGRADE_TAG,
      });
      variant = { archive, ...d };
      log(`second agent image ${IMAGE_REPO}:${UPGRADE_TAG} ${d.manifestDigest} built in ${Date.now() - t0} ms`);
      // Both on every node at boot: the upgrade measures the rollout, not a pull.
      images.push(AGENT_IMAGE, archive);
    }
    cluster = await RealCluster.start({ nodes: 3, images, imageBaseName: IMAGE_REPO, log });
    for (let i = 1; i <= 3; i++)
      await cluster.api.kubectl(['apply', '-f', '-'], { input: JSON.stringify(podManifest(i)) });
    await cluster.api.kubectl(
      ['wait', '--for=condition=Ready', 'pod', '-l', 'app=traffic', '-n', 'default', '--timeout=180s'],
      { timeoutMs: 200_000 },
    );
  }, 1_800_000);

  afterAll(async () => {
    await cluster?.destroy();
    if (variantDir !== undefined) rmSync(variantDir, { recursive: true, force: true });
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

  // --- Lifecycle (issue 15 "What must be shown"): a node joining before its agent runs, drain and
  // delete, kubelet restart, helm upgrade to a second image under traffic. They run in this order:
  // the joined node is the one drained and deleted, so the later tests see the original 3 nodes.
  let joined: RealNode | undefined;
  let joinedPod: TrafficPod | undefined;
  /** What the underlay showed while the joined node had no key (for the known-gap test). */
  let nokey: { plaintext: number; canary: number; flows: Readonly<Record<string, number>> } | undefined;

  it('a node joins whose agent cannot start yet (its image not pullable): it has no key, the other agents drop traffic to it, the other pairs stay encrypted; plaintext measured', async () => {
    if (variant === undefined) throw new Error(`agent image ${AGENT_IMAGE} missing`);
    const t0 = Date.now();
    // A new machine whose registry pull of the agent image fails (no route to ghcr.io here):
    // the DaemonSet pod (it tolerates the taint) waits in ErrImagePull/ImagePullBackOff, the node
    // is Ready, and the kubelet registered it with the not-ready taint (README install step 4),
    // which keeps workloads off it. The node has the traffic image only.
    joined = await cluster.joinNode({
      images: [],
      registerWithTaints: [{ key: 'sealnet.io/not-ready', effect: 'NoSchedule' }],
    });
    log(`node ${joined.name} joined and Ready after ${Date.now() - t0} ms`);
    const nodeName = joined.name;
    await cluster.api.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'traffic-joined', namespace: 'default', labels: { app: 'traffic-joined' } },
        // No toleration: a taint that keeps workloads off a node until its guard is attached applies.
        spec: {
          nodeSelector: { 'kubernetes.io/hostname': nodeName },
          containers: [{ name: 'serve', image: TESTPOD_IMAGE, imagePullPolicy: 'Never', args: ['serve'] }],
        },
      }),
    });
    // The agent pod exists on the new node and is not running: it has published no key.
    await waitFor(async () => (await agentPods(cluster)).get(nodeName)?.waiting !== undefined, {
      timeoutMs: 120_000,
      what: async () => `no waiting agent pod on ${nodeName}\n${await describeAgents(cluster)}`,
    });
    const agent = (await agentPods(cluster)).get(nodeName);
    log(`agent on ${nodeName}: ${agent?.phase} ${agent?.waiting}`);
    expect(agent?.ready).toBe(false);
    expect(await publishedKey(cluster, nodeName)).toBe('');
    const sched = await cluster.api.kubectl(
      ['wait', '--for=condition=Ready', 'pod/traffic-joined', '-n', 'default', '--timeout=60s'],
      { timeoutMs: 70_000, check: false },
    );
    const pods = await trafficPods(cluster);
    const canary = `CANARY-nokey-${Date.now()}`;
    let results: { pair: string; ok: boolean; out: string }[] = [];
    if (sched.code !== 0) {
      // Workloads kept off the node until its agent runs: nothing there can send plaintext.
      const pod = await cluster.api.kubectl(['get', 'pod', 'traffic-joined', '-n', 'default', '-o', 'wide'], {
        check: false,
      });
      log(`traffic-joined not Ready on ${nodeName} (kept off?): ${pod.stdout}`);
      const node = await cluster.api.kubectl(['get', 'node', nodeName, '-o', 'jsonpath={.spec.taints}']);
      expect(node.stdout).toContain('NoSchedule');
    } else {
      joinedPod = await trafficPodByName(cluster, 'traffic-joined');
      log(`traffic-joined Running on ${nodeName} (${joinedPod.ip}) while its agent is not`);
    }
    const all = joinedPod === undefined ? pods : [...pods, joinedPod];
    const cap = await underCapture(cluster, 'nokey.pcap', canary, async () => {
      results = await probePairsParallel(cluster, all, canary);
    });
    log(`before ${nodeName}'s first key: ${JSON.stringify(results)}`);
    log(
      `capture: plaintext pod packets ${cap.podPlaintextPackets} ${JSON.stringify(cap.podPlaintextFlows)}, canary hits ${canaryHits(cap)}, wireguard ${cap.wireguardPackets}`,
    );
    const touching = results.filter((r) => r.pair.split('->').includes(nodeName));
    const others = results.filter((r) => !r.pair.split('->').includes(nodeName));
    expect(others.filter((r) => !r.ok)).toEqual([]);
    expect(cap.complete).toBe(true);
    expect(cap.wireguardPackets).toBeGreaterThan(0);
    // Every probe to or from the keyless node failed (no echo came back by any path).
    expect(touching).toHaveLength(joinedPod === undefined ? 0 : 6);
    expect(touching.filter((r) => r.ok)).toEqual([]);
    nokey = { plaintext: cap.podPlaintextPackets, canary: canaryHits(cap), flows: cap.podPlaintextFlows };
  }, 420_000);

  // Without the taint nothing guards a node before its agent runs: measured when this test joined
  // an untainted node (before the agent lifted the taint), its workload pod's requests left in
  // plaintext (21 pod packets, 12 canary hits per run). With the kubelet registering the
  // `sealnet.io/not-ready:NoSchedule` taint (README install step 4) the workload stays Pending
  // until the agent's guard is attached and the agent lifts the taint.
  it('before a node publishes its first key (kubelet registered with the not-ready taint): 0 plaintext pod packets to or from it', () => {
    expect(nokey).toBeDefined();
    expect(nokey).toEqual({ plaintext: 0, canary: 0, flows: {} });
  });

  it('once the joined node can get the image, its agent publishes a key, every agent has it as a peer, every pair of the 4 nodes encrypted', async () => {
    const node = joined;
    if (node === undefined || variant === undefined) throw new Error('no joined node (the previous test failed early)');
    const t0 = Date.now();
    // The pull succeeds now (registry back): the image is there; the DaemonSet's fresh pod starts
    // at once instead of after the kubelet's image back-off (up to 5 min).
    await importImage(cluster, node, AGENT_IMAGE, IMAGE_REPO);
    const stuck = (await agentPods(cluster)).get(node.name);
    if (stuck !== undefined) await cluster.api.kubectl(['delete', 'pod', '-n', 'sealnet', stuck.name, '--wait=false']);
    await waitDaemonSet(cluster, {
      namespace: 'sealnet',
      name: 'sealnet',
      want: 4,
      timeoutMs: 240_000,
      describe: () => describeAgents(cluster),
    });
    const key = await publishedKey(cluster, node.name);
    expect(key).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    // The agent lifted the not-ready taint once its guard was attached; the workload is scheduled.
    await waitFor(
      async () =>
        !(await cluster.api.kubectl(['get', 'node', node.name, '-o', 'jsonpath={.spec.taints}'])).stdout.includes(
          'sealnet.io/not-ready',
        ),
      { timeoutMs: 120_000, what: async () => `${node.name} still has the sealnet.io/not-ready taint` },
    );
    for (const other of cluster.nodes.filter((n) => n !== node))
      await waitFor(async () => (await wgPeers(other)).includes(key), {
        timeoutMs: 60_000,
        what: async () => `${other.name} has no peer ${key} (peers ${JSON.stringify(await wgPeers(other))})`,
      });
    log(`${node.name}'s agent ran, published its key and is every agent's peer after ${Date.now() - t0} ms`);
    if (joinedPod === undefined) {
      await cluster.api.kubectl(
        ['wait', '--for=condition=Ready', 'pod/traffic-joined', '-n', 'default', '--timeout=120s'],
        {
          timeoutMs: 130_000,
        },
      );
      joinedPod = await trafficPodByName(cluster, 'traffic-joined');
    }
    const all = [...(await trafficPods(cluster)), joinedPod];
    const canary = `CANARY-joined-${Date.now()}`;
    let results: { pair: string; ok: boolean; out: string }[] = [];
    const cap = await underCapture(cluster, 'joined.pcap', canary, async () => {
      const until = Date.now() + 60_000;
      do {
        results = await probePairsParallel(cluster, all, canary);
        if (results.every((r) => r.ok)) break;
        await sleep(2000);
      } while (Date.now() < until);
    });
    expect(results).toHaveLength(12);
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(cap.complete).toBe(true);
    expect(canaryHits(cap)).toBe(0);
    expect(cap.podPlaintextPackets).toBe(0);
    expect(cap.wireguardByEndpoints[`${node.address}>${cluster.nodes[0]?.address}`] ?? 0).toBeGreaterThan(0);
  }, 420_000);

  it('drain and delete a node: its peer is removed from every other agent, the remaining pairs still encrypted', async () => {
    const node = joined;
    if (node === undefined) throw new Error('no joined node (an earlier test failed early)');
    const key = await publishedKey(cluster, node.name);
    expect(key).not.toBe('');
    const t0 = Date.now();
    // As an operator decommissions a machine: drain (DaemonSet pods stay), stop the machine, delete the Node.
    await cluster.api.kubectl(
      ['drain', node.name, '--ignore-daemonsets', '--delete-emptydir-data', '--force', '--timeout=120s'],
      {
        timeoutMs: 150_000,
      },
    );
    await cluster.retireNode(node);
    await cluster.api.kubectl(['delete', 'node', node.name, '--timeout=60s'], { timeoutMs: 70_000 });
    for (const other of cluster.nodes)
      await waitFor(async () => !(await wgPeers(other)).includes(key), {
        timeoutMs: 90_000,
        what: async () => `${other.name} still has the deleted node's peer ${key}`,
      });
    log(`deleted ${node.name}'s peer gone from every agent ${Date.now() - t0} ms after the drain began`);
    // The other agents still have each other (nothing else was removed).
    for (const n of cluster.nodes) {
      const others = await Promise.all(cluster.nodes.filter((o) => o !== n).map((o) => publishedKey(cluster, o.name)));
      expect(await wgPeers(n)).toEqual(others.sort());
    }
    await waitDaemonSet(cluster, {
      namespace: 'sealnet',
      name: 'sealnet',
      want: 3,
      timeoutMs: 120_000,
      describe: () => describeAgents(cluster),
    });
    const pods = await trafficPods(cluster);
    const canary = `CANARY-deleted-${Date.now()}`;
    let results: { pair: string; ok: boolean; out: string }[] = [];
    const cap = await underCapture(cluster, 'deleted.pcap', canary, async () => {
      results = await probePairsParallel(cluster, pods, canary);
    });
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(cap.complete).toBe(true);
    expect(canaryHits(cap)).toBe(0);
    expect(cap.podPlaintextPackets).toBe(0);
    expect(cap.wireguardPackets).toBeGreaterThan(0);
  }, 420_000);

  it('a kubelet restart changes nothing: same keys, same agent container, same links and peers, no handshake storm, pairs encrypted', async () => {
    const node = cluster.nodes[0];
    if (node === undefined) throw new Error('no node');
    const snapshot = async (): Promise<object> => {
      const agents = await agentPods(cluster);
      const out: Record<string, object> = {};
      for (const n of cluster.nodes) {
        const a: AgentPod | undefined = agents.get(n.name);
        out[n.name] = {
          key: await publishedKey(cluster, n.name),
          pod: a?.uid,
          container: a?.containerId,
          restarts: a?.restartCount,
          links: await linkIds(cluster, n),
          peers: await wgPeers(n),
        };
      }
      return out;
    };
    const before = await snapshot();
    const pods = await trafficPods(cluster);
    const canary = `CANARY-kubelet-${Date.now()}`;
    let results: { pair: string; ok: boolean; out: string }[] = [];
    const t0 = Date.now();
    const cap = await underCapture(cluster, 'kubelet.pcap', canary, async () => {
      await restartKubelet(cluster, node);
      await cluster.waitNodeReady(node.name, 60_000);
      // The restarted kubelet re-syncs its pods (probes, status): give it one status period.
      await sleep(12_000);
      results = await probePairsParallel(cluster, pods, canary);
    });
    log(
      `kubelet of ${node.name} restarted, window ${Date.now() - t0} ms, WireGuard by type ${JSON.stringify(cap.wireguardByType)}`,
    );
    await waitDaemonSet(cluster, {
      namespace: 'sealnet',
      name: 'sealnet',
      want: 3,
      timeoutMs: 60_000,
      describe: () => describeAgents(cluster),
    });
    expect(await snapshot()).toEqual(before);
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(cap.complete).toBe(true);
    expect(canaryHits(cap)).toBe(0);
    expect(cap.podPlaintextPackets).toBe(0);
    // No re-handshake storm: at most one initiation (and one retry) per ordered pair of nodes in
    // the window (a session older than 120 s rekeys on the first packet, as without a restart).
    expect(cap.wireguardByType['1']).toBeLessThanOrEqual(2 * 6);
  }, 300_000);

  it('helm upgrade to a second image under continuous TCP and numbered UDP between pods on different nodes: 0 plaintext, 0 broken TCP connections, UDP loss reported', async () => {
    if (variant === undefined) throw new Error(`agent image ${AGENT_IMAGE} missing`);
    const v = variant;
    const pods = await trafficPods(cluster);
    const before = await agentPods(cluster);
    const keysBefore = await Promise.all(cluster.nodes.map((n) => publishedKey(cluster, n.name)));
    const linksBefore = await Promise.all(cluster.nodes.map((n) => linkIds(cluster, n)));
    const canary = `CANARY-upgrade-${Date.now()}`;
    // A ring of streams: every node sends to the next one and receives from the previous one.
    const streams = pods.map((p, i) => {
      const to = pods[(i + 1) % pods.length] as TrafficPod;
      const logFile = join(cluster.dir, `stream-${p.node}-${to.node}.log`);
      return {
        pair: `${p.node}->${to.node}`,
        logFile,
        proc: spawnBackground(['nsenter', '-t', String(p.pid), '-n', cluster.bins.testpod, 'stream', to.ip, canary], {
          logFile,
        }),
      };
    });
    // Seen every 250 ms while the upgrade runs: when each node had no sealnet link.
    // When each node had no sealnet link: first poll that saw none to first poll that saw one again.
    const noLink: Record<string, number[]> = {};
    const goneAt = new Map<string, number>();
    let watching = true;
    const watcher = (async (): Promise<void> => {
      while (watching) {
        for (const n of cluster.nodes) {
          const up = (await linkIds(cluster, n)).length > 0;
          const since = goneAt.get(n.name);
          if (!up && since === undefined) goneAt.set(n.name, Date.now());
          if (up && since !== undefined) {
            (noLink[n.name] ??= []).push(Date.now() - since);
            goneAt.delete(n.name);
          }
        }
        await sleep(250);
      }
    })();
    const t0 = Date.now();
    let rolloutMs = 0;
    const reports: { pair: string; r: Record<string, number | boolean | string> }[] = [];
    const cap = await underCapture(
      cluster,
      'upgrade.pcap',
      canary,
      async () => {
        try {
          await sleep(3000);
          await cluster.api.helm(
            [
              'upgrade',
              'sealnet',
              CHART_DIR,
              '--namespace',
              'sealnet',
              '--reuse-values',
              '--set',
              `image.tag=${UPGRADE_TAG}`,
              // SEALNET_UPGRADE_RESTORE=0: the new agents wait for their store as before the restore
              // of the last applied state (the "before" figures in the README).
              ...(process.env.SEALNET_UPGRADE_RESTORE === '0' ? ['--set', 'wireguard.restoreLastApplied=false'] : []),
            ],
            { timeoutMs: 120_000 },
          );
          await waitDaemonSet(cluster, {
            namespace: 'sealnet',
            name: 'sealnet',
            want: 3,
            timeoutMs: 360_000,
            describe: () => describeAgents(cluster),
          });
          rolloutMs = Date.now() - t0;
          // The last restarted agent converges its peers after Ready: wait until every pair answers
          // (bounded), then let the streams run 5 s more: each must be flowing at the stop.
          const until = Date.now() + 120_000;
          while (!(await probePairsParallel(cluster, pods, canary)).every((r) => r.ok) && Date.now() < until)
            await sleep(1000);
          await sleep(5000);
        } finally {
          watching = false;
          await watcher;
          for (const s of streams) s.proc.kill('SIGTERM');
          for (const s of streams) {
            await s.proc.exited;
            const last = readFileSync(s.logFile, 'utf8').trim().split('\n').pop() ?? '';
            let r: Record<string, number | boolean | string>;
            try {
              r = JSON.parse(last) as Record<string, number | boolean | string>;
            } catch {
              throw new Error(`stream ${s.pair} printed no report: ${readFileSync(s.logFile, 'utf8').slice(-2000)}`);
            }
            reports.push({ pair: s.pair, r });
          }
        }
      },
      { bufferKiB: 32768 },
    );
    const after = await agentPods(cluster);
    log(`helm upgrade to ${IMAGE_REPO}:${UPGRADE_TAG} (${v.manifestDigest}) rolled out in ${rolloutMs} ms`);
    for (const x of reports) log(`stream ${x.pair}: ${JSON.stringify(x.r)}`);
    log(`no sealnet link (ms, first poll without to first poll with): ${JSON.stringify(noLink)}`);
    // The new agents' start-up (README "Restart and upgrade with wireguard-go"): the restore of the
    // last applied state and the store sync, per node (printed, not asserted).
    for (const l of agentLogLines(cluster, [
      'loaded WireGuard key',
      'restored the last applied state',
      'ignoring the last applied state',
      'node store synced',
    ]))
      log(`agent start-up: ${l}`);
    log(
      `links before ${JSON.stringify(linksBefore)} after ${JSON.stringify(await Promise.all(cluster.nodes.map((n) => linkIds(cluster, n))))}`,
    );
    log(
      `capture: ${cap.totalPackets} packets, kernel dropped ${cap.kernelDropped}, WireGuard by type ${JSON.stringify(cap.wireguardByType)}, plaintext ${cap.podPlaintextPackets}`,
    );
    // Every agent runs the second image now (a new pod: the container was replaced).
    for (const n of cluster.nodes) {
      const a = after.get(n.name);
      expect(a?.image).toContain(UPGRADE_TAG);
      expect([v.manifestDigest, v.configDigest].some((d) => a?.imageId?.includes(d) === true)).toBe(true);
      expect(a?.uid).not.toBe(before.get(n.name)?.uid);
    }
    // The keys live in the node's state directory: the upgrade keeps them.
    expect(await Promise.all(cluster.nodes.map((n) => publishedKey(cluster, n.name)))).toEqual(keysBefore);
    expect(cap.complete).toBe(true);
    expect(canaryHits(cap)).toBe(0);
    expect(cap.podPlaintextPackets).toBe(0);
    expect(reports).toHaveLength(3);
    for (const x of reports) {
      expect({ pair: x.pair, broken: x.r.tcpBroken, error: x.r.tcpError }).toEqual({
        pair: x.pair,
        broken: false,
        error: undefined,
      });
      expect(x.r.tcpMessages).toBeGreaterThan(0);
      expect(x.r.udpSent).toBeGreaterThan(0);
    }
    const lost = reports.reduce((s, x) => s + Number(x.r.udpLost), 0);
    log(`UDP datagrams lost during the upgrade: ${lost} (target 0)`);
    // Target 0 is not met with wireguard-go (it restarts with the pod, see README): printed above
    // and tracked there. Asserted is liveness: each flow is flowing at the stop (a TCP echo and a
    // UDP echo in the last 5 s: a flow broken for good fails), TCP never broke (above), and no
    // flow lost more than 120 s of datagrams in a row.
    for (const x of reports)
      expect({
        pair: x.pair,
        tcpAlive: Number(x.r.tcpLastEchoAgoMs) < 5000,
        udpAlive: Number(x.r.udpUnechoedTail) * Number(x.r.udpIntervalMs) < 5000,
        maxGapBelow120s: Number(x.r.udpMaxGapCount) * Number(x.r.udpIntervalMs) < 120_000,
      }).toEqual({ pair: x.pair, tcpAlive: true, udpAlive: true, maxGapBelow120s: true });
  }, 600_000);

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

/** Every log file of the agents' containers, read from the nodes' /var/log/pods (every pod, every container). */
function* agentLogFiles(
  cluster: RealCluster,
): Generator<{ node: string; pod: string; container: string; file: string; path: string }> {
  for (const n of cluster.nodes) {
    const base = join(n.dir, 'log-up', 'pods');
    if (!existsSync(base)) continue;
    for (const pod of readdirSync(base).filter((d) => d.startsWith('sealnet_')))
      for (const container of readdirSync(join(base, pod)))
        for (const file of readdirSync(join(base, pod, container)))
          yield { node: n.name, pod, container, file, path: join(base, pod, container, file) };
  }
}

/** Lines of the agents' container logs (every pod, every container) that contain one of `needles`. */
function agentLogLines(cluster: RealCluster, needles: readonly string[]): string[] {
  const out: string[] = [];
  for (const f of agentLogFiles(cluster))
    for (const l of readFileSync(f.path, 'utf8').split('\n'))
      if (needles.some((x) => l.includes(x))) out.push(`${f.node} ${f.pod}: ${l.slice(0, 400)}`);
  return out;
}

/** The agents' container logs, read from the nodes' /var/log/pods (no kubelet:10250 path to the API server). */
function agentLogs(cluster: RealCluster): string {
  const out: string[] = [];
  for (const f of agentLogFiles(cluster)) {
    const lines = readFileSync(f.path, 'utf8').trim().split('\n').slice(-8);
    out.push(`== ${f.node} ${f.container}/${f.file}\n${lines.join('\n')}`);
  }
  return out.join('\n');
}
