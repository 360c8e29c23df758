/**
 * Pure IP/CIDR helpers: parsing, canonical form, containment and overlap. IPv4 and IPv6.
 * Addresses are handled as bigint so both families share one code path.
 */
import { isIPv6 } from 'node:net';

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
  if (isIPv6(text)) {
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
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/**
 * Parses `addr/len` strictly. With `{ strict: true }` host bits must be zero; otherwise they
 * are cleared. Returns undefined for anything malformed.
 *
 * Results are memoised (a plan at 5,000 nodes sorts and compares the same prefixes hundreds of
 * thousands of times); the cache is bounded and {@link Cidr} is immutable.
 */
export function parseCidr(text: string, opts: { strict?: boolean } = {}): Cidr | undefined {
  const strict = opts.strict === true;
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
  if (addr === undefined || !/^\d{1,3}$/.test(lenText)) return undefined;
  const prefixLength = Number(lenText);
  const bits = addr.family === 4 ? 32 : 128;
  if (prefixLength > bits) return undefined;
  const network = addr.value & prefixMask(addr.family, prefixLength);
  return { cidr: { family: addr.family, network, prefixLength }, exact: network === addr.value };
}

const MASKS: Readonly<Record<4 | 6, readonly bigint[]>> = {
  4: Array.from({ length: 33 }, (_, n) => (n === 0 ? 0n : (((1n << 32n) - 1n) >> BigInt(32 - n)) << BigInt(32 - n))),
  6: Array.from({ length: 129 }, (_, n) => (n === 0 ? 0n : (((1n << 128n) - 1n) >> BigInt(128 - n)) << BigInt(128 - n))),
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
  const c = parseCidr(text);
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
  const ca = parseCidr(a);
  const cb = parseCidr(b);
  if (ca === undefined || cb === undefined) return a < b ? -1 : a > b ? 1 : 0;
  if (ca.family !== cb.family) return ca.family - cb.family;
  if (ca.network !== cb.network) return ca.network < cb.network ? -1 : 1;
  return ca.prefixLength - cb.prefixLength;
}
