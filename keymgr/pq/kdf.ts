/**
 * The post-quantum pair secret (issue 19): who encapsulates for a pair, and the KDF that turns
 * the ML-KEM shared secret into the 32-byte WireGuard preshared key plus a key-confirmation key.
 *
 * Transcript (every field length-prefixed, so no two different inputs encode alike):
 *   label "sealnet pq-psk" ‖ version ‖ renewal id ‖
 *   initiator name ‖ responder name ‖ initiator X25519 public ‖ responder X25519 public ‖
 *   SHA-256(initiator ML-KEM ek) ‖ SHA-256(responder ML-KEM ek) ‖ SHA-256(ciphertext)
 * PRK = HKDF-Extract(salt = SHA-256(transcript), IKM = ML-KEM shared secret), then
 * PSK = HKDF-Expand(PRK, "sealnet pq-psk v1 wireguard-psk", 32) and
 * confirm key = HKDF-Expand(PRK, "sealnet pq-psk v1 confirm", 32).
 *
 * Why these inputs: the names and X25519 keys (in role order) tie the secret to this pair and
 * these tunnel identities, so a ciphertext replayed to another pair or after a key rotation gives
 * a different key; both encapsulation-key hashes tie it to the annotations both sides read; the
 * ciphertext hash and renewal id tie it to this one exchange. The X25519 shared secret itself is
 * not an input: WireGuard mixes the PSK into its Noise handshake next to its own X25519 results,
 * which is what makes the session hybrid (the Rosenpass construction).
 */
import { createHash, createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { SealnetError } from '../../common/errors.js';
import { publicKeyBytes, type PublicKey } from '../keys.js';
import { SHARED_SECRET_BYTES } from './mlkem.js';

/** Bumped whenever the transcript or the expand labels change; both ends must agree. */
export const PQ_KDF_VERSION = 1;
/** WireGuard preshared key length. */
export const PSK_BYTES = 32;
/** Length of the key-confirmation tag the responder returns. */
export const CONFIRMATION_TAG_BYTES = 32;
/** Longest node name accepted (a Kubernetes object name is a DNS subdomain, at most 253). */
const NAME_MAX_BYTES = 253;
const LABEL = 'sealnet pq-psk';

/** 32 bytes for WireGuard's preshared-key slot of one peer. Secret: wipe it when dropped. */
export type PresharedKey = Uint8Array & { readonly __brand: 'PresharedKey' };

/** One side of a pair as it enters the transcript. */
export interface PqParty {
  /** Kubernetes Node name. */
  readonly name: string;
  /** The node's WireGuard (or IPsec) X25519 public key for this tunnel. */
  readonly x25519: PublicKey;
  /** SHA-256 of the node's published ML-KEM encapsulation key (mlkem.ts `encapsulationKeyHash`). */
  readonly kemKeyHash: Uint8Array;
}

/** Everything the pair secret is bound to besides the ML-KEM shared secret. */
export interface PqTranscript {
  /** The node that encapsulated (see {@link pqInitiator}). */
  readonly initiator: PqParty;
  /** The node that decapsulated with its own key. */
  readonly responder: PqParty;
  /** SHA-256 of the 1088-byte ciphertext the initiator sent. */
  readonly ciphertextHash: Uint8Array;
  /** The exchange's renewal id (a non-negative safe integer chosen by the initiator). */
  readonly renewalId: number;
}

/** The two keys one exchange yields. */
export interface PairSecret {
  /** Goes into `wg set … peer <pub> preshared-key <file>` for this peer. */
  readonly psk: PresharedKey;
  /** Keys the responder's acknowledgement ({@link confirmationTag}); never used for traffic. */
  readonly confirmKey: Uint8Array;
}

/**
 * Which of two nodes encapsulates for their pair. Not simply the smaller name: that node would
 * initiate towards every peer (node "a" does N-1 exchanges per renewal, node "z" none). Instead a
 * hash of the ordered pair picks one side, so each node initiates for about half its pairs and
 * the timers and retries spread evenly; both sides compute the same answer from public names.
 * @throws SealnetError `INTERNAL` when both names are equal (a node is never its own peer).
 */
export function pqInitiator(a: string, b: string): string {
  if (a === b) throw new SealnetError('INTERNAL', `post-quantum pair of a node with itself (${JSON.stringify(a)})`);
  const [lo, hi] = a < b ? [a, b] : [b, a];
  const h = createHash('sha256').update(`${LABEL} initiator\0${lo}\0${hi}`).digest();
  return (h[0]! & 1) === 0 ? lo : hi;
}

/** SHA-256 of a ciphertext, for the transcript and the exchange messages. */
export function ciphertextHash(ciphertext: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(ciphertext).digest());
}

/**
 * Derives the pair's preshared key and confirmation key. Both nodes call it with the same
 * transcript (roles, not "self/peer") and, when the exchange was honest, the same shared secret.
 * @throws SealnetError `KEY_INVALID` when a length or name is out of bounds (a programming error:
 *   every input was validated where it entered).
 */
export function derivePairSecret(sharedSecret: Uint8Array, t: PqTranscript): PairSecret {
  if (sharedSecret.length !== SHARED_SECRET_BYTES) {
    throw new SealnetError('KEY_INVALID', `ML-KEM shared secret has ${sharedSecret.length} bytes, expected 32`);
  }
  if (t.initiator.name === t.responder.name) {
    throw new SealnetError('KEY_INVALID', 'post-quantum transcript names the same node as initiator and responder');
  }
  const salt = createHash('sha256').update(encodeTranscript(t)).digest();
  const expand = (purpose: string): Uint8Array =>
    new Uint8Array(hkdfSync('sha256', sharedSecret, salt, `${LABEL} v${PQ_KDF_VERSION} ${purpose}`, PSK_BYTES));
  return { psk: expand('wireguard-psk') as PresharedKey, confirmKey: expand('confirm') };
}

/**
 * The responder's proof that it derived the same secret: HMAC-SHA256(confirm key, label ‖
 * renewal id). The initiator installs its new PSK only once this verifies; a tampered ciphertext
 * leaves the responder with ML-KEM's implicit-rejection secret, hence a tag that never verifies.
 */
export function confirmationTag(confirmKey: Uint8Array, renewalId: number): Uint8Array {
  checkRenewalId(renewalId);
  const id = Buffer.alloc(8);
  id.writeBigUInt64BE(BigInt(renewalId));
  return new Uint8Array(createHmac('sha256', confirmKey).update(`${LABEL} ack\0`).update(id).digest());
}

/** Constant-time check of a received tag; false for any length other than 32. */
export function verifyConfirmationTag(confirmKey: Uint8Array, renewalId: number, tag: Uint8Array): boolean {
  if (tag.length !== CONFIRMATION_TAG_BYTES) return false;
  return timingSafeEqual(confirmationTag(confirmKey, renewalId), tag);
}

/** The unambiguous byte encoding of a transcript (exported for the binding tests). */
export function encodeTranscript(t: PqTranscript): Uint8Array {
  checkRenewalId(t.renewalId);
  const id = Buffer.alloc(8);
  id.writeBigUInt64BE(BigInt(t.renewalId));
  const parts: Uint8Array[] = [
    Buffer.from(LABEL),
    Uint8Array.of(PQ_KDF_VERSION),
    id,
    nameBytes(t.initiator.name),
    nameBytes(t.responder.name),
    publicKeyBytes(t.initiator.x25519),
    publicKeyBytes(t.responder.x25519),
    hash32(t.initiator.kemKeyHash, 'initiator encapsulation key hash'),
    hash32(t.responder.kemKeyHash, 'responder encapsulation key hash'),
    hash32(t.ciphertextHash, 'ciphertext hash'),
  ];
  const out: number[] = [];
  for (const p of parts) out.push(p.length >> 8, p.length & 0xff, ...p);
  return Uint8Array.from(out);
}

function nameBytes(name: string): Uint8Array {
  const b = Buffer.from(name, 'utf8');
  if (b.length === 0 || b.length > NAME_MAX_BYTES) {
    throw new SealnetError('KEY_INVALID', `node name of ${b.length} bytes in a post-quantum transcript (1..253)`);
  }
  return b;
}

function hash32(h: Uint8Array, what: string): Uint8Array {
  if (h.length !== 32) throw new SealnetError('KEY_INVALID', `${what} has ${h.length} bytes, expected 32`);
  return h;
}

function checkRenewalId(id: number): void {
  if (!Number.isSafeInteger(id) || id < 0) {
    throw new SealnetError('KEY_INVALID', `renewal id ${String(id)} is not a non-negative safe integer`);
  }
}
