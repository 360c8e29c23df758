import { sodiumReady } from '../../keymgr/keys.js';
import { parseProm } from '../../test/harness/prom.js';
import { statusReport } from '../../test/status-fixtures.js';
import { createMetrics, recordRotation } from '../../common/metrics.js';
import { registerStatusMetrics } from './metrics.js';

beforeAll(async () => {
  await sodiumReady();
});

describe('status metrics', () => {
  it('expose what the report says, readable by a third-party Prometheus parser', async () => {
    const report = statusReport('n1', ['n1', 'n2', 'n3'], {}, { n3: { state: 'dropping', reason: 'x', rx: 5, tx: 6, handshake: 0 } });
    const metrics = createMetrics();
    let calls = 0;
    registerStatusMetrics(metrics, async () => {
      calls++;
      return report;
    });
    const m = parseProm(await metrics.registry.metrics());
    expect(calls).toBe(1); // one report per scrape, shared by every metric
    expect(m.type('sealnet_peers_by_state')).toBe('GAUGE');
    expect(m.samples('sealnet_peers_by_state').map((s) => [s.labels.state, s.value])).toEqual([['encrypted', 1], ['pending', 0], ['dropping', 1], ['misconfigured', 0]]);
    expect(m.value('sealnet_peer_state', { peer: 'n2', state: 'encrypted' })).toBe(1);
    expect(m.value('sealnet_peer_state', { peer: 'n3', state: 'dropping' })).toBe(1);
    expect(m.value('sealnet_peer_state', { peer: 'n3', state: 'encrypted' })).toBe(0);
    expect(m.type('sealnet_peer_receive_bytes_total')).toBe('COUNTER');
    expect(m.value('sealnet_peer_receive_bytes_total', { peer: 'n2' })).toBe(100);
    expect(m.value('sealnet_peer_transmit_bytes_total', { peer: 'n3' })).toBe(6);
    expect(m.value('sealnet_peer_last_handshake_timestamp_seconds', { peer: 'n2' })).toBe(report.peers[0]!.handshake);
    expect(m.value('sealnet_peer_last_handshake_timestamp_seconds', { peer: 'n3' })).toBe(0);
    expect(m.samples('sealnet_peer_handshake_age_seconds').map((s) => s.labels.peer)).toEqual(['n2']);
    expect(m.value('sealnet_peer_key_info', { peer: 'n2', fingerprint: report.peers[0]!.key! })).toBe(1);
    expect(m.value('sealnet_key_info', { kind: 'wireguard', fingerprint: report.key.fingerprint, epoch: '1' })).toBe(1);
    expect(m.value('sealnet_key_created_timestamp_seconds', { kind: 'wireguard' })).toBe(Date.parse(report.key.createdAt) / 1000);
    expect(m.value('sealnet_key_age_seconds', { kind: 'wireguard' })).toBeGreaterThan(0);
    expect(m.value('sealnet_ready')).toBe(1);
    // The rotation hook's counter exists at 0 before any rotation, then counts.
    expect(m.value('sealnet_key_rotations_total', { kind: 'wireguard', result: 'completed' })).toBe(0);
    recordRotation(metrics, { kind: 'wireguard', result: 'completed' });
    const m2 = parseProm(await metrics.registry.metrics());
    expect(m2.value('sealnet_key_rotations_total', { kind: 'wireguard', result: 'completed' })).toBe(1);
    expect(m2.type('sealnet_reconcile_duration_seconds')).toBe('HISTOGRAM');
  });

  it('drop peers that left, and show nothing per peer when the report cannot be built', async () => {
    const metrics = createMetrics();
    let fail = false;
    registerStatusMetrics(metrics, async () => {
      if (fail) throw new Error('wg show failed');
      return statusReport('n1', ['n1', 'n2']);
    });
    expect(parseProm(await metrics.registry.metrics()).samples('sealnet_peer_state')).toHaveLength(4);
    fail = true;
    await new Promise((r) => setTimeout(r, 600));
    const m = parseProm(await metrics.registry.metrics());
    expect(m.samples('sealnet_peer_state')).toHaveLength(0);
    expect(m.value('sealnet_ready')).toBe(0);
  });
});
