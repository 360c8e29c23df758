/**
 * The reconciler: turns store events into `plan()` runs and applies the difference to the
 * kernel through the driver ports.
 *
 * Contract of {@link Reconciler.reconcileOnce} (STYLE.md §3): it may run any number of times
 * with identical input and then changes nothing; it reads the kernel before changing it,
 * changes only what differs, adds before it deletes, keeps going past independent failures,
 * stops at dependent ones, and reports what it reached. Nothing is pruned before the store has
 * synced, and only sealnet-owned objects are ever deleted.
 */
import type { PublicKey } from '../../keymgr/keys.js';
import { fingerprint } from '../../keymgr/keys.js';
import { decodeNode, encodeNode } from '../plan/annotations.js';
import { parseIP } from '../../common/ip.js';
import type { AgentConfig } from '../ports/config.js';
import { BPF_XFRM_MARK_MASK, ROUTE_TABLE, RULE_PRIORITY, WG_FWMARK, WG_INTERFACE } from '../../common/constants.js';
import { diffPeers, diffRoutes } from '../plan/diff.js';
import { applyPeerChanges, applyRouteChanges, type KernelView } from './kernelview.js';
import { describeError, SealnetError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { AgentMetrics } from '../../common/metrics.js';
import type { DesiredState, RawNode, ReconcileReport, SkippedNode } from '../ports/model.js';
import { plan } from '../plan/planner.js';
import type { MirrorPort, NodeStore, ObservedPeer, RoutingPort, SteeringAttachment, SteeringEntry, SteeringPort, WireGuardPort } from '../ports/index.js';
import type { RotationController } from '../rotation/wireguard.js';
import { afterRotation, applyRotationDatapath, handshakesOnEveryLink, type DatapathMemo } from '../rotation/datapath.js';
import { planSteering, steeringLinks } from '../plan/steering.js';
import { NodeToNodeLinks, tunnelLinkAddress } from './nodetonode.js';
import { backoffDelay } from '../../common/backoff.js';
import { newIpsecPassState, reconcileIpsec, type IpsecRuntime } from './ipsec-pass.js';

/** This node's own key, as the key store holds it. */
export interface OwnKey {
  readonly publicKey: PublicKey;
  readonly privateKeyFile: string;
  readonly epoch: number;
  readonly createdAt: Date;
}

/** Everything the reconciler needs. */
export interface ReconcilerDeps {
  readonly config: AgentConfig;
  readonly key: OwnKey;
  readonly store: NodeStore;
  readonly wg: WireGuardPort;
  readonly routing: RoutingPort;
  readonly log: Logger;
  readonly metrics: AgentMetrics;
  /** BPF steering (fail-closed guard); undefined when `steering.enabled` is false. */
  readonly steering?: SteeringPort | undefined;
  /** Mode ipsec: the IPsec driver and this node's IPsec key (tunnels/reconcile/ipsec-pass.ts). */
  readonly ipsec?: IpsecRuntime | undefined;
  /** Key rotation (tunnels/rotation/wireguard.ts); undefined: one fixed key on {@link WG_INTERFACE}. */
  readonly rotation?: Pick<RotationController, 'begin' | 'annotations' | 'after'> | undefined;
  /** The rotation mirror (routing/mirror.ts); undefined: rotations run without it (packets may be lost). */
  readonly mirror?: MirrorPort | undefined;
  /**
   * Node-to-node mode: sets loose reverse-path filtering on a tunnel link, true when it wrote
   * (`ensureLooseRpFilter`, routing/rpfilter.ts, wired by the agent). Without it node-to-node
   * links report the step as failed; steering still follows the tunnel.
   */
  readonly rpFilter?: ((link: string) => Promise<boolean>) | undefined;
}

export type { ReconcileReport } from '../ports/model.js';


/** Runs reconcile passes; one at a time, debounced. */
export class Reconciler {
  private readonly d: ReconcilerDeps;
  private established: Record<string, PublicKey> = {};
  private adopted = false;
  private lastSkipped = '';
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<ReconcileReport> | undefined;
  private rerun = false;
  private closed = false;
  private lastReport: ReconcileReport | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryAttempt = 0;
  /** What steering was last ensured with (interfaces + settings); re-ensured when it changes. */
  private steeringKey: string | undefined;
  /** The rotation datapath (addresses, qdisc, mirror) last verified, and when. */
  private rotationDatapath: DatapathMemo | undefined;
  /** Mode ipsec's state between passes. */
  private readonly ipsecState = newIpsecPassState();
  /** The kernel as the last clean pass left it (tunnels/reconcile/kernelview.ts); undefined: read it. */
  private view: KernelView | undefined;
  /** The next pass reads the kernel in full (first pass, resync, retry, rotation timers). */
  private fullRequested = true;
  /** Node-to-node encryption: the tunnel links' address and rp_filter (tunnels/reconcile/nodetonode.ts). */
  private readonly nodeToNodeLinks: NodeToNodeLinks;

  constructor(deps: ReconcilerDeps) {
    this.d = deps;
    const rp = deps.rpFilter;
    this.nodeToNodeLinks = new NodeToNodeLinks(
      rp ?? (async (link) => Promise.reject(new SealnetError('INTERNAL', `cannot set rp_filter on ${link}: no rp_filter setter wired into the reconciler`))),
    );
  }

  /** The last pass's report (for /readyz and status). */
  report(): ReconcileReport | undefined {
    return this.lastReport;
  }

  /**
   * Schedules a pass after the debounce window; coalesces bursts of events. A pass triggered
   * only by node store changes may work from the kernel view the previous pass left (no full
   * re-read of thousands of peers and routes); `{ full: true }` (periodic resync, retries,
   * anything the view cannot know about) makes the next pass read the kernel in full.
   */
  trigger(opts: { readonly full?: boolean } = {}): void {
    if (opts.full === true) this.fullRequested = true;
    if (this.closed) return;
    if (this.running !== undefined) {
      this.rerun = true;
      return;
    }
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.runNow({ full: false });
    }, this.d.config.debounceMs);
  }

  /**
   * Runs one pass now (waiting for a running one first). It reads the kernel in full unless
   * `full: false` (the debounced event path of {@link trigger}).
   */
  async runNow(opts: { readonly full?: boolean } = {}): Promise<ReconcileReport> {
    if (opts.full !== false) this.fullRequested = true;
    while (this.running !== undefined) await this.running.catch(() => undefined);
    this.running = this.reconcileOnce();
    try {
      this.lastReport = await this.running;
      this.scheduleRetry(this.lastReport);
      return this.lastReport;
    } finally {
      this.running = undefined;
      if (this.rerun && !this.closed) {
        this.rerun = false;
        this.trigger();
      }
    }
  }

  /**
   * A pass that failed somewhere (a key publish the store refused, a netlink error) is retried
   * with exponential backoff and jitter (0.5 s … the resync interval), not only at the next
   * periodic resync: a node whose key did not get published stays unreachable until it is.
   */
  private scheduleRetry(report: ReconcileReport): void {
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (report.errors.length === 0 || this.closed) {
      this.retryAttempt = 0;
      return;
    }
    const delay = backoffDelay(this.retryAttempt++, { baseMs: 500, capMs: this.d.config.resyncIntervalSeconds * 1000, random: Math.random });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.trigger({ full: true });
    }, Math.max(delay, 100));
    // The periodic resync keeps a running agent alive; a pending retry alone must not.
    this.retryTimer.unref();
  }

  /** Stops scheduling; waits for a running pass. Kernel state is left as it is. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    await this.running?.catch(() => undefined);
  }

  /**
   * Attaches the steering programs (idempotent; a no-op when nothing changed since the last
   * call). Called at start-up before the node store is read, when the underlay is known from
   * the config, so pod traffic is dropped from the first packet until a tunnel is ready.
   */
  async prepareSteering(underlay: string): Promise<void> {
    const { config, steering, log } = this.d;
    if (steering === undefined) return;
    const st = config.steering;
    const devs = st.interfaces.length > 0 ? st.interfaces : [underlay];
    const attachments: SteeringAttachment[] = devs.flatMap((dev) => [{ dev, hook: 'egress' as const }, ...(st.enforceIngress ? [{ dev, hook: 'ingress' as const }] : [])]);
    const settings = { failClosed: st.failClosed, wireguardPort: config.mode === 'ipsec' ? 0 : config.wireguard.listenPort, espUdpPort: 0, tunnelFwmark: WG_FWMARK, markMask: BPF_XFRM_MARK_MASK };
    const key = JSON.stringify({ attachments, settings, exempt: st.exemptCidrs, cluster: st.clusterCidrs });
    if (key === this.steeringKey) return;
    const r = await steering.ensure({ settings, exempt: st.exemptCidrs, clusterCidrs: st.clusterCidrs, attachments });
    this.steeringKey = key;
    this.d.metrics.steeringFailClosed.set(st.failClosed ? 1 : 0);
    log.info({ attached: r.attached, mapsCreated: r.mapsCreated, programsLoaded: r.programsLoaded, failClosed: st.failClosed }, 'BPF steering in place');
    if (!st.failClosed) log.warn({}, 'steering.failClosed is false: pod traffic to a node without a ready tunnel is passed in PLAINTEXT (counted as fail_open)');
  }

  /** One full pass. Never throws: failures are in the report, the log and the metrics. */
  async reconcileOnce(): Promise<ReconcileReport> {
    const { config, key, store, wg, routing, log, metrics } = this.d;
    const started = process.hrtime.bigint();
    // Milliseconds per step of this pass, in the "kernel state updated" line (where a pass at
    // 5,000 nodes spends its time).
    const phases: Record<string, number> = {};
    let lastMark = started;
    const mark = (name: string): void => {
      const t = process.hrtime.bigint();
      phases[name] = Math.round(Number(t - lastMark) / 1e4) / 100;
      lastMark = t;
    };
    const ops: Record<string, number> = {};
    const errors: { step: string; message: string }[] = [];
    const op = async (name: string, fn: () => Promise<void>): Promise<void> => {
      await fn();
      ops[name] = (ops[name] ?? 0) + 1;
      metrics.kernelOps.inc({ op: name });
    };
    const fail = (step: string, err: unknown): void => {
      const message = describeError(err);
      errors.push({ step, message });
      metrics.errors.inc({ step });
      log.error({ step, err: message }, `reconcile step ${step} failed`);
    };
    const finish = (desired: DesiredState | undefined, pruned: boolean, converged: boolean): ReconcileReport => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.reconcileDuration.observe(seconds);
      metrics.reconciles.inc({ result: errors.length === 0 ? 'ok' : 'error' });
      if (Object.keys(ops).length > 0) log.info({ ops, seconds, phasesMs: phases }, 'kernel state updated');
      return { kernelOps: ops, errors, desired, pruned, converged: converged && errors.length === 0 };
    };
    if (config.mode === 'ipsec') {
      const helpers = { prepareSteering: (dev: string) => this.prepareSteering(dev), steeringAttached: () => this.steeringKey !== undefined, reportSkipped: (s: readonly SkippedNode[]) => this.reportSkipped(s) };
      return reconcileIpsec({ deps: this.d, state: this.ipsecState, ops, op, fail, finish, ...helpers });
    }

    // A full pass reads the kernel; an event pass may start from the view the last one left.
    const full = this.fullRequested || this.view === undefined;
    this.fullRequested = false;
    const view = this.view;
    this.view = undefined; // set again only by a pass that ends clean

    // 1. Who am I? The node must exist in the store with an address to publish.
    const nodes = store.list();
    const self = nodes.find((n) => n.name === config.nodeName);
    if (self === undefined) {
      fail('self', new SealnetError('STORE_IO', `node ${config.nodeName} is not in the node store yet; waiting (check --node-name / NODE_NAME)`));
      return finish(undefined, false, false);
    }
    const endpointHost = config.endpointAddress ?? self.internalIPs[0];
    const endpointIP = endpointHost === undefined ? undefined : parseIP(endpointHost);
    if (endpointHost === undefined || endpointIP === undefined) {
      fail('self', new SealnetError('CONFIG_INVALID', `node ${config.nodeName} has no InternalIP address; set endpointAddress in the agent config`));
      return finish(undefined, false, false);
    }

    mark('store');
    // 2. The links. Adopted if they exist; created (kernel or wireguard-go) if not. Outside a key
    //    rotation there is one, the active link. During a rotation the new key's link runs beside
    //    it; at the end the active link is retired and only the new one is ensured (issue 5).
    const rot = await this.d.rotation?.begin(nodes, store.synced());
    const active = rot?.active ?? { name: WG_INTERFACE, listenPort: config.wireguard.listenPort, privateKeyFile: key.privateKeyFile, publicKey: key.publicKey };
    const incoming = rot?.incoming;
    const retire = rot?.retireActive === true && incoming !== undefined;
    /** The link this pass cannot do without; the other one (during a rotation) may fail alone. */
    const primary = retire ? incoming : active;
    const secondary = retire ? undefined : incoming;
    const published = rot?.published ?? { publicKey: key.publicKey, listenPort: config.wireguard.listenPort, epoch: key.epoch, createdAt: key.createdAt };
    const ensure = async (l: { name: string; listenPort: number; privateKeyFile: string; publicKey: PublicKey }): Promise<void> => {
      const link = await wg.ensureLink({ name: l.name, privateKeyFile: l.privateKeyFile, publicKey: l.publicKey, listenPort: l.listenPort, fwmark: WG_FWMARK });
      if (link.created) {
        ops.link_create = (ops.link_create ?? 0) + 1;
        metrics.kernelOps.inc({ op: 'link_create' });
        log.info({ impl: link.impl, ifindex: link.ifindex }, `created ${l.name}`);
      }
    };
    // An event pass outside a rotation reuses the view when the link is still the one it saw
    // (same ifindex: wireguard-go did not restart, nobody recreated it).
    let reuse: KernelView | undefined;
    if (!full && view !== undefined && incoming === undefined && view.link === primary.name && view.publicKey === primary.publicKey && view.listenPort === primary.listenPort) {
      const info = await routing.getLink(primary.name).catch(() => undefined);
      if (info !== undefined && info.up && info.ifindex === view.ifindex && info.mtu === view.mtu) reuse = view;
    }
    try {
      if (reuse === undefined) await ensure(primary);
    } catch (err) {
      fail('link', err);
      return finish(undefined, false, false);
    }
    let secondaryOk = false;
    if (secondary !== undefined) {
      try {
        await ensure(secondary);
        secondaryOk = true;
      } catch (err) {
        fail('link', err);
      }
    }

    mark('links');
    // 3. Publish our own annotations when they differ from what the store holds.
    const own = encodeNode({ mode: config.mode, wireguardPublicKey: published.publicKey, endpointHost, endpointPort: published.listenPort, keyEpoch: published.epoch, keyCreated: published.createdAt });
    if (Object.entries(own).some(([k, v]) => self.annotations[k] !== v)) {
      try {
        await store.patchAnnotations(config.nodeName, own);
        log.info({ key: fingerprint(published.publicKey), endpoint: own['sealnet.io/endpoint'] }, 'published own public key and endpoint');
      } catch (err) {
        fail('publish', err);
      }
    }

    mark('publish');
    // 4. Read the kernel.
    let underlayMtu = config.underlayMtu;
    let localAddresses: string[] = [];
    let observed;
    let observedRoutes;
    let tunnelLink;
    let observedSecondary;
    let secondaryLink;
    let retiredPresent = false;
    let underlayName: string | undefined;
    if (reuse !== undefined) {
      underlayMtu ??= reuse.underlayMtu;
      underlayName = reuse.underlay;
      localAddresses = [...reuse.localAddresses];
      observed = { peers: reuse.peers };
      observedRoutes = reuse.routes;
      tunnelLink = { ifindex: reuse.ifindex, mtu: reuse.mtu, up: true };
    } else try {
      const under = await routing.linkForAddress(endpointHost);
      if (under === undefined) throw new SealnetError('NETLINK_FAILED', `no link carries the endpoint address ${endpointHost}; check the node's InternalIP or set endpointAddress in the agent config`);
      underlayMtu ??= under.mtu;
      underlayName = under.name;
      try {
        await this.prepareSteering(under.name);
      } catch (err) {
        fail('steering', err);
      }
      localAddresses = (await routing.listAddresses()).map((a) => a.address);
      observed = await wg.show(primary.name);
      observedRoutes = await routing.listRoutes(ROUTE_TABLE);
      tunnelLink = await routing.getLink(primary.name);
      if (secondary !== undefined && secondaryOk) {
        observedSecondary = await wg.show(secondary.name);
        secondaryLink = await routing.getLink(secondary.name);
      }
      if (retire) retiredPresent = (await routing.getLink(active.name)) !== undefined;
    } catch (err) {
      fail('observe', err);
      return finish(undefined, false, false);
    }
    if (observed === undefined || tunnelLink === undefined) {
      fail('observe', new SealnetError('WG_FAILED', `${primary.name} vanished while reconciling; will recreate on the next pass`));
      this.trigger({ full: true });
      return finish(undefined, false, false);
    }
    if (secondary !== undefined && secondaryOk && (observedSecondary === undefined || secondaryLink === undefined)) {
      secondaryOk = false;
      fail('observe', new SealnetError('WG_FAILED', `${secondary.name} vanished while reconciling; will recreate on the next pass`));
    }

    mark(reuse === undefined ? 'read' : 'view');
    // 5. Plan. On the first pass, adopt what the kernel already holds as established (an agent
    //    restart must not let a node that copied a working peer's key or CIDRs tear it down).
    if (!this.adopted) {
      this.established = adoptEstablished(nodes, config.nodeName, observed.peers);
      this.adopted = true;
    }
    let desired: DesiredState;
    try {
      desired = plan({
        nodes,
        self: {
          name: config.nodeName,
          wireguardPublicKey: active.publicKey,
          localAddresses,
          ...(rot !== undefined ? { link: { name: active.name, listenPort: active.listenPort } } : {}),
          ...(rot !== undefined && incoming !== undefined ? { rotation: { link: { name: incoming.name, listenPort: incoming.listenPort }, publicKey: incoming.publicKey, viaIncoming: rot.viaIncoming } } : {}),
        },
        config: { mode: config.mode, listenPort: config.wireguard.listenPort, persistentKeepalive: config.wireguard.persistentKeepalive, underlayMtu, underlayFamily: endpointIP.family, nodeToNode: config.steering.nodeToNode ? { exemptCidrs: config.steering.exemptCidrs } : undefined },
        established: this.established,
        // A key counts as shaken hands only on every link: each link moves its allowed IPs in
        // its own `wg set`, and a link must not move them to a key it has no session with.
        handshakes: handshakesOnEveryLink([observed.peers, ...(observedSecondary !== undefined ? [observedSecondary.peers] : [])]),
      });
    } catch (err) {
      fail('plan', err);
      return finish(undefined, false, false);
    }
    this.reportSkipped(desired.skipped);
    const prune = store.synced();

    mark('plan');
    // 6. Apply: link MTU, new/changed peers (on every link), routes, then deletions (routes
    //    before peers, the retired link last).
    const links: { name: string; observed: readonly ObservedPeer[]; info: { ifindex: number; mtu: number; up: boolean }; changed: boolean }[] = [{ name: primary.name, observed: observed.peers, info: tunnelLink, changed: false }];
    if (secondary !== undefined && secondaryOk && observedSecondary !== undefined && secondaryLink !== undefined) links.push({ name: secondary.name, observed: observedSecondary.peers, info: secondaryLink, changed: false });
    for (const l of links) {
      try {
        if (l.info.mtu !== desired.link.mtu || !l.info.up) {
          await op('link_set', () => routing.setLink(l.name, { mtu: desired.link.mtu, up: true }));
        }
      } catch (err) {
        fail('link', err);
      }
    }
    const removesByLink: { name: string; removes: ReturnType<typeof diffPeers> }[] = [];
    const setsByLink = new Map<string, ReturnType<typeof diffPeers>>();
    const removedByLink = new Map<string, ReturnType<typeof diffPeers>>();
    let removesOk = true;
    let peersOk = true;
    const routeChanges = diffRoutes(desired.routes, observedRoutes, { prune });
    // Sets and removes in one `wg set` when nothing has to happen between them (no route change,
    // no rotation): `wg` applies its clauses in order and stops at the first failure, so a remove
    // still only happens once every set before it succeeded (one process start, not two).
    const oneCall = routeChanges.length === 0 && incoming === undefined;
    const replaceRoutes = async (): Promise<void> => {
      for (const c of routeChanges.filter((r) => r.op === 'replace')) {
        try {
          await op('route_replace', () => routing.replaceRoute(c.route));
        } catch (err) {
          fail('routes', err);
        }
      }
    };
    // Outside a rotation, new and changed routes go in while `wg set` runs (5,000 of each at
    // start-up: about half a second saved). Nothing leaks meanwhile: a route into the link before
    // its peer exists ends at WireGuard, which has no peer for it and drops, and steering marks a
    // prefix ready only after the peer is read back. During a rotation, routes wait for the
    // rotation datapath below.
    const routesReplaced = incoming === undefined ? replaceRoutes() : undefined;
    for (const l of links) {
      const peerChanges = diffPeers(desired.peers, l.observed, { prune });
      const peerSets = peerChanges.filter((c) => c.op === 'set');
      const removes = peerChanges.filter((c) => c.op === 'remove');
      setsByLink.set(l.name, peerSets);
      removesByLink.push({ name: l.name, removes: oneCall ? [] : removes });
      const now = oneCall ? [...peerSets, ...removes] : peerSets;
      if (now.length === 0) continue;
      l.changed = true;
      try {
        await wg.applyPeers(l.name, now);
        ops.peer_set = (ops.peer_set ?? 0) + peerSets.length;
        metrics.kernelOps.inc({ op: 'peer_set' }, peerSets.length);
        if (oneCall && removes.length > 0) {
          removedByLink.set(l.name, removes);
          ops.peer_remove = (ops.peer_remove ?? 0) + removes.length;
          metrics.kernelOps.inc({ op: 'peer_remove' }, removes.length);
        }
      } catch (err) {
        peersOk = false;
        if (oneCall) removesOk = false;
        fail('peers', err);
      }
    }
    // The rotation datapath (addresses, qdisc, mirror) before any route moves into the new link.
    if (this.d.mirror !== undefined && rot !== undefined && incoming !== undefined && (retire || secondaryOk)) {
      const v4 = desired.routes.find((r) => r.src !== undefined && !r.src.includes(':'))?.src ?? (endpointIP.family === 4 ? endpointHost : undefined);
      this.rotationDatapath = await applyRotationDatapath({ mirror: this.d.mirror, rot, incoming: incoming.name, active: active.name, retire, v4, memo: this.rotationDatapath, ops, fail, warn: (msg) => log.warn({}, msg) });
    }
    await (routesReplaced ?? replaceRoutes());
    // One rule per family that has routes in our table (dual-stack pods over an IPv4 underlay
    // need the IPv6 rule too, or IPv6 pod traffic bypasses the tunnel), plus the underlay's.
    const families = new Set<4 | 6>([endpointIP.family]);
    for (const r of desired.routes) families.add(r.dst.includes(':') ? 6 : 4);
    // (An event pass that changes no route has nothing to add: the last full pass ensured them.)
    for (const family of reuse !== undefined && routeChanges.length === 0 ? [] : [...families].sort()) {
      try {
        await routing.ensureRule({ priority: RULE_PRIORITY, table: ROUTE_TABLE, family });
      } catch (err) {
        fail('rule', err);
      }
    }
    for (const c of routeChanges.filter((r) => r.op === 'delete')) {
      try {
        await op('route_delete', () => routing.deleteRoute({ dst: c.route.dst, table: c.route.table }));
      } catch (err) {
        fail('routes', err);
      }
    }
    // Removes depend on the sets: a removed old key whose allowed IPs did not reach the new key
    // leaves them unowned (cilium#34612). If the sets failed, keep the old peers until next pass.
    for (const { name, removes } of removesByLink) {
      if (removes.length === 0 || !peersOk) continue;
      const l = links.find((x) => x.name === name);
      if (l !== undefined) l.changed = true;
      try {
        await wg.applyPeers(name, removes);
        removedByLink.set(name, removes);
        ops.peer_remove = (ops.peer_remove ?? 0) + removes.length;
        metrics.kernelOps.inc({ op: 'peer_remove' }, removes.length);
      } catch (err) {
        removesOk = false;
        fail('peers', err);
      }
    }
    mark('apply');
    // Ready means programmed: read the peers back after the changes above (an event pass on the
    // view takes what `wg set` accepted: it exits non-zero on anything it did not apply).
    const readBack: { name: string; peers: readonly ObservedPeer[]; ifindex: number }[] = [];
    for (const l of links) {
      try {
        const applied = reuse !== undefined && peersOk && removesOk ? applyPeerChanges(l.observed, [...(setsByLink.get(l.name) ?? []), ...(removedByLink.get(l.name) ?? [])]) : undefined;
        readBack.push({ name: l.name, peers: applied ?? (l.changed ? ((await wg.show(l.name))?.peers ?? l.observed) : l.observed), ifindex: l.info.ifindex });
      } catch (err) {
        fail('observe', err);
        readBack.push({ name: l.name, peers: l.observed, ifindex: l.info.ifindex });
      }
    }
    if (config.steering.nodeToNode) await this.nodeToNodeLinks.ensure({ mirror: this.d.mirror, links: readBack, v4: tunnelLinkAddress(desired.routes, endpointHost), ops, fail });
    mark('readback');
    if (this.d.steering !== undefined && this.steeringKey !== undefined) {
      try {
        // Each prefix is steered into the link its route uses, ready per that link's peers.
        const devOf = steeringLinks(desired.routes, config.steering.nodeToNode ? nodes : []);
        let entries: SteeringEntry[] = [];
        for (const [i, l] of readBack.entries()) {
          const e = planSteering({
            self: config.nodeName,
            clusterCidrs: config.steering.clusterCidrs,
            nodes,
            desiredPeers: desired.peers,
            observedPeers: l.peers,
            target: { action: 'redirect', ifindex: l.ifindex },
            nodeToNode: config.steering.nodeToNode,
            exemptCidrs: config.steering.exemptCidrs,
          });
          const byCidr = new Map(e.map((x) => [x.cidr, x]));
          entries = i === 0 ? e : entries.map((x) => (devOf.get(x.cidr) === l.name ? (byCidr.get(x.cidr) ?? x) : x));
        }
        const r = await this.d.steering.applyEntries(entries, { prune, fromLastWrite: reuse !== undefined });
        if (r.written > 0) { ops.steering_write = (ops.steering_write ?? 0) + r.written; metrics.kernelOps.inc({ op: 'steering_write' }, r.written); }
        if (r.deleted > 0) { ops.steering_delete = (ops.steering_delete ?? 0) + r.deleted; metrics.kernelOps.inc({ op: 'steering_delete' }, r.deleted); }
        const byState = new Map<string, number>();
        for (const e of entries) byState.set(e.state, (byState.get(e.state) ?? 0) + 1);
        metrics.steeringEntries.reset();
        for (const [state, n] of byState) metrics.steeringEntries.set({ state }, n);
      } catch (err) {
        fail('steering', err);
      }
    } else if (this.d.steering !== undefined) {
      fail('steering', new SealnetError('KERNEL_FEATURE_MISSING', 'BPF steering is not attached yet; pod traffic is not guarded (see the steering error above)'));
    }
    // The end of a rotation: the old link goes only after every route and steering entry left
    // it without an error, and only after the store synced (issue 5).
    if (retire && retiredPresent && prune && errors.length === 0) {
      try {
        await op('link_delete', () => wg.deleteLink(active.name));
        retiredPresent = false;
        log.info({ link: active.name }, `deleted ${active.name}: the old key's link`);
      } catch (err) {
        fail('link', err);
      }
    }
    if (peersOk) this.established = Object.fromEntries(desired.peers.filter((p) => p.next !== true).map((p) => [p.node, p.publicKey]));
    metrics.peers.set(desired.peers.filter((p) => p.next !== true).length);
    mark('steering');
    await afterRotation({ nodeName: config.nodeName, store, log, rotation: this.d.rotation, nodes, self, endpointHost, desired, readBack, secondary: secondaryOk ? secondary?.name : undefined, retiredPresent: retire ? retiredPresent : true, applied: errors.length === 0, fail });
    // Keep what this pass left for the next event pass: only after a clean pass with one link and
    // no rotation anywhere (rotations decide on live handshake times, which only a read gives).
    const quiet = incoming === undefined && links.length === 1 && desired.peers.every((p) => p.next !== true) && (desired.following?.length ?? 0) === 0;
    if (errors.length === 0 && quiet && underlayName !== undefined && underlayMtu !== undefined && readBack[0] !== undefined) {
      this.view = {
        link: primary.name,
        publicKey: primary.publicKey,
        listenPort: primary.listenPort,
        ifindex: tunnelLink.ifindex,
        mtu: desired.link.mtu,
        underlay: underlayName,
        underlayMtu,
        localAddresses,
        peers: readBack[0].peers,
        routes: applyRouteChanges(observedRoutes, routeChanges),
      };
    }
    mark('rotation');
    return finish(desired, prune, prune);
  }

  private reportSkipped(skipped: readonly SkippedNode[]): void {
    const { log, metrics } = this.d;
    const digest = skipped.map((s) => `${s.name}|${s.reason}|${s.detail}`).join('\n');
    metrics.skippedNodes.reset();
    for (const s of skipped) metrics.skippedNodes.inc({ reason: s.reason });
    if (digest === this.lastSkipped) return;
    const before = new Set(this.lastSkipped.split('\n'));
    this.lastSkipped = digest;
    for (const s of skipped) {
      if (before.has(`${s.name}|${s.reason}|${s.detail}`)) continue;
      if (s.reason !== 'annotations-missing') metrics.invalidInput.inc({ source: 'annotations' });
      log.warn({ peer: s.name, reason: s.reason }, `skipping node ${s.name}: ${s.detail}`);
    }
  }
}

/**
 * Node → key of the peers the kernel already holds: a node counts as established when a peer
 * with its published key exists and carries exactly its pod CIDRs as allowed IPs.
 */
function adoptEstablished(nodes: readonly RawNode[], self: string, peers: readonly ObservedPeer[]): Record<string, PublicKey> {
  const byKey = new Map(peers.map((p) => [p.publicKey as string, p]));
  const out: Record<string, PublicKey> = {};
  for (const raw of nodes) {
    if (raw.name === self) continue;
    const r = decodeNode(raw);
    const peer = r.ok ? byKey.get(r.node.wireguardPublicKey) : undefined;
    if (!r.ok || peer === undefined) continue;
    if (peer.allowedIPs.length === r.node.podCIDRs.length && peer.allowedIPs.every((a, i) => a === r.node.podCIDRs[i])) out[raw.name] = r.node.wireguardPublicKey;
  }
  return out;
}
