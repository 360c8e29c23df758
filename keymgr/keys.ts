/**
 * X25519 keys as types: a public key is the canonical base64 text of a validated 32-byte
 * point, a private key is 32 raw bytes. Parsing is exact (one accepted spelling per key), so
 * comparing two `PublicKey` strings for equality is meaningful and the duplicate-key check in
 * the planner cannot be fooled by an alternative encoding of the same key.
 *
 * Key material never appears in an error message produced here.
 */
import { createHash } from 'node:crypto';
import _sodium from 'libsodium-wrappers';
import { SealnetError } from '../common/errors.js';

/** The libsodium-wrappers module object, usable once {@link sodiumReady} has resolved. */
export type Sodium = typeof _sodium;

/** Canonical standard base64 (44 chars, one `=`) of a validated 32-byte X25519 public key. */
export type PublicKey = string & { readonly __brand: 'PublicKey' };

/** 32 raw bytes of an X25519 private key (scalar). Zero it with {@link zeroKey} when done. */
export type PrivateKey = Uint8Array & { readonly __brand: 'PrivateKey' };

/** A matching private and public key. */
export interface KeyPair {
  readonly privateKey: PrivateKey;
  readonly publicKey: PublicKey;
}

/** Result of {@link tryParsePublicKey}. */
export type ParsePublicKeyResult =
  { readonly ok: true; readonly key: PublicKey } | { readonly ok: false; readonly error: string };

/** Length of an X25519 key in bytes. */
export const KEY_BYTES = 32;
/** Length of a key in standard base64 with padding. */
export const KEY_BASE64_CHARS = 44;

// The only module-level state: the memo of libsodium's one-time (idempotent) initialisation.
let readyPromise: Promise<Sodium> | undefined;

/** Resolves to libsodium once its WebAssembly module is initialised; call before the sync helpers. */
export function sodiumReady(): Promise<Sodium> {
  readyPromise ??= _sodium.ready.then(() => _sodium);
  return readyPromise;
}

/** libsodium for the synchronous helpers; throws if {@link sodiumReady} has not resolved yet. */
function sodiumSync(): Sodium {
  // The ESM build attaches the crypto functions to the module object only once `ready` resolved.
  if (typeof _sodium.memcmp !== 'function' || typeof _sodium.crypto_scalarmult_base !== 'function') {
    throw new SealnetError('INTERNAL', 'libsodium used before sodiumReady() resolved');
  }
  return _sodium;
}

/**
 * The X25519 u-coordinates of small order, exactly libsodium's `has_small_order` blacklist
 * (crypto_scalarmult/curve25519/ref10/x25519_ref10.c). Compared with the top bit masked, as
 * X25519 ignores bit 255, so each entry also covers its variant with the high bit set.
 * Multiplying any of them by a (clamped) scalar gives the all-zero shared secret.
 */
const LOW_ORDER_POINTS: readonly Uint8Array[] = [
  // 0 (order 4)
  new Uint8Array(32),
  // 1 (order 1)
  Uint8Array.from([1, ...new Array<number>(31).fill(0)]),
  // 325606250916557431795983626356110631294008115727848805560023387167927233504 (order 8)
  Uint8Array.from([
    0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d,
    0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00,
  ]),
  // 39382357235489614581723060781553021112529911719440698176882885853963445705823 (order 8)
  Uint8Array.from([
    0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44, 0x5c,
    0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57,
  ]),
  // p-1 (order 2)
  Uint8Array.from([0xec, ...new Array<number>(30).fill(0xff), 0x7f]),
  // p (= 0, order 4), non-canonical
  Uint8Array.from([0xed, ...new Array<number>(30).fill(0xff), 0x7f]),
  // p+1 (= 1, order 1), non-canonical
  Uint8Array.from([0xee, ...new Array<number>(30).fill(0xff), 0x7f]),
];

/** Every low-order public key encoding that is rejected: the blacklist, high bit clear and set. */
export function lowOrderPoints(): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const p of LOW_ORDER_POINTS) {
    out.push(Uint8Array.from(p));
    const high = Uint8Array.from(p);
    high[31] = (high[31] ?? 0) | 0x80;
    out.push(high);
  }
  return out;
}

/** True if `u` is on libsodium's small-order blacklist (bit 255 ignored); constant time. */
function hasSmallOrder(u: Uint8Array): boolean {
  let found = 0;
  for (const bad of LOW_ORDER_POINTS) {
    let diff = 0;
    for (let j = 0; j < 31; j++) diff |= (u[j] ?? 0) ^ (bad[j] ?? 0);
    diff |= ((u[31] ?? 0) & 0x7f) ^ (bad[31] ?? 0);
    found |= diff === 0 ? 1 : 0;
  }
  return found === 1;
}

/**
 * True if `u` is a canonical field element: bit 255 clear and u < p = 2^255 - 19. Every key
 * produced by X25519 is canonical; a non-canonical spelling denotes the same point as a
 * canonical one, so accepting it would let one key be published under two names.
 */
function isCanonicalU(u: Uint8Array): boolean {
  if (((u[31] ?? 0) & 0x80) !== 0) return false;
  // u >= p only when bytes 1..30 are 0xff, byte 31 is 0x7f and byte 0 >= 0xed.
  if (u[31] !== 0x7f) return true;
  for (let j = 30; j >= 1; j--) if (u[j] !== 0xff) return true;
  return (u[0] ?? 0) < 0xed;
}

const BASE64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const PAD = 0x3d; // '='
const NEWLINE = 0x0a;

/** 6-bit value of a standard base64 character code, or -1. */
function base64Value(code: number): number {
  if (code >= 0x41 && code <= 0x5a) return code - 0x41; // A-Z
  if (code >= 0x61 && code <= 0x7a) return code - 0x61 + 26; // a-z
  if (code >= 0x30 && code <= 0x39) return code - 0x30 + 52; // 0-9
  if (code === 0x2b) return 62; // +
  if (code === 0x2f) return 63; // /
  return -1;
}

/** Whitespace as JavaScript's `\s` knows it. */
function isSpace(code: number): boolean {
  return (
    (code >= 0x09 && code <= 0x0d) ||
    code === 0x20 ||
    code === 0x85 ||
    code === 0xa0 ||
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 ||
    code === 0x2029 ||
    code === 0x202f ||
    code === 0x205f ||
    code === 0x3000 ||
    code === 0xfeff
  );
}

/**
 * Decodes the exact standard-base64 spelling of 32 bytes, or returns why the input is not that.
 * The input is given as a length and a char-code accessor so that key files are decoded from
 * their bytes without ever becoming a (non-zeroable) JS string. `what` names the key in the
 * message ("public key"); the input itself is never quoted.
 */
function decodeKeyChars(length: number, at: (i: number) => number, what: string): Uint8Array | string {
  if (length === 0) return `${what} is empty`;
  for (let i = 0; i < length; i++) if (isSpace(at(i))) return `${what} contains whitespace`;
  if (length !== KEY_BASE64_CHARS) {
    return `${what} is ${length} characters, want ${KEY_BASE64_CHARS} (base64 of ${KEY_BYTES} bytes)`;
  }
  for (let i = 0; i < length; i++) {
    const c = at(i);
    if (c === 0x2d || c === 0x5f) {
      return `${what} uses the URL-safe base64 alphabet ('-' or '_'), want standard base64 ('+' and '/')`;
    }
  }
  const dataChars = KEY_BASE64_CHARS - 1;
  for (let i = 0; i < dataChars; i++) {
    const c = at(i);
    if (c === PAD) {
      let allPad = true;
      for (let j = i; j < length; j++) allPad &&= at(j) === PAD;
      return allPad
        ? `${what} has ${length - i} '=' padding characters, want 1 (base64 of ${KEY_BYTES} bytes)`
        : `${what} has '=' at position ${i + 1}, before the end`;
    }
    if (base64Value(c) < 0) return `${what} has a character that is not standard base64 at position ${i + 1}`;
  }
  if (at(dataChars) !== PAD) {
    return `${what} does not end with '=' (base64 of ${KEY_BYTES} bytes ends with exactly one '=' padding character)`;
  }
  // 43 characters carry 258 bits; the last character's 2 unused bits must be zero, or the
  // text is a second spelling of the same bytes (it would not survive decode + re-encode).
  if ((base64Value(at(dataChars - 1)) & 0x03) !== 0) {
    return `${what} is not canonical base64 (the last character's unused bits are not zero)`;
  }
  const out = new Uint8Array(KEY_BYTES);
  let acc = 0;
  let bits = 0;
  let n = 0;
  for (let i = 0; i < dataChars; i++) {
    acc = ((acc << 6) | base64Value(at(i))) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (acc >> bits) & 0xff;
    }
  }
  return out;
}

/** Encodes 32 bytes as 44 base64 character codes (43 + '='), written into `out` from offset 0. */
function encodeKeyChars(bytes: Uint8Array, out: Uint8Array): void {
  let o = 0;
  for (let i = 0; i < KEY_BYTES; i += 3) {
    const b0 = bytes[i] ?? 0;
    const b1 = bytes[i + 1] ?? 0;
    const b2 = bytes[i + 2] ?? 0;
    out[o++] = BASE64_ALPHABET.charCodeAt(b0 >> 2);
    out[o++] = BASE64_ALPHABET.charCodeAt(((b0 & 0x03) << 4) | (b1 >> 4));
    out[o++] = BASE64_ALPHABET.charCodeAt(((b1 & 0x0f) << 2) | (b2 >> 6));
    if (i + 2 < KEY_BYTES) out[o++] = BASE64_ALPHABET.charCodeAt(b2 & 0x3f);
  }
  out[o] = PAD;
}

/** Decodes key text given as a JS string. */
function decodeKeyText(text: string, what: string): Uint8Array | string {
  return decodeKeyChars(text.length, (i) => text.charCodeAt(i), what);
}

/** Why 32 bytes are not an acceptable public key, or undefined if they are. */
function publicKeyProblem(bytes: Uint8Array): string | undefined {
  if (hasSmallOrder(bytes)) return 'public key is a low-order point';
  if (!isCanonicalU(bytes)) return 'public key is not a canonical X25519 u-coordinate (it is not below 2^255-19)';
  return undefined;
}

/** Parses a public key, returning an error sentence instead of throwing. */
export function tryParsePublicKey(text: string): ParsePublicKeyResult {
  if (typeof text !== 'string') return { ok: false, error: 'public key is not a string' };
  if (validPublicKeys.has(text)) return { ok: true, key: text as PublicKey };
  const decoded = decodeKeyText(text, 'public key');
  if (typeof decoded === 'string') return { ok: false, error: decoded };
  const problem = publicKeyProblem(decoded);
  if (problem !== undefined) return { ok: false, error: problem };
  if (validPublicKeys.size >= VALID_KEYS_MAX) validPublicKeys.clear();
  validPublicKeys.add(text);
  return { ok: true, key: text as PublicKey };
}

/**
 * Public keys (never private ones) already found valid: every pass re-reads thousands of them
 * from annotations and `wg show dump`, and validating one is the same work every time. Bounded.
 */
const validPublicKeys = new Set<string>();
const VALID_KEYS_MAX = 1 << 15;

/**
 * Parses the exact base64 spelling of a valid X25519 public key: 44 characters of standard
 * base64 with one `=`, decoding to 32 bytes, canonical, not a low-order point.
 * @throws SealnetError `KEY_INVALID` naming what is wrong.
 */
export function parsePublicKey(text: string): PublicKey {
  const r = tryParsePublicKey(text);
  if (!r.ok) throw new SealnetError('KEY_INVALID', r.error);
  return r.key;
}

/** Makes a {@link PublicKey} from 32 raw bytes, validated like {@link parsePublicKey}. */
export function publicKeyFromBytes(bytes: Uint8Array): PublicKey {
  if (bytes.length !== KEY_BYTES) {
    throw new SealnetError('KEY_INVALID', `public key is ${bytes.length} bytes, want ${KEY_BYTES}`);
  }
  const problem = publicKeyProblem(bytes);
  if (problem !== undefined) throw new SealnetError('KEY_INVALID', problem);
  return Buffer.from(bytes).toString('base64') as PublicKey;
}

/**
 * Parses a private key from 32 raw bytes (copied) or its exact base64 spelling (the format of
 * `wg genkey`, without the newline). Rejects the all-zero key, which only a wiped or
 * never-written file holds.
 * @throws SealnetError `KEY_INVALID` naming what is wrong (never the key).
 */
export function parsePrivateKey(input: Uint8Array | string): PrivateKey {
  let bytes: Uint8Array;
  if (typeof input === 'string') {
    const decoded = decodeKeyText(input, 'private key');
    if (typeof decoded === 'string') throw new SealnetError('KEY_INVALID', decoded);
    bytes = decoded;
  } else {
    if (input.length !== KEY_BYTES) {
      throw new SealnetError('KEY_INVALID', `private key is ${input.length} bytes, want ${KEY_BYTES}`);
    }
    bytes = Uint8Array.from(input);
  }
  if (bytes.every((b) => b === 0)) throw new SealnetError('KEY_INVALID', 'private key is all zeros');
  return bytes as PrivateKey;
}

/**
 * The content of a private key file: base64 of the key and a newline, the format `wg genkey`
 * writes and `wg set <if> private-key <file>` reads. Returned as bytes (never a string) so the
 * caller can zero it after writing.
 */
export function encodePrivateKeyFile(priv: PrivateKey): Uint8Array {
  if (priv.length !== KEY_BYTES)
    throw new SealnetError('KEY_INVALID', `private key is ${priv.length} bytes, want ${KEY_BYTES}`);
  const out = new Uint8Array(KEY_BASE64_CHARS + 1);
  encodeKeyChars(priv, out);
  out[KEY_BASE64_CHARS] = NEWLINE;
  return out;
}

/**
 * Parses the content of a private key file: exactly the base64 of 32 bytes, optionally followed
 * by one newline. Decoded from the bytes directly; the content never becomes a JS string.
 * @throws SealnetError `KEY_INVALID` naming what is wrong (never the key).
 */
export function decodePrivateKeyFile(content: Uint8Array): PrivateKey {
  const length = content.length > 0 && content[content.length - 1] === NEWLINE ? content.length - 1 : content.length;
  const decoded = decodeKeyChars(length, (i) => content[i] ?? 0, 'private key');
  if (typeof decoded === 'string') throw new SealnetError('KEY_INVALID', decoded);
  try {
    return parsePrivateKey(decoded);
  } finally {
    decoded.fill(0);
  }
}

/** Clamps an X25519 scalar in place as RFC 7748 and `wg genkey` do. */
function clamp(scalar: Uint8Array): void {
  scalar[0] = (scalar[0] ?? 0) & 248;
  scalar[31] = ((scalar[31] ?? 0) & 127) | 64;
}

/** Generates a new keypair; the private key is clamped, as `wg genkey` writes it. */
export async function generateKeyPair(): Promise<KeyPair> {
  const sodium = await sodiumReady();
  const priv = sodium.randombytes_buf(KEY_BYTES);
  clamp(priv);
  return { privateKey: priv as PrivateKey, publicKey: publicKeyFromPrivate(priv as PrivateKey) };
}

/** Derives the public key (X25519 base-point multiplication). Requires {@link sodiumReady}. */
export function publicKeyFromPrivate(priv: PrivateKey): PublicKey {
  if (priv.length !== KEY_BYTES)
    throw new SealnetError('KEY_INVALID', `private key is ${priv.length} bytes, want ${KEY_BYTES}`);
  const pub = sodiumSync().crypto_scalarmult_base(priv);
  return publicKeyFromBytes(pub);
}

/** The 32 raw bytes of a public key (a fresh copy). */
export function publicKeyBytes(pub: PublicKey): Uint8Array {
  return new Uint8Array(Buffer.from(pub, 'base64'));
}

/** Constant-time equality of two public keys (`sodium.memcmp`). Requires {@link sodiumReady}. */
export function keysEqual(a: PublicKey, b: PublicKey): boolean {
  const x = publicKeyBytes(a);
  const y = publicKeyBytes(b);
  if (x.length !== KEY_BYTES || y.length !== KEY_BYTES) return false;
  return sodiumSync().memcmp(x, y);
}

/** A short, stable identifier of a public key for logs and status: hex of the first 8 bytes of SHA-256(key). */
export function fingerprint(pub: PublicKey): string {
  const hit = fingerprintCache.get(pub);
  if (hit !== undefined) return hit;
  const fp = createHash('sha256').update(publicKeyBytes(pub)).digest().subarray(0, 8).toString('hex');
  if (fingerprintCache.size >= FINGERPRINT_CACHE_MAX) fingerprintCache.clear();
  fingerprintCache.set(pub, fp);
  return fp;
}

/**
 * Fingerprints of public keys seen lately: a status check fingerprints every peer's key (5,000
 * SHA-256 runs per check at 5,000 nodes, a fifth of its cost). Public keys only; bounded (a
 * cleared cache only costs the hashes again).
 */
const fingerprintCache = new Map<PublicKey, string>();
const FINGERPRINT_CACHE_MAX = 65_536;

/** Overwrites a private key with zeros (`sodium.memzero`). Requires {@link sodiumReady}. */
export function zeroKey(priv: PrivateKey): void {
  sodiumSync().memzero(priv);
}
