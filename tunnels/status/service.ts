/**
 * The agent's side of status: observes the kernel (one `wg show dump`, the steering map and its
 * counters), builds the report (tunnels/status/report.ts), publishes it on the node's own annotation
 * rate-limited, answers `/readyz`, and serves the report on `/status` behind a bearer token.
 *
 * Publication: at once when the state digest changes (but at most once per
 * `minIntervalSeconds`), otherwise every `heartbeatSeconds`, so counters and handshake times in
 * the annotation are up to one heartbeat old; every watcher of Nodes receives each patch, so the
 * heartbeat is long by default. A clean stop publishes a last report with `agent: stopped`.
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
import type { Logger } from '../../common/logger.js';
import type { AgentMetrics } from '../../common/metrics.js';
import type { RawNode } from '../ports/model.js';
import type { IpsecPort } from '../ports/ipsec.js';
import type { NodeStore, ObservedIpsec, ObservedPeer, SteeringCounter, SteeringEntry, SteeringPort, WireGuardPort } from '../ports/index.js';
import type { ReconcileReport } from '../ports/model.js';
import { algorithmOf, buildNodeStatus, encodeStatus, readiness, statusDigest, type NodeStatusInput, type NodeStatusReport } from './report.js';

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

/** Observations younger than this are reused (one scrape reads the kernel once). */
const OBSERVATION_TTL_MS = 1000;

/** Status: observation, report, readiness, publication. One per agent. */
export class StatusService {
  private readonly d: StatusDeps;
  private readonly now: () => Date;
  private cached: { at: number; p: Promise<Observation> } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastDigest: string | undefined;
  private lastPublishMs = 0;
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
    const observe = this.d.observePeers ?? (this.d.config.mode === 'ipsec' ? undefined : async () => (await this.d.wg.show(this.d.link?.() ?? WG_INTERFACE))?.peers);
    const peers = observe === undefined ? undefined : await observe().then(
      (r) => (r === undefined ? (errors.push(this.d.observePeers === undefined ? `${this.d.link?.() ?? WG_INTERFACE} does not exist` : 'the tunnel state is unavailable'), undefined) : r),
      (err: unknown) => (errors.push(`reading the tunnel: ${describeError(err)}`), undefined),
    );
    const observeIpsec = this.d.config.mode === 'ipsec' ? this.d.observeIpsec : undefined;
    const ipsec = observeIpsec === undefined ? undefined : await observeIpsec().catch((err: unknown) => (errors.push(`reading XFRM: ${describeError(err)}`), undefined));
    const st = this.d.steering;
    const entries = st === undefined ? undefined : await st.listEntries().catch((err: unknown) => (errors.push(`steering map: ${describeError(err)}`), undefined));
    const counters = st === undefined ? undefined : await st.counters().catch((err: unknown) => (errors.push(`steering counters: ${describeError(err)}`), undefined));
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
      steering: { enabled: config.steering.enabled, failClosed: config.steering.enabled && config.steering.failClosed, nodeToNode: config.steering.enabled && config.steering.nodeToNode },
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
    return buildNodeStatus(this.input(await this.observe(), agent));
  }

  /** `/readyz`: ready only when every known peer is programmed. */
  async readiness(): Promise<{ ready: boolean; reasons: string[] }> {
    return readiness(this.input(await this.observe(), 'running'));
  }

  /** Starts the publication loop (checks every `minIntervalSeconds`). */
  start(): void {
    if (!this.d.config.status.publish || this.timer !== undefined) return;
    const tick = (): void => {
      this.timer = setTimeout(() => {
        void this.publishIfDue().finally(() => {
          if (!this.stopped) tick();
        });
      }, this.d.config.status.minIntervalSeconds * 1000);
      this.timer.unref?.();
    };
    void this.publishIfDue();
    tick();
  }

  /** Stops the loop and publishes a last report saying the agent stopped (bounded wait). */
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

  /** Publishes when the state changed or the heartbeat is due. Never throws. */
  publishIfDue(): Promise<void> {
    if (this.publishing !== undefined) return this.publishing;
    this.publishing = (async () => {
      const { config } = this.d;
      const self = this.d.store.list().find((n) => n.name === config.nodeName);
      if (self === undefined) return; // nothing to patch yet; the reconciler reports it
      // Nothing to report before the first reconcile pass: a restarted agent would otherwise
      // publish a snapshot taken before it looked at the kernel (and an audit could read it).
      if (this.d.reconciler.report() === undefined) return;
      const report = await this.report('running');
      const digest = statusDigest(report);
      const since = this.now().getTime() - this.lastPublishMs;
      const changed = digest !== this.lastDigest;
      if (!(changed && since >= config.status.minIntervalSeconds * 1000) && since < config.status.heartbeatSeconds * 1000) return;
      await this.publish(report).catch(() => undefined);
    })().finally(() => {
      this.publishing = undefined;
    });
    return this.publishing;
  }

  private async publish(report: NodeStatusReport): Promise<void> {
    const { config, metrics, log } = this.d;
    const text = encodeStatus(report);
    try {
      await this.d.store.patchAnnotations(config.nodeName, { [ANNOTATIONS.status]: text });
    } catch (err) {
      metrics.statusPublications.inc({ result: 'error' });
      metrics.errors.inc({ step: 'status' });
      log.warn({ err: describeError(err) }, 'cannot publish the status annotation; retrying on the next check');
      throw err;
    }
    metrics.statusPublications.inc({ result: 'ok' });
    metrics.statusReportBytes.set(Buffer.byteLength(text));
    metrics.statusLastPublished.set(Date.parse(report.at) / 1000);
    const digest = statusDigest(report);
    if (digest !== this.lastDigest) log.info({ ready: report.ready, peers: Object.fromEntries(report.peers.map((p) => [p.node, p.state])) }, 'published status');
    this.lastDigest = digest;
    this.lastPublishMs = this.now().getTime();
  }
}

/**
 * A filter for store events: true when something other than status reports changed. Status
 * annotations are not an input of the planner, so a status-only change must not cost every
 * agent a reconcile pass (each report patch reaches every agent).
 */
export function relevantChangeFilter(): (nodes: readonly RawNode[]) => boolean {
  let last: string | undefined;
  return (nodes) => {
    const digest = createHash('sha256')
      .update(JSON.stringify(nodes.map((n) => [n.name, Object.entries(n.annotations).filter(([k]) => k !== ANNOTATIONS.status).sort(([a], [b]) => (a < b ? -1 : 1)), n.podCIDRs, n.internalIPs])))
      .digest('hex');
    const changed = digest !== last;
    last = digest;
    return changed;
  };
}

/**
 * The `/status` bearer token: `<stateDir>/status.token` (or `status.tokenFile`), 32 random bytes
 * as hex, 0600, created if missing. A looser mode is tightened (with a warning in the result).
 */
export async function loadOrCreateStatusToken(config: AgentConfig): Promise<{ token: string; file: string; created: boolean; warning?: string }> {
  const file = resolve(config.status.tokenFile ?? join(config.stateDir, STATUS_TOKEN_FILE));
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const created = await writeAtomic(dirname(file), basename(file), Buffer.from(`${randomBytes(32).toString('hex')}\n`), { how: 'create' });
  const st = await stat(file);
  let warning: string | undefined;
  if ((st.mode & 0o077) !== 0) {
    await chmod(file, 0o600);
    warning = `status token ${file} had mode 0${(st.mode & 0o777).toString(8)}; set to 0600`;
  }
  const token = (await readFile(file, 'utf8')).trim();
  if (!/^[0-9a-f]{32,128}$/.test(token)) throw new SealnetError('CONFIG_INVALID', `status token file ${file} must hold 32 to 128 lowercase hex digits`);
  return { token, file, created, ...(warning === undefined ? {} : { warning }) };
}

/** Constant-time check of an `Authorization: Bearer <token>` header. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer ([^\s]+)$/.exec(header ?? '');
  const a = createHash('sha256').update(m?.[1] ?? '').digest();
  const b = createHash('sha256').update(token).digest();
  return m !== null && timingSafeEqual(a, b);
}

/** Serves `/status` (GET, bearer token): the live report as JSON. */
export function serveStatus(req: IncomingMessage, res: ServerResponse, opts: { status: StatusService; token: string | undefined }): void {
  const send = (code: number, body: string, headers: Record<string, string> = {}): void => {
    res.writeHead(code, { 'content-type': code === 200 ? 'application/json' : 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers });
    res.end(body);
  };
  if (req.method !== 'GET') return send(405, 'method not allowed\n', { allow: 'GET' });
  if (opts.token === undefined) return send(503, 'status endpoint disabled: no token\n');
  if (!bearerMatches(req.headers.authorization, opts.token)) return send(401, 'unauthorized: send "Authorization: Bearer <token from the agent\'s status token file>"\n', { 'www-authenticate': 'Bearer realm="sealnet-status"' });
  opts.status.report('running').then(
    (r) => send(200, `${JSON.stringify(r, null, 2)}\n`),
    (err: unknown) => send(500, `${describeError(err)}\n`),
  );
}
