/**
 * The simulated cluster of the scale benchmark: N Node objects whose agents do not exist, each
 * with the annotations its agent would have published (key, endpoint, rotation progress), and
 * the two stores they are written into (the `file` directory and a real API server).
 *
 * Address plan: node i (1-based) has InternalIP and endpoint 198.19.⌊i/250⌋.(i mod 250 + 1)
 * (inside 198.18.0.0/15) and pod CIDR 100.(65 + ⌊i/256⌋).(i mod 256).0/24 (inside
 * 100.64.0.0/10, clear of the harness's 100.64.0.0/16 pod network).
 */
import * as k8s from '@kubernetes/client-node';
import { generateKeyPairSync } from 'node:crypto';
import { encodeNode } from '../../tunnels/plan/annotations.js';
import { ANNOTATIONS } from '../../common/constants.js';
import { encodeRotationStatus, type RotationStatus } from '../../tunnels/plan/rotation-codec.js';
import { mapLimit } from '../harness/exec.js';
import { deleteNodeDoc, newNodeDoc, writeNodeDoc } from '../harness/nodestore.js';
import { nodeObject } from '../k8s/cluster.js';
import {
  KUBELET_MANAGER,
  kubeletHeartbeatPatch,
  kubeletObject,
  kubeletStatus,
  LegacyStatus,
  statusAnnotation,
  type NodeShape,
  type StatusShape,
} from './scale-kubelet.js';

/** Listen port of the simulated nodes; their next key's link listens one above. */
export const SIM_PORT = 51880;
/** Largest index the address plan allows (pod CIDRs end at 100.127.255.0/24). */
export const SIM_MAX_INDEX = 63 * 256 - 1;

/** A simulated node's rotation as it announces it. */
export type SimRotation =
  | { readonly phase: 'staging'; readonly id: string; readonly since: Date; readonly nextKey: string }
  | { readonly phase: 'grace'; readonly id: string; readonly since: Date }
  | { readonly phase: 'idle'; readonly id: string; readonly completedAt: Date };

/** One simulated node (mutable: the bench changes keys and rotation phases). */
export interface SimNode {
  readonly index: number;
  readonly name: string;
  readonly address: string;
  readonly podCIDR: string;
  key: string;
  epoch: number;
  rotation: SimRotation | undefined;
}

/** A fresh X25519 public key, base64 (as `wg pubkey` prints it). */
export function newPublicKey(): string {
  const jwk = generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' });
  return Buffer.from(jwk.x as string, 'base64url').toString('base64');
}

/** Simulated node `i` with a fresh key. `prefix` names it (`s00042`, `j00003`). */
export function simNode(i: number, prefix = 's'): SimNode {
  if (!Number.isInteger(i) || i < 1 || i > SIM_MAX_INDEX)
    throw new RangeError(`simulated node index ${i} is outside 1..${SIM_MAX_INDEX}`);
  return {
    index: i,
    name: `${prefix}${String(i).padStart(5, '0')}`,
    address: `198.19.${Math.floor(i / 250)}.${(i % 250) + 1}`,
    podCIDR: `100.${65 + Math.floor(i / 256)}.${i % 256}.0/24`,
    key: newPublicKey(),
    epoch: 1,
    rotation: undefined,
  };
}

/** Every annotation key this module may write (so a patch can clear the ones not set). */
const ROTATION_KEYS = [ANNOTATIONS.rotation, ANNOTATIONS.wireguardNextPublicKey, ANNOTATIONS.nextEndpoint] as const;

/**
 * The `sealnet.io/` annotations the node's agent would publish now (tunnels/rotation/wireguard.ts
 * `annotations()`): `staging` announces the next key and the endpoint of the link holding it;
 * `grace` publishes the next key as the key; `idle` records the last rotation.
 */
export function simAnnotations(n: SimNode): Record<string, string> {
  const base = encodeNode({
    mode: 'wireguard',
    wireguardPublicKey: n.key as never,
    endpointHost: n.address,
    endpointPort: SIM_PORT,
    keyEpoch: n.epoch,
    keyCreated: new Date(0),
  });
  const r = n.rotation;
  if (r === undefined) return base;
  let status: RotationStatus;
  const extra: Record<string, string> = {};
  if (r.phase === 'staging') {
    status = { phase: 'staging', id: r.id, since: r.since, epoch: n.epoch + 1 };
    extra[ANNOTATIONS.wireguardNextPublicKey] = r.nextKey;
    extra[ANNOTATIONS.nextEndpoint] = `${n.address}:${SIM_PORT + 1}`;
  } else if (r.phase === 'grace') {
    status = { phase: 'grace', id: r.id, since: r.since, epoch: n.epoch };
  } else {
    status = { phase: 'idle', last: { id: r.id, completedAt: r.completedAt, epoch: n.epoch, lagging: [] } };
  }
  return { ...base, [ANNOTATIONS.rotation]: encodeRotationStatus(status), ...extra };
}

/** Where the simulated nodes live. */
export interface SimStore {
  /** Creates or replaces nodes (all annotations as {@link simAnnotations} says). */
  write(nodes: readonly SimNode[]): Promise<void>;
  /** Updates existing nodes' annotations only (what an agent's patch does). */
  patch(nodes: readonly SimNode[]): Promise<void>;
  /** Deletes a node (as the control plane does when a machine goes). */
  remove(name: string): Promise<void>;
  /** One kubelet status update of each node (new condition heartbeats; nothing sealnet reads). */
  heartbeat(nodes: readonly SimNode[]): Promise<void>;
}

/** How the simulated Node objects look (see scale-kubelet.ts). */
export interface SimShape {
  readonly node: NodeShape;
  readonly status: StatusShape;
}

/** The bench's old Nodes: name, address, pod CIDR, sealnet annotations, no status annotation. */
export const TOY_SHAPE: SimShape = { node: 'toy', status: 'none' };

/**
 * Everything a simulated node's object carries besides its sealnet annotations, for the file
 * store (one JSON document; no managed fields: the file store has no API server).
 */
class Shaper {
  private readonly legacy = new LegacyStatus();
  /** The cluster size status annotations are generated for (the legacy report grows with it). */
  clusterSize = 1;

  constructor(readonly shape: SimShape) {}

  /** sealnet annotations plus the status annotation of the shape. */
  annotations(n: SimNode, now: Date): Record<string, string> {
    return { ...simAnnotations(n), ...statusAnnotation(this.shape.status, this.legacy, n.name, this.clusterSize, now) };
  }
}

/** The `file` store: one JSON document per node in the harness's store directory. */
export class FileSimStore implements SimStore {
  private readonly shaper: Shaper;

  constructor(
    private readonly dir: string,
    shape: SimShape = TOY_SHAPE,
  ) {
    this.shaper = new Shaper(shape);
  }

  /** Sets the cluster size the status annotations describe. */
  setClusterSize(n: number): void {
    this.shaper.clusterSize = n;
  }

  private doc(n: SimNode, now: Date): ReturnType<typeof newNodeDoc> {
    const doc = newNodeDoc(n.name, n.address, [n.podCIDR]);
    if (this.shaper.shape.node === 'kubelet') {
      const obj = kubeletObject(n);
      Object.assign(doc.metadata, { labels: obj.metadata.labels });
      Object.assign(doc.spec, obj.spec);
      doc.status = kubeletStatus(n, now) as typeof doc.status;
      doc.metadata.annotations = { ...obj.metadata.annotations, ...this.shaper.annotations(n, now) };
    } else {
      doc.metadata.annotations = this.shaper.annotations(n, now);
    }
    return doc;
  }

  async write(nodes: readonly SimNode[]): Promise<void> {
    const now = new Date();
    await mapLimit(nodes, async (n) => writeNodeDoc(this.dir, this.doc(n, now)), { limit: 8 });
  }

  patch(nodes: readonly SimNode[]): Promise<void> {
    return this.write(nodes);
  }

  remove(name: string): Promise<void> {
    return deleteNodeDoc(this.dir, name);
  }

  /** The file store has no subresources: a status update rewrites the whole document, as the harness's mirror does. */
  heartbeat(nodes: readonly SimNode[]): Promise<void> {
    return this.write(nodes);
  }
}

/** The `kubernetes` store: Node objects on a real API server, written as the admin. */
export class KubeSimStore implements SimStore {
  private readonly shaper: Shaper;

  constructor(
    private readonly core: k8s.CoreV1Api,
    shape: SimShape = TOY_SHAPE,
    private readonly limit = 32,
  ) {
    this.shaper = new Shaper(shape);
  }

  /** Sets the cluster size the status annotations describe. */
  setClusterSize(n: number): void {
    this.shaper.clusterSize = n;
  }

  /**
   * `toy`: one create with everything. `kubelet`: as a kubelet registers and reports, with
   * server-side apply (field manager `kubelet`): the object (labels, kubelet annotations,
   * spec), then the status subresource; then the agent's own merge patch of its `sealnet.io/`
   * annotations (field manager `sealnet`). The managed fields are the API server's.
   */
  async write(nodes: readonly SimNode[]): Promise<void> {
    const now = new Date();
    await mapLimit(
      nodes,
      async (n) => {
        if (this.shaper.shape.node === 'toy') {
          const obj = nodeObject({ name: n.name, address: n.address, podCIDR: n.podCIDR });
          await this.core.createNode({
            body: { ...obj, metadata: { ...obj.metadata, annotations: this.shaper.annotations(n, now) } },
          });
          return;
        }
        const apply = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.ServerSideApply);
        await this.core.patchNode(
          { name: n.name, body: kubeletObject(n), fieldManager: KUBELET_MANAGER, force: true },
          apply,
        );
        await this.core.patchNodeStatus(
          {
            name: n.name,
            body: { apiVersion: 'v1', kind: 'Node', metadata: { name: n.name }, status: kubeletStatus(n, now) },
            fieldManager: KUBELET_MANAGER,
            force: true,
          },
          apply,
        );
        await this.core.patchNode(
          {
            name: n.name,
            body: { metadata: { annotations: this.shaper.annotations(n, now) } },
            fieldManager: 'sealnet',
          },
          k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
        );
      },
      { limit: this.limit },
    );
  }

  /** A kubelet's status update: a strategic-merge patch of the conditions' heartbeats. */
  async heartbeat(nodes: readonly SimNode[]): Promise<void> {
    const body = kubeletHeartbeatPatch(new Date());
    await mapLimit(
      nodes,
      async (n) => {
        await this.core.patchNodeStatus(
          { name: n.name, body, fieldManager: KUBELET_MANAGER },
          k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch),
        );
      },
      { limit: this.limit },
    );
  }

  async patch(nodes: readonly SimNode[]): Promise<void> {
    await mapLimit(
      nodes,
      async (n) => {
        // JSON merge patch: null deletes the rotation keys this phase does not carry.
        const annotations: Record<string, string | null> = {
          ...Object.fromEntries(ROTATION_KEYS.map((k) => [k, null])),
          ...simAnnotations(n),
        };
        await this.core.patchNode(
          { name: n.name, body: { metadata: { annotations } }, fieldManager: 'sealnet' },
          k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
        );
      },
      { limit: this.limit },
    );
  }

  async remove(name: string): Promise<void> {
    await this.core.deleteNode({ name });
  }
}
