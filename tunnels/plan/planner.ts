/**
 * The pure planner: cluster snapshot + self + config → desired kernel state.
 * No I/O, no clock reads, sorted output. The reconciler diffs the
 * result against what the kernel holds; the planner never sees the kernel.
 */
import type { PublicKey } from '../../keymgr/keys.js';
import { tunnelMtu } from '../../common/mtu.js';
import { decodeNode } from './annotations.js';
import {
  canonicalIP,
  cidrContains,
  cidrsOverlap,
  compareCidrs,
  formatCidr,
  parseCidr,
  parseIP,
  type Cidr,
} from '../../common/ip.js';
import { nonUnicastClass } from '../../common/addrclass.js';
import { ROUTE_TABLE, WG_DEFAULT_KEEPALIVE, WG_FWMARK, WG_INTERFACE } from '../../common/constants.js';
import type {
  DesiredPeer,
  DesiredRoute,
  DesiredWireGuardState,
  Mode,
  PeerNode,
  RawNode,
  RejectedAddress,
  SkippedNode,
} from '../ports/model.js';

/** Who this agent is. */
export interface PlanSelf {
  readonly name: string;
  readonly wireguardPublicKey: PublicKey;
  /**
   * Addresses on this node (any interface). One inside the node's own pod CIDR (a CNI bridge
   * gateway such as flannel's cni0) becomes the source of host-to-remote-pod traffic, so replies
   * come back through the tunnel.
   */
  readonly localAddresses: readonly string[];
  /** The link carrying the current key; default {@link WG_INTERFACE} on `config.listenPort`. */
  readonly link?: { readonly name: string; readonly listenPort: number };
  /**
   * This node's own rotation: the link of the new key, the new key, and the remote
   * nodes whose prefixes route into that link (`all` once the old link is being retired).
   */
  readonly rotation?: {
    readonly link: { readonly name: string; readonly listenPort: number };
    readonly publicKey: PublicKey;
    readonly viaIncoming: 'all' | readonly string[];
  };
}

/** Agent configuration the plan depends on. */
export interface PlanConfig {
  readonly mode: Mode;
  readonly listenPort: number;
  readonly persistentKeepalive: number;
  /** MTU of the underlay link carrying the tunnel (jumbo frames included). */
  readonly underlayMtu: number;
  /** Address family of the underlay (outer header size). */
  readonly underlayFamily: 4 | 6;
  /** Extra encapsulation below the tunnel. */
  readonly overlay?: 'none' | 'vxlan' | 'geneve';
  /**
   * Node-to-node (host network) encryption; absent: off. Each remote node's InternalIPs join its
   * peer's allowed IPs as host prefixes, except those inside `exemptCidrs` (they always travel
   * in plaintext). No route is planned for them: the BPF egress program redirects host traffic
   * to a node address into the tunnel, and a route to a peer's own endpoint address through the
   * tunnel would carry the tunnel's encrypted UDP into itself.
   */
  readonly nodeToNode?:
    { readonly exemptCidrs: readonly string[]; readonly nodeCidrs?: readonly string[] | undefined } | undefined;
}

/**
 * Where node addresses may lie when `steering.nodeCidrs` is not set: the private, shared and
 * benchmarking ranges (RFC 1918, 100.64.0.0/10, 198.18.0.0/15) and IPv6 ULA. A node claiming a
 * public resolver or the cloud metadata address as its InternalIP gets nothing.
 */
export const DEFAULT_NODE_CIDRS: readonly string[] = [
  '10.0.0.0/8',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '100.64.0.0/10',
  '198.18.0.0/15',
  'fc00::/7',
];

/** At most this many node-to-node host prefixes per node (dual-stack nodes have two or three). */
export const MAX_NODE_ADDRESSES = 8;

/** Everything `plan()` reads. */
export interface PlanInput {
  readonly nodes: readonly RawNode[];
  readonly self: PlanSelf;
  readonly config: PlanConfig;
  /**
   * Node → public key currently programmed (from the previous apply). Breaks ties when two
   * nodes claim the same key or overlapping pod CIDRs: the established owner keeps it, and a
   * newcomer cannot hijack a working pair by copying a key.
   */
  readonly established?: Readonly<Record<string, PublicKey>>;
  /**
   * Public keys with a completed handshake on one of this node's links (`wg show dump`). A
   * node's next key gets the node's pod CIDRs only once its handshake is done, so traffic never
   * moves onto a path that does not work yet.
   */
  readonly handshakes?: ReadonlySet<string>;
  /**
   * Node-to-node host prefix → node that held it after the previous successful apply. When two
   * nodes claim one address, this owner keeps it (a newcomer cannot take a working node's address).
   */
  readonly establishedAddresses?: Readonly<Record<string, string>>;
  /**
   * Node → endpoint host it had after the previous successful apply. When two nodes publish one
   * endpoint host, the node that had it keeps it: a node whose key is known (it was an honest
   * member once) cannot cut an honest node off by taking its endpoint, which a tie on keys alone
   * (both established) would do.
   */
  readonly establishedEndpoints?: Readonly<Record<string, string>>;
}

const byName = <T extends { name: string }>(a: T, b: T): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** What {@link screenNode} checks a remote node against: this node alone, never other remote nodes. */
export interface ScreenContext {
  readonly self: PlanSelf;
  readonly mode: Mode;
  /** This node's addresses and own endpoint host (canonical). */
  readonly ownHosts: ReadonlySet<string>;
  /** This node's own pod CIDRs. */
  readonly ownCidrs: readonly Cidr[];
}

/**
 * Step 1 of {@link plan} for one remote node: decoded and checked against this node only
 * (mode, own key, own addresses, own pod CIDRs). Conflicts between remote nodes are step 2.
 */
export function screenNode(
  raw: RawNode,
  ctx: ScreenContext,
): { readonly ok: true; readonly node: PeerNode } | { readonly ok: false; readonly skipped: SkippedNode } {
  const skip = (reason: SkippedNode['reason'], detail: string) => ({
    ok: false as const,
    skipped: { name: raw.name, reason, detail },
  });
  const r = decodeNode(raw);
  if (!r.ok) return skip(r.reason, r.detail);
  const { self } = ctx;
  if (r.node.mode !== ctx.mode)
    return skip('mode-mismatch', `node ${raw.name} runs mode ${r.node.mode}, this node runs ${ctx.mode}`);
  if (r.node.wireguardPublicKey === self.wireguardPublicKey || r.node.wireguardPublicKey === self.rotation?.publicKey)
    return skip('key-equals-self', `node ${raw.name} publishes this node's own public key`);
  // A node's endpoint host must not be one of this node's addresses: this node would send
  // its tunnel traffic to itself, or (IPsec) hold an SA pair with itself as both ends.
  if (ctx.ownHosts.has(r.node.endpointHost))
    return skip(
      'endpoint-conflict',
      `node ${raw.name} publishes endpoint host ${r.node.endpointHost}, an address of this node`,
    );
  const ownOverlap = r.node.podCIDRs.find((c) =>
    ctx.ownCidrs.some((o) => {
      const p = parseCidr(c, { hostBits: 'clear' });
      return p !== undefined && cidrsOverlap(p, o);
    }),
  );
  if (ownOverlap !== undefined)
    return skip('pod-cidr-conflict', `node ${raw.name} pod CIDR ${ownOverlap} overlaps this node's own pod CIDRs`);
  return { ok: true, node: r.node };
}

/** This node's own pod CIDRs and addresses (its InternalIPs are not among them: only `localAddresses` and its endpoint). */
export function ownSide(input: Pick<PlanInput, 'nodes' | 'self'>): {
  readonly selfRaw: RawNode | undefined;
  readonly ownCidrs: Cidr[];
  readonly ownHosts: Set<string>;
} {
  const { self } = input;
  const selfRaw = input.nodes.find((n) => n.name === self.name);
  const ownCidrs = (selfRaw?.podCIDRs ?? [])
    .map((c) => parseCidr(c, { hostBits: 'clear' }))
    .filter((c) => c !== undefined);
  const selfDecoded = selfRaw === undefined ? undefined : decodeNode(selfRaw);
  const ownHosts = new Set([
    ...self.localAddresses.map(canonicalIP),
    ...(selfDecoded?.ok === true ? [selfDecoded.node.endpointHost] : []),
  ]);
  return { selfRaw, ownCidrs, ownHosts };
}

/** The routes of one accepted node's pod CIDRs into `dev` (unsorted). */
export function nodeRoutes(
  n: PeerNode,
  ctx: {
    readonly dev: string;
    readonly mtu: number;
    readonly ownCidrs: readonly Cidr[];
    readonly localAddresses: readonly string[];
  },
): DesiredRoute[] {
  return n.podCIDRs.map((dst) => {
    const family = parseCidr(dst, { hostBits: 'clear' })?.family;
    return {
      dst,
      dev: ctx.dev,
      mtu: ctx.mtu,
      src: pickSource(family, ctx.ownCidrs, ctx.localAddresses),
      table: ROUTE_TABLE,
    };
  });
}

/** The peer of a node's current key owning `owned` (its pod CIDRs, plus node addresses in node-to-node mode). */
export function currentPeer(
  n: PeerNode,
  config: Pick<PlanConfig, 'persistentKeepalive'>,
  owned: readonly string[],
): DesiredPeer {
  return {
    node: n.name,
    publicKey: n.wireguardPublicKey,
    endpoint: endpointOf(n.endpointHost, n.endpointPort),
    allowedIPs: owned,
    persistentKeepalive: config.persistentKeepalive,
  };
}

/** The tunnel MTU of a plan's config. */
export function planMtu(config: PlanConfig): number {
  return tunnelMtu({
    underlayMtu: config.underlayMtu,
    mode: config.mode,
    family: config.underlayFamily,
    overlay: config.overlay ?? 'none',
  });
}

/** Computes the desired state. Pure and deterministic. */
export function plan(input: PlanInput): DesiredWireGuardState {
  const { self, config } = input;
  const established = input.established ?? {};
  const skipped: SkippedNode[] = [];
  const { selfRaw, ownCidrs, ownHosts } = ownSide(input);

  // 1. Decode every remote node on its own: one bad node never affects another.
  const screen: ScreenContext = { self, mode: config.mode, ownHosts, ownCidrs };
  const decoded: PeerNode[] = [];
  for (const raw of [...input.nodes].sort(byName)) {
    if (raw.name === self.name) continue;
    const r = screenNode(raw, screen);
    if (r.ok) decoded.push(r.node);
    else skipped.push(r.skipped);
  }

  // 2. Conflicts between remote nodes: a shared key, a shared endpoint host or overlapping pod CIDRs. The established
  //    owner (if any) keeps it; everyone else involved is skipped.
  const accepted = resolveConflicts(decoded, { keys: established, endpoints: input.establishedEndpoints }, skipped);

  // 3. Peers and routes. A rotating remote node has two peers: its current key and its next
  //    key; the pod CIDRs belong to exactly one of them (see rotationPeers()).
  const mtu = planMtu(config);
  const activeLink = self.link ?? { name: WG_INTERFACE, listenPort: config.listenPort };
  const rejectedAddresses: RejectedAddress[] = [];
  const nodeIPs =
    config.nodeToNode === undefined
      ? new Map<string, string[]>()
      : nodeAddresses(accepted, rejectedAddresses, {
          self: selfRaw,
          ownCidrs,
          exempt: config.nodeToNode.exemptCidrs,
          allowed: config.nodeToNode.nodeCidrs ?? DEFAULT_NODE_CIDRS,
          previous: input.establishedAddresses ?? {},
        });
  const { peers, following } = rotationPeers(accepted, {
    self,
    config,
    handshakes: input.handshakes ?? new Set(),
    nodeIPs,
  });
  const via = self.rotation?.viaIncoming ?? [];
  const routes: DesiredRoute[] = [];
  for (const n of accepted) {
    const dev =
      self.rotation !== undefined && (via === 'all' || via.includes(n.name))
        ? self.rotation.link.name
        : activeLink.name;
    routes.push(...nodeRoutes(n, { dev, mtu, ownCidrs, localAddresses: self.localAddresses }));
  }
  routes.sort((a, b) => compareCidrs(a.dst, b.dst));
  skipped.sort(byName);

  return {
    tunnel: {
      kind: 'wireguard',
      link: { name: activeLink.name, listenPort: activeLink.listenPort, mtu, fwmark: WG_FWMARK },
      peers,
      ...(self.rotation !== undefined
        ? {
            incoming: {
              link: {
                name: self.rotation.link.name,
                listenPort: self.rotation.link.listenPort,
                mtu,
                fwmark: WG_FWMARK,
              },
              peers,
            },
          }
        : {}),
      ...(following.length > 0 ? { following } : {}),
    },
    routes,
    skipped,
    ...(rejectedAddresses.length > 0 ? { rejectedAddresses } : {}),
  };
}

const endpointOf = (host: string, port: number): string =>
  host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;

/**
 * Peers of the accepted nodes, sorted by node (current key first), and the rotations of others
 * to report on. A remote node announcing a next key (`staging`/`moving`) gets a second peer
 * with a keepalive, so the handshake completes before any traffic needs it; its pod CIDRs move
 * to the next key in `moving`, once that handshake is done. A next key equal to any key another
 * node or this node uses is ignored: a peer is identified by its key on every link, and such a
 * peer would take that node's traffic.
 */
function rotationPeers(
  accepted: readonly PeerNode[],
  ctx: {
    readonly self: PlanSelf;
    readonly config: PlanConfig;
    readonly handshakes: ReadonlySet<string>;
    readonly nodeIPs: ReadonlyMap<string, readonly string[]>;
  },
): { peers: DesiredPeer[]; following: { node: string; publicKey: PublicKey; podCIDRs: readonly string[] }[] } {
  const { self, config, handshakes, nodeIPs } = ctx;
  const used = new Map<string, number>();
  const count = (k: string): void => {
    used.set(k, (used.get(k) ?? 0) + 1);
  };
  for (const n of accepted) {
    count(n.wireguardPublicKey);
    if (n.next !== undefined) count(n.next.publicKey);
  }
  const ownKeys = new Set<string>([
    self.wireguardPublicKey,
    ...(self.rotation !== undefined ? [self.rotation.publicKey] : []),
  ]);
  const peers: DesiredPeer[] = [];
  const following: { node: string; publicKey: PublicKey; podCIDRs: readonly string[] }[] = [];
  for (const n of accepted) {
    // The node's addresses travel with its pod CIDRs: whichever key owns one owns the other.
    const extra = nodeIPs.get(n.name) ?? [];
    const owned = extra.length === 0 ? n.podCIDRs : [...n.podCIDRs, ...extra].sort(compareCidrs);
    const current = currentPeer(n, config, owned);
    const next = n.next;
    if (next === undefined || used.get(next.publicKey) !== 1 || ownKeys.has(next.publicKey)) {
      peers.push(current);
      if (n.rotationPhase === 'grace' || n.rotationPhase === 'finishing')
        following.push({ node: n.name, publicKey: n.wireguardPublicKey, podCIDRs: n.podCIDRs });
      continue;
    }
    const moved = n.rotationPhase === 'moving' && handshakes.has(next.publicKey);
    peers.push({ ...current, allowedIPs: moved ? [] : owned });
    // A keepalive even when keepalives are off: the staged peer carries no traffic, and the
    // rotating node waits for this handshake.
    const keepalive = config.persistentKeepalive > 0 ? config.persistentKeepalive : WG_DEFAULT_KEEPALIVE;
    peers.push({
      node: n.name,
      publicKey: next.publicKey,
      endpoint: endpointOf(next.endpointHost, next.endpointPort),
      allowedIPs: moved ? owned : [],
      persistentKeepalive: keepalive,
      next: true,
    });
    following.push({ node: n.name, publicKey: next.publicKey, podCIDRs: n.podCIDRs });
  }
  return { peers, following };
}

/**
 * Node-to-node encryption: each accepted node's InternalIPs as host prefixes (/32, /128),
 * canonical and sorted. Another node chooses these addresses, and every node sends its host
 * traffic for them into that node's tunnel, so only these are taken: unicast (never loopback,
 * link-local, multicast, unspecified, IPv4-mapped), inside `allowed` (the configured node
 * networks), outside `exempt` (always plaintext), not one of this node's own addresses, not
 * inside any pod CIDR (a host prefix inside another peer's pod CIDR would pull part of that
 * peer's traffic to this one), at most {@link MAX_NODE_ADDRESSES} per node (in the order listed).
 * An address two nodes claim goes to the node whose endpoint it is, else to its previous owner,
 * else to nobody (the steering map then drops it as a prefix nobody owns).
 */
function nodeAddresses(
  accepted: readonly PeerNode[],
  rejected: RejectedAddress[],
  ctx: {
    readonly self: RawNode | undefined;
    readonly ownCidrs: readonly Cidr[];
    readonly exempt: readonly string[];
    readonly allowed: readonly string[];
    readonly previous: Readonly<Record<string, string>>;
  },
): Map<string, string[]> {
  const exempt = ctx.exempt.map((c) => parseCidr(c, { hostBits: 'clear' })).filter((c) => c !== undefined);
  const allowed = ctx.allowed.map((c) => parseCidr(c, { hostBits: 'clear' })).filter((c) => c !== undefined);
  const pods = [
    ...ctx.ownCidrs,
    ...accepted.flatMap((n) =>
      n.podCIDRs.map((c) => parseCidr(c, { hostBits: 'clear' })).filter((c) => c !== undefined),
    ),
  ];
  const own = new Set((ctx.self?.internalIPs ?? []).map(hostPrefix));
  const claims = new Map<string, string[]>();
  // Every refusal is reported (counted and logged by the reconciler), except exempt addresses:
  // those are the operator's choice (the API server), not the node's fault.
  // At most MAX_NODE_ADDRESSES refusals are listed per node: a node listing 10,000 addresses
  // must not make every agent hold and log 10,000 rows.
  const perNode = new Map<string, number>();
  const reject = (node: string, address: string, reason: RejectedAddress['reason']): void => {
    const k = perNode.get(node) ?? 0;
    if (k >= MAX_NODE_ADDRESSES) return;
    perNode.set(node, k + 1);
    rejected.push({ node, address, reason });
  };
  for (const n of accepted) {
    const mine = new Set<string>();
    for (const a of n.internalIPs) {
      if (mine.size >= MAX_NODE_ADDRESSES) {
        reject(n.name, a, 'over-limit'); // the first one over the cap stands for all of them
        break;
      }
      const ip = parseIP(a);
      const h = hostPrefix(a);
      const c = h === undefined ? undefined : parseCidr(h, { hostBits: 'clear' });
      if (
        ip === undefined ||
        h === undefined ||
        c === undefined ||
        nonUnicastClass(ip.family, ip.value) !== undefined
      ) {
        reject(n.name, a, 'not-unicast');
        continue;
      }
      if (mine.has(h)) continue; // listed twice: taken once
      if (own.has(h)) {
        reject(n.name, a, 'own-address');
        continue;
      }
      if (!allowed.some((e) => cidrsOverlap(e, c))) {
        reject(n.name, a, 'outside-node-cidrs');
        continue;
      }
      if (exempt.some((e) => cidrsOverlap(e, c))) continue;
      if (pods.some((p) => cidrsOverlap(p, c))) {
        reject(n.name, a, 'in-pod-cidr');
        continue;
      }
      mine.add(h);
      const list = claims.get(h);
      if (list === undefined) claims.set(h, [n.name]);
      else list.push(n.name);
    }
  }
  const endpointOwner = new Map(accepted.map((n) => [hostPrefix(n.endpointHost), n.name]));
  const byNode = new Map<string, string[]>(accepted.map((n) => [n.name, []]));
  for (const [h, names] of claims) {
    let owner: string | undefined = names.length === 1 ? names[0] : undefined;
    if (names.length > 1) {
      const ep = endpointOwner.get(h);
      const prev = ctx.previous[h];
      owner =
        ep !== undefined && names.includes(ep) ? ep : prev !== undefined && names.includes(prev) ? prev : undefined;
    }
    if (owner !== undefined) byNode.get(owner)!.push(h);
    for (const loser of names) if (loser !== owner) reject(loser, h, 'contested');
  }
  for (const list of byNode.values()) list.sort(compareCidrs);
  rejected.sort((x, y) => (x.node < y.node ? -1 : x.node > y.node ? 1 : 0));
  return byNode;
}

function hostPrefix(address: string): string | undefined {
  const ip = parseIP(address);
  return ip === undefined
    ? undefined
    : formatCidr({ family: ip.family, network: ip.value, prefixLength: ip.family === 4 ? 32 : 128 });
}

function pickSource(
  family: 4 | 6 | undefined,
  ownCidrs: readonly NonNullable<ReturnType<typeof parseCidr>>[],
  addresses: readonly string[],
): string | undefined {
  const candidates = addresses.filter((a) => ownCidrs.some((c) => c.family === family && cidrContains(c, a)));
  // Numeric order (lowest address first): stable and what an operator expects.
  return [...candidates].sort((a, b) => {
    const x = parseIP(a)!.value;
    const y = parseIP(b)!.value;
    return x < y ? -1 : x > y ? 1 : 0;
  })[0];
}

function resolveConflicts(
  nodes: readonly PeerNode[],
  held: {
    readonly keys: Readonly<Record<string, PublicKey>>;
    /** Undefined: no endpoint history given (the established key alone decides). */
    readonly endpoints: Readonly<Record<string, string>> | undefined;
  },
  skipped: SkippedNode[],
): PeerNode[] {
  const established = held.keys;
  const loser = new Map<string, SkippedNode>();
  // Conflicting pairs (i < j), found in O(N log N) rather than by comparing every pair, then
  // visited in (i, j) order so the outcome is what the pairwise definition gives.
  type Conflict = 'duplicate-key' | 'endpoint-conflict' | 'pod-cidr-conflict';
  const pairs = new Map<number, Map<number, Conflict>>();
  const mark = (x: number, y: number, what: Conflict): void => {
    if (x === y) return;
    const [i, j] = x < y ? [x, y] : [y, x];
    let row = pairs.get(i);
    if (row === undefined) pairs.set(i, (row = new Map()));
    // The first reason found for a pair stays (keys, then endpoints, then pod CIDRs).
    if (!row.has(j)) row.set(j, what);
  };
  const byKey = new Map<string, number[]>();
  nodes.forEach((n, i) => {
    const list = byKey.get(n.wireguardPublicKey);
    if (list === undefined) byKey.set(n.wireguardPublicKey, [i]);
    else list.push(i);
  });
  for (const list of byKey.values())
    for (let a = 0; a < list.length; a++)
      for (let b = a + 1; b < list.length; b++) mark(list[a]!, list[b]!, 'duplicate-key');
  // Two nodes with one endpoint host: tunnel traffic meant for one reaches the other, and in mode
  // ipsec two SAs could share (destination, SPI). The host alone counts, not the port.
  const byHost = new Map<string, number[]>();
  nodes.forEach((n, i) => {
    const list = byHost.get(n.endpointHost);
    if (list === undefined) byHost.set(n.endpointHost, [i]);
    else list.push(i);
  });
  for (const list of byHost.values())
    for (let a = 0; a < list.length; a++)
      for (let b = a + 1; b < list.length; b++) mark(list[a]!, list[b]!, 'endpoint-conflict');
  // Prefixes either nest or are disjoint: sorted by (family, network, length), a prefix overlaps
  // exactly the ones still open on the stack of enclosing prefixes.
  const spans: { family: 4 | 6; start: bigint; end: bigint; len: number; node: number }[] = [];
  nodes.forEach((n, node) => {
    for (const text of n.podCIDRs) {
      const c = parseCidr(text, { hostBits: 'clear' });
      if (c === undefined) continue;
      const bits = c.family === 4 ? 32n : 128n;
      spans.push({
        family: c.family,
        start: c.network,
        end: c.network + (1n << (bits - BigInt(c.prefixLength))) - 1n,
        len: c.prefixLength,
        node,
      });
    }
  });
  spans.sort((a, b) => a.family - b.family || (a.start < b.start ? -1 : a.start > b.start ? 1 : 0) || a.len - b.len);
  const open: typeof spans = [];
  for (const s of spans) {
    while (open.length > 0 && (open[open.length - 1]!.family !== s.family || open[open.length - 1]!.end < s.start))
      open.pop();
    for (const o of open) mark(o.node, s.node, 'pod-cidr-conflict');
    open.push(s);
  }
  for (const i of [...pairs.keys()].sort((x, y) => x - y)) {
    const row = pairs.get(i)!;
    for (const j of [...row.keys()].sort((x, y) => x - y)) {
      const a = nodes[i]!;
      const b = nodes[j]!;
      const what = row.get(j)!;
      // An endpoint belongs to the node that had it; a key or a pod CIDR to the node established with its key.
      const owns = (n: PeerNode): boolean =>
        established[n.name] === n.wireguardPublicKey &&
        (what !== 'endpoint-conflict' || held.endpoints === undefined || held.endpoints[n.name] === n.endpointHost);
      const aOwns = owns(a);
      const bOwns = owns(b);
      const detail =
        what === 'duplicate-key'
          ? `nodes ${a.name} and ${b.name} publish the same public key`
          : what === 'endpoint-conflict'
            ? `nodes ${a.name} and ${b.name} publish the same endpoint host ${a.endpointHost}`
            : `nodes ${a.name} and ${b.name} have overlapping pod CIDRs`;
      // Only a sole established owner keeps it; if both or neither were established, both lose.
      const aKeeps = aOwns && !bOwns;
      const bKeeps = bOwns && !aOwns;
      if (!aKeeps)
        loser.set(a.name, {
          name: a.name,
          reason: what,
          detail: bKeeps ? `${detail}; ${b.name} had it first` : detail,
        });
      if (!bKeeps)
        loser.set(b.name, {
          name: b.name,
          reason: what,
          detail: aKeeps ? `${detail}; ${a.name} had it first` : detail,
        });
    }
  }
  skipped.push(...loser.values());
  return nodes.filter((n) => !loser.has(n.name));
}
