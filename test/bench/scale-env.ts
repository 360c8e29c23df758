/**
 * The scale benchmark's two stores, each able to build a fresh one-node namespace cluster
 * (`n1`, no pods, agent not started) whose agent uses that store:
 *
 * - `file`: the harness's own store directory; each cluster has a new, empty one, so the
 *   simulated nodes are written again for every N.
 * - `kubernetes`: one real kube-apiserver + etcd ({@link TestApiServer}) for every N, with the
 *   chart's RBAC and admission policy applied; the simulated Node objects stay and only the new
 *   ones are created as N grows. The agent gets a token bound to its own Node and reaches the
 *   API server through the harness's relay, exactly as in the Kubernetes test tier (no
 *   annotation mirror: the bench reads the kernel, not the harness's file store).
 */
import * as k8s from '@kubernetes/client-node';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { NsCluster } from '../harness/cluster.js';
import { TestApiServer } from '../k8s/apiserver.js';
import { applyChart } from '../k8s/chart.js';
import { nodeObject } from '../k8s/cluster.js';
import { writeKubeconfig } from '../k8s/pki.js';
import { ApiRelay, NODE_API_PORT } from '../k8s/relay.js';
import { FileSimStore, KubeSimStore, TOY_SHAPE, type SimNode, type SimShape, type SimStore } from './scale-sim.js';
import { bounded } from './scale-wait.js';
import { readNodeDoc } from '../harness/nodestore.js';
import { ANNOTATIONS } from '../../common/constants.js';
import type { ScaleStore } from './types.js';

/** The node running the real agent. */
export const AGENT_NODE = 'n1';

/** One cluster of the benchmark: the real agent's node and the store holding the simulated ones. */
export interface ScaleBench {
  readonly c: NsCluster;
  readonly sim: SimStore;
  /** Makes the store hold exactly `nodes` that were never written before (others are kept). */
  populate(nodes: readonly SimNode[]): Promise<void>;
  /** Starts the agent on {@link AGENT_NODE} with the store's config plus `extra`. */
  startAgent(extra?: Readonly<Record<string, unknown>>): Promise<number>;
  /** Bytes the API server sent to the agent so far, counted at the relay's socket (undefined: file store). */
  apiBytesToAgent(): number | undefined;
  /** Sets the cluster size the simulated status annotations describe. */
  setClusterSize(n: number): void;
  /** Bytes of one simulated node's object as the store holds it (the API server's JSON; the file). */
  objectBytes(name: string): Promise<number | undefined>;
  /** The `sealnet.io/status` annotation of one simulated node as stored (undefined: none). */
  statusAnnotation(name: string): Promise<string | undefined>;
  destroy(): Promise<void>;
}

/** A store the benchmark runs against. */
export interface ScaleEnv {
  readonly kind: ScaleStore;
  cluster(prefix: string, log: (l: string) => void, shape?: SimShape): Promise<ScaleBench>;
  close(): Promise<void>;
}

/** The `file` store. */
export function fileEnv(): ScaleEnv {
  return {
    kind: 'file',
    async cluster(prefix, log, shape = TOY_SHAPE) {
      const c = await bounded(
        'the namespace cluster to build',
        300_000,
        NsCluster.create({ nodes: 1, podsPerNode: 0, startAgents: false, prefix, log }),
      );
      const sim = new FileSimStore(c.storeDir, shape);
      return {
        c,
        sim,
        populate: (nodes) => sim.write(nodes),
        startAgent: (extra) => c.startAgent(AGENT_NODE, extra ?? {}),
        apiBytesToAgent: () => undefined,
        setClusterSize: (n) => sim.setClusterSize(n),
        objectBytes: async (name) => (await stat(join(c.storeDir, `${name}.json`)).catch(() => undefined))?.size,
        statusAnnotation: async (name) =>
          (await readNodeDoc(c.storeDir, name))?.metadata.annotations[ANNOTATIONS.status],
        destroy: () => bounded('the namespace cluster to be destroyed', 300_000, c.destroy()),
      };
    },
    async close() {},
  };
}

/** The `kubernetes` store: starts the API server (and applies the chart) now. */
export async function kubeEnv(log: (l: string) => void, shape: SimShape = TOY_SHAPE): Promise<ScaleEnv> {
  const api = await bounded('the test API server to start', 10 * 60_000, TestApiServer.start({ log }));
  try {
    log('applying the chart (helm template | kubectl apply)');
    await bounded('the chart to be applied', 180_000, applyChart(api));
  } catch (err) {
    await bounded('the test API server to stop', 30_000, api.destroy());
    throw err;
  }
  const core = api.adminConfig().makeApiClient(k8s.CoreV1Api);
  const sim = new KubeSimStore(core, shape);
  const created = new Set<string>();
  return {
    kind: 'kubernetes',
    async cluster(prefix, clog) {
      const c = await bounded(
        'the namespace cluster to build',
        300_000,
        NsCluster.create({ nodes: 1, podsPerNode: 0, startAgents: false, prefix, log: clog }),
      );
      const relay = new ApiRelay({ dir: join(c.runDir, 'relay'), port: api.port });
      try {
        // The previous cluster's n1 (and the tokens bound to it) go; this n1 starts clean.
        await bounded(`Node ${AGENT_NODE} to be deleted`, 30_000, core.deleteNode({ name: AGENT_NODE })).catch(
          () => undefined,
        );
        await bounded(
          `Node ${AGENT_NODE} to be created`,
          30_000,
          core.createNode({ body: nodeObject(c.node(AGENT_NODE)) }),
        );
        await bounded('the API relay to listen', 30_000, relay.addNode(c, AGENT_NODE));
        const token = await bounded(
          'a node-bound token',
          30_000,
          api.nodeBoundToken({ namespace: 'sealnet', serviceAccount: 'sealnet', nodeName: AGENT_NODE }),
        );
        const kubeconfig = join(c.runDir, AGENT_NODE, 'kubeconfig');
        await writeKubeconfig(kubeconfig, {
          server: `https://127.0.0.1:${NODE_API_PORT}`,
          caCert: api.pki.caCert,
          user: `sealnet-agent-${AGENT_NODE}`,
          auth: { token },
        });
        // `dir: undefined` drops the harness's file-store directory from the merged config.
        const store = { type: 'kubernetes', dir: undefined, kubeconfig };
        const trackedSim = {
          write: async (nodes: readonly SimNode[]) => {
            await sim.write(nodes);
            for (const n of nodes) created.add(n.name);
          },
          patch: (nodes: readonly SimNode[]) => sim.patch(nodes),
          heartbeat: (nodes: readonly SimNode[]) => sim.heartbeat(nodes),
          remove: async (name: string) => {
            await sim.remove(name);
            created.delete(name);
          },
        };
        return {
          c,
          sim: trackedSim,
          populate: (nodes) => trackedSim.write(nodes.filter((n) => !created.has(n.name))),
          startAgent: (extra) => c.startAgent(AGENT_NODE, { store, ...(extra ?? {}) }),
          apiBytesToAgent: () => relay.bytes(AGENT_NODE).toNode,
          setClusterSize: (n) => sim.setClusterSize(n),
          objectBytes: async (name) => {
            const r = await bounded(`GET Node ${name}`, 30_000, fetchRaw(api, `/api/v1/nodes/${name}`));
            return Buffer.byteLength(r);
          },
          statusAnnotation: async (name) => {
            const o = JSON.parse(
              await bounded(`GET Node ${name}`, 30_000, fetchRaw(api, `/api/v1/nodes/${name}`)),
            ) as k8s.V1Node;
            return o.metadata?.annotations?.[ANNOTATIONS.status];
          },
          async destroy() {
            await bounded('the API relay to close', 30_000, relay.close()).catch(() => undefined);
            await bounded('the namespace cluster to be destroyed', 300_000, c.destroy());
            // Bounded: one run hung here forever on a request that never settled.
            await Promise.race([
              core.deleteNode({ name: AGENT_NODE }).catch(() => undefined),
              new Promise((r) => setTimeout(r, 10_000).unref()),
            ]);
          },
        };
      } catch (err) {
        await bounded('the API relay to close', 30_000, relay.close()).catch(() => undefined);
        await bounded('the namespace cluster to be destroyed', 300_000, c.destroy());
        throw err;
      }
    },
    close: () => bounded('the test API server to stop', 60_000, api.destroy()),
  };
}

/** GET `path` as the admin, raw JSON body (what a watcher receives for the object, without the watch envelope). */
async function fetchRaw(api: TestApiServer, path: string): Promise<string> {
  const r = await api.kubectl(['get', '--raw', path], { timeoutMs: 30_000 });
  return r.stdout.trim();
}
