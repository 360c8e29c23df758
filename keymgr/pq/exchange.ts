/**
 * The per-pair post-quantum exchange, pure: no I/O, no clock reads, no randomness, no crypto.
 * The agent feeds it what it observed (the pair's keys, messages from the peer agent, the
 * clock) and carries out the effects it returns (encapsulate, decapsulate, install the PSK,
 * send a message). One state per (this node, peer) pair.
 *
 *                 tick: peer key usable, no secret / secret due / keys changed
 *   initiator:  idle ───────────────► sent ──── ack, tag verifies ────► confirmed
 *                 ▲                    │  ╲─── ack, tag fails ──┐           │
 *                 └── no ack in retry ─┘      (drop, retry later)┘           │ renewMs passed or
 *                                                                            ▼ a key rotated
 *                                      sent (the confirmed secret stays in use meanwhile)
 *
 *   responder:  idle/confirmed ── ciphertext for OUR CURRENT key, same view of the pair's keys,
 *                                 renewal id above the last one accepted ──► confirmed
 *                                 (install the PSK first, then acknowledge)
 *
 * Renewal ids come from the initiator's clock (at least last + 1), so they keep growing across
 * an initiator restart and the responder can refuse a replayed or reordered old ciphertext,
 * which would otherwise switch the pair back to an older key. The initiator installs a new PSK
 * only after the responder's confirmation tag verified: a tampered ciphertext (or a different
 * view of the keys) leaves the old PSK in place on the initiator.
 *
 * `postQuantum` modes decide readiness ({@link pqReadiness}):
 *   off        the machine is idle, messages are refused, the pair is classical and ready.
 *   preferred  ready without a secret (classical until the first exchange); status says which.
 *   required   ready only with a confirmed secret younger than `maxAgeMs`: a peer that stops
 *              answering renewals is dropped once its secret expires, never run classical-only.
 */
import { createHash } from 'node:crypto';
import { SealnetError } from '../../common/errors.js';

/** The `postQuantum.mode` setting. */
export type PqMode = 'off' | 'preferred' | 'required';
/** This node's role for one pair (kdf.ts `pqInitiator` decides). */
export type PqRole = 'initiator' | 'responder';
/** The phase a state is in, derived from it (for status). */
export type PqPhase = 'idle' | 'sent' | 'confirmed';

/** Timers of the exchange, in milliseconds. */
export interface PqSettings {
  readonly mode: PqMode;
  /** A confirmed secret this old is renewed. */
  readonly renewMs: number;
  /** An unacknowledged exchange is abandoned after this long; no two sends closer than this. */
  readonly retryMs: number;
  /** A secret this old no longer makes the pair ready in `required` mode. */
  readonly maxAgeMs: number;
}

/** One side's keys as both nodes see them (from annotations and the tunnel's own keys). */
export interface PqPairSide {
  readonly name: string;
  /** Canonical base64 X25519 public key of the tunnel. */
  readonly x25519: string;
  /** mlkem.ts `encapsulationKeyId` of the side's published key. */
  readonly kemKeyId: string;
}

/** What this node knows about the pair now. */
export interface PqPairView {
  readonly role: PqRole;
  /** Id of our current encapsulation key (the only one we decapsulate for). */
  readonly selfKemKeyId: string;
  /** Id of the peer's current encapsulation key; undefined when it publishes none or a bad one. */
  readonly peerKemKeyId: string | undefined;
  /** Why the peer has no usable key (the decoder's error), for readiness reasons. */
  readonly peerKemProblem?: string;
  /** {@link pairBinding} of the pair's current keys; undefined when the peer has no usable key. */
  readonly binding: string | undefined;
}

/** A secret both sides hold (installed as the peer's PSK). */
export interface PqSecretInfo {
  readonly renewalId: number;
  readonly establishedAt: number;
  /** The {@link pairBinding} it was derived for. */
  readonly binding: string;
}

/** The state of one pair's exchange. */
export interface PqPairState {
  /** The secret in use, if any. */
  readonly current: PqSecretInfo | undefined;
  /** Initiator: the exchange in flight (its secret is derived but not installed). */
  readonly pending: { readonly renewalId: number; readonly sentAt: number; readonly binding: string } | undefined;
  /** Initiator: last renewal id sent. Responder: last accepted for `lastForKemKeyId`. */
  readonly lastRenewalId: number | undefined;
  /** Initiator: when it last sent (the retry rate limit). */
  readonly lastSentAt: number | undefined;
  /** Responder: our key id `lastRenewalId` refers to (ids start over with a new key). */
  readonly lastForKemKeyId: string | undefined;
}

/** Something that happened to the pair. */
export type PqEvent =
  | { readonly type: 'tick' }
  /** Responder: the initiator's ciphertext arrived through the tunnel. */
  | { readonly type: 'ciphertext'; readonly renewalId: number; readonly forKemKeyId: string; readonly binding: string }
  /** Initiator: the responder's acknowledgement arrived; `tagOk` = kdf.ts `verifyConfirmationTag`. */
  | { readonly type: 'ack'; readonly renewalId: number; readonly tagOk: boolean };

/** What the agent must do, in order. */
export type PqEffect =
  /** Initiator: encapsulate to the peer's key, derive and keep the secret, send the ciphertext. */
  | { readonly type: 'send-ciphertext'; readonly renewalId: number }
  /** Responder: decapsulate the ciphertext just received and derive the secret. */
  | { readonly type: 'accept-ciphertext'; readonly renewalId: number }
  /** Both: install the secret of `renewalId` as the peer's PSK (replacing the previous one). */
  | { readonly type: 'install-psk'; readonly renewalId: number }
  /** Responder: send the confirmation tag of `renewalId`. */
  | { readonly type: 'send-ack'; readonly renewalId: number }
  /** Initiator: wipe the derived, never installed secret of `renewalId`. */
  | { readonly type: 'drop-pending'; readonly renewalId: number; readonly reason: string }
  /** A message was refused (count it, log the reason; nothing else changes). */
  | { readonly type: 'refuse'; readonly renewalId: number; readonly reason: string };

/** Result of {@link stepPair}. */
export interface PqStep {
  readonly state: PqPairState;
  readonly effects: readonly PqEffect[];
}

/** Whether a pair may carry traffic, and what protects it. */
export interface PqReadiness {
  readonly ready: boolean;
  /** `hybrid`: a post-quantum PSK is installed; `classical`: X25519 only; `none`: dropped. */
  readonly protection: 'hybrid' | 'classical' | 'none';
  /** Age of the secret in use, when there is one. */
  readonly secretAgeMs?: number;
  /** Why the pair is not (or not fully) protected. */
  readonly reason?: string;
}

/** A pair that has exchanged nothing yet. */
export const INITIAL_PQ_STATE: PqPairState = {
  current: undefined,
  pending: undefined,
  lastRenewalId: undefined,
  lastSentAt: undefined,
  lastForKemKeyId: undefined,
};

/** Bounds of `postQuantum.renewMinutes` (validated in the agent config). */
export const RENEW_MINUTES_MIN = 1;
export const RENEW_MINUTES_MAX = 1440;
/** Default `postQuantum.renewMinutes`. */
export const RENEW_MINUTES_DEFAULT = 10;

/**
 * Timers for a mode and renewal period: retry after a quarter period (at most 30 s), and a
 * secret stays valid for two periods, so one failed renewal round (a peer agent restarting)
 * does not drop a `required` pair, while a peer that stopped answering is dropped.
 * @throws SealnetError `CONFIG_INVALID` for a period outside 1..1440 minutes.
 */
export function pqSettings(mode: PqMode, renewMinutes: number): PqSettings {
  if (!Number.isInteger(renewMinutes) || renewMinutes < RENEW_MINUTES_MIN || renewMinutes > RENEW_MINUTES_MAX) {
    throw new SealnetError(
      'CONFIG_INVALID',
      `postQuantum.renewMinutes must be an integer from ${RENEW_MINUTES_MIN} to ${RENEW_MINUTES_MAX}, got ${String(renewMinutes)}`,
    );
  }
  const renewMs = renewMinutes * 60_000;
  return { mode, renewMs, retryMs: Math.min(30_000, renewMs / 4), maxAgeMs: 2 * renewMs };
}

/**
 * The digest of the pair's current keys in role order: any key rotation on either side changes
 * it, which starts a renewal; the responder refuses a ciphertext made for a different one.
 */
export function pairBinding(initiator: PqPairSide, responder: PqPairSide): string {
  const h = createHash('sha256').update('sealnet pq-binding v1');
  for (const s of [initiator, responder]) {
    for (const f of [s.name, s.x25519, s.kemKeyId]) h.update(`\0${f.length}:${f}`);
  }
  return h.digest('hex');
}

/** The phase of a state, for status. */
export function pqPhase(s: PqPairState): PqPhase {
  if (s.pending !== undefined) return 'sent';
  return s.current !== undefined ? 'confirmed' : 'idle';
}

/** Advances one pair's exchange by one event at time `now` (ms). */
export function stepPair(
  state: PqPairState,
  event: PqEvent,
  ctx: { readonly view: PqPairView; readonly settings: PqSettings; readonly now: number },
): PqStep {
  const { view, settings } = ctx;
  if (settings.mode === 'off') {
    return event.type === 'tick' ? { state, effects: [] } : refuse(state, event.renewalId, 'post-quantum is off');
  }
  switch (event.type) {
    case 'tick':
      return view.role === 'initiator' ? initiatorTick(state, ctx) : { state, effects: [] };
    case 'ack':
      return onAck(state, event, ctx.now, view.role);
    case 'ciphertext':
      return onCiphertext(state, event, ctx.now, view);
  }
}

function initiatorTick(
  state: PqPairState,
  ctx: { readonly view: PqPairView; readonly settings: PqSettings; readonly now: number },
): PqStep {
  const { view, settings, now } = ctx;
  const effects: PqEffect[] = [];
  let s = state;
  const drop = (reason: string): void => {
    effects.push({ type: 'drop-pending', renewalId: s.pending!.renewalId, reason });
    s = { ...s, pending: undefined };
  };
  if (view.peerKemKeyId === undefined || view.binding === undefined) {
    if (s.pending) drop('the peer publishes no usable ML-KEM encapsulation key');
    return { state: s, effects };
  }
  if (s.pending && s.pending.binding !== view.binding) drop('a key of the pair changed during the exchange');
  if (s.pending && now - s.pending.sentAt >= settings.retryMs) {
    drop(`no acknowledgement within ${settings.retryMs / 1000} s`);
  }
  const due =
    s.current === undefined || s.current.binding !== view.binding || now - s.current.establishedAt >= settings.renewMs;
  const rateLimited = s.lastSentAt !== undefined && now - s.lastSentAt < settings.retryMs;
  if (!due || s.pending || rateLimited) return { state: s, effects };
  const renewalId = Math.max((s.lastRenewalId ?? -1) + 1, now);
  effects.push({ type: 'send-ciphertext', renewalId });
  s = { ...s, pending: { renewalId, sentAt: now, binding: view.binding }, lastRenewalId: renewalId, lastSentAt: now };
  return { state: s, effects };
}

function onAck(state: PqPairState, event: { renewalId: number; tagOk: boolean }, now: number, role: PqRole): PqStep {
  if (role !== 'initiator') return refuse(state, event.renewalId, 'acknowledgement received by the responder');
  const p = state.pending;
  if (p === undefined || p.renewalId !== event.renewalId) {
    return refuse(state, event.renewalId, `acknowledgement for renewal ${event.renewalId}, which is not in flight`);
  }
  if (!event.tagOk) {
    return {
      state: { ...state, pending: undefined },
      effects: [
        {
          type: 'drop-pending',
          renewalId: p.renewalId,
          reason: 'the confirmation tag did not verify (the peer derived a different secret)',
        },
      ],
    };
  }
  return {
    state: {
      ...state,
      pending: undefined,
      current: { renewalId: p.renewalId, establishedAt: now, binding: p.binding },
    },
    effects: [{ type: 'install-psk', renewalId: p.renewalId }],
  };
}

function onCiphertext(
  state: PqPairState,
  event: { renewalId: number; forKemKeyId: string; binding: string },
  now: number,
  view: PqPairView,
): PqStep {
  const id = event.renewalId;
  if (view.role !== 'responder') return refuse(state, id, 'ciphertext received by the initiator');
  if (!Number.isSafeInteger(id) || id < 0) return refuse(state, 0, 'renewal id is not a non-negative integer');
  if (event.forKemKeyId !== view.selfKemKeyId) {
    return refuse(state, id, 'ciphertext for an encapsulation key that is not our current one');
  }
  if (view.binding === undefined || event.binding !== view.binding) {
    return refuse(state, id, "the peer's view of the pair's keys differs from ours (rotation in progress)");
  }
  const last = state.lastForKemKeyId === view.selfKemKeyId ? state.lastRenewalId : undefined;
  if (last !== undefined && id <= last) {
    return refuse(state, id, `renewal ${id} is not above the last accepted ${last} (replayed or reordered)`);
  }
  return {
    state: {
      ...state,
      current: { renewalId: id, establishedAt: now, binding: view.binding },
      lastRenewalId: id,
      lastForKemKeyId: view.selfKemKeyId,
    },
    effects: [
      { type: 'accept-ciphertext', renewalId: id },
      { type: 'install-psk', renewalId: id },
      { type: 'send-ack', renewalId: id },
    ],
  };
}

function refuse(state: PqPairState, renewalId: number, reason: string): PqStep {
  return { state, effects: [{ type: 'refuse', renewalId, reason }] };
}

/**
 * Whether the pair may carry traffic under `settings.mode` (see the module comment), and what
 * protects it. A secret derived for older keys keeps the pair ready until it expires: the
 * renewal it triggered replaces it make-before-break.
 */
export function pqReadiness(state: PqPairState, view: PqPairView, settings: PqSettings, now: number): PqReadiness {
  if (settings.mode === 'off') return { ready: true, protection: 'classical' };
  const cur = state.current;
  const age = cur === undefined ? undefined : Math.max(0, now - cur.establishedAt);
  if (cur !== undefined && age! < settings.maxAgeMs) return { ready: true, protection: 'hybrid', secretAgeMs: age! };
  const reason =
    view.peerKemKeyId === undefined
      ? `the peer publishes no usable ML-KEM encapsulation key${view.peerKemProblem ? `: ${view.peerKemProblem}` : ''}`
      : cur !== undefined
        ? `the post-quantum secret is ${Math.floor(age! / 1000)} s old, past its ${settings.maxAgeMs / 1000} s limit (renewals unanswered)`
        : 'no post-quantum secret confirmed yet';
  if (settings.mode === 'required') return { ready: false, protection: 'none', reason };
  // preferred: an expired PSK stays installed (both ends still share it), classical otherwise.
  return cur !== undefined
    ? { ready: true, protection: 'hybrid', secretAgeMs: age!, reason }
    : { ready: true, protection: 'classical', reason };
}
