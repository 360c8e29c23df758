/**
 * How `sealctl status` and `sealctl audit` get each agent's full report (`/status`): the Node
 * objects carry only a bounded summary (tunnels/status/summary.ts).
 *
 * - `--store kubernetes`: through the API server's pod proxy
 *   (`/api/v1/namespaces/NS/pods/POD:PORT/proxy/status`), the agent pod of each node found by
 *   label selector. The operator needs ordinary RBAC (the chart's operator role: get/list Nodes,
 *   list Pods and get pods/proxy in the agents' namespace, get the status token Secret) and no
 *   network route to the nodes. The API server consumes the operator's own `Authorization`
 *   header, so the agent's token travels in `X-Sealnet-Status-Token`.
 * - `--store file`: the agent's Unix socket in its state dir (`status.sock`), token from
 *   `status.token` beside it: agents in other network namespaces of the same host (the
 *   namespace harness, the demo) need no route either.
 *
 * Fan-out is bounded ({@link FetchOptions.concurrency} requests at once), every request has a
 * timeout, and every agent that does not answer gets one sentence saying why; its pairs are
 * reported PARTIAL with that reason (tunnels/status/join.ts).
 */
import { readFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { dirname, join } from 'node:path';
import { STATUS_TOKEN_FILE } from '../../common/constants.js';
import { SealnetError, describeError } from '../../common/errors.js';
import { FULL_REPORT_MAX_BYTES, type FetchedReport } from '../status/join.js';
import { STATUS_SOCKET_FILE } from '../status/service.js';
import { prepareRequest, type KubeTransport } from '../stores/kubeclient.js';

/** Gets one agent's full report. */
export interface ReportFetcher {
  /** Prepares (one LIST of agent pods, reading a token...); once per command. */
  prepare?(): Promise<void>;
  fetch(node: string, signal: AbortSignal): Promise<FetchedReport>;
}

/** Fan-out and timeout of {@link fetchReports}. */
export interface FetchOptions {
  /** Requests in flight at once (default 16). */
  readonly concurrency?: number;
  /** Per agent, milliseconds (default 10,000). */
  readonly timeoutMs?: number;
}

/** Fetches every named node's report: at most `concurrency` at once, each within `timeoutMs`. */
export async function fetchReports(
  names: readonly string[],
  fetcher: ReportFetcher,
  opts: FetchOptions = {},
): Promise<Map<string, FetchedReport>> {
  const concurrency = Math.max(1, opts.concurrency ?? 16);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const out = new Map<string, FetchedReport>();
  await fetcher.prepare?.();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < names.length) {
      const name = names[next++] as string;
      const ac = new AbortController();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<FetchedReport>((resolve) => {
        timer = setTimeout(() => {
          ac.abort();
          resolve({ ok: false, reason: `no answer within ${timeoutMs / 1000} s` });
        }, timeoutMs);
      });
      const r = await Promise.race([
        fetcher
          .fetch(name, ac.signal)
          .catch((err: unknown): FetchedReport => ({ ok: false, reason: describeError(err) })),
        timeout,
      ]);
      clearTimeout(timer);
      out.set(name, r);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, names.length) }, () => worker()));
  return out;
}

/** Reads a response body up to {@link FULL_REPORT_MAX_BYTES}. */
function readBody(res: IncomingMessage): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > FULL_REPORT_MAX_BYTES) {
        res.destroy();
        reject(new Error(`the answer is larger than ${FULL_REPORT_MAX_BYTES} bytes`));
        return;
      }
      chunks.push(c);
    });
    res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    res.on('error', reject);
  });
}

/** One line of an error answer, for a reason sentence. */
function firstLine(text: string): string {
  const l = text.trim().split('\n')[0] ?? '';
  return l.length > 160 ? `${l.slice(0, 159)}…` : l;
}

/** The meaning of an HTTP answer from an agent (or the proxy in front of it). */
function answer(status: number, text: string, via: string): FetchedReport {
  if (status === 200) return { ok: true, text };
  if (status === 401) return { ok: false, reason: `the agent refused the status token (HTTP 401${via})` };
  if (status === 403) return { ok: false, reason: `forbidden (HTTP 403${via}): ${firstLine(text)}` };
  return { ok: false, reason: `HTTP ${status}${via}: ${firstLine(text) || 'no body'}` };
}

/**
 * `--store file`: each agent's Unix socket and token under its state dir; `dirFor` names the
 * dir (default: `<store dir>/../<node>/state`, the namespace harness's and the demo's layout).
 */
export class SocketFetcher implements ReportFetcher {
  constructor(private readonly dirFor: (node: string) => string) {}

  /** The default layout: a node's state dir beside the store dir. */
  static besideStore(storeDir: string, template?: string): SocketFetcher {
    if (template !== undefined) {
      if (!template.includes('{node}'))
        throw new SealnetError('CONFIG_INVALID', `--agent-dir must contain {node}, got ${JSON.stringify(template)}`);
      return new SocketFetcher((node) => template.split('{node}').join(node));
    }
    return new SocketFetcher((node) => join(dirname(storeDir), node, 'state'));
  }

  async fetch(node: string, signal: AbortSignal): Promise<FetchedReport> {
    const dir = this.dirFor(node);
    const socketPath = join(dir, STATUS_SOCKET_FILE);
    let token: string;
    try {
      token = (await readFile(join(dir, STATUS_TOKEN_FILE), 'utf8')).trim();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return {
        ok: false,
        reason:
          code === 'ENOENT'
            ? `no agent state dir with a status token at ${dir} (pass --agent-dir)`
            : `cannot read the status token in ${dir}: ${describeError(err)}`,
        noAgent: code === 'ENOENT',
      };
    }
    return new Promise<FetchedReport>((resolve) => {
      const req = httpRequest(
        { socketPath, path: '/status', method: 'GET', headers: { authorization: `Bearer ${token}` }, signal },
        (res) => {
          readBody(res).then(
            (b) => resolve(answer(b.status, b.text, '')),
            (err: unknown) => resolve({ ok: false, reason: describeError(err) }),
          );
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')
          resolve({ ok: false, reason: `the agent is not listening on ${socketPath} (not running?)` });
        else resolve({ ok: false, reason: `${socketPath}: ${describeError(err)}` });
      });
      req.end();
    });
  }
}

/** Where the agents run, for {@link PodProxyFetcher}. */
export interface AgentPods {
  readonly namespace: string;
  readonly selector: string;
  readonly port: number;
  /** The shared status token: a file, else the Secret `namespace/tokenSecret` (key `token`). */
  readonly tokenFile?: string | undefined;
  readonly tokenSecret: string;
}

/** The chart's defaults (release `sealnet` in namespace `sealnet`). */
export const DEFAULT_AGENT_PODS: AgentPods = {
  namespace: 'sealnet',
  selector: 'app.kubernetes.io/name=sealnet',
  port: 9589,
  tokenSecret: 'sealnet-status-token',
};

/** `--store kubernetes`: the API server's pod proxy to each node's agent pod. */
export class PodProxyFetcher implements ReportFetcher {
  private pods = new Map<string, string>();
  private token = '';
  private listProblem: string | undefined;

  constructor(
    private readonly transport: KubeTransport,
    private readonly where: AgentPods,
  ) {}

  /** One GET on the API server with the operator's credentials. */
  private async get(
    path: string,
    headers: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<{ status: number; text: string }> {
    const { url, send, options } = await prepareRequest(this.transport, 'GET', path, headers);
    return new Promise((resolve, reject) => {
      const r = send(url, { ...options, signal }, (res) => void readBody(res).then(resolve, reject));
      r.on('error', reject);
      r.end();
    });
  }

  async prepare(): Promise<void> {
    const { namespace, selector } = this.where;
    if (this.where.tokenFile !== undefined) {
      this.token = (
        await readFile(this.where.tokenFile, 'utf8').catch((err: unknown) => {
          throw new SealnetError('CONFIG_INVALID', `cannot read --status-token-file ${this.where.tokenFile}`, {
            cause: err,
          });
        })
      ).trim();
    } else {
      const s = await this.get(
        `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(this.where.tokenSecret)}`,
        {},
      );
      if (s.status !== 200)
        throw new SealnetError(
          'STORE_IO',
          `cannot read the status token Secret ${namespace}/${this.where.tokenSecret} (HTTP ${s.status}: ${firstLine(s.text)}); pass --status-token-file or grant the chart's operator role`,
        );
      const data = (JSON.parse(s.text) as { data?: Record<string, string> }).data?.token;
      if (data === undefined)
        throw new SealnetError('STORE_IO', `Secret ${namespace}/${this.where.tokenSecret} has no key "token"`);
      this.token = Buffer.from(data, 'base64').toString('utf8').trim();
    }
    const l = await this.get(
      `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods?labelSelector=${encodeURIComponent(selector)}`,
      {},
    );
    if (l.status !== 200) {
      this.listProblem = `cannot list agent pods in namespace ${namespace} (HTTP ${l.status}: ${firstLine(l.text)})`;
      return;
    }
    const items =
      (
        JSON.parse(l.text) as {
          items?: {
            metadata?: { name?: string; creationTimestamp?: string; deletionTimestamp?: string };
            spec?: { nodeName?: string };
            status?: { phase?: string };
          }[];
        }
      ).items ?? [];
    // Per node the newest running pod that is not being deleted (a rolling update overlaps none: maxSurge 0).
    const best = new Map<string, { name: string; created: string }>();
    for (const p of items) {
      const node = p.spec?.nodeName;
      const name = p.metadata?.name;
      if (
        node === undefined ||
        name === undefined ||
        p.metadata?.deletionTimestamp !== undefined ||
        p.status?.phase !== 'Running'
      )
        continue;
      const created = p.metadata?.creationTimestamp ?? '';
      const prev = best.get(node);
      if (prev === undefined || prev.created < created) best.set(node, { name, created });
    }
    this.pods = new Map([...best].map(([n, p]) => [n, p.name]));
  }

  async fetch(node: string, signal: AbortSignal): Promise<FetchedReport> {
    if (this.listProblem !== undefined) return { ok: false, reason: this.listProblem };
    const pod = this.pods.get(node);
    if (pod === undefined)
      return {
        ok: false,
        reason: `no running agent pod on node ${node} (namespace ${this.where.namespace}, selector ${this.where.selector})`,
        noAgent: true,
      };
    const path = `/api/v1/namespaces/${encodeURIComponent(this.where.namespace)}/pods/${encodeURIComponent(pod)}:${this.where.port}/proxy/status`;
    const r = await this.get(path, { 'x-sealnet-status-token': this.token }, signal);
    return answer(r.status, r.text, ` via pod ${pod}`);
  }
}

/** The flags of `status` and `audit` that say how to reach the agents. */
export const FETCH_FLAGS = {
  'agent-dir': { type: 'string' },
  'agent-namespace': { type: 'string' },
  'agent-selector': { type: 'string' },
  'agent-port': { type: 'string' },
  'status-token-file': { type: 'string' },
  'fetch-timeout': { type: 'string' },
  'fetch-concurrency': { type: 'string' },
} as const;

/** Parsed {@link FETCH_FLAGS}. */
export interface FetchSettings extends FetchOptions {
  readonly agentDir?: string | undefined;
  readonly pods: AgentPods;
}

function intFlag(v: string | undefined, flag: string, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max)
    throw new SealnetError('CONFIG_INVALID', `--${flag} must be ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
}

/** Reads {@link FETCH_FLAGS} from parsed flag values. */
export function fetchSettings(values: Readonly<Record<string, unknown>>): FetchSettings {
  const str = (k: string): string | undefined => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  return {
    agentDir: str('agent-dir'),
    timeoutMs: intFlag(str('fetch-timeout'), 'fetch-timeout', 1, 600, 10) * 1000,
    concurrency: intFlag(str('fetch-concurrency'), 'fetch-concurrency', 1, 256, 16),
    pods: {
      namespace: str('agent-namespace') ?? DEFAULT_AGENT_PODS.namespace,
      selector: str('agent-selector') ?? DEFAULT_AGENT_PODS.selector,
      port: intFlag(str('agent-port'), 'agent-port', 1, 65535, DEFAULT_AGENT_PODS.port),
      tokenFile: str('status-token-file'),
      tokenSecret: DEFAULT_AGENT_PODS.tokenSecret,
    },
  };
}

/** The fetcher for a store: pod proxy for the Kubernetes store, Unix sockets for the file store. */
export function fetcherFor(store: object, s: FetchSettings): ReportFetcher {
  const st = store as { directory?: unknown; transport?: unknown };
  if (typeof st.directory === 'string') return SocketFetcher.besideStore(st.directory, s.agentDir);
  if (st.transport !== undefined) return new PodProxyFetcher(st.transport as KubeTransport, s.pods);
  throw new SealnetError('INTERNAL', 'this node store has no way to reach its agents');
}
