/**
 * Status metrics, computed at scrape time from the same report `/status` serves (tunnels/status/
 * report.ts), so the two never disagree about a state.
 *
 * O(1) series per agent by default, whatever the number of peers: a Prometheus holds one agent
 * per node, and 9 series per peer (the first design) were 45,000 series per agent at 5,000
 * nodes. Per peer there are only aggregates: counts per state, the worst handshake age, a
 * histogram of handshake ages, byte totals. Per-peer series are opt-in and bounded
 * ({@link StatusMetricsOptions.perPeerMax}): only peers that are not encrypted, at most that
 * many, most severe first.
 *
 * WireGuard reports no per-peer packet counts (its UAPI has bytes only); BPF packet counts by
 * reason are in `sealnet_bpf_packets_total`.
 */
import { Counter, Gauge, Histogram } from 'prom-client';
import type { AgentMetrics } from '../../common/metrics.js';
import { PEER_STATES, type NodeStatusReport, type PeerState } from './report.js';

/** Buckets of `sealnet_peer_handshake_age_seconds` (WireGuard rekeys every 120 s, rejects after 180 s). */
export const HANDSHAKE_AGE_BUCKETS = [30, 60, 120, 180, 300, 600, 1800, 3600];

/** Options of {@link registerStatusMetrics}. */
export interface StatusMetricsOptions {
  /** Per-peer series for peers that are not encrypted, at most this many (0, default: none). */
  readonly perPeerMax?: number;
}

const SEVERITY: Readonly<Record<PeerState, number>> = { misconfigured: 0, dropping: 1, pending: 2, encrypted: 3 };

/** Registers the status-derived metrics; `report` is called at most once per scrape. */
export function registerStatusMetrics(
  metrics: AgentMetrics,
  report: () => Promise<NodeStatusReport>,
  opts: StatusMetricsOptions = {},
): void {
  const registers = [metrics.registry];
  const perPeerMax = Math.max(0, Math.floor(opts.perPeerMax ?? 0));
  // One report per scrape: every collect() below awaits the same promise.
  let current: { at: number; p: Promise<NodeStatusReport | undefined> } | undefined;
  const get = (): Promise<NodeStatusReport | undefined> => {
    const t = Date.now();
    if (current === undefined || t - current.at > 500) current = { at: t, p: report().catch(() => undefined) };
    return current.p;
  };
  const nowS = (): number => Math.floor(Date.now() / 1000);

  new Gauge({
    name: 'sealnet_peers_by_state',
    help: 'Peers by state (encrypted, pending, dropping, misconfigured) as this node sees them',
    labelNames: ['state'],
    registers,
    async collect() {
      const r = await get();
      this.reset();
      if (r === undefined) return;
      const n: Record<string, number> = { encrypted: 0, pending: 0, dropping: 0, misconfigured: 0 };
      for (const p of r.peers) n[p.state] = (n[p.state] ?? 0) + 1;
      for (const s of PEER_STATES) this.set({ state: s }, n[s] ?? 0);
    },
  });
  new Gauge({
    name: 'sealnet_peer_handshake_age_worst_seconds',
    help: 'Seconds since the last completed handshake with the peer that has gone longest without one (peers that never completed one excluded)',
    registers,
    async collect() {
      const r = await get();
      this.reset();
      if (r === undefined) return;
      const now = nowS();
      let worst = -1;
      for (const p of r.peers)
        if (p.handshake !== undefined && p.handshake > 0) worst = Math.max(worst, now - p.handshake);
      if (worst >= 0) this.set(Math.max(0, worst));
    },
  });
  new Gauge({
    name: 'sealnet_peers_without_handshake',
    help: 'Tunnel peers programmed with which no handshake has completed yet',
    registers,
    async collect() {
      const r = await get();
      this.reset();
      if (r !== undefined) this.set(r.peers.filter((p) => p.handshake === 0).length);
    },
  });
  new Histogram({
    name: 'sealnet_peer_handshake_age_seconds',
    help: 'Handshake age of every tunnel peer at scrape time (a distribution over peers, not over time)',
    buckets: HANDSHAKE_AGE_BUCKETS,
    registers,
    async collect() {
      const r = await get();
      this.reset();
      const now = nowS();
      for (const p of r?.peers ?? [])
        if (p.handshake !== undefined && p.handshake > 0) this.observe(Math.max(0, now - p.handshake));
    },
  });
  const total = (name: string, help: string, field: 'rx' | 'tx'): void => {
    new Counter({
      name,
      help,
      registers,
      async collect() {
        const r = await get();
        this.reset();
        let sum = 0;
        for (const p of r?.peers ?? []) sum += p[field] ?? 0;
        this.inc(sum);
      },
    });
  };
  total(
    'sealnet_tunnel_receive_bytes_total',
    'Bytes received through the tunnel from all peers (sum of per-peer counters; drops when a peer entry is re-created, which rate() treats as a reset)',
    'rx',
  );
  total(
    'sealnet_tunnel_transmit_bytes_total',
    'Bytes sent through the tunnel to all peers (sum of per-peer counters; see receive)',
    'tx',
  );
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
      if (r !== undefined)
        this.set({ kind: r.mode }, Math.max(0, nowS() - Math.floor(Date.parse(r.key.createdAt) / 1000)));
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
  if (perPeerMax === 0) return;
  new Gauge({
    name: 'sealnet_peer_state',
    help: `1 for each peer that is not encrypted, labelled with its state (at most ${perPeerMax} peers, most severe first)`,
    labelNames: ['peer', 'state'],
    registers,
    async collect() {
      const r = await get();
      this.reset();
      const bad = (r?.peers ?? [])
        .filter((p) => p.state !== 'encrypted')
        .sort((a, b) => SEVERITY[a.state] - SEVERITY[b.state] || (a.node < b.node ? -1 : 1));
      for (const p of bad.slice(0, perPeerMax)) this.set({ peer: p.node, state: p.state }, 1);
    },
  });
  new Gauge({
    name: 'sealnet_peer_state_omitted',
    help: 'Peers not encrypted but left out of sealnet_peer_state (over the per-peer cap)',
    registers,
    async collect() {
      const r = await get();
      this.set(Math.max(0, (r?.peers ?? []).filter((p) => p.state !== 'encrypted').length - perPeerMax));
    },
  });
}
