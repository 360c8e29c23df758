// Toy micro-measure (not a test, not the scale bench): run after `npm run build`, e.g. node test/bench/status-filter.micro.mjs 5000
import { encodeSummary, summarize } from '../../dist/tunnels/status/summary.js';
for (const N of [1000, 5000, 10000, 20000]) {
  const nowS = Math.floor(Date.now() / 1000);
  const peers = Array.from({ length: N }, (_, i) => ({
    node: `node-${String(i).padStart(5, '0')}`,
    state: i % 97 === 0 ? 'dropping' : 'encrypted',
    ...(i % 97 === 0 ? { reason: 'no tunnel peer with its key is programmed; fail-closed drops its pod traffic' } : {}),
    key: '0123456789abcdef',
    handshake: nowS - 10,
    rx: 1e9,
    tx: 1e9,
  }));
  const r = {
    v: 1,
    node: 'node-x',
    at: new Date().toISOString(),
    agent: 'running',
    heartbeatSeconds: 300,
    mode: 'wireguard',
    algorithm: 'wireguard-chacha20poly1305',
    key: { fingerprint: '0123456789abcdef', epoch: 3, createdAt: new Date().toISOString() },
    steering: { enabled: true, failClosed: true, nodeToNode: false },
    ready: true,
    errors: [],
    drops: {},
    failOpenPackets: 0,
    detail: 'full',
    peers,
    omitted: 0,
  };
  const t = process.hrtime.bigint();
  const text = encodeSummary(summarize(r));
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  console.log(
    `N=${N}: summary ${Buffer.byteLength(text)} bytes (full report JSON ${Buffer.byteLength(JSON.stringify(r))} bytes), summarize+encode ${ms.toFixed(1)} ms`,
  );
}
