/**
 * The metadata file stored beside each key: public key, creation time and epoch, all public.
 * JSON with a version field, so a later format can be told apart.
 */
import { constants as fsc } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { errnoCode } from './atomicfile.js';
import { tryParsePublicKey, type PublicKey } from './keys.js';

/** Which key: WireGuard's static key or the X25519 key IPsec SA keys are derived from. */
export type KeyKind = 'wireguard' | 'ipsec';

/** Metadata stored next to a key. */
export interface KeyMeta {
  readonly createdAt: Date;
  /** Monotonic key epoch, bumped by every rotation. */
  readonly epoch: number;
}

/** Outcome of reading a metadata file. `invalid` keeps the epoch if one could be read. */
export type MetaRead =
  | { readonly state: 'ok'; readonly publicKey: PublicKey; readonly meta: KeyMeta }
  | { readonly state: 'missing' }
  | { readonly state: 'invalid'; readonly reason: string; readonly epoch: number | undefined };

const META_VERSION = 1;
const MAX_META_FILE_BYTES = 4096;

/** True for an epoch value: a non-negative safe integer. */
export function isValidEpoch(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

/** The metadata file content. */
export function encodeMeta(kind: KeyKind, publicKey: PublicKey, meta: KeyMeta): Uint8Array {
  const doc = {
    version: META_VERSION,
    kind,
    publicKey,
    createdAt: meta.createdAt.toISOString(),
    epoch: meta.epoch,
  };
  return new TextEncoder().encode(`${JSON.stringify(doc, undefined, 2)}\n`);
}

/** Reads and validates a metadata file; never throws (an unusable file is `invalid`). */
export async function readMetaFile(path: string, kind: KeyKind): Promise<MetaRead> {
  let text: string;
  let fh: FileHandle;
  try {
    fh = await open(path, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { state: 'missing' };
    return { state: 'invalid', reason: `cannot open: ${errnoCode(err) ?? 'error'}`, epoch: undefined };
  }
  try {
    const buf = new Uint8Array(MAX_META_FILE_BYTES + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    if (bytesRead > MAX_META_FILE_BYTES) return { state: 'invalid', reason: 'file too large', epoch: undefined };
    text = new TextDecoder().decode(buf.subarray(0, bytesRead));
  } catch (err) {
    return { state: 'invalid', reason: `cannot read: ${errnoCode(err) ?? 'error'}`, epoch: undefined };
  } finally {
    await fh.close();
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return { state: 'invalid', reason: 'not JSON', epoch: undefined };
  }
  if (typeof doc !== 'object' || doc === null)
    return { state: 'invalid', reason: 'not a JSON object', epoch: undefined };
  const d = doc as Record<string, unknown>;
  const epoch = isValidEpoch(d['epoch']) ? d['epoch'] : undefined;
  if (d['version'] !== META_VERSION)
    return { state: 'invalid', reason: `version ${String(d['version'])}, want ${META_VERSION}`, epoch };
  if (d['kind'] !== kind) return { state: 'invalid', reason: `kind ${String(d['kind'])}, want ${kind}`, epoch };
  if (epoch === undefined) return { state: 'invalid', reason: 'epoch is not a non-negative integer', epoch };
  const createdAt = typeof d['createdAt'] === 'string' ? new Date(d['createdAt']) : undefined;
  if (createdAt === undefined || Number.isNaN(createdAt.getTime()))
    return { state: 'invalid', reason: 'createdAt is not a date', epoch };
  const pub = typeof d['publicKey'] === 'string' ? tryParsePublicKey(d['publicKey']) : undefined;
  if (pub === undefined || !pub.ok) return { state: 'invalid', reason: `publicKey: ${pub?.error ?? 'missing'}`, epoch };
  return { state: 'ok', publicKey: pub.key, meta: { createdAt, epoch } };
}
