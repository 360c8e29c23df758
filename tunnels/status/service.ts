/**
 * The agent's side of status: observes the kernel (one `wg show dump`, the steering map and its
 * counters), builds the report (tunnels/status/report.ts), publishes its bounded summary
 * (tunnels/status/summary.ts) on the node's own annotation, answers `/readyz`, and serves the
 * full report on `/status` behind a bearer token (`sealctl status` / `audit` fetch it there).
 *
 * Publication: the first summary as soon as the first reconcile pass converged, and every change
 * after it at once until the agent has settled (a summary saying ready with every peer encrypted
 * is out, or {@link STARTUP_WINDOW_MS} passed): an audit run right after a start reads the state
 * the tunnels are in, not the first pass's "pending". Later changes only at most once per
 * `minIntervalSeconds`. Nothing is republished on a
 * heartbeat: every watcher of Nodes receives each patch, and liveness is proven by fetching the
 * full report, not by the age of an annotation. A clean stop publishes `agent: stopped`.
 */
import { randomBytes, createHash, timingSafeEqual } from 'node:crypto';
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename, dirname, join, resolve } from 'node:path';
import type { PublicKey } from '../../keymgr/keys.js';
import { writeAtomic } from '../../keymgr/atomicfile.js';
import type { AgentConfig } from '../ports/config.js';
import { ANNOTATIONS, STATUS_TOKEN_FILE, WG_INTERFACE } from '../../common/constants.js';
import { describeError, SealnetError } from '../../common/errors.js';
import { backoffCeiling } from '../../common/backoff.js';
import type { Logger } from '../../common/logger.js';
import type { PqPairStatus } from '../ports/pq.js';
import type { AgentMetrics } from '../../common/metrics.js';
import type { RawNode } from '../ports/model.js';
import type { IpsecPort } from '../ports/ipsec.js';
import type {
  NodeStore,
  ObservedIpsec,
  ObservedPeer,
  SteeringCounter,
  SteeringEntry,
  SteeringPort,
  WireGuardPort,
} from '../ports/index.js';
import type { ReconcileReport } from '../ports/model.js';
import { algorithmOf, buildNodeStatus, readiness, type NodeStatusInput, type NodeStatusReport } from './report.js';
import { encodeSummary, summarize, summaryChangeKey } from './summary.js';

/** The node's current key as status needs it (a getter: rotation may replace it at runtime). */
export interface StatusKey {
  readonly publicKey: PublicKey;
  readonly epoch: number;
  readonly createdAt: Date;
}

/** What {@link StatusService} reads. */
export interface StatusDeps {
  readonly config: AgentConfig;
  readonly key: () => StatusKey;
  /** The WireGuard link holding that key (a key rotation moves it to the other link); default {@link WG_INTERFACE}. */
  readonly link?: () => string;
  readonly wg: Pick<WireGuardPort, 'show'>;
  /**
   * Reads the per-peer tunnel state; default: the WireGuard link's peers (`wg show dump`). Mode
   * ipsec plugs its own reading here (SAs per peer, as {@link ObservedPeer}s); until it does,
   * its peers are never reported encrypted.
   */
  readonly observePeers?: () => Promise<ObservedPeer[] | undefined>;
  /**
   * Mode ipsec: reads the owned XFRM SAs (counters, algorithm, no keys) and policies
   * (`IpsecPort.observe`); the report matches them to the planned pairs. Without it, mode ipsec
   * peers are never reported encrypted.
   */
  readonly observeIpsec?: () => Promise<ObservedIpsec>;
  /** Mode ipsec: matches observed SAs and policies to a planned pair (`IpsecPort.pairEvidence`). */
  readonly ipsecEvidence?: Pick<IpsecPort, 'pairEvidence'> | undefined;
  readonly steering: Pick<SteeringPort, 'listEntries' | 'counters'> | undefined;
  readonly reconciler: { report(): ReconcileReport | undefined };
  readonly store: Pick<NodeStore, 'list' | 'patchAnnotations'>;
  readonly metrics: AgentMetrics;
  readonly log: Logger;
  readonly now?: () => Date;
  /** Post-quantum protection per pair (tunnels/pq/service.ts `status`); undefined when off. */
  readonly pq?: (() => readonly PqPairStatus[]) | undefined;
}

/** One observation of the kernel. */
interface Observation {
  readonly at: number;
  readonly peers: ObservedPeer[] | undefined;
  readonly ipsec: ObservedIpsec | undefined;
  readonly entries: SteeringEntry[] | undefined;
  readonly counters: SteeringCounter[] | undefined;
  readonly errors: string[];
}

/** The agent's Unix socket serving `/status` (and the other endpoints), in its state dir. */
export const STATUS_SOCKET_FILE = 'status.sock';

/** How often publication is checked until the first summary is out. */
const FIRST_CHECK_MS = 100;
/** How often it is checked after that while the agent settles (at least; see below). */
const SETTLING_CHECK_MS = 250;
/**
 * While settling, a check builds the whole report (every peer: `wg show`, steering, the
 * planner's view), O(N). The wait after a check is at least this many times what the check took,
 * so the fast lane costs at most ~1/(1+factor) of the agent's time. With a fixed 250 ms, the
 * scale bench's agent at 5,000 peers (which never settle there: no handshakes) used 46 % of a
 * core through the minute after its start; a 3-node cluster still checks every 250 ms.
 */
const SETTLING_COST_FACTOR = 20;
/**
 * After a publication failed (API server unreachable, throttled), the next check waits
 * PUBLISH_RETRY_FIRST_MS, doubling per further failure up to PUBLISH_RETRY_MAX_MS, whatever lane
 * the agent is in: without it a settling agent retried every 250 ms through an API server outage
 * (k8s tier: 197 connection attempts in 50 s from one agent).
 */
const PUBLISH_RETRY_FIRST_MS = 500;
const PUBLISH_RETRY_MAX_MS = 16_000;
/**
 * How long after its first summary an agent publishes every change at once unless it settled
 * before (a peer that never answers must not keep it in the fast lane for good).
 */
export const STARTUP_WINDOW_MS = 60_000;

/** Observations younger than this are reused (one scrape reads the kernel once). */
const OBSERVATION_TTL_MS = 1000;

/** Status: observation, report, readiness, publication. One per agent. */
export class StatusService {
  private readonly d: StatusDeps;
  private readonly now: () => Date;
  private cached: { at: number; p: Promise<Observation> } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastChangeKey: string | undefined;
  private lastPublishMs = 0;
  private firstPublishMs: number | undefined;
  private settled = false;
  /** Wall time of the last check that built a report (ms). */
  private lastCheckMs = 0;
  /** Publications that failed in a row (reset by one that succeeds). */
  private publishFailures = 0;
  private publishing: Promise<void> | undefined;
  private stopped = false;

  constructor(deps: StatusDeps) {
    this.d = deps;
    this.now = deps.now ?? (() => new Date());
  }

  /** Reads the kernel, reusing an observation younger than {@link OBSERVATION_TTL_MS}. */
  observe(): Promise<Observation> {
    const t = Date.now();
    if (this.cached !== undefined && t - this.cached.at < OBSERVATION_TTL_MS) return this.cached.p;
    const p = this.read(t);
    this.cached = { at: t, p };
    return p;
  }

  private async read(at: number): Promise<Observation> {
    const errors: string[] = [];
    // Mode ipsec has no WireGuard link: without its own observer, peers stay unobserved (status.ts).
    const observe =
      this.d.observePeers ??
      (this.d.config.mode === 'ipsec'
        ? undefined
        : async () => (await this.d.wg.show(this.d.link?.() ?? WG_INTERFACE))?.peers);
    const peers =
      observe === undefined
        ? undefined
        : await observe().then(
            (r) =>
              r === undefined
                ? (errors.push(
                    this.d.observePeers === undefined
                      ? `${this.d.link?.() ?? WG_INTERFACE} does not exist`
                      : 'the tunnel state is unavailable',
                  ),
                  undefined)
                : r,
            (err: unknown) => (errors.push(`reading the tunnel: ${describeError(err)}`), undefined),
          );
    const observeIpsec = this.d.config.mode === 'ipsec' ? this.d.observeIpsec : undefined;
    const ipsec =
      observeIpsec === undefined
        ? undefined
        : await observeIpsec().catch((err: unknown) => (errors.push(`reading XFRM: ${describeError(err)}`), undefined));
    const st = this.d.steering;
    const entries =
      st === undefined
        ? undefined
        : await st
            .listEntries()
            .catch((err: unknown) => (errors.push(`steering map: ${describeError(err)}`), undefined));
    const counters =
      st === undefined
        ? undefined
        : await st
            .counters()
            .catch((err: unknown) => (errors.push(`steering counters: ${describeError(err)}`), undefined));
    return { at, peers, ipsec, entries, counters, errors };
  }

  /** The input of the pure report builder for an observation. */
  private input(o: Observation, agent: 'running' | 'stopped'): NodeStatusInput {
    const { config } = this.d;
    const r = this.d.reconciler.report();
    return {
      self: config.nodeName,
      now: this.now(),
      agent,
      heartbeatSeconds: config.status.heartbeatSeconds,
      mode: config.mode,
      algorithm: algorithmOf(config.mode, config.ipsec.keyBits),
      key: this.d.key(),
      steering: {
        enabled: config.steering.enabled,
        failClosed: config.steering.enabled && config.steering.failClosed,
        nodeToNode: config.steering.enabled && config.steering.nodeToNode,
      },
      persistentKeepalive: config.wireguard.persistentKeepalive,
      nodes: this.d.store.list(),
      reconcile: r,
      observedPeers: o.peers,
      observedIpsec: o.ipsec,
      ipsecEvidence: this.d.ipsecEvidence,
      steeringEntries: o.entries,
      counters: o.counters,
      observeErrors: o.errors,
    };
  }

  /** The report as of now (live counters). */
  async report(agent: 'running' | 'stopped' = 'running'): Promise<NodeStatusReport> {
    return withPq(buildNodeStatus(this.input(await this.observe(), agent)), this.d.pq?.());
  }

  /** `/readyz`: ready only when every known peer is programmed. */
  async readiness(): Promise<{ ready: boolean; reasons: string[] }> {
    return readiness(this.input(await this.observe(), 'running'));
  }

  /**
   * True while every change is published at once: after a start, until a summary saying ready
   * with every peer encrypted is out or {@link STARTUP_WINDOW_MS} passed since the first one.
   */
  private settling(): boolean {
    if (this.settled) return false;
    if (this.firstPublishMs !== undefined && this.now().getTime() - this.firstPublishMs >= STARTUP_WINDOW_MS)
      this.settled = true;
    return !this.settled;
  }

  /**
   * Starts the publication loop: checks every {@link FIRST_CHECK_MS} until the first summary is
   * out (so it follows the first converged pass at once), every {@link SETTLING_CHECK_MS} while
   * the agent settles, then every `minIntervalSeconds`.
   */
  start(): void {
    if (!this.d.config.status.publish || this.timer !== undefined) return;
    const tick = (): void => {
      const ms = this.nextCheckDelayMs();
      this.timer = setTimeout(() => {
        void this.publishIfDue().finally(() => {
          if (!this.stopped) tick();
        });
      }, ms);
      this.timer.unref?.();
    };
    void this.publishIfDue();
    tick();
  }

  /**
   * The wait before the next publication check: {@link FIRST_CHECK_MS} until the first summary
   * is out; while settling {@link SETTLING_CHECK_MS}, or {@link SETTLING_COST_FACTOR} times what
   * the last check took if that is longer; then `minIntervalSeconds`. After failed publications,
   * at least the retry backoff ({@link PUBLISH_RETRY_FIRST_MS} doubling to {@link PUBLISH_RETRY_MAX_MS}).
   */
  nextCheckDelayMs(): number {
    const lane = this.laneDelayMs();
    if (this.publishFailures === 0) return lane;
    const backoff = backoffCeiling(this.publishFailures - 1, {
      baseMs: PUBLISH_RETRY_FIRST_MS,
      capMs: PUBLISH_RETRY_MAX_MS,
    });
    return Math.max(lane, backoff);
  }

  private laneDelayMs(): number {
    if (this.lastChangeKey === undefined) return FIRST_CHECK_MS;
    if (this.settling()) return Math.max(SETTLING_CHECK_MS, SETTLING_COST_FACTOR * this.lastCheckMs);
    return this.d.config.status.minIntervalSeconds * 1000;
  }

  /** Stops the loop and publishes a last summary saying the agent stopped (bounded wait). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    await this.publishing?.catch(() => undefined);
    if (!this.d.config.status.publish) return;
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((r) => {
      timer = setTimeout(r, 3000);
    });
    await Promise.race([this.publish(await this.report('stopped')).catch(() => undefined), limit]);
    clearTimeout(timer);
  }

  /**
   * Publishes the summary when it changed: the first one as soon as a pass converged, every
   * change at once while the agent settles, later ones at most once per `minIntervalSeconds`.
   * Never throws.
   */
  publishIfDue(): Promise<void> {
    if (this.publishing !== undefined) return this.publishing;
    this.publishing = (async () => {
      const { config } = this.d;
      // Nothing to report before the first converged pass: a restarted agent would otherwise
      // publish a snapshot taken before it looked at the kernel (and an audit could read it).
      const pass = this.d.reconciler.report();
      if (pass === undefined || (this.lastChangeKey === undefined && !pass.converged)) return;
      const self = this.d.store.list().find((n) => n.name === config.nodeName);
      if (self === undefined) return; // nothing to patch yet; the reconciler reports it
      const since = this.now().getTime() - this.lastPublishMs;
      if (this.lastChangeKey !== undefined && !this.settling() && since < config.status.minIntervalSeconds * 1000)
        return;
      const started = this.now().getTime();
      const report = await this.report('running');
      this.lastCheckMs = Math.max(0, this.now().getTime() - started);
      if (summaryChangeKey(summarize(report)) === this.lastChangeKey) return;
      await this.publish(report).catch(() => undefined);
    })().finally(() => {
      this.publishing = undefined;
    });
    return this.publishing;
  }

  private async publish(report: NodeStatusReport): Promise<void> {
    const { config, metrics, log } = this.d;
    const summary = summarize(report);
    const text = encodeSummary(summary);
    try {
      await this.d.store.patchAnnotations(config.nodeName, { [ANNOTATIONS.status]: text });
    } catch (err) {
      this.publishFailures++;
      metrics.statusPublications.inc({ result: 'error' });
      metrics.errors.inc({ step: 'status' });
      log.warn(
        { err: describeError(err), failures: this.publishFailures, retryInMs: this.nextCheckDelayMs() },
        'cannot publish the status summary; retrying with backoff',
      );
      throw err;
    }
    this.publishFailures = 0;
    metrics.statusPublications.inc({ result: 'ok' });
    metrics.statusReportBytes.set(Buffer.byteLength(text));
    metrics.statusLastPublished.set(Date.parse(report.at) / 1000);
    log.info(
      { ready: summary.ready, counts: summary.counts, worst: summary.worst.map((w) => `${w.node}:${w.state}`) },
      'published status summary',
    );
    this.lastChangeKey = summaryChangeKey(summary);
    this.lastPublishMs = this.now().getTime();
    this.firstPublishMs ??= this.lastPublishMs;
    const c = summary.counts;
    if (summary.ready && c.pending === 0 && c.dropping === 0 && c.misconfigured === 0) this.settled = true;
  }
}

/**
 * A filter for store events: true when something other than status summaries changed. Status
 * annotations are not an input of the planner, so a status-only change must not cost every
 * agent a reconcile pass (each summary patch reaches every agent).
 *
 * Incremental: stores keep a node's object while it is unchanged, so an event compares the list
 * to the last one by identity (O(N) pointer compares, microseconds at 5,000 nodes) and computes
 * the relevant fields only of the nodes whose objects changed.
 */
export function relevantChangeFilter(): (nodes: readonly RawNode[]) => boolean {
  let last: readonly RawNode[] = [];
  const keys = new WeakMap<RawNode, string>();
  const keyOf = (n: RawNode): string => {
    let k = keys.get(n);
    if (k === undefined) {
      const ann = Object.entries(n.annotations)
        .filter(([x]) => x !== ANNOTATIONS.status)
        .sort(([x], [y]) => (x < y ? -1 : 1));
      keys.set(n, (k = JSON.stringify([n.name, ann, n.podCIDRs, n.internalIPs])));
    }
    return k;
  };
  let first = true;
  return (nodes) => {
    const prev = last;
    last = nodes;
    if (first) {
      first = false;
      return true;
    }
    if (nodes === prev) return false;
    if (nodes.length !== prev.length) return true;
    for (let i = 0; i < nodes.length; i++) {
      const a = nodes[i] as RawNode;
      const b = prev[i] as RawNode;
      if (a !== b && keyOf(a) !== keyOf(b)) return true;
    }
    return false;
  };
}

/**
 * The `/status` bearer token: `<stateDir>/status.token` (or `status.tokenFile`), 32 random bytes
 * as hex, 0600, created if missing. A looser mode is tightened (with a warning in the result).
 */
export async function loadOrCreateStatusToken(
  config: AgentConfig,
): Promise<{ token: string; file: string; created: boolean; warning?: string }> {
  const file = resolve(config.status.tokenFile ?? join(config.stateDir, STATUS_TOKEN_FILE));
  // A token file that exists is only read: it may sit on a read-only mount (the chart's Secret).
  const exists = await stat(file).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw new SealnetError('CONFIG_INVALID', `cannot read status token file ${file}`, { cause: err });
    },
  );
  let created = false;
  if (!exists) {
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    created = await writeAtomic(dirname(file), basename(file), Buffer.from(`${randomBytes(32).toString('hex')}\n`), {
      how: 'create',
    });
  }
  const st = await stat(file);
  let warning: string | undefined;
  if ((st.mode & 0o077) !== 0) {
    await chmod(file, 0o600);
    warning = `status token ${file} had mode 0${(st.mode & 0o777).toString(8)}; set to 0600`;
  }
  const token = (await readFile(file, 'utf8')).trim();
  if (!/^[0-9a-f]{32,128}$/.test(token))
    throw new SealnetError('CONFIG_INVALID', `status token file ${file} must hold 32 to 128 lowercase hex digits`);
  return { token, file, created, ...(warning === undefined ? {} : { warning }) };
}

/** Constant-time check of an `Authorization: Bearer <token>` header. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer ([^\s]+)$/.exec(header ?? '');
  const a = createHash('sha256')
    .update(m?.[1] ?? '')
    .digest();
  const b = createHash('sha256').update(token).digest();
  return m !== null && timingSafeEqual(a, b);
}

/** Serves `/status` (GET, bearer token or `X-Sealnet-Status-Token`): the live full report as JSON. */
export function serveStatus(
  req: IncomingMessage,
  res: ServerResponse,
  opts: { status: StatusService; token: string | undefined },
): void {
  const send = (code: number, body: string, headers: Record<string, string> = {}): void => {
    res.writeHead(code, {
      'content-type': code === 200 ? 'application/json' : 'text/plain; charset=utf-8',
      'cache-control': 'no-store',
      ...headers,
    });
    res.end(body);
  };
  if (req.method !== 'GET') return send(405, 'method not allowed\n', { allow: 'GET' });
  if (opts.token === undefined) return send(503, 'status endpoint disabled: no token\n');
  // Through the API server's pod proxy the operator's own Authorization header is consumed by
  // the API server: the agent's token then comes in X-Sealnet-Status-Token (tunnels/cli/fetch.ts).
  const alt = req.headers['x-sealnet-status-token'];
  const header = typeof alt === 'string' ? `Bearer ${alt}` : req.headers.authorization;
  if (!bearerMatches(header, opts.token))
    return send(401, 'unauthorized: send "Authorization: Bearer <token from the agent\'s status token file>"\n', {
      'www-authenticate': 'Bearer realm="sealnet-status"',
    });
  opts.status.report('running').then(
    (r) => send(200, `${JSON.stringify(r, null, 2)}\n`),
    (err: unknown) => send(500, `${describeError(err)}\n`),
  );
}

/** Adds each pair's post-quantum protection to its peer entry. */
function withPq(r: NodeStatusReport, pq: readonly PqPairStatus[] | undefined): NodeStatusReport {
  if (pq === undefined) return r;
  const by = new Map(pq.map((p) => [p.node, p]));
  return {
    ...r,
    peers: r.peers.map((peer) => {
      const p = by.get(peer.node);
      if (p === undefined) return peer;
      const { node: _node, ready: _ready, ...rest } = p;
      return { ...peer, pq: rest };
    }),
  };
}
