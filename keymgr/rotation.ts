/**
 * The key rotation state machine, pure: no I/O, no clock reads, no
 * randomness. The agent feeds it what it observed (its own node's annotations, the peers'
 * reports, the key store, the kernel, the clock) and carries out what it returns.
 *
 * WireGuard rotation, make-before-break, for node A rotating from key K to K':
 *
 *   preparing  K' is generated into the key store's `next` slot.
 *   staging    A brings up a second link (the other slot: `sealwg1` when `sealwg0` carries K,
 *              listen port + 1) holding K' and the same peers, and announces K' and its
 *              endpoint. Each peer B adds K' as an extra peer with no allowed IPs and a
 *              keepalive (so the handshake completes at once) and reports `staged`.
 *   moving     Once every peer staged and shook hands with the new link (or a timeout passed),
 *              A mirrors everything leaving the new link into the old one (tc mirred), routes
 *              every remote prefix into the new link (one atomic route replace / map update
 *              each), then announces `moving`. Each peer moves A's pod CIDRs from K to K' in one
 *              `wg set` (the allowed-IPs trie moves them atomically) and reports `moved`.
 *              The mirror is why no packet is lost: a WireGuard receiver accepts a packet only
 *              from the peer that owns its source address, so before a peer's move only the
 *              copy through the old link is accepted, after it only the original through the
 *              new link; with both in flight, exactly one copy arrives either way. Both links
 *              carry an IPv4 address, so reverse-path filtering accepts what arrives on either.
 *   grace      A publishes K' as its key. Peers that have not moved (offline, slow) keep
 *              working on K through the mirror and the old link; the grace period bounds how
 *              long.
 *   finishing  The mirror is removed, the old link is deleted, K is erased from disk (the
 *              `next` key is promoted over it), and A is idle on the other slot.
 *
 * Timers count from the announcement: the peer timeout of `staging` and `moving` and the grace
 * period start when the first pass of the phase has put its datapath in place and published it
 * (`announcedAt`), not when the machine entered the phase. Peers can only answer what they have
 * seen; a pass that takes longer than the peer timeout (a second wireguard-go link to start on a
 * busy host) must not use the peers' time up before they are told.
 *
 * Crash safety: the agent persists the state before it carries out the effects of a
 * transition, and every effect is idempotent or detectable, so an agent killed at any point
 * resumes where it was. An unknown or unreadable removal time counts as now.
 */
import { createHash } from 'node:crypto';
import { isObject } from '../common/json.js';

/** Which of the two WireGuard links (and listen ports) a key lives on. */
export type LinkSlot = 0 | 1;

/** Phases of a rotation in progress. */
export type RotationPhase = 'preparing' | 'staging' | 'moving' | 'grace' | 'finishing';

/** Why a rotation started. */
export type RotationReason = 'request' | 'max-key-age';

/** What a peer reported about this node's new key. */
export type PeerReport = 'none' | 'staged' | 'moved';

/** A rotation in progress. Times are milliseconds since the Unix epoch (wall clock). */
export interface ActiveRotation {
  /** Request id (from `sealctl keys rotate`) or a generated id for automatic rotations. */
  readonly id: string;
  readonly reason: RotationReason;
  readonly phase: RotationPhase;
  readonly startedAt: number;
  /** When the current phase began (published as the phase's `since`). */
  readonly phaseSince: number;
  /**
   * When this phase was first applied and announced: its datapath in place, its annotations
   * published. The peer timeout and the grace period count from here; undefined: not yet.
   */
  readonly announcedAt: number | undefined;
  /** Epoch the new key gets. */
  readonly nextEpoch: number;
  /** The new public key, known from `staging` on. */
  readonly nextPublicKey: string | undefined;
  /** End of the grace period; undefined counts as now. */
  readonly graceUntil: number | undefined;
  /** Peers that had not moved when the grace period ended (set in `finishing`). */
  readonly lagging: readonly string[];
}

/** The last rotation that completed (for status and `sealctl keys rotate --wait`). */
export interface CompletedRotation {
  readonly id: string;
  readonly reason: RotationReason;
  readonly completedAt: number;
  readonly epoch: number;
  /** Peers that never moved to the new key before the old one was removed. */
  readonly lagging: readonly string[];
}

/** Everything the machine remembers; persisted by the agent after every change. */
export interface RotationState {
  /** Slot of the link that carries the current key. */
  readonly activeSlot: LinkSlot;
  /** Id of the last rotate request that was carried out, so one request runs once. */
  readonly handledRequestId: string | undefined;
  readonly last: CompletedRotation | undefined;
  readonly rotation: ActiveRotation | undefined;
}

/** Tunables, in milliseconds. */
export interface RotationSettings {
  /** How long the old key keeps working after the switch. */
  readonly graceMs: number;
  /** How long to wait for peers to stage or move before going on without them. */
  readonly peerTimeoutMs: number;
  /** Rotate automatically when the key is this old; 0 = never. */
  readonly maxKeyAgeMs: number;
  /** Automatic rotations wait while this many other nodes are rotating. */
  readonly maxConcurrentAuto: number;
  /** Poll interval while waiting for peers (handshakes are not store events). */
  readonly pollMs: number;
}

/** One remote node as far as this node's rotation is concerned. */
export interface PeerFollow {
  readonly name: string;
  /** What the peer reports about this node's new key (`sealnet.io/rotation-peers`). */
  readonly report: PeerReport;
  /** The new link has completed a handshake with one of the peer's keys. */
  readonly handshake: boolean;
}

/** What one step reads. */
export interface RotationInput {
  readonly now: number;
  /** The node store delivered its full list: without it, peers' reports are unknown. */
  readonly synced: boolean;
  readonly self: string;
  readonly settings: RotationSettings;
  /** The key store's `current` slot. */
  readonly currentKey: { readonly publicKey: string; readonly epoch: number; readonly createdAt: number };
  /** The key store's `next` slot, if a key is there. */
  readonly nextKey: { readonly publicKey: string; readonly epoch: number } | undefined;
  /** The rotate request on this node's own Node object, if any. */
  readonly request: { readonly id: string } | undefined;
  /** Every remote node this node has a tunnel to. */
  readonly peers: readonly PeerFollow[];
  /** Other nodes currently rotating (announce a phase other than idle). */
  readonly othersRotating: number;
  /**
   * Other idle nodes whose automatic rotation is due before this node's (earlier due time, or
   * the same and a smaller name). With {@link othersRotating} it orders automatic rotations
   * deterministically, so even a clock jump that makes every key due at once rotates one node
   * at a time. Omitted: 0.
   */
  readonly autoAhead?: number;
  /** The link of `activeSlot` exists in the kernel. */
  readonly activeLinkPresent: boolean;
  /**
   * The last pass put the datapath of the current phase fully in place and published the
   * phase's annotations (no errors). A pass that applied another phase does not count.
   */
  readonly applied: boolean;
}

/** Side effects the agent carries out, in order, after persisting the returned state. */
export type RotationEffect =
  /** Generate a fresh keypair into the `next` slot (replacing, and scrubbing, what was there). */
  | { readonly type: 'generate-next-key'; readonly epoch: number }
  /** Erase a `next` key no rotation refers to (left by an interrupted start). */
  | { readonly type: 'erase-next-key' }
  /** Promote `next` over `current`: the old private key is overwritten and unlinked. */
  | { readonly type: 'promote-next-key' };

/** Result of {@link stepRotation}. */
export interface RotationStep {
  readonly state: RotationState;
  readonly effects: readonly RotationEffect[];
  /** Sentences for the log, one per transition or notable decision. */
  readonly events: readonly string[];
  /** Step again after this long even without new events (polling a handshake, a timer). */
  readonly wakeInMs: number | undefined;
}

/** The state of a node that never rotated. */
export const INITIAL_ROTATION_STATE: RotationState = {
  activeSlot: 0,
  handledRequestId: undefined,
  last: undefined,
  rotation: undefined,
};

/** Default tunables (the agent config overrides them). */
export const DEFAULT_ROTATION_SETTINGS: RotationSettings = {
  graceMs: 30_000,
  peerTimeoutMs: 15_000,
  maxKeyAgeMs: 30 * 24 * 3600 * 1000,
  maxConcurrentAuto: 1,
  pollMs: 100,
};

/** The other slot. */
export function otherSlot(slot: LinkSlot): LinkSlot {
  return slot === 0 ? 1 : 0;
}

/**
 * When an automatic rotation of the key created at `createdAt` becomes due: between 90 % and
 * 100 % of the maximum age, at a point fixed by a hash of the node name and epoch, so nodes
 * whose keys were created together (a cluster install) rotate at different times, and one node
 * rotates at a different point of each key's life. Undefined when automatic rotation is off.
 */
export function autoRotationDueAt(args: {
  readonly node: string;
  readonly epoch: number;
  readonly createdAt: number;
  readonly maxKeyAgeMs: number;
}): number | undefined {
  if (args.maxKeyAgeMs <= 0) return undefined;
  const h =
    createHash('sha256').update(`sealnet-rotation\0${args.node}\0${args.epoch}`).digest().readUInt32BE(0) / 2 ** 32;
  return args.createdAt + args.maxKeyAgeMs - Math.floor(h * args.maxKeyAgeMs * 0.1);
}

/** A peer is ready for `moving` once it staged the new key and shook hands with the new link. */
function isReady(p: PeerFollow): boolean {
  return (p.report === 'staged' || p.report === 'moved') && p.handshake;
}

function withRotation(state: RotationState, rotation: ActiveRotation | undefined): RotationState {
  return { ...state, rotation };
}

function enter(
  r: ActiveRotation,
  phase: RotationPhase,
  now: number,
  extra: Partial<ActiveRotation> = {},
): ActiveRotation {
  return { ...r, phase, phaseSince: now, announcedAt: undefined, ...extra };
}

/** The rotation with its phase announced now, if it was not yet. */
function announced(r: ActiveRotation, now: number): ActiveRotation {
  return r.announcedAt === undefined ? { ...r, announcedAt: now } : r;
}

/** Event for the first announcement of a phase: how long its first pass took. */
function announceEvent(r: ActiveRotation, now: number, waitMs: number, what: string): string {
  return `rotation ${r.id}: ${r.phase} announced ${((now - r.phaseSince) / 1000).toFixed(1)} s after it began (datapath in place); ${what} ${waitMs / 1000} s from now`;
}

/**
 * One step: the state after looking at `input`, and what to do. Deterministic; calling it again
 * with the returned state and the same input returns the same state and no new transition.
 */
export function stepRotation(state: RotationState, input: RotationInput): RotationStep {
  const none = (wakeInMs?: number): RotationStep => ({ state, effects: [], events: [], wakeInMs });
  // Peers' reports and our own request are unknown until the store has synced: do nothing.
  if (!input.synced) return none();
  const r = state.rotation;
  if (r === undefined) return idleStep(state, input);

  const { now, settings } = input;
  // A clock that went backwards (phaseSince or announcedAt in the future) restarts the phase's
  // timer from now: otherwise a timeout would be pushed out by the size of the jump.
  const ahead = Math.max(r.phaseSince, r.announcedAt ?? r.phaseSince);
  if (ahead > now) {
    return {
      state: withRotation(state, {
        ...r,
        phaseSince: Math.min(r.phaseSince, now),
        announcedAt: r.announcedAt === undefined ? undefined : Math.min(r.announcedAt, now),
      }),
      effects: [],
      events: [`the clock went back ${Math.round((ahead - now) / 1000)} s during ${r.phase}; its timer restarts now`],
      wakeInMs: 0,
    };
  }
  // The peer timeout counts from the announcement (see the file comment).
  const since = r.announcedAt ?? now;
  const timedOut = now - since >= settings.peerTimeoutMs;
  const poll = Math.max(1, Math.min(settings.pollMs, settings.peerTimeoutMs - (now - since)));
  /** Still waiting: keep the state, except that the phase counts as announced from now on. */
  const wait = (a: ActiveRotation, what: string): RotationStep =>
    a === r
      ? none(poll)
      : {
          state: withRotation(state, a),
          effects: [],
          events: [announceEvent(r, now, settings.peerTimeoutMs, what)],
          wakeInMs: poll,
        };

  switch (r.phase) {
    case 'preparing': {
      if (input.nextKey !== undefined && input.nextKey.epoch === r.nextEpoch) {
        return {
          state: withRotation(state, enter(r, 'staging', now, { nextPublicKey: input.nextKey.publicKey })),
          effects: [],
          events: [`rotation ${r.id}: new key (epoch ${r.nextEpoch}) ready; staging it on the other link`],
          wakeInMs: 0,
        };
      }
      return { state, effects: [{ type: 'generate-next-key', epoch: r.nextEpoch }], events: [], wakeInMs: 0 };
    }
    case 'staging': {
      if (input.nextKey?.publicKey !== r.nextPublicKey) {
        return {
          state: withRotation(state, enter(r, 'preparing', now, { nextPublicKey: undefined })),
          effects: [],
          events: [`rotation ${r.id}: the new key is no longer in the key store; generating another one`],
          wakeInMs: 0,
        };
      }
      const waiting = input.peers.filter((p) => !isReady(p)).map((p) => p.name);
      if (!input.applied) return none(settings.pollMs);
      if (waiting.length > 0 && !timedOut) return wait(announced(r, now), 'peers have');
      const events = [
        `rotation ${r.id}: ${input.peers.length - waiting.length} of ${input.peers.length} peers staged the new key; moving traffic`,
      ];
      if (waiting.length > 0)
        events.push(
          `rotation ${r.id}: going on without ${waiting.join(', ')} (no staged report and handshake within ${settings.peerTimeoutMs / 1000} s); they keep the old key until the grace period ends`,
        );
      return { state: withRotation(state, enter(r, 'moving', now)), effects: [], events, wakeInMs: 0 };
    }
    case 'moving': {
      // Only peers that staged are waited for: one that never staged is offline and would only
      // make every rotation as slow as the timeout.
      const waiting = input.peers.filter((p) => p.report === 'staged').map((p) => p.name);
      if (!input.applied) return none(settings.pollMs);
      if (waiting.length > 0 && !timedOut) return wait(announced(r, now), 'staged peers have');
      const events = [
        `rotation ${r.id}: ${input.peers.filter((p) => p.report === 'moved').length} of ${input.peers.length} peers moved to the new key; publishing it, old key kept for ${settings.graceMs / 1000} s`,
      ];
      if (waiting.length > 0)
        events.push(
          `rotation ${r.id}: ${waiting.join(', ')} staged but did not move within ${settings.peerTimeoutMs / 1000} s`,
        );
      return {
        state: withRotation(state, enter(r, 'grace', now, { graceUntil: now + settings.graceMs })),
        effects: [],
        events,
        wakeInMs: 0,
      };
    }
    case 'grace': {
      // The grace period counts from the first pass that published the new key (peers cannot
      // follow a key they have not seen); until then the end set on entry stands. An unknown
      // end still counts as now.
      if (r.announcedAt === undefined && r.graceUntil !== undefined) {
        if (!input.applied) return none(settings.pollMs);
        return {
          state: withRotation(state, { ...r, announcedAt: now, graceUntil: now + settings.graceMs }),
          effects: [],
          events: [announceEvent(r, now, settings.graceMs, 'the old key stays')],
          wakeInMs: settings.graceMs,
        };
      }
      // An unknown end counts as now; an end further away than the grace period itself means the
      // clock went back: the grace period then restarts from now (and is persisted so).
      const until = r.graceUntil ?? now;
      if (until - now > settings.graceMs) {
        return {
          state: withRotation(state, { ...r, graceUntil: now + settings.graceMs }),
          effects: [],
          events: [
            `rotation ${r.id}: grace period ended ${Math.round((until - now) / 1000)} s in the future (clock went back); it now ends in ${settings.graceMs / 1000} s`,
          ],
          wakeInMs: 0,
        };
      }
      if (now < until) return none(until - now);
      const lagging = input.peers.filter((p) => p.report !== 'moved').map((p) => p.name);
      const events = [`rotation ${r.id}: grace period over; removing the old link and key`];
      if (lagging.length > 0)
        events.push(
          `rotation ${r.id}: ${lagging.join(', ')} never moved to the new key: their tunnels to this node fail closed until their agents pick the new key up`,
        );
      return { state: withRotation(state, enter(r, 'finishing', now, { lagging })), effects: [], events, wakeInMs: 0 };
    }
    case 'finishing': {
      if (input.activeLinkPresent || !input.applied) return none(settings.pollMs);
      if (input.nextKey !== undefined && input.nextKey.publicKey === r.nextPublicKey) {
        return { state, effects: [{ type: 'promote-next-key' }], events: [], wakeInMs: 0 };
      }
      if (input.currentKey.publicKey !== r.nextPublicKey) {
        // Neither slot holds the new key: somebody removed it. The link still has it loaded, but
        // it cannot be reloaded: an operator must decide (the error repeats until then).
        return {
          state,
          effects: [],
          events: [
            `rotation ${r.id}: the new key is in neither key slot (was the key directory changed by hand?); cannot finish the rotation`,
          ],
          wakeInMs: undefined,
        };
      }
      const done: RotationState = {
        activeSlot: otherSlot(state.activeSlot),
        handledRequestId: r.reason === 'request' ? r.id : state.handledRequestId,
        last: { id: r.id, reason: r.reason, completedAt: now, epoch: r.nextEpoch, lagging: r.lagging },
        rotation: undefined,
      };
      return {
        state: done,
        effects: [],
        events: [
          `rotation ${r.id}: done in ${((now - r.startedAt) / 1000).toFixed(1)} s; old key erased, epoch ${r.nextEpoch} on slot ${done.activeSlot}`,
        ],
        wakeInMs: 0,
      };
    }
  }
}

function idleStep(state: RotationState, input: RotationInput): RotationStep {
  const { now, settings, currentKey } = input;
  const start = (id: string, reason: RotationReason, why: string): RotationStep => ({
    state: withRotation(state, {
      id,
      reason,
      phase: 'preparing',
      startedAt: now,
      phaseSince: now,
      announcedAt: undefined,
      nextEpoch: currentKey.epoch + 1,
      nextPublicKey: undefined,
      graceUntil: undefined,
      lagging: [],
    }),
    effects: [{ type: 'generate-next-key', epoch: currentKey.epoch + 1 }],
    events: [`rotation ${id}: starting (${why})`],
    wakeInMs: 0,
  });
  const req = input.request;
  if (req !== undefined && req.id !== state.handledRequestId && req.id !== state.last?.id)
    return start(req.id, 'request', 'requested');

  const orphan: RotationEffect[] = input.nextKey !== undefined ? [{ type: 'erase-next-key' }] : [];
  const orphanEvents =
    orphan.length > 0 ? ['erasing a next key that no rotation refers to (left by an interrupted start)'] : [];
  const due = autoRotationDueAt({
    node: input.self,
    epoch: currentKey.epoch,
    createdAt: currentKey.createdAt,
    maxKeyAgeMs: settings.maxKeyAgeMs,
  });
  if (due === undefined) return { state, effects: orphan, events: orphanEvents, wakeInMs: undefined };
  if (now < due) return { state, effects: orphan, events: orphanEvents, wakeInMs: due - now };
  // Waiting for others is bounded: past twice the maximum age nothing another node announces
  // postpones the rotation (a node stuck in, or lying about, a phase cannot hold keys forever).
  // The price: a clock jump of more than twice the maximum age starts every node at once.
  const overdue = now - currentKey.createdAt > 2 * settings.maxKeyAgeMs;
  if (!overdue && input.othersRotating + (input.autoAhead ?? 0) >= settings.maxConcurrentAuto) {
    // Staggered: wait while others rotate, so a clock jump or a cluster installed at once never
    // rotates every node together.
    return { state, effects: orphan, events: orphanEvents, wakeInMs: Math.max(settings.pollMs, 1000) };
  }
  const ageDays = ((now - currentKey.createdAt) / 86_400_000).toFixed(1);
  return start(
    `age-${input.self}-e${currentKey.epoch + 1}`,
    'max-key-age',
    `key is ${ageDays} days old, maximum ${(settings.maxKeyAgeMs / 86_400_000).toFixed(1)}`,
  );
}

/**
 * How long another node's announced rotation phase counts in `othersRotating`: an honest phase
 * lasts about a grace period and a peer timeout, so ten of those (at least an hour) is generous;
 * a phase announced for longer, or since a time in the future, is stale and ignored.
 */
export function announcedPhaseCounts(
  since: number | undefined,
  now: number,
  settings: Pick<RotationSettings, 'graceMs' | 'peerTimeoutMs'>,
): boolean {
  if (since === undefined || !Number.isFinite(since)) return false;
  const ttl = Math.max(3_600_000, 10 * (settings.graceMs + settings.peerTimeoutMs));
  return since <= now + 300_000 && now - since <= ttl;
}

/** What the datapath should look like in a state (derived, never stored). */
export interface RotationIntent {
  readonly activeSlot: LinkSlot;
  /** The link of the new key: present from `staging` to `finishing`. */
  readonly incomingSlot: LinkSlot | undefined;
  /** The new key, when there is an incoming link. */
  readonly incomingKey: string | undefined;
  /** Remote nodes whose prefixes route into the incoming link: none, then `all` from `moving`. */
  readonly viaIncoming: 'all' | readonly string[];
  /** Mirror what leaves the incoming link into the active (old) link. */
  readonly mirror: boolean;
  /** Delete the active link (after every route moved away from it). */
  readonly retireActive: boolean;
  /** Which key the node publishes as its own. */
  readonly published: 'current' | 'next';
  /** Publish the new key and endpoint as `next` (peers stage it). */
  readonly announceNext: boolean;
  /** Phase published in the rotation status. */
  readonly phase: RotationPhase | 'idle';
}

/** The datapath a state asks for. Pure. */
export function rotationIntent(state: RotationState): RotationIntent {
  const r = state.rotation;
  const base: RotationIntent = {
    activeSlot: state.activeSlot,
    incomingSlot: undefined,
    incomingKey: undefined,
    viaIncoming: [],
    mirror: false,
    retireActive: false,
    published: 'current',
    announceNext: false,
    phase: r?.phase ?? 'idle',
  };
  if (r === undefined || r.phase === 'preparing' || r.nextPublicKey === undefined) return base;
  const incoming = { incomingSlot: otherSlot(state.activeSlot), incomingKey: r.nextPublicKey };
  switch (r.phase) {
    case 'staging':
      return { ...base, ...incoming, announceNext: true };
    case 'moving':
      return { ...base, ...incoming, viaIncoming: 'all', mirror: true, announceNext: true };
    case 'grace':
      return { ...base, ...incoming, viaIncoming: 'all', mirror: true, published: 'next' };
    case 'finishing':
      return { ...base, ...incoming, viaIncoming: 'all', retireActive: true, published: 'next' };
  }
}

// ---------------------------------------------------------------------------------------------
// Persistence codec (pure). The file is JSON with a version; times are RFC 3339.

const STATE_VERSION = 1;
const PHASES: readonly RotationPhase[] = ['preparing', 'staging', 'moving', 'grace', 'finishing'];
const ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** True for an id a request or rotation may carry (safe in logs, annotations and file names). */
export function isValidRotationId(id: unknown): id is string {
  return typeof id === 'string' && ID.test(id);
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** Serialises a state for the state file. */
export function encodeRotationState(s: RotationState): string {
  const r = s.rotation;
  const doc = {
    version: STATE_VERSION,
    activeSlot: s.activeSlot,
    ...(s.handledRequestId !== undefined ? { handledRequestId: s.handledRequestId } : {}),
    ...(s.last !== undefined
      ? {
          last: {
            id: s.last.id,
            reason: s.last.reason,
            completedAt: iso(s.last.completedAt),
            epoch: s.last.epoch,
            lagging: s.last.lagging,
          },
        }
      : {}),
    ...(r !== undefined
      ? {
          rotation: {
            id: r.id,
            reason: r.reason,
            phase: r.phase,
            startedAt: iso(r.startedAt),
            phaseSince: iso(r.phaseSince),
            // null: not announced yet (a missing field is a file from before announcements were kept).
            announcedAt: r.announcedAt === undefined ? null : iso(r.announcedAt),
            nextEpoch: r.nextEpoch,
            ...(r.nextPublicKey !== undefined ? { nextPublicKey: r.nextPublicKey } : {}),
            ...(r.graceUntil !== undefined ? { graceUntil: iso(r.graceUntil) } : {}),
            lagging: r.lagging,
          },
        }
      : {}),
  };
  return `${JSON.stringify(doc, undefined, 2)}\n`;
}

/** Result of {@link decodeRotationState}. */
export type DecodeStateResult =
  | { readonly ok: true; readonly state: RotationState; readonly warnings: readonly string[] }
  | { readonly ok: false; readonly error: string };

function time(v: unknown): number | undefined {
  if (typeof v !== 'string') return undefined;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : t;
}

function names(v: unknown): string[] | undefined {
  return Array.isArray(v) && v.every((x) => typeof x === 'string' && x.length <= 253)
    ? [...(v as string[])]
    : undefined;
}

/**
 * Parses the state file strictly. A missing or unreadable grace end is not an error: it counts
 * as now (a warning says so); a missing phase start restarts the phase's timer from `now`.
 */
export function decodeRotationState(text: string, now: number): DecodeStateResult {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return { ok: false, error: 'not JSON' };
  }
  if (!isObject(doc)) return { ok: false, error: 'not a JSON object' };
  if (doc.version !== STATE_VERSION)
    return { ok: false, error: `version ${JSON.stringify(doc.version)}, want ${STATE_VERSION}` };
  if (doc.activeSlot !== 0 && doc.activeSlot !== 1)
    return { ok: false, error: `activeSlot ${JSON.stringify(doc.activeSlot)}, want 0 or 1` };
  const warnings: string[] = [];
  if (doc.handledRequestId !== undefined && !isValidRotationId(doc.handledRequestId))
    return { ok: false, error: 'handledRequestId is not a valid id' };
  let last: CompletedRotation | undefined;
  if (doc.last !== undefined) {
    const l = doc.last;
    const completedAt = isObject(l) ? time(l.completedAt) : undefined;
    const lagging = isObject(l) ? names(l.lagging) : undefined;
    if (
      !isObject(l) ||
      !isValidRotationId(l.id) ||
      (l.reason !== 'request' && l.reason !== 'max-key-age') ||
      completedAt === undefined ||
      !Number.isSafeInteger(l.epoch) ||
      lagging === undefined
    ) {
      return { ok: false, error: 'last is malformed' };
    }
    last = { id: l.id, reason: l.reason, completedAt, epoch: l.epoch as number, lagging };
  }
  let rotation: ActiveRotation | undefined;
  if (doc.rotation !== undefined) {
    const r = doc.rotation;
    if (!isObject(r) || !isValidRotationId(r.id)) return { ok: false, error: 'rotation.id is malformed' };
    if (r.reason !== 'request' && r.reason !== 'max-key-age')
      return { ok: false, error: 'rotation.reason is malformed' };
    if (typeof r.phase !== 'string' || !(PHASES as readonly string[]).includes(r.phase))
      return { ok: false, error: `rotation.phase ${JSON.stringify(r.phase)} is not a phase` };
    if (!Number.isSafeInteger(r.nextEpoch) || (r.nextEpoch as number) < 1)
      return { ok: false, error: 'rotation.nextEpoch is malformed' };
    const phase = r.phase as RotationPhase;
    const nextPublicKey = r.nextPublicKey;
    if (
      nextPublicKey !== undefined &&
      (typeof nextPublicKey !== 'string' || !/^[A-Za-z0-9+/]{43}=$/.test(nextPublicKey))
    )
      return { ok: false, error: 'rotation.nextPublicKey is malformed' };
    if (phase !== 'preparing' && nextPublicKey === undefined)
      return { ok: false, error: `rotation.nextPublicKey is missing in phase ${phase}` };
    const lagging = names(r.lagging ?? []);
    if (lagging === undefined) return { ok: false, error: 'rotation.lagging is malformed' };
    let phaseSince = time(r.phaseSince);
    if (phaseSince === undefined) {
      warnings.push(`rotation.phaseSince is missing or unreadable; the ${phase} timer restarts now`);
      phaseSince = now;
    }
    const graceUntil = time(r.graceUntil);
    if ((phase === 'grace' || phase === 'finishing') && graceUntil === undefined && r.graceUntil !== undefined) {
      warnings.push('rotation.graceUntil is unreadable; the grace period counts as over');
    }
    // Absent (a file written before announcements were kept): the phase counts as announced when
    // it began, as those agents timed it. Unreadable: the same, with a warning (never later).
    let announcedAt: number | undefined;
    if (r.announcedAt === undefined) announcedAt = phaseSince;
    else if (r.announcedAt !== null) {
      announcedAt = time(r.announcedAt);
      if (announcedAt === undefined) {
        warnings.push(`rotation.announcedAt is unreadable; the ${phase} timer counts from the phase start`);
        announcedAt = phaseSince;
      }
    }
    rotation = {
      id: r.id,
      reason: r.reason,
      phase,
      startedAt: time(r.startedAt) ?? phaseSince,
      phaseSince,
      announcedAt,
      nextEpoch: r.nextEpoch as number,
      nextPublicKey: nextPublicKey as string | undefined,
      graceUntil,
      lagging,
    };
  }
  return {
    ok: true,
    state: { activeSlot: doc.activeSlot, handledRequestId: doc.handledRequestId as string | undefined, last, rotation },
    warnings,
  };
}
