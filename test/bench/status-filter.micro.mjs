// Toy micro-measure (not a test): cost per store event of the status-side change filter at N nodes.
import { createHash } from 'node:crypto';
import { relevantChangeFilter } from '../../dist/tunnels/status/service.js';
const N = Number(process.argv[2] ?? 5000);
const STATUS = 'sealnet.io/status';
function oldFilter() {
  let last;
  return (nodes) => {
    const d = createHash('sha256')
      .update(
        JSON.stringify(
          nodes.map((n) => [
            n.name,
            Object.entries(n.annotations)
              .filter(([k]) => k !== STATUS)
              .sort(([a], [b]) => (a < b ? -1 : 1)),
            n.podCIDRs,
            n.internalIPs,
          ]),
        ),
      )
      .digest('hex');
    const c = d !== last;
    last = d;
    return c;
  };
}
const mk = (i, extra = {}) => ({
  name: `node-${String(i).padStart(5, '0')}`,
  annotations: {
    'sealnet.io/version': '1',
    'sealnet.io/wireguard-public-key': 'A'.repeat(43) + '=',
    'sealnet.io/endpoint': `198.18.${i >> 8}.${i & 255}:51880`,
    'sealnet.io/mode': 'wireguard',
    'sealnet.io/key-epoch': '1',
    'sealnet.io/key-created': '2026-01-01T00:00:00Z',
    ...extra,
  },
  podCIDRs: [`100.64.${i >> 8}.${i & 255}/32`],
  internalIPs: [`198.18.${i >> 8}.${i & 255}`],
});
let nodes = Array.from({ length: N }, (_, i) => mk(i));
for (const [label, make] of [
  ['old (hash of every node)', oldFilter],
  ['new (identity, changed nodes only)', relevantChangeFilter],
]) {
  const f = make();
  f(nodes);
  const times = [];
  for (let k = 0; k < 200; k++) {
    const i = k % N;
    const next = nodes.slice();
    next[i] = mk(i, k % 2 ? { 'sealnet.io/key-epoch': String(k) } : {}); // half relevant, half identical content
    const t = process.hrtime.bigint();
    f(next);
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
    nodes = next;
  }
  times.sort((a, b) => a - b);
  console.log(`${label}: N=${N} per event p50 ${times[100].toFixed(3)} ms, p99 ${times[197].toFixed(3)} ms`);
}
