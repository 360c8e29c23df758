/**
 * The XFRM objects of a desired IPsec state, and how sealnet recognises its own. Pure.
 *
 * Per peer P with local pod CIDR L and remote pod CIDR R (same family), tunnel mode between the
 * two underlay addresses, all with reqid XFRM_REQID:
 *
 *   out  L -> R  allow, template local->remote pinned to P's outbound SPI   (mark: policyMark)
 *   in   R -> L  allow, template remote->local, any SPI                     (local delivery)
 *   fwd  R -> L  allow, template remote->local, any SPI                     (to pods)
 *
 * The in/fwd selectors mirror the peer's out selector exactly: the kernel drops decapsulated
 * tunnel traffic that no in/fwd policy covers (XfrmInNoPols), and with a required template it
 * drops plaintext that claims a peer's pod source (XfrmInTmplMismatch).
 *
 * Ownership: a state is sealnet's when it is ESP with an SPI in [XFRM_SPI_MIN, XFRM_SPI_MAX]
 * and reqid XFRM_REQID. A policy is sealnet's when it is a main-type policy without if_id at
 * XFRM_POLICY_PRIORITY with one ESP template of reqid XFRM_REQID, or a guard: an outbound
 * block policy at XFRM_GUARD_PRIORITY expiring {@link GUARD_LIFETIME_SECONDS} after it was added.
 */
import { canonicalCidr, formatIP, parseCidr, parseIP, canonicalIP } from '../common/ip.js';
import { SealnetError } from '../common/errors.js';
import {
  XFRM_GUARD_PRIORITY,
  XFRM_OUTPUT_MARK,
  XFRM_OUTPUT_MARK_MASK,
  XFRM_POLICY_PRIORITY,
  XFRM_REQID,
  XFRM_SPI_MAX,
  XFRM_SPI_MIN,
} from '../common/constants.js';
import type { DesiredIpsec, DesiredIpsecPeer, DesiredSa } from '../tunnels/ports/ipsec.js';
import type {
  XfrmMark,
  XfrmPolicy,
  XfrmPolicyId,
  XfrmPolicySpec,
  XfrmState,
  XfrmStateSpec,
} from '../tunnels/ports/xfrm-types.js';
import { AEAD_ICV_BITS, AEAD_RFC4106 } from '../tunnels/ports/xfrm-types.js';
import { K } from './xfrm-layout.js';
import { spiHex } from '../tunnels/ports/xfrm-types.js';

/**
 * Guards expire on their own after this long (hard add expiry): a guard left behind by a
 * crashed agent never blocks a pair for more than a minute.
 */
export const GUARD_LIFETIME_SECONDS = 60n;

/** True for a state sealnet owns. */
export function isOwnedState(s: Pick<XfrmState, 'proto' | 'spi' | 'reqid'>): boolean {
  return s.proto === K.IPPROTO_ESP && s.spi >= XFRM_SPI_MIN && s.spi <= XFRM_SPI_MAX && s.reqid === XFRM_REQID;
}

/** True for a guard policy sealnet put in place. */
export function isGuard(p: XfrmPolicy): boolean {
  return (
    p.type === K.XFRM_POLICY_TYPE_MAIN &&
    p.ifId === 0 &&
    p.dir === 'out' &&
    p.action === 'block' &&
    p.priority === XFRM_GUARD_PRIORITY &&
    p.templates.length === 0 &&
    p.lifetime.hardAddSeconds === GUARD_LIFETIME_SECONDS
  );
}

/** True for a policy sealnet owns (a pair policy or a guard). */
export function isOwnedPolicy(p: XfrmPolicy): boolean {
  if (isGuard(p)) return true;
  return (
    p.type === K.XFRM_POLICY_TYPE_MAIN &&
    p.ifId === 0 &&
    p.action === 'allow' &&
    p.priority === XFRM_POLICY_PRIORITY &&
    p.templates.length === 1 &&
    p.templates[0]?.reqid === XFRM_REQID &&
    p.templateProtos[0] === K.IPPROTO_ESP
  );
}

/** A mark of all zeros and no mark are the same to the kernel. */
function markText(m: XfrmMark | undefined): string {
  return `${(m?.value ?? 0) >>> 0}/${(m?.mask ?? 0) >>> 0}`;
}

/** Identity of a state in the kernel's table (sealnet never sets state marks). */
export function stateKey(dst: string, spi: number): string {
  return `${canonicalIP(dst)}|${spi >>> 0}`;
}

/** Identity of a policy in the kernel's table: direction, exact selector, mark. */
export function policyKey(id: XfrmPolicyId): string {
  const s = id.selector;
  return [
    id.dir,
    canonicalCidr(s.src) ?? s.src,
    canonicalCidr(s.dst) ?? s.dst,
    s.proto ?? 0,
    s.sport ?? 0,
    s.dport ?? 0,
    s.ifindex ?? 0,
    markText(id.mark),
  ].join('|');
}

/** One state sealnet wants. */
export interface WantedState {
  readonly node: string;
  readonly direction: 'in' | 'out';
  readonly sa: DesiredSa;
  /** Outer addresses. */
  readonly src: string;
  readonly dst: string;
}

/** Readable name of a wanted or observed state for logs and errors. */
export function stateLabel(s: { direction?: 'in' | 'out'; spi: number; src: string; dst: string }): string {
  return `${s.direction === undefined ? '' : `${s.direction} `}spi ${spiHex(s.spi)} ${s.src}->${s.dst}`;
}

/** Readable name of a policy. */
export function policyLabel(p: XfrmPolicyId & { action?: string }): string {
  const mark = p.mark === undefined || (p.mark.value === 0 && p.mark.mask === 0) ? '' : ` mark ${markText(p.mark)}`;
  return `${p.action === 'block' ? 'guard ' : ''}${p.dir} ${p.selector.src}->${p.selector.dst}${mark}`;
}

/** The states of one peer: inbound ones first (sorted by SPI), then the outbound one. */
export function peerStates(peer: DesiredIpsecPeer): WantedState[] {
  return [
    ...peer.inbound.map((sa) => ({
      node: peer.node,
      direction: 'in' as const,
      sa,
      src: peer.remoteAddress,
      dst: peer.localAddress,
    })),
    { node: peer.node, direction: 'out', sa: peer.outbound, src: peer.localAddress, dst: peer.remoteAddress },
  ];
}

/** The policies of one peer: in/fwd (accepting) and out (steering into the outbound SA). */
export function peerPolicies(
  peer: DesiredIpsecPeer,
  desired: DesiredIpsec,
): { accept: XfrmPolicySpec[]; out: XfrmPolicySpec[] } {
  const accept: XfrmPolicySpec[] = [];
  const out: XfrmPolicySpec[] = [];
  for (const r of peer.remoteCIDRs) {
    for (const l of peer.localCIDRs) {
      if (parseCidr(r, { hostBits: 'clear' })?.family !== parseCidr(l, { hostBits: 'clear' })?.family) continue;
      const fromPeer = {
        src: peer.remoteAddress,
        dst: peer.localAddress,
        spi: 0,
        reqid: XFRM_REQID,
        mode: 'tunnel' as const,
      };
      for (const dir of ['in', 'fwd'] as const) {
        accept.push({
          selector: { src: r, dst: l },
          dir,
          action: 'allow',
          priority: XFRM_POLICY_PRIORITY,
          templates: [fromPeer],
        });
      }
      out.push({
        selector: { src: l, dst: r },
        dir: 'out',
        action: 'allow',
        priority: XFRM_POLICY_PRIORITY,
        templates: [
          {
            src: peer.localAddress,
            dst: peer.remoteAddress,
            spi: peer.outbound.spi,
            reqid: XFRM_REQID,
            mode: 'tunnel',
          },
        ],
        ...(desired.policyMark !== undefined ? { mark: desired.policyMark } : {}),
      });
    }
  }
  return { accept, out };
}

/**
 * Block policies that together cover exactly the traffic of one outbound policy. The kernel
 * refuses a second policy with the same selector, direction and mark (whatever its priority),
 * so the guard splits the policy's mark on its lowest free bit: (mark, mask|bit) and
 * (mark|bit, mask|bit) are two distinct policies whose union is the original's traffic.
 */
export function guardPolicies(out: XfrmPolicySpec): XfrmPolicySpec[] {
  const value = (out.mark?.value ?? 0) >>> 0;
  const mask = (out.mark?.mask ?? 0) >>> 0;
  const free = ~mask >>> 0;
  if (free === 0)
    throw new SealnetError('CONFIG_INVALID', 'the policy mark mask uses all 32 bits; guard policies need one free bit');
  const bit = (free & -free) >>> 0;
  return [value, (value | bit) >>> 0].map((v) => ({
    selector: out.selector,
    dir: 'out' as const,
    action: 'block' as const,
    priority: XFRM_GUARD_PRIORITY,
    templates: [],
    mark: { value: v, mask: (mask | bit) >>> 0 },
    lifetime: { hardAddSeconds: GUARD_LIFETIME_SECONDS },
  }));
}

/** Checks a policy mark the driver will use. @throws SealnetError CONFIG_INVALID. */
export function checkPolicyMark(mark: XfrmMark | undefined): void {
  if (mark === undefined) return;
  if ((mark.value & ~mark.mask) !== 0)
    throw new SealnetError(
      'CONFIG_INVALID',
      `policy mark 0x${mark.value.toString(16)} has bits outside its mask 0x${mark.mask.toString(16)}`,
    );
  if (mark.mask >>> 0 === 0xffffffff)
    throw new SealnetError('CONFIG_INVALID', 'the policy mark mask uses all 32 bits; guard policies need one free bit');
}

/** The state to install for a wanted SA with its derived key. */
export function stateSpec(want: WantedState, key: Uint8Array, desired: DesiredIpsec): XfrmStateSpec {
  return {
    src: want.src,
    dst: want.dst,
    spi: want.sa.spi,
    mode: 'tunnel',
    reqid: XFRM_REQID,
    aead: { name: AEAD_RFC4106, keyBits: desired.keyBits, icvBits: AEAD_ICV_BITS, key },
    esn: true,
    replayWindow: desired.replayWindow,
    // Encrypted packets carry sealnet's mark so steering lets them pass (and observe() tells
    // outbound states from inbound ones by it).
    ...(want.direction === 'out' ? { outputMark: { value: XFRM_OUTPUT_MARK, mask: XFRM_OUTPUT_MARK_MASK } } : {}),
  };
}

/** How an installed state compares with the wanted one. */
export type StateComparison = 'equal' | 'differs' | 'equal-key-unverifiable';

/** Compares everything sealnet sets; keys in constant time (`memcmp` from libsodium). */
export function compareState(
  obs: XfrmState,
  spec: XfrmStateSpec,
  memcmp: (a: Uint8Array, b: Uint8Array) => boolean,
): StateComparison {
  const out = spec.outputMark;
  const sameRest =
    canonicalIP(obs.src) === canonicalIP(spec.src) &&
    obs.mode === spec.mode &&
    obs.reqid === spec.reqid &&
    obs.esn === spec.esn &&
    obs.replayWindow === spec.replayWindow &&
    markText(obs.mark) === markText(spec.mark) &&
    markText(obs.outputMark) === markText(out) &&
    obs.aead !== undefined &&
    obs.aead.name === spec.aead.name &&
    obs.aead.icvBits === spec.aead.icvBits &&
    obs.aead.key.length === spec.aead.key.length;
  if (!sameRest || obs.aead === undefined) return 'differs';
  // Under kernel lockdown (confidentiality) dumps carry zeroed keys.
  if (obs.aead.key.every((b) => b === 0)) return 'equal-key-unverifiable';
  return memcmp(obs.aead.key, spec.aead.key) ? 'equal' : 'differs';
}

/** True when an installed policy already is the wanted one (selector, direction and mark being equal). */
export function policyMatches(obs: XfrmPolicy, spec: XfrmPolicySpec): boolean {
  if (obs.action !== spec.action || obs.priority !== spec.priority || obs.templates.length !== spec.templates.length)
    return false;
  if ((obs.lifetime.hardAddSeconds ?? 0n) !== (spec.lifetime?.hardAddSeconds ?? 0n)) return false;
  return spec.templates.every((t, i) => {
    const o = obs.templates[i];
    return (
      o !== undefined &&
      canonicalIP(o.src) === canonicalIP(t.src) &&
      canonicalIP(o.dst) === canonicalIP(t.dst) &&
      o.spi === t.spi &&
      o.reqid === t.reqid &&
      o.mode === t.mode &&
      obs.templateProtos[i] === K.IPPROTO_ESP &&
      !o.optional
    );
  });
}
