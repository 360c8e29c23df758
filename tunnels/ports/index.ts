/**
 * The narrow interfaces through which the reconciler touches the world. Drivers implement
 * them; unit tests use fakes that behave like the kernel (see `tunnels/ports/kernel.fake.ts`). Nothing
 * outside `tunnels/` imports a driver's internals.
 */
import type { PublicKey } from '../../keymgr/keys.js';
import type { RawNode } from './model.js';

/** A WireGuard peer as read back from the kernel / wireguard-go (`wg show <if> dump`). */
export interface ObservedPeer {
  readonly publicKey: PublicKey;
  /** `ip:port` / `[ip6]:port`, or undefined when the peer has none. */
  readonly endpoint: string | undefined;
  /** Canonical CIDRs, sorted. */
  readonly allowedIPs: readonly string[];
  /** Unix seconds, 0 = never. */
  readonly latestHandshake: number;
  readonly rxBytes: number;
  readonly txBytes: number;
  /** Seconds; 0 = off. */
  readonly persistentKeepalive: number;
}

/** The interface line of `wg show <if> dump`, private key withheld. */
export interface ObservedInterface {
  readonly publicKey: PublicKey | undefined;
  readonly listenPort: number;
  readonly fwmark: number;
}

/** A peer change for {@link WireGuardPort.applyPeers}. */
export type PeerChange =
  | {
      readonly op: 'set';
      readonly publicKey: PublicKey;
      readonly endpoint: string;
      readonly allowedIPs: readonly string[];
      readonly persistentKeepalive: number;
    }
  | { readonly op: 'remove'; readonly publicKey: PublicKey };

/** How the WireGuard link is implemented on this node. */
export type WireGuardImpl = 'kernel' | 'userspace';

/** WireGuard driver. */
export interface WireGuardPort {
  /**
   * Makes sure the link exists (adopting an existing one: never recreated if present), has the
   * private key read from `privateKeyFile`, the listen port and the fwmark. Returns what it found
   * or created. Does not touch peers and does not reset sessions when nothing differs.
   */
  ensureLink(opts: {
    readonly name: string;
    readonly privateKeyFile: string;
    readonly publicKey: PublicKey;
    readonly listenPort: number;
    readonly fwmark: number;
  }): Promise<{ impl: WireGuardImpl; created: boolean; ifindex: number }>;
  /** Reads interface and peers (one `wg show <if> dump`). Undefined if the link is absent. */
  show(name: string): Promise<{ iface: ObservedInterface; peers: ObservedPeer[] } | undefined>;
  /**
   * Applies peer changes in the given order (callers put adds before removes). May batch
   * several changes into one `wg set` or one UAPI `set`. Kernel semantics: setting allowed IPs on one peer moves
   * them from whichever peer had them.
   */
  applyPeers(name: string, changes: readonly PeerChange[]): Promise<void>;
  /**
   * Sets the preshared key of one peer the link already holds (post-quantum pair secret,
   * issue 19). The key reaches wireguard-go over its UAPI socket, or `wg` through a short-lived
   * 0600 file, never argv, and is never read back into the agent (`show` withholds it). Changes
   * only the next handshake: the current session stays.
   */
  setPresharedKey(name: string, peer: PublicKey, psk: Uint8Array): Promise<void>;
  /** Removes the link (and stops wireguard-go). Used by uninstall and tests only. */
  deleteLink(name: string): Promise<void>;
}

/** A route in sealnet's table as read back from the kernel. */
export interface ObservedRoute {
  readonly dst: string;
  readonly dev: string | undefined;
  readonly mtu: number | undefined;
  readonly src: string | undefined;
  readonly table: number;
  readonly protocol: number;
}

/** A policy-routing rule (only the fields sealnet uses). */
export interface RuleSpec {
  readonly priority: number;
  readonly table: number;
  readonly family: 4 | 6;
}

/** Routing / link driver (rtnetlink). All routes it lists or changes are in one table. */
export interface RoutingPort {
  /** Routes in `table` with `protocol === ROUTE_PROTOCOL` (only the ones sealnet owns). */
  listRoutes(table: number): Promise<ObservedRoute[]>;
  /** Creates or replaces (RTM_NEWROUTE with NLM_F_REPLACE) one route, marked as sealnet's. */
  replaceRoute(route: {
    dst: string;
    dev: string;
    mtu: number;
    src?: string | undefined;
    table: number;
  }): Promise<void>;
  /** Deletes one route sealnet owns. Missing route is not an error. */
  deleteRoute(route: { dst: string; table: number }): Promise<void>;
  /** Makes sure exactly one rule `priority P lookup T` exists for the family. */
  ensureRule(rule: RuleSpec): Promise<void>;
  /** Removes the rule if present. */
  deleteRule(rule: RuleSpec): Promise<void>;
  /** Link facts by name; undefined if absent. */
  getLink(name: string): Promise<{ ifindex: number; mtu: number; up: boolean } | undefined>;
  /** Sets MTU and brings the link up (no-op for what already matches). */
  setLink(name: string, opts: { mtu?: number; up?: boolean }): Promise<void>;
  /** Name and MTU of the link that carries `address` (the underlay), via a route lookup. */
  linkForAddress(address: string): Promise<{ name: string; mtu: number } | undefined>;
  /** All IPv4/IPv6 addresses on this node, for picking the pod-CIDR source address. */
  listAddresses(): Promise<{ address: string; prefixLength: number; dev: string }[]>;
}

/** Events from a node store. */
export interface NodeStoreEvents {
  /** Called after any change (add/update/delete) with the full current list. */
  onChange(nodes: readonly RawNode[]): void;
  /** Called once the initial list is complete (and again after a re-list). */
  onSynced(): void;
  /** Called on transient errors; the store keeps retrying by itself. */
  onError(err: Error): void;
}

/** A source of Node objects plus a way to publish this node's own annotations. */
export interface NodeStore {
  /** Starts watching; calls back until `stop()`. */
  start(events: NodeStoreEvents): Promise<void>;
  stop(): Promise<void>;
  /** Current list (possibly empty before sync). */
  list(): readonly RawNode[];
  /** True once the first full list has been delivered. */
  synced(): boolean;
  /**
   * Merge-patches `sealnet.io/` annotations onto the node `name` (the agent only ever passes
   * its own name). A value of `undefined` removes the key. Throws if the node does not exist.
   */
  patchAnnotations(name: string, annotations: Readonly<Record<string, string | undefined>>): Promise<void>;
}

/** A Node taint, as the API server holds it in `spec.taints`. */
export interface NodeTaint {
  readonly key: string;
  readonly effect: string;
  readonly value?: string | undefined;
}

/**
 * Removes one taint from a Node's `spec.taints` (the agent only ever passes its own Node and
 * `NOT_READY_TAINT`). `absent`: the Node does not carry it (nothing was written); `removed`: it
 * did and no longer does. Throws when the Node cannot be read or the removal is refused.
 */
export interface NodeTaintPort {
  removeTaint(node: string, taint: Pick<NodeTaint, 'key' | 'effect'>): Promise<'removed' | 'absent'>;
}

/** One prefix of the BPF steering map (routing/bpf/steer.c `sealnet_remote`). */
export interface SteeringEntry {
  /** Prefix; IPv4 or IPv6 (host bits ignored). */
  readonly cidr: string;
  /**
   * `ready`: steer into the tunnel; `not-ready`: a peer owns it but its tunnel is unusable, drop;
   * `no-peer`: known remote (the cluster pod range), no peer owns it, drop.
   */
  readonly state: 'ready' | 'not-ready' | 'no-peer';
  /** Ready action: `redirect` into `ifindex` (WireGuard) or set `mark` for XFRM (IPsec). */
  readonly action: 'redirect' | 'mark';
  /** `pod` CIDR, or `node` address (node-to-node encryption: tunnel packets to it pass). */
  readonly kind: 'pod' | 'node';
  /** Tunnel device for `redirect`, 0 otherwise. */
  readonly ifindex: number;
  /** skb mark for `mark`, 0 otherwise. */
  readonly mark: number;
  /** Agent-chosen peer number for status output (0 = none). */
  readonly peerId: number;
}

/** What the steering program is told besides the prefixes. */
export interface SteeringSettings {
  /** Drop what has no ready tunnel (default), or pass it and count it as `fail_open`. */
  readonly failClosed: boolean;
  /**
   * WireGuard listen port; 0 = none. At underlay ingress UDP to it (or to the next port, a
   * rotation's second link) from a node address is tunnel traffic; at egress ports prove nothing.
   */
  readonly wireguardPort: number;
  /** ESP-in-UDP port (4500) or 0; like {@link wireguardPort}, judged at ingress only. */
  readonly espUdpPort: number;
  /** ESP (IP protocol 50) arriving from a node address is tunnel traffic: true in mode ipsec only. */
  readonly esp: boolean;
  /**
   * fwmark of the tunnel's own packets (WG_FWMARK, also the XFRM output mark): at egress only
   * packets carrying it pass as the tunnel's, fragments included; 0 = none (then nothing does).
   */
  readonly tunnelFwmark: number;
  /** skb->mark bits owned by `mark` entries. */
  readonly markMask: number;
}

/** Where a steering classifier is attached. */
export interface SteeringAttachment {
  readonly dev: string;
  /** `egress`/`ingress` of the underlay; `from_pod`: ingress of a pod-facing link (XFRM marks). */
  readonly hook: 'egress' | 'ingress' | 'from_pod';
}

/** One counter of the steering program, summed over CPUs. */
export interface SteeringCounter {
  readonly hook: 'egress' | 'ingress' | 'from_pod';
  readonly reason: string;
  readonly verdict: 'redirect' | 'drop' | 'pass';
  readonly packets: bigint;
  readonly bytes: bigint;
}

/** BPF steering driver (routing/bpf/datapath.ts). Pinned objects outlive the agent. */
export interface SteeringPort {
  /**
   * Start-up, before anything else: adopts or creates the pinned maps (entries kept), writes
   * settings and exempt prefixes, writes a `no-peer` entry for each cluster CIDR that has none,
   * loads the program if this build's is not loaded, and attaches it everywhere (an existing
   * attachment is replaced atomically, never removed first). Idempotent.
   */
  ensure(opts: {
    readonly settings: SteeringSettings;
    readonly exempt: readonly string[];
    readonly clusterCidrs: readonly string[];
    readonly attachments: readonly SteeringAttachment[];
  }): Promise<{
    mapsCreated: boolean;
    programsLoaded: boolean;
    attached: readonly { dev: string; hook: string; change: 'added' | 'replaced' | 'unchanged' }[];
  }>;
  /** The remote map as the kernel holds it, sorted by prefix. */
  listEntries(): Promise<SteeringEntry[]>;
  /**
   * Writes entries that differ (one syscall each, all before any delete); with `prune`, then
   * deletes entries not in `entries`. Each key changes atomically. `fromLastWrite`: diff against
   * what the previous successful call left instead of reading the whole map back (an event pass
   * at 5,000 nodes); ignored when there is no such record.
   */
  applyEntries(
    entries: readonly SteeringEntry[],
    opts: { readonly prune: boolean; readonly fromLastWrite?: boolean },
  ): Promise<{ written: number; deleted: number }>;
  /** All counters. */
  counters(): Promise<SteeringCounter[]>;
  /** Removes sealnet's classifiers from these attachments only (maps and pins stay). */
  detach(attachments: readonly SteeringAttachment[]): Promise<void>;
}

/**
 * Where the agent keeps the text of its last applied state (keymgr/statefile.ts: 0600, atomic
 * replace). The codec is tunnels/plan/lastapplied.ts; the text holds public keys only.
 */
export interface LastAppliedPort {
  /** The text; undefined when there is none. Throws when it cannot be read. */
  read(): Promise<string | undefined>;
  /** Replaces the text atomically. */
  write(text: string): Promise<void>;
}

/**
 * The rotation mirror (`routing/mirror.ts`): copies everything leaving one of
 * sealnet's WireGuard links into the other while a rotation moves peers between them.
 */
export interface MirrorPort {
  /** The link whose egress `from` mirrors into; undefined when there is no mirror. */
  getMirror(from: string): Promise<string | undefined>;
  /** Mirrors `from`'s egress into `to`; false when that was already the case. */
  setMirror(from: string, to: string): Promise<boolean>;
  /** Removes the mirror from `from`; false when there was none. */
  clearMirror(from: string): Promise<boolean>;
  /**
   * Adds the clsact qdisc a mirror needs to `link`; false when it is there. Adding a qdisc
   * deactivates the device for a moment (packets sent meanwhile are dropped), so this runs on
   * the new link right after it is created, long before traffic is routed into it.
   */
  prepare(link: string): Promise<boolean>;
  /**
   * Puts `address` (IPv4, /32, scope host) on one of sealnet's links; false when it is there.
   * Reverse-path filtering drops a packet arriving on an interface without an IPv4 address
   * unless the route back to its source uses that very interface, even in loose mode: the new
   * key's link receives a peer's traffic from the moment the peer moves, before this node
   * routes that peer into it.
   */
  ensureAddress(link: string, address: string): Promise<boolean>;
}

/** The IPsec driver's port (implemented by `ipsec/driver.ts`; mode ipsec, tunnels/reconcile/ipsec-pass.ts). */
export type { DesiredIpsec, IpsecApplyResult, IpsecPort, ObservedIpsec } from './ipsec.js';
