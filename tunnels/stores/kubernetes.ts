/**
 * The `kubernetes` node store: a Node list+watch of its own (tunnels/stores/kubeclient.ts; the
 * agent does not load @kubernetes/client-node), restarted with backoff and jitter after errors,
 * honouring 429 Retry-After, and merge-patching only `sealnet.io/` annotations on the agent's
 * own Node.
 *
 * List, then watch from the list's resourceVersion (bookmarks on), again from the last one seen
 * when the server ends a watch; a 410 Gone lists again at once; any other failure is reported
 * and retried with backoff, the whole list+watch anew.
 *
 * A lean watch: real Nodes are 10-20 KiB (images, conditions, node info, managed fields) and the
 * kubelet updates each every few minutes. Every object is cut on arrival, before the cache holds
 * it, to name, resourceVersion, InternalIP addresses, pod CIDRs and the known `sealnet.io/`
 * annotations within their bounds (tunnels/stores/nodedoc.ts `leanAnnotations`; unknown or
 * oversized ones are dropped and counted). An update that changes none of those (a kubelet
 * heartbeat, a label, another annotation) is counted and dropped: no list rebuild, no event.
 * A relevant update replaces one entry of the sorted list (binary search, one array copy).
 */
import { ANNOTATION_PREFIX } from '../../common/constants.js';
import { SealnetError } from '../../common/errors.js';
import { isObject, type JsonObject } from '../../common/json.js';
import type { RawNode } from '../ports/model.js';
import type { NodeStore, NodeStoreEvents, NodeTaint, NodeTaintPort } from '../ports/index.js';
import { backoffDelay } from '../../common/backoff.js';
import { leanAnnotations, rawNodeFromDoc, type DroppedReason } from './nodedoc.js';
import { KubeClient, leanTransport, WatchExpiredError, type KubeTransport } from './kubeclient.js';

/** Options for {@link KubernetesNodeStore}. */
export interface KubernetesNodeStoreOptions {
  /** Path to a kubeconfig; default: $KUBECONFIG, ~/.kube/config, else the pod's service account. */
  readonly kubeconfig?: string | undefined;
  /** How to reach the API server instead (sealctl: one made from client-node, for exec plugins). */
  readonly transport?: KubeTransport | undefined;
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
    readonly resourceVersion?: string | undefined;
    readonly annotations: Record<string, string>;
  };
  readonly spec: { readonly podCIDRs?: readonly string[] | undefined; readonly podCIDR?: string | undefined };
  readonly status: { readonly addresses: readonly { readonly type: string; readonly address: string }[] };
}

/** `x` if it is a JSON object, else an empty one (a malformed field reads as absent). */
const obj = (x: unknown): JsonObject => (isObject(x) ? x : {});

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
/** One page of the list must arrive within this (a stalled connection fails the list; it is retried). */
const LIST_PAGE_TIMEOUT_MS = 60_000;
/** The server ends each watch after 5–10 minutes (spread, so agents do not re-watch together). */
const WATCH_SECONDS_MIN = 300;
/** A watch the server ended sooner than this is followed by a pause of as long. */
const WATCH_MIN_MS = 1000;
/** A watch that sends nothing (not even a bookmark) this long after its own timeout is dead. */
const WATCH_IDLE_SLACK_MS = 60_000;

/** Reads and test-and-remove patches tried before {@link KubernetesNodeStore.removeTaint} gives up. */
const TAINT_ATTEMPTS = 3;

/** Kubernetes API node store. */
export class KubernetesNodeStore implements NodeStore, NodeTaintPort {
  private readonly client: KubeClient;
  private readonly random: () => number;
  private readonly opts: KubernetesNodeStoreOptions;
  private events: NodeStoreEvents | undefined;
  private isSynced = false;
  private attempt = 0;
  private stopped = false;
  /** Aborts the request in flight (list page or watch) at {@link stop}. */
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;
  private sleepTimer: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  /** Every decodable node by name, with the key of what this store keeps of it. */
  private readonly nodes = new Map<string, { key: string; node: RawNode }>();
  /** The sorted node list handed out; replaced (never mutated) on a relevant change. */
  private sorted: RawNode[] = [];
  /** Nodes changed since {@link sorted} was built; undefined: rebuild from {@link nodes}. */
  private dirty: Set<string> | undefined = new Set();
  private changeScheduled = false;

  constructor(opts: KubernetesNodeStoreOptions = {}) {
    this.client = new KubeClient(opts.transport ?? leanTransport({ kubeconfig: opts.kubeconfig }));
    this.random = opts.random ?? Math.random;
    this.opts = opts;
  }

  /** How this store reaches the API server (sealctl reaches agents through the same server). */
  get transport(): KubeTransport {
    return this.client.transport;
  }

  /** Cuts a Node to what this store keeps (before anything holds it); never throws on a malformed one. */
  private lean(raw: unknown): LeanNode {
    const n = obj(raw);
    const meta = obj(n.metadata);
    const name = typeof meta.name === 'string' ? meta.name : '';
    const { kept, dropped } = leanAnnotations(meta.annotations as Record<string, string> | undefined, {
      keepStatus: this.opts.keepStatus === true,
    });
    for (const d of dropped) this.opts.onDroppedAnnotation?.(d.reason, name, d.key);
    const rawAddresses = obj(n.status).addresses;
    const addresses = (Array.isArray(rawAddresses) ? rawAddresses : [])
      .map(obj)
      .filter((x) => x.type === 'InternalIP' && typeof x.address === 'string')
      .map((x) => ({ type: 'InternalIP', address: x.address as string }));
    const spec = obj(n.spec);
    return {
      metadata: {
        name,
        resourceVersion: typeof meta.resourceVersion === 'string' ? meta.resourceVersion : undefined,
        annotations: kept,
      },
      spec: {
        ...(Array.isArray(spec.podCIDRs)
          ? { podCIDRs: spec.podCIDRs.filter((c): c is string => typeof c === 'string') }
          : {}),
        ...(typeof spec.podCIDR === 'string' ? { podCIDR: spec.podCIDR } : {}),
      },
      status: { addresses },
    };
  }

  /**
   * Coalesces bursts (a list delivers every Node): one sorted list and one event per macrotask,
   * not one per Node, so syncing N nodes is O(N log N), not O(N²).
   */
  private changed(): void {
    if (this.changeScheduled) return;
    this.changeScheduled = true;
    setImmediate(() => {
      this.changeScheduled = false;
      if (this.isSynced && !this.stopped) this.events?.onChange(this.list());
    });
  }

  private upsert(doc: LeanNode): void {
    const r = rawNodeFromDoc(doc);
    const name = doc.metadata.name;
    if (!r.ok) {
      if (this.nodes.delete(name)) (this.markDirty(name), this.changed());
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
    this.changed();
  }

  private remove(name: string): void {
    if (this.nodes.delete(name)) {
      this.markDirty(name);
      this.changed();
    }
  }

  async start(events: NodeStoreEvents): Promise<void> {
    this.events = events;
    this.running = this.run();
  }

  /** List, then watch until something fails; then again, with backoff unless the watch only expired. */
  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        let rv = await this.relist();
        while (!this.stopped) {
          const began = Date.now();
          rv = await this.watchFrom(rv);
          // A server that ends watches at once must not make this a busy loop.
          if (Date.now() - began < WATCH_MIN_MS) await this.sleep(WATCH_MIN_MS);
        }
      } catch (err) {
        if (this.stopped) return;
        if (err instanceof WatchExpiredError) continue; // 410 Gone: list again at once
        const delay = backoffDelay(
          this.attempt++,
          { baseMs: 500, capMs: 30_000, random: this.random },
          retryAfterMs(err),
        );
        this.events?.onError(
          new SealnetError('STORE_IO', `Kubernetes node watch failed; restarting in ${delay} ms`, { cause: err }),
        );
        await this.sleep(delay);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((wake) => {
      const timer = setTimeout(() => {
        this.sleepTimer = undefined;
        wake();
      }, ms);
      this.sleepTimer = { timer, wake };
    });
  }

  /**
   * Lists every Node and makes the cache exactly that list (a Node gone meanwhile is removed);
   * the first complete list makes the store synced. Returns the list's resourceVersion.
   */
  private async relist(): Promise<string> {
    const { items, resourceVersion } = await this.listLean();
    const seen = new Set<string>();
    for (const doc of items) {
      seen.add(doc.metadata.name);
      this.upsert(doc);
    }
    for (const name of [...this.nodes.keys()]) if (!seen.has(name)) this.remove(name);
    this.attempt = 0;
    const first = !this.isSynced;
    this.isSynced = true;
    // Synced before the first change event, as the reconciler expects.
    if (first) this.events?.onSynced();
    this.changed();
    return resourceVersion;
  }

  /** One watch from `rv`; returns the last resourceVersion seen when the server ends it. */
  private async watchFrom(rv: string): Promise<string> {
    const seconds = WATCH_SECONDS_MIN + Math.floor(this.random() * WATCH_SECONDS_MIN);
    const query = new URLSearchParams({
      watch: 'true',
      resourceVersion: rv,
      allowWatchBookmarks: 'true',
      timeoutSeconds: String(seconds),
    });
    let last = rv;
    await this.client.watch(
      `/api/v1/nodes?${query.toString()}`,
      (type, object) => {
        if (type === 'ERROR') {
          const status = obj(object);
          if (status.code === 410) throw new WatchExpiredError(`the watch from resourceVersion ${last} expired (410)`);
          throw new SealnetError(
            'STORE_IO',
            `the Node watch reported an error: ${typeof status.message === 'string' ? status.message.slice(0, 300) : JSON.stringify(status).slice(0, 300)}`,
          );
        }
        const doc = this.lean(object);
        if (doc.metadata.resourceVersion !== undefined) last = doc.metadata.resourceVersion;
        if (type === 'ADDED' || type === 'MODIFIED') this.upsert(doc);
        else if (type === 'DELETED') this.remove(doc.metadata.name);
        // BOOKMARK: only its resourceVersion counts.
        if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') this.attempt = 0;
      },
      { signal: this.abort.signal, idleMs: seconds * 1000 + WATCH_IDLE_SLACK_MS },
    );
    return last;
  }

  /**
   * Lists every Node in pages of {@link LIST_PAGE_SIZE}, cutting each page to its lean form
   * before the next is fetched. One unpaginated list of 5,000 kubelet-sized Nodes is ~85 MB of
   * JSON: far past the agent's heap limit (the chart's 128 MiB). Pages of one list share one
   * snapshot (the continue token pins its resourceVersion), so the result is the consistent
   * list the watch starts from; an expired token (410 after a long pause between pages) fails
   * the list and it is retried with backoff.
   */
  private async listLean(): Promise<{ items: LeanNode[]; resourceVersion: string }> {
    const items: LeanNode[] = [];
    let resourceVersion: string | undefined;
    let cont: string | undefined;
    for (let page = 0; ; page++) {
      if (page >= MAX_LIST_PAGES) {
        throw new SealnetError(
          'STORE_IO',
          `listing Nodes took more than ${MAX_LIST_PAGES} pages of ${LIST_PAGE_SIZE}: the API server keeps returning continue tokens`,
        );
      }
      const query = new URLSearchParams({
        limit: String(LIST_PAGE_SIZE),
        ...(cont === undefined ? {} : { continue: cont }),
      });
      const list = obj(
        await this.client.request('GET', `/api/v1/nodes?${query.toString()}`, {
          signal: this.abort.signal,
          timeoutMs: LIST_PAGE_TIMEOUT_MS,
        }),
      );
      const meta = obj(list.metadata);
      if (page === 0) resourceVersion = typeof meta.resourceVersion === 'string' ? meta.resourceVersion : undefined;
      for (const n of Array.isArray(list.items) ? list.items : []) items.push(this.lean(n));
      const next = meta.continue;
      if (typeof next !== 'string' || next === '') break;
      cont = next;
    }
    if (resourceVersion === undefined) throw new SealnetError('STORE_IO', 'the Node list carries no resourceVersion');
    return { items, resourceVersion };
  }

  private markDirty(name: string): void {
    if (this.dirty === undefined) return;
    this.dirty.add(name);
    // Many changes at once (the initial list, a relist): one sort beats many splices.
    if (this.dirty.size > 64) this.dirty = undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    if (this.sleepTimer !== undefined) {
      clearTimeout(this.sleepTimer.timer);
      this.sleepTimer.wake();
      this.sleepTimer = undefined;
    }
    await this.running?.catch(() => undefined);
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
      await this.client.request('PATCH', `/api/v1/nodes/${encodeURIComponent(name)}`, {
        body: { metadata: { annotations: body } },
        contentType: 'application/merge-patch+json',
      });
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
      let node: JsonObject;
      try {
        node = obj(await this.client.request('GET', `/api/v1/nodes/${encodeURIComponent(name)}`));
      } catch (err) {
        throw new SealnetError('STORE_IO', `reading node ${name} to remove its ${taint.key} taint failed`, {
          cause: err,
        });
      }
      const taints = obj(node.spec).taints;
      const idx = (Array.isArray(taints) ? taints : [])
        .map(obj)
        .findIndex((t) => t.key === taint.key && t.effect === taint.effect);
      if (idx < 0) return 'absent';
      const path = `/spec/taints/${idx}`;
      try {
        await this.client.request('PATCH', `/api/v1/nodes/${encodeURIComponent(name)}`, {
          body: [
            { op: 'test', path: `${path}/key`, value: taint.key },
            { op: 'test', path: `${path}/effect`, value: taint.effect },
            { op: 'remove', path },
          ],
          contentType: 'application/json-patch+json',
        });
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
