// Toy micro-measure (not a test, not a benchmark with real agents): run after `npm run build`,
//   node test/bench/audit-scale.micro.mjs 1000
// What `sealctl audit` does after fetching: every agent's full report (N-1 encrypted peers, as an
// agent serves it on /status) joined into pairs, evaluated, and the signed report's canonical JSON
// and page rendered, in one process with Node's default heap. Prints time and heap per step.
import { fingerprint, sodiumReady } from '../../dist/keymgr/keys.js';
import { encodeNode } from '../../dist/tunnels/plan/annotations.js';
import { joinStatus } from '../../dist/tunnels/status/join.js';
import { evaluate } from '../../dist/tunnels/audit/report.js';
import { profile } from '../../dist/tunnels/audit/policy.js';
import { prettyCanonical } from '../../dist/tunnels/audit/canonical.js';
import { renderMarkdown } from '../../dist/tunnels/audit/render.js';
import { newPublicKey } from '../../dist/test/bench/scale-sim.js';

await sodiumReady();
const N = Number(process.argv[2] ?? 1000);
const now = new Date();
const nowS = Math.floor(now.getTime() / 1000);
const names = Array.from({ length: N }, (_, i) => `node-${String(i).padStart(5, '0')}`);
const keys = names.map(() => newPublicKey());
const fps = keys.map((k) => fingerprint(k));
const nodes = names.map((name, i) => ({
  name,
  annotations: encodeNode({
    mode: 'wireguard',
    wireguardPublicKey: keys[i],
    endpointHost: `198.19.${Math.floor(i / 250)}.${(i % 250) + 1}`,
    endpointPort: 51880,
    keyEpoch: 1,
    keyCreated: new Date(now.getTime() - 86_400_000),
  }),
  podCIDRs: [`100.${65 + Math.floor(i / 256)}.${i % 256}.0/24`],
  internalIPs: [`198.19.${Math.floor(i / 250)}.${(i % 250) + 1}`],
}));
const mib = () =>
  `${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(0)} MiB heap, ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB RSS`;
let t = performance.now();
const step = (what) => {
  const n = performance.now();
  console.log(`N=${N} ${what}: ${((n - t) / 1000).toFixed(2)} s, ${mib()}`);
  t = n;
};
let reportBytes = 0;
const reports = new Map(
  names.map((self, i) => {
    const text = JSON.stringify({
      v: 1,
      node: self,
      at: new Date(now.getTime() - 5000).toISOString(),
      agent: 'running',
      heartbeatSeconds: 300,
      mode: 'wireguard',
      algorithm: 'wireguard-chacha20poly1305',
      key: { fingerprint: fps[i], epoch: 1, createdAt: new Date(now.getTime() - 86_400_000).toISOString() },
      steering: { enabled: true, failClosed: true, nodeToNode: false },
      ready: true,
      errors: [],
      drops: {},
      failOpenPackets: 0,
      detail: 'full',
      peers: names.flatMap((n, j) =>
        j === i
          ? []
          : [{ node: n, state: 'encrypted', key: fps[j], handshake: nowS - 30, rx: 123456 + j, tx: 654321 + j }],
      ),
      omitted: 0,
    });
    reportBytes += text.length;
    return [self, { ok: true, text }];
  }),
);
step(`${N} agents' reports as served (${(reportBytes / 2 ** 20).toFixed(1)} MiB of JSON)`);
const status = joinStatus(nodes, { now, reports });
step(`joined ${status.pairs.length} pairs, partial ${status.partial}`);
const body = evaluate({ status, policy: profile('default'), now, store: 'file', toolVersion: 'micro', onlyNodes: [] });
step(`evaluated: ${body.verdict}, complete ${body.complete}`);
const text = prettyCanonical({
  ...body,
  signature: { algorithm: 'ed25519', publicKey: '', publicKeyFingerprint: '', value: '' },
});
step(`report.json ${(text.length / 2 ** 20).toFixed(1)} MiB`);
const page = renderMarkdown({
  ...body,
  signature: { algorithm: 'ed25519', publicKey: '', publicKeyFingerprint: '', value: '' },
});
step(`report.md ${(page.length / 2 ** 20).toFixed(1)} MiB`);
