/**
 * The two messages of a post-quantum pair exchange, as the peer agents will send them to each
 * other through the established tunnel (the transport is not built yet; issue 19): the
 * initiator's ciphertext and the responder's acknowledgement. Versioned JSON, bounded, decoded
 * strictly with the one JSON field reader: a message from a hostile peer gives an error value
 * naming the field, never an exception and never an echo of its content beyond a short quote.
 *
 *   {"v":1,"type":"pq-ciphertext","from","to","renewalId","forKemKeyId","binding","ciphertext"}
 *   {"v":1,"type":"pq-ack","from","to","renewalId","tag"}
 */
import { exactKeys, parseVersionedObject, readCount } from '../../common/json.js';
import { quoteShort } from '../../common/text.js';
import { CONFIRMATION_TAG_BYTES } from './kdf.js';
import { CIPHERTEXT_BYTES } from './mlkem.js';

/** Message format version. */
export const PQ_MESSAGE_VERSION = 1;
/** No message is larger (a ciphertext message is about 1.7 KB). */
export const PQ_MESSAGE_MAX_BYTES = 4096;

/** The initiator's ciphertext for the responder's current encapsulation key. */
export interface PqCiphertextMessage {
  readonly type: 'pq-ciphertext';
  readonly from: string;
  readonly to: string;
  readonly renewalId: number;
  /** mlkem.ts `encapsulationKeyId` of the key it was made for (64 hex). */
  readonly forKemKeyId: string;
  /** exchange.ts `pairBinding` as the initiator sees it (64 hex). */
  readonly binding: string;
  /** 1088 bytes. */
  readonly ciphertext: Uint8Array;
}

/** The responder's key confirmation. */
export interface PqAckMessage {
  readonly type: 'pq-ack';
  readonly from: string;
  readonly to: string;
  readonly renewalId: number;
  /** kdf.ts `confirmationTag`, 32 bytes. */
  readonly tag: Uint8Array;
}

/** Either message. */
export type PqMessage = PqCiphertextMessage | PqAckMessage;

/** Result of {@link decodePqMessage}. */
export type DecodePqMessageResult =
  { readonly ok: true; readonly message: PqMessage } | { readonly ok: false; readonly error: string };

const NODE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const HEX64 = /^[0-9a-f]{64}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The JSON text of a message (our own values; nothing is validated here). */
export function encodePqMessage(m: PqMessage): string {
  const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
  const head = { v: PQ_MESSAGE_VERSION, type: m.type, from: m.from, to: m.to, renewalId: m.renewalId };
  if (m.type === 'pq-ack') return JSON.stringify({ ...head, tag: b64(m.tag) });
  return JSON.stringify({
    ...head,
    forKemKeyId: m.forKemKeyId,
    binding: m.binding,
    ciphertext: b64(m.ciphertext),
  });
}

/**
 * Decodes a message from a peer agent. Never throws: an error value names the field and what
 * it must be. Checking that `from` is the peer the tunnel authenticated, and `to` is us, is the
 * caller's job (it knows both).
 */
export function decodePqMessage(text: string): DecodePqMessageResult {
  try {
    return { ok: true, message: decodeOrThrow(text) };
  } catch (err) {
    return { ok: false, error: `post-quantum message ${(err as Error).message}` };
  }
}

function decodeOrThrow(text: string): PqMessage {
  const o = parseVersionedObject(text, PQ_MESSAGE_MAX_BYTES, PQ_MESSAGE_VERSION);
  const head = {
    from: nodeName(o.from, 'from'),
    to: nodeName(o.to, 'to'),
    renewalId: readCount(o.renewalId, 'renewalId'),
  };
  if (o.type === 'pq-ack') {
    exactKeys(o, ['v', 'type', 'from', 'to', 'renewalId', 'tag'], [], 'message');
    return { type: 'pq-ack', ...head, tag: base64Exact(o.tag, 'tag', CONFIRMATION_TAG_BYTES) };
  }
  if (o.type === 'pq-ciphertext') {
    exactKeys(o, ['v', 'type', 'from', 'to', 'renewalId', 'forKemKeyId', 'binding', 'ciphertext'], [], 'message');
    return {
      type: 'pq-ciphertext',
      ...head,
      forKemKeyId: hex64(o.forKemKeyId, 'forKemKeyId'),
      binding: hex64(o.binding, 'binding'),
      ciphertext: base64Exact(o.ciphertext, 'ciphertext', CIPHERTEXT_BYTES),
    };
  }
  throw new Error(
    `type must be "pq-ciphertext" or "pq-ack", got ${typeof o.type === 'string' ? quoteShort(o.type) : typeof o.type}`,
  );
}

function nodeName(v: unknown, where: string): string {
  if (typeof v !== 'string' || !NODE_NAME.test(v)) {
    throw new Error(`${where} must be a node name, got ${typeof v === 'string' ? quoteShort(v) : typeof v}`);
  }
  return v;
}

function hex64(v: unknown, where: string): string {
  if (typeof v !== 'string' || !HEX64.test(v)) throw new Error(`${where} must be 64 lowercase hex digits`);
  return v;
}

/** Canonical padded base64 of exactly `bytes` bytes. */
function base64Exact(v: unknown, where: string, bytes: number): Uint8Array {
  const chars = 4 * Math.ceil(bytes / 3);
  if (typeof v !== 'string' || v.length !== chars || !BASE64.test(v)) {
    throw new Error(`${where} must be ${chars} characters of base64 (${bytes} bytes)`);
  }
  const b = Buffer.from(v, 'base64');
  if (b.length !== bytes || b.toString('base64') !== v) {
    throw new Error(`${where} must be canonical base64 of exactly ${bytes} bytes`);
  }
  return new Uint8Array(b);
}
