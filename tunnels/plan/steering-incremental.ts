/**
 * {@link planSteering} for an event pass: the last entries with only the changed nodes'
 * prefixes re-planned, and exactly what `planSteering()` returns for the same input. Pure; the
 * state it keeps is the last input and result, indexed.
 *
 * A node's entries depend on its own prefixes, its desired peers, the tunnel's peers with
 * those keys, the target and this node's own pod CIDRs. The changed nodes are the ones whose
 * node object, desired peers (the incremental plan's `changed`) or tunnel peer (object
 * identity: the kernel view keeps every untouched peer's object) changed. It works only with
 * one redirect target, without node-to-node mode, and where no prefix of a changed node is
 * claimed twice (two nodes, or a node and a cluster range: the merge of such claims is
 * planSteering's); anything else is a full `planSteering()`, which re-seeds the index.
 */
import { canonicalCidr, parseCidr, type Cidr } from '../../common/ip.js';
import type { DesiredPeer } from '../ports/model.js';
import type { ObservedPeer, SteeringEntry } from '../ports/index.js';
import { MAX_INCREMENTAL_CHANGES } from './incremental.js';
import { compareParsed, nodeEntries, planSteering, type NodeEntryContext, type SteeringPlanInput } from './steering.js';

type SteeringNode = SteeringPlanInput['nodes'][number];

interface NodeState {
  /** Replaced by an object with the same name, pod CIDRs and InternalIPs (a kubelet update). */
  node: SteeringNode;
  readonly cidrs: readonly string[];
}

interface Index {
  readonly settings: string;
  readonly ifindex: number;
  /** This node is listed, with these pod CIDRs (the only field of it read without node-to-node mode). */
  readonly selfCidrs: string | undefined;
  readonly own: readonly Cidr[];
  readonly nodes: Map<string, NodeState>;
  /** Prefix → how many claims (cluster ranges and node prefixes). */
  readonly claims: Map<string, number>;
  /** Key → node of every desired peer. */
  readonly keyNode: Map<string, string>;
  /** Key → tunnel peer object, as the last plan saw them. */
  observed: Map<string, ObservedPeer>;
  /** The entries, sorted as planSteering sorts them. */
  readonly sorted: { e: SteeringEntry; c: Cidr }[];
}

function settingsOf(input: SteeringPlanInput): string {
  return JSON.stringify([input.self, input.clusterCidrs, input.exemptCidrs ?? [], input.nodeCidrs ?? []]);
}

function lowerBound(list: readonly { c: Cidr }[], c: Cidr): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareParsed(list[mid]!, { c }) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The steering plan from the last one; see the file comment. Owned by one reconcile loop. */
export class IncrementalSteering {
  #index: Index | undefined;

  /** Forgets the last plan: the next one is a full `planSteering()`. */
  reset(): void {
    this.#index = undefined;
  }

  /** A full `planSteering()`, remembered for the next event pass. */
  full(input: SteeringPlanInput): SteeringEntry[] {
    const entries = planSteering(input);
    this.#index = seed(input, entries);
    return entries;
  }

  /**
   * The entries for `input`. `changedPeers`: the nodes whose desired peers changed since the last
   * call (the incremental plan's `changed`); undefined (a full plan) makes this a full one too.
   * Returns whether it was incremental.
   */
  plan(
    input: SteeringPlanInput,
    changedPeers: ReadonlySet<string> | undefined,
  ): { entries: SteeringEntry[]; incremental: boolean } {
    const index = this.#index;
    if (index !== undefined && changedPeers !== undefined && update(index, input, changedPeers))
      return { entries: index.sorted.map((x) => x.e), incremental: true };
    return { entries: this.full(input), incremental: false };
  }
}

function seed(input: SteeringPlanInput, entries: readonly SteeringEntry[]): Index | undefined {
  if (input.nodeToNode || input.target?.action !== 'redirect') return undefined;
  const selfNode = input.nodes.find((n) => n.name === input.self);
  const index: Index = {
    settings: settingsOf(input),
    ifindex: input.target.ifindex,
    selfCidrs: selfNode === undefined ? undefined : JSON.stringify(selfNode.podCIDRs),
    own: ownOf(selfNode),
    nodes: new Map(),
    claims: new Map(),
    keyNode: new Map(input.desiredPeers.map((p) => [p.publicKey as string, p.node])),
    observed: new Map(input.observedPeers.map((p) => [p.publicKey as string, p])),
    sorted: entries.map((e) => ({ e, c: parseCidr(e.cidr, { hostBits: 'clear' })! })),
  };
  const claim = (cidr: string): void => {
    index.claims.set(cidr, (index.claims.get(cidr) ?? 0) + 1);
  };
  for (const c of input.clusterCidrs) {
    const p = canonicalCidr(c);
    if (p !== undefined) claim(p);
  }
  const ctx = contextOf(index, input, new Map());
  for (const node of input.nodes) {
    if (node.name === input.self) continue;
    if (index.nodes.has(node.name)) return undefined; // listed twice
    // Prefixes only: readiness does not matter for the claims.
    const cidrs = nodeEntries(node, [], ctx).map((e) => e.cidr);
    index.nodes.set(node.name, { node, cidrs });
    cidrs.forEach(claim);
  }
  return index;
}

const sameList = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** True when planSteering reads the same of both node objects (name, pod CIDRs, InternalIPs). */
function sameSteeringInput(a: SteeringNode, b: SteeringNode): boolean {
  return a.name === b.name && sameList(a.podCIDRs, b.podCIDRs) && sameList(a.internalIPs, b.internalIPs);
}

function ownOf(self: SteeringNode | undefined): Cidr[] {
  return (self?.podCIDRs ?? []).map((c) => parseCidr(c, { hostBits: 'clear' })).filter((c) => c !== undefined);
}

function contextOf(
  index: Index,
  input: SteeringPlanInput,
  observed: ReadonlyMap<string, ReadonlySet<string | undefined>>,
): NodeEntryContext {
  return {
    own: index.own,
    target: input.target,
    nodeToNode: false,
    exempt: [],
    holders: new Map(),
    ownAddresses: new Set(),
    allowedNodeCidrs: [],
    observedHas: (key, cidr) => observed.get(key)?.has(cidr) === true,
  };
}

/** Re-plans the changed nodes in place; false when only a full plan can say (the index is then stale). */
function update(index: Index, input: SteeringPlanInput, changedPeers: ReadonlySet<string>): boolean {
  const target = input.target;
  if (input.nodeToNode || target?.action !== 'redirect' || target.ifindex !== index.ifindex) return false;
  if (settingsOf(input) !== index.settings) return false;
  const changed = new Set(changedPeers);
  const now = new Map<string, SteeringNode>();
  for (const node of input.nodes) {
    if (node.name === input.self) {
      if (JSON.stringify(node.podCIDRs) !== index.selfCidrs) return false;
      continue;
    }
    const prev = index.nodes.get(node.name);
    if (prev?.node === node) continue;
    if (prev !== undefined && sameSteeringInput(prev.node, node)) {
      prev.node = node;
      continue;
    }
    if (now.has(node.name)) return false;
    now.set(node.name, node);
    changed.add(node.name);
  }
  const selfListed = index.selfCidrs !== undefined ? 1 : 0;
  if (input.nodes.length - selfListed !== index.nodes.size + countNew(index, now)) {
    const names = new Set(input.nodes.map((n) => n.name));
    if ((selfListed === 1) !== names.has(input.self)) return false;
    for (const name of index.nodes.keys()) if (!names.has(name)) changed.add(name);
  }
  // Tunnel peers whose object changed (set, moved or removed): their nodes' readiness may have.
  const observed = new Map<string, ObservedPeer>();
  for (const p of input.observedPeers) {
    observed.set(p.publicKey, p);
    if (index.observed.get(p.publicKey) === p) continue;
    const node = index.keyNode.get(p.publicKey);
    if (node !== undefined) changed.add(node);
  }
  if (observed.size !== index.observed.size || changed.size > 0) {
    for (const [key, p] of index.observed) {
      if (observed.get(key) === p) continue;
      const node = index.keyNode.get(key);
      if (node !== undefined) changed.add(node);
    }
  }
  if (changed.size > MAX_INCREMENTAL_CHANGES) return false;
  // The desired peers of the changed nodes (and their keys' owners from now on).
  const peersOf = new Map<string, DesiredPeer[]>();
  for (const p of input.desiredPeers) {
    if (!changed.has(p.node)) continue;
    const list = peersOf.get(p.node);
    if (list === undefined) peersOf.set(p.node, [p]);
    else list.push(p);
  }
  for (const [key, node] of index.keyNode) if (changed.has(node)) index.keyNode.delete(key);
  for (const [node, list] of peersOf) for (const p of list) index.keyNode.set(p.publicKey, node);
  index.observed = observed;
  // Out with the old entries of the changed nodes, in with the new.
  for (const name of changed) {
    const st = index.nodes.get(name);
    if (st === undefined) continue;
    index.nodes.delete(name);
    for (const cidr of st.cidrs) {
      const n = (index.claims.get(cidr) ?? 0) - 1;
      if (n !== 0) return false; // it was claimed twice: the merge is planSteering's
      index.claims.delete(cidr);
      const c = parseCidr(cidr, { hostBits: 'clear' })!;
      const i = lowerBound(index.sorted, c);
      if (index.sorted[i]?.e.cidr !== cidr) return false;
      index.sorted.splice(i, 1);
    }
  }
  const sets = new Map<string, ReadonlySet<string | undefined>>();
  for (const list of peersOf.values())
    for (const p of list) {
      const o = observed.get(p.publicKey);
      if (o !== undefined) sets.set(p.publicKey, new Set(o.allowedIPs.map((a) => canonicalCidr(a))));
    }
  const ctx = contextOf(index, input, sets);
  const present = new Map(input.nodes.filter((n) => changed.has(n.name)).map((n) => [n.name, n]));
  for (const name of changed) {
    const node = present.get(name);
    if (node === undefined || name === input.self) continue;
    const entries = nodeEntries(node, peersOf.get(name) ?? [], ctx);
    const cidrs = entries.map((e) => e.cidr);
    if (new Set(cidrs).size !== cidrs.length) return false;
    for (const e of entries) {
      if (index.claims.has(e.cidr)) return false;
      index.claims.set(e.cidr, 1);
      const c = parseCidr(e.cidr, { hostBits: 'clear' })!;
      index.sorted.splice(lowerBound(index.sorted, c), 0, { e, c });
    }
    index.nodes.set(name, { node, cidrs });
  }
  // Every node listed once (two under one name: planSteering merges them).
  return index.nodes.size === input.nodes.length - selfListed;
}

/** How many of `now` (changed node objects) are not in the index yet. */
function countNew(index: Index, now: ReadonlyMap<string, SteeringNode>): number {
  let n = 0;
  for (const name of now.keys()) if (!index.nodes.has(name)) n++;
  return n;
}
