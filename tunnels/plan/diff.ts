/**
 * Pure diffs between desired and observed kernel state. The reconciler applies what these
 * return and nothing else, so a resync with nothing changed performs zero kernel writes.
 */
import type { DesiredPeer, DesiredRoute } from '../ports/model.js';
import type { ObservedPeer, ObservedRoute, PeerChange } from '../ports/index.js';

/** Options for {@link diffPeers} and {@link diffRoutes}. */
export interface DiffOptions {
  /**
   * Remove objects that are not desired. False until the node store has synced: an agent that
   * restarts must not prune peers it simply has not heard of yet (cilium#34062).
   */
  readonly prune: boolean;
}

const sameList = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Peer changes turning `observed` into `desired`: every `set` before any `remove`, so allowed
 * IPs moving from an old key to a new one are never unowned (the kernel moves an allowed IP to
 * the peer that is set last; cilium#34612).
 */
export function diffPeers(
  desired: readonly DesiredPeer[],
  observed: readonly ObservedPeer[],
  opts: DiffOptions,
): PeerChange[] {
  const seen = new Map(observed.map((p) => [p.publicKey as string, p]));
  const gaining: PeerChange[] = [];
  const others: PeerChange[] = [];
  for (const d of desired) {
    const o = seen.get(d.publicKey);
    if (
      o !== undefined &&
      o.endpoint === d.endpoint &&
      sameList(o.allowedIPs, d.allowedIPs) &&
      o.persistentKeepalive === d.persistentKeepalive
    )
      continue;
    // A set that gives a peer a prefix it does not hold yet goes first: `allowed-ips` replaces
    // a peer's whole list, so a prefix moving between two desired peers (a rotation moving pod
    // CIDRs to a node's next key) must reach its new owner before the old owner's list shrinks.
    const gains = o === undefined ? d.allowedIPs.length > 0 : d.allowedIPs.some((a) => !o.allowedIPs.includes(a));
    (gains ? gaining : others).push({
      op: 'set',
      publicKey: d.publicKey,
      endpoint: d.endpoint,
      allowedIPs: d.allowedIPs,
      persistentKeepalive: d.persistentKeepalive,
    });
  }
  const sets = [...gaining, ...others];
  const removes: PeerChange[] = [];
  if (opts.prune) {
    const wanted = new Set<string>(desired.map((d) => d.publicKey));
    for (const o of observed) if (!wanted.has(o.publicKey)) removes.push({ op: 'remove', publicKey: o.publicKey });
  }
  return [...sets, ...removes];
}

/** A route change. */
export type RouteChange =
  { readonly op: 'replace'; readonly route: DesiredRoute } | { readonly op: 'delete'; readonly route: ObservedRoute };

/** Route changes turning `observed` (sealnet-owned routes only) into `desired`; replaces before deletes. */
export function diffRoutes(
  desired: readonly DesiredRoute[],
  observed: readonly ObservedRoute[],
  opts: DiffOptions,
): RouteChange[] {
  const key = (r: { dst: string; table: number }): string => `${r.table} ${r.dst}`;
  const seen = new Map(observed.map((r) => [key(r), r]));
  const out: RouteChange[] = [];
  for (const d of desired) {
    const o = seen.get(key(d));
    if (o !== undefined && o.dev === d.dev && o.mtu === d.mtu && (o.src ?? undefined) === (d.src ?? undefined))
      continue;
    out.push({ op: 'replace', route: d });
  }
  if (opts.prune) {
    const wanted = new Set(desired.map(key));
    for (const o of observed) if (!wanted.has(key(o))) out.push({ op: 'delete', route: o });
  }
  return out;
}
