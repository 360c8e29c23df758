/**
 * Fault injection and low-level observation for the fail-closed tests (issue 3): make the node
 * store unreadable for everyone or read-only for one node, read the BPF counters straight from
 * the pinned map (works while the agent is dead), and judge a long capture window by window.
 *
 * Nothing here touches the root network namespace: store faults are a rename inside the run
 * directory or a read-only bind mount inside a node's own mount namespace (created by the
 * harness with private propagation, and gone with it).
 */
import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { BPF_MAPS_SUBDIR, BPF_MAP_NAMES, BPF_PIN_DIR } from '../../common/constants.js';
import { HOOKS, REASONS, REASON_SLOTS } from '../../routing/bpf/layout.js';
import type { NsCluster } from './cluster.js';
import { addressIn, summarizeCapture, type CaptureSummary, type SummarizeOptions } from './leaks.js';
import { decodePacket, IPPROTO, readPcap, type PcapFile } from './pcap.js';

// ---------------------------------------------------------------------------------------------
// Node store faults

/**
 * Makes the store directory read-only for one node (a read-only bind mount over it in the node's
 * mount namespace): its agent still reads every Node document but cannot publish its own
 * annotations (EROFS, even as root). Other nodes and the harness are unaffected.
 */
export async function blockStoreWrites(c: NsCluster, node: string): Promise<void> {
  await c.execNode(node, ['mount', '--bind', c.storeDir, c.storeDir]);
  await c.execNode(node, ['mount', '-o', 'remount,bind,ro', c.storeDir]);
}

/** Undoes {@link blockStoreWrites}. */
export async function unblockStoreWrites(c: NsCluster, node: string): Promise<void> {
  await c.execNode(node, ['umount', c.storeDir]);
}

/**
 * Makes the node store unavailable to every agent: the directory is renamed away (reads fail
 * with ENOENT, as the file store would see an unreachable API server). Returns the directory it
 * now lives in (a "control plane" may still change documents there); {@link restoreStore} puts
 * it back.
 */
export async function hideStore(c: NsCluster): Promise<string> {
  const away = join(c.runDir, 'store-unavailable');
  await rename(c.storeDir, away);
  return away;
}

/** Puts a store hidden by {@link hideStore} back. */
export async function restoreStore(c: NsCluster, away: string): Promise<void> {
  await rename(away, c.storeDir);
}

// ---------------------------------------------------------------------------------------------
// BPF counters from the pinned map

/** One BPF counter, summed over CPUs. */
export interface BpfCounter {
  readonly hook: string;
  readonly reason: string;
  readonly verdict: string;
  readonly packets: number;
}

interface BpftoolPerCpu {
  key: number | string[];
  values: { cpu: number; value: { packets: number; bytes: number } | string[] }[];
}

function leNumber(bytes: readonly string[], off: number): number {
  let v = 0;
  for (let i = 7; i >= 0; i--) v = v * 256 + parseInt(bytes[off + i] ?? '0', 16);
  return v;
}

/**
 * Reads `sealnet_counters` from the node's bpffs with `bpftool map dump` (not through the
 * agent): the counters the programs keep while no agent runs.
 */
export async function bpfCounters(c: NsCluster, node: string): Promise<BpfCounter[]> {
  const path = `${BPF_PIN_DIR}/${BPF_MAPS_SUBDIR}/${BPF_MAP_NAMES.counters}`;
  const r = await c.execNode(node, ['bpftool', '-j', 'map', 'dump', 'pinned', path], { timeoutMs: 10_000 });
  const rows = JSON.parse(r.stdout) as BpftoolPerCpu[];
  const out: BpfCounter[] = [];
  for (const row of rows) {
    const idx = Array.isArray(row.key) ? leNumber([...row.key, '0', '0', '0', '0'], 0) : row.key;
    const hook = HOOKS[Math.floor(idx / REASON_SLOTS)];
    const reason = REASONS[idx % REASON_SLOTS];
    if (hook === undefined || reason === undefined) continue;
    const packets = row.values.reduce(
      (n, v) => n + (Array.isArray(v.value) ? leNumber(v.value, 0) : v.value.packets),
      0,
    );
    out.push({ hook, reason: reason.name, verdict: reason.verdict, packets });
  }
  return out;
}

/** Packets of one counter (0 when absent). */
export function counterOf(rows: readonly BpfCounter[], hook: string, reason: string): number {
  return rows.find((r) => r.hook === hook && r.reason === reason)?.packets ?? 0;
}

// ---------------------------------------------------------------------------------------------
// Judging a long capture by time windows

/** Reads a pcap file written by a (stopped) capture. */
export async function loadPcap(file: string): Promise<PcapFile> {
  return readPcap(await readFile(file));
}

/** The packets of `file` captured in [fromMs, toMs) (wall-clock milliseconds, as Date.now()). */
export function windowOf(file: PcapFile, fromMs: number, toMs: number): PcapFile {
  return { ...file, records: file.records.filter((r) => r.time * 1000 >= fromMs && r.time * 1000 < toMs) };
}

/** {@link summarizeCapture} over one time window of a capture. */
export function summarizeWindow(file: PcapFile, fromMs: number, toMs: number, opts: SummarizeOptions): CaptureSummary {
  return summarizeCapture(windowOf(file, fromMs, toMs), opts);
}

/** One plaintext pod packet on the wire, with its capture time. */
export interface PlaintextPacket {
  /** Wall-clock milliseconds. */
  readonly timeMs: number;
  readonly src: string;
  readonly dst: string;
  readonly proto: string;
}

/**
 * Every IP packet with a pod address as outer source or destination (the rule of
 * {@link summarizeCapture}'s `pod-plaintext`: tunnel packets never carry pod addresses outside),
 * with its capture time: for measuring a leak window precisely.
 */
export function plaintextPodPackets(file: PcapFile, opts: { podCidrs: readonly string[] }): PlaintextPacket[] {
  const out: PlaintextPacket[] = [];
  for (const rec of file.records) {
    const d = decodePacket(rec.data, file.linkType);
    if ((d.l3 !== 'ipv4' && d.l3 !== 'ipv6') || d.src === undefined || d.dst === undefined) continue;
    if (!addressIn(d.src, opts.podCidrs) && !addressIn(d.dst, opts.podCidrs)) continue;
    const proto =
      d.proto === IPPROTO.UDP
        ? 'udp'
        : d.proto === IPPROTO.TCP
          ? 'tcp'
          : d.proto === IPPROTO.ICMP
            ? 'icmp'
            : String(d.proto);
    out.push({ timeMs: rec.time * 1000, src: d.src, dst: d.dst, proto });
  }
  return out;
}
