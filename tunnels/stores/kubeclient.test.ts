/**
 * The agent's own Kubernetes client: credentials from a kubeconfig (JSON or YAML) or the pod's
 * service account, and GET / PATCH / watch against a small HTTP server on loopback.
 */
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  inClusterCredentials,
  KubeClient,
  KubeHttpError,
  kubeconfigCredentials,
  leanTransport,
  transportFor,
} from './kubeclient.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sealnet-kubeclient-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const kubeconfig = (user: Record<string, unknown>, cluster: Record<string, unknown> = {}): object => ({
  apiVersion: 'v1',
  kind: 'Config',
  clusters: [{ name: 'c', cluster: { server: 'https://198.18.0.1:6443', ...cluster } }],
  users: [{ name: 'agent', user }],
  contexts: [{ name: 'x', context: { cluster: 'c', user: 'agent' } }],
  'current-context': 'x',
});

describe('kubeconfigCredentials', () => {
  it('reads a JSON kubeconfig: server, a CA file relative to the kubeconfig, a token', () => {
    writeFileSync(join(dir, 'ca.crt'), 'CA PEM');
    const file = join(dir, 'kc.json');
    writeFileSync(file, JSON.stringify(kubeconfig({ token: 'tok' }, { 'certificate-authority': 'ca.crt' })));
    const c = kubeconfigCredentials(file);
    expect(c).toMatchObject({ server: 'https://198.18.0.1:6443', insecure: false, token: 'tok' });
    expect(c.ca?.toString()).toBe('CA PEM');
    expect(c.cert).toBeUndefined();
  });

  it('reads a YAML kubeconfig: inline client certificate and key, insecure-skip-tls-verify, tls-server-name, a token file', () => {
    const file = join(dir, 'config');
    writeFileSync(
      file,
      [
        'apiVersion: v1',
        'kind: Config',
        'current-context: x',
        'clusters:',
        '- name: c',
        '  cluster:',
        '    server: https://[2001:db8::1]:6443',
        '    insecure-skip-tls-verify: true',
        '    tls-server-name: kubernetes.default',
        'users:',
        '- name: agent',
        '  user:',
        `    client-certificate-data: ${Buffer.from('CERT').toString('base64')}`,
        `    client-key-data: ${Buffer.from('KEY').toString('base64')}`,
        '    tokenFile: tok',
        'contexts:',
        '- name: x',
        '  context: {cluster: c, user: agent}',
        '',
      ].join('\n'),
    );
    const c = kubeconfigCredentials(file);
    expect(c).toMatchObject({
      server: 'https://[2001:db8::1]:6443',
      insecure: true,
      servername: 'kubernetes.default',
      tokenFile: join(dir, 'tok'),
    });
    expect([c.cert?.toString(), c.key?.toString()]).toEqual(['CERT', 'KEY']);
  });

  it('refuses what the agent does not run (exec and auth-provider plugins, basic auth), naming it and the user', () => {
    for (const [field, value] of [
      ['exec', { command: 'aws', args: ['eks', 'get-token'] }],
      ['auth-provider', { name: 'gcp' }],
      ['username', 'admin'],
    ] as const) {
      const file = join(dir, `kc-${field}.json`);
      writeFileSync(file, JSON.stringify(kubeconfig({ [field]: value })));
      expect(() => kubeconfigCredentials(file)).toThrow(
        new RegExp(`user "agent" uses ${field}, which the agent does not support`),
      );
    }
  });

  it('names what is missing: the file, the current context, the cluster, the CA file', () => {
    expect(() => kubeconfigCredentials(join(dir, 'absent'))).toThrow(/cannot read kubeconfig .*absent/);
    const noCtx = join(dir, 'noctx.json');
    writeFileSync(noCtx, JSON.stringify({ ...kubeconfig({ token: 't' }), 'current-context': undefined }));
    expect(() => kubeconfigCredentials(noCtx)).toThrow(/has no current-context/);
    const noCluster = join(dir, 'nocluster.json');
    writeFileSync(noCluster, JSON.stringify({ ...kubeconfig({ token: 't' }), clusters: [] }));
    expect(() => kubeconfigCredentials(noCluster)).toThrow(/no cluster named "c"/);
    const noCa = join(dir, 'noca.json');
    writeFileSync(noCa, JSON.stringify(kubeconfig({ token: 't' }, { 'certificate-authority': 'missing.crt' })));
    expect(() => kubeconfigCredentials(noCa)).toThrow(/cannot read certificate-authority missing.crt/);
  });
});

describe('inClusterCredentials and leanTransport', () => {
  it("uses the pod's service account: KUBERNETES_SERVICE_HOST/PORT (IPv6 bracketed), its CA and token file", () => {
    writeFileSync(join(dir, 'ca.crt'), 'CA');
    writeFileSync(join(dir, 'token'), 'sa-token\n');
    expect(
      inClusterCredentials({ KUBERNETES_SERVICE_HOST: '100.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, dir),
    ).toMatchObject({
      server: 'https://100.96.0.1:443',
      tokenFile: join(dir, 'token'),
    });
    expect(
      inClusterCredentials({ KUBERNETES_SERVICE_HOST: 'fd00:10:96::1', KUBERNETES_SERVICE_PORT: '443' }, dir).server,
    ).toBe('https://[fd00:10:96::1]:443');
    expect(() => inClusterCredentials({}, dir)).toThrow(/not in a pod \(KUBERNETES_SERVICE_HOST\/PORT unset\)/);
    expect(() =>
      inClusterCredentials({ KUBERNETES_SERVICE_HOST: 'h', KUBERNETES_SERVICE_PORT: '1' }, join(dir, 'nope')),
    ).toThrow(/cannot read the service account CA/);
  });

  it('finds credentials as client-node does: the given file, $KUBECONFIG, ~/.kube/config, else in-cluster', () => {
    const a = join(dir, 'a.json');
    const b = join(dir, 'b.json');
    writeFileSync(
      a,
      JSON.stringify({
        ...kubeconfig({ token: 'a' }),
        clusters: [{ name: 'c', cluster: { server: 'http://198.18.0.1:1' } }],
      }),
    );
    writeFileSync(
      b,
      JSON.stringify({
        ...kubeconfig({ token: 'b' }),
        clusters: [{ name: 'c', cluster: { server: 'http://198.18.0.2:1' } }],
      }),
    );
    const home = join(dir, 'home');
    expect(leanTransport({ kubeconfig: a, env: { KUBECONFIG: b } }).server).toBe('http://198.18.0.1:1');
    expect(leanTransport({ env: { KUBECONFIG: `${b}:${a}`, HOME: home } }).server).toBe('http://198.18.0.2:1');
    expect(() => leanTransport({ env: { HOME: home } })).toThrow(/not in a pod/);
  });

  it('reads a token file on every request (the kubelet rotates bound tokens)', async () => {
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'first\n');
    const t = transportFor({ server: 'http://198.18.0.1:1', insecure: false, tokenFile });
    expect((await t.requestOptions()).headers).toEqual({ authorization: 'Bearer first' });
    writeFileSync(tokenFile, 'second\n');
    expect((await t.requestOptions()).headers).toEqual({ authorization: 'Bearer second' });
    rmSync(tokenFile);
    await expect(t.requestOptions()).rejects.toThrow(/cannot read the API token file/);
  });

  it('never puts a token into an error message', () => {
    const file = join(dir, 'kc.json');
    writeFileSync(file, JSON.stringify(kubeconfig({ token: 'SECRET-TOKEN', exec: { command: 'x' } })));
    let message = '';
    try {
      kubeconfigCredentials(file);
    } catch (err) {
      message = String((err as Error).message);
    }
    expect(message).not.toBe('');
    expect(message).not.toContain('SECRET-TOKEN');
  });
});

describe('KubeClient against a loopback server', () => {
  let server: Server;
  let handler: (req: IncomingMessage, res: ServerResponse, body: string) => void;
  let client: KubeClient;
  beforeEach(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => handler(req, res, Buffer.concat(chunks).toString('utf8')));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    client = new KubeClient(transportFor({ server: `http://127.0.0.1:${port}`, insecure: false, token: 'tok' }));
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('GETs and PATCHes JSON with the bearer token and the content type given', async () => {
    const seen: unknown[] = [];
    handler = (req, res, body) => {
      seen.push([req.method, req.url, req.headers.authorization, req.headers['content-type'] ?? null, body]);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Node', metadata: { name: 'n1' } }));
    };
    expect(await client.request('GET', '/api/v1/nodes/n1')).toEqual({ kind: 'Node', metadata: { name: 'n1' } });
    await client.request('PATCH', '/api/v1/nodes/n1', {
      body: { metadata: { annotations: { 'sealnet.io/x': null } } },
      contentType: 'application/merge-patch+json',
    });
    expect(seen).toEqual([
      ['GET', '/api/v1/nodes/n1', 'Bearer tok', null, ''],
      [
        'PATCH',
        '/api/v1/nodes/n1',
        'Bearer tok',
        'application/merge-patch+json',
        '{"metadata":{"annotations":{"sealnet.io/x":null}}}',
      ],
    ]);
  });

  it('turns a refusal into a KubeHttpError with the status code, the Status message, the headers and the body', async () => {
    const status = { kind: 'Status', code: 403, message: 'nodes "n2" is forbidden: may only patch its own Node' };
    handler = (_req, res) => {
      res.writeHead(403, { 'content-type': 'application/json', 'retry-after': '3' });
      res.end(JSON.stringify(status));
    };
    const err = (await client
      .request('PATCH', '/api/v1/nodes/n2', { body: {} })
      .catch((e: unknown) => e)) as KubeHttpError;
    expect(err).toBeInstanceOf(KubeHttpError);
    expect(err.message).toBe('PATCH /api/v1/nodes/n2: HTTP 403: nodes "n2" is forbidden: may only patch its own Node');
    expect([err.code, err.headers['retry-after'], JSON.parse(err.body)]).toEqual([403, '3', status]);
  });

  it('watch: delivers each event line in order, lines split across writes, until the server ends the stream', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const lines = [
        { type: 'ADDED', object: { metadata: { name: 'a', resourceVersion: '2' } } },
        { type: 'BOOKMARK', object: { metadata: { resourceVersion: '3' } } },
        { type: 'DELETED', object: { metadata: { name: 'a', resourceVersion: '4' } } },
      ]
        .map((l) => `${JSON.stringify(l)}\n`)
        .join('');
      const cut = Math.floor(lines.length / 2) + 3;
      res.write(lines.slice(0, cut));
      setTimeout(() => res.end(lines.slice(cut)), 30);
    };
    const events: string[] = [];
    await client.watch('/api/v1/nodes?watch=true', (type, o) => events.push(`${type}:${JSON.stringify(o)}`), {
      idleMs: 5000,
    });
    expect(events).toEqual([
      'ADDED:{"metadata":{"name":"a","resourceVersion":"2"}}',
      'BOOKMARK:{"metadata":{"resourceVersion":"3"}}',
      'DELETED:{"metadata":{"name":"a","resourceVersion":"4"}}',
    ]);
  });

  it('watch: fails on a non-200 answer, on a line that is not JSON, and when the stream goes quiet past its limit', async () => {
    handler = (_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', code: 401, message: 'Unauthorized' }));
    };
    await expect(client.watch('/w', () => undefined, { idleMs: 5000 })).rejects.toThrow(
      'watch /w: HTTP 401: Unauthorized',
    );
    handler = (_req, res) => {
      res.writeHead(200);
      res.write('{"type":"ADDED","object":\n');
    };
    await expect(client.watch('/w', () => undefined, { idleMs: 5000 })).rejects.toThrow(SyntaxError);
    handler = (_req, res) => {
      res.writeHead(200);
      res.write(`${JSON.stringify({ type: 'BOOKMARK', object: {} })}\n`);
    };
    const t0 = Date.now();
    await expect(client.watch('/w', () => undefined, { idleMs: 300 })).rejects.toThrow(
      'the watch sent nothing for 0.3 s',
    );
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
  });

  it('refuses an answer or a watch event past its size bound, and keeps only the start of a large error body', async () => {
    const small = new KubeClient(client.transport, { maxBodyBytes: 4096, maxEventBytes: 4096 });
    const filler = (n: number): string => JSON.stringify({ kind: 'NodeList', items: [], pad: 'x'.repeat(n) });
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(filler(3000));
    };
    expect(await small.request('GET', '/api/v1/nodes')).toMatchObject({ kind: 'NodeList' });
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(filler(100_000));
    };
    await expect(small.request('GET', '/api/v1/nodes')).rejects.toThrow(
      /^GET \/api\/v1\/nodes: the answer is larger than 4096 bytes; refused: check what answers at http:\/\/127\.0\.0\.1:\d+$/,
    );
    handler = (_req, res) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('e'.repeat(1_000_000));
    };
    const err = (await small.request('GET', '/api/v1/nodes').catch((e: unknown) => e)) as KubeHttpError;
    expect(err).toBeInstanceOf(KubeHttpError);
    expect(err.code).toBe(500);
    expect(err.body.length).toBeGreaterThanOrEqual(1024);
    expect(err.body.length).toBeLessThan(200_000);
    // One watch line too long, with its line end, and a line that never ends.
    const events: string[] = [];
    handler = (_req, res) => {
      res.writeHead(200);
      res.write(`${JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'a' } } })}\n`);
      res.write(`${JSON.stringify({ type: 'ADDED', object: { pad: 'y'.repeat(10_000) } })}\n`);
    };
    await expect(small.watch('/w', (type) => events.push(type), { idleMs: 5000 })).rejects.toThrow(
      /^watch \/w: an event larger than 4096 bytes; refused/,
    );
    expect(events).toEqual(['ADDED']);
    handler = (_req, res) => {
      res.writeHead(200);
      const t = setInterval(() => res.write('z'.repeat(1000)), 5);
      res.on('close', () => clearInterval(t));
    };
    await expect(small.watch('/w', () => undefined, { idleMs: 5000 })).rejects.toThrow(
      /^watch \/w: an event larger than 4096 bytes; refused/,
    );
  });

  it('a callback that throws ends the watch with its error (how a 410 Gone reaches the store)', async () => {
    handler = (_req, res) => {
      res.writeHead(200);
      res.write(`${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 410 } })}\n`);
    };
    const gone = new Error('gone');
    await expect(
      client.watch(
        '/w',
        (type) => {
          if (type === 'ERROR') throw gone;
        },
        { idleMs: 5000 },
      ),
    ).rejects.toBe(gone);
  });
});

describe('the agent does not load @kubernetes/client-node', () => {
  it('no module of the store or the agent imports it (sealctl does, for credential plugins)', () => {
    const root = join(dirname(fileURLToPath(import.meta.url)), '..');
    const offenders: string[] = [];
    for (const room of ['stores', 'agent', 'reconcile', 'status', 'pq', 'rotation', 'plan', 'ports']) {
      for (const f of readdirSync(join(root, room))) {
        if (!f.endsWith('.ts') || f.endsWith('.test.ts')) continue;
        const text = readFileSync(join(root, room, f), 'utf8');
        // A type-only import is erased at build time and loads nothing.
        const loads = text
          .split('\n')
          .filter((l) => /@kubernetes\/client-node/.test(l) && !/^\s*(\*|\/\/|import type )/.test(l));
        if (loads.length > 0) offenders.push(`${room}/${f}: ${loads.join(' | ')}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
