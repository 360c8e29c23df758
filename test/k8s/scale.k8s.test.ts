/**
 * The watch path at scale: 5,000 Node objects on the real API server (published keys, endpoints
 * and pod CIDRs, as their agents would have written them), one real agent. Measures the time to
 * sync and program every peer, and the time from one Node changing its key to the agent having
 * it in the kernel. Prints the numbers. The bounds asserted are loose on purpose: this test
 * proves the watch path works at this size and records how fast; it is not a performance gate
 * (measured on a 2-core machine: the store's initial sync is quadratic in the node count, see
 * the numbers it prints).
 */
import * as k8s from '@kubernetes/client-node';
import { jest } from '@jest/globals';
import { generateKeyPairSync } from 'node:crypto';
import { encodeNode } from '../../tunnels/plan/annotations.js';
import { parsePublicKey } from '../../keymgr/keys.js';
import { mapLimit } from '../harness/exec.js';
import { TestApiServer } from './apiserver.js';
import { applyChart } from './chart.js';
import { K8sCluster, nodeObject } from './cluster.js';
import { agentLog, waitFor } from './util.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) throw new Error('scale.k8s needs root (network namespaces); run the suite as root');

jest.setTimeout(1_200_000);

const N = Number(process.env.SEALNET_SCALE_NODES ?? 5000);
const KEY = 'sealnet.io/wireguard-public-key';

function newPublicKey(): string {
  const jwk = generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' });
  return parsePublicKey(Buffer.from(jwk.x as string, 'base64url').toString('base64'));
}

/** Synthetic node i (1-based): InternalIP 198.19.x.y, pod CIDR 100.(65+).x.0/24. */
function syntheticNode(i: number): k8s.V1Node {
  const address = `198.19.${Math.floor(i / 250)}.${(i % 250) + 1}`;
  const obj = nodeObject({
    name: `s${String(i).padStart(5, '0')}`,
    address,
    podCIDR: `100.${65 + Math.floor(i / 256)}.${i % 256}.0/24`,
  });
  const annotations = encodeNode({
    mode: 'wireguard',
    wireguardPublicKey: newPublicKey() as never,
    endpointHost: address,
    endpointPort: 51880,
    keyEpoch: 1,
    keyCreated: new Date(),
  });
  return { ...obj, metadata: { ...obj.metadata, annotations } };
}

describe(`${N} Node objects, one agent`, () => {
  let api: TestApiServer;
  let c: K8sCluster;
  let core: k8s.CoreV1Api;

  beforeAll(async () => {
    api = await TestApiServer.start();
    await applyChart(api);
    core = api.adminConfig().makeApiClient(k8s.CoreV1Api);
    const t0 = Date.now();
    await mapLimit(
      Array.from({ length: N }, (_, k) => k + 1),
      async (i) => {
        await core.createNode({ body: syntheticNode(i) });
      },
      { limit: 32 },
    );
    process.stderr.write(`scale: created ${N} Node objects in ${Date.now() - t0} ms\n`);
    c = await K8sCluster.create({ api, nodes: 1, podsPerNode: 0, startAgents: false });
  }, 1_800_000);
  afterAll(async () => {
    await c?.destroy();
    await api?.destroy();
  });

  it('syncs, programs every peer, and applies one Node change', async () => {
    const started = Date.now();
    await c.startAgent('n1');
    const synced = await waitFor(
      'the agent to sync the node store',
      async () => {
        const line = (await agentLog(c.ns, 'n1')).find((l) => l.msg === 'node store synced');
        return line === undefined ? undefined : { at: Number(line.time), nodes: Number(line.nodes) };
      },
      { timeoutMs: 240_000, pollMs: 250 },
    );
    expect(synced.nodes).toBe(N + 1);
    const programmed = await waitFor(
      `all ${N} peers in the kernel`,
      async () => {
        const d = await c.ns.wgDump('n1');
        return d !== undefined && d.peers.length === N ? Date.now() : undefined;
      },
      { timeoutMs: 400_000, pollMs: 1000 },
    );
    process.stderr.write(
      `scale: agent synced ${N + 1} nodes ${synced.at - started} ms after start; ${N} peers programmed after ${programmed - started} ms\n`,
    );
    expect(synced.at - started).toBeLessThan(240_000);

    // One node rotates its key (as its agent would publish it).
    const name = 's02500';
    const newKey = newPublicKey();
    const changedAt = Date.now();
    await core.patchNode(
      { name, body: { metadata: { annotations: { [KEY]: newKey } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    const applied = await waitFor(
      'the changed key in the kernel',
      async () => {
        const d = await c.ns.wgDump('n1');
        return d?.peers.some((p) => p.publicKey === newKey) ? Date.now() : undefined;
      },
      { timeoutMs: 300_000, pollMs: 250 },
    );
    process.stderr.write(`scale: one Node change applied ${applied - changedAt} ms after the API write (${N} peers)\n`);
    expect(applied - changedAt).toBeLessThan(300_000);
  });
});
