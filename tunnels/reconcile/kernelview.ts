/**
 * What the reconciler last read from (and then wrote to) the kernel, kept between passes so a
 * pass triggered by one node store change does not re-read 5,000 peers and routes: at 5,000
 * nodes a full read is most of a pass. Pure.
 *
 * The view is only a shortcut for event-triggered passes: the first pass, every periodic
 * resync, every retry after an error and every pass during a key rotation (which needs live
 * handshake times) read the kernel in full, so drift made by anyone else is repaired within one
 * resync interval — the same bound as before the view existed.
 */
import { compareCidrs } from '../../common/ip.js';
import { ROUTE_PROTOCOL } from '../../common/constants.js';
import type { RouteChange } from '../plan/diff.js';
import type { ObservedPeer, ObservedRoute, PeerChange } from '../ports/index.js';

/** The kernel as the last pass left it, for one WireGuard link. */
export interface KernelView {
  readonly link: string;
  readonly publicKey: string;
  readonly listenPort: number;
  readonly ifindex: number;
  readonly mtu: number;
  readonly underlay: string;
  readonly underlayMtu: number;
  readonly localAddresses: readonly string[];
  readonly peers: readonly ObservedPeer[];
  readonly routes: readonly ObservedRoute[];
  /** The pass that left it pruned (the store had synced): nothing undesired is left in it. */
  readonly pruned: boolean;
}

/**
 * The peers after `changes` were applied to `peers` with `wg set`: a set replaces the peer's
 * endpoint, keepalive and whole allowed-IPs list (keeping its handshake and counters) and takes
 * each of its allowed IPs away from any other peer, as WireGuard does; a remove deletes it.
 */
export function applyPeerChanges(peers: readonly ObservedPeer[], changes: readonly PeerChange[]): ObservedPeer[] {
  if (changes.length === 0) return [...peers];
  const byKey = new Map<string, ObservedPeer>(peers.map((p) => [p.publicKey, p]));
  const owner = new Map<string, string>();
  for (const p of peers) for (const a of p.allowedIPs) owner.set(a, p.publicKey);
  for (const c of changes) {
    if (c.op === 'remove') {
      const gone = byKey.get(c.publicKey);
      byKey.delete(c.publicKey);
      for (const a of gone?.allowedIPs ?? []) if (owner.get(a) === c.publicKey) owner.delete(a);
      continue;
    }
    const allowedIPs = [...new Set(c.allowedIPs)].sort(compareCidrs);
    for (const a of allowedIPs) {
      const from = owner.get(a);
      if (from !== undefined && from !== c.publicKey) {
        const o = byKey.get(from);
        if (o !== undefined) byKey.set(from, { ...o, allowedIPs: o.allowedIPs.filter((x) => x !== a) });
      }
      owner.set(a, c.publicKey);
    }
    const prev = byKey.get(c.publicKey);
    for (const a of prev?.allowedIPs ?? [])
      if (!allowedIPs.includes(a) && owner.get(a) === c.publicKey) owner.delete(a);
    byKey.set(c.publicKey, {
      publicKey: c.publicKey,
      endpoint: c.endpoint,
      allowedIPs,
      persistentKeepalive: c.persistentKeepalive,
      latestHandshake: prev?.latestHandshake ?? 0,
      rxBytes: prev?.rxBytes ?? 0,
      txBytes: prev?.txBytes ?? 0,
    });
  }
  return [...byKey.values()];
}

/** The routes after `changes` (replace / delete by table + destination). */
export function applyRouteChanges(routes: readonly ObservedRoute[], changes: readonly RouteChange[]): ObservedRoute[] {
  if (changes.length === 0) return [...routes];
  const key = (r: { table: number; dst: string }): string => `${r.table} ${r.dst}`;
  const out = new Map(routes.map((r) => [key(r), r]));
  for (const c of changes) {
    if (c.op === 'delete') out.delete(key(c.route));
    else
      out.set(key(c.route), {
        dst: c.route.dst,
        dev: c.route.dev,
        mtu: c.route.mtu,
        src: c.route.src,
        table: c.route.table,
        protocol: ROUTE_PROTOCOL,
      });
  }
  return [...out.values()];
}
