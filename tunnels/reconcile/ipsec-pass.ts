/**
 * Mode ipsec: the pure plan (cluster snapshot → SAs, policies and routes) and the reconcile
 * pass the {@link Reconciler} runs instead of its WireGuard steps when `mode` is `ipsec`.
 *
 * The plan reuses every skip rule of `plan()` (decoding, mode mismatch, pod-CIDR conflicts,
 * the node-identity key), then adds the IPsec ones (IPsec key missing, malformed, equal to this
 * node's, or published by two nodes) and hands the surviving peers to `planIpsec`. SPIs are
 * allocated over every node with a parseable IPsec key, skipped or not, so a skip decision
 * never moves an SPI. Routes to remote pod CIDRs go out of the underlay device with the ESP
 * tunnel MTU and the pod-CIDR source hint; there is no WireGuard link.
 *
 * XFRM policies carry no mark: a packet from a local pod CIDR to a peer's pod CIDR is encrypted
 * whoever sent it (a forwarding pod, or the host with the pod-CIDR source). A mark-gated policy
 * would miss host traffic: the pod-facing TC hook runs only for forwarded packets, and local
 * traffic picks its policy while the socket routes, before any TC hook. Fail-closed comes
 * from the policies themselves (no SA: the kernel drops) and from the underlay egress program:
 * a remote pod prefix of a ready peer is a `mark` entry, so plaintext that escaped XFRM is
 * dropped (`xfrm_bypass`); a peer that is not ready is dropped as `not_ready`. ESP between node
 * addresses passes at egress by its output mark (XFRM_OUTPUT_MARK = WG_FWMARK), not by protocol
 * number, and at ingress because `SteeringSettings.esp` is set in this mode.
 */
import type { PublicKey } from '../../keymgr/keys.js';
import { fingerprint } from '../../keymgr/keys.js';
import { planIpsec, type IpsecPlanNode } from '../plan/ipsec-sa.js';
import type { SpiNode } from '../plan/spi.js';
import {
  decodeIpsecKey,
  decodeNode,
  encodeIpsecGeneration,
  encodeIpsecKey,
  encodeNode,
  type IpsecKeyResult,
} from '../plan/annotations.js';
import { canonicalCidr, parseIP } from '../../common/ip.js';
import { isValidEpoch, MAX_KEY_EPOCH } from '../../common/bounds.js';
import { ANNOTATIONS, ROUTE_TABLE, RULE_PRIORITY } from '../../common/constants.js';
import { diffRoutes } from '../plan/diff.js';
import { SealnetError } from '../../common/errors.js';
import {
  ipsecOf,
  type DesiredPeer,
  type DesiredRoute,
  type DesiredState,
  type RawNode,
  type SkippedNode,
} from '../ports/model.js';
import { plan, type PlanInput } from '../plan/planner.js';
import type { IpsecApplyResult, IpsecPort, ObservedPeer, SteeringEntry } from '../ports/index.js';
import type { ReconcileReport } from '../ports/model.js';
import type { ReconcilerDeps } from './deps.js';
import { ipsecEstablishedWithOwners } from './ipsec-owners.js';
import type { PassContext, PassHost } from './context.js';
import { planSteering } from '../plan/steering.js';
import {
  encodeIpsecReports,
  ipsecRotationReports,
  peerIpsecKeys,
  type IpsecKey,
  type IpsecRotation,
} from '../rotation/ipsec.js';

export type { IpsecRuntime } from './deps.js';

/** IPsec-specific inputs of {@link planIpsecMode}. */
export interface IpsecPlanExtras {
  readonly publicKey: PublicKey;
  readonly epoch: number;
  /** This node's underlay address (the endpoint host it publishes). */
  readonly address: string;
  /** The device carrying `address` (routes to remote pod CIDRs leave through it). */
  readonly underlayDev: string;
  readonly keyBits: 128 | 256;
  readonly replayWindow: number;
  /** Other keys this node accepts with besides `publicKey`/`epoch` (the one it sends with) during a rotation. */
  readonly otherKeys?: readonly IpsecKey[] | undefined;
  /**
   * Node → IPsec key programmed by the previous successful apply. Breaks ties when two nodes
   * publish the same IPsec key: the established owner keeps it, a copier cannot take it over.
   */
  readonly established?: Readonly<Record<string, PublicKey>>;
  /** This node's IPsec generation (0 or absent: none). */
  readonly generation?: number | undefined;
}

/** Everything {@link planIpsecMode} reads: the `plan()` input (config.mode `ipsec`) plus the IPsec part. */
export interface IpsecModePlanInput extends PlanInput {
  readonly ipsec: IpsecPlanExtras;
}

const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Computes the desired state of mode ipsec. Pure and deterministic. */
export function planIpsecMode(input: IpsecModePlanInput): DesiredState {
  const x = input.ipsec;
  const self = input.self.name;
  const base = plan(input);
  const skipped: SkippedNode[] = [...base.skipped];
  const keys = new Map<string, IpsecKeyResult>(
    input.nodes.filter((n) => n.name !== self).map((n) => [n.name, decodeIpsecKey(n)]),
  );

  // SPIs over every node with a parseable key (skipped ones too), and this node's own key.
  const ownKeys: IpsecKey[] = [
    { epoch: x.epoch, publicKey: x.publicKey },
    ...(x.otherKeys ?? []).filter((k) => k.epoch !== x.epoch),
  ];
  const universe: SpiNode[] = [{ name: self, epochs: ownKeys.map((k) => k.epoch), generation: x.generation }];
  // Every key a peer publishes (current, and a next or previous one during its rotation).
  const rotating = new Map<string, ReturnType<typeof peerIpsecKeys>>();
  for (const [name, k] of keys) {
    if (!k.ok) continue;
    const raw = input.nodes.find((n) => n.name === name)!;
    const all = peerIpsecKeys(raw, { epoch: k.epoch, publicKey: k.publicKey });
    // The decoders bound every epoch; this check keeps the allocator's domain a local fact, so
    // that one node's numbers can never make the allocator throw for the whole pass.
    if (!all.keys.every((e) => isValidEpoch(e.epoch))) {
      keys.set(name, {
        ok: false,
        reason: 'annotations-invalid',
        detail: `node ${name}: an IPsec key epoch is outside 0..${MAX_KEY_EPOCH}`,
      });
      continue;
    }
    rotating.set(name, all);
    universe.push({ name, epochs: all.keys.map((e) => e.epoch), generation: k.generation });
  }

  // IPsec skip rules on the nodes plan() accepted.
  const candidates: { name: string; key: PublicKey; epoch: number; generation: number }[] = [];
  for (const p of base.tunnel.peers) {
    const k = keys.get(p.node);
    if (k === undefined) continue;
    if (!k.ok) skipped.push({ name: p.node, reason: k.reason, detail: k.detail });
    else if (k.publicKey === x.publicKey)
      skipped.push({
        name: p.node,
        reason: 'key-equals-self',
        detail: `node ${p.node} publishes this node's own IPsec public key`,
      });
    else candidates.push({ name: p.node, key: k.publicKey, epoch: k.epoch, generation: k.generation });
  }
  const accepted = dropDuplicateKeys(candidates, x.established ?? {}, skipped);

  const peers: IpsecPlanNode[] = [];
  for (const c of accepted) {
    const raw = input.nodes.find((n) => n.name === c.name);
    const d = raw === undefined ? undefined : decodeNode(raw);
    if (d === undefined || !d.ok) continue; // plan() accepted it, so it decodes
    const all = rotating.get(c.name) ?? { keys: [{ epoch: c.epoch, publicKey: c.key }], sendEpoch: c.epoch };
    peers.push({
      name: c.name,
      address: d.node.endpointHost,
      podCIDRs: d.node.podCIDRs,
      currentEpoch: all.sendEpoch,
      keys: all.keys,
      generation: c.generation,
    });
  }
  const ownCidrs = (input.nodes.find((n) => n.name === self)?.podCIDRs ?? [])
    .map((c) => canonicalCidr(c))
    .filter((c) => c !== undefined);
  const r = planIpsec({
    self: {
      name: self,
      address: x.address,
      podCIDRs: [...new Set(ownCidrs)],
      currentEpoch: x.epoch,
      keys: ownKeys,
      generation: x.generation,
    },
    peers,
    spiUniverse: universe,
    keyBits: x.keyBits,
    replayWindow: x.replayWindow,
  });
  for (const s of r.skipped)
    skipped.push({ name: s.node, reason: 'ipsec-unusable', detail: `node ${s.node}: ${s.detail}` });

  // plan() computed the routes (ESP MTU, pod-CIDR source) for its WireGuard link: same routes
  // out of the underlay device, for the peers that got SAs.
  const remote = new Set(r.desired.peers.flatMap((p) => p.remoteCIDRs));
  const routes: DesiredRoute[] = base.routes
    .filter((rt) => remote.has(rt.dst))
    .map((rt) => ({ ...rt, dev: x.underlayDev }));
  return { tunnel: { kind: 'ipsec', sas: r.desired }, routes, skipped: skipped.sort(byName) };
}

/** Skips every node whose IPsec key another candidate also publishes, unless it alone was established with it. */
function dropDuplicateKeys<T extends { name: string; key: PublicKey }>(
  nodes: readonly T[],
  established: Readonly<Record<string, PublicKey>>,
  skipped: SkippedNode[],
): T[] {
  const losers = new Map<string, SkippedNode>();
  for (const a of nodes) {
    const same = nodes.filter((b) => b !== a && b.key === a.key);
    if (same.length === 0) continue;
    const owner = [a, ...same].filter((n) => established[n.name] === n.key);
    if (owner.length === 1 && owner[0] === a) continue;
    const others = same.map((b) => b.name).join(', ');
    const detail = `nodes ${a.name} and ${others} publish the same IPsec public key${owner.length === 1 ? `; ${owner[0]!.name} had it first` : ''}`;
    losers.set(a.name, { name: a.name, reason: 'duplicate-key', detail });
  }
  skipped.push(...losers.values());
  return nodes.filter((n) => !losers.has(n.name));
}

/**
 * The steering planner's view of mode ipsec: one "peer" per IPsec pair (its IPsec key and the
 * remote pod CIDRs), programmed when the driver reported the pair ready.
 */
export function ipsecSteeringPeers(
  desired: DesiredState,
  ready: readonly string[],
): { desiredPeers: DesiredPeer[]; observedPeers: ObservedPeer[] } {
  const pairs = ipsecOf(desired)?.peers ?? [];
  const desiredPeers = pairs.map((p) => ({
    node: p.node,
    publicKey: p.outbound.peerPublicKey,
    endpoint: p.remoteAddress,
    allowedIPs: p.remoteCIDRs,
    persistentKeepalive: 0,
  }));
  const observedPeers = pairs
    .filter((p) => ready.includes(p.node))
    .map((p) => ({
      publicKey: p.outbound.peerPublicKey,
      endpoint: undefined,
      allowedIPs: p.remoteCIDRs,
      latestHandshake: 0,
      rxBytes: 0,
      txBytes: 0,
      persistentKeepalive: 0,
    }));
  return { desiredPeers, observedPeers };
}

/** State the reconciler keeps between IPsec passes. */
export interface IpsecPassState {
  /** Node → IPsec key of the pairs the last successful apply programmed. */
  established: Record<string, PublicKey>;
  /** Node → identity (WireGuard-annotation) key of the same pairs, for `plan()`'s tie-breaks. */
  identities: Record<string, PublicKey>;
  /** Families `checkKernel` passed for since start (besides the start-up check). */
  readonly checked: Set<4 | 6>;
  /** Key-ownership conflicts already counted and logged (key/claimant). */
  readonly ownerConflicts: Set<string>;
}

/** A fresh {@link IpsecPassState}. */
export function newIpsecPassState(): IpsecPassState {
  return { established: {}, identities: {}, checked: new Set(), ownerConflicts: new Set() };
}

/** What one IPsec pass works with: the deps, the state kept between passes, the pass's bookkeeping, the loop's helpers. */
export interface IpsecPassContext {
  readonly deps: ReconcilerDeps;
  readonly state: IpsecPassState;
  readonly pass: PassContext;
  readonly host: PassHost;
}

/**
 * One reconcile pass in mode ipsec (same contract as `Reconciler.reconcileOnce`). Order: own
 * annotations (only after the kernel passed the ESP check for the endpoint's family), observe,
 * plan, XFRM states and policies (the driver: inbound SAs, outbound SA, policies; pruning only
 * after sync), routes, rules, route deletions, then the steering entries from what the driver
 * reached. Never throws.
 */
export async function reconcileIpsec(ctx: IpsecPassContext): Promise<ReconcileReport> {
  const { config, key, store, routing, log, metrics, steering } = ctx.deps;
  const ipsec = ctx.deps.ipsec;
  if (ipsec === undefined) {
    ctx.pass.fail('ipsec', new SealnetError('INTERNAL', 'mode ipsec without an IPsec driver'));
    return ctx.pass.finish(undefined, false, false);
  }

  // 1. Who am I?
  const nodes = store.list();
  const self = nodes.find((n) => n.name === config.nodeName);
  if (self === undefined) {
    ctx.pass.fail(
      'self',
      new SealnetError(
        'STORE_IO',
        `node ${config.nodeName} is not in the node store yet; waiting (check --node-name / NODE_NAME)`,
      ),
    );
    return ctx.pass.finish(undefined, false, false);
  }
  const endpointHost = config.endpointAddress ?? self.internalIPs[0];
  const endpointIP = endpointHost === undefined ? undefined : parseIP(endpointHost);
  if (endpointHost === undefined || endpointIP === undefined) {
    ctx.pass.fail(
      'self',
      new SealnetError(
        'CONFIG_INVALID',
        `node ${config.nodeName} has no InternalIP address; set endpointAddress in the agent config`,
      ),
    );
    return ctx.pass.finish(undefined, false, false);
  }

  // 2. The endpoint's family must have ESP before this node announces an IPsec key for it.
  if (!ipsec.checkedFamilies.includes(endpointIP.family) && !ctx.state.checked.has(endpointIP.family)) {
    try {
      await ipsec.port.checkKernel([endpointIP.family]);
      ctx.state.checked.add(endpointIP.family);
    } catch (err) {
      ctx.pass.fail('ipsec', err);
      return ctx.pass.finish(undefined, false, false);
    }
  }

  // 3. Publish: the identity annotations plus the IPsec key.
  const own: Record<string, string | undefined> = {
    ...encodeNode({
      mode: config.mode,
      wireguardPublicKey: key.publicKey,
      endpointHost,
      endpointPort: config.wireguard.listenPort,
      keyEpoch: key.epoch,
      keyCreated: key.createdAt,
    }),
    ...(ipsec.rotation?.annotations() ?? encodeIpsecKey(ipsec.key)),
    ...(ipsec.generation !== undefined ? encodeIpsecGeneration(ipsec.generation) : {}),
  };
  if (Object.entries(own).some(([k, v]) => self.annotations[k] !== v)) {
    try {
      await store.patchAnnotations(config.nodeName, own);
      log.info(
        { key: fingerprint(ipsec.key.publicKey), epoch: ipsec.key.epoch, endpoint: own[ANNOTATIONS.endpoint] },
        'published own IPsec public key and endpoint',
      );
    } catch (err) {
      ctx.pass.fail('publish', err);
    }
  }

  // 4. Read the kernel.
  let underlay;
  let localAddresses: string[];
  let observedRoutes;
  try {
    underlay = await routing.linkForAddress(endpointHost);
    if (underlay === undefined)
      throw new SealnetError(
        'NETLINK_FAILED',
        `no link carries the endpoint address ${endpointHost}; check the node's InternalIP or set endpointAddress in the agent config`,
      );
    try {
      await ctx.host.prepareSteering(underlay.name);
    } catch (err) {
      ctx.pass.fail('steering', err);
    }
    localAddresses = (await routing.listAddresses()).map((a) => a.address);
    observedRoutes = await routing.listRoutes(ROUTE_TABLE);
  } catch (err) {
    ctx.pass.fail('observe', err);
    return ctx.pass.finish(undefined, false, false);
  }

  // 5. Plan (during a rotation: the key this node sends with, and the others it accepts).
  const ownKeys = ipsec.rotation?.keys() ?? { send: ipsec.key, others: [] };
  // First-seen ownership completes both established sets (a restarted agent has none in memory).
  const held = ipsecEstablishedWithOwners({
    deps: ctx.deps,
    nodes,
    identities: ctx.state.identities,
    established: ctx.state.established,
    counted: ctx.state.ownerConflicts,
    now: Date.now(),
  });
  let desired: DesiredState;
  try {
    desired = planIpsecMode({
      nodes,
      self: { name: config.nodeName, wireguardPublicKey: key.publicKey, localAddresses },
      config: {
        mode: 'ipsec',
        listenPort: config.wireguard.listenPort,
        persistentKeepalive: 0,
        underlayMtu: config.underlayMtu ?? underlay.mtu,
        underlayFamily: endpointIP.family,
      },
      established: held.identities,
      ipsec: {
        publicKey: ownKeys.send.publicKey,
        epoch: ownKeys.send.epoch,
        otherKeys: ownKeys.others,
        address: endpointHost,
        underlayDev: underlay.name,
        keyBits: config.ipsec.keyBits,
        replayWindow: config.ipsec.replayWindow,
        established: held.established,
        generation: ipsec.generation,
      },
    });
  } catch (err) {
    ctx.pass.fail('plan', err);
    return ctx.pass.finish(undefined, false, false);
  }
  ctx.host.reportSkipped(desired);
  const prune = store.synced();
  const wanted = ipsecOf(desired);
  if (wanted === undefined) {
    ctx.pass.fail('plan', new SealnetError('INTERNAL', 'mode ipsec planned no IPsec tunnel'));
    return ctx.pass.finish(undefined, false, false);
  }

  // 6. XFRM: a failing peer is reported; the others proceed (the driver's contract).
  let applied: IpsecApplyResult | undefined;
  try {
    applied = await ipsec.port.apply(wanted, { prune });
    for (const c of applied.changes) ctx.pass.count(`xfrm_${c.op.replace(/-/g, '_')}`, 1);
    if (applied.changes.length > 0)
      log.info({ changes: applied.changes.map((c) => `${c.op} ${c.target}`) }, 'XFRM states and policies updated');
    for (const w of applied.warnings) log.warn({ step: 'ipsec' }, w);
    for (const f of applied.failed)
      ctx.pass.fail(
        'ipsec',
        new SealnetError('NETLINK_FAILED', `IPsec pair with ${f.node} not installed`, { cause: f.error }),
      );
  } catch (err) {
    ctx.pass.fail('ipsec', err);
  }

  // 7. Routes: new/changed ones, the rules, then deletions (only after sync).
  await applyRoutes(ctx, desired, observedRoutes, { prune, family: endpointIP.family });

  // 8. Steering from what the driver reached.
  if (steering !== undefined && ctx.host.steeringAttached()) {
    try {
      const entries: SteeringEntry[] = planSteering({
        self: config.nodeName,
        clusterCidrs: config.steering.clusterCidrs,
        nodes,
        ...ipsecSteeringPeers(desired, applied?.ready ?? []),
        target: { action: 'mark', markFor: () => 0 },
        nodeToNode: false,
      });
      const r = await steering.applyEntries(entries, { prune });
      ctx.pass.count('steering_write', r.written);
      ctx.pass.count('steering_delete', r.deleted);
      metrics.steeringEntries.reset();
      for (const e of entries) metrics.steeringEntries.inc({ state: e.state });
    } catch (err) {
      ctx.pass.fail('steering', err);
    }
  } else if (steering !== undefined) {
    ctx.pass.fail(
      'steering',
      new SealnetError(
        'KERNEL_FEATURE_MISSING',
        'this agent could not attach its BPF steering (see the steering error above) and does not update the steering entries; a guard pinned by an earlier run may still be attached with its old entries (check with bpftool net): pod traffic is not known to be guarded',
      ),
    );
  }

  // 9. Rotation: what this node did with other nodes' next keys, then one step of its own.
  const reports = encodeIpsecReports(ipsecRotationReports(nodes, wanted, applied?.ready ?? []));
  if ((self.annotations[ANNOTATIONS.rotationPeers] ?? undefined) !== reports) {
    try {
      await store.patchAnnotations(config.nodeName, { [ANNOTATIONS.rotationPeers]: reports });
    } catch (err) {
      ctx.pass.fail('publish', err);
    }
  }
  await ipsec.rotation?.after({
    nodes: store.list(),
    synced: prune,
    applied: prune && applied !== undefined && applied.failed.length === 0,
    peers: wanted.peers.map((p) => p.node),
  });

  if (applied !== undefined && applied.failed.length === 0) {
    ctx.state.established = Object.fromEntries(wanted.peers.map((p) => [p.node, p.outbound.peerPublicKey]));
    ctx.state.identities = identitiesOf(
      nodes,
      wanted.peers.map((p) => p.node),
    );
  }
  metrics.peers.set(wanted.peers.length);
  return ctx.pass.finish(desired, prune, prune && applied !== undefined);
}

function identitiesOf(nodes: readonly RawNode[], names: readonly string[]): Record<string, PublicKey> {
  const out: Record<string, PublicKey> = {};
  for (const raw of nodes) {
    if (!names.includes(raw.name)) continue;
    const d = decodeNode(raw);
    if (d.ok) out[raw.name] = d.node.wireguardPublicKey;
  }
  return out;
}

async function applyRoutes(
  ctx: IpsecPassContext,
  desired: DesiredState,
  observed: Parameters<typeof diffRoutes>[1],
  o: { readonly prune: boolean; readonly family: 4 | 6 },
): Promise<void> {
  const { routing } = ctx.deps;
  const changes = diffRoutes(desired.routes, observed, { prune: o.prune });
  for (const c of changes.filter((r) => r.op === 'replace')) {
    try {
      await ctx.pass.op('route_replace', () => routing.replaceRoute(c.route));
    } catch (err) {
      ctx.pass.fail('routes', err);
    }
  }
  const families = new Set<4 | 6>([o.family]);
  for (const r of desired.routes) families.add(r.dst.includes(':') ? 6 : 4);
  for (const family of [...families].sort()) {
    try {
      await routing.ensureRule({ priority: RULE_PRIORITY, table: ROUTE_TABLE, family });
    } catch (err) {
      ctx.pass.fail('rule', err);
    }
  }
  for (const c of changes.filter((r) => r.op === 'delete')) {
    try {
      await ctx.pass.op('route_delete', () => routing.deleteRoute({ dst: c.route.dst, table: c.route.table }));
    } catch (err) {
      ctx.pass.fail('routes', err);
    }
  }
}
