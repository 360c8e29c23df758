/**
 * An attacker on the wire, for the replay proofs of the qemu tier: pick a captured ESP frame
 * between two node addresses out of an underlay capture, and put the very same frame back on
 * the underlay bridge later (an AF_PACKET socket in the underlay namespace, so no node's
 * routing, policies or egress program is involved — as with a tap on a switch).
 */
import { readFile } from 'node:fs/promises';
import type { NsCluster } from '../harness/cluster.js';
import { decodePacket, IPPROTO, LINKTYPE, readPcap } from '../harness/pcap.js';
import { UNDERLAY_BRIDGE } from '../harness/topology.js';

/** One captured ESP frame: the whole Ethernet frame and the SPI it carries. */
export interface CapturedEsp {
  readonly frame: Buffer;
  readonly spi: number;
  readonly seq: number;
}

/** The last ESP frame from `src` to `dst` in a pcap file of the underlay bridge. */
export async function lastEspFrame(file: string, src: string, dst: string): Promise<CapturedEsp | undefined> {
  const pcap = readPcap(await readFile(file));
  if (pcap.linkType !== LINKTYPE.ETHERNET) throw new Error(`${file}: link type ${pcap.linkType}, want Ethernet`);
  let found: CapturedEsp | undefined;
  for (const r of pcap.records) {
    const p = decodePacket(r.data, pcap.linkType);
    if (p.l3 !== 'ipv4' || p.proto !== IPPROTO.ESP || p.src !== src || p.dst !== dst) continue;
    if (r.data.length !== r.origLen) continue; // cut by the snap length
    const ihl = ((r.data[14] ?? 0) & 0x0f) * 4;
    const esp = r.data.subarray(14 + ihl);
    if (esp.length < 8) continue;
    found = { frame: Buffer.from(r.data), spi: esp.readUInt32BE(0), seq: esp.readUInt32BE(4) };
  }
  return found;
}

/** Sends `frame` as it is onto the underlay bridge (python3's AF_PACKET socket; scripts/setup.sh installs python3). */
export async function injectFrame(c: NsCluster, frame: Buffer): Promise<void> {
  const script = [
    'import socket, sys',
    's = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)',
    's.bind((sys.argv[1], 0))',
    'frame = bytes.fromhex(sys.stdin.read().strip())',
    'n = s.send(frame)',
    'assert n == len(frame), (n, len(frame))',
  ].join('\n');
  await c.execUnderlay(['python3', '-c', script, UNDERLAY_BRIDGE], { input: frame.toString('hex') });
}

/** The kernel's XFRM error counters of a node's namespace (/proc/net/xfrm_stat). */
export async function xfrmStat(c: NsCluster, node: string): Promise<Record<string, number>> {
  const text = (await c.execNode(node, ['cat', '/proc/net/xfrm_stat'])).stdout;
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(\w+)\s+(\d+)$/.exec(line.trim());
    if (m !== null) out[m[1]!] = Number(m[2]);
  }
  return out;
}
