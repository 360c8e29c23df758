/**
 * Metrics of the post-quantum exchange: O(1) series per agent whatever the number of peers
 * (label values are fixed sets, never node names).
 */
import { Counter, Gauge, type Registry } from 'prom-client';

/** The exchange's metrics. */
export interface PqMetrics {
  /** Pairs by protection now: hybrid, classical, none (dropped in `required`). */
  readonly pairs: Gauge<'protection'>;
  /** Exchanges by role and result (confirmed, failed, refused). */
  readonly exchanges: Counter<'role' | 'result'>;
  /** Peers publishing no usable ML-KEM key or exchange address, now. */
  readonly badPublications: Gauge;
  /** Connections the listener closed before handling, by reason. */
  readonly refusedConnections: Counter<'reason'>;
  /** Preshared-key writes by result (ok, failed). */
  readonly pskInstalls: Counter<'result'>;
}

/** Registers the exchange's metrics on the agent's registry. */
export function registerPqMetrics(registry: Registry): PqMetrics {
  const registers = [registry];
  return {
    pairs: new Gauge({
      name: 'sealnet_pq_pairs',
      help: 'Node pairs by post-quantum protection (hybrid, classical, none = dropped in required mode)',
      labelNames: ['protection'],
      registers,
    }),
    exchanges: new Counter({
      name: 'sealnet_pq_exchanges_total',
      help: 'Post-quantum pair exchanges by role and result',
      labelNames: ['role', 'result'],
      registers,
    }),
    badPublications: new Gauge({
      name: 'sealnet_pq_peers_unusable',
      help: 'Peers publishing no usable ML-KEM encapsulation key or exchange address',
      registers,
    }),
    refusedConnections: new Counter({
      name: 'sealnet_pq_connections_refused_total',
      help: 'Exchange connections closed before their message was handled, by reason',
      labelNames: ['reason'],
      registers,
    }),
    pskInstalls: new Counter({
      name: 'sealnet_pq_psk_installs_total',
      help: 'WireGuard preshared-key writes by result',
      labelNames: ['result'],
      registers,
    }),
  };
}
