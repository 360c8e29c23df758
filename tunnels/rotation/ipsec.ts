/**
 * IPsec key rotation (mode ipsec), make-before-break, on the same state machine and
 * the same annotations as WireGuard's (`keymgr/rotation.ts`, `sealnet.io/rotate-request`,
 * `sealnet.io/rotation`, `sealnet.io/rotation-peers`, `sealctl keys rotate`).
 *
 * Every SA's key and SPI are derived over both nodes' key epochs, so a new key means new SAs
 * with new SPIs beside the old ones (never a key change under an SPI). Node X rotating from key
 * K (epoch e) to K' (e+1), each peer P with its own key (epoch p):
 *
 *   staging    X holds K and K'; it accepts (P p → X e) and (P p → X e+1) and still sends with
 *              (X e → P p). It announces K' (`sealnet.io/ipsec-next-key`). P installs the
 *              inbound SA (X e+1 → P p) beside (X e → P p) and reports `staged`.
 *   moving     Once every peer staged (or `peerTimeoutSeconds` passed), X adds its outbound SA
 *              (X e+1 → P p) and repoints its outbound policies to it: XFRM_MSG_UPDPOLICY
 *              replaces the policy's template (pinned SPI) atomically, so each packet uses
 *              either the old SA or the new one, both accepted by P. X announces `moving`; P
 *              switches its outbound to (P p → X e+1) the same way and reports `moved`. Until
 *              it does, X still accepts (P p → X e).
 *   grace      X publishes K' as its key and K as `sealnet.io/ipsec-previous-key`: P keeps its
 *              inbound SA for K, X its inbound SAs for K (packets in flight, slow peers).
 *   finishing  X stops publishing K; both ends prune every SA of epoch e; X overwrites and
 *              removes K from disk (the key store promotes K' over it), then is idle.
 *
 * Why pinned SPIs and UPDPOLICY rather than "the newest of two matching SAs": with a template
 * SPI of 0 the kernel picks among matching states by its own rules (the newest valid one on
 * Linux, but that is an implementation detail, and both ends would switch at the moment the
 * state is added — before the peer may have the inbound SA). Pinning makes the switch an
 * explicit, atomic, single-object change that happens only after the peer staged.
 */
import {
  fingerprint,
  generateKeyPair,
  tryParsePublicKey,
  zeroKey,
  type PrivateKey,
  type PublicKey,
} from '../../keymgr/keys.js';
import type { KeyStore } from '../../keymgr/keystore.js';
import {
  announcedPhaseCounts,
  stepRotation,
  type ActiveRotation,
  type PeerFollow,
  type RotationSettings,
  type RotationState,
} from '../../keymgr/rotation.js';
import type { RotationStateFile } from '../../keymgr/rotationstore.js';
import type { DesiredIpsec } from '../ports/ipsec.js';
import { decodeIpsecKey } from '../plan/annotations.js';
import { ANNOTATIONS } from '../../common/constants.js';
import { parseEpoch } from '../../common/bounds.js';
import { describeError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { RawNode } from '../ports/model.js';
import {
  decodeRotateRequest,
  decodeRotationReports,
  decodeRotationStatus,
  encodeRotationReports,
  encodeRotationStatus,
  type PeerRotationReport,
} from '../plan/rotation-codec.js';

/** Longest timer the controller arms (ms). */
const MAX_WAKE_MS = 3_600_000;

/** One IPsec key of a node. */
export interface IpsecKey {
  readonly epoch: number;
  readonly publicKey: PublicKey;
}

/** `<epoch>:<base64 key>`, the value of the next/previous key annotations. */
export function encodeEpochKey(k: IpsecKey): string {
  return `${k.epoch}:${k.publicKey}`;
}

/** Parses {@link encodeEpochKey}; undefined when malformed or a low-order point. */
export function decodeEpochKey(text: string | undefined): IpsecKey | undefined {
  const m = /^(\d{1,10}):(\S+)$/.exec(text ?? '');
  if (m === null) return undefined;
  const epoch = parseEpoch(m[1]);
  if (epoch === undefined) return undefined;
  const k = tryParsePublicKey(m[2]!);
  return k.ok ? { epoch, publicKey: k.key } : undefined;
}

/**
 * A peer's IPsec keys as this node plans with them: its current key plus an announced next or
 * previous one, and the epoch to send to (the next key's once the peer announces `moving`).
 * Lenient: a malformed extra key is ignored (the pair stays on the current key).
 */
export function peerIpsecKeys(raw: RawNode, current: IpsecKey): { keys: IpsecKey[]; sendEpoch: number } {
  const a = raw.annotations;
  const status = a[ANNOTATIONS.rotation] === undefined ? undefined : decodeRotationStatus(a[ANNOTATIONS.rotation]!);
  const keys: IpsecKey[] = [current];
  const next = decodeEpochKey(a[ANNOTATIONS.ipsecNextKey]);
  const previous = decodeEpochKey(a[ANNOTATIONS.ipsecPreviousKey]);
  // A rotation moves one epoch at a time (keymgr: next = current + 1, and the previous key of
  // grace is current − 1): any other jump is refused, so a node cannot pick arbitrary epochs
  // for its extra keys to steer SPIs.
  const fits = (k: IpsecKey | undefined, delta: number): k is IpsecKey =>
    k !== undefined && k.epoch === current.epoch + delta;
  for (const [k, delta] of [
    [next, 1],
    [previous, -1],
  ] as const)
    if (fits(k, delta) && !keys.some((x) => x.epoch === k.epoch || x.publicKey === k.publicKey)) keys.push(k);
  const sendEpoch =
    status?.phase === 'moving' && next !== undefined && keys.includes(next) ? next.epoch : current.epoch;
  return { keys: keys.sort((x, y) => x.epoch - y.epoch), sendEpoch };
}

/** Every IPsec public key a node publishes (current, next, previous). */
export function publishedIpsecKeys(raw: RawNode): PublicKey[] {
  const cur = decodeIpsecKey(raw);
  if (!cur.ok) return [];
  return peerIpsecKeys(raw, cur).keys.map((k) => k.publicKey);
}

/**
 * What this node reports about other nodes' next IPsec keys: `staged` once the last apply made
 * the pair ready with the inbound SA from the next key, `moved` once its outbound SA also goes
 * to the next key.
 */
export function ipsecRotationReports(
  nodes: readonly RawNode[],
  desired: DesiredIpsec,
  ready: readonly string[],
): Record<string, PeerRotationReport> {
  const out: Record<string, PeerRotationReport> = {};
  for (const peer of desired.peers) {
    const raw = nodes.find((n) => n.name === peer.node);
    if (raw === undefined || !ready.includes(peer.node)) continue;
    // The key being brought in: announced as next (staging, moving), or current while the old
    // one is still published as previous (grace).
    const current = decodeIpsecKey(raw);
    const next =
      decodeEpochKey(raw.annotations[ANNOTATIONS.ipsecNextKey]) ??
      (current.ok && decodeEpochKey(raw.annotations[ANNOTATIONS.ipsecPreviousKey]) !== undefined
        ? { epoch: current.epoch, publicKey: current.publicKey }
        : undefined);
    if (next === undefined) continue;
    if (!peer.inbound.some((sa) => sa.srcEpoch === next.epoch && sa.peerPublicKey === next.publicKey)) continue;
    const moved = peer.outbound.dstEpoch === next.epoch && peer.outbound.peerPublicKey === next.publicKey;
    out[peer.node] = { fingerprint: fingerprint(next.publicKey), state: moved ? 'moved' : 'staged' };
  }
  return out;
}

/** This node's keys in a rotation state: which one it sends with, which others it accepts, what it publishes. */
export function ownIpsecKeys(
  current: IpsecKey,
  r: ActiveRotation | undefined,
): {
  send: IpsecKey;
  others: IpsecKey[];
  published: IpsecKey;
  next: IpsecKey | undefined;
  previous: IpsecKey | undefined;
} {
  const idle = { send: current, others: [], published: current, next: undefined, previous: undefined };
  if (r === undefined || r.nextPublicKey === undefined || r.phase === 'preparing') return idle;
  const next: IpsecKey = { epoch: r.nextEpoch, publicKey: r.nextPublicKey as PublicKey };
  // After the promotion (finishing), the key store's current key is the new one.
  if (current.publicKey === next.publicKey) return { ...idle, send: next, published: next };
  switch (r.phase) {
    case 'staging':
      return { send: current, others: [next], published: current, next, previous: undefined };
    case 'moving':
      return { send: next, others: [current], published: current, next, previous: undefined };
    case 'grace':
      return { send: next, others: [current], published: next, next: undefined, previous: current };
    case 'finishing':
      return { send: next, others: [], published: next, next: undefined, previous: undefined };
  }
}

/** Options of {@link IpsecRotation}. */
export interface IpsecRotationOptions {
  readonly nodeName: string;
  readonly settings: RotationSettings;
  readonly keystore: Pick<KeyStore, 'read' | 'writeKey' | 'erase' | 'promoteNext'>;
  readonly stateFile: Pick<RotationStateFile, 'read' | 'write'>;
  /** The driver's key map (epoch → private key): the controller adds the next key and removes the old one. */
  readonly privateKeys: Map<number, PrivateKey>;
  /** The key store's current IPsec key as loaded at start. */
  readonly current: IpsecKey & { readonly createdAt: Date };
  readonly log: Logger;
  /** Asks for a reconcile pass (a timer ran out, a step wants the next one at once). */
  readonly wake: () => void;
  readonly now?: () => number;
  /** Counts completed rotations in `sealnet_key_rotations_total{kind="ipsec"}`. */
  readonly onCompleted?: () => void;
}

/** The IPsec rotation of this node: state, keys, annotations, one state-machine step per pass. */
export class IpsecRotation {
  readonly #o: IpsecRotationOptions;
  readonly #now: () => number;
  #state: RotationState | undefined;
  #current: IpsecKey & { readonly createdAt: Date };
  #next: IpsecKey | undefined;
  #timer: NodeJS.Timeout | undefined;
  #error: string | undefined;

  constructor(o: IpsecRotationOptions) {
    this.#o = o;
    this.#now = o.now ?? (() => Date.now());
    this.#current = o.current;
  }

  /** Reads the persisted state and the `next` key slot (resuming a rotation after a restart). */
  async load(): Promise<void> {
    const { state, warnings } = await this.#o.stateFile.read(this.#now());
    for (const w of warnings) this.#o.log.warn({}, `IPsec rotation state: ${w}`);
    this.#state = state;
    const next = await this.#o.keystore.read('ipsec', 'next');
    if (next !== undefined) {
      this.#next = { epoch: next.epoch, publicKey: next.publicKey };
      this.#o.privateKeys.set(next.epoch, next.privateKey);
    }
  }

  /** Stops the timer. */
  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
  }

  /** This node's keys now (what the plan sends with and accepts, what it publishes). */
  keys(): ReturnType<typeof ownIpsecKeys> {
    return ownIpsecKeys(this.#current, this.#state?.rotation);
  }

  /** The published key with its creation time (status reports). */
  published(): IpsecKey & { readonly createdAt: Date } {
    const p = this.keys().published;
    return p.publicKey === this.#current.publicKey
      ? this.#current
      : { ...p, createdAt: new Date(this.#state?.rotation?.startedAt ?? this.#now()) };
  }

  /** This node's own IPsec key and rotation annotations (undefined = remove). */
  annotations(): Record<string, string | undefined> {
    const k = this.keys();
    const r = this.#state?.rotation;
    const last = this.#state?.last;
    const status = encodeRotationStatus({
      phase: r?.phase ?? 'idle',
      ...(r !== undefined ? { id: r.id, since: new Date(r.phaseSince), epoch: r.nextEpoch } : {}),
      ...(r?.graceUntil !== undefined ? { graceUntil: new Date(r.graceUntil) } : {}),
      ...(last !== undefined
        ? { last: { id: last.id, completedAt: new Date(last.completedAt), epoch: last.epoch, lagging: last.lagging } }
        : {}),
      ...(this.#error !== undefined ? { error: this.#error } : {}),
    });
    return {
      [ANNOTATIONS.ipsecPublicKey]: k.published.publicKey,
      [ANNOTATIONS.ipsecKeyEpoch]: String(k.published.epoch),
      [ANNOTATIONS.ipsecNextKey]: k.next === undefined ? undefined : encodeEpochKey(k.next),
      [ANNOTATIONS.ipsecPreviousKey]: k.previous === undefined ? undefined : encodeEpochKey(k.previous),
      [ANNOTATIONS.rotation]: status,
    };
  }

  /**
   * One step after an apply: peers' reports about this node's next key, this node's request,
   * then the state machine; persists before carrying out key effects. Never throws.
   */
  async after(p: {
    readonly nodes: readonly RawNode[];
    readonly synced: boolean;
    readonly applied: boolean;
    readonly peers: readonly string[];
  }): Promise<void> {
    const state = this.#state;
    if (state === undefined) return;
    const self = p.nodes.find((n) => n.name === this.#o.nodeName);
    const reqText = self?.annotations[ANNOTATIONS.rotateRequest];
    const req = reqText === undefined ? undefined : decodeRotateRequest(reqText);
    const nextFp =
      state.rotation?.nextPublicKey === undefined ? undefined : fingerprint(state.rotation.nextPublicKey as PublicKey);
    const peers: PeerFollow[] = p.peers.map((name) => {
      const raw = p.nodes.find((n) => n.name === name);
      const text = raw?.annotations[ANNOTATIONS.rotationPeers];
      const rep = text === undefined ? undefined : decodeRotationReports(text)[this.#o.nodeName];
      const report = rep !== undefined && rep.fingerprint === nextFp ? rep.state : 'none';
      return { name, report, handshake: report !== 'none' };
    });
    const othersRotating = p.nodes.filter((n) => {
      if (n.name === this.#o.nodeName) return false;
      const st = decodeRotationStatus(n.annotations[ANNOTATIONS.rotation] ?? '');
      return (
        st !== undefined &&
        st.phase !== 'idle' &&
        announcedPhaseCounts(st.since?.getTime(), this.#now(), this.#o.settings)
      );
    }).length;
    const step = stepRotation(state, {
      now: this.#now(),
      synced: p.synced,
      self: this.#o.nodeName,
      settings: this.#o.settings,
      currentKey: {
        publicKey: this.#current.publicKey,
        epoch: this.#current.epoch,
        createdAt: this.#current.createdAt.getTime(),
      },
      nextKey: this.#next,
      request: req?.ok === true ? { id: req.request.id } : undefined,
      peers,
      othersRotating,
      activeLinkPresent: false,
      applied: p.applied,
    });
    for (const e of step.events) this.#o.log.info({ rotation: step.state.rotation?.id ?? state.rotation?.id }, e);
    try {
      if (step.state !== state) await this.#o.stateFile.write(step.state);
      this.#state = step.state;
      if (state.rotation !== undefined && step.state.rotation === undefined) this.#o.onCompleted?.();
      for (const e of step.effects) await this.#effect(e);
      this.#error = undefined;
    } catch (err) {
      this.#error = `IPsec key rotation step failed: ${describeError(err)}`;
      this.#o.log.error({ err: describeError(err) }, this.#error);
    }
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const wake = step.effects.length > 0 ? 0 : step.wakeInMs;
    if (wake !== undefined) {
      // Capped: an automatic rotation due in weeks is beyond setTimeout's 2^31 ms (Node would
      // fire at once, and every pass would re-arm it: a busy loop); the periodic resync and a
      // re-armed timer get there.
      this.#timer = setTimeout(() => this.#o.wake(), Math.min(Math.max(wake, 100), MAX_WAKE_MS));
      this.#timer.unref?.();
    }
  }

  async #effect(e: ReturnType<typeof stepRotation>['effects'][number]): Promise<void> {
    const ks = this.#o.keystore;
    const keys = this.#o.privateKeys;
    switch (e.type) {
      case 'generate-next-key': {
        const old = this.#next;
        if (old !== undefined && old.epoch !== this.#current.epoch) this.#drop(old.epoch);
        const pair = await generateKeyPair();
        await ks.writeKey('ipsec', 'next', pair, { epoch: e.epoch, createdAt: new Date(this.#now()) });
        keys.set(e.epoch, pair.privateKey);
        this.#next = { epoch: e.epoch, publicKey: pair.publicKey };
        this.#o.log.info({ key: fingerprint(pair.publicKey), epoch: e.epoch }, 'generated the next IPsec key');
        return;
      }
      case 'erase-next-key': {
        await ks.erase('ipsec', 'next');
        if (this.#next !== undefined && this.#next.epoch !== this.#current.epoch) this.#drop(this.#next.epoch);
        this.#next = undefined;
        return;
      }
      case 'promote-next-key': {
        const promoted = await ks.promoteNext('ipsec');
        const old = this.#current;
        this.#drop(old.epoch);
        const held = keys.get(promoted.epoch);
        if (held !== undefined && held !== promoted.privateKey) zeroKey(held);
        keys.set(promoted.epoch, promoted.privateKey);
        this.#current = { epoch: promoted.epoch, publicKey: promoted.publicKey, createdAt: promoted.createdAt };
        this.#next = undefined;
        this.#o.log.info(
          { key: fingerprint(promoted.publicKey), epoch: promoted.epoch, erased: fingerprint(old.publicKey) },
          'old IPsec key erased; the new key is current',
        );
        return;
      }
    }
  }

  /** Forgets and zeroes the private key of an epoch. */
  #drop(epoch: number): void {
    const k = this.#o.privateKeys.get(epoch);
    if (k !== undefined) zeroKey(k);
    this.#o.privateKeys.delete(epoch);
  }
}

/** The `sealnet.io/rotation-peers` value of mode ipsec (undefined when there is nothing to report). */
export function encodeIpsecReports(reports: Readonly<Record<string, PeerRotationReport>>): string | undefined {
  return Object.keys(reports).length === 0 ? undefined : encodeRotationReports(reports);
}
