/**
 * Load and wire checks for the guest's key-rotation suite (ipsec-rotation.kernel.test.ts): one
 * long-lived numbered TCP stream per node pair, numbered UDP streams (loss, duplicates,
 * reordering), and a pure verdict over an underlay capture that lists every way the wire
 * betrayed plaintext (so a control can show the same check failing).
 */
import { readFile } from 'node:fs/promises';
import type { Capture, CaptureResult } from '../harness/capture.js';
import type { NsCluster } from '../harness/cluster.js';
import { LINKTYPE, readPcap } from '../harness/pcap.js';
import {
  startTcpStream,
  startUdpStream,
  type TcpStream,
  type UdpStream,
  type UdpStreamResult,
} from '../harness/traffic.js';

/** Traffic across the cluster during a rotation. */
export interface Load {
  readonly tcp: readonly TcpStream[];
  readonly udp: readonly UdpStream[];
}

/** Rates low enough for TCG (crypto at tens of Mbit/s, every tool a node process). */
export interface LoadOptions {
  readonly canary: string;
  readonly port0: number;
  /** Directed pod pairs of the UDP streams. */
  readonly udp: readonly (readonly [string, string])[];
  readonly udpPps: number;
  readonly tcpRateBps: number;
  /** Receive buffer asked for the UDP receivers (the guest raises net.core.rmem_max to allow it). */
  readonly udpRcvbufBytes?: number;
  /** How long each stream's processes may take to start (node processes under TCG: seconds each). */
  readonly readyTimeoutMs?: number;
}

/**
 * Starts one TCP stream per node pair (first pod to first pod) and the UDP streams. When one
 * fails to start, the ones already running are stopped before the error is passed on.
 */
export async function startLoad(c: NsCluster, o: LoadOptions): Promise<Load> {
  const tcp: TcpStream[] = [];
  const udp: UdpStream[] = [];
  const ready = o.readyTimeoutMs !== undefined ? { readyTimeoutMs: o.readyTimeoutMs } : {};
  let port = o.port0;
  const nodes = c.nodes;
  try {
    for (let i = 0; i < nodes.length; i++) {
      for (let j = i + 1; j < nodes.length; j++) {
        const [a, b] = [nodes[i]!, nodes[j]!];
        tcp.push(
          await startTcpStream(c, {
            from: a.pods[0]!.name,
            to: b.pods[0]!.name,
            port: port,
            rateBps: o.tcpRateBps,
            recordSize: 1024,
            name: `tcp-${a.name}-${b.name}-${port}`,
            ...ready,
          }),
        );
        port++;
      }
    }
    for (const [from, to] of o.udp) {
      udp.push(
        await startUdpStream(c, {
          from,
          to,
          port,
          pps: o.udpPps,
          canary: o.canary,
          name: `udp-${from}-${to}-${port}`,
          ...(o.udpRcvbufBytes !== undefined ? { rcvbufBytes: o.udpRcvbufBytes } : {}),
          ...ready,
        }),
      );
      port++;
    }
  } catch (err) {
    await Promise.all([...tcp, ...udp].map((s) => s.stop().catch(() => undefined)));
    throw err;
  }
  return { tcp, udp };
}

/**
 * The agents' rotation settings in both guest rotation suites: a 5 s grace, and a peer timeout
 * long enough that a slow (emulated) peer stages before the rotating node moves without it.
 */
export const GUEST_ROTATION = { graceSeconds: 5, peerTimeoutSeconds: 30 } as const;
/**
 * Loose bound on a stream's loss over the whole phase, as a fraction of what it sent: under TCG
 * a CPU-starved receiver overflows its socket buffer when the sender catches up in a burst (the
 * diagnostics print RcvbufErrors); sealctl's own start-up is such a moment.
 */
export const TOTAL_LOSS_FRACTION = 0.02;
/**
 * Receive buffer the guest suites' UDP receivers ask for: under TCG a receiver can go
 * unscheduled for seconds while three agents and sealctl run (a 212 KiB default holds about a
 * second at 100/s). The guest raises net.core.rmem_max for it (guest.sh).
 */
export const GUEST_UDP_RCVBUF_BYTES = 4 << 20;
/** How long each stream's processes may take to start in the guest (node processes under TCG). */
export const GUEST_READY_TIMEOUT_MS = 30_000;

/**
 * Starts an underlay capture (looking for `o.canary`) and then the load, with the guest's
 * receive buffer and start-up time unless `o` says otherwise. A load that fails to start stops
 * what it started, and the capture is stopped too.
 */
export async function startCapturedLoad(
  c: NsCluster,
  name: string,
  o: LoadOptions,
): Promise<{ readonly cap: Capture; readonly load: Load }> {
  const cap = await c.startCapture({ name, canaries: [o.canary], bufferKiB: 65_536 });
  try {
    const load = await startLoad(c, {
      udpRcvbufBytes: GUEST_UDP_RCVBUF_BYTES,
      readyTimeoutMs: GUEST_READY_TIMEOUT_MS,
      ...o,
    });
    return { cap, load };
  } catch (err) {
    await cap.stop().catch(() => undefined);
    throw err;
  }
}

/** What the load saw: TCP problems by stream, UDP counters by stream. */
export interface LoadResult {
  readonly tcpStreams: number;
  readonly tcpRecords: number;
  readonly tcpMaxStallMs: number;
  /** One line per problem: a break, a gap, a reconnect, nothing received. */
  readonly tcpBreaks: readonly string[];
  readonly udp: readonly (UdpStreamResult & { readonly name: string })[];
}

/** Stops every stream and collects the verdict. */
export async function stopLoad(l: Load): Promise<LoadResult> {
  const tcpBreaks: string[] = [];
  let tcpRecords = 0;
  let tcpMaxStallMs = 0;
  for (const s of l.tcp) {
    // Server-side breaks are judged before the client stops: a client that exits with an
    // unread acknowledgement makes its kernel send a RST, which is the test ending.
    const before = await s.status();
    const r = await s.stop();
    tcpRecords += r.server?.recordsReceived ?? 0;
    tcpMaxStallMs = Math.max(tcpMaxStallMs, r.client?.maxStallMs ?? 0);
    const problems = [
      ...(r.client?.breaks ?? []).map((b) => `client break ${b.error}`),
      ...(before.server?.breaks ?? []).map((b) => `server break ${b.error}`),
      ...(r.server?.gaps ?? []).map((g) => `gap at ${g.expected}`),
      ...(r.client?.connections === 1 ? [] : [`${r.client?.connections ?? 0} connections`]),
      ...((r.server?.recordsReceived ?? 0) > 0 ? [] : ['nothing received']),
    ];
    for (const p of problems) tcpBreaks.push(`${s.name}: ${p}`);
  }
  const udp: (UdpStreamResult & { name: string })[] = [];
  for (const s of l.udp) {
    const r = await s.stop();
    if (r !== undefined) udp.push({ ...r, name: s.name });
  }
  return { tcpStreams: l.tcp.length, tcpRecords, tcpMaxStallMs, tcpBreaks, udp };
}

/**
 * Samples of each UDP stream's progress, by stream name: `sent` is `[epoch ms, datagrams sent]`
 * (the sender's count), `rcvbuf` is `[epoch ms, Udp RcvbufErrors]` of the receiver's namespace
 * (cumulative, as the receiver read it at that time).
 */
export type SendProgress = Record<string, { sent: [number, number][]; rcvbuf: [number, number][] }>;

/** Samples every UDP stream's status files (each rewritten every 250 ms) until `stop`. */
export function trackSenders(l: Load, periodMs = 200): { stop: () => Promise<SendProgress> } {
  const out: SendProgress = Object.fromEntries(l.udp.map((u) => [u.name, { sent: [], rcvbuf: [] }]));
  let done = false;
  const loop = (async () => {
    while (!done) {
      for (const u of l.udp) {
        const s = await u.status().catch(() => undefined);
        const { sent, rcvbuf } = out[u.name]!;
        if (s !== undefined && (sent.length === 0 || sent[sent.length - 1]![1] !== s.sent))
          sent.push([Date.now(), s.sent]);
        const r = s?.rcvbufErrors;
        if (r !== undefined && (rcvbuf.length === 0 || rcvbuf[rcvbuf.length - 1]![0] !== r.at))
          rcvbuf.push([r.at, r.count]);
      }
      await new Promise((r) => setTimeout(r, periodMs));
    }
  })();
  return {
    stop: async () => {
      done = true;
      await loop;
      return out;
    },
  };
}

/** When datagram `seq` had been sent at the latest (epoch ms; the first sample counting past it). */
export function sentBy(series: readonly [number, number][], seq: number): number | undefined {
  return series.find(([, sent]) => sent > seq)?.[0];
}

/**
 * Datagrams a stream lost inside `[from, to]` (epoch ms) and outside it, by the senders' progress,
 * and how many of the receiver's namespace's socket-buffer drops fall inside: counted between the
 * first receiver sample at or after `from` and the last one by `to` + 1 s (the window the gaps
 * are counted in), so drops near the edges count against the path, never for it. `pathInside`
 * is what the data path itself lost inside: `inside` less those drops (undefined drops: none
 * taken off).
 */
export function lossIn(
  u: UdpStreamResult,
  progress: { sent: readonly [number, number][]; rcvbuf: readonly [number, number][] },
  window: { from: number; to: number },
): {
  inside: number;
  outside: number;
  gaps: string[];
  /** Listed gaps whose first datagram was sent inside the window. */
  gapsInside: number;
  rcvbufInside: number | undefined;
  pathInside: number;
} {
  let inside = 0;
  let gapsInside = 0;
  const gaps: string[] = [];
  const end = window.to + 1000;
  for (const g of u.gaps) {
    const at = sentBy(progress.sent, g.from);
    const hit = at !== undefined && at >= window.from && at <= end;
    if (hit) {
      inside += g.count;
      gapsInside++;
    }
    gaps.push(`${g.count} sent by ${at === undefined ? '?' : `${((at - window.from) / 1000).toFixed(1)} s`}`);
  }
  // Gaps beyond the tool's list (it keeps the first few) count as inside: never in our favour.
  const listed = u.gaps.reduce((n, g) => n + g.count, 0);
  inside += Math.max(0, u.lost - listed);
  const first = progress.rcvbuf.find(([t]) => t >= window.from);
  const last = progress.rcvbuf.filter(([t]) => t <= end).at(-1);
  const rcvbufInside =
    first !== undefined && last !== undefined && last[0] >= first[0] ? last[1] - first[1] : undefined;
  return {
    inside,
    outside: u.lost - inside,
    gaps,
    gapsInside,
    rcvbufInside,
    pathInside: Math.max(0, inside - (rcvbufInside ?? 0)),
  };
}

/**
 * One stream's loss as a sentence for a failing check's diff (CI keeps only its first lines):
 * lost / sent, the window's loss split into the receiver's socket-buffer drops and the path's,
 * the bound when given, and the gaps with their times.
 */
export function lossWhy(u: UdpStreamResult, w: ReturnType<typeof lossIn>, bound?: number): string {
  return `lost ${u.lost}/${u.sent}: ${w.inside} in the window (${w.rcvbufInside ?? '?'} receiver socket-buffer drops, ${w.pathInside} the path's${bound === undefined ? '' : `; bound ${bound}`}), gaps ${w.gaps.join(', ') || 'none'}`;
}

/**
 * Everything on the underlay capture that is not ESP between node addresses: incomplete
 * capture, plaintext pod packets, canary bytes, other IP packets, ESP between unknown hosts, too
 * little ESP. Empty = the wire carried only ESP between nodes. Pure.
 */
export function wireViolations(cap: CaptureResult, o: { nodeAddresses: readonly string[]; minEsp: number }): string[] {
  const v: string[] = [];
  if (!cap.complete)
    v.push(
      `capture incomplete (kernel dropped ${cap.kernelDropped}, tcpdump ${cap.tcpdumpCaptured} vs ${cap.totalPackets} in the file, truncated ${cap.truncatedFile}, snapped ${cap.snappedPackets})`,
    );
  if (cap.podPlaintextPackets > 0)
    v.push(`${cap.podPlaintextPackets} plaintext pod packets: ${JSON.stringify(cap.podPlaintextFlows)}`);
  if (cap.canaryHits > 0) v.push(`canary seen ${cap.canaryHits} times`);
  const otherIp = cap.totalPackets - cap.byKind.arp - cap.espPackets;
  if (otherIp > 0) v.push(`${otherIp} IP packets that are not ESP: ${JSON.stringify(cap.byKind)}`);
  const nodes = new Set(o.nodeAddresses);
  for (const e of Object.keys(cap.espByEndpoints))
    if (!e.split('>').every((a) => nodes.has(a))) v.push(`ESP between non-node addresses ${e}`);
  if (cap.espPackets < o.minEsp) v.push(`only ${cap.espPackets} ESP packets (expected at least ${o.minEsp})`);
  return v;
}

/** One SPI seen on the wire for one direction: packets and first/last time (epoch seconds). */
export interface WireSpi {
  readonly spi: string;
  readonly packets: number;
  readonly first: number;
  readonly last: number;
}

/** ESP on an underlay capture, by `src>dst`. */
export interface WireEsp {
  /** The SPIs in order of first appearance. */
  readonly spis: Record<string, WireSpi[]>;
  /** Silences longer than the asked minimum between two ESP packets of a direction: start (epoch seconds) and length (s). */
  readonly silences: Record<string, { at: number; seconds: number }[]>;
}

/** The ESP SPIs and silences of an Ethernet/IPv4 capture, by `src>dst`. */
export async function espOnWire(file: string, opts: { minSilenceS: number }): Promise<WireEsp> {
  const pcap = readPcap(await readFile(file));
  if (pcap.linkType !== LINKTYPE.ETHERNET)
    throw new Error(`espOnWire reads Ethernet captures, not link type ${pcap.linkType}`);
  const spis: Record<string, Map<string, { spi: string; packets: number; first: number; last: number }>> = {};
  const silences: Record<string, { at: number; seconds: number }[]> = {};
  const lastAt: Record<string, number> = {};
  for (const r of pcap.records) {
    const d = r.data;
    if (d.length < 14 + 20 + 4 || d.readUInt16BE(12) !== 0x0800) continue;
    const ihl = (d[14]! & 0x0f) * 4;
    if (d[14 + 9] !== 50 || d.length < 14 + ihl + 4) continue;
    const ip = (o: number): string => `${d[o]}.${d[o + 1]}.${d[o + 2]}.${d[o + 3]}`;
    const key = `${ip(14 + 12)}>${ip(14 + 16)}`;
    const spi = `0x${d
      .readUInt32BE(14 + ihl)
      .toString(16)
      .padStart(8, '0')}`;
    const m = (spis[key] ??= new Map());
    const s = m.get(spi);
    if (s === undefined) m.set(spi, { spi, packets: 1, first: r.time, last: r.time });
    else {
      s.packets++;
      s.last = r.time;
    }
    const prev = lastAt[key];
    if (prev !== undefined && r.time - prev >= opts.minSilenceS)
      (silences[key] ??= []).push({ at: prev, seconds: r.time - prev });
    lastAt[key] = r.time;
  }
  return {
    spis: Object.fromEntries(
      Object.entries(spis).map(([k, m]) => [k, [...m.values()].sort((a, b) => a.first - b.first)]),
    ),
    silences,
  };
}
