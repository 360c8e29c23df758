/**
 * The agent's Prometheus metrics, on a registry of its own (no global default registry, so
 * tests can create as many agents as they like).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** All metrics the agent exports. */
export interface AgentMetrics {
  readonly registry: Registry;
  /** Kernel writes by operation (peer_set, peer_remove, route_replace, route_delete, link_set, link_create, rule_add). */
  readonly kernelOps: Counter<'op'>;
  /** Errors by reconcile step. */
  readonly errors: Counter<'step'>;
  /** Nodes currently left out of the plan, by reason. */
  readonly skippedNodes: Gauge<'reason'>;
  /** Invalid documents / annotations seen, by source. */
  readonly invalidInput: Counter<'source'>;
  /** Peers programmed. */
  readonly peers: Gauge;
  readonly reconcileDuration: Histogram;
  /** Steering map entries by state (ready / not-ready / no-peer). */
  readonly steeringEntries: Gauge<'state'>;
  /** 1 when steering drops traffic without a ready tunnel, 0 when it passes it (fail-open). */
  readonly steeringFailClosed: Gauge;
  readonly reconciles: Counter<'result'>;
  /** Key rotations by key kind and result; 0 until rotation lands: use {@link recordRotation}. */
  readonly rotations: Counter<'kind' | 'result'>;
  /** Status summary publications by result (tunnels/status/service.ts). */
  readonly statusPublications: Counter<'result'>;
  /** Size of the last published status summary (bytes, at most 1 KiB). */
  readonly statusReportBytes: Gauge;
  /** When the last status annotation was generated (Unix seconds). */
  readonly statusLastPublished: Gauge;
  /** Node updates that changed nothing the store keeps (kubelet heartbeats, labels...): no pass. */
  readonly storeIrrelevantUpdates: Counter;
  /** `sealnet.io/` annotations of peers dropped on arrival, by reason (unknown, oversized, not-a-string). */
  readonly storeDroppedAnnotations: Counter<'reason'>;
  /** Node-to-node mode: addresses other nodes list that the plan did not take, now, by reason. */
  readonly nodeAddressesRejected: Gauge<'reason'>;
  /** Address refusals seen (each node, address and reason once while it lasts), by reason. */
  readonly nodeAddressRejections: Counter<'reason'>;
  /** A node published a key another node was seen with first (each key and claimant once). */
  readonly keyOwnerConflicts: Counter;
  /** Log lines about other nodes' input held back by the per-(node, reason) rate limit, by reason. */
  readonly logLinesSuppressed: Counter<'reason'>;
}

/** Creates the metric set on a fresh registry. */
export function createMetrics(): AgentMetrics {
  const registry = new Registry();
  const registers = [registry];
  return {
    registry,
    kernelOps: new Counter({
      name: 'sealnet_kernel_operations_total',
      help: 'Kernel writes performed by the agent, by operation',
      labelNames: ['op'],
      registers,
    }),
    errors: new Counter({
      name: 'sealnet_reconcile_errors_total',
      help: 'Reconcile errors by step',
      labelNames: ['step'],
      registers,
    }),
    skippedNodes: new Gauge({
      name: 'sealnet_nodes_skipped',
      help: 'Nodes left out of the tunnel plan, by reason',
      labelNames: ['reason'],
      registers,
    }),
    invalidInput: new Counter({
      name: 'sealnet_invalid_input_total',
      help: 'Malformed node documents or annotations seen',
      labelNames: ['source'],
      registers,
    }),
    peers: new Gauge({ name: 'sealnet_peers', help: 'WireGuard peers programmed', registers }),
    reconcileDuration: new Histogram({
      name: 'sealnet_reconcile_duration_seconds',
      help: 'Duration of one reconcile pass',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    steeringEntries: new Gauge({
      name: 'sealnet_steering_entries',
      help: 'BPF steering map entries by state',
      labelNames: ['state'],
      registers,
    }),
    steeringFailClosed: new Gauge({
      name: 'sealnet_steering_fail_closed',
      help: '1 when pod traffic without a ready tunnel is dropped, 0 when it is passed in plaintext',
      registers,
    }),
    reconciles: new Counter({
      name: 'sealnet_reconciles_total',
      help: 'Reconcile passes by result',
      labelNames: ['result'],
      registers,
    }),
    rotations: zeroed(
      new Counter({
        name: 'sealnet_key_rotations_total',
        help: 'Key rotations carried out by this agent, by key kind and result',
        labelNames: ['kind', 'result'],
        registers,
      }),
      { kind: 'wireguard', result: 'completed' },
    ),
    statusPublications: new Counter({
      name: 'sealnet_status_publications_total',
      help: 'Status annotation publications by result',
      labelNames: ['result'],
      registers,
    }),
    statusReportBytes: new Gauge({
      name: 'sealnet_status_report_bytes',
      help: 'Size of the last published status annotation',
      registers,
    }),
    statusLastPublished: new Gauge({
      name: 'sealnet_status_last_published_timestamp_seconds',
      help: 'When the last published status report was generated',
      registers,
    }),
    storeIrrelevantUpdates: new Counter({
      name: 'sealnet_store_irrelevant_updates_total',
      help: 'Node updates that changed nothing sealnet reads (no reconcile pass)',
      registers,
    }),
    storeDroppedAnnotations: new Counter({
      name: 'sealnet_store_dropped_annotations_total',
      help: 'sealnet.io/ annotations of other nodes dropped on arrival, by reason',
      labelNames: ['reason'],
      registers,
    }),
    nodeAddressesRejected: new Gauge({
      name: 'sealnet_node_addresses_rejected',
      help: 'Node-to-node mode: addresses other nodes list that this node did not take, by reason (not-unicast, outside-node-cidrs, own-address, in-pod-cidr, over-limit, contested)',
      labelNames: ['reason'],
      registers,
    }),
    nodeAddressRejections: new Counter({
      name: 'sealnet_node_address_rejections_total',
      help: 'Address refusals seen (each node, address and reason counted once while it lasts), by reason',
      labelNames: ['reason'],
      registers,
    }),
    keyOwnerConflicts: zeroed(
      new Counter({
        name: 'sealnet_key_owner_conflicts_total',
        help: 'Nodes seen publishing a key another node was seen with first (each key and claimant once)',
        registers,
      }),
      {},
    ),
    logLinesSuppressed: new Counter({
      name: 'sealnet_log_lines_suppressed_total',
      help: "Log lines about other nodes' input held back by the per-(node, reason) rate limit, by reason",
      labelNames: ['reason'],
      registers,
    }),
  };
}

function zeroed<T extends string>(c: Counter<T>, labels: Partial<Record<T, string>>): Counter<T> {
  c.inc(labels, 0); // the series exists (value 0) before the first event
  return c;
}

/**
 * The hook key rotation calls when a rotation of this node's key finished: counts it
 * in `sealnet_key_rotations_total{kind,result}`. Status and metrics read the new key through the
 * agent's key getter; nothing else needs to be told.
 */
export function recordRotation(
  metrics: AgentMetrics,
  rotation: { readonly kind: 'wireguard' | 'ipsec'; readonly result: 'completed' | 'failed' },
): void {
  metrics.rotations.inc({ kind: rotation.kind, result: rotation.result });
}

/**
 * Exposes the BPF program's per-CPU counters (summed) as `sealnet_bpf_packets_total` and
 * `sealnet_bpf_bytes_total`, read from the pinned map at scrape time.
 */
export function registerSteeringCounters(
  metrics: AgentMetrics,
  read: () => Promise<readonly { hook: string; verdict: string; reason: string; packets: bigint; bytes: bigint }[]>,
): void {
  const labelNames = ['hook', 'verdict', 'reason'] as const;
  const bytes = new Counter({
    name: 'sealnet_bpf_bytes_total',
    help: 'Bytes seen by the BPF steering programs, by hook, verdict and reason',
    labelNames,
    registers: [metrics.registry],
  });
  new Counter({
    name: 'sealnet_bpf_packets_total',
    help: 'Packets seen by the BPF steering programs, by hook, verdict and reason (drops: not_ready, no_peer, xfrm_bypass, bad_entry, no_tunnel, plaintext_in, encapsulated)',
    labelNames,
    registers: [metrics.registry],
    async collect() {
      const rows = await read().catch(() => []);
      this.reset();
      bytes.reset();
      for (const r of rows) {
        const labels = { hook: r.hook, verdict: r.verdict, reason: r.reason };
        this.inc(labels, Number(r.packets));
        bytes.inc(labels, Number(r.bytes));
      }
    },
  });
}
