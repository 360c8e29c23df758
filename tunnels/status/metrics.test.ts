import { sodiumReady } from '../../keymgr/keys.js';
import { parseProm } from '../../test/harness/prom.js';
import { statusReport, STATUS_NOW } from '../../test/status-fixtures.js';
import { createMetrics, recordRotation } from '../../common/metrics.js';
import type { NodeStatusReport, PeerState } from './report.js';
import { registerStatusMetrics } from './metrics.js';

beforeAll(async () => {
  await sodiumReady();
});

/** Series in a Prometheus text exposition (every sample line). */
function seriesCount(text: string): number {
  return text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
}

/** A report of `n1` with `n` peers: every 7th pending, every 11th dropping, the rest encrypted. */
function bigReport(n: number): NodeStatusReport {
  const nowS = Math.floor(Date.now() / 1000);
  const base = statusReport('n1', ['n1']);
  const peers = Array.from({ length: n }, (_, i) => {
    const state: PeerState = i % 11 === 0 ? 'dropping' : i % 7 === 0 ? 'pending' : 'encrypted';
    return {
      node: `peer-${String(i).padStart(5, '0')}`,
      state,
      key: '0123456789abcdef',
      handshake: state === 'pending' ? 0 : nowS - (i % 400),
      rx: i,
      tx: 2 * i,
      ...(state === 'encrypted' ? {} : { reason: 'x' }),
    };
  });
  return { ...base, peers };
}

describe('status metrics', () => {
  it('expose what the report says as aggregates, readable by a third-party Prometheus parser', async () => {
    const nowS = Math.floor(Date.now() / 1000);
    const report = statusReport(
      'n1',
      ['n1', 'n2', 'n3', 'n4'],
      {},
      {
        n2: { handshake: nowS - 100 },
        n3: { state: 'dropping', reason: 'x', rx: 5, tx: 6, handshake: 0 },
        n4: { handshake: nowS - 500 },
      },
    );
    const metrics = createMetrics();
    let calls = 0;
    registerStatusMetrics(metrics, async () => {
      calls++;
      return report;
    });
    const text = await metrics.registry.metrics();
    const m = parseProm(text);
    // Every non-word character escaped (braces, quotes, dots of the series name).
    const line = (series: string): number =>
      Number(new RegExp('^' + series.replace(/[^\w ]/g, (c) => '\\' + c) + ' (\\S+)$', 'm').exec(text)?.[1]);
    expect(m.type('sealnet_peers_by_state')).toBe('GAUGE');
    expect(m.samples('sealnet_peers_by_state').map((s) => [s.labels.state, s.value])).toEqual([
      ['encrypted', 2],
      ['pending', 0],
      ['dropping', 1],
      ['misconfigured', 0],
    ]);
    const worst = m.value('sealnet_peer_handshake_age_worst_seconds');
    expect(worst).toBeGreaterThanOrEqual(500);
    expect(worst).toBeLessThan(505);
    expect(m.value('sealnet_peers_without_handshake')).toBe(1);
    expect(m.type('sealnet_peer_handshake_age_seconds')).toBe('HISTOGRAM');
    expect(line('sealnet_peer_handshake_age_seconds_bucket{le="60"}')).toBe(0);
    expect(line('sealnet_peer_handshake_age_seconds_bucket{le="120"}')).toBe(1);
    expect(line('sealnet_peer_handshake_age_seconds_bucket{le="600"}')).toBe(2);
    expect(line('sealnet_peer_handshake_age_seconds_count')).toBe(2);
    expect(m.type('sealnet_tunnel_receive_bytes_total')).toBe('COUNTER');
    expect(m.value('sealnet_tunnel_receive_bytes_total')).toBe(100 + 5 + 100);
    expect(m.value('sealnet_tunnel_transmit_bytes_total')).toBe(200 + 6 + 200);
    expect(m.samples('sealnet_peer_state')).toHaveLength(0); // per-peer series are opt-in
    expect(m.value('sealnet_key_info', { kind: 'wireguard', fingerprint: report.key.fingerprint, epoch: '1' })).toBe(1);
    expect(m.value('sealnet_key_created_timestamp_seconds', { kind: 'wireguard' })).toBe(
      Date.parse('2025-05-31T12:00:00.000Z') / 1000,
    );
    expect(m.value('sealnet_ready')).toBe(1);
    expect(m.value('sealnet_key_rotations_total', { kind: 'wireguard', result: 'completed' })).toBe(0);
    recordRotation(metrics, { kind: 'wireguard', result: 'completed' });
    expect(
      parseProm(await metrics.registry.metrics()).value('sealnet_key_rotations_total', {
        kind: 'wireguard',
        result: 'completed',
      }),
    ).toBe(1);
    expect(calls).toBeLessThanOrEqual(2); // one report per scrape, not one per metric
    void STATUS_NOW;
  });

  it('exports fewer than 100 series per agent by default at 10,000 peers (the whole registry)', async () => {
    const report = bigReport(10_000);
    const metrics = createMetrics();
    registerStatusMetrics(metrics, async () => report);
    const text = await metrics.registry.metrics();
    const n = seriesCount(text);
    expect(n).toBeLessThan(100);
    const m = parseProm(text);
    expect(m.samples('sealnet_peers_by_state').reduce((a, s) => a + s.value, 0)).toBe(10_000);
  });

  it('per-peer series are opt-in, only for peers that are not encrypted, capped, most severe first', async () => {
    const report = bigReport(10_000);
    const metrics = createMetrics();
    registerStatusMetrics(metrics, async () => report, { perPeerMax: 50 });
    const text = await metrics.registry.metrics();
    const m = parseProm(text);
    const per = m.samples('sealnet_peer_state');
    expect(per).toHaveLength(50);
    expect(per.every((s) => s.labels.state === 'dropping')).toBe(true); // 910 dropping outrank the pending ones
    const bad = report.peers.filter((p) => p.state !== 'encrypted').length;
    expect(m.value('sealnet_peer_state_omitted')).toBe(bad - 50);
    expect(seriesCount(text)).toBeLessThan(100 + 50 + 1);
  });

  it('shows no peer aggregates when the report cannot be built', async () => {
    const metrics = createMetrics();
    let fail = false;
    registerStatusMetrics(metrics, async () => {
      if (fail) throw new Error('kernel unreadable');
      return statusReport('n1', ['n1', 'n2']);
    });
    expect(parseProm(await metrics.registry.metrics()).samples('sealnet_peers_by_state')).toHaveLength(4);
    fail = true;
    await new Promise((r) => setTimeout(r, 600));
    const m = parseProm(await metrics.registry.metrics());
    expect(m.samples('sealnet_peers_by_state')).toHaveLength(0);
    expect(m.value('sealnet_ready')).toBe(0);
  });
});
