/**
 * What a pass tells the operator about other nodes' input it did not take: skipped nodes and, in
 * node-to-node mode, refused addresses. Each is counted (O(1) series: by reason, never by node)
 * and logged once when it appears; the lines about one (node, reason) pass a rate limit
 * (common/ratelimit.ts), so a node that rewrites its annotation every second cannot make every
 * agent write a line per change forever. What the limit holds back is counted
 * (`sealnet_log_lines_suppressed_total`) and summed up in a later line.
 */
import type { Logger } from '../../common/logger.js';
import type { AgentMetrics } from '../../common/metrics.js';
import { LogRateLimiter, type LogRateLimitOptions } from '../../common/ratelimit.js';
import { quoteShort } from '../../common/text.js';
import type { AddressRejectReason, RejectedAddress, SkippedNode } from '../ports/model.js';

const ADDRESS_WHY: Readonly<Record<AddressRejectReason, string>> = {
  'not-unicast': 'not a unicast address (loopback, link-local, multicast, unspecified, mapped or unparseable)',
  'outside-node-cidrs': 'outside the node networks (steering.nodeCidrs)',
  'own-address': "one of this node's own addresses",
  'in-pod-cidr': 'inside a pod CIDR',
  'over-limit': 'over the per-node address cap (the rest of its list is ignored)',
  contested: 'another node holds it (or several claim it and none held it before)',
};

/** Logs and counts skipped nodes and refused addresses; one per reconciler. */
export class InputReporter {
  private readonly limiter: LogRateLimiter;
  private readonly now: () => number;
  private skippedSeen = new Set<string>();
  private addressesSeen = new Set<string>();

  constructor(
    private readonly d: {
      readonly log: Logger;
      readonly metrics: AgentMetrics;
      readonly now?: (() => number) | undefined;
      readonly logLimit?: LogRateLimitOptions | undefined;
    },
  ) {
    this.limiter = new LogRateLimiter(d.logLimit);
    this.now = d.now ?? Date.now;
  }

  /** The nodes a pass skipped: the gauge by reason; a line (rate-limited) for each new one. */
  skipped(list: readonly SkippedNode[]): void {
    const { metrics } = this.d;
    metrics.skippedNodes.reset();
    for (const s of list) metrics.skippedNodes.inc({ reason: s.reason });
    const now = this.now();
    const seen = new Set<string>();
    for (const s of list) {
      const id = `${s.name}|${s.reason}|${s.detail}`;
      seen.add(id);
      if (this.skippedSeen.has(id)) continue;
      if (s.reason !== 'annotations-missing') metrics.invalidInput.inc({ source: 'annotations' });
      this.line({ node: s.name, reason: s.reason }, `skipping node ${s.name}: ${s.detail}`, now);
    }
    this.skippedSeen = seen;
    this.drain(now);
  }

  /** The addresses a pass refused (node-to-node mode): gauge and counter by reason, lines as above. */
  addresses(list: readonly RejectedAddress[] | undefined): void {
    const { metrics } = this.d;
    metrics.nodeAddressesRejected.reset();
    for (const r of list ?? []) metrics.nodeAddressesRejected.inc({ reason: r.reason });
    const now = this.now();
    const seen = new Set<string>();
    for (const r of list ?? []) {
      const id = `${r.node}|${r.address}|${r.reason}`;
      seen.add(id);
      if (this.addressesSeen.has(id)) continue;
      metrics.nodeAddressRejections.inc({ reason: r.reason });
      this.line(
        { node: r.node, reason: `address-${r.reason}` },
        `not taking address ${quoteShort(r.address)} of node ${r.node}: ${ADDRESS_WHY[r.reason]}`,
        now,
      );
    }
    this.addressesSeen = seen;
    this.drain(now);
  }

  /** One warning about (node, reason), if the rate limit lets it through; counted when it does not. */
  private line(k: { readonly node: string; readonly reason: string }, msg: string, now: number): void {
    const a = this.limiter.admit(`${k.node}|${k.reason}`, now);
    if (!a.ok) {
      this.d.metrics.logLinesSuppressed.inc({ reason: k.reason });
      return;
    }
    if (a.suppressed === 0) this.d.log.warn({ peer: k.node, reason: k.reason }, msg);
    else
      this.d.log.warn(
        { peer: k.node, reason: k.reason, suppressed: a.suppressed },
        `${msg} (${a.suppressed} earlier lines about this node and reason held back)`,
      );
  }

  /** Summaries of held-back lines whose bucket has room again. */
  private drain(now: number): void {
    const every = Math.round(this.limiter.intervalMs / 1000);
    for (const { key, suppressed } of this.limiter.drain(now)) {
      const cut = key.lastIndexOf('|');
      const node = cut < 0 ? '' : key.slice(0, cut);
      const reason = cut < 0 ? '' : key.slice(cut + 1);
      this.d.log.warn(
        node === '' ? { suppressed } : { peer: node, reason, suppressed },
        node === ''
          ? `held back ${suppressed} lines about nodes no longer tracked`
          : `held back ${suppressed} lines about node ${node} (${reason}): at most ${this.limiter.burst} at once, then one every ${every} s`,
      );
    }
  }
}
