/**
 * Every name sealnet gives to something outside its own process lives here: annotation keys,
 * kernel object names, numbers and paths. It is a contract (DESIGN.md "Names"): change a value
 * only here, and document it in the README table "Kernel objects sealnet owns".
 */

/** Prefix of every Node annotation sealnet reads or writes. */
export const ANNOTATION_PREFIX = 'sealnet.io/';

/** Annotation keys, all under {@link ANNOTATION_PREFIX}. Only `tunnels/annotations.ts` reads them. */
export const ANNOTATIONS = {
  /** Codec version of the sealnet annotations on this Node. */
  version: `${ANNOTATION_PREFIX}version`,
  /** WireGuard X25519 public key, standard base64 (44 chars). */
  wireguardPublicKey: `${ANNOTATION_PREFIX}wireguard-public-key`,
  /** IPsec X25519 public key, standard base64 (issue 4). */
  ipsecPublicKey: `${ANNOTATION_PREFIX}ipsec-public-key`,
  /** Tunnel endpoint `ip:port` (IPv6 as `[addr]:port`). */
  endpoint: `${ANNOTATION_PREFIX}endpoint`,
  /** Encapsulation mode the node's agent runs: `wireguard` or `ipsec`. */
  mode: `${ANNOTATION_PREFIX}mode`,
  /** Monotonic key epoch, bumped by every rotation. */
  keyEpoch: `${ANNOTATION_PREFIX}key-epoch`,
  /** When the current key was created (RFC 3339). */
  keyCreated: `${ANNOTATION_PREFIX}key-created`,
  /** Rotation intent / progress, JSON (issue 5). */
  rotation: `${ANNOTATION_PREFIX}rotation`,
} as const;

/** The annotation codec version this build writes and the only one it accepts. */
export const ANNOTATION_VERSION = 1;

/** WireGuard interface sealnet creates and owns. */
export const WG_INTERFACE = 'sealwg0';
/** Default WireGuard UDP port (51820 is wg-quick's and Calico's, 51871 Cilium's). */
export const WG_DEFAULT_PORT = 51880;
/** Keepalive sent to every peer, seconds (keeps NAT/conntrack state warm; 0 disables). */
export const WG_DEFAULT_KEEPALIVE = 25;

/** Policy-routing table holding the routes to remote pod CIDRs via the tunnel. */
export const ROUTE_TABLE = 5188;
/** Priority of the `lookup ROUTE_TABLE` rule; below main (32766) and Calico's 99. */
export const RULE_PRIORITY = 90;
/** rtnetlink `rtm_protocol` marking routes sealnet installed (so it deletes only its own). */
export const ROUTE_PROTOCOL = 206;
/** fwmark WireGuard puts on its encrypted UDP packets (used by node-to-node encryption). */
export const WG_FWMARK = 0x5188;

/** bpffs directory holding sealnet's pinned programs and maps. */
export const BPF_PIN_DIR = '/sys/fs/bpf/sealnet';
/** Default agent state directory (keys, rotation state). */
export const DEFAULT_STATE_DIR = '/var/lib/sealnet';
/** Directory where wireguard-go and wg keep their UAPI sockets (hard-coded in both tools). */
export const WG_SOCKET_DIR = '/var/run/wireguard';
