/**
 * `mtu-sweep`: ICMP echo with DF set from a pod across the tunnel at a spread of sizes and at
 * the boundary. Every packet that fits the tunnel MTU must get a reply; every larger one must
 * be refused with "fragmentation needed" (or, once learned, a local EMSGSIZE) naming the tunnel
 * MTU. Silence is a black hole. A plaintext cluster is swept the same way as the reference
 * (its path MTU is the underlay's 1500): proof that the sweep tells the two apart.
 */
import { NsCluster } from '../harness/cluster.js';
import { mapLimit } from '../harness/exec.js';
import type { PingResult } from '../harness/ping.js';
import { TUNNEL_MTU } from './throughput.js';
import type { MtuOutcome, MtuProbe, MtuSweepResult } from './types.js';

/** IPv4 + ICMP echo header bytes in front of the ping payload. */
export const ICMP_OVERHEAD = 28;
const UNDERLAY_MTU = 1500;

/** Payload sizes probed: a spread up to the tunnel's limit, then the boundary and beyond. */
export function sweepPayloads(tunnelMtu = TUNNEL_MTU, underlayMtu = UNDERLAY_MTU): number[] {
  const limit = tunnelMtu - ICMP_OVERHEAD;
  const spread: number[] = [];
  for (let s = 64; s < limit - 8; s += 128) spread.push(s);
  const edge = [limit - 8, limit - 1, limit, limit + 1, limit + 2, limit + 16, underlayMtu - ICMP_OVERHEAD];
  return [...new Set([...spread, ...edge])].sort((a, b) => a - b);
}

/** Classifies one probe against the path MTU it should see. */
export function classify(p: PingResult, payload: number, pathMtu: number): { outcome: MtuOutcome; ok: boolean } {
  const fits = payload + ICMP_OVERHEAD <= pathMtu;
  const refused = p.fragNeeded || p.messageTooLong;
  if (p.received > 0 && p.received < p.transmitted) return { outcome: 'partial', ok: false };
  if (p.received > 0) return { outcome: 'reply', ok: fits };
  if (refused) {
    if (p.reportedMtu !== pathMtu) return { outcome: 'wrong-mtu', ok: false };
    return { outcome: 'frag-needed', ok: !fits };
  }
  return { outcome: 'black-hole', ok: false };
}

async function sweep(
  c: NsCluster,
  o: { cluster: 'sealnet' | 'plaintext'; from: string; to: string; pathMtu: number; payloads: readonly number[] },
): Promise<MtuProbe[]> {
  const out: MtuProbe[] = [];
  for (const payload of o.payloads) {
    // Forget any path MTU learned from the previous probe: every size starts from scratch.
    await c.flushRouteCache(o.from);
    const p = await c.ping(o.from, o.to, { size: payload, count: 2, df: true, intervalS: 0.2, waitS: 1 });
    out.push({
      cluster: o.cluster,
      from: o.from,
      to: o.to,
      payload,
      transmitted: p.transmitted,
      received: p.received,
      fragNeeded: p.fragNeeded,
      messageTooLong: p.messageTooLong,
      reportedMtu: p.reportedMtu,
      ...classify(p, payload, o.pathMtu),
    });
  }
  return out;
}

/** Runs the MTU sweep; both clusters are destroyed on return or failure. */
export async function runMtuSweep(o: { runId: string; log: (line: string) => void }): Promise<MtuSweepResult> {
  const clusters: NsCluster[] = [];
  try {
    const sealnet = await NsCluster.create({
      nodes: 2,
      podsPerNode: 1,
      mtu: UNDERLAY_MTU,
      prefix: `b${o.runId}ms`,
      log: (l) => o.log(`  [mtu] ${l}`),
    });
    clusters.push(sealnet);
    const plain = await NsCluster.create({
      nodes: 2,
      podsPerNode: 1,
      mtu: UNDERLAY_MTU,
      encryption: false,
      prefix: `b${o.runId}mp`,
      log: (l) => o.log(`  [mtu] ${l}`),
    });
    clusters.push(plain);
    await sealnet.waitEncrypted({ timeoutMs: 60_000 });
    const payloads = sweepPayloads();
    const jobs = [
      { c: sealnet, cluster: 'sealnet' as const, from: 'n1p1', to: 'n2p1', pathMtu: TUNNEL_MTU },
      { c: sealnet, cluster: 'sealnet' as const, from: 'n2p1', to: 'n1p1', pathMtu: TUNNEL_MTU },
      { c: plain, cluster: 'plaintext' as const, from: 'n1p1', to: 'n2p1', pathMtu: UNDERLAY_MTU },
    ];
    const probes = (await mapLimit(jobs, (j) => sweep(j.c, { ...j, payloads }), { limit: jobs.length })).flat();
    const bad = probes.filter((p) => !p.ok);
    o.log(
      `mtu-sweep: ${probes.length} probes, ${bad.length} unexpected${bad.length > 0 ? `: ${bad.map((p) => `${p.cluster} ${p.from}→${p.to} ${p.payload}: ${p.outcome}`).join('; ')}` : ''}`,
    );
    return { tunnelMtu: TUNNEL_MTU, underlayMtu: UNDERLAY_MTU, probes };
  } finally {
    await Promise.all(clusters.map((c) => c.destroy()));
  }
}
