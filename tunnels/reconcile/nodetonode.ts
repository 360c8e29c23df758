/**
 * Node-to-node (host network) encryption, the part beside the planner and the steering map.
 *
 * How host traffic to a remote node is encrypted (steering.nodeToNode, mode wireguard):
 * - the planner adds each remote node's InternalIPs to its peer's allowed IPs (no route:
 *   routing a peer's own endpoint address into the tunnel would carry the tunnel's encrypted
 *   UDP into itself);
 * - the steering map holds the addresses as `node` entries; the underlay egress program
 *   redirects everything to them into the tunnel except the tunnel's own UDP (its fwmark)
 *   and exempt traffic (the API server), and the ingress program drops plaintext from them;
 * - decrypted packets arrive on the tunnel link with a node address as source while the route
 *   back to it uses the underlay: reverse-path filtering would drop them. This module gives the
 *   link an IPv4 address (the pod gateway, else the endpoint; `/32 scope host`, as a key
 *   rotation does) and makes the link's rp_filter loose when the host's is strict.
 */
import { SealnetError } from '../../common/errors.js';
import type { DesiredRoute } from '../ports/model.js';
import type { MirrorPort } from '../ports/index.js';

/** How long a verified link setup is trusted without a re-read (each check spawns `ip`). */
const RECHECK_MS = 10_000;

/** The address node-to-node encryption puts on the tunnel links: the one a rotation uses too. */
export function tunnelLinkAddress(routes: readonly DesiredRoute[], endpointHost: string): string | undefined {
  return (
    routes.find((r) => r.src !== undefined && !r.src.includes(':'))?.src ??
    (endpointHost.includes(':') ? undefined : endpointHost)
  );
}

/** Keeps the tunnel links able to receive node-to-node traffic; one per reconciler. */
export class NodeToNodeLinks {
  private memo: { key: string; at: number } | undefined;

  /** @param rpFilter sets loose reverse-path filtering on a link; true when it wrote (routing/rpfilter.ts). */
  constructor(private readonly rpFilter: (link: string) => Promise<boolean>) {}

  /**
   * Ensures the address and loose reverse-path filtering on every link. Idempotent: writes only
   * what is missing (counted in `ops`), and re-reads at most every {@link RECHECK_MS}.
   * Failures go to `fail`; the steering entries still follow the tunnel (never plaintext).
   */
  async ensure(a: {
    readonly mirror: Pick<MirrorPort, 'ensureAddress'> | undefined;
    /** The tunnel links (ifindex: a recreated link is checked again at once). */
    readonly links: readonly { readonly name: string; readonly ifindex: number }[];
    readonly v4: string | undefined;
    readonly ops: Record<string, number>;
    readonly fail: (step: string, err: unknown) => void;
    readonly now?: number;
  }): Promise<void> {
    const now = a.now ?? Date.now();
    const key = JSON.stringify([a.links.map((l) => [l.name, l.ifindex]), a.v4]);
    if (this.memo?.key === key && now - this.memo.at < RECHECK_MS) return;
    let ok = true;
    for (const { name: link } of a.links) {
      try {
        if (a.v4 !== undefined) {
          if (a.mirror === undefined)
            throw new SealnetError(
              'INTERNAL',
              'node-to-node encryption needs the link address helper (mode wireguard)',
            );
          if (await a.mirror.ensureAddress(link, a.v4)) a.ops.address_add = (a.ops.address_add ?? 0) + 1;
          if (await this.rpFilter(link)) a.ops.sysctl_set = (a.ops.sysctl_set ?? 0) + 1;
        }
      } catch (err) {
        ok = false;
        a.fail('node_to_node', err);
      }
    }
    this.memo = ok ? { key, at: now } : undefined;
  }
}
