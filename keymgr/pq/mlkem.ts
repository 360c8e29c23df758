/**
 * ML-KEM-768 (FIPS 203) for the post-quantum pair secret (issue 19): key generation, the strict
 * codec of the encapsulation key a node publishes in an annotation, encapsulation and
 * decapsulation. The lattice arithmetic is `@noble/post-quantum` (see keymgr/README.md for why);
 * this module owns the edges: exact lengths, the FIPS 203 §7.2 modulus check done by our own
 * decoder before the library sees a byte, and errors that name the problem, never the key.
 *
 * Hostile input (a peer's annotation) goes through {@link tryParseEncapsulationKey}, which
 * returns a result and never throws; the throwing helpers are for our own, trusted values.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { SealnetError } from '../../common/errors.js';

/** FIPS 203 Table 3, ML-KEM-768: encapsulation key bytes (384·k + 32, k = 3). */
export const ENCAPSULATION_KEY_BYTES = 1184;
/** FIPS 203 Table 3, ML-KEM-768: decapsulation key bytes (the expanded form). */
export const DECAPSULATION_KEY_BYTES = 2400;
/** FIPS 203 Table 3, ML-KEM-768: ciphertext bytes. */
export const CIPHERTEXT_BYTES = 1088;
/** Shared secret bytes (all ML-KEM parameter sets). */
export const SHARED_SECRET_BYTES = 32;
/** Key generation seed bytes: d ‖ z (FIPS 203 Algorithm 19 inputs). */
export const KEM_SEED_BYTES = 64;
/** Length of the encapsulation key in padded standard base64 (1184 = 3·394 + 2: one `=`). */
export const ENCAPSULATION_KEY_BASE64_CHARS = 1580;
/** The KEM's name as reported in status and audit evidence. */
export const KEM_NAME = 'ML-KEM-768';

/** FIPS 203 modulus q. */
const Q = 3329;
/** The t̂ vector: k = 3 polynomials of 256 12-bit coefficients, 384 bytes each. */
const T_HAT_BYTES = 384 * 3;

/** Canonical base64 of a validated ML-KEM-768 encapsulation key (passes the modulus check). */
export type EncapsulationKey = string & { readonly __brand: 'EncapsulationKey' };

/** An expanded ML-KEM-768 decapsulation key (2400 bytes). Secret: wipe it with {@link zeroBytes}. */
export type DecapsulationKey = Uint8Array & { readonly __brand: 'DecapsulationKey' };

/** This node's ML-KEM-768 key pair. */
export interface KemKeyPair {
  readonly encapsulationKey: EncapsulationKey;
  readonly decapsulationKey: DecapsulationKey;
}

/** Result of {@link tryParseEncapsulationKey}. */
export type ParseEncapsulationKeyResult =
  | { readonly ok: true; readonly key: EncapsulationKey; readonly bytes: Uint8Array }
  | { readonly ok: false; readonly error: string };

/** What {@link encapsulate} gives the initiator: the ciphertext to send and the secret to keep. */
export interface Encapsulation {
  readonly ciphertext: Uint8Array;
  readonly sharedSecret: Uint8Array;
}

const BASE64_RE = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * Parses a peer's published encapsulation key: exactly 1580 characters of padded standard base64
 * (one spelling per key, so two equal keys are equal strings), decoding to exactly 1184 bytes,
 * every 12-bit coefficient of t̂ below q = 3329 (FIPS 203 §7.2 "modulus check": a key failing it
 * must be refused before encapsulation). Never throws; the error names the problem, not the key.
 */
export function tryParseEncapsulationKey(text: unknown): ParseEncapsulationKeyResult {
  if (typeof text !== 'string') return { ok: false, error: 'ML-KEM encapsulation key is not a string' };
  if (text.length !== ENCAPSULATION_KEY_BASE64_CHARS) {
    return {
      ok: false,
      error: `ML-KEM encapsulation key has ${text.length} characters, expected ${ENCAPSULATION_KEY_BASE64_CHARS}`,
    };
  }
  if (!BASE64_RE.test(text)) return { ok: false, error: 'ML-KEM encapsulation key is not standard base64' };
  const bytes = new Uint8Array(Buffer.from(text, 'base64'));
  if (bytes.length !== ENCAPSULATION_KEY_BYTES) {
    return {
      ok: false,
      error: `ML-KEM encapsulation key decodes to ${bytes.length} bytes, expected ${ENCAPSULATION_KEY_BYTES}`,
    };
  }
  // Node's decoder ignores non-zero trailing bits; re-encoding pins the one canonical spelling.
  if (Buffer.from(bytes).toString('base64') !== text) {
    return { ok: false, error: 'ML-KEM encapsulation key is not canonical base64' };
  }
  const bad = modulusViolation(bytes);
  if (bad !== undefined) {
    return {
      ok: false,
      error: `ML-KEM encapsulation key fails the FIPS 203 modulus check (coefficient ${bad} is not below ${Q})`,
    };
  }
  return { ok: true, key: text as EncapsulationKey, bytes };
}

/**
 * Parses one of our own encapsulation keys (a trusted value).
 * @throws SealnetError `KEY_INVALID` naming what is wrong.
 */
export function parseEncapsulationKey(text: string): EncapsulationKey {
  const r = tryParseEncapsulationKey(text);
  if (!r.ok) throw new SealnetError('KEY_INVALID', r.error);
  return r.key;
}

/**
 * FIPS 203 §7.2 input check, done with our own decoder: ByteDecode12 of the first 384·k bytes
 * (two little-endian 12-bit coefficients per 3 bytes) must give values below q, i.e. the key
 * must equal ByteEncode12(ByteDecode12(key)). Returns the index of the first offending
 * coefficient, or undefined when the key passes.
 */
export function modulusViolation(ek: Uint8Array): number | undefined {
  for (let i = 0, c = 0; i < T_HAT_BYTES; i += 3, c += 2) {
    const b0 = ek[i]!;
    const b1 = ek[i + 1]!;
    const b2 = ek[i + 2]!;
    if ((b0 | ((b1 & 0x0f) << 8)) >= Q) return c;
    if (((b1 >> 4) | (b2 << 4)) >= Q) return c + 1;
  }
  return undefined;
}

/** The raw 1184 bytes of a parsed encapsulation key. */
export function encapsulationKeyBytes(key: EncapsulationKey): Uint8Array {
  return new Uint8Array(Buffer.from(key, 'base64'));
}

/**
 * SHA-256 of the encapsulation key's bytes: the key's identity in the pair-secret transcript and
 * in the exchange messages ("this ciphertext is for that key"), 32 bytes.
 */
export function encapsulationKeyHash(key: EncapsulationKey): Uint8Array {
  return new Uint8Array(createHash('sha256').update(encapsulationKeyBytes(key)).digest());
}

/** Hex of {@link encapsulationKeyHash}: the id the exchange state machine compares. */
export function encapsulationKeyId(key: EncapsulationKey): string {
  return Buffer.from(encapsulationKeyHash(key)).toString('hex');
}

/**
 * Generates an ML-KEM-768 key pair (FIPS 203 Algorithm 19) from 64 fresh random bytes, or from
 * `seed` (d ‖ z) when given: the known-answer tests use that; production never passes one.
 */
export function generateKemKeyPair(seed?: Uint8Array): KemKeyPair {
  if (seed !== undefined && seed.length !== KEM_SEED_BYTES) {
    throw new SealnetError('KEY_INVALID', `ML-KEM seed has ${seed.length} bytes, expected ${KEM_SEED_BYTES}`);
  }
  const s = seed ?? new Uint8Array(randomBytes(KEM_SEED_BYTES));
  try {
    const { publicKey, secretKey } = ml_kem768.keygen(s);
    return {
      encapsulationKey: Buffer.from(publicKey).toString('base64') as EncapsulationKey,
      decapsulationKey: secretKey as DecapsulationKey,
    };
  } finally {
    if (seed === undefined) s.fill(0);
  }
}

/**
 * Encapsulates to a peer's (parsed, modulus-checked) key: a fresh 1088-byte ciphertext and the
 * 32-byte shared secret. `randomness` (m, 32 bytes) is for known-answer tests only.
 */
export function encapsulate(key: EncapsulationKey, randomness?: Uint8Array): Encapsulation {
  try {
    const { cipherText, sharedSecret } = ml_kem768.encapsulate(encapsulationKeyBytes(key), randomness);
    return { ciphertext: cipherText, sharedSecret };
  } catch (err) {
    throw new SealnetError('KEY_INVALID', 'ML-KEM encapsulation failed', { cause: err });
  }
}

/**
 * Decapsulates a peer's ciphertext with our key. A ciphertext of the right length always yields
 * 32 bytes: ML-KEM's implicit rejection turns a tampered one into a pseudo-random secret the
 * sender does not know, so a forgery shows up later as a failed key confirmation, not here.
 * @throws SealnetError `KEY_INVALID` when the ciphertext is not exactly 1088 bytes.
 */
export function decapsulate(ciphertext: Uint8Array, key: DecapsulationKey): Uint8Array {
  if (ciphertext.length !== CIPHERTEXT_BYTES) {
    throw new SealnetError(
      'KEY_INVALID',
      `ML-KEM ciphertext has ${ciphertext.length} bytes, expected ${CIPHERTEXT_BYTES}`,
    );
  }
  try {
    return ml_kem768.decapsulate(ciphertext, key);
  } catch (err) {
    throw new SealnetError('KEY_INVALID', 'ML-KEM decapsulation failed', { cause: err });
  }
}

/** Overwrites secret bytes (a decapsulation key, a shared secret) with zeros. */
export function zeroBytes(secret: Uint8Array): void {
  secret.fill(0);
}
