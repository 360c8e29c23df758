/**
 * IP address and CIDR text <-> bytes, for talking to rtnetlink. Pure. Output is canonical:
 * dotted quad for IPv4, RFC 5952 for IPv6 (lowercase, longest zero run compressed, IPv4-mapped
 * addresses in mixed notation as `inet_ntop` and iproute2 print them).
 */
import { isIPv4, isIPv6 } from 'node:net';

/** Address family, as sealnet spells it. */
export type Family = 4 | 6;

/** Linux `AF_INET` / `AF_INET6`, as rtnetlink messages carry them. */
export const AF_INET = 2;
export const AF_INET6 = 10;

/** An address as raw bytes (4 or 16, network order). */
export interface IpBytes {
  readonly family: Family;
  readonly bytes: Buffer;
}

/** A prefix: network address bytes with the host bits zero, plus the prefix length. */
export interface IpPrefix extends IpBytes {
  readonly prefixLength: number;
}

/** The kernel's address family number for a sealnet family. */
export function afOf(family: Family): number {
  return family === 4 ? AF_INET : AF_INET6;
}

/** The sealnet family for a kernel address family number, or undefined for any other. */
export function familyOfAf(af: number | undefined): Family | undefined {
  if (af === AF_INET) return 4;
  if (af === AF_INET6) return 6;
  return undefined;
}

/** Parses an IPv4 or IPv6 address (no zone, no brackets). Undefined if it is not one. */
export function parseIp(text: string): IpBytes | undefined {
  if (isIPv4(text)) return { family: 4, bytes: Buffer.from(text.split('.').map(Number)) };
  if (!isIPv6(text) || text.includes('%')) return undefined;
  const bytes = Buffer.alloc(16);
  let tail = text;
  let v4: Buffer | undefined;
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.')) {
    v4 = Buffer.from(text.slice(lastColon + 1).split('.').map(Number));
    tail = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const [head = '', rest] = tail.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = rest === undefined || rest === '' ? [] : rest.split(':');
  const words = rest === undefined ? left : [...left, ...new Array<string>(8 - left.length - right.length).fill('0'), ...right];
  words.forEach((w, i) => bytes.writeUInt16BE(parseInt(w, 16), i * 2));
  if (v4 !== undefined) v4.copy(bytes, 12);
  return { family: 6, bytes };
}

/** Formats 4 or 16 address bytes canonically. */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length !== 16) throw new RangeError(`an IP address has 4 or 16 bytes, not ${bytes.length}`);
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const words = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2));
  const run = longestZeroRun(words);
  // inet_ntop prints IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) in mixed form.
  if (run.start === 0 && (run.length === 6 || (run.length === 5 && words[5] === 0xffff))) {
    return `::${run.length === 5 ? 'ffff:' : ''}${Array.from(b.subarray(12)).join('.')}`;
  }
  const hex = words.map((w) => w.toString(16));
  if (run.length < 2) return hex.join(':');
  return `${hex.slice(0, run.start).join(':')}::${hex.slice(run.start + run.length).join(':')}`;
}

/**
 * Parses `addr/len`. With `strict` (the default), host bits must be zero, as the kernel
 * requires for IPv4 route destinations; otherwise they are cleared.
 */
export function parseCidr(text: string, opts: { strict?: boolean } = {}): IpPrefix | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const ip = parseIp(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (ip === undefined || !/^(0|[1-9][0-9]{0,2})$/.test(lenText)) return undefined;
  const prefixLength = Number(lenText);
  if (prefixLength > ip.bytes.length * 8) return undefined;
  const network = maskBytes(ip.bytes, prefixLength);
  if (opts.strict !== false && !network.equals(ip.bytes)) return undefined;
  return { family: ip.family, bytes: network, prefixLength };
}

/** Formats a prefix as canonical `addr/len`. */
export function formatCidr(bytes: Uint8Array, prefixLength: number): string {
  return `${formatIp(bytes)}/${prefixLength}`;
}

/** Copy of `bytes` with every bit past `prefixLength` cleared. */
export function maskBytes(bytes: Uint8Array, prefixLength: number): Buffer {
  const out = Buffer.from(bytes);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, prefixLength - i * 8));
    out[i] = (out[i] ?? 0) & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

function longestZeroRun(words: readonly number[]): { start: number; length: number } {
  let best = { start: -1, length: 0 };
  let start = -1;
  for (let i = 0; i <= words.length; i++) {
    if (i < words.length && words[i] === 0) {
      if (start < 0) start = i;
      continue;
    }
    if (start >= 0 && i - start > best.length) best = { start, length: i - start };
    start = -1;
  }
  return best;
}
