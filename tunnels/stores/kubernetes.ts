/**
 * The `kubernetes` node store: a Node list+watch from @kubernetes/client-node, wrapped so that it
 * restarts with backoff and jitter after errors (the client-node informer stops for good after
 * most errors), honours 429 Retry-After, and merge-patches only `sealnet.io/` annotations on
 * the agent's own Node.
 *
 * A lean watch: real Nodes are 10-20 KiB (images, conditions, node info, managed fields) and the
 * kubelet updates each every few minutes. Every object is cut on arrival, before the cache holds
 * it, to name, resourceVersion, InternalIP addresses, pod CIDRs and the known `sealnet.io/`
 * annotations within their bounds (tunnels/stores/nodedoc.ts `leanAnnotations`; unknown or
 * oversized ones are dropped and counted). An update that changes none of those (a kubelet
 * heartbeat, a label, another annotation) is counted and dropped: no list rebuild, no event.
 * A relevant update replaces one entry of the sorted list (binary search, one array copy).
 */
import * as k8s from '@kubernetes/client-node';
import { ANNOTATION_PREFIX } from '../../common/constants.js';
import { SealnetError } from '../../common/errors.js';
import type { RawNode } from '../ports/model.js';
import type { NodeStore, NodeStoreEvents, NodeTaint, NodeTaintPort } from '../ports/index.js';
import { backoffDelay } from '../../common/backoff.js';
import { leanAnnotations, rawNodeFromDoc, type DroppedReason } from './nodedoc.js';

/** Options for {@link KubernetesNodeStore}. */
export interface KubernetesNodeStoreOptions {
  /** Path to a kubeconfig; default: in-cluster service account, else $KUBECONFIG / ~/.kube/config. */
  readonly kubeconfig?: string | undefined;
  readonly random?: () => number;
  /** Keep other nodes' `sealnet.io/status` summaries (sealctl: yes; agents: no, default). */
  readonly keepStatus?: boolean;
  /** Called for every Node update that changed nothing this store keeps. */
  readonly onIrrelevantUpdate?: () => void;
  /** Called for every `sealnet.io/` annotation dropped on arrival (unknown key, oversized or not a string). */
  readonly onDroppedAnnotation?: (reason: DroppedReason, node: string, key: string) => void;
}

/** The part of a Node this store keeps. */
interface LeanNode {
  readonly metadata: {
    readonly name: string;
    readonly namespace?: undefined;
    readonly resourceVersion?: string | undefined;
    readonly annotations: Record<string, string>;
  };
  readonly spec: { readonly podCIDRs?: readonly string[] | undefined; readonly podCIDR?: string | undefined };
  readonly status: { readonly addresses: readonly { readonly type: string; readonly address: string }[] };
}

/** First index in `list` (sorted by name) whose name is not below `name`. */
function lowerBound(list: readonly RawNode[], name: string): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((list[mid] as RawNode).name < name) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function retryAfterMs(err: unknown): number | undefined {
  const e = err as { code?: number; headers?: Record<string, string> } | undefined;
  if (e?.code !== 429) return undefined;
  const h = e.headers?.['retry-after'];
  const s = h === undefined ? NaN : Number(h);
  return Number.isFinite(s) ? s * 1000 : 5000;
}

/** Nodes per page of the initial list and of every relist (see `listLean`). */
export const LIST_PAGE_SIZE = 250;
/** Pages before a list is given up as runaway: 250 × 2,000 = 500,000 Nodes, 100 × Kubernetes' limit. */
const MAX_LIST_PAGES = 2000;

/** Reads and test-and-remove patches tried before {@link KubernetesNodeStore.removeTaint} gives up. */
const TAINT_ATTEMPTS = 3;

/** Kubernetes API node store. */
export class KubernetesNodeStore implements NodeStore, NodeTaintPort {
  private readonly kc: k8s.KubeConfig;
  private readonly api: k8s.CoreV1Api;
  private readonly random: () => number;
  private readonly opts: KubernetesNodeStoreOptions;
  private informer: k8s.ListWatch<k8s.V1Node> | undefined;
  private events: NodeStoreEvents | undefined;
  private isSynced = false;
  private attempt = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Every decodable node by name, with the key of what this store keeps of it. */
  private readonly nodes = new Map<string, { key: string; node: RawNode }>();
  /** The sorted node list handed out; replaced (never mutated) on a relevant change. */
  private sorted: RawNode[] = [];
  /** Nodes changed since {@link sorted} was built; undefined: rebuild from {@link nodes}. */
  private dirty: Set<string> | undefined = new Set();

  constructor(opts: KubernetesNodeStoreOptions = {}) {
    this.kc = new k8s.KubeConfig();
    if (opts.kubeconfig !== undefined) this.kc.loadFromFile(opts.kubeconfig);
    else this.kc.loadFromDefault();
    this.api = this.kc.makeApiClient(k8s.CoreV1Api);
    this.random = opts.random ?? Math.random;
    this.opts = opts;
  }

  /** The client configuration (sealctl reaches agents through the same API server). */
  get kubeConfig(): k8s.KubeConfig {
    return this.kc;
  }

  /** Cuts a Node to what this store keeps (before the watch cache holds it). */
  private lean(n: k8s.V1Node): LeanNode {
    const name = n.metadata?.name ?? '';
    const { kept, dropped } = leanAnnotations(n.metadata?.annotations, { keepStatus: this.opts.keepStatus === true });
    for (const d of dropped) this.opts.onDroppedAnnotation?.(d.reason, name, d.key);
    const addresses = (n.status?.addresses ?? [])
      .filter((x) => x.type === 'InternalIP')
      .map((x) => ({ type: x.type, address: x.address }));
    const spec = n.spec ?? {};
    return {
      metadata: { name, resourceVersion: n.metadata?.resourceVersion, annotations: kept },
      spec: {
        ...(spec.podCIDRs === undefined ? {} : { podCIDRs: [...spec.podCIDRs] }),
        ...(spec.podCIDR === undefined ? {} : { podCIDR: spec.podCIDR }),
      },
      status: { addresses },
    };
  }

  async start(events: NodeStoreEvents): Promise<void> {
    this.events = events;
    // Coalesce bursts (the initial list delivers one 'add' per Node): one sorted list and one
    // event per macrotask, not one per Node, so syncing N nodes is O(N log N), not O(N²).
    let scheduled = false;
    const changed = (): void => {
      if (scheduled) return;
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        if (this.isSynced) this.events?.onChange(this.list());
      });
    };
    const upsert = (obj: k8s.V1Node): void => {
      const doc = obj as unknown as LeanNode;
      const r = rawNodeFromDoc(doc);
      const name = doc.metadata.name;
      if (!r.ok) {
        if (this.nodes.delete(name)) (this.markDirty(name), changed());
        return;
      }
      const key = JSON.stringify([r.node.annotations, r.node.podCIDRs, r.node.internalIPs]);
      const prev = this.nodes.get(name);
      if (prev !== undefined && prev.key === key) {
        this.opts.onIrrelevantUpdate?.();
        return;
      }
      this.nodes.set(name, { key, node: r.node });
      this.markDirty(name);
      changed();
    };
    // The informer fires 'connect' BEFORE its list call returns, so 'connect' must not count as
    // synced (an agent that prunes on an empty cache drops every peer: cilium#34062). The list
    // function is ours: once it resolved, the informer fills its cache synchronously right after
    // the await, and a macrotask later the cache holds the complete list.
    const listed = async (): Promise<k8s.V1NodeList> => {
      const lean = await this.listLean();
      setImmediate(() => {
        this.attempt = 0;
        const first = !this.isSynced;
        this.isSynced = true;
        changed();
        if (first) this.events?.onSynced();
      });
      return lean;
    };
    // The watch hands each object to the cache through this wrapper, cut to its lean form.
    const watch = new k8s.Watch(this.kc);
    const leanWatch = {
      watch: (
        path: string,
        query: Record<string, string | number | boolean | undefined>,
        cb: (phase: string, obj: unknown, raw?: unknown) => void,
        done: (err: unknown) => void,
      ) =>
        watch.watch(
          path,
          query,
          (phase, obj: k8s.V1Node) =>
            cb(phase, phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED' ? this.lean(obj) : obj),
          done,
        ),
    } as unknown as k8s.Watch;
    const informer = new k8s.ListWatch<k8s.V1Node>('/api/v1/nodes', leanWatch, listed, false);
    this.informer = informer;
    informer.on('add', upsert);
    informer.on('update', upsert);
    informer.on('delete', (obj: k8s.V1Node) => {
      const name = obj.metadata?.name ?? '';
      if (this.nodes.delete(name)) {
        this.markDirty(name);
        changed();
      }
    });
    informer.on('error', (err: unknown) => this.scheduleRestart(err));
    try {
      await informer.start();
    } catch (err) {
      this.scheduleRestart(err);
    }
  }

  /**
   * Lists every Node in pages of {@link LIST_PAGE_SIZE}, cutting each page to its lean form
   * before the next is fetched. One unpaginated list of 5,000 kubelet-sized Nodes is ~85 MB of
   * JSON, parsed and then copied by the client's deserializer: far past the agent's heap limit
   * (the chart's 128 MiB; the scale bench's agent aborted with "JavaScript heap out of memory").
   * Pages of one list share one snapshot (the continue token pins its resourceVersion), so the
   * result is the consistent list the watch starts from; an expired token (410 after a long
   * pause between pages) fails the list and the informer restarts with backoff.
   */
  private async listLean(): Promise<k8s.V1NodeList> {
    const items: k8s.V1Node[] = [];
    let first: k8s.V1NodeList | undefined;
    let cont: string | undefined;
    for (let page = 0; ; page++) {
      if (page >= MAX_LIST_PAGES) {
        throw new SealnetError(
          'STORE_IO',
          `listing Nodes took more than ${MAX_LIST_PAGES} pages of ${LIST_PAGE_SIZE}: the API server keeps returning continue tokens`,
        );
      }
      const list = await this.api.listNode({
        limit: LIST_PAGE_SIZE,
        ...(cont === undefined ? {} : { _continue: cont }),
      });
      first ??= list;
      for (const n of list.items) items.push(this.lean(n) as unknown as k8s.V1Node);
      const next = list.metadata?._continue;
      if (next === undefined || next === '') break;
      cont = next;
    }
    const metadata: k8s.V1ListMeta = { resourceVersion: first.metadata?.resourceVersion };
    return { apiVersion: first.apiVersion, kind: first.kind, metadata, items };
  }

  private markDirty(name: string): void {
    if (this.dirty === undefined) return;
    this.dirty.add(name);
    // Many changes at once (the initial list, a relist): one sort beats many splices.
    if (this.dirty.size > 64) this.dirty = undefined;
  }

  private scheduleRestart(err: unknown): void {
    if (this.stopped || this.restartTimer !== undefined) return;
    const delay = backoffDelay(this.attempt++, { baseMs: 500, capMs: 30_000, random: this.random }, retryAfterMs(err));
    this.events?.onError(
      new SealnetError('STORE_IO', `Kubernetes node watch failed; restarting in ${delay} ms`, { cause: err }),
    );
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopped) return;
      this.informer?.start().catch((e: unknown) => this.scheduleRestart(e));
    }, delay);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer !== undefined) clearTimeout(this.restartTimer);
    await this.informer?.stop();
  }

  list(): readonly RawNode[] {
    const dirty = this.dirty;
    if (dirty !== undefined && dirty.size === 0) return this.sorted;
    if (dirty === undefined) {
      this.sorted = [...this.nodes.values()].map((e) => e.node).sort((a, b) => (a.name < b.name ? -1 : 1));
    } else {
      // A few nodes changed: replace, insert or remove them in a copy (unchanged nodes keep
      // their objects, and with them the planner's memoised decode).
      const next = [...this.sorted];
      for (const name of dirty) {
        const i = lowerBound(next, name);
        const here = next[i]?.name === name;
        const e = this.nodes.get(name);
        if (e === undefined) {
          if (here) next.splice(i, 1);
        } else if (here) next[i] = e.node;
        else next.splice(i, 0, e.node);
      }
      this.sorted = next;
    }
    this.dirty = new Set();
    return this.sorted;
  }
  synced(): boolean {
    return this.isSynced;
  }

  async patchAnnotations(name: string, annotations: Readonly<Record<string, string | undefined>>): Promise<void> {
    const body: Record<string, string | null> = {};
    for (const [k, v] of Object.entries(annotations)) {
      if (!k.startsWith(ANNOTATION_PREFIX))
        throw new SealnetError(
          'INTERNAL',
          `refusing to patch annotation ${k}: agents write only ${ANNOTATION_PREFIX} keys`,
        );
      body[k] = v ?? null; // JSON merge patch: null deletes the key
    }
    try {
      await this.api.patchNode(
        { name, body: { metadata: { annotations: body } } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
      );
    } catch (err) {
      throw new SealnetError('STORE_IO', `patching annotations of node ${name} failed`, { cause: err });
    }
  }

  /**
   * Removes one taint from the Node's `spec.taints` with a JSON patch that first tests that the
   * entry at that index still has the key and effect just read, then removes that index: a
   * concurrent change to the list (the kubelet, an operator) fails the test instead of removing
   * the wrong taint, and is retried from a fresh read (at most {@link TAINT_ATTEMPTS} times).
   * Nothing else of the Node is sent, so the admission policy sees only that one change.
   */
  async removeTaint(name: string, taint: Pick<NodeTaint, 'key' | 'effect'>): Promise<'removed' | 'absent'> {
    for (let attempt = 1; ; attempt++) {
      let node: k8s.V1Node;
      try {
        node = await this.api.readNode({ name });
      } catch (err) {
        throw new SealnetError('STORE_IO', `reading node ${name} to remove its ${taint.key} taint failed`, {
          cause: err,
        });
      }
      const idx = (node.spec?.taints ?? []).findIndex((t) => t.key === taint.key && t.effect === taint.effect);
      if (idx < 0) return 'absent';
      const path = `/spec/taints/${idx}`;
      try {
        await this.api.patchNode(
          {
            name,
            body: [
              { op: 'test', path: `${path}/key`, value: taint.key },
              { op: 'test', path: `${path}/effect`, value: taint.effect },
              { op: 'remove', path },
            ],
          },
          k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch),
        );
        return 'removed';
      } catch (err) {
        // 422: a test op failed (the list changed since the read); 409: a write conflict.
        const code = (err as { code?: number }).code;
        if ((code === 422 || code === 409) && attempt < TAINT_ATTEMPTS) continue;
        throw new SealnetError('STORE_IO', `removing taint ${taint.key}:${taint.effect} from node ${name} failed`, {
          cause: err,
        });
      }
    }
  }
}
