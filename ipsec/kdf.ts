/**
 * Per-SA ESP keys without a cluster-wide secret.
 *
 * Both nodes of a pair hold an X25519 IPsec key; each computes the same shared secret
 * X25519(own private, peer public). Every SA — one direction of one pair, with one SPI, under
 * one pair of key epochs — gets its own key from HKDF-SHA256 (RFC 5869):
 *
 *   salt = srcPub ‖ dstPub                                  (sender's key first: binds the direction)
 *   info = "sealnet ipsec v1" ‖ u16 len ‖ src name ‖ u16 len ‖ dst name
 *          ‖ u32 SPI ‖ u32 src epoch ‖ u32 dst epoch ‖ u8 algorithm
 *   key‖salt = HKDF(IKM = shared secret, salt, info, keyBytes + 4)
 *
 * so A→B and B→A never share a key, a new SPI or epoch gives a new key, and no two SAs in a
 * cluster share a (key, nonce) space — the failure behind CVE-2024-28860. The all-zero shared
 * secret of a low-order peer key is refused.
 *
 * Per-boot freshness: when both nodes publish an IPsec generation (a random 32-bit value a node
 * draws when it starts with none of its SAs in the kernel: after a reboot or any loss of its
 * XFRM state), the label is "sealnet ipsec v2" and `info` ends with ‖ u32 src generation ‖ u32
 * dst generation. Everything else of an SA survives a reboot (static keys, names, epochs, so the
 * SPI too); without the generations a rebooted node would reinstall the same key and SPI with
 * its sequence number back at 1 — its peers drop that traffic as replays, and a rebooted
 * receiver accepts replays of traffic captured before. A pair where either node publishes no
 * generation (an agent from before generations) keeps the v1 derivation, so a rolling upgrade
 * never breaks a pair.
 */
import { createHmac } from 'node:crypto';
import {
  publicKeyBytes,
  publicKeyFromPrivate,
  sodiumReady,
  type PrivateKey,
  type PublicKey,
  type Sodium,
} from '../keymgr/keys.js';
import { SealnetError } from '../common/errors.js';
import { AEAD_SALT_BYTES, type AeadKeyBits } from '../tunnels/ports/xfrm-types.js';

const HASH_BYTES = 32;

/**
 * HKDF with SHA-256 (RFC 5869): extract, then expand to `length` bytes. An empty salt means
 * HashLen zero bytes, as the RFC says.
 */
export function hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  if (!Number.isInteger(length) || length < 1 || length > 255 * HASH_BYTES) {
    throw new SealnetError('INTERNAL', `HKDF-SHA256 output length ${length} is not in 1..${255 * HASH_BYTES}`);
  }
  const prk = createHmac('sha256', salt.length === 0 ? Buffer.alloc(HASH_BYTES) : salt)
    .update(ikm)
    .digest();
  const out = new Uint8Array(length);
  let prev: Buffer = Buffer.alloc(0);
  try {
    for (let i = 1, off = 0; off < length; i++) {
      const block = createHmac('sha256', prk).update(prev).update(info).update(Uint8Array.of(i)).digest();
      prev.fill(0);
      prev = block;
      out.set(block.subarray(0, Math.min(HASH_BYTES, length - off)), off);
      off += HASH_BYTES;
    }
  } finally {
    prk.fill(0);
    prev.fill(0);
  }
  return out;
}

/** Context string at the start of every `info`; a new version gets new keys. */
export const KDF_LABEL = 'sealnet ipsec v1';
/** The label of SAs between two nodes that both publish a generation. */
export const KDF_LABEL_GENERATIONS = 'sealnet ipsec v2';

/** Identifies one SA for key derivation (what both ends agree on without talking). */
export interface SaKeyContext {
  /** Sending node name. */
  readonly srcNode: string;
  /** Receiving node name. */
  readonly dstNode: string;
  readonly spi: number;
  /** Key epoch of the sender's / receiver's IPsec key. */
  readonly srcEpoch: number;
  readonly dstEpoch: number;
  /**
   * IPsec generations of the sender and the receiver (see the module comment): both set
   * (non-zero) or both 0/absent, never one of them.
   */
  readonly srcGeneration?: number | undefined;
  readonly dstGeneration?: number | undefined;
  readonly keyBits: AeadKeyBits;
}

/** Algorithm byte of `info`: the key size is bound into the derivation. */
const ALGORITHM_ID: Readonly<Record<AeadKeyBits, number>> = { 128: 1, 256: 2 };
/** Kubernetes node names are DNS subdomains, at most 253 bytes. */
const MAX_NAME_BYTES = 253;

function checkU32(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
    throw new SealnetError('INTERNAL', `${what} ${String(v)} is not a 32-bit unsigned integer`);
}

/** The HKDF `info` of an SA (see the module comment). */
export function saKeyInfo(ctx: SaKeyContext): Uint8Array {
  const src = Buffer.from(ctx.srcNode, 'utf8');
  const dst = Buffer.from(ctx.dstNode, 'utf8');
  for (const [name, bytes] of [
    [ctx.srcNode, src],
    [ctx.dstNode, dst],
  ] as const) {
    if (bytes.length === 0 || bytes.length > MAX_NAME_BYTES) {
      throw new SealnetError('INTERNAL', `node name "${name}" is ${bytes.length} bytes, want 1..${MAX_NAME_BYTES}`);
    }
  }
  if (ctx.srcNode === ctx.dstNode) throw new SealnetError('INTERNAL', `an SA from node ${ctx.srcNode} to itself`);
  checkU32(ctx.spi, 'SPI');
  checkU32(ctx.srcEpoch, 'source key epoch');
  checkU32(ctx.dstEpoch, 'destination key epoch');
  const srcGen = ctx.srcGeneration ?? 0;
  const dstGen = ctx.dstGeneration ?? 0;
  checkU32(srcGen, 'source generation');
  checkU32(dstGen, 'destination generation');
  if ((srcGen === 0) !== (dstGen === 0))
    throw new SealnetError(
      'INTERNAL',
      `SA ${ctx.srcNode} -> ${ctx.dstNode}: one generation is set and the other not (${srcGen}, ${dstGen})`,
    );
  const generations = srcGen !== 0;
  const alg = ALGORITHM_ID[ctx.keyBits];
  if (alg === undefined)
    throw new SealnetError('CONFIG_INVALID', `AES-GCM key size ${String(ctx.keyBits)} is not 128 or 256`);
  const label = Buffer.from(generations ? KDF_LABEL_GENERATIONS : KDF_LABEL, 'ascii');
  const out = Buffer.alloc(label.length + 2 + src.length + 2 + dst.length + 4 + 4 + 4 + 1 + (generations ? 8 : 0));
  let o = label.copy(out, 0);
  o = out.writeUInt16BE(src.length, o);
  o += src.copy(out, o);
  o = out.writeUInt16BE(dst.length, o);
  o += dst.copy(out, o);
  o = out.writeUInt32BE(ctx.spi, o);
  o = out.writeUInt32BE(ctx.srcEpoch, o);
  o = out.writeUInt32BE(ctx.dstEpoch, o);
  o = out.writeUInt8(alg, o);
  if (generations) {
    o = out.writeUInt32BE(srcGen, o);
    out.writeUInt32BE(dstGen, o);
  }
  return new Uint8Array(out);
}

/**
 * X25519 shared secret. Refuses the all-zero output (a low-order peer key), which would make
 * every SA key public.
 * @throws SealnetError `KEY_INVALID`.
 */
export function sharedSecret(sodium: Sodium, privateKey: PrivateKey, peer: PublicKey): Uint8Array {
  const peerBytes = publicKeyBytes(peer);
  let shared: Uint8Array;
  try {
    // libsodium itself fails on an all-zero result ("weak public key").
    shared = sodium.crypto_scalarmult(privateKey, peerBytes);
  } catch (err) {
    throw new SealnetError(
      'KEY_INVALID',
      'peer IPsec public key gives an all-zero X25519 shared secret (low-order point)',
      { cause: err },
    );
  }
  if (sodium.is_zero(shared)) {
    throw new SealnetError(
      'KEY_INVALID',
      'peer IPsec public key gives an all-zero X25519 shared secret (low-order point)',
    );
  }
  return shared;
}

/** Which end of the SA this node is. */
export type SaRole = 'sender' | 'receiver';

/** Inputs of {@link deriveSaKey}. */
export interface DeriveSaKeyOptions {
  /** This node's IPsec private key of the epoch the SA uses on this side. */
  readonly privateKey: PrivateKey;
  /** The peer's IPsec public key of the epoch the SA uses on the peer's side. */
  readonly peerPublicKey: PublicKey;
  /** Whether this node sends (outbound SA) or receives (inbound SA) with it. */
  readonly role: SaRole;
  readonly sa: SaKeyContext;
}

/**
 * The rfc4106 key material of one SA: AES key ‖ 4-byte salt (20 or 36 bytes). Both ends get the
 * same bytes: the sender with role `sender`, the receiver with role `receiver`. The caller zeroes
 * the result after use. Requires {@link sodiumReady} to have resolved.
 */
export function deriveSaKey(sodium: Sodium, opts: DeriveSaKeyOptions): Uint8Array {
  const info = saKeyInfo(opts.sa);
  const own = publicKeyBytes(publicKeyFromPrivate(opts.privateKey));
  const peer = publicKeyBytes(opts.peerPublicKey);
  const salt = opts.role === 'sender' ? Buffer.concat([own, peer]) : Buffer.concat([peer, own]);
  const shared = sharedSecret(sodium, opts.privateKey, opts.peerPublicKey);
  try {
    return hkdfSha256(shared, salt, info, opts.sa.keyBits / 8 + AEAD_SALT_BYTES);
  } finally {
    sodium.memzero(shared);
  }
}

/** {@link deriveSaKey} after waiting for libsodium. */
export async function deriveSaKeyAsync(opts: DeriveSaKeyOptions): Promise<Uint8Array> {
  return deriveSaKey(await sodiumReady(), opts);
}
