/**
 * One reconcile pass in mode wireguard, as named steps. {@link WireGuardPass.run} is the table
 * of contents; **the order of its steps is the safety rule**: links before peers, peer sets
 * before removes (a removed old key whose allowed IPs did not reach the new key would leave them
 * unowned), routes before the rule, route deletions after both, the retired link last — and
 * outside a rotation routes are replaced while `wg set` runs.
 *
 * Contract: it may run any number of times with identical input and then changes
 * nothing; it reads the kernel before changing it (or starts from the view the last clean pass
 * left), changes only what differs, adds before it deletes, keeps going past independent
 * failures, stops at dependent ones, and reports what it reached. Nothing is pruned before the
 * store synced, and only sealnet-owned objects are ever deleted. Never throws.
 */
import { establishedWithOwners } from '../../keymgr/keyowners.js';
import type { PublicKey } from '../../keymgr/keys.js';
import { fingerprint } from '../../keymgr/keys.js';
import { ANNOTATIONS, ROUTE_TABLE, RULE_PRIORITY, WG_FWMARK, WG_INTERFACE } from '../../common/constants.js';
import { describeError, SealnetError } from '../../common/errors.js';
import { parseIP } from '../../common/ip.js';
import { decodeNode, encodeNode } from '../plan/annotations.js';
import { diffPeers, diffRoutes } from '../plan/diff.js';
import { encodeLastApplied } from '../plan/lastapplied.js';
import { IncrementalPlanner, type PlanInputLazy } from '../plan/incremental.js';
import { gatePqRoutes } from '../plan/pq-gate.js';
import { planSteering, steeringLinks, type SteeringPlanInput } from '../plan/steering.js';
import { IncrementalSteering } from '../plan/steering-incremental.js';
import type { ObservedPeer, SteeringEntry } from '../ports/index.js';
import type { DesiredPeer, DesiredWireGuardState, RawNode, ReconcileReport } from '../ports/model.js';
import {
  afterRotation,
  applyRotationDatapath,
  handshakesOnEveryLink,
  type DatapathMemo,
} from '../rotation/datapath.js';
import type { PassContext, PassHost } from './context.js';
import type { ReconcilerDeps } from './deps.js';
import { applyPeerChanges, applyRouteChanges, type KernelView } from './kernelview.js';
import { NodeToNodeLinks, tunnelLinkAddress } from './nodetonode.js';

/** What mode wireguard keeps between passes (owned by the loop, changed only by passes). */
export interface WireGuardPassState {
  /** Node → key of the peers the last successful apply programmed (or adopted at start). */
  established: Record<string, PublicKey>;
  /** Node-to-node host prefix → node, as the last successful apply programmed them. */
  addressOwners: Record<string, string>;
  /** Node → endpoint host of its peer after the last clean apply (the planner's endpoint tie-break). */
  endpointOwners: Record<string, string>;
  /** Key-ownership conflicts already logged (key/claimant). */
  readonly ownerConflictsLogged: Set<string>;
  /** The first pass adopted the kernel's peers as established. */
  adopted: boolean;
  /** The kernel as the last clean pass left it (kernelview.ts); undefined: read it. */
  view: KernelView | undefined;
  /** The rotation datapath (addresses, qdisc, mirror) last verified, and when. */
  rotationDatapath: DatapathMemo | undefined;
  /** Node-to-node encryption: the tunnel links' address and rp_filter. */
  readonly nodeToNodeLinks: NodeToNodeLinks;
  /** The text last written to (or read from) the last applied state file; rewritten only when it changes. */
  lastAppliedText: string | undefined;
  /** The last plan, for event passes that re-plan only the nodes that changed (plan/incremental.ts). */
  readonly planner: IncrementalPlanner;
  /** The established sets were rebuilt from every peer of a plan since the last failed apply. */
  establishedComplete: boolean;
  /** The last steering plan, for event passes (plan/steering-incremental.ts). */
  readonly steeringPlanner: IncrementalSteering;
}

/** A fresh {@link WireGuardPassState}; `rpFilter` comes from {@link ReconcilerDeps.rpFilter}. */
export function newWireGuardPassState(rpFilter: ((link: string) => Promise<boolean>) | undefined): WireGuardPassState {
  const rp =
    rpFilter ??
    (async (link: string) =>
      Promise.reject(
        new SealnetError('INTERNAL', `cannot set rp_filter on ${link}: no rp_filter setter wired into the reconciler`),
      ));
  return {
    established: {},
    addressOwners: {},
    endpointOwners: {},
    ownerConflictsLogged: new Set(),
    adopted: false,
    view: undefined,
    rotationDatapath: undefined,
    nodeToNodeLinks: new NodeToNodeLinks(rp),
    lastAppliedText: undefined,
    planner: new IncrementalPlanner(),
    establishedComplete: false,
    steeringPlanner: new IncrementalSteering(),
  };
}

type LinkSpec = { name: string; listenPort: number; privateKeyFile: string; publicKey: PublicKey };
type Rotation = Awaited<ReturnType<NonNullable<ReconcilerDeps['rotation']>['begin']>>;
type LinkInfo = { ifindex: number; mtu: number; up: boolean };
type PeerChanges = ReturnType<typeof diffPeers>;

/** One pass in mode wireguard. Build one per pass; {@link run} once. */
export class WireGuardPass {
  private readonly d: ReconcilerDeps;
  private readonly s: WireGuardPassState;
  private readonly p: PassContext;
  private readonly host: PassHost;
  /** A full pass reads the kernel; an event pass may start from the view the last one left. */
  private readonly full: boolean;
  private readonly lastView: KernelView | undefined;

  // resolveSelf
  private nodes: readonly RawNode[] = [];
  private self!: RawNode;
  private endpointHost!: string;
  private endpointIP!: { family: 4 | 6 };
  // ensureLinks
  private rot: Rotation | undefined;
  private active!: LinkSpec;
  private incoming: LinkSpec | undefined;
  private retire = false;
  /** The link this pass cannot do without; the other one (during a rotation) may fail alone. */
  private primary!: LinkSpec;
  private secondary: LinkSpec | undefined;
  private secondaryOk = false;
  private published!: { publicKey: PublicKey; listenPort: number; epoch: number; createdAt: Date };
  private reuse: KernelView | undefined;
  // observe
  private underlayMtu!: number;
  private underlayName: string | undefined;
  private localAddresses: string[] = [];
  private observed!: { peers: readonly ObservedPeer[] };
  private observedRoutes!: NonNullable<KernelView['routes']>;
  private tunnelLink!: LinkInfo;
  private observedSecondary: { peers: readonly ObservedPeer[] } | undefined;
  private secondaryLink: LinkInfo | undefined;
  private retiredPresent = false;
  // plan
  private desired!: DesiredWireGuardState;
  /** `postQuantum: required`: nodes whose pairs may not carry traffic (keys of their peers). */
  private pqBlockedKeys = new Set<string>();
  /** Nodes this pass re-planned alone (an event pass on the last plan); undefined: planned in full. */
  private changed: ReadonlySet<string> | undefined;
  /** Peer keys and route destinations the changed nodes had before and have now (see {@link scope}). */
  private changedScope: { keys: Set<string>; dsts: Set<string> } | undefined;
  private prune = false;
  // apply
  private links: { name: string; observed: readonly ObservedPeer[]; info: LinkInfo; changed: boolean }[] = [];
  private routeChanges: ReturnType<typeof diffRoutes> = [];
  private setsByLink = new Map<string, PeerChanges>();
  private removedByLink = new Map<string, PeerChanges>();
  private removesByLink: { name: string; removes: PeerChanges }[] = [];
  private peersOk = true;
  private removesOk = true;
  private readBack: { name: string; peers: readonly ObservedPeer[]; ifindex: number }[] = [];
  /** The steering entries this pass wrote (the last applied state keeps them). */
  private steeringEntries: readonly SteeringEntry[] = [];

  constructor(a: {
    deps: ReconcilerDeps;
    state: WireGuardPassState;
    pass: PassContext;
    host: PassHost;
    full: boolean;
  }) {
    this.d = a.deps;
    this.s = a.state;
    this.p = a.pass;
    this.host = a.host;
    this.lastView = this.s.view;
    // With the post-quantum exchange on, every pass is full: which pairs `required` blocks is
    // not a node change, so the incremental planners and the scoped diffs would not see it.
    this.full = a.full || this.lastView === undefined || a.deps.pq !== undefined;
    this.s.view = undefined; // set again only by a pass that ends clean
  }

  /** The pass, step by step; each step returns false when the pass cannot go on. */
  async run(): Promise<ReconcileReport> {
    const stop = (): ReconcileReport => this.p.finish(undefined, false, false);
    if (!this.resolveSelf()) return stop();
    this.p.mark('store');
    if (!(await this.ensureLinks())) return stop();
    this.p.mark('links');
    await this.publishOwn();
    this.p.mark('publish');
    if (!(await this.observe())) return stop();
    this.p.mark(this.reuse === undefined ? 'read' : 'view');
    await this.publishPq();
    if (!this.planDesired()) return stop();
    this.p.mark('plan');
    await this.applyLinks();
    await this.applyPeersAndRoutes();
    this.p.mark('apply');
    await this.readPeersBack();
    this.reportToPq();
    this.p.mark('readback');
    await this.steer();
    await this.retireOldLink();
    this.recordEstablished();
    this.p.mark('steering');
    await this.finishRotationStep();
    const quiet = this.keepView();
    await this.persistApplied(quiet);
    this.p.mark('rotation');
    return this.p.finish(this.desired, this.prune, this.prune);
  }

  /** 1. Who am I? The node must exist in the store with an address to publish. */
  private resolveSelf(): boolean {
    const { config, store } = this.d;
    this.nodes = store.list();
    const self = this.nodes.find((n) => n.name === config.nodeName);
    if (self === undefined) {
      this.p.fail(
        'self',
        new SealnetError(
          'STORE_IO',
          `node ${config.nodeName} is not in the node store yet; waiting (check --node-name / NODE_NAME)`,
        ),
      );
      return false;
    }
    this.self = self;
    const endpointHost = config.endpointAddress ?? self.internalIPs[0];
    const endpointIP = endpointHost === undefined ? undefined : parseIP(endpointHost);
    if (endpointHost === undefined || endpointIP === undefined) {
      this.p.fail(
        'self',
        new SealnetError(
          'CONFIG_INVALID',
          `node ${config.nodeName} has no InternalIP address; set endpointAddress in the agent config`,
        ),
      );
      return false;
    }
    this.endpointHost = endpointHost;
    this.endpointIP = endpointIP;
    return true;
  }

  /**
   * 2. The links. Adopted if they exist; created (kernel or wireguard-go) if not. Outside a key
   * rotation there is one, the active link. During a rotation the new key's link runs beside
   * it; at the end the active link is retired and only the new one is ensured.
   */
  private async ensureLinks(): Promise<boolean> {
    const { config, key, store, wg, routing, log, metrics } = this.d;
    const rot = await this.d.rotation?.begin(this.nodes, store.synced());
    this.rot = rot;
    this.active = rot?.active ?? {
      name: WG_INTERFACE,
      listenPort: config.wireguard.listenPort,
      privateKeyFile: key.privateKeyFile,
      publicKey: key.publicKey,
    };
    this.incoming = rot?.incoming;
    this.retire = rot?.retireActive === true && this.incoming !== undefined;
    this.primary = this.retire ? this.incoming! : this.active;
    this.secondary = this.retire ? undefined : this.incoming;
    this.published = rot?.published ?? {
      publicKey: key.publicKey,
      listenPort: config.wireguard.listenPort,
      epoch: key.epoch,
      createdAt: key.createdAt,
    };
    const ensure = async (l: LinkSpec): Promise<void> => {
      const link = await wg.ensureLink({
        name: l.name,
        privateKeyFile: l.privateKeyFile,
        publicKey: l.publicKey,
        listenPort: l.listenPort,
        fwmark: WG_FWMARK,
      });
      if (link.created) {
        this.p.ops.link_create = (this.p.ops.link_create ?? 0) + 1;
        metrics.kernelOps.inc({ op: 'link_create' });
        log.info({ impl: link.impl, ifindex: link.ifindex }, `created ${l.name}`);
      }
    };
    // An event pass outside a rotation reuses the view when the link is still the one it saw
    // (same ifindex: wireguard-go did not restart, nobody recreated it).
    const view = this.lastView;
    const primary = this.primary;
    if (
      !this.full &&
      view !== undefined &&
      this.incoming === undefined &&
      view.link === primary.name &&
      view.publicKey === primary.publicKey &&
      view.listenPort === primary.listenPort
    ) {
      const info = await routing.getLink(primary.name).catch(() => undefined);
      if (info !== undefined && info.up && info.ifindex === view.ifindex && info.mtu === view.mtu) this.reuse = view;
    }
    try {
      if (this.reuse === undefined) await ensure(primary);
    } catch (err) {
      this.p.fail('link', err);
      return false;
    }
    if (this.secondary !== undefined) {
      try {
        await ensure(this.secondary);
        this.secondaryOk = true;
      } catch (err) {
        this.p.fail('link', err);
      }
    }
    return true;
  }

  /** 3. Publish our own annotations when they differ from what the store holds. */
  private async publishOwn(): Promise<void> {
    const { config, store, log } = this.d;
    const published = this.published;
    const own = encodeNode({
      mode: config.mode,
      wireguardPublicKey: published.publicKey,
      endpointHost: this.endpointHost,
      endpointPort: published.listenPort,
      keyEpoch: published.epoch,
      keyCreated: published.createdAt,
    });
    if (!Object.entries(own).some(([k, v]) => this.self.annotations[k] !== v)) return;
    // A new key goes out in one patch with the rotation phase that explains it (grace: the next
    // key becomes the key, the next-key annotations go). Published apart, peers would read the
    // new key beside `moving` for a whole pass; they would stop following the rotation and
    // withdraw their reports, and the rotating node would name them lagging.
    const keyChanged = this.self.annotations[ANNOTATIONS.wireguardPublicKey] !== own[ANNOTATIONS.wireguardPublicKey];
    const patch =
      keyChanged && this.d.rotation !== undefined ? { ...own, ...this.d.rotation.annotations(this.endpointHost) } : own;
    try {
      await store.patchAnnotations(config.nodeName, patch);
      log.info(
        { key: fingerprint(published.publicKey), endpoint: own['sealnet.io/endpoint'] },
        'published own public key and endpoint',
      );
    } catch (err) {
      this.p.fail('publish', err);
    }
  }

  /** 4. Read the kernel (or take the view the last clean pass left). */
  private async observe(): Promise<boolean> {
    const { config, wg, routing } = this.d;
    const { primary, secondary, reuse } = this;
    let observed;
    let tunnelLink;
    if (reuse !== undefined) {
      this.underlayMtu = config.underlayMtu ?? reuse.underlayMtu;
      this.underlayName = reuse.underlay;
      this.localAddresses = [...reuse.localAddresses];
      observed = { peers: reuse.peers };
      this.observedRoutes = reuse.routes;
      tunnelLink = { ifindex: reuse.ifindex, mtu: reuse.mtu, up: true };
    } else {
      try {
        const under = await routing.linkForAddress(this.endpointHost);
        if (under === undefined)
          throw new SealnetError(
            'NETLINK_FAILED',
            `no link carries the endpoint address ${this.endpointHost}; check the node's InternalIP or set endpointAddress in the agent config`,
          );
        this.underlayMtu = config.underlayMtu ?? under.mtu;
        this.underlayName = under.name;
        try {
          await this.host.prepareSteering(under.name);
        } catch (err) {
          this.p.fail('steering', err);
        }
        this.localAddresses = (await routing.listAddresses()).map((a) => a.address);
        observed = await wg.show(primary.name);
        this.observedRoutes = await routing.listRoutes(ROUTE_TABLE);
        tunnelLink = await routing.getLink(primary.name);
        if (secondary !== undefined && this.secondaryOk) {
          this.observedSecondary = await wg.show(secondary.name);
          this.secondaryLink = await routing.getLink(secondary.name);
        }
        if (this.retire) this.retiredPresent = (await routing.getLink(this.active.name)) !== undefined;
      } catch (err) {
        this.p.fail('observe', err);
        return false;
      }
    }
    if (observed === undefined || tunnelLink === undefined) {
      this.p.fail(
        'observe',
        new SealnetError('WG_FAILED', `${primary.name} vanished while reconciling; will recreate on the next pass`),
      );
      this.host.retriggerFull();
      return false;
    }
    this.observed = observed;
    this.tunnelLink = tunnelLink;
    if (
      secondary !== undefined &&
      this.secondaryOk &&
      (this.observedSecondary === undefined || this.secondaryLink === undefined)
    ) {
      this.secondaryOk = false;
      this.p.fail(
        'observe',
        new SealnetError('WG_FAILED', `${secondary.name} vanished while reconciling; will recreate on the next pass`),
      );
    }
    return true;
  }

  /**
   * 5. Plan. On the first pass, adopt what the kernel already holds as established (an agent
   * restart must not let a node that copied a working peer's key or CIDRs tear it down).
   */
  private planDesired(): boolean {
    const { config, store } = this.d;
    const { rot, incoming, active } = this;
    if (!this.s.adopted) {
      this.s.established = adoptEstablished(this.nodes, config.nodeName, this.observed.peers);
      // The endpoints the adopted peers have in the kernel: who held an endpoint before a restart.
      const byKey = new Map(this.observed.peers.map((p) => [p.publicKey as string, p.endpoint]));
      this.s.endpointOwners = Object.fromEntries(
        Object.entries(this.s.established).flatMap(([node, key]) => {
          const ep = byKey.get(key);
          return ep === undefined ? [] : [[node, endpointHostOf(ep)]];
        }),
      );
      this.s.adopted = true;
    }
    const input: PlanInputLazy = {
      nodes: this.nodes,
      self: {
        name: config.nodeName,
        wireguardPublicKey: active.publicKey,
        localAddresses: this.localAddresses,
        ...(rot !== undefined ? { link: { name: active.name, listenPort: active.listenPort } } : {}),
        ...(rot !== undefined && incoming !== undefined
          ? {
              rotation: {
                link: { name: incoming.name, listenPort: incoming.listenPort },
                publicKey: incoming.publicKey,
                viaIncoming: rot.viaIncoming,
              },
            }
          : {}),
      },
      config: {
        mode: config.mode,
        listenPort: config.wireguard.listenPort,
        persistentKeepalive: config.wireguard.persistentKeepalive,
        underlayMtu: this.underlayMtu,
        underlayFamily: this.endpointIP.family,
        nodeToNode: config.steering.nodeToNode
          ? {
              exemptCidrs: config.steering.exemptCidrs,
              ...(config.steering.nodeCidrs.length > 0 ? { nodeCidrs: config.steering.nodeCidrs } : {}),
            }
          : undefined,
      },
      established: () => this.withOwners(),
      establishedAddresses: this.s.addressOwners,
      establishedEndpoints: this.s.endpointOwners,
      // A key counts as shaken hands only on every link: each link moves its allowed IPs in
      // its own `wg set`, and a link must not move them to a key it has no session with.
      handshakes: handshakesOnEveryLink([
        this.observed.peers,
        ...(this.observedSecondary !== undefined ? [this.observedSecondary.peers] : []),
      ]),
    };
    try {
      // A full pass plans in full (the safety net); an event pass re-plans only the nodes that
      // changed when nothing else did (plan/incremental.ts: the same result, or a full plan).
      if (this.full) {
        this.desired = this.s.planner.full(input);
        this.changed = undefined;
      } else {
        const r = this.s.planner.plan(input);
        this.desired = r.desired;
        this.changed = r.changed;
        if (r.changed !== undefined && r.previous !== undefined) {
          const keys = new Set(r.previous.keys);
          const dsts = new Set(r.previous.dsts);
          for (const p of r.desired.tunnel.peers) {
            if (!r.changed.has(p.node)) continue;
            keys.add(p.publicKey);
            for (const a of p.allowedIPs) dsts.add(a);
          }
          this.changedScope = { keys, dsts };
        }
        // First-seen key ownership: the nodes that changed claim their keys (a full plan
        // recorded every node's in withOwners()).
        if (r.changed !== undefined) this.recordOwners(r.changed);
      }
    } catch (err) {
      this.s.planner.reset();
      this.p.fail('plan', err);
      return false;
    }
    this.host.reportSkipped(this.desired);
    this.prune = store.synced();
    this.gatePq();
    return true;
  }

  /**
   * 5b. `postQuantum: required`: a pair without a confirmed post-quantum secret keeps its peer
   * (the exchange runs through it) but not its pod routes, and its steering entries are not
   * ready: its pod traffic is dropped, never sent classical-only (tunnels/plan/pq-gate.ts).
   */
  private gatePq(): void {
    const pq = this.d.pq;
    if (pq === undefined) return;
    const blocked = pq.blocked(this.nodes);
    if (blocked.size === 0) return;
    this.desired = gatePqRoutes(this.desired, blocked);
    for (const peer of this.desired.tunnel.peers) if (blocked.has(peer.node)) this.pqBlockedKeys.add(peer.publicKey);
  }

  /** 4b. The post-quantum annotations (ML-KEM key, exchange address), once the addresses are known. */
  private async publishPq(): Promise<void> {
    const { pq, store, config } = this.d;
    if (pq === undefined) return;
    const own = pq.ownAnnotations(this.self, this.localAddresses);
    if (own === undefined || !Object.entries(own).some(([k, v]) => this.self.annotations[k] !== v)) return;
    try {
      await store.patchAnnotations(config.nodeName, own);
      this.d.log.info({ address: own[ANNOTATIONS.pqAddress] }, 'published own ML-KEM key and exchange address');
    } catch (err) {
      this.p.fail('publish', err);
    }
  }

  /** 7b. Tell the exchange which peers the primary link holds now (it installs PSKs only there). */
  private reportToPq(): void {
    const pq = this.d.pq;
    const back = this.readBack[0];
    if (pq === undefined || back === undefined) return;
    const held = new Set(back.peers.map((p) => p.publicKey as string));
    const peers = new Map<string, PublicKey>();
    for (const p of this.desired.tunnel.peers)
      if (p.next !== true && held.has(p.publicKey)) peers.set(p.node, p.publicKey);
    pq.programmed({
      link: back.name,
      ifindex: back.ifindex,
      selfKey: this.primary.publicKey,
      nodes: this.nodes,
      peers,
    });
  }

  /**
   * What an event pass has to diff: the peer keys and route destinations of the nodes it
   * re-planned (before and now). Only on the view of a clean pass that pruned (then every other
   * peer and route in the view is exactly the rest of this plan: the planner re-planned only
   * these nodes) and only while this pass prunes too; undefined: diff everything.
   */
  private scope(): { keys: Set<string>; dsts: Set<string> } | undefined {
    if (this.reuse === undefined || !this.reuse.pruned || !this.prune || this.links.length !== 1) return undefined;
    return this.changedScope;
  }

  /** 6a. Link MTU and state, on every link. */
  private async applyLinks(): Promise<void> {
    const { routing } = this.d;
    const desired = this.desired;
    this.links = [{ name: this.primary.name, observed: this.observed.peers, info: this.tunnelLink, changed: false }];
    const { secondary, observedSecondary, secondaryLink } = this;
    if (secondary !== undefined && this.secondaryOk && observedSecondary !== undefined && secondaryLink !== undefined)
      this.links.push({ name: secondary.name, observed: observedSecondary.peers, info: secondaryLink, changed: false });
    for (const l of this.links) {
      try {
        if (l.info.mtu !== desired.tunnel.link.mtu || !l.info.up) {
          await this.p.op('link_set', () => routing.setLink(l.name, { mtu: desired.tunnel.link.mtu, up: true }));
        }
      } catch (err) {
        this.p.fail('link', err);
      }
    }
  }

  /**
   * 6b. New and changed peers on every link, the rotation datapath, routes, the rule per
   * family, route deletions, then peer removes (only when every set succeeded).
   */
  private async applyPeersAndRoutes(): Promise<void> {
    const { wg, routing, metrics, log } = this.d;
    const { desired, prune, incoming, rot, active, retire } = this;
    const ops = this.p.ops;
    const fail = this.p.fail;
    // An event pass diffs only what the changed nodes had and have (scope()); the rest of the
    // view is what the last clean, pruned pass left, which equals the rest of this plan.
    const scope = this.scope();
    const routeChanges =
      scope === undefined
        ? diffRoutes(desired.routes, this.observedRoutes, { prune })
        : diffRoutes(
            desired.routes.filter((r) => scope.dsts.has(r.dst)),
            this.observedRoutes.filter((r) => scope.dsts.has(r.dst)),
            { prune },
          );
    this.routeChanges = routeChanges;
    // Sets and removes in one `wg set` when nothing has to happen between them (no route change,
    // no rotation): `wg` applies its clauses in order and stops at the first failure, so a remove
    // still only happens once every set before it succeeded (one process start, not two).
    const oneCall = routeChanges.length === 0 && incoming === undefined;
    const replaceRoutes = async (): Promise<void> => {
      for (const c of routeChanges.filter((r) => r.op === 'replace')) {
        try {
          await this.p.op('route_replace', () => routing.replaceRoute(c.route));
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
    for (const l of this.links) {
      const peerChanges =
        scope === undefined
          ? diffPeers(desired.tunnel.peers, l.observed, { prune })
          : diffPeers(
              desired.tunnel.peers.filter((p) => scope.keys.has(p.publicKey)),
              l.observed.filter((o) => scope.keys.has(o.publicKey)),
              { prune },
            );
      const peerSets = peerChanges.filter((c) => c.op === 'set');
      const removes = peerChanges.filter((c) => c.op === 'remove');
      this.setsByLink.set(l.name, peerSets);
      this.removesByLink.push({ name: l.name, removes: oneCall ? [] : removes });
      const now = oneCall ? [...peerSets, ...removes] : peerSets;
      if (now.length === 0) continue;
      l.changed = true;
      try {
        await wg.applyPeers(l.name, now);
        ops.peer_set = (ops.peer_set ?? 0) + peerSets.length;
        metrics.kernelOps.inc({ op: 'peer_set' }, peerSets.length);
        if (oneCall && removes.length > 0) {
          this.removedByLink.set(l.name, removes);
          ops.peer_remove = (ops.peer_remove ?? 0) + removes.length;
          metrics.kernelOps.inc({ op: 'peer_remove' }, removes.length);
        }
      } catch (err) {
        this.peersOk = false;
        if (oneCall) this.removesOk = false;
        fail('peers', err);
      }
    }
    // The rotation datapath (addresses, qdisc, mirror) before any route moves into the new link.
    if (this.d.mirror !== undefined && rot !== undefined && incoming !== undefined && (retire || this.secondaryOk)) {
      const v4 =
        desired.routes.find((r) => r.src !== undefined && !r.src.includes(':'))?.src ??
        (this.endpointIP.family === 4 ? this.endpointHost : undefined);
      this.s.rotationDatapath = await applyRotationDatapath({
        mirror: this.d.mirror,
        rot,
        incoming: incoming.name,
        active: active.name,
        retire,
        v4,
        memo: this.s.rotationDatapath,
        ops,
        fail,
        warn: (msg) => log.warn({}, msg),
      });
    }
    await (routesReplaced ?? replaceRoutes());
    // One rule per family that has routes in our table (dual-stack pods over an IPv4 underlay
    // need the IPv6 rule too, or IPv6 pod traffic bypasses the tunnel), plus the underlay's.
    const families = new Set<4 | 6>([this.endpointIP.family]);
    for (const r of desired.routes) families.add(r.dst.includes(':') ? 6 : 4);
    // (An event pass that changes no route has nothing to add: the last full pass ensured them.)
    for (const family of this.reuse !== undefined && routeChanges.length === 0 ? [] : [...families].sort()) {
      try {
        await routing.ensureRule({ priority: RULE_PRIORITY, table: ROUTE_TABLE, family });
      } catch (err) {
        fail('rule', err);
      }
    }
    for (const c of routeChanges.filter((r) => r.op === 'delete')) {
      try {
        await this.p.op('route_delete', () => routing.deleteRoute({ dst: c.route.dst, table: c.route.table }));
      } catch (err) {
        fail('routes', err);
      }
    }
    // Removes depend on the sets: a removed old key whose allowed IPs did not reach the new key
    // leaves them unowned (cilium#34612). If the sets failed, keep the old peers until next pass.
    for (const { name, removes } of this.removesByLink) {
      if (removes.length === 0 || !this.peersOk) continue;
      const l = this.links.find((x) => x.name === name);
      if (l !== undefined) l.changed = true;
      try {
        await wg.applyPeers(name, removes);
        this.removedByLink.set(name, removes);
        ops.peer_remove = (ops.peer_remove ?? 0) + removes.length;
        metrics.kernelOps.inc({ op: 'peer_remove' }, removes.length);
      } catch (err) {
        this.removesOk = false;
        fail('peers', err);
      }
    }
  }

  /**
   * 7. Ready means programmed: read the peers back after the changes above (an event pass on
   * the view takes what `wg set` accepted: it exits non-zero on anything it did not apply).
   */
  private async readPeersBack(): Promise<void> {
    const { config, wg } = this.d;
    for (const l of this.links) {
      try {
        const applied =
          this.reuse !== undefined && this.peersOk && this.removesOk
            ? applyPeerChanges(l.observed, [
                ...(this.setsByLink.get(l.name) ?? []),
                ...(this.removedByLink.get(l.name) ?? []),
              ])
            : undefined;
        this.readBack.push({
          name: l.name,
          peers: applied ?? (l.changed ? ((await wg.show(l.name))?.peers ?? l.observed) : l.observed),
          ifindex: l.info.ifindex,
        });
      } catch (err) {
        this.p.fail('observe', err);
        this.readBack.push({ name: l.name, peers: l.observed, ifindex: l.info.ifindex });
      }
    }
    if (config.steering.nodeToNode)
      await this.s.nodeToNodeLinks.ensure({
        mirror: this.d.mirror,
        links: this.readBack,
        v4: tunnelLinkAddress(this.desired.routes, this.endpointHost),
        ops: this.p.ops,
        fail: this.p.fail,
      });
  }

  /** 8. Steering entries: each prefix into the link its route uses, ready per that link's peers. */
  private async steer(): Promise<void> {
    const { config, metrics } = this.d;
    const steering = this.d.steering;
    if (steering === undefined) return;
    if (!this.host.steeringAttached()) {
      this.s.steeringPlanner.reset(); // its last plan is no longer this pass's predecessor
      this.p.fail(
        'steering',
        new SealnetError(
          'KERNEL_FEATURE_MISSING',
          'this agent could not attach its BPF steering (see the steering error above) and does not update the steering entries; a guard pinned by an earlier run may still be attached with its old entries (check with bpftool net): pod traffic is not known to be guarded',
        ),
      );
      return;
    }
    try {
      const input = (observedPeers: readonly ObservedPeer[], ifindex: number): SteeringPlanInput => ({
        self: config.nodeName,
        clusterCidrs: config.steering.clusterCidrs,
        nodes: this.nodes,
        desiredPeers: this.desired.tunnel.peers,
        // A pair `postQuantum: required` blocks counts as not programmed: not ready, dropped.
        observedPeers:
          this.pqBlockedKeys.size === 0
            ? observedPeers
            : observedPeers.filter((p) => !this.pqBlockedKeys.has(p.publicKey)),
        target: { action: 'redirect', ifindex },
        nodeToNode: config.steering.nodeToNode,
        exemptCidrs: config.steering.exemptCidrs,
        nodeCidrs: config.steering.nodeCidrs,
      });
      let entries: SteeringEntry[] = [];
      const only = this.readBack.length === 1 ? this.readBack[0] : undefined;
      if (only !== undefined) {
        // One link: an event pass re-plans only the nodes whose node, peers or tunnel peer
        // changed (plan/steering-incremental.ts: the same entries, or a full plan).
        const planner = this.s.steeringPlanner;
        const one = input(only.peers, only.ifindex);
        entries = this.full ? planner.full(one) : planner.plan(one, this.changed).entries;
      } else {
        this.s.steeringPlanner.reset();
        const devOf = steeringLinks(this.desired.routes, config.steering.nodeToNode ? this.nodes : []);
        for (const [i, l] of this.readBack.entries()) {
          const e = planSteering(input(l.peers, l.ifindex));
          const byCidr = new Map(e.map((x) => [x.cidr, x]));
          entries = i === 0 ? e : entries.map((x) => (devOf.get(x.cidr) === l.name ? (byCidr.get(x.cidr) ?? x) : x));
        }
      }
      const r = await steering.applyEntries(entries, { prune: this.prune, fromLastWrite: this.reuse !== undefined });
      this.steeringEntries = entries;
      this.p.count('steering_write', r.written);
      this.p.count('steering_delete', r.deleted);
      const byState = new Map<string, number>();
      for (const e of entries) byState.set(e.state, (byState.get(e.state) ?? 0) + 1);
      metrics.steeringEntries.reset();
      for (const [state, n] of byState) metrics.steeringEntries.set({ state }, n);
    } catch (err) {
      this.p.fail('steering', err);
    }
  }

  /**
   * 9. The end of a rotation: the old link goes only after every route and steering entry left
   * it without an error, and only after the store synced.
   */
  private async retireOldLink(): Promise<void> {
    if (!(this.retire && this.retiredPresent && this.prune && this.p.errors.length === 0)) return;
    const name = this.active.name;
    try {
      await this.p.op('link_delete', () => this.d.wg.deleteLink(name));
      this.retiredPresent = false;
      this.d.log.info({ link: name }, `deleted ${name}: the old key's link`);
    } catch (err) {
      this.p.fail('link', err);
    }
  }

  /** The established set, completed from first-seen ownership for nodes it does not know. */
  private withOwners(): Record<string, PublicKey> {
    const published = this.recordOwners(undefined);
    const book = this.d.keyOwners;
    if (book === undefined) return this.s.established;
    return establishedWithOwners(this.s.established, book.owners, published) as Record<string, PublicKey>;
  }

  /**
   * Records the keys the nodes publish (only those of `names` when given: the nodes an event
   * pass re-planned; the others' claims are in the book since they last changed) as first seen,
   * and logs each new conflict once. Returns node → published key of the nodes it looked at.
   */
  private recordOwners(names: ReadonlySet<string> | undefined): Record<string, string> {
    const book = this.d.keyOwners;
    const published: Record<string, string> = {};
    const claims: Record<string, string[]> = {};
    if (book === undefined && names !== undefined) return published;
    for (const raw of this.nodes) {
      if (raw.name === this.d.config.nodeName || (names !== undefined && !names.has(raw.name))) continue;
      const r = decodeNode(raw);
      if (!r.ok) continue;
      published[raw.name] = r.node.wireguardPublicKey;
      claims[raw.name] = [r.node.wireguardPublicKey];
    }
    if (book === undefined) return published;
    const conflicts = book.record(claims, Date.now());
    for (const c of conflicts) {
      // Once per (key, claimant): a lasting conflict must not write a line every pass.
      const id = `${c.key}/${c.claimant}`;
      if (this.s.ownerConflictsLogged.has(id) || this.s.ownerConflictsLogged.size > 10_000) continue;
      this.s.ownerConflictsLogged.add(id);
      this.d.metrics.keyOwnerConflicts.inc();
      this.d.log.warn(
        { node: c.claimant, owner: c.owner || undefined, key: fingerprint(c.key as PublicKey) },
        'a node publishes a key another node was seen with first (or at the same time); the older claim keeps it',
      );
    }
    return published;
  }

  /** 10. What the kernel now holds becomes the established set (the planner's tie-breaks). */
  private recordEstablished(): void {
    const peers = this.desired.tunnel.peers.filter((p) => p.next !== true);
    if (!this.peersOk) {
      this.s.establishedComplete = false;
    } else if (this.changed !== undefined && this.s.establishedComplete) {
      this.updateEstablished(this.changed, peers);
    } else {
      this.s.established = Object.fromEntries(peers.map((p) => [p.node, p.publicKey]));
      this.s.endpointOwners = Object.fromEntries(peers.map((p) => [p.node, endpointHostOf(p.endpoint)]));
      // Node-to-node host prefixes (/32, /128 outside the node's pod CIDRs) and who holds them.
      const pods = new Set(this.desired.routes.map((r) => r.dst));
      this.s.addressOwners = Object.fromEntries(
        peers.flatMap((p) => p.allowedIPs.filter((a) => !pods.has(a) && /\/(32|128)$/.test(a)).map((a) => [a, p.node])),
      );
      this.s.establishedComplete = true;
    }
    this.d.metrics.peers.set(peers.length);
  }

  /**
   * {@link recordEstablished} after an event pass that re-planned only `changed`: their entries
   * replaced, everyone else's kept (the last pass recorded them from the same peers).
   */
  private updateEstablished(changed: ReadonlySet<string>, peers: readonly DesiredPeer[]): void {
    const { established, endpointOwners, addressOwners } = this.s;
    for (const name of changed) {
      delete established[name];
      delete endpointOwners[name];
    }
    for (const [a, node] of Object.entries(addressOwners)) if (changed.has(node)) delete addressOwners[a];
    let pods: Set<string> | undefined;
    for (const p of peers) {
      if (!changed.has(p.node)) continue;
      established[p.node] = p.publicKey;
      endpointOwners[p.node] = endpointHostOf(p.endpoint);
      for (const a of p.allowedIPs) {
        if (!/\/(32|128)$/.test(a)) continue;
        pods ??= new Set(this.desired.routes.map((r) => r.dst));
        if (!pods.has(a)) addressOwners[a] = p.node;
      }
    }
  }

  /** 11. One step of the key-rotation state machine, from what this pass reached. */
  private async finishRotationStep(): Promise<void> {
    const { config, store, log } = this.d;
    await afterRotation({
      nodeName: config.nodeName,
      store,
      log,
      rotation: this.d.rotation,
      self: this.self,
      endpointHost: this.endpointHost,
      desired: this.desired,
      readBack: this.readBack,
      secondary: this.secondaryOk ? this.secondary?.name : undefined,
      retiredPresent: this.retire ? this.retiredPresent : true,
      applied: this.p.errors.length === 0,
      fail: this.p.fail,
    });
  }

  /**
   * 12. Keep what this pass left for the next event pass: only after a clean pass with one link
   * and no rotation anywhere (rotations decide on live handshake times, which only a read gives).
   */
  private keepView(): boolean {
    const { desired, readBack } = this;
    const quiet =
      this.incoming === undefined &&
      this.links.length === 1 &&
      desired.tunnel.peers.every((p) => p.next !== true) &&
      (desired.tunnel.following?.length ?? 0) === 0;
    if (this.p.errors.length !== 0 || !quiet || this.underlayName === undefined || readBack[0] === undefined)
      return false;
    this.s.view = {
      link: this.primary.name,
      publicKey: this.primary.publicKey,
      listenPort: this.primary.listenPort,
      ifindex: this.tunnelLink.ifindex,
      mtu: desired.tunnel.link.mtu,
      underlay: this.underlayName,
      underlayMtu: this.underlayMtu,
      localAddresses: this.localAddresses,
      peers: readBack[0].peers,
      routes: applyRouteChanges(this.observedRoutes, this.routeChanges),
      pruned: this.prune,
    };
    return true;
  }

  /**
   * 13. The last applied state (tunnels/plan/lastapplied.ts) for a restart to restore before its
   * store syncs: after a clean, quiet, full pass once the store synced (the store's word, not a
   * restore's), and only when it changed. Full passes only (the first after the sync, then every
   * resync): event passes at 5,000 nodes would encode and fsync ~2 MB per node joining; a
   * restore at most one resync interval stale is corrected by the pass after its sync anyway.
   * A failed write costs the next restart its head start only: logged and counted.
   */
  private async persistApplied(quiet: boolean): Promise<void> {
    const file = this.d.lastApplied;
    if (file === undefined || !quiet || !this.prune || !this.full || this.d.config.mode !== 'wireguard') return;
    const text = encodeLastApplied({
      nodeName: this.d.config.nodeName,
      endpointHost: this.endpointHost,
      link: {
        name: this.primary.name,
        publicKey: this.primary.publicKey,
        listenPort: this.primary.listenPort,
        mtu: this.desired.tunnel.link.mtu,
      },
      peers: this.desired.tunnel.peers,
      routes: this.desired.routes,
      steering: this.steeringEntries.map((e) => ({ cidr: e.cidr, state: e.state, kind: e.kind, peerId: e.peerId })),
    });
    if (text === this.s.lastAppliedText) return;
    try {
      await file.write(text);
      this.s.lastAppliedText = text;
    } catch (err) {
      this.d.metrics.errors.inc({ step: 'persist' });
      this.d.log.warn(
        { err: describeError(err) },
        'cannot write the last applied state; a restart will wait for the node store before programming tunnels',
      );
    }
  }
}

/**
 * Node → key of the peers the kernel already holds: a node counts as established when a peer
 * with its published key exists and carries exactly its pod CIDRs as allowed IPs.
 */
function adoptEstablished(
  nodes: readonly RawNode[],
  self: string,
  peers: readonly ObservedPeer[],
): Record<string, PublicKey> {
  const byKey = new Map(peers.map((p) => [p.publicKey as string, p]));
  const out: Record<string, PublicKey> = {};
  for (const raw of nodes) {
    if (raw.name === self) continue;
    const r = decodeNode(raw);
    const peer = r.ok ? byKey.get(r.node.wireguardPublicKey) : undefined;
    if (!r.ok || peer === undefined) continue;
    if (peer.allowedIPs.length === r.node.podCIDRs.length && peer.allowedIPs.every((a, i) => a === r.node.podCIDRs[i]))
      out[raw.name] = r.node.wireguardPublicKey;
  }
  return out;
}

/** The host of `ip:port` or `[ip6]:port` (as the planner writes peer endpoints). */
function endpointHostOf(endpoint: string): string {
  return endpoint.startsWith('[')
    ? endpoint.slice(1, endpoint.indexOf(']'))
    : endpoint.slice(0, endpoint.lastIndexOf(':'));
}
