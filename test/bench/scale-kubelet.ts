/**
 * Kubelet-sized Node objects for the scale benchmark, and the `sealnet.io/status` annotation in
 * the two shapes the bench compares. Pure: no I/O (the clock is an input).
 *
 * A real Node is mostly what its kubelet writes: ~50 container images (each with a digest name,
 * a tag name and a size), 5 conditions, node info, capacity and allocatable, cloud labels, a few
 * kubelet annotations, and the managed fields the API server adds for every field manager. The
 * bench writes these parts the way a kubelet does (server-side apply, field manager `kubelet`,
 * object and status subresource separately; see scale-sim.ts) so the managed fields are the
 * API server's own, not a guess. Image names and digests are derived from the image index, so
 * every node lists the same images (as nodes of one pool do).
 *
 * Status annotation shapes:
 * - `legacy`: what agents publish today (tunnels/status/report.ts `encodeStatus`: every peer, cut to
 *   the 64 KiB bound; at N ≳ 800 the bound is hit and peers are `omitted`);
 * - `summary`: a stand-in for the issue-14 design (counts per state, worst peers, key
 *   fingerprint, digest of the full report), ≤ 1 KiB whatever N is. It is the bench's own
 *   encoding with the same size as that design, not the agents' future codec;
 * - `none`: no status annotation.
 */
import { createHash } from 'node:crypto';
import { ANNOTATIONS, STATUS_VERSION } from '../../common/constants.js';
import { ALGORITHMS, encodeStatus, type NodeStatusReport, type PeerStatus } from '../../tunnels/status/report.js';

/** Shapes of the simulated Node objects. */
export const NODE_SHAPES = ['kubelet', 'toy'] as const;
/** One of {@link NODE_SHAPES}: `toy` is name, one address, pod CIDR (the bench's old Nodes). */
export type NodeShape = (typeof NODE_SHAPES)[number];

/** Shapes of the status annotation every simulated node carries. */
export const STATUS_SHAPES = ['legacy', 'summary', 'none'] as const;
/** One of {@link STATUS_SHAPES}. */
export type StatusShape = (typeof STATUS_SHAPES)[number];

/** Bound the `summary` shape must keep, bytes. */
export const SUMMARY_MAX_BYTES = 1024;

/** Images a kubelet reports (its default `nodeStatusMaxImages` is 50). */
export const KUBELET_IMAGES = 50;

/** The kubelet's field manager name. */
export const KUBELET_MANAGER = 'kubelet';

/** What the generator needs to know about a node. */
export interface KubeletNodeInfo {
  readonly index: number;
  readonly name: string;
  readonly address: string;
  readonly podCIDR: string;
}

function hex(seed: string, len = 64): string {
  let out = '';
  for (let i = 0; out.length < len; i++) out += createHash('sha256').update(`${seed}/${i}`).digest('hex');
  return out.slice(0, len);
}

const REPOS = [
  'registry.k8s.io',
  'docker.io/library',
  'quay.io/prometheus',
  'gcr.io/google-containers',
  'ghcr.io/example-org',
  'us-docker.pkg.dev/example-project/apps',
];
const WORDS = [
  'api',
  'worker',
  'gateway',
  'ingest',
  'billing',
  'search',
  'frontend',
  'cache',
  'scheduler',
  'exporter',
  'sidecar',
  'agent',
  'proxy',
  'batch',
  'stream',
];

/** Image `k` (0-based) as a kubelet lists it: digest name, tag name, size. */
export function kubeletImage(k: number): { names: string[]; sizeBytes: number } {
  const repo = `${REPOS[k % REPOS.length] as string}/${WORDS[k % WORDS.length] as string}-${WORDS[(k * 7 + 3) % WORDS.length] as string}-${k}`;
  return {
    names: [`${repo}@sha256:${hex(`image-${k}`)}`, `${repo}:v1.${k % 40}.${(k * 13) % 17}`],
    sizeBytes: 5_000_000 + ((k * 2_654_435_761) % 900_000_000),
  };
}

const IMAGES = Array.from({ length: KUBELET_IMAGES }, (_, k) => kubeletImage(k));

/** The five conditions of a healthy node, with heartbeat `now`. */
export function kubeletConditions(now: Date, since: Date): Record<string, string>[] {
  const hb = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  const tr = since.toISOString().replace(/\.\d{3}Z$/, 'Z');
  const c = (type: string, status: string, reason: string, message: string): Record<string, string> => ({
    type,
    status,
    lastHeartbeatTime: hb,
    lastTransitionTime: tr,
    reason,
    message,
  });
  return [
    c('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
    c('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
    c('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
    c('Ready', 'True', 'KubeletReady', 'kubelet is posting ready status'),
    c('NetworkUnavailable', 'False', 'RouteCreated', 'RouteController created a route'),
  ];
}

/** Labels, kubelet annotations and spec a kubelet (and the cloud's node controller) set. */
export function kubeletObject(n: KubeletNodeInfo): {
  apiVersion: 'v1';
  kind: 'Node';
  metadata: { name: string; labels: Record<string, string>; annotations: Record<string, string> };
  spec: Record<string, unknown>;
} {
  const zone = `europe-west4-${'abc'[n.index % 3] as string}`;
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: n.name,
      labels: {
        'beta.kubernetes.io/arch': 'amd64',
        'beta.kubernetes.io/instance-type': 'n2-standard-8',
        'beta.kubernetes.io/os': 'linux',
        'cloud.google.com/gke-boot-disk': 'pd-balanced',
        'cloud.google.com/gke-container-runtime': 'containerd',
        'cloud.google.com/gke-nodepool': `pool-${n.index % 4}`,
        'cloud.google.com/gke-os-distribution': 'cos',
        'cloud.google.com/machine-family': 'n2',
        'failure-domain.beta.kubernetes.io/region': 'europe-west4',
        'failure-domain.beta.kubernetes.io/zone': zone,
        'kubernetes.io/arch': 'amd64',
        'kubernetes.io/hostname': n.name,
        'kubernetes.io/os': 'linux',
        'node.kubernetes.io/instance-type': 'n2-standard-8',
        'topology.gke.io/zone': zone,
        'topology.kubernetes.io/region': 'europe-west4',
        'topology.kubernetes.io/zone': zone,
      },
      annotations: {
        'container.googleapis.com/instance_id': String(4_000_000_000_000_000 + n.index * 7919),
        'csi.volume.kubernetes.io/nodeid': JSON.stringify({
          'pd.csi.storage.gke.io': `projects/example-project/zones/${zone}/instances/${n.name}`,
        }),
        'node.alpha.kubernetes.io/ttl': '0',
        'node.gke.io/last-applied-node-labels':
          'cloud.google.com/gke-boot-disk=pd-balanced,cloud.google.com/gke-container-runtime=containerd,cloud.google.com/gke-nodepool=pool,cloud.google.com/gke-os-distribution=cos,cloud.google.com/machine-family=n2',
        'volumes.kubernetes.io/controller-managed-attach-detach': 'true',
      },
    },
    spec: { podCIDR: n.podCIDR, podCIDRs: [n.podCIDR], providerID: `gce://example-project/${zone}/${n.name}` },
  };
}

/** The status a kubelet reports (conditions with heartbeat `now`). */
export function kubeletStatus(n: KubeletNodeInfo, now: Date): Record<string, unknown> {
  const boot = hex(`boot-${n.index}`, 32);
  return {
    addresses: [
      { type: 'InternalIP', address: n.address },
      { type: 'Hostname', address: n.name },
    ],
    capacity: {
      cpu: '8',
      'ephemeral-storage': '98831908Ki',
      'hugepages-1Gi': '0',
      'hugepages-2Mi': '0',
      memory: '32880420Ki',
      pods: '110',
    },
    allocatable: {
      cpu: '7910m',
      'ephemeral-storage': '47060071478',
      'hugepages-1Gi': '0',
      'hugepages-2Mi': '0',
      memory: '29437220Ki',
      pods: '110',
    },
    conditions: kubeletConditions(now, new Date(Date.UTC(2026, 10, 1))),
    daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
    images: IMAGES,
    nodeInfo: {
      architecture: 'amd64',
      bootID: `${boot.slice(0, 8)}-${boot.slice(8, 12)}-${boot.slice(12, 16)}-${boot.slice(16, 20)}-${boot.slice(20, 32)}`,
      containerRuntimeVersion: 'containerd://1.7.24',
      kernelVersion: '6.6.56+',
      kubeProxyVersion: 'v1.36.4',
      kubeletVersion: 'v1.36.4',
      machineID: hex(`machine-${n.index}`, 32),
      operatingSystem: 'linux',
      osImage: 'Container-Optimized OS from Google',
      systemUUID: hex(`uuid-${n.index}`, 32),
    },
  };
}

/** The strategic-merge patch a kubelet sends on a status update: the conditions' heartbeats. */
export function kubeletHeartbeatPatch(now: Date): { status: { conditions: Record<string, string>[] } } {
  return {
    status: {
      conditions: kubeletConditions(now, new Date(Date.UTC(2026, 10, 1))).map((c) => ({
        type: c.type as string,
        lastHeartbeatTime: c.lastHeartbeatTime as string,
      })),
    },
  };
}

function fp(seed: string): string {
  return hex(seed, 16);
}

/**
 * The legacy status annotation of a node in a cluster of `clusterSize` nodes, every peer
 * encrypted, encoded by the agents' own `encodeStatus`. One report per cluster size is encoded
 * (its peers are the other simulated nodes of a template node) and each node's name is put in
 * its header: the size and shape are what the agents publish, the peer list is the template's.
 */
export class LegacyStatus {
  private readonly cache = new Map<number, string>();

  /** The annotation value for `node` when the cluster has `clusterSize` nodes. */
  valueFor(node: string, clusterSize: number, now: Date): string {
    let t = this.cache.get(clusterSize);
    if (t === undefined) {
      t = LegacyStatus.template(clusterSize, now);
      this.cache.set(clusterSize, t);
    }
    return t.replace('"node":"@TEMPLATE@"', `"node":${JSON.stringify(node)}`);
  }

  private static template(clusterSize: number, now: Date): string {
    const hs = Math.floor(now.getTime() / 1000) - 30;
    const peers: PeerStatus[] = [];
    for (let i = 1; i < clusterSize; i++)
      peers.push({
        node: `s${String(i).padStart(5, '0')}`,
        state: 'encrypted',
        key: fp(`key-${i}`),
        handshake: hs - (i % 100),
        rx: 1_000_000 + i * 37,
        tx: 2_000_000 + i * 53,
      });
    const report: NodeStatusReport = {
      v: STATUS_VERSION,
      node: '@TEMPLATE@',
      at: now.toISOString(),
      agent: 'running',
      heartbeatSeconds: 300,
      mode: 'wireguard',
      algorithm: ALGORITHMS.wireguard,
      key: { fingerprint: fp('self'), epoch: 1, createdAt: new Date(0).toISOString() },
      steering: { enabled: true, failClosed: true, nodeToNode: false },
      ready: true,
      errors: [],
      drops: {},
      failOpenPackets: 0,
      detail: 'full',
      peers,
      omitted: 0,
    };
    return encodeStatus(report);
  }
}

/** The `summary` stand-in for `node` in a cluster of `clusterSize` nodes, every peer encrypted. */
export function summaryStatus(node: string, clusterSize: number, now: Date): string {
  const peers = clusterSize - 1;
  const body = {
    v: 2,
    node,
    at: now.toISOString(),
    agent: 'running',
    mode: 'wireguard',
    algorithm: ALGORITHMS.wireguard,
    key: { fingerprint: fp(`key-${node}`), epoch: 1 },
    ready: true,
    peers: { total: peers, encrypted: peers, pending: 0, dropping: 0, misconfigured: 0 },
    worst: [] as string[],
    handshakeAgeMaxSeconds: 130,
    errors: 0,
    report: { digest: `sha256:${hex(`report-${node}-${clusterSize}`)}`, path: '/status' },
  };
  const text = JSON.stringify(body);
  if (Buffer.byteLength(text) > SUMMARY_MAX_BYTES)
    throw new Error(`summary status of ${node} is ${Buffer.byteLength(text)} bytes, over ${SUMMARY_MAX_BYTES}`);
  return text;
}

/** The status annotation (or none) of `shape`. */
export function statusAnnotation(
  shape: StatusShape,
  legacy: LegacyStatus,
  node: string,
  clusterSize: number,
  now: Date,
): Record<string, string> {
  if (shape === 'none') return {};
  return {
    [ANNOTATIONS.status]:
      shape === 'legacy' ? legacy.valueFor(node, clusterSize, now) : summaryStatus(node, clusterSize, now),
  };
}
