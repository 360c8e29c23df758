// Toy micro-measure (not a test, not the scale bench): run after `npm run build`, e.g.
//   node test/bench/status-report.micro.mjs 5000 [rounds]
// The agent's steady-state status check at N peers, without the kernel: buildNodeStatus +
// summarize + change key over a realistic input (planner output, observed peers with handshakes,
// steering entries), the same input objects every round except the observed peers and steering
// entries, which are read afresh each check (new objects, same content), as in the agent.
import { sodiumReady } from '../../dist/keymgr/keys.js';
import { plan } from '../../dist/tunnels/plan/planner.js';
import { planSteering } from '../../dist/tunnels/plan/steering.js';
import { buildNodeStatus } from '../../dist/tunnels/status/report.js';
import { summarize, summaryChangeKey } from '../../dist/tunnels/status/summary.js';
import { simNode, simAnnotations } from '../../dist/test/bench/scale-sim.js';

await sodiumReady();
const N = Number(process.argv[2] ?? 5000);
const rounds = Number(process.argv[3] ?? 20);
const sims = Array.from({ length: N }, (_, i) => simNode(i + 1));
const nodes = sims.map((s) => ({
  name: s.name,
  annotations: simAnnotations(s),
  podCIDRs: [s.podCIDR],
  internalIPs: [s.address],
}));
const self = sims[0];
const desired = plan({
  nodes,
  self: { name: self.name, wireguardPublicKey: self.key, localAddresses: ['127.0.0.1', self.address] },
  config: { mode: 'wireguard', listenPort: 51880, persistentKeepalive: 25, underlayMtu: 1500, underlayFamily: 4 },
  established: {},
});
const nowS = Math.floor(Date.now() / 1000);
const observe = () =>
  desired.tunnel.peers.map((p, i) => ({
    publicKey: p.publicKey,
    endpoint: p.endpoint,
    allowedIPs: [...p.allowedIPs],
    latestHandshake: nowS - (i % 120),
    rxBytes: 1000 * (i + 1),
    txBytes: 2000 * (i + 1),
    persistentKeepalive: 25,
  }));
const entries0 = planSteering({
  self: self.name,
  clusterCidrs: ['100.64.0.0/10'],
  nodes,
  desiredPeers: desired.tunnel.peers,
  observedPeers: observe(),
  target: { action: 'redirect', ifindex: 7 },
  nodeToNode: false,
});
const readEntries = () => entries0.map((e) => ({ ...e }));
const input = (now) => ({
  self: self.name,
  now,
  agent: 'running',
  heartbeatSeconds: 300,
  mode: 'wireguard',
  algorithm: 'wireguard-chacha20poly1305',
  key: { publicKey: self.key, epoch: 1, createdAt: new Date(0) },
  steering: { enabled: true, failClosed: true, nodeToNode: false },
  persistentKeepalive: 25,
  nodes,
  reconcile: { desired, errors: [], converged: true },
  observedPeers: observe(),
  steeringEntries: readEntries(),
  counters: [],
  observeErrors: [],
});
const times = [];
let states = '';
for (let r = 0; r < rounds; r++) {
  const inp = input(new Date((nowS + 1) * 1000));
  const t0 = process.hrtime.bigint();
  const report = buildNodeStatus(inp);
  const key = summaryChangeKey(summarize(report));
  times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  states = `${report.peers.filter((p) => p.state === 'encrypted').length}/${report.peers.length} encrypted, ready ${report.ready}, key ${key.length} chars`;
}
times.sort((a, b) => a - b);
const q = (f) => times[Math.min(times.length - 1, Math.floor(f * times.length))].toFixed(1);
console.log(`N=${N} rounds=${rounds}: check ms median ${q(0.5)} [min ${q(0)} – max ${q(1)}]; ${states}`);
