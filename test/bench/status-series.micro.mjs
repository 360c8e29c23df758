// Toy micro-measure (not a test, not the scale bench): run after `npm run build`, e.g. node test/bench/status-filter.micro.mjs 5000
// Series exported by one agent's registry (status metrics + core metrics) for a report of N peers.
import { createMetrics } from '../../dist/common/metrics.js';
import { registerStatusMetrics } from '../../dist/tunnels/status/metrics.js';
const N = Number(process.argv[2] ?? 10000);
const nowS = Math.floor(Date.now() / 1000);
const peers = Array.from({ length: N }, (_, i) => ({
  node: `peer-${i}`,
  state: i % 50 === 0 ? 'pending' : 'encrypted',
  key: '0123456789abcdef',
  handshake: i % 50 === 0 ? 0 : nowS - (i % 300),
  rx: i,
  tx: i,
}));
const report = {
  v: 1,
  node: 'n0',
  at: new Date().toISOString(),
  agent: 'running',
  heartbeatSeconds: 300,
  mode: 'wireguard',
  algorithm: 'wireguard-chacha20poly1305',
  key: { fingerprint: '0123456789abcdef', epoch: 1, createdAt: new Date().toISOString() },
  steering: { enabled: true, failClosed: true, nodeToNode: false },
  ready: true,
  errors: [],
  drops: {},
  failOpenPackets: 0,
  detail: 'full',
  peers,
  omitted: 0,
};
for (const perPeerMax of [0, 100]) {
  const m = createMetrics();
  registerStatusMetrics(m, async () => report, { perPeerMax });
  const text = await m.registry.metrics();
  console.log(
    `N=${N} perPeerMax=${perPeerMax}: ${text.split('\n').filter((l) => l && !l.startsWith('#')).length} series, ${Buffer.byteLength(text)} bytes`,
  );
}
