/**
 * Per-peer and key metrics, computed at scrape time from the same report `/status` serves and
 * the status annotation carries (tunnels/status/report.ts), so the three never disagree about a state.
 *
 * Byte counters come from `wg show dump` and are exported as counters (they only grow, and reset
 * when a peer entry is re-created, which Prometheus' rate() handles). WireGuard reports no
 * per-peer packet counts (its UAPI has bytes only), so there is no per-peer packet metric; BPF
 * packet counts by reason are in `sealnet_bpf_packets_total`.
 */
import { Counter, Gauge } from 'prom-client';
import type { AgentMetrics } from '../../common/metrics.js';
import { PEER_STATES, type NodeStatusReport } from './report.js';

/** Registers the status-derived metrics; `report` is called once per scrape (cached by the caller). */
export function registerStatusMetrics(metrics: AgentMetrics, report: () => Promise<NodeStatusReport>): void {
  const registers = [metrics.registry];
  // One report per scrape: every collect() below awaits the same promise.
  let current: { at: number; p: Promise<NodeStatusReport | undefined> } | undefined;
  const get = (): Promise<NodeStatusReport | undefined> => {
    const t = Date.now();
    if (current === undefined || t - current.at > 500) current = { at: t, p: report().catch(() => undefined) };
    return current.p;
  };
  const nowS = (): number => Date.now() / 1000;

  new Gauge({
    name: 'sealnet_peers_by_state',
    help: 'Peers by state (encrypted, pending, dropping, misconfigured) as this node sees them',
    labelNames: ['state'],
    registers,
    async collect() {
      const r = await get();
      this.reset();
      if (r === undefined) return;
      for (const s of PEER_STATES) this.set({ state: s }, r.peers.filter((p) => p.state === s).length);
    },
  });
  new Gauge({
    name: 'sealnet_peer_state',
    help: '1 for the state each peer is in, 0 for the other states',
    labelNames: ['peer', 'state'],
    registers,
    async collect() {
      const r = await get();
      this.reset();
      for (const p of r?.peers ?? []) for (const s of PEER_STATES) this.set({ peer: p.node, state: s }, p.state === s ? 1 : 0);
    },
  });
  new Gauge({
    name: 'sealnet_peer_key_info',
    help: 'Fingerprint of the key the tunnel holds for each peer (value always 1)',
    labelNames: ['peer', 'fingerprint'],
    registers,
    async collect() {
      const r = await get();
      this.reset();
      for (const p of r?.peers ?? []) if (p.key !== undefined) this.set({ peer: p.node, fingerprint: p.key }, 1);
    },
  });
  new Gauge({
    name: 'sealnet_peer_last_handshake_timestamp_seconds',
    help: 'Last completed WireGuard handshake with each peer (Unix seconds, 0 = never)',
    labelNames: ['peer'],
    registers,
    async collect() {
      const r = await get();
      this.reset();
      for (const p of r?.peers ?? []) if (p.handshake !== undefined) this.set({ peer: p.node }, p.handshake);
    },
  });
  new Gauge({
    name: 'sealnet_peer_handshake_age_seconds',
    help: 'Seconds since the last completed handshake with each peer (absent: never)',
    labelNames: ['peer'],
    registers,
    async collect() {
      const r = await get();
      this.reset();
      for (const p of r?.peers ?? []) if (p.handshake !== undefined && p.handshake > 0) this.set({ peer: p.node }, Math.max(0, Math.floor(nowS()) - p.handshake));
    },
  });
  const bytes = (name: string, help: string, field: 'rx' | 'tx'): void => {
    new Counter({
      name,
      help,
      labelNames: ['peer'],
      registers,
      async collect() {
        const r = await get();
        this.reset();
        for (const p of r?.peers ?? []) {
          const v = p[field];
          if (v !== undefined) this.inc({ peer: p.node }, v);
        }
      },
    });
  };
  bytes('sealnet_peer_receive_bytes_total', 'Bytes received from each peer through the tunnel (wg show dump)', 'rx');
  bytes('sealnet_peer_transmit_bytes_total', 'Bytes sent to each peer through the tunnel (wg show dump)', 'tx');
  new Gauge({
    name: 'sealnet_key_info',
    help: "This node's current key: fingerprint and epoch (value always 1)",
    labelNames: ['kind', 'fingerprint', 'epoch'],
    registers,
    async collect() {
      const r = await get();
      this.reset();
      if (r !== undefined) this.set({ kind: r.mode, fingerprint: r.key.fingerprint, epoch: String(r.key.epoch) }, 1);
    },
  });
  new Gauge({
    name: 'sealnet_key_created_timestamp_seconds',
    help: "When this node's current key was created (Unix seconds)",
    labelNames: ['kind'],
    registers,
    async collect() {
      const r = await get();
      this.reset();
      if (r !== undefined) this.set({ kind: r.mode }, Date.parse(r.key.createdAt) / 1000);
    },
  });
  new Gauge({
    name: 'sealnet_key_age_seconds',
    help: "Age of this node's current key",
    labelNames: ['kind'],
    registers,
    async collect() {
      const r = await get();
      this.reset();
      if (r !== undefined) this.set({ kind: r.mode }, Math.max(0, Math.floor(nowS() - Date.parse(r.key.createdAt) / 1000)));
    },
  });
  new Gauge({
    name: 'sealnet_ready',
    help: '1 when every known peer is programmed (what /readyz answers), else 0',
    registers,
    async collect() {
      const r = await get();
      this.set(r?.ready === true ? 1 : 0);
    },
  });
}
