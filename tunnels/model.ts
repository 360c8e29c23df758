/**
 * The cluster model: plain data that flows from a node store through the codec into the
 * planner, and the desired state the planner hands to the drivers. No client-node or netlink
 * types ever appear here.
 */
import type { PublicKey } from '../keymgr/keys.js';

/** Encapsulation mode. */
export type Mode = 'wireguard' | 'ipsec';

/**
 * A Node as a node store sees it, before decoding: the subset of a Kubernetes Node that
 * sealnet reads. Both store backends (`kubernetes`, `file`) produce exactly this.
 */
export interface RawNode {
  /** metadata.name */
  readonly name: string;
  /** metadata.annotations (all of them; the codec picks the `sealnet.io/` ones). */
  readonly annotations: Readonly<Record<string, string>>;
  /** spec.podCIDRs (set by the control plane, not by agents). */
  readonly podCIDRs: readonly string[];
  /** status.addresses of type InternalIP, in order. */
  readonly internalIPs: readonly string[];
}

/** The sealnet view of a node after its annotations decoded successfully. */
export interface PeerNode {
  readonly name: string;
  readonly version: number;
  readonly mode: Mode;
  readonly wireguardPublicKey: PublicKey;
  /** Tunnel endpoint host (IPv4 dotted or IPv6 without brackets). */
  readonly endpointHost: string;
  readonly endpointPort: number;
  readonly keyEpoch: number;
  /** Pod CIDRs in canonical form (network address, prefix length), sorted. */
  readonly podCIDRs: readonly string[];
  readonly internalIPs: readonly string[];
}

/** Why a node was left out of the plan. */
export type SkipReason =
  | 'annotations-missing'
  | 'annotations-invalid'
  | 'version-unsupported'
  | 'mode-mismatch'
  | 'duplicate-key'
  | 'key-equals-self'
  | 'no-pod-cidrs'
  | 'pod-cidr-conflict';

/** A node the planner skipped, with a sentence a person understands. */
export interface SkippedNode {
  readonly name: string;
  readonly reason: SkipReason;
  readonly detail: string;
}

/** Desired WireGuard link settings. */
export interface DesiredLink {
  readonly name: string;
  readonly listenPort: number;
  readonly mtu: number;
  readonly fwmark: number;
}

/** One desired WireGuard peer (one remote node). */
export interface DesiredPeer {
  readonly node: string;
  readonly publicKey: PublicKey;
  /** `ip:port` or `[ip6]:port`. */
  readonly endpoint: string;
  /** Canonical CIDRs, sorted. */
  readonly allowedIPs: readonly string[];
  /** Seconds; 0 = off. */
  readonly persistentKeepalive: number;
}

/** One desired route in sealnet's routing table. */
export interface DesiredRoute {
  /** Canonical destination CIDR. */
  readonly dst: string;
  /** Output interface name. */
  readonly dev: string;
  readonly mtu: number;
  /** Preferred source address (host-to-remote-pod traffic), if the node has one. */
  readonly src?: string | undefined;
  readonly table: number;
}

/** Everything the agent wants in the kernel, computed purely by `plan()`. Sorted. */
export interface DesiredState {
  readonly mode: Mode;
  readonly link: DesiredLink;
  /** Sorted by node name. */
  readonly peers: readonly DesiredPeer[];
  /** Sorted by dst. */
  readonly routes: readonly DesiredRoute[];
  /** Sorted by name. */
  readonly skipped: readonly SkippedNode[];
}
