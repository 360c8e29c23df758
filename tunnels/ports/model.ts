/**
 * The cluster model: plain data that flows from a node store through the codec into the
 * planner, and the desired state the planner hands to the drivers. No client-node or netlink
 * types ever appear here.
 */
import type { PublicKey } from '../../keymgr/keys.js';
import type { DesiredIpsec } from './ipsec.js';
import type { RotationPhase } from '../../keymgr/rotation.js';

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
  /** Rotation phase the node announces; absent when idle or never rotated. */
  readonly rotationPhase?: AnnouncedPhase;
  /** The key the node's rotation brings in, while it is `staging` or `moving` (peers stage it). */
  readonly next?: { readonly publicKey: PublicKey; readonly endpointHost: string; readonly endpointPort: number };
  /** What the node reports about other nodes' next keys, by node name. */
  readonly rotationReports?: Readonly<Record<string, PeerRotationReport>>;
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
  | 'pod-cidr-conflict'
  /** Its endpoint host is another node's (the established owner keeps it) or this node's own. */
  | 'endpoint-conflict'
  /** Mode ipsec: the pair cannot be built (no key for the node's epoch, address families differ). */
  | 'ipsec-unusable';

/**
 * Why the planner did not take an address a node lists in `status.addresses` (node-to-node
 * mode): not a unicast address (or not an address), outside the configured node networks, one
 * of this node's own, inside a pod CIDR, over the per-node cap, or claimed by another node that
 * keeps it (or by several, none established).
 */
export type AddressRejectReason =
  'not-unicast' | 'outside-node-cidrs' | 'own-address' | 'in-pod-cidr' | 'over-limit' | 'contested';

/** An address a node claims and did not get. */
export interface RejectedAddress {
  readonly node: string;
  /** As the node listed it (untrusted text: quote it short when printing). */
  readonly address: string;
  readonly reason: AddressRejectReason;
}

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
  /** The node's next key during its rotation (a second peer for the same node). */
  readonly next?: true;
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

/** Mode wireguard's tunnel: the link, its peers, and key-rotation extras. */
export interface DesiredWireGuard {
  readonly kind: 'wireguard';
  readonly link: DesiredLink;
  /** Sorted by node name. */
  readonly peers: readonly DesiredPeer[];
  /**
   * This node's rotation: the link holding the new key, with the same peers. Routes of the
   * nodes that moved to the new key name this link as `dev`. Absent when not rotating.
   */
  readonly incoming?: { readonly link: DesiredLink; readonly peers: readonly DesiredPeer[] };
  /**
   * Other nodes' rotations this node takes part in: the key to report `staged` / `moved` for
   * (`sealnet.io/rotation-peers`). Absent when no other node rotates. Sorted by node.
   */
  readonly following?: readonly {
    readonly node: string;
    readonly publicKey: PublicKey;
    readonly podCIDRs: readonly string[];
  }[];
}

/** Mode ipsec's tunnel: SAs and policies per peer for the IPsec driver (no link is created). */
export interface DesiredIpsecTunnel {
  readonly kind: 'ipsec';
  readonly sas: DesiredIpsec;
}

/**
 * Everything the agent wants in the kernel, computed purely (`plan()`, and `planIpsecMode()`
 * which replaces the tunnel with SAs). Sorted. Routes name the tunnel link (wireguard) or the
 * underlay device (ipsec).
 */
export interface DesiredState {
  readonly tunnel: DesiredWireGuard | DesiredIpsecTunnel;
  /** Sorted by dst. */
  readonly routes: readonly DesiredRoute[];
  /** Sorted by name. */
  readonly skipped: readonly SkippedNode[];
  /** Node-to-node mode: addresses of accepted nodes not taken, sorted by node; absent when none. */
  readonly rejectedAddresses?: readonly RejectedAddress[];
}

/** What `plan()` returns: the WireGuard tunnel (mode ipsec replaces it, `planIpsecMode`). */
export type DesiredWireGuardState = DesiredState & { readonly tunnel: DesiredWireGuard };

/** The WireGuard tunnel of `d`, or undefined in mode ipsec. */
export function wireguardOf(d: DesiredState | undefined): DesiredWireGuard | undefined {
  return d?.tunnel.kind === 'wireguard' ? d.tunnel : undefined;
}

/** The IPsec SAs of `d`, or undefined in mode wireguard. */
export function ipsecOf(d: DesiredState | undefined): DesiredIpsec | undefined {
  return d?.tunnel.kind === 'ipsec' ? d.tunnel.sas : undefined;
}

export type { DesiredIpsec } from './ipsec.js';

/** Phase a node announces; `idle` when no rotation runs. */
export type AnnouncedPhase = RotationPhase | 'idle';

/** What a node reports about one other node's new key. */
export interface PeerRotationReport {
  /** `fingerprint()` of the key the report is about. */
  readonly fingerprint: string;
  /** `staged`: a peer with the key exists on every link; `moved`: it owns the node's pod CIDRs. */
  readonly state: 'staged' | 'moved';
}

/** What one pass reached. */
export interface ReconcileReport {
  /** Kernel writes performed, by operation. */
  readonly kernelOps: Readonly<Record<string, number>>;
  readonly errors: readonly { step: string; message: string }[];
  readonly desired: DesiredState | undefined;
  readonly pruned: boolean;
  /** True when every desired peer and route is in the kernel. */
  readonly converged: boolean;
}
