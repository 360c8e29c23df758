/**
 * Fakes for the reconciler's ports that behave like the kernel: WireGuard peers
 * keyed by public key with allowed IPs moving to the peer set last, a routing table that marks
 * routes by protocol, and a node store fully under the test's control. They reject the calls
 * the agent must never make (deleting a route it does not own, writing outside sealnet's table,
 * patching foreign annotations), so a test fails loudly instead of passing over a bug.
 *
 * They serve unit tests only; nothing here proves anything about the real kernel.
 */
import type { PublicKey } from '../../keymgr/keys.js';
import { canonicalCidr, cidrContains, compareCidrs, formatIP, parseCidr, parseIP } from '../../common/ip.js';
import { ANNOTATION_PREFIX, ROUTE_PROTOCOL, ROUTE_TABLE } from '../../common/constants.js';
import type { RawNode } from './model.js';
import type {
  MirrorPort,
  NodeStore,
  NodeStoreEvents,
  ObservedPeer,
  ObservedRoute,
  PeerChange,
  RoutingPort,
  RuleSpec,
  WireGuardImpl,
  WireGuardPort,
} from './index.js';

/** One mutating kernel call as both fakes record it, in the order the agent made them. */
export interface JournalEntry {
  readonly op: string;
  /** Human-readable object the call was about (peer key, route dst, link name...). */
  readonly target: string;
}

/** Shared, ordered record of mutations across the WireGuard and routing fakes. */
export class KernelJournal {
  readonly entries: JournalEntry[] = [];

  record(op: string, target: string): void {
    this.entries.push({ op, target });
  }

  /** Number of mutations recorded so far. */
  get count(): number {
    return this.entries.length;
  }

  /** Entries recorded after `mark` (a previous {@link count}). */
  since(mark: number): JournalEntry[] {
    return this.entries.slice(mark);
  }
}

/** Makes the next `n` calls of named operations throw. */
class FailureInjector<Op extends string> {
  private readonly pending = new Map<Op, { remaining: number; error: () => Error }>();

  failNext(op: Op, n = 1, message = `injected failure of ${op}`): void {
    this.pending.set(op, { remaining: n, error: () => new Error(message) });
  }

  /** Throws if a failure is pending for `op`. */
  check(op: Op): void {
    const p = this.pending.get(op);
    if (p === undefined || p.remaining <= 0) return;
    p.remaining--;
    if (p.remaining === 0) this.pending.delete(op);
    throw p.error();
  }
}

/** A snapshot of who owns which allowed IP: canonical CIDR → public key. */
export type AllowedIPOwnership = ReadonlyMap<string, string>;

interface FakePeer {
  endpoint: string | undefined;
  allowedIPs: string[];
  persistentKeepalive: number;
  /** Preshared key (base64), as the kernel keeps it beside the peer; undefined = none. */
  presharedKey?: string | undefined;
}

interface FakeWgLink {
  readonly ifindex: number;
  publicKey: PublicKey;
  privateKeyFile: string;
  listenPort: number;
  fwmark: number;
  /** Insertion-ordered like the kernel's peer list. */
  readonly peers: Map<string, FakePeer>;
}

/** The kernel's MTU for a new WireGuard link (`ip link add type wireguard`). */
export const WG_DEFAULT_LINK_MTU = 1420;

/** Operations of {@link FakeWireGuard} that can be told to fail. */
export type FakeWireGuardOp = 'ensureLink' | 'show' | 'applyPeers' | 'deleteLink' | 'setPresharedKey';

/** Canonical `ip:port` / `[ip6]:port`, as `wg show dump` prints an endpoint. */
function canonicalEndpoint(text: string): string {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(text);
  const addr = m === null ? undefined : parseIP(m[1] ?? m[2] ?? '');
  const port = m === null ? NaN : Number(m[3]);
  if (
    m === null ||
    addr === undefined ||
    addr.family !== (m[1] !== undefined ? 6 : 4) ||
    !(port >= 1 && port <= 65535)
  ) {
    throw new Error(`fake wg: endpoint ${JSON.stringify(text)} is not ip:port (wg would reject it)`);
  }
  const host = formatIP(addr.family, addr.value);
  return addr.family === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Fake WireGuard driver. Peers are keyed by public key; setting allowed IPs on a peer replaces
 * its list and takes those prefixes away from any other peer, as the kernel's allowed-IPs trie
 * does. Records every private-key load (a load of a different key is a session reset).
 */
export class FakeWireGuard implements WireGuardPort {
  readonly links = new Map<string, FakeWgLink>();
  /** How often a private key was loaded into a link (creation included). */
  privateKeyLoads = 0;
  /** Loads that replaced a different key: every session on the link was dropped. */
  sessionResets = 0;
  /** Allowed-IP ownership after every single peer change, in order. */
  readonly ownershipHistory: AllowedIPOwnership[] = [];
  /** The link of each entry of {@link ownershipHistory}. */
  readonly ownershipLinks: string[] = [];
  /** Mutating calls made on this fake (a subset of the journal). */
  mutations = 0;
  /**
   * Peers (by public key) that completed a handshake, as `wg show` reports it: 0 for everyone
   * else. A test sets this; the fake has no remote side that could answer a handshake.
   */
  readonly handshaken = new Set<string>();
  private readonly failures = new FailureInjector<FakeWireGuardOp>();
  private nextIfindex = 100;

  constructor(
    readonly journal: KernelJournal = new KernelJournal(),
    /** When given, links created here also appear (down, default MTU) in the routing fake. */
    private readonly routing?: FakeRouting,
  ) {}

  /** Makes the next `n` calls of `op` throw (before changing anything). */
  failNext(op: FakeWireGuardOp, n = 1, message?: string): void {
    this.failures.failNext(op, n, message);
  }

  private mutate(op: string, target: string): void {
    this.mutations++;
    this.journal.record(op, target);
  }

  async ensureLink(opts: {
    readonly name: string;
    readonly privateKeyFile: string;
    readonly publicKey: PublicKey;
    readonly listenPort: number;
    readonly fwmark: number;
  }): Promise<{ impl: WireGuardImpl; created: boolean; ifindex: number }> {
    this.failures.check('ensureLink');
    const existing = this.links.get(opts.name);
    if (existing === undefined) {
      const ifindex = this.nextIfindex++;
      this.links.set(opts.name, {
        ifindex,
        publicKey: opts.publicKey,
        privateKeyFile: opts.privateKeyFile,
        listenPort: opts.listenPort,
        fwmark: opts.fwmark,
        peers: new Map(),
      });
      this.privateKeyLoads++;
      this.mutate('wg.link_create', opts.name);
      // Like the driver: created, then brought up; the kernel gives it the default MTU.
      this.routing?.addLink(opts.name, { mtu: WG_DEFAULT_LINK_MTU, up: true, ifindex });
      return { impl: 'kernel', created: true, ifindex };
    }
    if (existing.publicKey !== opts.publicKey) {
      existing.publicKey = opts.publicKey;
      existing.privateKeyFile = opts.privateKeyFile;
      this.privateKeyLoads++;
      this.sessionResets++;
      this.mutate('wg.private_key', opts.name);
    }
    if (existing.listenPort !== opts.listenPort || existing.fwmark !== opts.fwmark) {
      existing.listenPort = opts.listenPort;
      existing.fwmark = opts.fwmark;
      this.mutate('wg.interface_set', opts.name);
    }
    return { impl: 'kernel', created: false, ifindex: existing.ifindex };
  }

  async show(
    name: string,
  ): Promise<
    | { iface: { publicKey: PublicKey | undefined; listenPort: number; fwmark: number }; peers: ObservedPeer[] }
    | undefined
  > {
    this.failures.check('show');
    const link = this.links.get(name);
    if (link === undefined) return undefined;
    const peers: ObservedPeer[] = [...link.peers].map(([key, p]) => ({
      publicKey: key as PublicKey,
      endpoint: p.endpoint,
      allowedIPs: [...p.allowedIPs].sort(compareCidrs),
      latestHandshake: this.handshaken.has(key) ? 1_700_000_000 : 0,
      rxBytes: 0,
      txBytes: 0,
      persistentKeepalive: p.persistentKeepalive,
    }));
    return { iface: { publicKey: link.publicKey, listenPort: link.listenPort, fwmark: link.fwmark }, peers };
  }

  async applyPeers(name: string, changes: readonly PeerChange[]): Promise<void> {
    this.failures.check('applyPeers');
    const link = this.links.get(name);
    if (link === undefined) throw new Error(`fake wg: no such device ${name}`);
    if (changes.length === 0)
      throw new Error('fake wg: applyPeers with no changes (the agent must not make empty calls)');
    for (const c of changes) {
      if (c.op === 'remove') {
        link.peers.delete(c.publicKey);
        this.mutate('wg.peer_remove', c.publicKey);
      } else {
        const allowed = c.allowedIPs.map((a) => {
          if (canonicalCidr(a) !== a) throw new Error(`fake wg: allowed IP ${JSON.stringify(a)} is not canonical`);
          return a;
        });
        const endpoint = canonicalEndpoint(c.endpoint);
        // Kernel semantics: an allowed IP belongs to exactly one peer; setting it moves it here.
        for (const [key, other] of link.peers) {
          if (key !== c.publicKey) other.allowedIPs = other.allowedIPs.filter((a) => !allowed.includes(a));
        }
        // `wg set … peer` without a preshared-key clause keeps the peer's preshared key.
        const psk = link.peers.get(c.publicKey)?.presharedKey;
        link.peers.set(c.publicKey, {
          endpoint,
          allowedIPs: [...allowed],
          persistentKeepalive: c.persistentKeepalive,
          presharedKey: psk,
        });
        this.mutate('wg.peer_set', c.publicKey);
      }
      this.ownershipHistory.push(this.ownership(name));
      this.ownershipLinks.push(name);
    }
  }

  /**
   * Sets one existing peer's preshared key. Refuses a peer the link does not hold: `wg set`
   * would create it (without allowed IPs or endpoint), which the agent must never do.
   */
  async setPresharedKey(name: string, peer: PublicKey, psk: Uint8Array): Promise<void> {
    this.failures.check('setPresharedKey');
    const link = this.links.get(name);
    if (link === undefined) throw new Error(`fake wg: no such device ${name}`);
    const p = link.peers.get(peer);
    if (p === undefined) throw new Error('fake wg: preshared key for a peer the link does not hold');
    if (psk.length !== 32) throw new Error(`fake wg: preshared key of ${psk.length} bytes`);
    p.presharedKey = Buffer.from(psk).toString('base64');
    this.mutate('wg.peer_psk', peer);
  }

  /** The preshared key of a peer (base64) for tests comparing both ends; undefined = none. */
  presharedKeyOf(name: string, peer: PublicKey): string | undefined {
    return this.links.get(name)?.peers.get(peer)?.presharedKey;
  }

  async deleteLink(name: string): Promise<void> {
    this.failures.check('deleteLink');
    if (!this.links.delete(name)) return;
    this.routing?.removeLink(name);
    this.mutate('wg.link_delete', name);
  }

  /** Current allowed-IP ownership of link `name`: canonical CIDR → public key. */
  ownership(name: string): Map<string, string> {
    const out = new Map<string, string>();
    for (const [key, p] of this.links.get(name)?.peers ?? []) for (const a of p.allowedIPs) out.set(a, key);
    return out;
  }

  /** Peers of link `name` as `show` would report them (synchronous, for assertions). */
  peersOf(
    name: string,
  ): { publicKey: string; endpoint: string | undefined; allowedIPs: string[]; persistentKeepalive: number }[] {
    return [...(this.links.get(name)?.peers ?? [])].map(([publicKey, p]) => ({
      publicKey,
      endpoint: p.endpoint,
      allowedIPs: [...p.allowedIPs].sort(compareCidrs),
      persistentKeepalive: p.persistentKeepalive,
    }));
  }

  /** Installs a peer directly (state left by someone else, or by a previous agent run). */
  seedPeer(
    name: string,
    peer: { publicKey: string; endpoint?: string; allowedIPs: string[]; persistentKeepalive?: number },
  ): void {
    const link = this.links.get(name);
    if (link === undefined) throw new Error(`fake wg: seedPeer on missing link ${name}`);
    link.peers.set(peer.publicKey, {
      endpoint: peer.endpoint,
      allowedIPs: [...peer.allowedIPs],
      persistentKeepalive: peer.persistentKeepalive ?? 0,
    });
  }
}

/** A route as the routing fake stores it. */
export interface FakeRoute {
  readonly dst: string;
  readonly dev: string;
  readonly mtu: number | undefined;
  readonly src: string | undefined;
  readonly table: number;
  readonly protocol: number;
}

/** A rule as the routing fake stores it. */
export interface FakeRule extends RuleSpec {
  readonly protocol: number;
}

interface FakeLink {
  ifindex: number;
  mtu: number;
  up: boolean;
}

/** Operations of {@link FakeRouting} that can be told to fail. */
export type FakeRoutingOp =
  | 'listRoutes'
  | 'replaceRoute'
  | 'deleteRoute'
  | 'ensureRule'
  | 'deleteRule'
  | 'getLink'
  | 'setLink'
  | 'linkForAddress'
  | 'listAddresses';

/** Main routing table id (routes here belong to the node's CNI / admin, never to sealnet). */
export const MAIN_TABLE = 254;

/**
 * Fake rtnetlink: links with MTU and state, addresses, routes per table marked by protocol,
 * and rules. Throws for what the agent must never do: write or delete routes outside
 * {@link ROUTE_TABLE}, delete a route another protocol installed, use a source address the node
 * does not have, route through a missing link.
 */
export class FakeRouting implements RoutingPort {
  readonly links = new Map<string, FakeLink>();
  readonly addresses: { address: string; prefixLength: number; dev: string }[] = [];
  /** table → dst → route. */
  readonly tables = new Map<number, Map<string, FakeRoute>>();
  readonly rules: FakeRule[] = [];
  mutations = 0;
  private readonly failures = new FailureInjector<FakeRoutingOp>();
  private nextIfindex = 2;

  constructor(readonly journal: KernelJournal = new KernelJournal()) {}

  /** Makes the next `n` calls of `op` throw (before changing anything). */
  failNext(op: FakeRoutingOp, n = 1, message?: string): void {
    this.failures.failNext(op, n, message);
  }

  private mutate(op: string, target: string): void {
    this.mutations++;
    this.journal.record(op, target);
  }

  /** Test setup: adds a link (not counted as an agent mutation). */
  addLink(name: string, opts: { mtu: number; up: boolean; ifindex?: number }): void {
    this.links.set(name, { ifindex: opts.ifindex ?? this.nextIfindex++, mtu: opts.mtu, up: opts.up });
  }

  /** Removes a link and, like the kernel, every route through it. */
  removeLink(name: string): void {
    this.links.delete(name);
    for (const t of this.tables.values()) for (const [dst, r] of t) if (r.dev === name) t.delete(dst);
  }

  /** Test setup: adds an address on a link. */
  addAddress(address: string, prefixLength: number, dev: string): void {
    if (!this.links.has(dev)) throw new Error(`fake routing: addAddress on missing link ${dev}`);
    this.addresses.push({ address, prefixLength, dev });
  }

  /** Test setup: a route installed by someone else (or by a previous agent run). */
  seedRoute(route: FakeRoute): void {
    this.table(route.table).set(route.dst, route);
  }

  /** Every route in `table`, whoever owns it, sorted by dst. */
  routesIn(table: number): FakeRoute[] {
    return [...(this.tables.get(table)?.values() ?? [])].sort((a, b) => compareCidrs(a.dst, b.dst));
  }

  private table(id: number): Map<string, FakeRoute> {
    let t = this.tables.get(id);
    if (t === undefined) {
      t = new Map();
      this.tables.set(id, t);
    }
    return t;
  }

  async listRoutes(table: number): Promise<ObservedRoute[]> {
    this.failures.check('listRoutes');
    return this.routesIn(table)
      .filter((r) => r.protocol === ROUTE_PROTOCOL)
      .map((r) => ({ dst: r.dst, dev: r.dev, mtu: r.mtu, src: r.src, table: r.table, protocol: r.protocol }));
  }

  async replaceRoute(route: {
    dst: string;
    dev: string;
    mtu: number;
    src?: string | undefined;
    table: number;
  }): Promise<void> {
    this.failures.check('replaceRoute');
    if (route.table !== ROUTE_TABLE)
      throw new Error(
        `fake routing: agent wrote route ${route.dst} into table ${route.table}, it owns only ${ROUTE_TABLE}`,
      );
    const dst = parseCidr(route.dst, { hostBits: 'reject' });
    if (dst === undefined || canonicalCidr(route.dst) !== route.dst)
      throw new Error(`fake routing: route dst ${JSON.stringify(route.dst)} is not a canonical prefix`);
    if (!this.links.has(route.dev)) throw new Error(`fake routing: ENODEV: no link ${route.dev}`);
    if (!Number.isInteger(route.mtu) || route.mtu < 68 || route.mtu > 65535)
      throw new Error(`fake routing: EINVAL: MTU ${route.mtu}`);
    if (route.src !== undefined) {
      const src = parseIP(route.src);
      if (src === undefined || src.family !== dst.family)
        throw new Error(`fake routing: EINVAL: src ${route.src} not in the family of ${route.dst}`);
      // The kernel refuses a preferred source the host does not have ("Invalid prefsrc address").
      if (!this.addresses.some((a) => a.address === route.src))
        throw new Error(`fake routing: EINVAL: invalid prefsrc address ${route.src}`);
    }
    this.table(route.table).set(route.dst, {
      dst: route.dst,
      dev: route.dev,
      mtu: route.mtu,
      src: route.src,
      table: route.table,
      protocol: ROUTE_PROTOCOL,
    });
    this.mutate('route.replace', route.dst);
  }

  async deleteRoute(route: { dst: string; table: number }): Promise<void> {
    this.failures.check('deleteRoute');
    if (route.table !== ROUTE_TABLE)
      throw new Error(
        `fake routing: agent deleted route ${route.dst} from table ${route.table}, it owns only ${ROUTE_TABLE}`,
      );
    const existing = this.tables.get(route.table)?.get(route.dst);
    if (existing !== undefined && existing.protocol !== ROUTE_PROTOCOL) {
      throw new Error(
        `fake routing: agent deleted route ${route.dst} of protocol ${existing.protocol}, which it does not own`,
      );
    }
    this.tables.get(route.table)?.delete(route.dst);
    this.mutate('route.delete', route.dst);
  }

  async ensureRule(rule: RuleSpec): Promise<void> {
    this.failures.check('ensureRule');
    if (rule.table !== ROUTE_TABLE)
      throw new Error(`fake routing: rule for table ${rule.table}, agent owns only ${ROUTE_TABLE}`);
    const same = this.rules.filter(
      (r) => r.priority === rule.priority && r.table === rule.table && r.family === rule.family,
    );
    if (same.length === 1) return;
    // Keep exactly one.
    for (const r of same.slice(1)) this.rules.splice(this.rules.indexOf(r), 1);
    if (same.length === 0) this.rules.push({ ...rule, protocol: ROUTE_PROTOCOL });
    this.mutate('rule.ensure', `${rule.family} ${rule.priority} ${rule.table}`);
  }

  async deleteRule(rule: RuleSpec): Promise<void> {
    this.failures.check('deleteRule');
    if (rule.table !== ROUTE_TABLE)
      throw new Error(`fake routing: agent deleted rule for table ${rule.table}, it owns only ${ROUTE_TABLE}`);
    const i = this.rules.findIndex(
      (r) => r.priority === rule.priority && r.table === rule.table && r.family === rule.family,
    );
    if (i < 0) return;
    this.rules.splice(i, 1);
    this.mutate('rule.delete', `${rule.family} ${rule.priority} ${rule.table}`);
  }

  async getLink(name: string): Promise<{ ifindex: number; mtu: number; up: boolean } | undefined> {
    this.failures.check('getLink');
    const l = this.links.get(name);
    return l === undefined ? undefined : { ...l };
  }

  async setLink(name: string, opts: { mtu?: number; up?: boolean }): Promise<void> {
    this.failures.check('setLink');
    const l = this.links.get(name);
    if (l === undefined) throw new Error(`fake routing: ENODEV: no link ${name}`);
    if (opts.mtu !== undefined) l.mtu = opts.mtu;
    if (opts.up !== undefined) l.up = opts.up;
    this.mutate('link.set', name);
  }

  async linkForAddress(address: string): Promise<{ name: string; mtu: number } | undefined> {
    this.failures.check('linkForAddress');
    // A connected-route lookup: the link holding an address whose prefix contains `address`.
    const hit = this.addresses.find((a) => {
      const p = parseCidr(`${a.address}/${a.prefixLength}`, { hostBits: 'clear' });
      return p !== undefined && cidrContains(p, address);
    });
    const link = hit === undefined ? undefined : this.links.get(hit.dev);
    return hit === undefined || link === undefined ? undefined : { name: hit.dev, mtu: link.mtu };
  }

  async listAddresses(): Promise<{ address: string; prefixLength: number; dev: string }[]> {
    this.failures.check('listAddresses');
    return this.addresses.map((a) => ({ ...a }));
  }
}

/** A WireGuard and a routing fake sharing one journal, wired so a new WG link appears in routing. */
export function createFakeKernel(): { journal: KernelJournal; wg: FakeWireGuard; routing: FakeRouting } {
  const journal = new KernelJournal();
  const routing = new FakeRouting(journal);
  const wg = new FakeWireGuard(journal, routing);
  return { journal, wg, routing };
}

/**
 * {@link createFakeKernel} as node-a of the fixture cluster (test/fixtures.ts) sees it: `lo`,
 * the underlay `eth0` with 198.18.0.1/15 and the CNI bridge `cni0` with 100.64.1.1/24 (and
 * 127.0.0.1/8 on `lo` with `loopbackAddress`).
 */
export function createNodeAKernel(opts: { loopbackAddress?: boolean } = {}): ReturnType<typeof createFakeKernel> {
  const k = createFakeKernel();
  k.routing.addLink('lo', { mtu: 65536, up: true });
  k.routing.addLink('eth0', { mtu: 1500, up: true });
  k.routing.addLink('cni0', { mtu: 1500, up: true });
  if (opts.loopbackAddress === true) k.routing.addAddress('127.0.0.1', 8, 'lo');
  k.routing.addAddress('198.18.0.1', 15, 'eth0');
  k.routing.addAddress('100.64.1.1', 24, 'cni0');
  return k;
}

/**
 * In-memory node store. The test decides when it is synced and when events fire;
 * `patchAnnotations` behaves like a merge patch restricted to `sealnet.io/` keys.
 */
export class MemoryNodeStore implements NodeStore {
  private readonly nodes = new Map<string, RawNode>();
  private events: NodeStoreEvents | undefined;
  private isSynced: boolean;
  /** Every successful patch, in order. */
  readonly patches: { name: string; annotations: Record<string, string | undefined> }[] = [];
  private failPatches = 0;

  constructor(nodes: readonly RawNode[] = [], opts: { synced?: boolean } = {}) {
    for (const n of nodes) this.nodes.set(n.name, n);
    this.isSynced = opts.synced ?? false;
  }

  async start(events: NodeStoreEvents): Promise<void> {
    this.events = events;
  }

  async stop(): Promise<void> {
    this.events = undefined;
  }

  list(): readonly RawNode[] {
    return [...this.nodes.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  synced(): boolean {
    return this.isSynced;
  }

  /** Marks the store synced (or not); fires `onSynced` when it becomes synced. */
  setSynced(synced = true): void {
    const was = this.isSynced;
    this.isSynced = synced;
    if (synced && !was) this.events?.onSynced();
  }

  /** Adds or replaces a node (no event; call {@link emitChange}). */
  upsert(node: RawNode): void {
    this.nodes.set(node.name, node);
  }

  /** Removes a node (no event; call {@link emitChange}). */
  remove(name: string): void {
    this.nodes.delete(name);
  }

  get(name: string): RawNode | undefined {
    return this.nodes.get(name);
  }

  emitChange(): void {
    this.events?.onChange(this.list());
  }

  emitError(err: Error): void {
    this.events?.onError(err);
  }

  /** Makes the next `n` patches throw. */
  failNextPatch(n = 1): void {
    this.failPatches = n;
  }

  async patchAnnotations(name: string, annotations: Readonly<Record<string, string | undefined>>): Promise<void> {
    if (this.failPatches > 0) {
      this.failPatches--;
      throw new Error(`injected failure patching node ${name}`);
    }
    const node = this.nodes.get(name);
    if (node === undefined) throw new Error(`nodes "${name}" not found`);
    for (const k of Object.keys(annotations)) {
      if (!k.startsWith(ANNOTATION_PREFIX))
        throw new Error(`memory store: refusing to patch non-sealnet annotation ${k}`);
    }
    const merged: Record<string, string> = { ...node.annotations };
    for (const [k, v] of Object.entries(annotations)) {
      if (v === undefined) delete merged[k];
      else merged[k] = v;
    }
    this.nodes.set(name, { ...node, annotations: merged });
    this.patches.push({ name, annotations: { ...annotations } });
  }
}

/** Operations of {@link FakeMirror} that can be told to fail. */
export type FakeMirrorOp = 'setMirror' | 'clearMirror' | 'prepare' | 'ensureAddress';

/**
 * Fake rotation mirror (routing/mirror.ts): per link a clsact flag, a mirror target and IPv4
 * addresses. Refuses what the kernel would refuse (a mirror on or to a link that does not
 * exist) and notices a deleted link (its qdisc and filter go with it).
 */
export class FakeMirror implements MirrorPort {
  readonly links = new Map<string, { clsact: boolean; mirrorTo: string | undefined; addresses: string[] }>();
  private readonly failures = new FailureInjector<FakeMirrorOp>();

  constructor(
    private readonly wg: FakeWireGuard,
    readonly journal: KernelJournal = wg.journal,
  ) {}

  failNext(op: FakeMirrorOp, n = 1, message?: string): void {
    this.failures.failNext(op, n, message);
  }

  private link(name: string): { clsact: boolean; mirrorTo: string | undefined; addresses: string[] } {
    if (!this.wg.links.has(name)) {
      this.links.delete(name);
      throw new Error(`fake mirror: no link ${name}`);
    }
    let l = this.links.get(name);
    if (l === undefined) {
      l = { clsact: false, mirrorTo: undefined, addresses: [] };
      this.links.set(name, l);
    }
    return l;
  }

  /** State of a link (undefined once the link is gone). */
  of(name: string): { clsact: boolean; mirrorTo: string | undefined; addresses: string[] } | undefined {
    return this.wg.links.has(name) ? this.links.get(name) : undefined;
  }

  async getMirror(from: string): Promise<string | undefined> {
    return this.of(from)?.mirrorTo;
  }

  async setMirror(from: string, to: string): Promise<boolean> {
    this.failures.check('setMirror');
    const l = this.link(from);
    if (!this.wg.links.has(to)) throw new Error(`fake mirror: no target link ${to}`);
    if (l.mirrorTo === to) return false;
    l.clsact = true;
    l.mirrorTo = to;
    this.journal.record('tc.mirror_set', `${from}->${to}`);
    return true;
  }

  async clearMirror(from: string): Promise<boolean> {
    this.failures.check('clearMirror');
    const l = this.of(from);
    if (l?.mirrorTo === undefined) return false;
    l.mirrorTo = undefined;
    this.journal.record('tc.mirror_clear', from);
    return true;
  }

  async prepare(name: string): Promise<boolean> {
    this.failures.check('prepare');
    const l = this.link(name);
    if (l.clsact) return false;
    l.clsact = true;
    this.journal.record('tc.qdisc_add', name);
    return true;
  }

  async ensureAddress(name: string, address: string): Promise<boolean> {
    this.failures.check('ensureAddress');
    const l = this.link(name);
    if (l.addresses.includes(address)) return false;
    l.addresses.push(address);
    this.journal.record('addr.add', `${name} ${address}`);
    return true;
  }
}
