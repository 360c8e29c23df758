/**
 * The agent's own Kubernetes API client: what the node store needs (a GET, a PATCH, a watch
 * stream) over node:https, with the credentials of a kubeconfig or of the pod's service account.
 *
 * Why not `@kubernetes/client-node` in the agent: importing it costs ~90 MiB of RSS (47 MiB of
 * heap: every generated model and its serializer) and ~0.8 s at start, measured here; the agent
 * uses four endpoints of it. `sealctl` keeps client-node (operators' kubeconfigs use exec and
 * auth-provider plugins) by handing the store a {@link KubeTransport} made from it.
 *
 * Credentials supported here, as the agent runs: in-cluster (the service account's token file,
 * re-read on every request because the kubelet rotates bound tokens, and its CA), or a kubeconfig
 * (JSON or YAML) whose user has a token, a token file or a client certificate, and whose cluster
 * has a CA (file or data) or `insecure-skip-tls-verify`. Anything else (exec or auth-provider
 * plugins, basic auth) is refused with a message naming it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import {
  Agent as HttpAgent,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type RequestOptions,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { load as loadYaml } from 'js-yaml';
import { SealnetError } from '../../common/errors.js';
import { isObject, type JsonObject } from '../../common/json.js';

/** How requests reach the API server: its base URL, and the options of one request (agent, TLS, credentials). */
export interface KubeTransport {
  readonly server: string;
  requestOptions(): Promise<RequestOptions>;
}

/** Where a pod's service account credentials are mounted. */
export const IN_CLUSTER_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** An API server answer other than 2xx: `code` and `headers` (429 Retry-After), the Status `message` in the text, the body kept. */
export class KubeHttpError extends Error {
  readonly headers: Record<string, string>;
  constructor(
    what: string,
    readonly code: number,
    headers: IncomingHttpHeaders,
    readonly body: string,
  ) {
    let detail = '';
    try {
      const m = (JSON.parse(body) as { message?: unknown }).message;
      if (typeof m === 'string') detail = `: ${m.length > 1000 ? `${m.slice(0, 999)}…` : m}`;
    } catch {
      // not a Status object
    }
    super(`${what}: HTTP ${code}${detail}`);
    this.headers = Object.fromEntries(
      Object.entries(headers).flatMap(([k, v]) => (typeof v === 'string' ? [[k, v]] : [])),
    );
  }
}

/** A watch ended with 410 Gone (its resourceVersion is too old): list again. */
export class WatchExpiredError extends Error {}

function named(list: unknown, name: string, what: string, file: string): JsonObject {
  const hit = Array.isArray(list) ? list.find((e) => isObject(e) && e.name === name) : undefined;
  const inner = isObject(hit) ? hit[what] : undefined;
  if (!isObject(inner))
    throw new SealnetError('CONFIG_INVALID', `kubeconfig ${file}: no ${what} named ${JSON.stringify(name)}`);
  return inner;
}

function str(o: JsonObject, k: string): string | undefined {
  const v = o[k];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** What a kubeconfig or the pod gives: server, TLS material, and how to get a bearer token. */
interface Credentials {
  readonly server: string;
  readonly ca?: Buffer | undefined;
  readonly insecure: boolean;
  readonly servername?: string | undefined;
  readonly cert?: Buffer | undefined;
  readonly key?: Buffer | undefined;
  readonly token?: string | undefined;
  readonly tokenFile?: string | undefined;
}

/** Reads a kubeconfig file (JSON or YAML), its current context only. */
export function kubeconfigCredentials(file: string): Credentials {
  let doc: unknown;
  try {
    doc = loadYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new SealnetError('CONFIG_INVALID', `cannot read kubeconfig ${file}`, { cause: err });
  }
  if (!isObject(doc)) throw new SealnetError('CONFIG_INVALID', `kubeconfig ${file} is not a mapping`);
  const ctxName = str(doc, 'current-context');
  if (ctxName === undefined) throw new SealnetError('CONFIG_INVALID', `kubeconfig ${file} has no current-context`);
  const ctx = named(doc.contexts, ctxName, 'context', file);
  const cluster = named(doc.clusters, str(ctx, 'cluster') ?? '', 'cluster', file);
  const user = named(doc.users, str(ctx, 'user') ?? '', 'user', file);
  const path = (p: string): string => (isAbsolute(p) ? p : join(dirname(file), p));
  const material = (o: JsonObject, fileKey: string, dataKey: string): Buffer | undefined => {
    const data = str(o, dataKey);
    if (data !== undefined) return Buffer.from(data, 'base64');
    const f = str(o, fileKey);
    if (f === undefined) return undefined;
    try {
      return readFileSync(path(f));
    } catch (err) {
      throw new SealnetError('CONFIG_INVALID', `kubeconfig ${file}: cannot read ${fileKey} ${f}`, { cause: err });
    }
  };
  for (const unsupported of ['exec', 'auth-provider', 'username', 'password'])
    if (user[unsupported] !== undefined)
      throw new SealnetError(
        'CONFIG_INVALID',
        `kubeconfig ${file}: user ${JSON.stringify(str(ctx, 'user'))} uses ${unsupported}, which the agent does not support; give it a token, a tokenFile or a client certificate (or run it in the cluster with its service account)`,
      );
  const server = str(cluster, 'server');
  if (server === undefined) throw new SealnetError('CONFIG_INVALID', `kubeconfig ${file}: cluster has no server`);
  const tokenFile = str(user, 'tokenFile');
  return {
    server,
    ca: material(cluster, 'certificate-authority', 'certificate-authority-data'),
    insecure: cluster['insecure-skip-tls-verify'] === true,
    servername: str(cluster, 'tls-server-name'),
    cert: material(user, 'client-certificate', 'client-certificate-data'),
    key: material(user, 'client-key', 'client-key-data'),
    token: str(user, 'token'),
    tokenFile: tokenFile === undefined ? undefined : path(tokenFile),
  };
}

/** The pod's service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, token and CA under {@link IN_CLUSTER_DIR}). */
export function inClusterCredentials(env: NodeJS.ProcessEnv, dir = IN_CLUSTER_DIR): Credentials {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (host === undefined || port === undefined)
    throw new SealnetError(
      'CONFIG_INVALID',
      'no kubeconfig and not in a pod (KUBERNETES_SERVICE_HOST/PORT unset): set store.kubeconfig or $KUBECONFIG',
    );
  let ca: Buffer;
  try {
    ca = readFileSync(join(dir, 'ca.crt'));
  } catch (err) {
    throw new SealnetError('CONFIG_INVALID', `in-cluster: cannot read the service account CA ${join(dir, 'ca.crt')}`, {
      cause: err,
    });
  }
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    ca,
    insecure: false,
    tokenFile: join(dir, 'token'),
  };
}

/**
 * The agent's transport, found as client-node's `loadFromDefault` finds it: the given kubeconfig,
 * else `$KUBECONFIG` (its first file), else `~/.kube/config` if it exists, else the pod's service
 * account.
 */
export function leanTransport(opts: { kubeconfig?: string | undefined; env?: NodeJS.ProcessEnv } = {}): KubeTransport {
  const env = opts.env ?? process.env;
  const fromEnv = env.KUBECONFIG?.split(':').find((p) => p !== '');
  const home = join(env.HOME ?? homedir(), '.kube', 'config');
  const file = opts.kubeconfig ?? fromEnv ?? (existsSync(home) ? home : undefined);
  return transportFor(file === undefined ? inClusterCredentials(env) : kubeconfigCredentials(file));
}

/** One keep-alive agent per transport; the bearer token read per request (a token file may be rotated). */
export function transportFor(c: Credentials): KubeTransport {
  const url = new URL(c.server);
  const tls = url.protocol === 'https:';
  const agent = tls
    ? new HttpsAgent({
        keepAlive: true,
        ...(c.ca === undefined ? {} : { ca: c.ca }),
        ...(c.cert === undefined ? {} : { cert: c.cert }),
        ...(c.key === undefined ? {} : { key: c.key }),
        ...(c.servername === undefined ? {} : { servername: c.servername }),
        rejectUnauthorized: !c.insecure,
      })
    : new HttpAgent({ keepAlive: true });
  return {
    server: c.server,
    async requestOptions(): Promise<RequestOptions> {
      let token = c.token;
      if (c.tokenFile !== undefined) {
        try {
          token = (await readFile(c.tokenFile, 'utf8')).trim();
        } catch (err) {
          throw new SealnetError('STORE_IO', `cannot read the API token file ${c.tokenFile}`, { cause: err });
        }
      }
      return { agent, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } };
    },
  };
}

/**
 * One request through a transport, ready to send: its URL, node:http or node:https `request`,
 * and options (the transport's agent and credentials, `accept: application/json`, then
 * `headers`). The node store's client and sealctl's pod-proxy fetcher both start here.
 */
export async function prepareRequest(
  transport: KubeTransport,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ url: URL; send: typeof httpRequest; options: RequestOptions }> {
  const url = new URL(path, transport.server);
  const base = await transport.requestOptions();
  return {
    url,
    send: url.protocol === 'https:' ? httpsRequest : httpRequest,
    options: {
      ...base,
      method,
      headers: { ...(base.headers as Record<string, string>), accept: 'application/json', ...headers },
    },
  };
}

/**
 * Size bounds of what the client reads. A page of 250 kubelet-sized Nodes with managed fields is
 * ~5 MiB and one Node is at most ~1.5 MiB (etcd's object limit); anything past these is a
 * misbehaving server or proxy, refused before it can hold the agent's memory.
 */
export interface KubeClientLimits {
  /** One answer of {@link KubeClient.request}. */
  readonly maxBodyBytes: number;
  /** One watch event line. */
  readonly maxEventBytes: number;
}
export const KUBE_CLIENT_LIMITS: KubeClientLimits = { maxBodyBytes: 64 * 2 ** 20, maxEventBytes: 16 * 2 ** 20 };
/** An error answer's body is kept up to this much (for its message). */
const MAX_ERROR_BODY = 64 * 1024;

/** Collects an error answer's body, keeping its first {@link MAX_ERROR_BODY} bytes; `done` gets it at the end. */
function collectErrorBody(res: IncomingMessage, done: (text: string) => void): void {
  const chunks: Buffer[] = [];
  let bytes = 0;
  res.on('data', (c: Buffer) => {
    if (bytes < MAX_ERROR_BODY) chunks.push(c);
    bytes += c.length;
  });
  res.on('end', () => done(Buffer.concat(chunks).toString('utf8')));
}

/** GET, PATCH and WATCH on the API server through a {@link KubeTransport}. */
export class KubeClient {
  constructor(
    readonly transport: KubeTransport,
    private readonly limits: KubeClientLimits = KUBE_CLIENT_LIMITS,
  ) {}

  /** One request; the parsed JSON answer of a 2xx, else a {@link KubeHttpError}. */
  async request(
    method: 'GET' | 'PATCH',
    path: string,
    o: { body?: unknown; contentType?: string; signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<unknown> {
    const payload = o.body === undefined ? undefined : Buffer.from(JSON.stringify(o.body));
    const { url, send, options } = await prepareRequest(
      this.transport,
      method,
      path,
      payload === undefined
        ? {}
        : { 'content-type': o.contentType ?? 'application/json', 'content-length': String(payload.length) },
    );
    const timeoutMs = o.timeoutMs ?? 60_000;
    return new Promise((resolve, reject) => {
      const req = send(url, { ...options, ...(o.signal === undefined ? {} : { signal: o.signal }) }, (res) => {
        const status = res.statusCode ?? 0;
        res.on('error', reject);
        if (status < 200 || status > 299) {
          collectErrorBody(res, (text) =>
            reject(new KubeHttpError(`${method} ${url.pathname}`, status, res.headers, text)),
          );
          return;
        }
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          if (bytes > this.limits.maxBodyBytes) {
            req.destroy(
              new SealnetError(
                'STORE_IO',
                `${method} ${url.pathname}: the answer is larger than ${this.limits.maxBodyBytes} bytes; refused: check what answers at ${url.origin}`,
              ),
            );
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve(JSON.parse(text));
          } catch (err) {
            reject(new SealnetError('STORE_IO', `${method} ${url.pathname}: the answer is not JSON`, { cause: err }));
          }
        });
      });
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /**
   * Streams a watch: one callback per event line (`{type, object}`). Resolves when the server
   * ends the stream (its `timeoutSeconds`); rejects on a connection error, a non-200 answer, no
   * byte for `idleMs`, or a callback's throw (a {@link WatchExpiredError} for 410 Gone included).
   */
  async watch(
    path: string,
    onEvent: (type: string, object: unknown) => void,
    o: { signal?: AbortSignal; idleMs: number },
  ): Promise<void> {
    const { url, send, options } = await prepareRequest(this.transport, 'GET', path);
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (err?: unknown): void => {
        if (settled) return;
        settled = true;
        req.destroy();
        if (err === undefined) resolve();
        else reject(err);
      };
      const req = send(url, { ...options, ...(o.signal === undefined ? {} : { signal: o.signal }) }, (res) => {
        const status = res.statusCode ?? 0;
        if (status !== 200) {
          collectErrorBody(res, (text) =>
            finish(new KubeHttpError(`watch ${url.pathname}`, status, res.headers, text)),
          );
          res.on('error', finish);
          return;
        }
        // UTF-16 units, not bytes: a bound within a factor of 3 is enough here.
        const tooLarge = (): void =>
          finish(
            new SealnetError(
              'STORE_IO',
              `watch ${url.pathname}: an event larger than ${this.limits.maxEventBytes} bytes; refused: check what answers at ${url.origin}`,
            ),
          );
        res.setEncoding('utf8');
        let rest = '';
        res.on('data', (chunk: string) => {
          rest += chunk;
          let nl: number;
          while ((nl = rest.indexOf('\n')) >= 0) {
            if (nl > this.limits.maxEventBytes) return tooLarge();
            const line = rest.slice(0, nl);
            rest = rest.slice(nl + 1);
            if (line.trim() === '') continue;
            try {
              const ev = JSON.parse(line) as { type?: unknown; object?: unknown };
              onEvent(typeof ev.type === 'string' ? ev.type : '', ev.object);
            } catch (err) {
              finish(err);
              return;
            }
          }
          if (rest.length > this.limits.maxEventBytes) tooLarge();
        });
        res.on('end', () => finish());
        res.on('error', finish);
      });
      req.setTimeout(o.idleMs, () => finish(new Error(`the watch sent nothing for ${o.idleMs / 1000} s`)));
      req.on('error', finish);
      req.end();
    });
  }
}
