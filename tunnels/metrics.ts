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
  readonly reconciles: Counter<'result'>;
}

/** Creates the metric set on a fresh registry. */
export function createMetrics(): AgentMetrics {
  const registry = new Registry();
  const registers = [registry];
  return {
    registry,
    kernelOps: new Counter({ name: 'sealnet_kernel_operations_total', help: 'Kernel writes performed by the agent, by operation', labelNames: ['op'], registers }),
    errors: new Counter({ name: 'sealnet_reconcile_errors_total', help: 'Reconcile errors by step', labelNames: ['step'], registers }),
    skippedNodes: new Gauge({ name: 'sealnet_nodes_skipped', help: 'Nodes left out of the tunnel plan, by reason', labelNames: ['reason'], registers }),
    invalidInput: new Counter({ name: 'sealnet_invalid_input_total', help: 'Malformed node documents or annotations seen', labelNames: ['source'], registers }),
    peers: new Gauge({ name: 'sealnet_peers', help: 'WireGuard peers programmed', registers }),
    reconcileDuration: new Histogram({ name: 'sealnet_reconcile_duration_seconds', help: 'Duration of one reconcile pass', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers }),
    reconciles: new Counter({ name: 'sealnet_reconciles_total', help: 'Reconcile passes by result', labelNames: ['result'], registers }),
  };
}
