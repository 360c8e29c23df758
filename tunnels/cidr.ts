/**
 * Pure IP/CIDR helpers: parsing, canonical form, containment and overlap. IPv4 and IPv6.
 * Addresses are handled as bigint so both families share one code path.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** A parsed prefix. */
export interface Cidr {
  readonly family: 4 | 6;
  readonly network: bigint;
  readonly prefixLength: number;
}

/** Parses an IP address to (family, value); undefined when it is not an address. */
export function parseIP(text: string): { family: 4 | 6; value: bigint } | undefined {
  if (isIPv4(text)) {
    const parts = text.split('.').map(Number);
    let v = 0n;
    for (const p of parts) v = (v << 8n) | BigInt(p);
    return { family: 4, value: v };
  }
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

/** Formats an address value of the given family (IPv6 in RFC 5952 compressed form). */
export function formatIP(family: 4 | 6, value: bigint): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join('.');
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
 */
export function parseCidr(text: string, opts: { strict?: boolean } = {}): Cidr | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const addr = parseIP(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (addr === undefined || !/^\d{1,3}$/.test(lenText)) return undefined;
  const prefixLength = Number(lenText);
  const bits = addr.family === 4 ? 32 : 128;
  if (prefixLength > bits) return undefined;
  const mask = prefixMask(addr.family, prefixLength);
  const network = addr.value & mask;
  if (opts.strict === true && network !== addr.value) return undefined;
  return { family: addr.family, network, prefixLength };
}

function prefixMask(family: 4 | 6, prefixLength: number): bigint {
  const bits = BigInt(family === 4 ? 32 : 128);
  const all = (1n << bits) - 1n;
  return prefixLength === 0 ? 0n : (all >> (bits - BigInt(prefixLength))) << (bits - BigInt(prefixLength));
}

/** Canonical text of a prefix: network address + length. */
export function formatCidr(c: Cidr): string {
  return `${formatIP(c.family, c.network)}/${c.prefixLength}`;
}

/** Canonicalises `addr/len` (clearing host bits); undefined if malformed. */
export function canonicalCidr(text: string): string | undefined {
  const c = parseCidr(text);
  return c === undefined ? undefined : formatCidr(c);
}

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
