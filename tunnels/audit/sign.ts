/**
 * Ed25519 signatures over audit reports (libsodium `crypto_sign_detached`). The signed message
 * is a domain-separation prefix followed by the canonical JSON of the report without its
 * `signature` member; the signature carries the public key and its SHA-256 fingerprint.
 *
 * The signing key is a 32-byte seed, base64 on one line, in a 0600 file that is created when
 * missing (never overwritten) and refused when group or others can read it.
 */
import { createHash } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { chmod, mkdir, open } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { errnoCode, writeAtomic } from '../../keymgr/atomicfile.js';
import { sodiumReady } from '../../keymgr/keys.js';
import { SealnetError } from '../../common/errors.js';
import { canonicalJson } from './canonical.js';

/** Prefix of every signed message (a signature over anything else never verifies as a report). */
export const SIGNATURE_DOMAIN = 'sealnet-audit-report-v1\n';

/** The `signature` member of a report. */
export interface ReportSignature {
  readonly algorithm: 'ed25519';
  /** Raw 32-byte public key, standard base64. */
  readonly publicKey: string;
  /** `sha256:` + hex SHA-256 of the raw public key. */
  readonly publicKeyFingerprint: string;
  /** 64-byte detached signature, standard base64. */
  readonly value: string;
}

/** A loaded signing key. */
export interface SigningKey {
  readonly file: string;
  readonly created: boolean;
  readonly publicKey: Uint8Array;
  readonly fingerprint: string;
  /** Signs `message`; the secret key is expanded for the call and wiped afterwards. */
  sign(message: Uint8Array): Promise<Uint8Array>;
}

/** `sha256:<hex>` of a raw public key. */
export function keyFingerprint(publicKey: Uint8Array): string {
  return `sha256:${createHash('sha256').update(publicKey).digest('hex')}`;
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

/** Strict standard base64 of exactly `n` bytes; undefined otherwise. */
export function parseB64(text: string, n: number): Uint8Array | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return undefined;
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length !== n || bytes.toString('base64') !== text) return undefined;
  return new Uint8Array(bytes);
}

async function readSmall(file: string, what: string): Promise<{ text: string; mode: number }> {
  let fh;
  try {
    fh = await open(file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    throw new SealnetError(
      'KEYSTORE_IO',
      `cannot open ${what} ${file}${errnoCode(err) === undefined ? '' : ` (${errnoCode(err)})`}`,
      { cause: err },
    );
  }
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.size > 1024)
      throw new SealnetError('KEY_INVALID', `${what} ${file} is not a small regular file`);
    return { text: await fh.readFile('utf8'), mode: st.mode & 0o777 };
  } finally {
    await fh.close();
  }
}

/**
 * Loads the signing key from `file`, generating it (0600, in a 0700 directory) when missing,
 * plus `<file minus .key>.pub` with the public key for verifiers.
 */
export async function loadOrCreateSigningKey(fileIn: string): Promise<SigningKey> {
  const sodium = await sodiumReady();
  const file = resolve(fileIn);
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const seed = sodium.randombytes_buf(sodium.crypto_sign_SEEDBYTES);
  let created: boolean;
  try {
    created = await writeAtomic(dirname(file), basename(file), Buffer.from(`${b64(seed)}\n`), { how: 'create' });
  } finally {
    sodium.memzero(seed);
  }
  const { text, mode } = await readSmall(file, 'audit signing key');
  if ((mode & 0o077) !== 0)
    throw new SealnetError(
      'KEY_INVALID',
      `audit signing key ${file} has mode 0${mode.toString(8)}: others can read it; run chmod 600 ${file} (or use a new key)`,
    );
  const stored = parseB64(text.replace(/\n$/, ''), sodium.crypto_sign_SEEDBYTES);
  if (stored === undefined)
    throw new SealnetError(
      'KEY_INVALID',
      `audit signing key ${file} must hold one line: the base64 of a 32-byte Ed25519 seed`,
    );
  const pair = sodium.crypto_sign_seed_keypair(stored);
  sodium.memzero(pair.privateKey);
  const publicKey = pair.publicKey;
  const pubFile = file.replace(/\.key$/, '') + '.pub';
  if (pubFile !== file) {
    await writeAtomic(dirname(pubFile), basename(pubFile), Buffer.from(`${b64(publicKey)}\n`), {
      how: 'replace',
      secret: false,
    });
    await chmod(pubFile, 0o644);
  }
  return {
    file,
    created,
    publicKey,
    fingerprint: keyFingerprint(publicKey),
    async sign(message) {
      const kp = sodium.crypto_sign_seed_keypair(stored);
      try {
        return sodium.crypto_sign_detached(message, kp.privateKey);
      } finally {
        sodium.memzero(kp.privateKey);
      }
    },
  };
}

/** Reads a public key file (one line of base64, 32 bytes). */
export async function readPublicKeyFile(file: string): Promise<Uint8Array> {
  const { text } = await readSmall(file, 'public key');
  const key = parseB64(text.trim(), 32);
  if (key === undefined)
    throw new SealnetError(
      'KEY_INVALID',
      `public key file ${file} must hold one line: the base64 of a 32-byte Ed25519 public key`,
    );
  return key;
}

/** The bytes that are signed for a report body (the report without `signature`). */
export function signedMessage(body: object): Uint8Array {
  if ('signature' in body) throw new SealnetError('INTERNAL', 'the signed body must not contain the signature');
  return new TextEncoder().encode(SIGNATURE_DOMAIN + canonicalJson(body));
}

/** Signs a report body; returns the body with its `signature` member. */
export async function signReport<T extends object>(
  body: T,
  key: SigningKey,
): Promise<T & { signature: ReportSignature }> {
  const sig = await key.sign(signedMessage(body));
  return {
    ...body,
    signature: {
      algorithm: 'ed25519',
      publicKey: b64(key.publicKey),
      publicKeyFingerprint: key.fingerprint,
      value: b64(sig),
    },
  };
}

/** Checks a signature over a body; false for any mismatch (never throws for bad input). */
export async function checkSignature(body: object, sig: ReportSignature): Promise<boolean> {
  const sodium = await sodiumReady();
  const pk = parseB64(sig.publicKey, sodium.crypto_sign_PUBLICKEYBYTES);
  const value = parseB64(sig.value, sodium.crypto_sign_BYTES);
  if (
    pk === undefined ||
    value === undefined ||
    sig.algorithm !== 'ed25519' ||
    sig.publicKeyFingerprint !== keyFingerprint(pk)
  )
    return false;
  try {
    return sodium.crypto_sign_verify_detached(value, signedMessage(body), pk);
  } catch {
    return false;
  }
}
