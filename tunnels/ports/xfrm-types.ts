/**
 * Plain-data types of XFRM objects as sealnet describes them: what to install (`*Spec`) and
 * what the kernel reports back. No netlink layout here (that is `xfrm-msg.ts`); addresses are
 * text (`198.18.0.1`, `100.64.2.0/24`), 64-bit counters are bigint.
 */

/** XFRM policy direction. */
export type XfrmDir = 'in' | 'out' | 'fwd';

/** IPsec mode of a state or template. */
export type XfrmMode = 'transport' | 'tunnel';

/** A netfilter mark and mask as XFRM matches it: `(skb->mark & mask) === value`. */
export interface XfrmMark {
  readonly value: number;
  readonly mask: number;
}

/** Traffic selector. Both prefixes must be of one family. */
export interface XfrmSelector {
  /** Source prefix, canonical CIDR. */
  readonly src: string;
  /** Destination prefix, canonical CIDR. */
  readonly dst: string;
  /** IP protocol number; 0 = any. */
  readonly proto?: number | undefined;
  /** Source / destination port (host order); 0 = any. Only with TCP/UDP/SCTP. */
  readonly sport?: number | undefined;
  readonly dport?: number | undefined;
  /** Interface index; 0 = any. */
  readonly ifindex?: number | undefined;
}

/** Key sizes sealnet configures for `rfc4106(gcm(aes))`. */
export type AeadKeyBits = 128 | 256;

/** The only AEAD sealnet installs: AES-GCM for ESP (RFC 4106), 16-byte ICV. */
export const AEAD_RFC4106 = 'rfc4106(gcm(aes))';
/** ICV length of {@link AEAD_RFC4106} as sealnet configures it. */
export const AEAD_ICV_BITS = 128;
/** rfc4106 keys are the AES key followed by this many bytes of nonce salt. */
export const AEAD_SALT_BYTES = 4;

/** An AEAD algorithm with its key material (`key` = AES key ‖ 4-byte salt). */
export interface XfrmAead {
  readonly name: typeof AEAD_RFC4106;
  /** AES key size without the salt. */
  readonly keyBits: AeadKeyBits;
  readonly icvBits: typeof AEAD_ICV_BITS;
  /** keyBits/8 + 4 bytes. The caller zeroes it after use. */
  readonly key: Uint8Array;
}

/** Lifetime limits of a state or policy; undefined = no limit (XFRM_INF). */
export interface XfrmLifetime {
  readonly softBytes?: bigint | undefined;
  readonly hardBytes?: bigint | undefined;
  readonly softPackets?: bigint | undefined;
  readonly hardPackets?: bigint | undefined;
  /** Seconds after adding / first use. */
  readonly softAddSeconds?: bigint | undefined;
  readonly hardAddSeconds?: bigint | undefined;
  readonly softUseSeconds?: bigint | undefined;
  readonly hardUseSeconds?: bigint | undefined;
}

/** What identifies a state in the kernel (XFRM_MSG_GETSA/DELSA): destination, SPI, protocol, mark. */
export interface XfrmStateId {
  readonly dst: string;
  readonly spi: number;
  /** Mark of the state (looked up with it); undefined = none. */
  readonly mark?: XfrmMark | undefined;
}

/** An ESP state to install. */
export interface XfrmStateSpec extends XfrmStateId {
  /** Outer source address (same family as `dst`). */
  readonly src: string;
  readonly mode: XfrmMode;
  readonly reqid: number;
  readonly aead: XfrmAead;
  /** Extended (64-bit) sequence numbers. */
  readonly esn: boolean;
  /** Anti-replay window in packets (0 = off). With ESN a multiple of 32, at most 4096. */
  readonly replayWindow: number;
  /** Mark set on packets this state produces (XFRMA_SET_MARK / SET_MARK_MASK). */
  readonly outputMark?: XfrmMark | undefined;
  /** XFRM_SA_XFLAG_* bits (XFRMA_SA_EXTRA_FLAGS). */
  readonly extraFlags?: number | undefined;
  readonly lifetime?: XfrmLifetime | undefined;
  /**
   * Inner traffic selector; undefined = any: of either family in tunnel mode (AF_UNSPEC, so one
   * SA carries IPv4 and IPv6 inner packets), of the outer family in transport mode.
   */
  readonly selector?: XfrmSelector | undefined;
}

/** Usage counters of a state or policy (xfrm_lifetime_cur). */
export interface XfrmCurrent {
  readonly bytes: bigint;
  readonly packets: bigint;
  /** Unix seconds. */
  readonly addTime: bigint;
  /** Unix seconds; 0 = never used. */
  readonly useTime: bigint;
}

/** A state as the kernel reports it. */
export interface XfrmState {
  readonly src: string;
  readonly dst: string;
  readonly spi: number;
  /** IP protocol of the state (50 = ESP). */
  readonly proto: number;
  readonly family: 4 | 6;
  readonly mode: XfrmMode | number;
  readonly reqid: number;
  /** XFRM_STATE_* flags. */
  readonly flags: number;
  readonly extraFlags: number;
  readonly esn: boolean;
  /** Effective replay window (from the ESN state when ESN is on). */
  readonly replayWindow: number;
  /**
   * Present for AEAD states. `key` is the kernel's key bytes (for rfc4106: AES key ‖ salt), a
   * copy the caller should zero; all zeros when the kernel redacts keys (lockdown).
   */
  readonly aead: { readonly name: string; readonly icvBits: number; readonly key: Uint8Array } | undefined;
  /** Names of non-AEAD algorithms the state uses (foreign states only). */
  readonly otherAlgorithms: readonly string[];
  readonly mark: XfrmMark | undefined;
  readonly outputMark: XfrmMark | undefined;
  readonly selector: XfrmSelector;
  readonly lifetime: XfrmLifetime;
  readonly current: XfrmCurrent;
  /** Kernel statistics: replay window, replayed packets, integrity (ICV) failures. */
  readonly stats: { readonly replayWindow: number; readonly replay: number; readonly integrityFailed: number };
  /** Highest outbound / inbound sequence numbers (64-bit with ESN). */
  readonly sequence: { readonly outbound: bigint; readonly inbound: bigint };
  /** Unix seconds of the last use (XFRMA_LASTUSED), if reported. */
  readonly lastUsed: bigint | undefined;
}

/** One policy template (XFRMA_TMPL entry). */
export interface XfrmTemplate {
  /** Outer source; `0.0.0.0` / `::` = any. */
  readonly src: string;
  readonly dst: string;
  /** 0 = any state with matching addresses and reqid. */
  readonly spi: number;
  readonly reqid: number;
  readonly mode: XfrmMode;
  /** An optional template does not have to be satisfied (never used by sealnet). */
  readonly optional?: boolean | undefined;
}

/** What identifies a policy: selector, direction, mark (the kernel's match is exact on all three). */
export interface XfrmPolicyId {
  readonly selector: XfrmSelector;
  readonly dir: XfrmDir;
  readonly mark?: XfrmMark | undefined;
}

/** A policy to install. */
export interface XfrmPolicySpec extends XfrmPolicyId {
  readonly action: 'allow' | 'block';
  readonly priority: number;
  /** ESP templates (a bundle: all must be satisfied); empty for block policies. */
  readonly templates: readonly XfrmTemplate[];
  readonly lifetime?: XfrmLifetime | undefined;
}

/** A policy as the kernel reports it. */
export interface XfrmPolicy extends XfrmPolicySpec {
  /** Limits that are set (an unlimited policy reads back as `{}`). */
  readonly lifetime: XfrmLifetime;
  readonly index: number;
  /** XFRM_POLICY_TYPE_MAIN (0) or SUB (1). */
  readonly type: number;
  readonly ifId: number;
  readonly current: XfrmCurrent;
  /** Template protocols as numbers (50 = ESP), parallel to `templates`. */
  readonly templateProtos: readonly number[];
}

/** Hex spelling of an SPI for messages (`0x51000001`). */
export function spiHex(spi: number): string {
  return `0x${(spi >>> 0).toString(16).padStart(8, '0')}`;
}
