/**
 * Pure: which prefixes the steering map should hold, and in which state, from the node list,
 * the planner's desired peers and the peers read back from the tunnel. No I/O, sorted output.
 *
 * Ready means "programmed": the tunnel holds a peer with the node's current key whose allowed
 * IPs contain the prefix, read back from the kernel after apply. A handshake is not required:
 * WireGuard queues what it cannot send yet and never emits plaintext, and requiring a handshake
 * would deadlock (with no keepalive, the first data packet is what starts the handshake).
 */
import {
  canonicalCidr,
  cidrsOverlap,
  compareCidrs,
  formatCidr,
  parseCidr,
  parseIP,
  type Cidr,
} from '../../common/ip.js';
import { nonUnicastClass } from '../../common/addrclass.js';
import type { DesiredPeer } from '../ports/model.js';
import { DEFAULT_NODE_CIDRS } from './planner.js';
import type { ObservedPeer, SteeringEntry } from '../ports/index.js';

/** How ready entries reach the tunnel. */
export type SteeringTarget =
  | { readonly action: 'redirect'; readonly ifindex: number }
  | { readonly action: 'mark'; readonly markFor: (node: string) => number };

/** Everything {@link planSteering} reads. */
export interface SteeringPlanInput {
  /** This node's name (its own prefixes are never steered). */
  readonly self: string;
  /** The whole cluster pod range(s): `no-peer` catch-alls under the per-node entries. */
  readonly clusterCidrs: readonly string[];
  /** Every node the store lists, decodable or not (a node without a key still has pod CIDRs). */
  readonly nodes: readonly {
    readonly name: string;
    readonly podCIDRs: readonly string[];
    readonly internalIPs: readonly string[];
  }[];
  /** The planner's peers (DesiredState.peers). */
  readonly desiredPeers: readonly DesiredPeer[];
  /** Peers read back from the tunnel after apply (`wg show dump`). */
  readonly observedPeers: readonly ObservedPeer[];
  /** Undefined while the tunnel link does not exist: then nothing is ready. */
  readonly target: SteeringTarget | undefined;
  /** Also steer remote node addresses (host-network traffic). */
  readonly nodeToNode: boolean;
  /**
   * Prefixes that always pass (`steering.exemptCidrs`, the API server): a node address inside
   * one gets no entry. The program checks the exempt map first anyway; leaving the entry out
   * keeps the map and the status report saying what actually happens.
   */
  readonly exemptCidrs?: readonly string[] | undefined;
  /**
   * Where node addresses may lie (`steering.nodeCidrs`; default the planner's
   * DEFAULT_NODE_CIDRS). Another node chooses its addresses: one outside these, or not unicast,
   * gets no entry (the planner does not take it either), so a node listing 8.8.8.8 or
   * 169.254.169.254 cannot make every node drop its host traffic there.
   */
  readonly nodeCidrs?: readonly string[] | undefined;
}

/** FNV-1a of the node name: a stable peer number for status output (0 is reserved for none). */
export function peerIdOf(node: string): number {
  let id = peerIds.get(node);
  if (id === undefined) {
    if (peerIds.size > 65536) peerIds.clear();
    peerIds.set(node, (id = fnv1a(node)));
  }
  return id;
}

const peerIds = new Map<string, number>();

function fnv1a(node: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(node, 'utf8')) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h === 0 ? 1 : h;
}

/** Canonical text of a prefix (memoised in cidr.ts: a pass canonicalises every prefix). */
const canonical = canonicalCidr;

function hostPrefix(addr: string): string | undefined {
  const ip = parseIP(addr);
  return ip === undefined
    ? undefined
    : formatCidr({ family: ip.family, network: ip.value, prefixLength: ip.family === 4 ? 32 : 128 });
}

/**
 * Which tunnel link each steered prefix belongs to: a pod CIDR goes where its route goes, and a
 * node address (node-to-node encryption, no route of its own) goes with its node's pod CIDRs,
 * so that during a key rotation a node's host traffic moves between links with its pods'.
 */
export function steeringLinks(
  routes: readonly { readonly dst: string; readonly dev: string }[],
  nodes: readonly { readonly podCIDRs: readonly string[]; readonly internalIPs: readonly string[] }[],
): Map<string, string> {
  const out = new Map(routes.map((r) => [r.dst, r.dev]));
  for (const n of nodes) {
    const dev = n.podCIDRs.map((c) => out.get(canonical(c) ?? '')).find((d) => d !== undefined);
    if (dev === undefined) continue;
    for (const a of n.internalIPs) {
      const h = hostPrefix(a);
      if (h !== undefined && !out.has(h)) out.set(h, dev);
    }
  }
  return out;
}

/** Computes the steering entries. Pure and deterministic. */
export function planSteering(input: SteeringPlanInput): SteeringEntry[] {
  const self = input.nodes.find((n) => n.name === input.self);
  const own = (self?.podCIDRs ?? []).map((c) => parseCidr(c, { hostBits: 'clear' })).filter((c) => c !== undefined);
  // A node has two desired peers while it rotates (current and next key): the prefix is
  // ready when the peer meant to own it owns it in the tunnel.
  const desired = new Map<string, DesiredPeer[]>();
  for (const p of input.desiredPeers) desired.set(p.node, [...(desired.get(p.node) ?? []), p]);
  const observed = new Map(
    input.observedPeers.map((p) => [p.publicKey as string, new Set(p.allowedIPs.map((a) => canonical(a)))]),
  );
  const exempt = (input.exemptCidrs ?? [])
    .map((c) => parseCidr(c, { hostBits: 'clear' }))
    .filter((c) => c !== undefined);
  const out = new Map<string, SteeringEntry>();
  // Node-to-node: which node's peer the planner gave each host prefix; this node's own addresses.
  const holders = new Map<string, string>();
  const ownAddresses = new Set<string>();
  const allowedNodeCidrs = (
    input.nodeCidrs !== undefined && input.nodeCidrs.length > 0 ? input.nodeCidrs : DEFAULT_NODE_CIDRS
  )
    .map((c) => parseCidr(c, { hostBits: 'clear' }))
    .filter((c) => c !== undefined);
  if (input.nodeToNode) {
    for (const p of input.desiredPeers)
      for (const a of p.allowedIPs) if (/\/(32|128)$/.test(a)) holders.set(canonical(a) ?? a, p.node);
    for (const a of self?.internalIPs ?? []) {
      const h = hostPrefix(a);
      if (h !== undefined) ownAddresses.add(h);
    }
  }

  const put = (e: SteeringEntry): void => {
    const prev = out.get(e.cidr);
    // Two claims on one prefix (a conflict the planner skipped): the unsafe reading never wins.
    if (prev !== undefined && (prev.state !== 'ready' || e.state !== 'ready' || prev.peerId !== e.peerId)) {
      out.set(e.cidr, { ...prev, state: 'not-ready', ifindex: 0, mark: 0 });
      return;
    }
    out.set(e.cidr, e);
  };

  for (const cidr of input.clusterCidrs) {
    const c = canonical(cidr);
    if (c !== undefined)
      out.set(c, { cidr: c, state: 'no-peer', action: 'redirect', kind: 'pod', ifindex: 0, mark: 0, peerId: 0 });
  }
  const ctx: NodeEntryContext = {
    own,
    target: input.target,
    nodeToNode: input.nodeToNode,
    exempt,
    holders,
    ownAddresses,
    allowedNodeCidrs,
    observedHas: (key, cidr) => observed.get(key)?.has(cidr) === true,
  };
  for (const node of [...input.nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (node.name === input.self) continue;
    for (const e of nodeEntries(node, desired.get(node.name) ?? [], ctx)) put(e);
  }
  // Sorted by (family, network, length), with each prefix parsed once (5,000 entries a pass).
  return [...out.values()]
    .map((e) => ({ e, c: parseCidr(e.cidr, { hostBits: 'clear' })! }))
    .sort(compareParsed)
    .map((x) => x.e);
}

/** The order of steering entries: (family, network, length) of their parsed prefix. */
export function compareParsed(x: { readonly c: Cidr }, y: { readonly c: Cidr }): number {
  return (
    x.c.family - y.c.family ||
    (x.c.network < y.c.network ? -1 : x.c.network > y.c.network ? 1 : 0) ||
    x.c.prefixLength - y.c.prefixLength
  );
}

/** What {@link nodeEntries} needs besides the node and its desired peers. */
export interface NodeEntryContext {
  /** This node's own pod CIDRs: never steered. */
  readonly own: readonly Cidr[];
  readonly target: SteeringTarget | undefined;
  readonly nodeToNode: boolean;
  readonly exempt: readonly Cidr[];
  /** Node-to-node: host prefix → the node whose peer the planner gave it. */
  readonly holders: ReadonlyMap<string, string>;
  readonly ownAddresses: ReadonlySet<string>;
  readonly allowedNodeCidrs: readonly Cidr[];
  /** True when the tunnel's peer with this key holds this (canonical) prefix. */
  readonly observedHas: (publicKey: string, cidr: string) => boolean;
}

/** The steering entries of one remote node's prefixes, in the order the node lists them (before conflicts). */
export function nodeEntries(
  node: SteeringPlanInput['nodes'][number],
  nodePeers: readonly DesiredPeer[],
  ctx: NodeEntryContext,
): SteeringEntry[] {
  const prefixes: { cidr: string; kind: 'pod' | 'node' }[] = [];
  for (const p of node.podCIDRs) {
    const parsed = parseCidr(p, { hostBits: 'clear' });
    if (parsed === undefined || ctx.own.some((o) => cidrsOverlap(o, parsed))) continue;
    prefixes.push({ cidr: canonical(p)!, kind: 'pod' });
  }
  if (ctx.nodeToNode) {
    for (const a of node.internalIPs) {
      const h = hostPrefix(a);
      const c = h === undefined ? undefined : parseCidr(h, { hostBits: 'clear' });
      if (h === undefined || c === undefined || ctx.exempt.some((e) => cidrsOverlap(e, c))) continue;
      // An address the planner gave another node's peer is that node's entry alone: a claim by
      // a second node (or by a skipped one) must not turn it into a drop for everyone.
      const holder = ctx.holders.get(h);
      if (holder !== undefined && holder !== node.name) continue;
      if (ctx.ownAddresses.has(h) || !nodeAddressAllowed(a, ctx.allowedNodeCidrs)) continue;
      prefixes.push({ cidr: h, kind: 'node' });
    }
  }
  const target = ctx.target;
  const out: SteeringEntry[] = [];
  for (const { cidr, kind } of prefixes) {
    const peer = nodePeers.find((p) => p.allowedIPs.some((a) => canonical(a) === cidr));
    const ready = target !== undefined && peer !== undefined && ctx.observedHas(peer.publicKey, cidr);
    const peerId = peerIdOf(node.name);
    if (!ready || target === undefined) {
      out.push({ cidr, state: 'not-ready', action: target?.action ?? 'redirect', kind, ifindex: 0, mark: 0, peerId });
    } else if (target.action === 'redirect') {
      out.push({ cidr, state: 'ready', action: 'redirect', kind, ifindex: target.ifindex, mark: 0, peerId });
    } else {
      out.push({ cidr, state: 'ready', action: 'mark', kind, ifindex: 0, mark: target.markFor(node.name), peerId });
    }
  }
  return out;
}

/** A unicast address inside one of `allowed` (what the planner would take as a node address). */
function nodeAddressAllowed(address: string, allowed: readonly NonNullable<ReturnType<typeof parseCidr>>[]): boolean {
  const ip = parseIP(address);
  if (ip === undefined || nonUnicastClass(ip.family, ip.value) !== undefined) return false;
  const c = parseCidr(hostPrefix(address) ?? '', { hostBits: 'clear' });
  return c !== undefined && allowed.some((e) => cidrsOverlap(e, c));
}
