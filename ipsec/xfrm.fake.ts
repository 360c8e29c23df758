/**
 * A fake XFRM for unit tests that behaves like the kernel where the driver depends on it
 *: states are keyed by (destination, SPI, mark) and refused with EEXIST when
 * present; policies are keyed by (direction, selector, mark) — whatever their priority — with
 * NEWPOLICY refused by EEXIST and UPDPOLICY replacing atomically; deletes of absent objects
 * report "absent"; ESN without a replay window is EINVAL; a kernel without ESP or GCM fails the
 * way XfrmClient reports it. It also answers where an outbound packet would go (policy lookup by
 * priority and mark, then the state the template selects), so tests can assert after every
 * single mutation that a pair never sent plaintext and, during a rotation, never dropped.
 *
 * It rejects what the agent must never do — touch a state or policy sealnet does not own, or
 * create one that would not count as its own — by throwing a plain Error, so a test fails
 * loudly. Nothing here proves anything about the real kernel.
 */
import { canonicalIP, cidrContains, parseCidr } from '../common/ip.js';
import { SealnetError } from '../common/errors.js';
import { isOwnedPolicy, isOwnedState, policyKey, stateKey } from './objects.js';
import type { XfrmOps } from '../tunnels/ports/ipsec.js';
import type {
  XfrmMark,
  XfrmPolicy,
  XfrmPolicyId,
  XfrmPolicySpec,
  XfrmState,
  XfrmStateId,
  XfrmStateSpec,
} from '../tunnels/ports/xfrm-types.js';
import { AEAD_RFC4106 } from '../tunnels/ports/xfrm-types.js';
import { NO_GCM_SENTENCE, noEspSentence, XfrmError } from './xfrm-errors.js';
import { familyOf } from './xfrm-msg.js';

/** What the fake kernel can do. */
export type FakeEsp = 'supported' | 'no-esp' | 'no-gcm';

/** Operations whose next calls can be made to fail. */
export type FakeXfrmOp =
  'addState' | 'deleteState' | 'addPolicy' | 'updatePolicy' | 'deletePolicy' | 'dumpStates' | 'dumpPolicies';

/** Where an outbound packet goes. */
export type OutboundVerdict =
  | { readonly kind: 'plaintext' }
  | { readonly kind: 'blocked' }
  | { readonly kind: 'no-state' }
  | { readonly kind: 'esp'; readonly spi: number };

const ERRNO = { ENOENT: 2, ESRCH: 3, EEXIST: 17, EINVAL: 22, EIO: 5 } as const;

function kernelError(errno: keyof typeof ERRNO, what: string): XfrmError {
  return new XfrmError({ code: 'NETLINK_FAILED', message: `failed to ${what}: ${errno}`, errno: ERRNO[errno] });
}

function markMatches(mark: XfrmMark | undefined, packetMark: number): boolean {
  const v = (mark?.value ?? 0) >>> 0;
  const m = (mark?.mask ?? 0) >>> 0;
  return (packetMark & m) >>> 0 === v;
}

function copyState(s: XfrmState): XfrmState {
  return { ...s, aead: s.aead === undefined ? undefined : { ...s.aead, key: Uint8Array.from(s.aead.key) } };
}

/** In-memory XFRM tables. Implements {@link XfrmOps}. */
export class FakeXfrm implements XfrmOps {
  /** Every mutation, in order: `{op, target}`. */
  readonly journal: { readonly op: string; readonly target: string }[] = [];
  /** Called after every successful mutation (for invariants that must hold at every step). */
  onMutation: (() => void) | undefined;

  readonly #esp: FakeEsp;
  readonly #states = new Map<string, XfrmState>();
  readonly #policies = new Map<string, XfrmPolicy>();
  readonly #failures = new Map<FakeXfrmOp, { remaining: number; errno: keyof typeof ERRNO }>();
  #clock = 1_700_000_000n;
  #nextIndex = 8;

  constructor(opts: { esp?: FakeEsp } = {}) {
    this.#esp = opts.esp ?? 'supported';
  }

  /** Makes the next `n` calls of `op` fail with `errno`. */
  failNext(op: FakeXfrmOp, opts: { n?: number; errno?: keyof typeof ERRNO } = {}): void {
    this.#failures.set(op, { remaining: opts.n ?? 1, errno: opts.errno ?? 'EIO' });
  }

  #check(op: FakeXfrmOp, what: string): void {
    const f = this.#failures.get(op);
    if (f === undefined || f.remaining <= 0) return;
    f.remaining--;
    throw kernelError(f.errno, `${what} (injected)`);
  }

  #mutated(op: string, target: string): void {
    this.#clock++;
    this.journal.push({ op, target });
    this.onMutation?.();
  }

  async dumpStates(): Promise<XfrmState[]> {
    this.#check('dumpStates', 'dump states');
    return [...this.#states.values()].map(copyState);
  }

  async addState(spec: XfrmStateSpec): Promise<void> {
    const what = `add state spi ${spec.spi} to ${spec.dst}`;
    const family = familyOf(spec.dst) ?? 4;
    if (this.#esp === 'no-esp') throw new SealnetError('KERNEL_FEATURE_MISSING', noEspSentence(family));
    if (this.#esp === 'no-gcm') throw new SealnetError('KERNEL_FEATURE_MISSING', NO_GCM_SENTENCE);
    if (!isOwnedState({ proto: 50, spi: spec.spi, reqid: spec.reqid })) {
      throw new Error(`FakeXfrm: the agent added a state it would not own (spi ${spec.spi}, reqid ${spec.reqid})`);
    }
    this.#check('addState', what);
    if (spec.aead.name !== AEAD_RFC4106 || spec.aead.key.length !== spec.aead.keyBits / 8 + 4)
      throw kernelError('EINVAL', what);
    if (spec.esn && spec.replayWindow === 0) throw kernelError('EINVAL', what);
    const key = stateKey(spec.dst, spec.spi);
    if (this.#states.has(key)) throw kernelError('EEXIST', what);
    this.#states.set(key, {
      src: canonicalIP(spec.src),
      dst: canonicalIP(spec.dst),
      spi: spec.spi,
      proto: 50,
      family,
      mode: spec.mode,
      reqid: spec.reqid,
      flags: spec.esn ? 128 : 0,
      extraFlags: spec.extraFlags ?? 0,
      esn: spec.esn,
      replayWindow: spec.replayWindow,
      aead: { name: spec.aead.name, icvBits: spec.aead.icvBits, key: Uint8Array.from(spec.aead.key) },
      otherAlgorithms: [],
      mark: spec.mark,
      outputMark: spec.outputMark,
      selector: family === 4 ? { src: '0.0.0.0/0', dst: '0.0.0.0/0' } : { src: '::/0', dst: '::/0' },
      lifetime: {},
      current: { bytes: 0n, packets: 0n, addTime: this.#clock, useTime: 0n },
      stats: { replayWindow: 0, replay: 0, integrityFailed: 0 },
      sequence: { outbound: 0n, inbound: 0n },
      lastUsed: undefined,
    });
    this.#mutated('add-state', key);
  }

  async deleteState(id: XfrmStateId): Promise<boolean> {
    const key = stateKey(id.dst, id.spi);
    const s = this.#states.get(key);
    if (s !== undefined && !isOwnedState(s))
      throw new Error(`FakeXfrm: the agent deleted a state it does not own (${key})`);
    this.#check('deleteState', `delete state ${key}`);
    if (s === undefined) return false;
    this.#states.delete(key);
    this.#mutated('delete-state', key);
    return true;
  }

  async dumpPolicies(): Promise<XfrmPolicy[]> {
    this.#check('dumpPolicies', 'dump policies');
    return [...this.#policies.values()].map((p) => ({ ...p }));
  }

  #build(spec: XfrmPolicySpec, index: number): XfrmPolicy {
    if (spec.action === 'allow' && spec.templates.length === 0)
      throw new Error('FakeXfrm: an allow policy without templates');
    if (spec.action === 'block' && spec.templates.length > 0)
      throw new Error('FakeXfrm: a block policy with templates');
    if (
      parseCidr(spec.selector.src, { hostBits: 'clear' })?.family !==
      parseCidr(spec.selector.dst, { hostBits: 'clear' })?.family
    )
      throw kernelError('EINVAL', 'add policy');
    const p: XfrmPolicy = {
      ...spec,
      templates: spec.templates.map((t) => ({
        ...t,
        src: canonicalIP(t.src),
        dst: canonicalIP(t.dst),
        optional: t.optional ?? false,
      })),
      lifetime: Object.fromEntries(Object.entries(spec.lifetime ?? {}).filter(([, v]) => v !== undefined)),
      index,
      type: 0,
      ifId: 0,
      current: { bytes: 0n, packets: 0n, addTime: this.#clock, useTime: 0n },
      templateProtos: spec.templates.map(() => 50),
    };
    if (!isOwnedPolicy(p))
      throw new Error(`FakeXfrm: the agent installed a policy it would not own (${policyKey(spec)})`);
    return p;
  }

  async addPolicy(spec: XfrmPolicySpec): Promise<void> {
    const key = policyKey(spec);
    const built = this.#build(spec, this.#nextIndex);
    this.#check('addPolicy', `add policy ${key}`);
    if (this.#policies.has(key)) throw kernelError('EEXIST', `add policy ${key}`);
    this.#nextIndex += 8;
    this.#policies.set(key, built);
    this.#mutated('add-policy', key);
  }

  async updatePolicy(spec: XfrmPolicySpec): Promise<void> {
    const key = policyKey(spec);
    const old = this.#policies.get(key);
    if (old !== undefined && !isOwnedPolicy(old))
      throw new Error(`FakeXfrm: the agent replaced a policy it does not own (${key})`);
    const built = this.#build(spec, old?.index ?? this.#nextIndex);
    this.#check('updatePolicy', `update policy ${key}`);
    if (old === undefined) this.#nextIndex += 8;
    this.#policies.set(key, built);
    this.#mutated('update-policy', key);
  }

  async deletePolicy(id: XfrmPolicyId): Promise<boolean> {
    const key = policyKey(id);
    const p = this.#policies.get(key);
    if (p !== undefined && !isOwnedPolicy(p))
      throw new Error(`FakeXfrm: the agent deleted a policy it does not own (${key})`);
    this.#check('deletePolicy', `delete policy ${key}`);
    if (p === undefined) return false;
    this.#policies.delete(key);
    this.#mutated('delete-policy', key);
    return true;
  }

  async checkEsp(family: 4 | 6): Promise<void> {
    if (this.#esp === 'no-esp') throw new SealnetError('KERNEL_FEATURE_MISSING', noEspSentence(family));
    if (this.#esp === 'no-gcm') throw new SealnetError('KERNEL_FEATURE_MISSING', NO_GCM_SENTENCE);
  }

  // --- test helpers (not part of XfrmOps) -----------------------------------------------------

  /** Installs a state as another tool would (no ownership checks, no journal). */
  putForeignState(state: XfrmState): void {
    this.#states.set(stateKey(state.dst, state.spi), copyState(state));
  }

  /** Installs a policy as another tool would (or a leftover of sealnet's own, e.g. a guard). */
  putForeignPolicy(p: XfrmPolicy): void {
    this.#policies.set(policyKey(p), { ...p });
  }

  /** Current states (copies). */
  states(): XfrmState[] {
    return [...this.#states.values()].map(copyState);
  }

  /** Current policies (copies). */
  policies(): XfrmPolicy[] {
    return [...this.#policies.values()].map((p) => ({ ...p }));
  }

  /** Lets time pass beyond every hard add expiry: such policies disappear, as in the kernel. */
  expirePolicies(): void {
    for (const [k, p] of this.#policies) if (p.lifetime.hardAddSeconds !== undefined) this.#policies.delete(k);
  }

  /**
   * Where a packet from `src` to `dst` with skb mark `mark` goes: the out policy with the lowest
   * priority whose selector and mark match, then (allow) the newest state its template selects.
   */
  outboundVerdict(src: string, dst: string, mark = 0): OutboundVerdict {
    let best: XfrmPolicy | undefined;
    for (const p of this.#policies.values()) {
      if (p.dir !== 'out' || !markMatches(p.mark, mark)) continue;
      const s = parseCidr(p.selector.src, { hostBits: 'clear' });
      const d = parseCidr(p.selector.dst, { hostBits: 'clear' });
      if (s === undefined || d === undefined || !cidrContains(s, src) || !cidrContains(d, dst)) continue;
      if (best === undefined || p.priority < best.priority) best = p;
    }
    if (best === undefined) return { kind: 'plaintext' };
    if (best.action === 'block') return { kind: 'blocked' };
    const t = best.templates[0];
    if (t === undefined) return { kind: 'plaintext' };
    let chosen: XfrmState | undefined;
    for (const s of this.#states.values()) {
      if (s.dst !== canonicalIP(t.dst) || s.src !== canonicalIP(t.src) || s.reqid !== t.reqid || s.mode !== t.mode)
        continue;
      if (t.spi !== 0 && s.spi !== t.spi) continue;
      if (chosen === undefined || s.current.addTime > chosen.current.addTime) chosen = s;
    }
    return chosen === undefined ? { kind: 'no-state' } : { kind: 'esp', spi: chosen.spi };
  }

  /**
   * Counts traffic on a state as the kernel would (lifetime current bytes/packets; inbound ICV
   * failures). Throws when there is no such state.
   */
  countTraffic(dst: string, spi: number, t: { bytes?: number; packets?: number; integrityFailed?: number }): void {
    const key = stateKey(dst, spi);
    const s = this.#states.get(key);
    if (s === undefined) throw new Error(`FakeXfrm: no state ${key} to count traffic on`);
    this.#states.set(key, {
      ...s,
      current: {
        ...s.current,
        bytes: s.current.bytes + BigInt(t.bytes ?? 0),
        packets: s.current.packets + BigInt(t.packets ?? 0),
        useTime: s.current.useTime === 0n ? this.#clock : s.current.useTime,
      },
      stats: { ...s.stats, integrityFailed: s.stats.integrityFailed + (t.integrityFailed ?? 0) },
    });
  }

  /** True if an inbound ESP packet to `dst` with `spi` finds a state. */
  acceptsInbound(dst: string, spi: number): boolean {
    return this.#states.has(stateKey(dst, spi));
  }
}
