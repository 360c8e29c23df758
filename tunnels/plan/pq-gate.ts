/**
 * `postQuantum: required` in the WireGuard plan (issue 19), pure. A blocked pair (no confirmed,
 * installed, unexpired post-quantum secret) keeps its WireGuard peer — the exchange needs the
 * tunnel — but loses the routes to its pod CIDRs: pod traffic to it then follows the CNI's
 * route to the underlay, where the BPF guard drops it (its steering entry is not ready), so it
 * is dropped, never sent classical-only. One host route to the peer's exchange address stays in
 * the tunnel so the exchange itself can run (transport.ts explains why only the peer's agent can
 * answer on it).
 */
import { compareCidrs, parseIP } from '../../common/ip.js';
import type { DesiredRoute, DesiredWireGuardState } from '../ports/model.js';

/** The plan with every blocked node's pod routes replaced by a host route to its exchange address. */
export function gatePqRoutes(
  desired: DesiredWireGuardState,
  blocked: ReadonlyMap<string, string | undefined>,
): DesiredWireGuardState {
  if (blocked.size === 0) return desired;
  const routes = desired.routes;
  const out: DesiredRoute[] = [];
  const gated = new Map<string, DesiredRoute[]>();
  for (const [node] of blocked) {
    const cidrs = new Set(desired.tunnel.peers.filter((p) => p.node === node).flatMap((p) => p.allowedIPs));
    gated.set(
      node,
      routes.filter((r) => cidrs.has(r.dst)),
    );
  }
  const removed = new Set([...gated.values()].flat().map((r) => r.dst));
  for (const r of routes) if (!removed.has(r.dst)) out.push(r);
  for (const [node, address] of blocked) {
    const ip = address === undefined ? undefined : parseIP(address);
    const like = gated.get(node)?.find((r) => (r.dst.includes(':') ? 6 : 4) === ip?.family);
    if (ip === undefined || like === undefined) continue;
    out.push({ ...like, dst: `${address}/${ip.family === 4 ? 32 : 128}` });
  }
  out.sort((a, b) => compareCidrs(a.dst, b.dst));
  return { ...desired, routes: out };
}
