/**
 * KubernetesNodeStore against a small fake of the API server's Node endpoints on loopback
 * (list, watch, merge patch). It proves what the wrapper adds to the client-node informer:
 * restart after the watch fails, backoff, 429 Retry-After, and a patch that is a JSON merge
 * patch of `sealnet.io/` annotations only. The real API server is the Kubernetes test tier.
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RawNode } from '../ports/model.js';
import { KubernetesNodeStore, LIST_PAGE_SIZE } from './kubernetes.js';

interface FakeNode {
  metadata: { name: string; resourceVersion: string; annotations?: Record<string, string> };
  spec: { podCIDRs: string[]; taints?: { key: string; effect: string; value?: string }[] };
  status: { addresses: { type: string; address: string }[] };
}

function node(name: string, idx: number, rv: number, annotations: Record<string, string> = {}): FakeNode {
  return {
    metadata: { name, resourceVersion: String(rv), annotations },
    spec: { podCIDRs: [`100.64.${idx}.0/24`] },
    status: { addresses: [{ type: 'InternalIP', address: `198.18.0.${idx}` }] },
  };
}

/** A fake API server: GET list, GET ?watch=true (kept open), PATCH one node. */
class FakeApi {
  readonly nodes = new Map<string, FakeNode>();
  rv = 10;
  listCalls: number[] = [];
  /** `limit` and `continue` of every list call, in order. */
  listPages: { limit: string | null; continue: string | null; items: number }[] = [];
  patches: { name: string; contentType: string | undefined; body: unknown }[] = [];
  /** Runs once between the next GET of one node and the PATCH after it (a concurrent writer). */
  beforeNextPatch: (() => void) | undefined;
  /** Status to answer the next PATCH with instead of applying it (e.g. 403). */
  patchFailures: number[] = [];
  /** Responses to use for the next list calls (status, headers), consumed in order. */
  listFailures: { status: number; headers?: Record<string, string>; message?: string }[] = [];
  private watchers = new Set<ServerResponse>();
  private server: Server;
  private dir = mkdtempSync(join(tmpdir(), 'sealnet-k8s-'));

  constructor() {
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  async start(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    const port = (this.server.address() as AddressInfo).port;
    const kubeconfig = join(this.dir, 'kubeconfig');
    writeFileSync(
      kubeconfig,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'fake', cluster: { server: `http://127.0.0.1:${port}`, 'insecure-skip-tls-verify': true } }],
        users: [{ name: 'agent', user: { token: 'test-token' } }],
        contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'agent' } }],
        'current-context': 'fake',
      }),
    );
    return kubeconfig;
  }

  async stop(): Promise<void> {
    this.dropWatches();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Sends a watch event to every open watch. */
  emit(type: 'ADDED' | 'MODIFIED' | 'DELETED', n: FakeNode): void {
    n.metadata.resourceVersion = String(++this.rv);
    for (const w of this.watchers)
      w.write(`${JSON.stringify({ type, object: { kind: 'Node', apiVersion: 'v1', ...n } })}\n`);
  }

  /** Ends every open watch abruptly (as a restarting API server does). */
  /** Ends every watch with a 410 Gone event, as the API server does when history was compacted. */
  expireWatches(): void {
    for (const w of this.watchers)
      w.end(
        `${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 410, reason: 'Expired' } })}\n`,
      );
    this.watchers.clear();
  }

  dropWatches(): void {
    for (const w of this.watchers) w.destroy();
    this.watchers.clear();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/api/v1/nodes' && req.method === 'GET' && url.searchParams.get('watch') === 'true') {
      res.writeHead(200, { 'content-type': 'application/json' });
      if (url.searchParams.get('resourceVersion') !== String(this.rv)) {
        // Like the real API server once history is compacted: "410 Gone", the client must re-list.
        res.end(
          `${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 410, reason: 'Expired' } })}\n`,
        );
        return;
      }
      res.flushHeaders();
      this.watchers.add(res);
      req.on('close', () => this.watchers.delete(res));
      return;
    }
    if (url.pathname === '/api/v1/nodes' && req.method === 'GET') {
      this.listCalls.push(Date.now());
      const failure = this.listFailures.shift();
      if (failure !== undefined) {
        res.writeHead(failure.status, { 'content-type': 'application/json', ...failure.headers });
        res.end(
          JSON.stringify({
            kind: 'Status',
            apiVersion: 'v1',
            status: 'Failure',
            code: failure.status,
            ...(failure.message === undefined ? {} : { message: failure.message }),
          }),
        );
        return;
      }
      // Pages as the API server serves them: `limit` items from the offset the continue token
      // names, every page with the list's resourceVersion, a token while more remain.
      const limit = Number(url.searchParams.get('limit') ?? '0');
      const from = Number(url.searchParams.get('continue') ?? '0');
      const all = [...this.nodes.values()].sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
      const items = limit > 0 ? all.slice(from, from + limit) : all;
      const more = limit > 0 && from + limit < all.length;
      this.listPages.push({
        limit: url.searchParams.get('limit'),
        continue: url.searchParams.get('continue'),
        items: items.length,
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          kind: 'NodeList',
          apiVersion: 'v1',
          metadata: { resourceVersion: String(this.rv), ...(more ? { continue: String(from + limit) } : {}) },
          items,
        }),
      );
      return;
    }
    const m = /^\/api\/v1\/nodes\/([^/]+)$/.exec(url.pathname);
    if (m !== null && req.method === 'GET') {
      const n = this.nodes.get(decodeURIComponent(m[1] ?? ''));
      res.writeHead(n === undefined ? 404 : 200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify(n === undefined ? { kind: 'Status', code: 404 } : { kind: 'Node', apiVersion: 'v1', ...n }),
      );
      return;
    }
    if (m !== null && req.method === 'PATCH' && req.headers['content-type'] === 'application/json-patch+json') {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const ops = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { op: string; path: string; value?: unknown }[];
      const name = decodeURIComponent(m[1] ?? '');
      this.patches.push({ name, contentType: req.headers['content-type'], body: ops });
      this.beforeNextPatch?.();
      this.beforeNextPatch = undefined;
      const fail = this.patchFailures.shift();
      const n = this.nodes.get(name);
      const status = (code: number): void => {
        res.writeHead(code, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code }));
      };
      if (fail !== undefined) return status(fail);
      if (n === undefined) return status(404);
      // RFC 6902, just the subset removeTaint sends: test a taint's field, remove a taint.
      const taints = [...(n.spec.taints ?? [])];
      for (const o of ops) {
        const t = /^\/spec\/taints\/(\d+)(?:\/(key|effect))?$/.exec(o.path);
        if (t === null) return status(422);
        const i = Number(t[1]);
        if (o.op === 'test') {
          const entry = taints[i] as Record<string, unknown> | undefined;
          if (entry === undefined || entry[t[2] ?? ''] !== o.value) return status(422);
        } else if (o.op === 'remove' && t[2] === undefined && i < taints.length) taints.splice(i, 1);
        else return status(422);
      }
      n.spec.taints = taints;
      this.emit('MODIFIED', n);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Node', apiVersion: 'v1', ...n }));
      return;
    }
    if (m !== null && req.method === 'PATCH') {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        metadata: { annotations: Record<string, string | null> };
      };
      const name = decodeURIComponent(m[1] ?? '');
      this.patches.push({ name, contentType: req.headers['content-type'], body });
      const n = this.nodes.get(name);
      if (n === undefined) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ kind: 'Status', code: 404 }));
        return;
      }
      const ann = { ...(n.metadata.annotations ?? {}) };
      for (const [k, v] of Object.entries(body.metadata.annotations)) {
        if (v === null) delete ann[k];
        else ann[k] = v;
      }
      n.metadata.annotations = ann;
      res.writeHead(200, { 'content-type': 'application/json' });
      this.emit('MODIFIED', n);
      res.end(JSON.stringify({ kind: 'Node', apiVersion: 'v1', ...n }));
      return;
    }
    res.writeHead(404);
    res.end();
  }
}

async function until<T>(fn: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('KubernetesNodeStore against a fake API server', () => {
  let api: FakeApi;
  let store: KubernetesNodeStore | undefined;
  afterEach(async () => {
    await store?.stop();
    store = undefined;
    await api.stop();
  });

  const counted = { irrelevant: 0, dropped: [] as string[] };
  async function started(
    opts: { random?: () => number; keepStatus?: boolean } = {},
  ): Promise<{ changes: (readonly RawNode[])[]; errors: Error[]; synced: () => boolean }> {
    const kubeconfig = await api.start();
    counted.irrelevant = 0;
    counted.dropped = [];
    store = new KubernetesNodeStore({
      kubeconfig,
      random: opts.random ?? (() => 0.5),
      keepStatus: opts.keepStatus ?? false,
      onIrrelevantUpdate: () => counted.irrelevant++,
      onDroppedAnnotation: (reason, node, key) => counted.dropped.push(`${node}:${key}:${reason}`),
    });
    const changes: (readonly RawNode[])[] = [];
    const errors: Error[] = [];
    let isSynced = false;
    await store.start({
      onChange: (n) => changes.push(n),
      onSynced: () => {
        isSynced = true;
      },
      onError: (e) => errors.push(e),
    });
    return { changes, errors, synced: () => isSynced };
  }

  it('lists, syncs, and follows watch events', async () => {
    api = new FakeApi();
    api.nodes.set('n1', node('n1', 1, 5));
    api.nodes.set('n2', node('n2', 2, 6, { 'sealnet.io/version': '1', 'other.io/x': 'y' }));
    const s = await started();
    await until(() => (s.synced() ? true : undefined));
    expect(store!.synced()).toBe(true);
    expect(store!.list()).toEqual([
      { name: 'n1', annotations: {}, podCIDRs: ['100.64.1.0/24'], internalIPs: ['198.18.0.1'] },
      // Lean: only the sealnet.io/ annotations are kept.
      {
        name: 'n2',
        annotations: { 'sealnet.io/version': '1' },
        podCIDRs: ['100.64.2.0/24'],
        internalIPs: ['198.18.0.2'],
      },
    ]);
    await until(() => (api['watchers'].size > 0 ? true : undefined));
    const n3 = node('n3', 3, 11);
    api.nodes.set('n3', n3);
    api.emit('ADDED', n3);
    await until(() => (store!.list().length === 3 ? true : undefined));
    api.nodes.delete('n1');
    api.emit('DELETED', node('n1', 1, 12));
    await until(() =>
      store!
        .list()
        .map((n) => n.name)
        .join() === 'n2,n3'
        ? true
        : undefined,
    );
    expect(s.changes.length).toBeGreaterThanOrEqual(2);
  });

  it('lists in pages of LIST_PAGE_SIZE (never the whole cluster in one response) and watches from the list', async () => {
    api = new FakeApi();
    const n = 2 * LIST_PAGE_SIZE + 100;
    for (let i = 0; i < n; i++) {
      const name = `n${String(i).padStart(4, '0')}`;
      api.nodes.set(name, node(name, i % 250, 5));
    }
    const s = await started();
    await until(() => (s.synced() ? true : undefined));
    expect(store!.list()).toHaveLength(n);
    expect(store!.list()[n - 1]!.name).toBe(`n${String(n - 1).padStart(4, '0')}`);
    // The watch starts from the list's resourceVersion: no 410 and no second list.
    await until(() => (api['watchers'].size > 0 ? true : undefined));
    const limit = String(LIST_PAGE_SIZE);
    expect(api.listPages).toEqual([
      { limit, continue: null, items: LIST_PAGE_SIZE },
      { limit, continue: String(LIST_PAGE_SIZE), items: LIST_PAGE_SIZE },
      { limit, continue: String(2 * LIST_PAGE_SIZE), items: 100 },
    ]);
    const late = node('n9999', 7, 20);
    api.nodes.set('n9999', late);
    api.emit('ADDED', late);
    await until(() => (store!.list().length === n + 1 ? true : undefined));
    expect(s.errors).toEqual([]);
  });

  it('lean watch: a kubelet-sized update that changes nothing sealnet reads is counted and triggers no change event; a relevant one replaces only its node', async () => {
    api = new FakeApi();
    for (let i = 1; i <= 50; i++) api.nodes.set(`n${i}`, node(`n${i}`, i, i, { 'sealnet.io/version': '1' }));
    const s = await started();
    await until(() => (s.synced() && s.changes.length > 0 ? true : undefined));
    await until(() => (api['watchers'].size > 0 ? true : undefined));
    const before = store!.list();
    const changesBefore = s.changes.length;
    // A kubelet heartbeat: conditions, images, node info, labels, another annotation; a
    // non-InternalIP address; a status summary of another node (agents do not keep those).
    const n7 = api.nodes.get('n7')! as FakeNode & Record<string, unknown>;
    const heavy = {
      ...n7,
      metadata: {
        ...n7.metadata,
        labels: { 'topology.kubernetes.io/zone': 'z1' },
        annotations: {
          ...n7.metadata.annotations,
          'node.alpha.kubernetes.io/ttl': '0',
          'sealnet.io/status': '{"v":2}',
        },
      },
      status: {
        addresses: [...n7.status.addresses, { type: 'Hostname', address: 'n7' }],
        conditions: [{ type: 'Ready', status: 'True', lastHeartbeatTime: new Date().toISOString() }],
        images: Array.from({ length: 50 }, (_, i) => ({
          names: [`registry.example/image-${i}@sha256:${'a'.repeat(64)}`],
          sizeBytes: 1e8,
        })),
        nodeInfo: { kubeletVersion: 'v1.31.0', osImage: 'Debian' },
      },
    };
    for (let k = 0; k < 5; k++) api.emit('MODIFIED', heavy as unknown as FakeNode);
    await until(() => (counted.irrelevant >= 5 ? true : undefined));
    await new Promise((r) => setTimeout(r, 50));
    expect(counted.irrelevant).toBe(5);
    expect(s.changes.length).toBe(changesBefore);
    expect(store!.list()).toBe(before); // the same list object: nothing rebuilt

    // A relevant change (a new key) replaces that node only; the others keep their objects.
    api.emit('MODIFIED', node('n7', 7, 0, { 'sealnet.io/version': '1', 'sealnet.io/endpoint': '198.18.0.7:51880' }));
    await until(() => (s.changes.length > changesBefore ? true : undefined));
    const after = store!.list();
    expect(after).not.toBe(before);
    expect(after.find((n) => n.name === 'n7')?.annotations['sealnet.io/endpoint']).toBe('198.18.0.7:51880');
    expect(after.filter((n, i) => n !== before[i]).map((n) => n.name)).toEqual(['n7']);
    expect(after.map((n) => n.name)).toEqual(before.map((n) => n.name));
  });

  it('lean watch: unknown, oversized or non-string sealnet.io/ values from a peer are dropped and counted, never held', async () => {
    api = new FakeApi();
    const big = 'A'.repeat(5000);
    api.nodes.set(
      'n1',
      node('n1', 1, 1, {
        'sealnet.io/version': '1',
        'sealnet.io/endpoint': big,
        'sealnet.io/made-up': 'x',
        'sealnet.io/status': 'S'.repeat(2000),
      }),
    );
    const s = await started({ keepStatus: true });
    await until(() => (s.synced() && store!.list().length === 1 ? true : undefined));
    expect(store!.list()[0]!.annotations).toEqual({ 'sealnet.io/version': '1' });
    expect(counted.dropped.sort()).toEqual([
      'n1:sealnet.io/endpoint:oversized',
      'n1:sealnet.io/made-up:unknown',
      'n1:sealnet.io/status:oversized',
    ]);
    // A summary within its bound is kept when asked for (sealctl), and never by default (agents).
    await until(() => (api['watchers'].size > 0 ? true : undefined));
    api.emit('MODIFIED', node('n1', 1, 0, { 'sealnet.io/version': '1', 'sealnet.io/status': '{"v":2}' }));
    await until(() => (store!.list()[0]!.annotations['sealnet.io/status'] === '{"v":2}' ? true : undefined));
  });

  it('merge-patches only sealnet.io/ annotations, null deleting a key', async () => {
    api = new FakeApi();
    api.nodes.set('n1', node('n1', 1, 5, { 'sealnet.io/old': 'x', 'keep.io/a': 'b' }));
    await started();
    await store!.patchAnnotations('n1', { 'sealnet.io/version': '1', 'sealnet.io/old': undefined });
    expect(api.patches).toEqual([
      {
        name: 'n1',
        contentType: 'application/merge-patch+json',
        body: { metadata: { annotations: { 'sealnet.io/version': '1', 'sealnet.io/old': null } } },
      },
    ]);
    expect(api.nodes.get('n1')?.metadata.annotations).toEqual({ 'keep.io/a': 'b', 'sealnet.io/version': '1' });
    await expect(store!.patchAnnotations('n1', { 'kubernetes.io/hostname': 'evil' })).rejects.toThrow(
      'agents write only sealnet.io/ keys',
    );
    expect(api.patches).toHaveLength(1);
    await expect(store!.patchAnnotations('missing', { 'sealnet.io/version': '1' })).rejects.toThrow(
      'patching annotations of node missing failed',
    );
  });

  it('removes one taint with a test-and-remove JSON patch, retrying after a concurrent change, never touching the others', async () => {
    const NOT_READY = { key: 'sealnet.io/not-ready', effect: 'NoSchedule' };
    const OTHER = { key: 'example.com/dedicated', effect: 'NoSchedule', value: 'db' };
    api = new FakeApi();
    api.nodes.set('n1', { ...node('n1', 1, 5), spec: { podCIDRs: ['100.64.1.0/24'], taints: [OTHER, NOT_READY] } });
    api.nodes.set('n2', { ...node('n2', 2, 5), spec: { podCIDRs: ['100.64.2.0/24'], taints: [OTHER] } });
    await started();
    // Someone inserts a taint in front between the agent's read and its patch: the test op on
    // index 1 fails (it now holds another taint), and the retry removes the right entry.
    api.beforeNextPatch = () => api.nodes.get('n1')!.spec.taints!.unshift({ key: 'x', effect: 'NoExecute' });
    expect(await store!.removeTaint('n1', NOT_READY)).toBe('removed');
    expect(api.nodes.get('n1')!.spec.taints).toEqual([{ key: 'x', effect: 'NoExecute' }, OTHER]);
    expect(api.patches.map((p) => [p.contentType, p.body])).toEqual([
      [
        'application/json-patch+json',
        [
          { op: 'test', path: '/spec/taints/1/key', value: 'sealnet.io/not-ready' },
          { op: 'test', path: '/spec/taints/1/effect', value: 'NoSchedule' },
          { op: 'remove', path: '/spec/taints/1' },
        ],
      ],
      [
        'application/json-patch+json',
        [
          { op: 'test', path: '/spec/taints/2/key', value: 'sealnet.io/not-ready' },
          { op: 'test', path: '/spec/taints/2/effect', value: 'NoSchedule' },
          { op: 'remove', path: '/spec/taints/2' },
        ],
      ],
    ]);
    // Absent: nothing is written.
    expect(await store!.removeTaint('n1', NOT_READY)).toBe('absent');
    expect(await store!.removeTaint('n2', NOT_READY)).toBe('absent');
    expect(api.patches).toHaveLength(2);
    // Refused (the admission policy): an error naming the node, no retry.
    api.nodes.get('n2')!.spec.taints = [NOT_READY];
    api.patchFailures = [403];
    await expect(store!.removeTaint('n2', NOT_READY)).rejects.toThrow(
      'removing taint sealnet.io/not-ready:NoSchedule from node n2 failed',
    );
    expect(api.patches).toHaveLength(3);
    // Conflicts forever: gives up after its attempts.
    api.patchFailures = [422, 422, 422, 422];
    await expect(store!.removeTaint('n2', NOT_READY)).rejects.toThrow('from node n2 failed');
    expect(api.patches).toHaveLength(6);
    await expect(store!.removeTaint('missing', NOT_READY)).rejects.toThrow('reading node missing');
  });

  it('restarts the watch with backoff after the API server drops it, and converges on what changed meanwhile', async () => {
    api = new FakeApi();
    api.nodes.set('n1', node('n1', 1, 5));
    const s = await started({ random: () => 0.5 });
    await until(() => (api['watchers'].size > 0 ? true : undefined));
    // The server goes away and, while down, the node set changes.
    api.listFailures.push({ status: 500 }, { status: 500 });
    api.nodes.set('n2', node('n2', 2, ++api.rv));
    const listsBefore = api.listCalls.length;
    api.dropWatches();
    await until(
      () =>
        store!
          .list()
          .map((n) => n.name)
          .join() === 'n1,n2'
          ? true
          : undefined,
      15_000,
    );
    expect(s.errors.length).toBeGreaterThanOrEqual(1);
    expect(s.errors[0]?.message).toMatch(/Kubernetes node watch failed; restarting in \d+ ms/);
    // Two failed lists and one good one: the wrapper kept retrying, with growing delays.
    const lists = api.listCalls.slice(listsBefore);
    expect(lists.length).toBeGreaterThanOrEqual(3);
    const gaps = lists.slice(1).map((t, i) => t - lists[i]!);
    expect(gaps.every((g) => g >= 200)).toBe(true);
  }, 30_000);

  it("names the API server's refusal of the list (status and message) and keeps retrying", async () => {
    api = new FakeApi();
    api.nodes.set('n1', node('n1', 1, 5));
    const refusal =
      'nodes is forbidden: User "system:serviceaccount:sealnet:sealnet" cannot list resource "nodes" in API group "" at the cluster scope';
    api.listFailures.push({ status: 403, message: refusal });
    const s = await started({ random: () => 0 });
    await until(() => (s.synced() ? true : undefined), 15_000);
    expect(api.listCalls).toHaveLength(2);
    expect(s.errors).toHaveLength(1);
    expect(s.errors[0]?.message).toMatch(/Kubernetes node watch failed; restarting in \d+ ms/);
    expect((s.errors[0]?.cause as Error).message).toBe(`GET /api/v1/nodes: HTTP 403: ${refusal}`);
    expect(s.changes.at(-1)?.map((n) => n.name)).toEqual(['n1']);
  }, 30_000);

  it('lists again at once when the watch expires (410 Gone): no error, no backoff, the cache is the new list', async () => {
    api = new FakeApi();
    api.nodes.set('n1', node('n1', 1, 5));
    api.nodes.set('n2', node('n2', 2, 6));
    const s = await started();
    await until(() => (api['watchers'].size > 0 ? true : undefined));
    // Meanwhile n2 went away and n3 came, and the watch history is gone.
    api.nodes.delete('n2');
    api.nodes.set('n3', node('n3', 3, ++api.rv));
    const t0 = Date.now();
    api.expireWatches();
    await until(() =>
      store!
        .list()
        .map((n) => n.name)
        .join() === 'n1,n3'
        ? true
        : undefined,
    );
    expect(Date.now() - t0).toBeLessThan(400);
    expect(api.listCalls).toHaveLength(2);
    expect(s.errors).toEqual([]);
    await until(() => (api['watchers'].size > 0 ? true : undefined));
  });

  it('stop() ends the watch and the retry loop: no request after it', async () => {
    api = new FakeApi();
    api.nodes.set('n1', node('n1', 1, 5));
    await started();
    await until(() => (api['watchers'].size > 0 ? true : undefined));
    await store!.stop();
    store = undefined;
    await until(() => (api['watchers'].size === 0 ? true : undefined));
    const calls = api.listCalls.length;
    await new Promise((r) => setTimeout(r, 1500));
    expect(api.listCalls).toHaveLength(calls);
  });

  it('honours Retry-After on 429', async () => {
    api = new FakeApi();
    api.nodes.set('n1', node('n1', 1, 5));
    api.listFailures.push({ status: 429, headers: { 'retry-after': '2' } });
    const s = await started({ random: () => 0 });
    await until(() => (s.synced() ? true : undefined), 15_000);
    expect(api.listCalls).toHaveLength(2);
    expect(api.listCalls[1]! - api.listCalls[0]!).toBeGreaterThanOrEqual(1900);
    expect(s.errors[0]?.message).toMatch(/restarting in 2000 ms/);
  }, 30_000);
});
