/**
 * The `kubernetes` node store: a Node informer from @kubernetes/client-node, wrapped so that it
 * restarts with backoff and jitter after errors (the client-node informer stops for good after
 * most errors), honours 429 Retry-After, and merge-patches only `sealnet.io/` annotations on
 * the agent's own Node.
 */
import * as k8s from '@kubernetes/client-node';
import { ANNOTATION_PREFIX } from '../../common/constants.js';
import { SealnetError } from '../../common/errors.js';
import type { RawNode } from '../ports/model.js';
import type { NodeStore, NodeStoreEvents } from '../ports/index.js';
import { backoffDelay } from '../../common/backoff.js';
import { rawNodeFromDoc } from './nodedoc.js';

/** Options for {@link KubernetesNodeStore}. */
export interface KubernetesNodeStoreOptions {
  /** Path to a kubeconfig; default: in-cluster service account, else $KUBECONFIG / ~/.kube/config. */
  readonly kubeconfig?: string | undefined;
  readonly random?: () => number;
}

function retryAfterMs(err: unknown): number | undefined {
  const e = err as { code?: number; headers?: Record<string, string> } | undefined;
  if (e?.code !== 429) return undefined;
  const h = e.headers?.['retry-after'];
  const s = h === undefined ? NaN : Number(h);
  return Number.isFinite(s) ? s * 1000 : 5000;
}

/** Kubernetes API node store. */
export class KubernetesNodeStore implements NodeStore {
  private readonly kc: k8s.KubeConfig;
  private readonly api: k8s.CoreV1Api;
  private readonly random: () => number;
  private informer: (k8s.Informer<k8s.V1Node> & k8s.ObjectCache<k8s.V1Node>) | undefined;
  private events: NodeStoreEvents | undefined;
  private isSynced = false;
  private attempt = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The decoded, sorted node list; dropped on every informer event. */
  private cache: RawNode[] | undefined;
  private readonly converted = new WeakMap<k8s.V1Node, ReturnType<typeof rawNodeFromDoc>>();

  constructor(opts: KubernetesNodeStoreOptions = {}) {
    this.kc = new k8s.KubeConfig();
    if (opts.kubeconfig !== undefined) this.kc.loadFromFile(opts.kubeconfig);
    else this.kc.loadFromDefault();
    this.api = this.kc.makeApiClient(k8s.CoreV1Api);
    this.random = opts.random ?? Math.random;
  }

  async start(events: NodeStoreEvents): Promise<void> {
    this.events = events;
    // Coalesce bursts (the initial list delivers one 'add' per Node): one decode and one sorted
    // list per macrotask, not one per event, so syncing N nodes is O(N log N), not O(N²).
    let scheduled = false;
    const changed = (): void => {
      this.cache = undefined;
      if (scheduled) return;
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        if (this.isSynced) this.events?.onChange(this.list());
      });
    };
    // The informer fires 'connect' BEFORE its list call returns, so 'connect' must not count as
    // synced (an agent that prunes on an empty cache drops every peer: cilium#34062). The list
    // function is ours: once it resolved, the informer fills its cache synchronously right after
    // the await, and a macrotask later the cache holds the complete list.
    const listed = async (): Promise<k8s.V1NodeList> => {
      const list = await this.api.listNode();
      setImmediate(() => {
        this.attempt = 0;
        const first = !this.isSynced;
        this.isSynced = true;
        changed();
        if (first) this.events?.onSynced();
      });
      return list;
    };
    const informer = k8s.makeInformer(this.kc, '/api/v1/nodes', listed);
    this.informer = informer;
    informer.on('add', changed);
    informer.on('update', changed);
    informer.on('delete', changed);
    informer.on('error', (err: unknown) => this.scheduleRestart(err));
    try {
      await informer.start();
    } catch (err) {
      this.scheduleRestart(err);
    }
  }

  private scheduleRestart(err: unknown): void {
    if (this.stopped || this.restartTimer !== undefined) return;
    const delay = backoffDelay(this.attempt++, { baseMs: 500, capMs: 30_000, random: this.random }, retryAfterMs(err));
    this.events?.onError(new SealnetError('STORE_IO', `Kubernetes node watch failed; restarting in ${delay} ms`, { cause: err }));
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
    if (this.cache !== undefined) return this.cache;
    const out: RawNode[] = [];
    for (const n of this.informer?.list() ?? []) {
      // The informer replaces a Node object when it changes; unchanged ones keep their RawNode
      // (and with it the memoised decode, tunnels/plan/annotations.ts).
      let r = this.converted.get(n);
      if (r === undefined) this.converted.set(n, (r = rawNodeFromDoc(n)));
      if (r.ok) out.push(r.node);
    }
    this.cache = out.sort((a, b) => (a.name < b.name ? -1 : 1));
    return this.cache;
  }

  synced(): boolean {
    return this.isSynced;
  }

  async patchAnnotations(name: string, annotations: Readonly<Record<string, string | undefined>>): Promise<void> {
    const body: Record<string, string | null> = {};
    for (const [k, v] of Object.entries(annotations)) {
      if (!k.startsWith(ANNOTATION_PREFIX)) throw new SealnetError('INTERNAL', `refusing to patch annotation ${k}: agents write only ${ANNOTATION_PREFIX} keys`);
      body[k] = v ?? null; // JSON merge patch: null deletes the key
    }
    try {
      await this.api.patchNode({ name, body: { metadata: { annotations: body } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    } catch (err) {
      throw new SealnetError('STORE_IO', `patching annotations of node ${name} failed`, { cause: err });
    }
  }
}
