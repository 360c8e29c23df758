/**
 * A small pcap reader and leak classifier, pure (bytes in, data out), so that the proof of
 * encryption does not depend on tcpdump's text output. Reads classic pcap (both byte orders,
 * micro- and nanosecond timestamps) with Ethernet, Linux cooked (SLL, SLL2) or raw IP links,
 * and decodes Ethernet / 802.1Q / ARP / IPv4 / IPv6 / UDP / TCP / ICMP / ICMPv6 / ESP.
 */

/** One record of a pcap file. */
export interface PcapRecord {
  /** Seconds since the epoch, fractional. */
  readonly time: number;
  /** Length on the wire. */
  readonly origLen: number;
  /** Captured bytes (may be shorter than origLen with a snap length). */
  readonly data: Buffer;
}

/** A parsed pcap file. */
export interface PcapFile {
  readonly linkType: number;
  readonly snapLen: number;
  readonly records: readonly PcapRecord[];
  /** True when the file ended inside a record (the writer was killed mid-write). */
  readonly truncated: boolean;
}

/** Link-layer header types we decode (LINKTYPE_* numbers). */
export const LINKTYPE = { ETHERNET: 1, RAW: 101, LINUX_SLL: 113, LINUX_SLL2: 276 } as const;

/** Parses a classic pcap file. Throws on a bad header (pcapng is not supported). */
export function readPcap(buf: Buffer): PcapFile {
  if (buf.length < 24) throw new Error(`pcap: file too short for a global header (${buf.length} bytes)`);
  const magicLE = buf.readUInt32LE(0);
  let le: boolean;
  let nanos: boolean;
  if (magicLE === 0xa1b2c3d4 || magicLE === 0xa1b23c4d) {
    le = true;
    nanos = magicLE === 0xa1b23c4d;
  } else {
    const magicBE = buf.readUInt32BE(0);
    if (magicBE !== 0xa1b2c3d4 && magicBE !== 0xa1b23c4d) {
      const hint = magicLE === 0x0a0d0d0a ? ' (this is pcapng; write classic pcap)' : '';
      throw new Error(`pcap: bad magic 0x${magicLE.toString(16)}${hint}`);
    }
    le = false;
    nanos = magicBE === 0xa1b23c4d;
  }
  const u32 = (off: number): number => (le ? buf.readUInt32LE(off) : buf.readUInt32BE(off));
  const snapLen = u32(16);
  const linkType = u32(20) & 0x0fffffff;
  const records: PcapRecord[] = [];
  let off = 24;
  let truncated = false;
  while (off < buf.length) {
    if (off + 16 > buf.length) {
      truncated = true;
      break;
    }
    const sec = u32(off);
    const frac = u32(off + 4);
    const inclLen = u32(off + 8);
    const origLen = u32(off + 12);
    if (off + 16 + inclLen > buf.length) {
      truncated = true;
      break;
    }
    records.push({ time: sec + frac / (nanos ? 1e9 : 1e6), origLen, data: buf.subarray(off + 16, off + 16 + inclLen) });
    off += 16 + inclLen;
  }
  return { linkType, snapLen, records, truncated };
}

/** IP protocol numbers we name. */
export const IPPROTO = { ICMP: 1, TCP: 6, UDP: 17, ESP: 50, ICMPV6: 58 } as const;

/** An IP header quoted inside an ICMP error. */
export interface QuotedHeader {
  readonly src: string;
  readonly dst: string;
  readonly proto: number;
}

/** What one frame contains, as far as we decode it. */
export interface DecodedPacket {
  readonly etherType: number | undefined;
  readonly l3: 'ipv4' | 'ipv6' | 'arp' | 'other' | 'malformed';
  readonly src?: string;
  readonly dst?: string;
  /** Upper-layer protocol (after IPv6 extension headers). */
  readonly proto?: number;
  /** A non-first IPv4/IPv6 fragment: no transport header. */
  readonly fragment?: boolean;
  readonly srcPort?: number;
  readonly dstPort?: number;
  /** Transport payload (UDP/TCP data) as a view into the frame. */
  readonly payload?: Buffer;
  readonly icmpType?: number;
  readonly icmpCode?: number;
  /** The header quoted by an ICMP / ICMPv6 error message. */
  readonly quoted?: QuotedHeader;
  /** ARP sender / target protocol addresses. */
  readonly arpSender?: string;
  readonly arpTarget?: string;
}

/** Decodes one captured frame of the given link type. Never throws. */
export function decodePacket(data: Buffer, linkType: number): DecodedPacket {
  try {
    let etherType: number;
    let off: number;
    if (linkType === LINKTYPE.ETHERNET) {
      if (data.length < 14) return { etherType: undefined, l3: 'malformed' };
      etherType = data.readUInt16BE(12);
      off = 14;
      while ((etherType === 0x8100 || etherType === 0x88a8) && data.length >= off + 4) {
        etherType = data.readUInt16BE(off + 2);
        off += 4;
      }
    } else if (linkType === LINKTYPE.LINUX_SLL) {
      if (data.length < 16) return { etherType: undefined, l3: 'malformed' };
      etherType = data.readUInt16BE(14);
      off = 16;
    } else if (linkType === LINKTYPE.LINUX_SLL2) {
      if (data.length < 20) return { etherType: undefined, l3: 'malformed' };
      etherType = data.readUInt16BE(0);
      off = 20;
    } else if (linkType === LINKTYPE.RAW) {
      const v = (data[0] ?? 0) >> 4;
      etherType = v === 6 ? 0x86dd : 0x0800;
      off = 0;
    } else {
      return { etherType: undefined, l3: 'other' };
    }
    if (etherType === 0x0800) return decodeIPv4(data, off, etherType);
    if (etherType === 0x86dd) return decodeIPv6(data, off, etherType);
    if (etherType === 0x0806) return decodeArp(data, off, etherType);
    return { etherType, l3: 'other' };
  } catch {
    return { etherType: undefined, l3: 'malformed' };
  }
}

function ipv4String(b: Buffer, off: number): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

function ipv6String(b: Buffer, off: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(b.readUInt16BE(off + i * 2).toString(16));
  // RFC 5952: compress the longest run (length >= 2) of zero groups.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLen).join(':')}`;
}

function decodeIPv4(data: Buffer, off: number, etherType: number): DecodedPacket {
  if (data.length < off + 20 || (data[off] ?? 0) >> 4 !== 4) return { etherType, l3: 'malformed' };
  const ihl = ((data[off] ?? 0) & 0x0f) * 4;
  const totalLen = data.readUInt16BE(off + 2);
  const fragField = data.readUInt16BE(off + 6);
  const proto = data[off + 9] ?? 0;
  const src = ipv4String(data, off + 12);
  const dst = ipv4String(data, off + 16);
  const fragment = (fragField & 0x1fff) !== 0;
  // The captured frame may carry Ethernet padding past the IP datagram; cut at totalLen.
  const end = Math.min(data.length, off + Math.max(totalLen, ihl));
  const base = { etherType, l3: 'ipv4' as const, src, dst, proto, fragment };
  if (fragment) return base;
  return { ...base, ...decodeTransport(data, off + ihl, end, proto, 4) };
}

const IPV6_EXT_HEADERS = new Set([0, 43, 60]);

function decodeIPv6(data: Buffer, off: number, etherType: number): DecodedPacket {
  if (data.length < off + 40 || (data[off] ?? 0) >> 4 !== 6) return { etherType, l3: 'malformed' };
  const payloadLen = data.readUInt16BE(off + 4);
  let next = data[off + 6] ?? 0;
  const src = ipv6String(data, off + 8);
  const dst = ipv6String(data, off + 24);
  const end = Math.min(data.length, off + 40 + payloadLen);
  let p = off + 40;
  let fragment = false;
  for (let guard = 0; guard < 8; guard++) {
    if (IPV6_EXT_HEADERS.has(next) && p + 2 <= end) {
      const len = ((data[p + 1] ?? 0) + 1) * 8;
      next = data[p] ?? 0;
      p += len;
    } else if (next === 44 && p + 8 <= end) {
      fragment = (data.readUInt16BE(p + 2) & 0xfff8) !== 0;
      next = data[p] ?? 0;
      p += 8;
    } else {
      break;
    }
  }
  const base = { etherType, l3: 'ipv6' as const, src, dst, proto: next, fragment };
  if (fragment) return base;
  return { ...base, ...decodeTransport(data, p, end, next, 6) };
}

function decodeTransport(data: Buffer, off: number, end: number, proto: number, family: 4 | 6): Partial<DecodedPacket> {
  if (proto === IPPROTO.UDP && off + 8 <= end) {
    return {
      srcPort: data.readUInt16BE(off),
      dstPort: data.readUInt16BE(off + 2),
      payload: data.subarray(off + 8, end),
    };
  }
  if (proto === IPPROTO.TCP && off + 20 <= end) {
    const dataOff = ((data[off + 12] ?? 0) >> 4) * 4;
    return {
      srcPort: data.readUInt16BE(off),
      dstPort: data.readUInt16BE(off + 2),
      payload: data.subarray(Math.min(off + dataOff, end), end),
    };
  }
  if ((proto === IPPROTO.ICMP || proto === IPPROTO.ICMPV6) && off + 4 <= end) {
    const icmpType = data[off] ?? 0;
    const icmpCode = data[off + 1] ?? 0;
    const isError = proto === IPPROTO.ICMP ? [3, 4, 5, 11, 12].includes(icmpType) : icmpType < 128;
    const quoted = isError ? decodeQuoted(data, off + 8, end, family) : undefined;
    return {
      icmpType,
      icmpCode,
      payload: data.subarray(off + 8 > end ? end : off + 8, end),
      ...(quoted ? { quoted } : {}),
    };
  }
  return {};
}

function decodeQuoted(data: Buffer, off: number, end: number, family: 4 | 6): QuotedHeader | undefined {
  if (family === 4 && off + 20 <= end && (data[off] ?? 0) >> 4 === 4) {
    return { src: ipv4String(data, off + 12), dst: ipv4String(data, off + 16), proto: data[off + 9] ?? 0 };
  }
  if (family === 6 && off + 40 <= end && (data[off] ?? 0) >> 4 === 6) {
    return { src: ipv6String(data, off + 8), dst: ipv6String(data, off + 24), proto: data[off + 6] ?? 0 };
  }
  return undefined;
}

function decodeArp(data: Buffer, off: number, etherType: number): DecodedPacket {
  // Ethernet/IPv4 ARP only: hlen 6, plen 4.
  if (data.length < off + 28 || data[off + 4] !== 6 || data[off + 5] !== 4) return { etherType, l3: 'arp' };
  return { etherType, l3: 'arp', arpSender: ipv4String(data, off + 14), arpTarget: ipv4String(data, off + 24) };
}
