/**
 * The IPsec side of the reconciler, as two narrow interfaces:
 *
 * - {@link IpsecPort}: what the reconciler calls (proposed for `tunnels/ports/index.ts`): check the
 *   kernel once at start, `apply()` a desired state, `observe()` what is installed.
 * - {@link XfrmOps}: the kernel operations the driver needs. `XfrmClient` (xfrm.ts) implements
 *   it over the addon; `FakeXfrm` (xfrm.fake.ts) behaves like the kernel for unit tests.
 *
 * Desired state is plain data the planner can compute purely (`plan.ts`): SPIs and key epochs,
 * never key material. The driver derives each SA key (kdf.ts) only when it installs or checks
 * a state.
 */
import type { PublicKey } from '../../keymgr/keys.js';
import type {
  AeadKeyBits,
  XfrmCurrent,
  XfrmMark,
  XfrmPolicy,
  XfrmPolicyId,
  XfrmPolicySpec,
  XfrmState,
  XfrmStateId,
  XfrmStateSpec,
} from './xfrm-types.js';

/** The XFRM operations the IPsec driver uses. */
export interface XfrmOps {
  /** Every state in the namespace (keys included: callers zero them). */
  dumpStates(): Promise<XfrmState[]>;
  /** XFRM_MSG_NEWSA; EEXIST when a state with the same id exists. */
  addState(spec: XfrmStateSpec): Promise<void>;
  /** XFRM_MSG_DELSA; false when there was no such state. */
  deleteState(id: XfrmStateId): Promise<boolean>;
  /** Every policy in the namespace. */
  dumpPolicies(): Promise<XfrmPolicy[]>;
  /** XFRM_MSG_NEWPOLICY; EEXIST when a policy with the same selector, direction and mark exists. */
  addPolicy(spec: XfrmPolicySpec): Promise<void>;
  /** XFRM_MSG_UPDPOLICY: replaces atomically (or adds). */
  updatePolicy(spec: XfrmPolicySpec): Promise<void>;
  /** XFRM_MSG_DELPOLICY; false when there was no such policy. */
  deletePolicy(id: XfrmPolicyId): Promise<boolean>;
  /**
   * Resolves if ESP with rfc4106(gcm(aes)) works for outer addresses of `family`.
   * @throws SealnetError `KERNEL_FEATURE_MISSING` naming the missing feature.
   */
  checkEsp(family: 4 | 6): Promise<void>;
}

/** One SA of a pair: the SPI (spi.ts) and the key epochs both ends derive its key from. */
export interface DesiredSa {
  readonly spi: number;
  /** Key epoch of the sending node's IPsec key. */
  readonly srcEpoch: number;
  /** Key epoch of the receiving node's IPsec key. */
  readonly dstEpoch: number;
  /** The peer's IPsec public key of the epoch this SA uses on the peer's side. */
  readonly peerPublicKey: PublicKey;
  /**
   * IPsec generations of the sender and the receiver, mixed into the SA key (ipsec/kdf.ts):
   * both set when both nodes publish one, else both absent.
   */
  readonly srcGeneration?: number;
  readonly dstGeneration?: number;
}

/** Everything sealnet wants in the kernel for one remote node. */
export interface DesiredIpsecPeer {
  readonly node: string;
  /** This node's underlay address (outer source of outbound ESP). */
  readonly localAddress: string;
  /** The peer's underlay address. */
  readonly remoteAddress: string;
  /** This node's pod CIDRs, canonical and sorted. */
  readonly localCIDRs: readonly string[];
  /** The peer's pod CIDRs, canonical and sorted. */
  readonly remoteCIDRs: readonly string[];
  /** The SA this node sends with (its outbound policies pin this SPI). */
  readonly outbound: DesiredSa;
  /** Every SA this node accepts from the peer (current, and old/new ones during a rotation), sorted by SPI. */
  readonly inbound: readonly DesiredSa[];
}

/** The IPsec part of the desired state. Sorted; no key material. */
export interface DesiredIpsec {
  /** This node's name (the KDF binds both names). */
  readonly self: string;
  readonly keyBits: AeadKeyBits;
  /** Anti-replay window of inbound SAs, packets (ESN is always on). */
  readonly replayWindow: number;
  /**
   * Mark that outbound policies require (set by the BPF steering on traffic to encrypt);
   * undefined = every packet matching the selectors. Its mask must leave at least one bit free
   * (the guard policies split on it).
   */
  readonly policyMark?: XfrmMark | undefined;
  /** Sorted by node name. */
  readonly peers: readonly DesiredIpsecPeer[];
}

/** One kernel change the driver made, in order. */
export interface IpsecChange {
  readonly op:
    | 'add-state'
    | 'replace-state'
    | 'delete-state'
    | 'add-policy'
    | 'update-policy'
    | 'delete-policy'
    | 'add-guard'
    | 'delete-guard';
  /** Human-readable object ("out spi 0x51000001 198.18.0.1->198.18.0.2"). */
  readonly target: string;
  /** Peer it belongs to; undefined for leftovers being pruned. */
  readonly node: string | undefined;
}

/** What {@link IpsecPort.apply} reached. */
export interface IpsecApplyResult {
  /** Peers whose SAs and policies are all in place, sorted. */
  readonly ready: readonly string[];
  /** Peers that failed (other peers are unaffected), sorted by node. */
  readonly failed: readonly { readonly node: string; readonly error: Error }[];
  readonly changes: readonly IpsecChange[];
  /** Owned objects that are not desired but were kept because `prune` was false. */
  readonly unpruned: number;
  /** Errors of independent cleanup steps (pruning, guard removal) that did not fail a peer. */
  readonly warnings: readonly string[];
}

/** An owned SA as observed, without its key. */
export interface ObservedSa {
  readonly direction: 'in' | 'out';
  readonly spi: number;
  readonly src: string;
  readonly dst: string;
  readonly esn: boolean;
  readonly replayWindow: number;
  readonly current: XfrmCurrent;
  /** Replayed packets dropped, ICV failures (xfrm_stats). */
  readonly replayDrops: number;
  readonly integrityFailures: number;
  readonly sequence: { readonly outbound: bigint; readonly inbound: bigint };
  /**
   * The state's AEAD as the kernel reports it (key withheld): name, ICV and key size in bits
   * (for rfc4106 the kernel holds the AES key plus 4 bytes of salt; `cipherBits` is the AES
   * part). Undefined for a state without an AEAD (not one sealnet installed).
   */
  readonly aead: { readonly name: string; readonly icvBits: number; readonly cipherBits: number } | undefined;
}

/** Owned IPsec objects in the kernel. */
export interface ObservedIpsec {
  /** Sorted by SPI. */
  readonly states: readonly ObservedSa[];
  readonly policies: readonly XfrmPolicy[];
}

/** One SA of a pair as observed. */
export interface SaEvidence {
  readonly spi: number;
  /** The kernel's AEAD name, ICV and cipher key size; undefined when the state has no AEAD. */
  readonly aead: ObservedSa['aead'];
  /** 128 or 256 when the state is rfc4106(gcm(aes)) with a 128-bit ICV (what sealnet installs); else undefined. */
  readonly aesGcmBits: 128 | 256 | undefined;
  readonly bytes: number;
  readonly packets: number;
  /** Inbound only: packets that failed the ICV check (a key the two ends disagree on). */
  readonly integrityFailures: number;
}

/** What the kernel holds for one desired pair. */
export interface PairEvidence {
  readonly node: string;
  /** The outbound SA (the SPI the outbound policies must pin); undefined when absent. */
  readonly outbound: SaEvidence | undefined;
  /** Planned inbound SAs that are present, sorted by SPI. */
  readonly inbound: readonly SaEvidence[];
  /** What is missing or wrong, one sentence each; empty when the pair is complete. */
  readonly problems: readonly string[];
}

/** The AES-GCM key size of an SA when it is exactly what sealnet installs (rfc4106, 128-bit ICV), else undefined. */

/** The IPsec driver as the reconciler sees it. */
export interface IpsecPort {
  /**
   * Checks, without changing anything, that the kernel can run mode ipsec for the given outer
   * families (ESP, rfc4106(gcm(aes)), XFRM netlink). Call once at start, before publishing keys.
   * @throws SealnetError `KERNEL_FEATURE_MISSING` with a sentence naming the missing feature.
   */
  checkKernel(families: readonly (4 | 6)[]): Promise<void>;
  /**
   * Makes the owned XFRM objects match `desired`. Reads the kernel first, changes only what
   * differs; per peer: inbound SAs, outbound SA, inbound/forward policies, outbound policies (add
   * before delete; an outbound state replaced in place is covered by block guards). A failing
   * peer is rolled back if it was new and reported; other peers proceed. Owned objects not
   * desired are deleted only with `prune` (after the node store synced). Idempotent.
   */
  apply(desired: DesiredIpsec, opts: { readonly prune: boolean }): Promise<IpsecApplyResult>;
  /** Owned states (keys withheld) and policies. */
  observe(): Promise<ObservedIpsec>;
  /**
   * The kernel's evidence for one planned pair (pure, no kernel access): its outbound SA, every
   * planned inbound SA and the pair's policies, matched in `observed`, with one sentence per
   * missing or wrong object. Status and audit read IPsec evidence only through this.
   */
  pairEvidence(desired: DesiredIpsec, peer: DesiredIpsecPeer, observed: ObservedIpsec): PairEvidence;
}
