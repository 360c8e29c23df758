/**
 * Netlink framing shared by the XFRM encoder and decoder: host-order integers, 4-byte alignment,
 * and message assembly (header, fixed payload, attributes). Pure.
 */
import { endianness } from 'node:os';
import { LAYOUT, NL_ALIGNTO } from './xfrm-layout.js';

const L = LAYOUT;

/** True on little-endian hosts (x86_64, arm64): netlink integers use host order. */
export const HOST_LE = endianness() === 'LE';

// --- host-order integer access -------------------------------------------------------------

/** Writes a host-order u16. */
export function putU16(buf: Buffer, off: number, v: number): void {
  if (HOST_LE) buf.writeUInt16LE(v, off);
  else buf.writeUInt16BE(v, off);
}
/** Writes a host-order u32. */
export function putU32(buf: Buffer, off: number, v: number): void {
  if (HOST_LE) buf.writeUInt32LE(v >>> 0, off);
  else buf.writeUInt32BE(v >>> 0, off);
}
/** Writes a host-order u64. */
export function putU64(buf: Buffer, off: number, v: bigint): void {
  if (HOST_LE) buf.writeBigUInt64LE(v, off);
  else buf.writeBigUInt64BE(v, off);
}
/** Reads a host-order u16. */
export function getU16(buf: Buffer, off: number): number {
  return HOST_LE ? buf.readUInt16LE(off) : buf.readUInt16BE(off);
}
/** Reads a host-order u32. */
export function getU32(buf: Buffer, off: number): number {
  return HOST_LE ? buf.readUInt32LE(off) : buf.readUInt32BE(off);
}
/** Reads a host-order s32. */
export function getS32(buf: Buffer, off: number): number {
  return HOST_LE ? buf.readInt32LE(off) : buf.readInt32BE(off);
}
/** Reads a host-order u64. */
export function getU64(buf: Buffer, off: number): bigint {
  return HOST_LE ? buf.readBigUInt64LE(off) : buf.readBigUInt64BE(off);
}

/** Rounds up to the netlink alignment. */
export function nlAlign(n: number): number {
  return (n + NL_ALIGNTO - 1) & ~(NL_ALIGNTO - 1);
}

/** One netlink attribute to append. */
export interface NlAttr {
  readonly type: number;
  readonly data: Buffer;
}

/** Builds one netlink message: header, fixed payload, attributes (each 4-aligned). */
export function buildMessage(opts: {
  type: number;
  flags: number;
  seq: number;
  payload: Buffer;
  attrs?: readonly NlAttr[];
}): Buffer {
  const hdr = L.nlmsghdr.size;
  let len = hdr + nlAlign(opts.payload.length);
  for (const a of opts.attrs ?? []) len += nlAlign(L.nlattr.size + a.data.length);
  const buf = Buffer.alloc(len);
  const h = L.nlmsghdr.fields;
  putU32(buf, h.nlmsg_len[0], len);
  putU16(buf, h.nlmsg_type[0], opts.type);
  putU16(buf, h.nlmsg_flags[0], opts.flags);
  putU32(buf, h.nlmsg_seq[0], opts.seq);
  putU32(buf, h.nlmsg_pid[0], 0);
  opts.payload.copy(buf, hdr);
  let off = hdr + nlAlign(opts.payload.length);
  for (const a of opts.attrs ?? []) {
    putU16(buf, off + L.nlattr.fields.nla_len[0], L.nlattr.size + a.data.length);
    putU16(buf, off + L.nlattr.fields.nla_type[0], a.type);
    a.data.copy(buf, off + L.nlattr.size);
    off += nlAlign(L.nlattr.size + a.data.length);
  }
  return buf;
}
