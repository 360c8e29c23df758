/**
 * {@link plan} for a pass triggered by a few changed nodes: the last result with only those
 * nodes re-planned, and exactly what `plan()` returns for the same input. Pure (no I/O, no
 * clock); the state it keeps is the last input and result, indexed.
 *
 * It works only where one node's plan does not depend on another's: no conflict between remote
 * nodes (a shared key, endpoint host or overlapping pod CIDRs, whose winner depends on the
 * established sets), no rotation (this node's or a remote node's next key), no node-to-node
 * mode (contested addresses), nothing else in the input changed (this node, its addresses, the
 * config). Anything else, or more than a few changed nodes, is a full `plan()`, which also
 * re-seeds the index. The reconciler plans in full on every full pass (start, resync, retry),
 * so this is only a shortcut for event passes, never the safety net.
 */
import { compareCidrs, parseCidr, type Cidr } from '../../common/ip.js';
import { ANNOTATIONS } from '../../common/constants.js';
import type { PublicKey } from '../../keymgr/keys.js';
import type {
  DesiredPeer,
  DesiredRoute,
  DesiredWireGuardState,
  PeerNode,
  RawNode,
  SkippedNode,
} from '../ports/model.js';
import {
  currentPeer,
  nodeRoutes,
  ownSide,
  plan,
  planMtu,
  screenNode,
  type PlanInput,
  type ScreenContext,
} from './planner.js';

/** At most this many changed nodes (or this share of all nodes) are re-planned alone. */
export const MAX_INCREMENTAL_CHANGES = 64;

/** A plan and how it was made. */
export interface IncrementalPlan {
  readonly desired: DesiredWireGuardState;
  /** Names of the nodes re-planned (added, changed or removed); undefined: planned in full. */
  readonly changed: ReadonlySet<string> | undefined;
  /**
   * What the changed nodes had in the previous plan: peer keys and route destinations (with
   * theirs in this plan, the only peers and routes that can differ from the previous plan).
   */
  readonly previous?: { readonly keys: readonly string[]; readonly dsts: readonly string[] };
}

/** The planner input without `established`, which only a full plan reads (conflicts). */
export type PlanInputLazy = Omit<PlanInput, 'established'> & {
  /** Computed only when the plan is made in full. */
  readonly established: () => Readonly<Record<string, PublicKey>>;
};

/** A node as last planned; `raw` is replaced by an equal-for-the-planner object (a kubelet update). */
type Entry =
  | { raw: RawNode; readonly skipped: SkippedNode }
  | { raw: RawNode; readonly node: PeerNode; readonly peer: DesiredPeer; readonly spans: readonly Span[] };

interface Span {
  readonly family: 4 | 6;
  readonly start: bigint;
  readonly end: bigint;
}

interface Index {
  /** This node, its own side (pod CIDRs, addresses) and the config, as one string. */
  readonly selfKey: string;
  /** This node is listed among the nodes. */
  readonly selfListed: boolean;
  readonly screen: ScreenContext;
  readonly link: DesiredWireGuardState['tunnel']['link'];
  readonly mtu: number;
  readonly ownCidrs: readonly Cidr[];
  readonly entries: Map<string, Entry>;
  /** Key and endpoint host of every accepted node → its name. */
  readonly keys: Map<string, string>;
  readonly hosts: Map<string, string>;
  /** Pod CIDR spans of every accepted node, sorted by (family, start); pairwise disjoint. */
  readonly spans: Span[];
  readonly peers: DesiredPeer[];
  readonly routes: DesiredRoute[];
  readonly skipped: SkippedNode[];
  /** Filled by an update: what the changed nodes had before it. */
  readonly removedKeys: string[];
  readonly removedDsts: string[];
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const bySpan = (a: Span, b: Span): number =>
  a.family - b.family || (a.start < b.start ? -1 : a.start > b.start ? 1 : 0);

/** First index in sorted `list` whose element is not below `x` under `cmp`. */
function lowerBound<T, K>(list: readonly T[], x: K, cmp: (a: T, b: K) => number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cmp(list[mid]!, x) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function insertSorted<T, K>(list: T[], item: T, key: K, cmp: (a: T, b: K) => number): void {
  list.splice(lowerBound(list, key, cmp), 0, item);
}

function removeSorted<T, K>(list: T[], key: K, cmp: (a: T, b: K) => number, same: (a: T) => boolean): void {
  const i = lowerBound(list, key, cmp);
  if (i < list.length && same(list[i]!)) list.splice(i, 1);
}

function spansOf(n: PeerNode): Span[] | undefined {
  const out: Span[] = [];
  for (const text of n.podCIDRs) {
    const c = parseCidr(text, { hostBits: 'clear' });
    if (c === undefined) return undefined;
    const bits = c.family === 4 ? 32n : 128n;
    out.push({ family: c.family, start: c.network, end: c.network + (1n << (bits - BigInt(c.prefixLength))) - 1n });
  }
  return out.sort(bySpan);
}

/** True when `s` overlaps a span of the sorted, pairwise disjoint `spans`. */
function overlapsAny(spans: readonly Span[], s: Span): boolean {
  const i = lowerBound(spans, s, bySpan);
  const next = spans[i];
  if (next !== undefined && next.family === s.family && next.start <= s.end) return true;
  const prev = spans[i - 1];
  return prev !== undefined && prev.family === s.family && prev.end >= s.start;
}

/**
 * The inputs besides the other nodes, as one comparable string: this node, what plan() reads of
 * its own Node (pod CIDRs, published endpoint: its status summary changes often and is not
 * read) and the config.
 */
function selfKeyOf(input: Pick<PlanInput, 'self' | 'config' | 'nodes'>): string {
  const { selfRaw, ownHosts } = ownSide(input);
  return JSON.stringify([input.self, input.config, selfRaw?.podCIDRs ?? null, [...ownHosts].sort()]);
}

const sameList = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * True when `plan()` reads the same of both node objects: name, pod CIDRs, InternalIPs, every
 * annotation but the status summary's value (a superset of what it decodes). The stores hand out
 * a new object for every update, kubelet heartbeats included.
 */
export function samePlannerInput(a: RawNode, b: RawNode): boolean {
  if (a === b) return true;
  if (a.name !== b.name || !sameList(a.podCIDRs, b.podCIDRs) || !sameList(a.internalIPs, b.internalIPs)) return false;
  // Its presence counts: a node with no other sealnet.io/ annotation decodes differently with it.
  if (Object.hasOwn(a.annotations, ANNOTATIONS.status) !== Object.hasOwn(b.annotations, ANNOTATIONS.status))
    return false;
  let n = 0;
  for (const k of Object.keys(a.annotations)) {
    if (k === ANNOTATIONS.status) continue;
    n++;
    if (!Object.hasOwn(b.annotations, k) || a.annotations[k] !== b.annotations[k]) return false;
  }
  for (const k of Object.keys(b.annotations)) if (k !== ANNOTATIONS.status) n--;
  return n === 0;
}

/** Plans event passes from the last plan; see the file comment. Owned by one reconcile loop. */
export class IncrementalPlanner {
  #index: Index | undefined;

  /** Forgets the last plan: the next {@link plan} is a full one. */
  reset(): void {
    this.#index = undefined;
  }

  /** A full `plan()`, remembered for the next event pass. */
  full(input: PlanInputLazy): DesiredWireGuardState {
    const desired = plan({ ...input, established: input.established() });
    this.#index = seed(input, desired);
    return desired;
  }

  /** The plan for `input`: from the last one when only a few nodes changed, else in full. */
  plan(input: PlanInputLazy): IncrementalPlan {
    const index = this.#index;
    const changed = index === undefined ? undefined : this.#changedNames(index, input);
    if (index === undefined || changed === undefined || !update(index, input, changed)) {
      return { desired: this.full(input), changed: undefined };
    }
    return {
      desired: result(index),
      changed,
      previous: { keys: [...index.removedKeys], dsts: [...index.removedDsts] },
    };
  }

  #changedNames(index: Index, input: PlanInputLazy): Set<string> | undefined {
    if (input.config.nodeToNode !== undefined || input.self.rotation !== undefined) return undefined;
    if (selfKeyOf(input) !== index.selfKey) return undefined;
    const changed = new Set<string>();
    let added = 0;
    for (const raw of input.nodes) {
      const prev = index.entries.get(raw.name);
      if (prev?.raw === raw) continue;
      // A new object with nothing the planner reads changed (kubelet status, the status summary).
      if (prev !== undefined && samePlannerInput(prev.raw, raw)) {
        prev.raw = raw;
        continue;
      }
      if (raw.name === input.self.name) continue; // compared in selfKey
      if (prev === undefined) added++;
      changed.add(raw.name);
      if (changed.size > MAX_INCREMENTAL_CHANGES) return undefined;
    }
    const selfListed = index.selfListed ? 1 : 0;
    if (input.nodes.length - added - selfListed !== index.entries.size) {
      const names = new Set(input.nodes.map((n) => n.name));
      if (index.selfListed !== names.has(input.self.name)) return undefined;
      for (const name of index.entries.keys()) if (!names.has(name)) changed.add(name);
      if (changed.size > MAX_INCREMENTAL_CHANGES) return undefined;
    }
    return changed;
  }
}

/** The index of a full plan, or undefined when the plan has anything only a full plan handles. */
function seed(input: PlanInputLazy, desired: DesiredWireGuardState): Index | undefined {
  const { self, config } = input;
  if (config.nodeToNode !== undefined || self.rotation !== undefined) return undefined;
  const t = desired.tunnel;
  if (t.incoming !== undefined || (t.following?.length ?? 0) > 0 || t.peers.some((p) => p.next === true))
    return undefined;
  const { selfRaw, ownCidrs, ownHosts } = ownSide(input);
  const screen: ScreenContext = { self, mode: config.mode, ownHosts, ownCidrs };
  const peers = new Map(t.peers.map((p) => [p.node, p]));
  const index: Index = {
    selfKey: selfKeyOf(input),
    selfListed: selfRaw !== undefined,
    screen,
    link: t.link,
    mtu: planMtu(config),
    ownCidrs,
    entries: new Map(),
    keys: new Map(),
    hosts: new Map(),
    spans: [],
    peers: [...t.peers],
    routes: [...desired.routes],
    skipped: [...desired.skipped],
    removedKeys: [],
    removedDsts: [],
  };
  const names = new Set<string>();
  for (const raw of input.nodes) {
    if (raw.name === self.name) continue;
    if (names.has(raw.name)) return undefined;
    names.add(raw.name);
    const r = screenNode(raw, screen);
    if (!r.ok) {
      index.entries.set(raw.name, { raw, skipped: r.skipped });
      continue;
    }
    const peer = peers.get(raw.name);
    const spans = spansOf(r.node);
    // Decoded but not planned: a conflict loser; only a full plan decides those.
    if (peer === undefined || spans === undefined || r.node.next !== undefined || following(r.node)) return undefined;
    index.entries.set(raw.name, { raw, node: r.node, peer, spans });
    index.keys.set(r.node.wireguardPublicKey, raw.name);
    index.hosts.set(r.node.endpointHost, raw.name);
    index.spans.push(...spans);
  }
  index.spans.sort(bySpan);
  for (let i = 1; i < index.spans.length; i++) {
    const a = index.spans[i - 1]!;
    const b = index.spans[i]!;
    if (a.family === b.family && a.end >= b.start) return undefined; // a node overlapping itself
  }
  return index;
}

/** A node the plan reports as following a rotation (grace/finishing without a next key). */
function following(n: PeerNode): boolean {
  return n.rotationPhase === 'grace' || n.rotationPhase === 'finishing';
}

/** Re-plans `changed` in place; false when the result would need a full plan (the index is then stale). */
function update(index: Index, input: PlanInputLazy, changed: ReadonlySet<string>): boolean {
  index.removedKeys.length = 0;
  index.removedDsts.length = 0;
  for (const name of changed) remove(index, name);
  const byNameNow = new Map<string, RawNode>();
  for (const raw of input.nodes) if (changed.has(raw.name)) byNameNow.set(raw.name, raw);
  for (const name of [...changed].sort(byName)) {
    const raw = byNameNow.get(name);
    if (raw !== undefined && !add(index, input, raw)) return false;
  }
  // Every node listed once (two under one name: plan() sees both).
  return index.entries.size === input.nodes.length - (index.selfListed ? 1 : 0);
}

function remove(index: Index, name: string): void {
  const e = index.entries.get(name);
  if (e === undefined) return;
  index.entries.delete(name);
  if ('skipped' in e) {
    removeSorted(
      index.skipped,
      name,
      (s, k) => byName(s.name, k),
      (s) => s.name === name,
    );
    return;
  }
  index.keys.delete(e.node.wireguardPublicKey);
  index.hosts.delete(e.node.endpointHost);
  index.removedKeys.push(e.peer.publicKey);
  index.removedDsts.push(...e.node.podCIDRs);
  for (const s of e.spans) removeSorted(index.spans, s, bySpan, (x) => x.start === s.start && x.family === s.family);
  removeSorted(
    index.peers,
    name,
    (p, k) => byName(p.node, k),
    (p) => p.node === name,
  );
  for (const dst of e.node.podCIDRs)
    removeSorted(
      index.routes,
      dst,
      (r, k) => compareCidrs(r.dst, k),
      (r) => r.dst === dst,
    );
}

function add(index: Index, input: PlanInputLazy, raw: RawNode): boolean {
  const r = screenNode(raw, index.screen);
  if (!r.ok) {
    index.entries.set(raw.name, { raw, skipped: r.skipped });
    insertSorted(index.skipped, r.skipped, raw.name, (s, k) => byName(s.name, k));
    return true;
  }
  const n = r.node;
  const spans = spansOf(n);
  if (spans === undefined || n.next !== undefined || following(n)) return false;
  if (index.keys.has(n.wireguardPublicKey) || index.hosts.has(n.endpointHost)) return false;
  for (let i = 1; i < spans.length; i++)
    if (spans[i - 1]!.family === spans[i]!.family && spans[i - 1]!.end >= spans[i]!.start) return false;
  if (spans.some((s) => overlapsAny(index.spans, s))) return false;
  const peer = currentPeer(n, input.config, n.podCIDRs);
  index.entries.set(raw.name, { raw, node: n, peer, spans });
  index.keys.set(n.wireguardPublicKey, raw.name);
  index.hosts.set(n.endpointHost, raw.name);
  for (const s of spans) insertSorted(index.spans, s, s, bySpan);
  insertSorted(index.peers, peer, n.name, (p, k) => byName(p.node, k));
  const routes = nodeRoutes(n, {
    dev: index.link.name,
    mtu: index.mtu,
    ownCidrs: index.ownCidrs,
    localAddresses: input.self.localAddresses,
  });
  for (const route of routes) insertSorted(index.routes, route, route.dst, (x, k) => compareCidrs(x.dst, k));
  return true;
}

/** The plan the index holds, as `plan()` shapes it (fresh arrays: a report keeps the previous one). */
function result(index: Index): DesiredWireGuardState {
  return {
    tunnel: { kind: 'wireguard', link: index.link, peers: [...index.peers] },
    routes: [...index.routes],
    skipped: [...index.skipped],
  };
}
