/**
 * The one IP/prefix module: parsing, canonical text, containment and overlap, and the byte forms
 * netlink, XFRM and BPF need. IPv4 and IPv6; addresses are bigint values so both families share
 * one code path. One prefix type ({@link Cidr}); one formatter (RFC 5952, lowercase, longest
 * zero run compressed, IPv4-mapped and IPv4-compatible addresses in the mixed form that
 * `inet_ntop`, iproute2 and `wg` print). Parsing is strict: no zone ids, no brackets, no
 * leading zeros in IPv4 parts or prefix lengths; whether host bits are rejected or cleared is
 * said at every call ({@link HostBits}).
 */
import { isIPv6 } from 'node:net';

/** Address family, as sealnet spells it. */
export type Family = 4 | 6;

/**
 * What {@link parseCidr} does with host bits set past the prefix length: `reject` (the input
 * must be a network address: config, kernel route destinations) or `clear` (normalise).
 */
export type HostBits = 'reject' | 'clear';

/** A parsed prefix. */
export interface Cidr {
  readonly family: 4 | 6;
  readonly network: bigint;
  readonly prefixLength: number;
}

/** Parses an IP address to (family, value); undefined when it is not an address. */
export function parseIP(text: string): { family: 4 | 6; value: bigint } | undefined {
  const v4 = parseIPv4(text);
  if (v4 !== undefined) return { family: 4, value: BigInt(v4) };
  if (isIPv6(text) && !text.includes('%')) {
    let t = text;
    // Embedded IPv4 tail (::ffff:1.2.3.4) → two hextets.
    const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(t);
    if (v4?.[1] !== undefined) {
      const four = parseIP(v4[1]);
      if (four === undefined) return undefined;
      const hi = Number(four.value >> 16n).toString(16);
      const lo = Number(four.value & 0xffffn).toString(16);
      t = t.slice(0, t.length - v4[1].length) + `${hi}:${lo}`;
    }
    const [head = '', tail] = t.split('::');
    const h = head === '' ? [] : head.split(':');
    const tl = tail === undefined || tail === '' ? [] : tail.split(':');
    const fill = tail === undefined ? 0 : 8 - h.length - tl.length;
    const groups = [...h, ...Array<string>(fill).fill('0'), ...tl];
    if (groups.length !== 8) return undefined;
    let v = 0n;
    for (const g of groups) v = (v << 16n) | BigInt(parseInt(g, 16));
    return { family: 6, value: v };
  }
  return undefined;
}

/** Dotted-quad IPv4 (no leading zeros, each part 0–255) → its value; undefined otherwise. */
function parseIPv4(text: string): number | undefined {
  if (text.length < 7 || text.length > 15) return undefined;
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i <= text.length; i++) {
    const ch = i === text.length ? 46 : text.charCodeAt(i);
    if (ch === 46) {
      if (digits === 0 || part > 255) return undefined;
      value = value * 256 + part;
      part = 0;
      digits = 0;
      if (i < text.length && ++dots > 3) return undefined;
      continue;
    }
    if (ch < 48 || ch > 57 || (digits === 1 && part === 0)) return undefined;
    part = part * 10 + (ch - 48);
    digits++;
  }
  return dots === 3 ? value : undefined;
}

/** Formats an address value of the given family (IPv6 in RFC 5952 compressed form). */
export function formatIP(family: 4 | 6, value: bigint): string {
  if (family === 4) {
    const n = Number(value & 0xffffffffn);
    return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  // Longest run of zero groups (length ≥ 2) becomes "::".
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  // inet_ntop prints IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) in mixed form.
  if (bestStart === 0 && (bestLen === 6 || (bestLen === 5 && groups[5] === 0xffff))) {
    const v4 = Number(value & 0xffffffffn);
    return `::${bestLen === 5 ? 'ffff:' : ''}${formatIP(4, BigInt(v4))}`;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/**
 * Parses `addr/len`; undefined for anything malformed. `hostBits` says what host bits set past
 * the prefix length mean: `reject` → undefined, `clear` → cleared.
 *
 * Results are memoised (a plan at 5,000 nodes sorts and compares the same prefixes hundreds of
 * thousands of times); the cache is bounded and {@link Cidr} is immutable.
 */
export function parseCidr(text: string, opts: { readonly hostBits: HostBits }): Cidr | undefined {
  const strict = opts.hostBits === 'reject';
  const hit = cidrCache.get(text);
  if (hit !== undefined) return hit === null || (strict && !hit.exact) ? undefined : hit.cidr;
  const parsed = parseCidrUncached(text);
  if (cidrCache.size >= CIDR_CACHE_MAX) cidrCache.clear();
  cidrCache.set(text, parsed ?? null);
  return parsed === undefined || (strict && !parsed.exact) ? undefined : parsed.cidr;
}

const CIDR_CACHE_MAX = 1 << 16;
const cidrCache = new Map<string, { cidr: Cidr; exact: boolean } | null>();

function parseCidrUncached(text: string): { cidr: Cidr; exact: boolean } | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const addr = parseIP(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (addr === undefined || !/^(0|[1-9][0-9]{0,2})$/.test(lenText)) return undefined;
  const prefixLength = Number(lenText);
  const bits = addr.family === 4 ? 32 : 128;
  if (prefixLength > bits) return undefined;
  const network = addr.value & prefixMask(addr.family, prefixLength);
  return { cidr: { family: addr.family, network, prefixLength }, exact: network === addr.value };
}

const MASKS: Readonly<Record<4 | 6, readonly bigint[]>> = {
  4: Array.from({ length: 33 }, (_, n) => (n === 0 ? 0n : (((1n << 32n) - 1n) >> BigInt(32 - n)) << BigInt(32 - n))),
  6: Array.from({ length: 129 }, (_, n) =>
    n === 0 ? 0n : (((1n << 128n) - 1n) >> BigInt(128 - n)) << BigInt(128 - n),
  ),
};

function prefixMask(family: 4 | 6, prefixLength: number): bigint {
  return MASKS[family][prefixLength]!;
}

/** Canonical text of a prefix: network address + length. */
export function formatCidr(c: Cidr): string {
  return `${formatIP(c.family, c.network)}/${c.prefixLength}`;
}

/** Canonicalises `addr/len` (clearing host bits); undefined if malformed. */
export function canonicalCidr(text: string): string | undefined {
  const hit = canonicalCache.get(text);
  if (hit !== undefined || canonicalCache.has(text)) return hit;
  const c = parseCidr(text, { hostBits: 'clear' });
  const out = c === undefined ? undefined : formatCidr(c);
  if (canonicalCache.size >= CIDR_CACHE_MAX) canonicalCache.clear();
  canonicalCache.set(text, out);
  return out;
}

const canonicalCache = new Map<string, string | undefined>();

/** True if the two prefixes share any address. */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const len = Math.min(a.prefixLength, b.prefixLength);
  const m = prefixMask(a.family, len);
  return (a.network & m) === (b.network & m);
}

/** True if `address` lies inside `cidr`. */
export function cidrContains(cidr: Cidr, address: string): boolean {
  const a = parseIP(address);
  if (a === undefined || a.family !== cidr.family) return false;
  return (a.value & prefixMask(cidr.family, cidr.prefixLength)) === cidr.network;
}

/** Sort comparator for canonical CIDR strings: family, then network, then length. */
export function compareCidrs(a: string, b: string): number {
  const ca = parseCidr(a, { hostBits: 'clear' });
  const cb = parseCidr(b, { hostBits: 'clear' });
  if (ca === undefined || cb === undefined) return a < b ? -1 : a > b ? 1 : 0;
  if (ca.family !== cb.family) return ca.family - cb.family;
  if (ca.network !== cb.network) return ca.network < cb.network ? -1 : 1;
  return ca.prefixLength - cb.prefixLength;
}

/** Canonical text of an address (unchanged when it is not one). */
export function canonicalIP(text: string): string {
  const ip = parseIP(text);
  return ip === undefined ? text : formatIP(ip.family, ip.value);
}

// --- byte forms (rtnetlink, XFRM, BPF map keys) -------------------------------------------------

/** Linux `AF_INET` / `AF_INET6`, as netlink messages carry them. */
export const AF_INET = 2;
export const AF_INET6 = 10;

/** An address as raw bytes (4 or 16, network order). */
export interface IpBytes {
  readonly family: Family;
  readonly bytes: Buffer;
}

/** A prefix as bytes: network address with the host bits zero, plus the prefix length. */
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

/** Network-order bytes of an address value. */
export function valueToBytes(family: Family, value: bigint): Buffer {
  const out = Buffer.alloc(family === 4 ? 4 : 16);
  let v = value;
  for (let i = out.length - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** The address value of 4 or 16 network-order bytes. */
export function bytesToValue(bytes: Uint8Array): { family: Family; value: bigint } {
  if (bytes.length !== 4 && bytes.length !== 16)
    throw new RangeError(`an IP address has 4 or 16 bytes, not ${bytes.length}`);
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return { family: bytes.length === 4 ? 4 : 6, value: v };
}

/** Parses an address to its bytes; undefined if it is not one. */
export function parseIpBytes(text: string): IpBytes | undefined {
  const ip = parseIP(text);
  return ip === undefined ? undefined : { family: ip.family, bytes: valueToBytes(ip.family, ip.value) };
}

/** Parses `addr/len` to its byte form (see {@link parseCidr} for `hostBits`). */
export function parseCidrBytes(text: string, opts: { readonly hostBits: HostBits }): IpPrefix | undefined {
  const c = parseCidr(text, opts);
  return c === undefined
    ? undefined
    : { family: c.family, bytes: valueToBytes(c.family, c.network), prefixLength: c.prefixLength };
}

/** Formats 4 or 16 address bytes canonically (the one formatter, {@link formatIP}). */
export function formatIpBytes(bytes: Uint8Array): string {
  const ip = bytesToValue(bytes);
  return formatIP(ip.family, ip.value);
}

/** Formats a prefix given as bytes as canonical `addr/len`. */
export function formatCidrBytes(bytes: Uint8Array, prefixLength: number): string {
  return `${formatIpBytes(bytes)}/${prefixLength}`;
}
