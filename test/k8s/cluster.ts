/**
 * A namespace cluster ({@link NsCluster}) whose agents use the `kubernetes` node store against a
 * real API server ({@link TestApiServer}). The harness keeps playing the CNI; this adapter plays
 * the rest of the control plane on the API server:
 *
 * - one Node object per namespace node, with `spec.podCIDRs` and an InternalIP address;
 * - per node a service-account token bound to that Node (TokenRequest, boundObjectRef), written
 *   into a kubeconfig the node's agent uses (through the {@link ApiRelay});
 * - node removal deletes the Node object as well as the namespaces.
 *
 * The harness's tunnel checks (`encryptionStatus`, `proveAllPairs`) read each node's public key
 * from the file store's Node documents. Agents here never touch those files, so a mirror copies
 * the API server's `sealnet.io/` annotations into them (a read-only view for the checks; the
 * agents never read it). A hook in the harness (a `controlPlane` option that supplies Node
 * annotations) would make the mirror unnecessary.
 */
import * as k8s from '@kubernetes/client-node';
import { join } from 'node:path';
import { ANNOTATION_PREFIX } from '../../common/constants.js';
import { NsCluster } from '../harness/cluster.js';
import { sleep } from '../harness/exec.js';
import { readNodeDoc, writeNodeDoc } from '../harness/nodestore.js';
import type { NodeInfo, NsClusterOptions } from '../harness/types.js';
import type { TestApiServer } from './apiserver.js';
import { writeKubeconfig } from './pki.js';
import { ApiRelay, NODE_API_PORT } from './relay.js';

/** Options of {@link K8sCluster.create}. */
export interface K8sClusterOptions extends Omit<NsClusterOptions, 'startAgents'> {
  readonly api: TestApiServer;
  /** Namespace and name of the agents' ServiceAccount (the chart's; default sealnet/sealnet). */
  readonly namespace?: string;
  readonly serviceAccount?: string;
  /** Start the agents in create() (default true). */
  readonly startAgents?: boolean;
  /** Taints every Node object is created with (a kubelet's --register-with-taints). */
  readonly registerTaints?: readonly k8s.V1Taint[];
}

/** The Node object the control plane creates for a namespace node. */
export function nodeObject(
  info: Pick<NodeInfo, 'name' | 'address' | 'podCIDR'>,
  taints: readonly k8s.V1Taint[] = [],
): k8s.V1Node {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: info.name, labels: { 'kubernetes.io/hostname': info.name, 'kubernetes.io/os': 'linux' } },
    spec: { podCIDR: info.podCIDR, podCIDRs: [info.podCIDR], ...(taints.length > 0 ? { taints: [...taints] } : {}) },
    status: {
      addresses: [
        { type: 'InternalIP', address: info.address },
        { type: 'Hostname', address: info.name },
      ],
    },
  };
}

/** Namespace cluster + API server Nodes + node-bound agent credentials. */
export class K8sCluster {
  readonly ns: NsCluster;
  readonly api: TestApiServer;
  readonly relay: ApiRelay;
  readonly namespace: string;
  readonly serviceAccount: string;
  private readonly registerTaints: readonly k8s.V1Taint[];

  private readonly core: k8s.CoreV1Api;
  private mirrorTimer: NodeJS.Timeout | undefined;
  private mirrorRun: Promise<void> = Promise.resolve();
  private mirrorPaused = false;

  private constructor(ns: NsCluster, o: K8sClusterOptions) {
    this.ns = ns;
    this.api = o.api;
    this.namespace = o.namespace ?? 'sealnet';
    this.serviceAccount = o.serviceAccount ?? 'sealnet';
    this.registerTaints = o.registerTaints ?? [];
    this.relay = new ApiRelay({ dir: join(ns.runDir, 'relay'), port: o.api.port });
    this.core = o.api.adminConfig().makeApiClient(k8s.CoreV1Api);
  }

  /** Builds the namespace cluster, its Node objects, relays and credentials, and starts the agents. */
  static async create(o: K8sClusterOptions): Promise<K8sCluster> {
    const { api: _api, namespace: _n, serviceAccount: _s, startAgents, registerTaints: _t, ...nsOpts } = o;
    const ns = await NsCluster.create({ ...nsOpts, startAgents: false });
    const c = new K8sCluster(ns, o);
    try {
      await Promise.all(ns.nodes.map((n) => c.prepareNode(n)));
      c.startMirror();
      if (startAgents ?? true) await Promise.all(ns.nodeNames().map((n) => c.startAgent(n)));
      return c;
    } catch (err) {
      await c.destroy();
      throw err;
    }
  }

  /** Node object, relay, node-bound token and kubeconfig for one namespace node. */
  private async prepareNode(info: NodeInfo): Promise<void> {
    await this.createNodeObject(info);
    await this.relay.addNode(this.ns, info.name);
    await this.writeAgentKubeconfig(info.name);
  }

  /** Creates the Node object, status (addresses) included: the test is the kubelet too. */
  async createNodeObject(info: Pick<NodeInfo, 'name' | 'address' | 'podCIDR'>): Promise<void> {
    await this.core.createNode({ body: nodeObject(info, this.registerTaints) });
  }

  /** Path of a node's agent kubeconfig. */
  kubeconfigPath(node: string): string {
    return join(this.ns.runDir, node, 'kubeconfig');
  }

  /** Issues a fresh token bound to the node's Node object and writes the agent's kubeconfig. */
  async writeAgentKubeconfig(node: string): Promise<string> {
    const token = await this.api.nodeBoundToken({
      namespace: this.namespace,
      serviceAccount: this.serviceAccount,
      nodeName: node,
    });
    const path = this.kubeconfigPath(node);
    await writeKubeconfig(path, {
      server: `https://127.0.0.1:${NODE_API_PORT}`,
      caCert: this.api.pki.caCert,
      user: `sealnet-agent-${node}`,
      auth: { token },
    });
    return token;
  }

  /** Starts a node's agent with the kubernetes store (the harness remembers it for restarts). */
  startAgent(node: string): Promise<number> {
    // `dir: undefined` drops the harness's file-store directory from the merged config (JSON omits it).
    return this.ns.startAgent(node, {
      store: { type: 'kubernetes', dir: undefined, kubeconfig: this.kubeconfigPath(node) },
    });
  }

  /** Adds a node: namespaces, Node object, relay, credentials, agent. */
  async addNode(opts: { pods?: number } = {}): Promise<NodeInfo> {
    const info = await this.ns.addNode({ ...opts, startAgent: false });
    await this.prepareNode(info);
    await this.startAgent(info.name);
    return info;
  }

  /** Removes a node as a cloud would: the machine goes (namespaces), then its Node object. */
  async removeNode(name: string): Promise<void> {
    await this.pauseMirror(async () => {
      await this.relay.removeNode(name);
      await this.ns.removeNode(name);
      await this.core.deleteNode({ name });
    });
  }

  /** Reads a Node object. */
  readNode(name: string): Promise<k8s.V1Node> {
    return this.core.readNode({ name });
  }

  /** The `sealnet.io/` annotations of every Node object, by node name. */
  async sealnetAnnotations(): Promise<Map<string, Record<string, string>>> {
    const list = await this.core.listNode();
    const out = new Map<string, Record<string, string>>();
    for (const n of list.items) {
      const ann = Object.fromEntries(
        Object.entries(n.metadata?.annotations ?? {}).filter(([k]) => k.startsWith(ANNOTATION_PREFIX)),
      );
      out.set(n.metadata?.name ?? '', ann);
    }
    return out;
  }

  /** Copies the API server's sealnet annotations into the harness's Node documents once (serialized). */
  mirrorOnce(): Promise<void> {
    const next = this.mirrorRun.catch(() => undefined).then(() => this.mirrorStep());
    this.mirrorRun = next;
    return next;
  }

  private async mirrorStep(): Promise<void> {
    let ann: Map<string, Record<string, string>>;
    try {
      ann = await this.sealnetAnnotations();
    } catch {
      return; // API server down (outage test): keep the last view
    }
    for (const node of this.ns.nodes) {
      const want = ann.get(node.name);
      if (want === undefined) continue;
      const doc = await readNodeDoc(this.ns.storeDir, node.name);
      if (doc === undefined || JSON.stringify(doc.metadata.annotations) === JSON.stringify(want)) continue;
      await writeNodeDoc(this.ns.storeDir, { ...doc, metadata: { ...doc.metadata, annotations: want } });
    }
  }

  private startMirror(): void {
    const tick = (): void => {
      this.mirrorTimer = setTimeout(() => {
        if (this.mirrorPaused) return tick();
        void this.mirrorOnce()
          .catch(() => undefined)
          .finally(() => {
            if (this.mirrorTimer !== undefined) tick();
          });
      }, 200);
    };
    tick();
  }

  private async pauseMirror(fn: () => Promise<void>): Promise<void> {
    this.mirrorPaused = true;
    await this.mirrorRun.catch(() => undefined);
    try {
      await fn();
    } finally {
      this.mirrorPaused = false;
    }
  }

  /** Waits until every node's document carries its key (mirrored), then until all pairs are encrypted. */
  async waitEncrypted(opts: { timeoutMs?: number } = {}): Promise<void> {
    const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
    for (;;) {
      await this.mirrorOnce();
      const docs = await Promise.all(this.ns.nodeNames().map((n) => readNodeDoc(this.ns.storeDir, n)));
      if (docs.every((d) => d?.metadata.annotations['sealnet.io/wireguard-public-key'] !== undefined)) break;
      if (Date.now() > deadline) throw new Error('not every node published its key on the API server in time');
      await sleep(200);
    }
    await this.ns.waitEncrypted({ timeoutMs: Math.max(5000, deadline - Date.now()) });
  }

  /** Stops the mirror and relays, tears the namespace cluster down, deletes the Node objects. */
  async destroy(): Promise<void> {
    if (this.mirrorTimer !== undefined) clearTimeout(this.mirrorTimer);
    this.mirrorTimer = undefined;
    await this.mirrorRun.catch(() => undefined);
    await this.relay.close();
    const names = this.ns.nodeNames();
    await this.ns.destroy();
    await Promise.all(names.map((name) => this.core.deleteNode({ name }).catch(() => undefined)));
  }
}
