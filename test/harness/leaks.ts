/**
 * The leak verdict over a pcap: every packet classified (WireGuard, ESP, plaintext pod
 * traffic, ARP, …), plaintext pod flows and tunnel packets counted per address pair, and
 * every packet searched for canary byte strings. Pure.
 */
import { decodePacket, IPPROTO, LINKTYPE, type DecodedPacket, type PcapFile } from './pcap.js';

/** A parsed CIDR for matching. */
interface Cidr {
  readonly family: 4 | 6;
  readonly bytes: Buffer;
  readonly bits: number;
}

function parseAddrBytes(s: string): { family: 4 | 6; bytes: Buffer } | undefined {
  if (s.includes(':')) {
    const [head = '', tail] = s.split('::');
    const h = head === '' ? [] : head.split(':');
    const t = tail === undefined || tail === '' ? [] : tail.split(':');
    const fill = tail === undefined ? 0 : 8 - h.length - t.length;
    const groups = [...h, ...Array<string>(Math.max(fill, 0)).fill('0'), ...t];
    if (groups.length !== 8) return undefined;
    const b = Buffer.alloc(16);
    groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16) & 0xffff, i * 2));
    return { family: 6, bytes: b };
  }
  const parts = s.split('.').map(Number);
  if (parts.length !== 4 || parts.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) return undefined;
  return { family: 4, bytes: Buffer.from(parts) };
}

function parseCidr(s: string): Cidr {
  const [addr = '', len] = s.split('/');
  const a = parseAddrBytes(addr);
  if (a === undefined) throw new Error(`bad CIDR ${s}`);
  const max = a.family === 4 ? 32 : 128;
  const bits = len === undefined ? max : Number(len);
  if (!Number.isInteger(bits) || bits < 0 || bits > max) throw new Error(`bad CIDR ${s}`);
  return { family: a.family, bytes: a.bytes, bits };
}

function inCidr(addr: string | undefined, cidrs: readonly Cidr[]): boolean {
  if (addr === undefined) return false;
  const a = parseAddrBytes(addr);
  if (a === undefined) return false;
  return cidrs.some((c) => {
    if (c.family !== a.family) return false;
    const full = Math.floor(c.bits / 8);
    if (a.bytes.compare(c.bytes, 0, full, 0, full) !== 0) return false;
    const rem = c.bits % 8;
    if (rem === 0) return true;
    const mask = (0xff << (8 - rem)) & 0xff;
    return ((a.bytes[full] ?? 0) & mask) === ((c.bytes[full] ?? 0) & mask);
  });
}

/**
 * True when a UDP payload has the shape of a WireGuard message: type 1–4 followed by three
 * reserved zero bytes and the fixed size of that type (data messages: 32-byte header plus a
 * 16-byte-aligned encrypted payload with its tag). WireGuard pads to 16 bytes only up to the
 * tunnel MTU: a packet of exactly the MTU is not padded, so when the MTU is not a multiple of 16
 * (1420 over an IPv6 underlay) a full-size data message is 32 + MTU bytes; `tunnelMtus` lists the
 * MTUs whose full-size messages are accepted too.
 */
export function isWireGuardMessage(p: Buffer, tunnelMtus: readonly number[] = []): 1 | 2 | 3 | 4 | undefined {
  if (p.length < 4 || p[1] !== 0 || p[2] !== 0 || p[3] !== 0) return undefined;
  const t = p[0];
  if (t === 1 && p.length === 148) return 1;
  if (t === 2 && p.length === 92) return 2;
  if (t === 3 && p.length === 64) return 3;
  if (t === 4 && p.length >= 32 && ((p.length - 32) % 16 === 0 || tunnelMtus.includes(p.length - 32))) return 4;
  return undefined;
}

/** How {@link summarizeCapture} classifies each packet (first match wins). */
export type PacketKind =
  | 'wireguard'
  | 'esp'
  | 'pod-plaintext'
  | 'arp'
  | 'icmpv6'
  | 'icmp'
  | 'tcp'
  | 'udp'
  | 'ipv4-other'
  | 'ipv6-other'
  | 'non-ip'
  | 'malformed';

/** A short description of one packet, for reports. */
export interface PacketBrief {
  readonly index: number;
  readonly kind: PacketKind;
  readonly src?: string;
  readonly dst?: string;
  readonly proto?: number;
  readonly srcPort?: number;
  readonly dstPort?: number;
  readonly length: number;
}

/** Options for {@link summarizeCapture}. */
export interface SummarizeOptions {
  /** Pod address ranges: a packet with a source or destination inside is plaintext pod traffic. */
  readonly podCidrs?: readonly string[];
  /** UDP ports WireGuard listens on (a packet to or from one of them with a WG message counts). */
  readonly wireguardPorts?: readonly number[];
  /** Tunnel MTUs: a full-size data message of one of them is not 16-aligned ({@link isWireGuardMessage}). */
  readonly wireguardMtus?: readonly number[];
  /** Byte strings that must never appear on the wire. */
  readonly canaries?: readonly (string | Buffer)[];
  /**
   * UDP ports of VXLAN (flannel's 8472, IANA's 4789): a packet to one of them is looked into, and
   * one whose inner frame has a pod source or destination is plaintext pod traffic (an overlay
   * carries pod packets between nodes with node addresses outside).
   */
  readonly vxlanPorts?: readonly number[];
  /** How many example packets to keep per finding (default 10). */
  readonly samples?: number;
}

/** Hits of one canary. */
export interface CanaryReport {
  readonly canary: string;
  readonly hits: number;
  /** Hits per outer `src>dst` address pair (non-IP frames under `?>?`). */
  readonly byEndpoints: Readonly<Record<string, number>>;
  readonly samples: readonly PacketBrief[];
}

/** What a capture proves. */
export interface CaptureSummary {
  readonly linkType: number;
  readonly totalPackets: number;
  readonly truncatedFile: boolean;
  /** Packets captured shorter than on the wire (canary search may miss bytes in them). */
  readonly snappedPackets: number;
  readonly firstTime: number | undefined;
  readonly lastTime: number | undefined;
  readonly byKind: Readonly<Record<PacketKind, number>>;
  /**
   * Packets with a pod address as outer source or destination, or (with `vxlanPorts`) as the
   * source or destination of a VXLAN packet's inner frame: plaintext pod traffic.
   */
  readonly podPlaintextPackets: number;
  /** Of those, the ones inside VXLAN (flows keyed `vxlan:src>dst/proto` by the inner header). */
  readonly vxlanPodPlaintextPackets: number;
  readonly podPlaintextSamples: readonly PacketBrief[];
  /** Plaintext pod packets per `src>dst/proto` flow. */
  readonly podPlaintextFlows: Readonly<Record<string, number>>;
  /** ICMP errors between non-pod addresses that quote a pod-addressed header. */
  readonly podAddressInIcmpErrors: number;
  readonly wireguardPackets: number;
  readonly wireguardByType: Readonly<Record<'1' | '2' | '3' | '4', number>>;
  /** WireGuard packets per `src>dst` outer address pair. */
  readonly wireguardByEndpoints: Readonly<Record<string, number>>;
  /** UDP packets on a WireGuard port that are not WireGuard messages. */
  readonly wireguardPortNonWireguard: number;
  readonly espPackets: number;
  /** ESP packets per `src>dst` outer address pair. */
  readonly espByEndpoints: Readonly<Record<string, number>>;
  readonly canaries: readonly CanaryReport[];
  /** Sum of all canary hits. */
  readonly canaryHits: number;
}

const KINDS: readonly PacketKind[] = [
  'wireguard',
  'esp',
  'pod-plaintext',
  'arp',
  'icmpv6',
  'icmp',
  'tcp',
  'udp',
  'ipv4-other',
  'ipv6-other',
  'non-ip',
  'malformed',
];

/** Classifies every packet of a pcap file and searches it for canaries. */
export function summarizeCapture(file: PcapFile, opts: SummarizeOptions = {}): CaptureSummary {
  const pods = (opts.podCidrs ?? ['100.64.0.0/10']).map(parseCidr);
  const wgPorts = new Set(opts.wireguardPorts ?? [51880]);
  const maxSamples = opts.samples ?? 10;
  const needles = (opts.canaries ?? [])
    .map((c) => (typeof c === 'string' ? Buffer.from(c, 'utf8') : c))
    .filter((b) => b.length > 0);
  const canaryHits = needles.map(() => ({
    hits: 0,
    byEndpoints: {} as Record<string, number>,
    samples: [] as PacketBrief[],
  }));

  const byKind = Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<PacketKind, number>;
  const wgByType = { '1': 0, '2': 0, '3': 0, '4': 0 };
  const wgByEndpoints: Record<string, number> = {};
  const espByEndpoints: Record<string, number> = {};
  const podFlows: Record<string, number> = {};
  const podSamples: PacketBrief[] = [];
  let podAddressInIcmpErrors = 0;
  let wgPortNonWg = 0;
  let snapped = 0;
  let vxlanPod = 0;
  const vxlanPorts = new Set(opts.vxlanPorts ?? []);

  file.records.forEach((rec, index) => {
    if (rec.data.length < rec.origLen) snapped++;
    const outer = decodePacket(rec.data, file.linkType);
    const inner = vxlanInner(outer);
    // A VXLAN packet carrying a pod packet is judged (and reported) by its inner header.
    const d = inner !== undefined && (inCidr(inner.src, pods) || inCidr(inner.dst, pods)) ? inner : outer;
    if (d === inner) vxlanPod++;
    const kind = classify(d);
    byKind[kind]++;
    const brief: PacketBrief = {
      index,
      kind,
      length: rec.origLen,
      ...(d.src !== undefined ? { src: d.src } : {}),
      ...(d.dst !== undefined ? { dst: d.dst } : {}),
      ...(d.proto !== undefined ? { proto: d.proto } : {}),
      ...(d.srcPort !== undefined ? { srcPort: d.srcPort } : {}),
      ...(d.dstPort !== undefined ? { dstPort: d.dstPort } : {}),
    };
    if (kind === 'pod-plaintext') {
      const key = `${d === inner ? 'vxlan:' : ''}${d.src}>${d.dst}/${protoName(d.proto)}`;
      podFlows[key] = (podFlows[key] ?? 0) + 1;
      if (podSamples.length < maxSamples) podSamples.push(brief);
    }
    if (kind === 'wireguard' || kind === 'esp') {
      const key = `${d.src}>${d.dst}`;
      const m = kind === 'wireguard' ? wgByEndpoints : espByEndpoints;
      m[key] = (m[key] ?? 0) + 1;
    }
    if (
      d.quoted !== undefined &&
      kind !== 'pod-plaintext' &&
      (inCidr(d.quoted.src, pods) || inCidr(d.quoted.dst, pods))
    )
      podAddressInIcmpErrors++;
    needles.forEach((n, i) => {
      if (rec.data.indexOf(n) >= 0) {
        const c = canaryHits[i];
        if (c === undefined) return;
        c.hits++;
        const key = `${d.src ?? '?'}>${d.dst ?? '?'}`;
        c.byEndpoints[key] = (c.byEndpoints[key] ?? 0) + 1;
        if (c.samples.length < maxSamples) c.samples.push(brief);
      }
    });
  });

  /** The inner frame of a VXLAN packet (UDP to a `vxlanPorts` port, RFC 7348 header, I flag set). */
  function vxlanInner(d: DecodedPacket): DecodedPacket | undefined {
    if (d.proto !== IPPROTO.UDP || d.payload === undefined || !vxlanPorts.has(d.dstPort ?? -1)) return undefined;
    if (d.payload.length < 8 + 14 || ((d.payload[0] ?? 0) & 0x08) === 0) return undefined;
    return decodePacket(d.payload.subarray(8), LINKTYPE.ETHERNET);
  }

  function classify(d: DecodedPacket): PacketKind {
    if (d.l3 === 'malformed') return 'malformed';
    if (d.l3 === 'arp') return 'arp';
    if (d.l3 === 'other') return 'non-ip';
    if (
      d.proto === IPPROTO.UDP &&
      d.payload !== undefined &&
      (wgPorts.has(d.srcPort ?? -1) || wgPorts.has(d.dstPort ?? -1))
    ) {
      const t = isWireGuardMessage(d.payload, opts.wireguardMtus);
      if (t !== undefined && !inCidr(d.src, pods) && !inCidr(d.dst, pods)) {
        wgByType[String(t) as '1' | '2' | '3' | '4']++;
        return 'wireguard';
      }
      wgPortNonWg++;
    }
    if (inCidr(d.src, pods) || inCidr(d.dst, pods)) return 'pod-plaintext';
    if (d.proto === IPPROTO.ESP) return 'esp';
    if (d.proto === IPPROTO.ICMPV6) return 'icmpv6';
    if (d.proto === IPPROTO.ICMP) return 'icmp';
    if (d.proto === IPPROTO.TCP) return 'tcp';
    if (d.proto === IPPROTO.UDP) return 'udp';
    return d.l3 === 'ipv4' ? 'ipv4-other' : 'ipv6-other';
  }

  // A loop, not Math.min(...times): a long capture has more packets than the call stack has room for arguments.
  let firstTime: number | undefined;
  let lastTime: number | undefined;
  for (const r of file.records) {
    if (firstTime === undefined || r.time < firstTime) firstTime = r.time;
    if (lastTime === undefined || r.time > lastTime) lastTime = r.time;
  }
  return {
    linkType: file.linkType,
    totalPackets: file.records.length,
    truncatedFile: file.truncated,
    snappedPackets: snapped,
    firstTime,
    lastTime,
    byKind,
    podPlaintextPackets: byKind['pod-plaintext'],
    vxlanPodPlaintextPackets: vxlanPod,
    podPlaintextSamples: podSamples,
    podPlaintextFlows: podFlows,
    podAddressInIcmpErrors,
    wireguardPackets: byKind.wireguard,
    wireguardByType: wgByType,
    wireguardByEndpoints: wgByEndpoints,
    wireguardPortNonWireguard: wgPortNonWg,
    espPackets: byKind.esp,
    espByEndpoints,
    canaries: needles.map((n, i) => ({
      canary: n.toString('utf8'),
      hits: canaryHits[i]?.hits ?? 0,
      byEndpoints: canaryHits[i]?.byEndpoints ?? {},
      samples: canaryHits[i]?.samples ?? [],
    })),
    canaryHits: canaryHits.reduce((s, c) => s + c.hits, 0),
  };
}

/** `tcp`, `udp`, `icmp`, … or the number. */
export function protoName(p: number | undefined): string {
  switch (p) {
    case IPPROTO.TCP:
      return 'tcp';
    case IPPROTO.UDP:
      return 'udp';
    case IPPROTO.ICMP:
      return 'icmp';
    case IPPROTO.ICMPV6:
      return 'icmpv6';
    case IPPROTO.ESP:
      return 'esp';
    default:
      return String(p);
  }
}

/** True when `addr` lies in one of `cidrs` (IPv4 or IPv6). */
export function addressIn(addr: string, cidrs: readonly string[]): boolean {
  return inCidr(addr, cidrs.map(parseCidr));
}
