/**
 * Every name sealnet gives to something outside its own process lives here: annotation keys,
 * kernel object names, numbers and paths. It is a contract: change a value
 * only here, and document it in the README table "Kernel objects sealnet owns".
 */

/** Prefix of every Node annotation sealnet reads or writes. */
export const ANNOTATION_PREFIX = 'sealnet.io/';

/** Annotation keys, all under {@link ANNOTATION_PREFIX}. Only `tunnels/plan/annotations.ts` reads them. */
export const ANNOTATIONS = {
  /** Codec version of the sealnet annotations on this Node. */
  version: `${ANNOTATION_PREFIX}version`,
  /** WireGuard X25519 public key, standard base64 (44 chars). */
  wireguardPublicKey: `${ANNOTATION_PREFIX}wireguard-public-key`,
  /** IPsec X25519 public key, standard base64. */
  ipsecPublicKey: `${ANNOTATION_PREFIX}ipsec-public-key`,
  /** Epoch of the IPsec key (mode ipsec; SPIs and SA keys are derived over it). */
  ipsecKeyEpoch: `${ANNOTATION_PREFIX}ipsec-key-epoch`,
  /**
   * IPsec generation, 8 hex digits (not all zero): drawn at random when the agent starts with
   * none of its SAs in the kernel (a reboot); mixed into SPIs and SA keys of pairs where both
   * nodes publish one (ipsec/kdf.ts), so lost XFRM state never comes back with an old key.
   */
  ipsecGeneration: `${ANNOTATION_PREFIX}ipsec-generation`,
  /** IPsec key a rotation is bringing in (staging, moving), `<epoch>:<base64 key>`; peers install inbound SAs for it. */
  ipsecNextKey: `${ANNOTATION_PREFIX}ipsec-next-key`,
  /** IPsec key a rotation is retiring (grace), `<epoch>:<base64 key>`; peers keep accepting it until it goes. */
  ipsecPreviousKey: `${ANNOTATION_PREFIX}ipsec-previous-key`,
  /** Tunnel endpoint `ip:port` (IPv6 as `[addr]:port`). */
  endpoint: `${ANNOTATION_PREFIX}endpoint`,
  /** Encapsulation mode the node's agent runs: `wireguard` or `ipsec`. */
  mode: `${ANNOTATION_PREFIX}mode`,
  /** Monotonic key epoch, bumped by every rotation. */
  keyEpoch: `${ANNOTATION_PREFIX}key-epoch`,
  /** When the current key was created (RFC 3339). */
  keyCreated: `${ANNOTATION_PREFIX}key-created`,
  /** Rotation progress the node's agent publishes, JSON (`tunnels/plan/rotation-codec.ts`). */
  rotation: `${ANNOTATION_PREFIX}rotation`,
  /** The key a rotation is bringing in, while peers stage it. */
  wireguardNextPublicKey: `${ANNOTATION_PREFIX}wireguard-next-public-key`,
  /** Endpoint of the link holding the next key (the other link's listen port). */
  nextEndpoint: `${ANNOTATION_PREFIX}next-endpoint`,
  /** Rotation intent written by `sealctl keys rotate` (JSON: id, requestedAt); agents only read it. */
  rotateRequest: `${ANNOTATION_PREFIX}rotate-request`,
  /** What this node did with other nodes' next keys (JSON: node -> "fingerprint:staged|moved"). */
  rotationPeers: `${ANNOTATION_PREFIX}rotation-peers`,
  /** The agent's report about itself, JSON (tunnels/status/report.ts): fingerprints only, never keys. */
  status: `${ANNOTATION_PREFIX}status`,
  /**
   * The node's ML-KEM-768 encapsulation key (post-quantum pair secret, issue 19): 1580 characters
   * of canonical base64 (keymgr/pq/mlkem.ts). Public; the decapsulation key never leaves the node.
   */
  pqKemKey: `${ANNOTATION_PREFIX}pq-kem-key`,
  /**
   * The address the node's agent receives post-quantum exchange messages on: one of its own
   * addresses inside its own pod CIDRs (so it routes only through the tunnel), TCP port
   * {@link PQ_EXCHANGE_PORT}. Peers refuse an address outside the node's pod CIDRs.
   */
  pqAddress: `${ANNOTATION_PREFIX}pq-address`,
} as const;

/** TCP port of the post-quantum exchange listener, on the node's {@link ANNOTATIONS.pqAddress}. */
export const PQ_EXCHANGE_PORT = 51889;
/** The node's ML-KEM-768 key seed (d ‖ z, 64 bytes, 0600) under `<stateDir>/keys`. */
export const PQ_KEM_SEED_FILE = 'pq-mlkem768.seed';

/**
 * The taint a kubelet registers its Node with (`--register-with-taints=sealnet.io/not-ready:NoSchedule`)
 * so that no pod is scheduled there before sealnet's guard is attached. The agent removes it from
 * its own Node once its guard is attached and its first pass converged; it never adds it. The
 * chart's admission policy lets the agent make exactly that one change to a Node's spec.
 */
export const NOT_READY_TAINT = { key: `${ANNOTATION_PREFIX}not-ready`, effect: 'NoSchedule' } as const;

/** The annotation codec version this build writes and the only one it accepts. */
export const ANNOTATION_VERSION = 1;

/** WireGuard interface sealnet creates and owns (slot 0; see {@link WG_INTERFACES}). */
export const WG_INTERFACE = 'sealwg0';
/**
 * The two WireGuard interfaces, by slot. A key rotation brings the new key up on the other slot
 * (listen port + slot) beside the current one, moves traffic, then deletes the old interface;
 * slots alternate from one rotation to the next.
 */
export const WG_INTERFACES = ['sealwg0', 'sealwg1'] as const;
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

/**
 * tc filter priority of the rotation mirror: during a rotation a u32 filter with `mirred egress
 * mirror` on the old interface's egress copies every packet into the new interface. The
 * interfaces are sealnet's own, so every filter at this priority on them is sealnet's.
 */
export const MIRROR_TC_PRIORITY = 1;

/** bpffs directory holding sealnet's pinned programs and maps. */
export const BPF_PIN_DIR = '/sys/fs/bpf/sealnet';
/** Default agent state directory (keys, rotation state). */
export const DEFAULT_STATE_DIR = '/var/lib/sealnet';
/** Directory where wireguard-go and wg keep their UAPI sockets (hard-coded in both tools). */
export const WG_SOCKET_DIR = '/var/run/wireguard';

/**
 * ESP SPIs sealnet allocates (inclusive; `tunnels/plan/spi.ts`): one fixed top byte and 24 hashed
 * bits. A state is sealnet's only if its SPI lies here and its reqid is {@link XFRM_REQID}.
 * strongSwan allocates from 0xc0000000 up and Cilium uses SPIs below 16, so neither lands here.
 */
export const XFRM_SPI_MIN = 0x51000000;
/** Upper end (inclusive) of sealnet's SPI range; see {@link XFRM_SPI_MIN}. */
export const XFRM_SPI_MAX = 0x51ffffff;
/** reqid of every XFRM state and policy template sealnet installs (ties policies to states). */
export const XFRM_REQID = 0x5188;
/**
 * Priority of sealnet's XFRM policies. Lower wins in the kernel, and a policy with a lower
 * number for the same traffic (`ip xfrm` defaults to 0) would override sealnet's: 2 keeps
 * everything else (but the guard below) behind it.
 */
export const XFRM_POLICY_PRIORITY = 2;
/**
 * Priority of the temporary block policies ("guards") sealnet puts in front of a pair's
 * outbound policies while it replaces an outbound state in place; always below
 * {@link XFRM_POLICY_PRIORITY} so a guard wins while it exists.
 */
export const XFRM_GUARD_PRIORITY = 1;
/**
 * Mark the kernel sets on sealnet's encrypted ESP packets (XFRMA_SET_MARK on outbound states).
 * Deliberately the value of {@link WG_FWMARK}: whatever lets WireGuard's encrypted packets
 * bypass steering lets ESP packets bypass it too.
 */
export const XFRM_OUTPUT_MARK = 0x5188;
/** Mask of {@link XFRM_OUTPUT_MARK} (the full mark, as WireGuard's fwmark). */
export const XFRM_OUTPUT_MARK_MASK = 0xffffffff;

/**
 * BPF steering (routing/bpf/). Everything below lives under
 * {@link BPF_PIN_DIR}; the suffix of the maps directory is the map layout version (a build with
 * another layout creates a new directory instead of misreading the old maps).
 */
export const BPF_MAPS_SUBDIR = 'maps_v1';
/** Prefix of the per-object program directories (`prog_<sha256 of steer.o, 16 hex>`). */
export const BPF_PROGS_PREFIX = 'prog_';
/** Pinned map names (also the names in steer.c and in `bpftool map show`). */
export const BPF_MAP_NAMES = {
  remote: 'sealnet_remote',
  exempt: 'sealnet_exempt',
  config: 'sealnet_config',
  counters: 'sealnet_counters',
} as const;
/** Program names in steer.c, per hook (the kernel shows the first 15 characters). */
export const BPF_PROG_NAMES = {
  egress: 'sealnet_egress',
  ingress: 'sealnet_ingress',
  from_pod: 'sealnet_from_pod',
} as const;
/**
 * tc filter priority ("pref") of sealnet's classifiers: 1, so they run before filters that
 * tc numbers automatically (49152 and down) and no other classifier can pass a packet first.
 */
export const TC_PRIORITY = 1;
/** tc filter handle marking a classifier as sealnet's (with {@link TC_PRIORITY} and kind bpf). */
export const TC_HANDLE = 0x5188;
/** skb->mark bits the BPF program sets for XFRM-mode entries (IPsec). */
export const BPF_XFRM_MARK_MASK = 0x0f00;

/** Version of the status report (the `v` field of {@link ANNOTATIONS.status}). */
export const STATUS_VERSION = 1;
/**
 * Upper bound of the status annotation in bytes. Kubernetes allows 256 KiB for all annotations
 * of an object together, and every Node watcher receives every patch: a larger report is
 * compacted, then truncated (and says so), never published whole.
 */
export const STATUS_MAX_BYTES = 64 * 1024;
/** Bearer token of the agent's `/status` endpoint, under the state dir (0600, created if missing). */
export const STATUS_TOKEN_FILE = 'status.token';
/** `sealctl audit` signing key (Ed25519 seed, 0600, created if missing), under sealctl's state dir. */
export const AUDIT_SIGNING_KEY_FILE = 'audit/signing.key';
