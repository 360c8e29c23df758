/**
 * The WireGuard mesh on a real API server: a namespace cluster whose agents use the
 * `kubernetes` node store, authenticate with service-account tokens bound to their Node, and
 * run under the chart's RBAC and admission policy (applied from `helm template` output).
 * Proves with real packets what test/e2e/mesh.e2e.test.ts proves with the file store, plus:
 * keys are published as annotations, no private key reaches the API server (objects, audit log,
 * etcd's files), and the chart's uninstall cleanup leaves no kernel state.
 */
import { jest } from '@jest/globals';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NOT_READY_TAINT, WG_INTERFACE } from '../../common/constants.js';
import { sleep } from '../harness/exec.js';
import { pairVerdict, proveAllPairs } from '../harness/prove.js';
import { startTcpStream } from '../harness/traffic.js';
import { TestApiServer } from './apiserver.js';
import { applyChart, CHART_DIR } from './chart.js';
import { K8sCluster } from './cluster.js';
import { filesUnder, metricValue, privateKeyOf, scrapeMetrics, waitFor } from './util.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) throw new Error('mesh.k8s needs root (network namespaces); run the suite as root');

jest.setTimeout(120_000);

const KEY = 'sealnet.io/wireguard-public-key';

async function routesIn(c: K8sCluster, node: string): Promise<string> {
  return (await c.ns.execNode(node, ['ip', 'route', 'show', 'table', '5188'])).stdout;
}

describe('3-node WireGuard mesh on a real API server', () => {
  let api: TestApiServer;
  let c: K8sCluster;
  const privateKeys = new Map<string, { base64: string; raw: Buffer }>();

  beforeAll(async () => {
    api = await TestApiServer.start();
    await applyChart(api);
    // Every kubelet registers its Node with the not-ready taint (README "Before the guard is attached").
    c = await K8sCluster.create({ api, nodes: 3, podsPerNode: 1, registerTaints: [{ ...NOT_READY_TAINT }] });
    await c.waitEncrypted({ timeoutMs: 60_000 });
    for (const n of c.ns.nodeNames()) privateKeys.set(n, await privateKeyOf(c.ns, n));
  }, 300_000);
  afterAll(async () => {
    await c?.destroy();
    await api?.destroy();
  });

  it('publishes every node’s public key and endpoint as sealnet.io/ annotations on its Node object', async () => {
    const ann = await c.sealnetAnnotations();
    for (const n of c.ns.nodes) {
      const dump = await c.ns.wgDump(n.name);
      expect(ann.get(n.name)).toMatchObject({
        [KEY]: dump?.publicKey,
        'sealnet.io/endpoint': `${n.address}:51880`,
        'sealnet.io/version': '1',
        'sealnet.io/mode': 'wireguard',
      });
    }
  });

  it('lifts the not-ready taint from each own Node only after that agent attached its guard, leaving other taints', async () => {
    for (const n of c.ns.nodeNames()) {
      const taints = await waitFor(
        `the not-ready taint to leave ${n}`,
        async () => {
          const t = (await c.readNode(n)).spec?.taints ?? [];
          return t.some((x) => x.key === NOT_READY_TAINT.key) ? undefined : t;
        },
        { timeoutMs: 30_000, pollMs: 200 },
      );
      // What else the Node carries stays (the API server's own node.kubernetes.io/not-ready).
      expect(taints.map((t) => t.key)).toEqual(['node.kubernetes.io/not-ready']);
      // The agent's own account, in order: the guard first, the taint after.
      const lines = (await readFile(c.ns.agentLogPath(n), 'utf8'))
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg?: unknown; time?: number });
      const msgs = lines.map((l) => String(l.msg));
      const guard = msgs.indexOf('BPF steering in place');
      const lifted = msgs.findIndex((m) => m.includes('removed the not-ready taint'));
      expect([n, guard >= 0, lifted > guard]).toEqual([n, true, true]);
      console.log(
        `${n}: not-ready taint lifted ${Number(lines[lifted]?.time) - Number(lines[guard]?.time)} ms after the guard was attached`,
      );
      expect(msgs.filter((m) => m.includes('removed the not-ready taint'))).toHaveLength(1);
    }
  });

  it('carries TCP, UDP and ICMP between pods on every pair, both directions, and host to remote pods, only as WireGuard on the wire', async () => {
    const proof = await proveAllPairs(c.ns, { mode: 'wireguard', hostToPod: true });
    expect(proof.directions.filter((d) => d.errors.length > 0)).toEqual([]);
    expect(proof.hostDirections.filter((d) => d.errors.length > 0)).toEqual([]);
    expect(proof.directions).toHaveLength(6);
    expect(proof.capture.complete).toBe(true);
    expect(proof.capture.podPlaintextPackets).toBe(0);
    expect(proof.capture.canaryHits).toBe(0);
    // The agents reach the API server through the relay, not the underlay: everything IP on the
    // underlay is WireGuard.
    expect(proof.capture.totalPackets - proof.capture.byKind.arp).toBe(proof.capture.wireguardPackets);
    expect(proof.capture.wireguardPackets).toBeGreaterThan(50);
    expect(proof.pairs.map(pairVerdict)).toEqual([
      ['n1', 'n2', true],
      ['n1', 'n3', true],
      ['n2', 'n3', true],
    ]);
  });

  it('survives kill -9 of an agent: a TCP stream never breaks, the agent re-lists from the API server and changes nothing in the kernel', async () => {
    const stream = await startTcpStream(c.ns, { from: 'n1p1', to: 'n2p1', rateBps: 1_000_000 });
    const before = {
      dump: await c.ns.wgDump('n1'),
      routes: await routesIn(c, 'n1'),
      connections: c.relay.connections('n1').length,
    };
    await c.ns.killAgent('n1', 'SIGKILL');
    await sleep(2000);
    await c.startAgent('n1');
    await waitFor(
      'a reconcile of the restarted agent after its store synced',
      async () => {
        const m = await scrapeMetrics(c.ns, 'n1').catch(() => '');
        return metricValue(m, 'sealnet_reconciles_total', 'result="ok"') >= 1 ? m : undefined;
      },
      { timeoutMs: 20_000 },
    );
    await sleep(1500);
    const m = await scrapeMetrics(c.ns, 'n1');
    expect(metricValue(m, 'sealnet_kernel_operations_total')).toBe(0);
    const after = { dump: await c.ns.wgDump('n1'), routes: await routesIn(c, 'n1') };
    expect(after.routes).toBe(before.routes);
    expect(after.dump?.publicKey).toBe(before.dump?.publicKey);
    // wireguard-go lists peers in Go map order: compare as sets.
    const peers = (d: typeof before.dump): string[] =>
      (d?.peers ?? []).map((p) => `${p.publicKey} ${[...p.allowedIPs].sort().join(',')}`).sort();
    expect(peers(after.dump)).toEqual(peers(before.dump));
    expect(peers(after.dump)).toHaveLength(2);
    // The new agent talked to the API server (list + watch) through its node's relay.
    expect(c.relay.connections('n1').length).toBeGreaterThan(before.connections);
    await sleep(1000);
    const final = await stream.stop();
    expect(final.client?.breaks).toEqual([]);
    expect(final.server?.breaks).toEqual([]);
    expect(final.server?.gaps).toEqual([]);
    expect(final.client?.connections).toBe(1);
    expect(final.server?.recordsReceived).toBeGreaterThan(100);
  });

  it('removes a deleted node everywhere: no peer, no route', async () => {
    const key = (await c.ns.wgDump('n3'))?.publicKey;
    expect(key).toBeDefined();
    await c.removeNode('n3');
    const t0 = Date.now();
    await waitFor(
      'n3 to be gone from every node',
      async () => {
        for (const n of ['n1', 'n2']) {
          const d = await c.ns.wgDump(n);
          if (d === undefined || d.peers.some((p) => p.publicKey === key)) return undefined;
          if ((await routesIn(c, n)).includes('100.64.3.0/24')) return undefined;
        }
        return true;
      },
      { timeoutMs: 15_000 },
    );
    process.stderr.write(
      `node delete: peer and route gone on all nodes ${Date.now() - t0} ms after the Node object was deleted\n`,
    );
    for (const n of ['n1', 'n2']) {
      expect((await c.ns.wgDump(n))?.peers).toHaveLength(1);
      expect((await routesIn(c, n)).trim().split('\n')).toHaveLength(1);
    }
    const proof = await proveAllPairs(c.ns, { mode: 'wireguard' });
    expect(proof.pairs.map(pairVerdict)).toEqual([['n1', 'n2', true]]);
  });

  it('never lets a private key reach the API server (any object, the audit log of every request, etcd’s files) or a log', async () => {
    expect(privateKeys.size).toBe(3);
    // Every object of every listable resource, as the admin sees it.
    const resources = (await api.kubectl(['api-resources', '--verbs=list', '-o', 'name'])).stdout.trim().split('\n');
    let objects = '';
    for (const r of resources) objects += (await api.kubectl(['get', r, '-A', '-o', 'json'], { check: false })).stdout;
    expect(objects).toContain(KEY); // the dump does hold the published (public) keys
    const audit = await readFile(api.auditLog);
    expect(audit.toString('utf8')).toContain('"verb":"patch"'); // the agents' publish requests are in it
    const etcdFiles = await filesUnder(api.etcdDataDir);
    expect(etcdFiles.length).toBeGreaterThan(0);
    const blobs: [string, Buffer][] = [
      ['API objects', Buffer.from(objects)],
      ['audit log', audit],
    ];
    for (const n of privateKeys.keys())
      blobs.push([`agent log of ${n}`, await readFile(c.ns.agentLogPath(n)).catch(() => Buffer.alloc(0))]);
    for (const f of etcdFiles) blobs.push([f, await readFile(f)]);
    for (const [node, key] of privateKeys) {
      for (const [where, blob] of blobs) {
        expect([node, where, blob.includes(key.base64)]).toEqual([node, where, false]);
        expect([node, where, blob.includes(key.raw)]).toEqual([node, where, false]);
        expect([node, where, blob.includes(key.raw.toString('hex'))]).toEqual([node, where, false]);
      }
    }
  });

  it('uninstall cleanup (the chart’s cleanup.sh) leaves no sealnet kernel state, and pods talk again over the CNI routes', async () => {
    const script = join(CHART_DIR, 'files', 'cleanup.sh');
    for (const n of ['n1', 'n2']) {
      await c.ns.stopAgent(n);
      const stateDir = join(c.ns.runDir, n, 'state');
      const r = await c.ns.execNode(n, ['sh', script], {
        env: {
          SEALNET_STATE_DIR: stateDir,
          SEALNET_PURGE_STATE: 'true',
          SEALNET_PURGE_ROOT: join(c.ns.runDir, n),
          SEALNET_CLEANUP_EXIT: 'true',
        },
      });
      expect(r.stdout).toContain(`deleted link ${WG_INTERFACE}`);
      expect(r.stdout).toContain('node clean');
      expect((await c.ns.execNode(n, ['ip', '-o', 'link', 'show', WG_INTERFACE], { check: false })).code).not.toBe(0);
      expect((await routesIn(c, n)).trim()).toBe('');
      expect((await c.ns.execNode(n, ['ip', 'rule', 'show', 'priority', '90'])).stdout.trim()).toBe('');
      expect(
        (
          await c.ns.execNode(n, ['sh', '-c', 'ls -A /sys/fs/bpf/sealnet 2>/dev/null; ls -A /var/run/wireguard'])
        ).stdout.trim(),
      ).toBe('');
      expect((await c.ns.execNode(n, ['ls', '-A', stateDir])).stdout.trim()).toBe('');
      // A second run finds nothing to do.
      const again = await c.ns.execNode(n, ['sh', script], {
        env: { SEALNET_STATE_DIR: stateDir, SEALNET_CLEANUP_EXIT: 'true' },
      });
      expect(again.stdout.trim()).toBe('cleanup: node clean');
    }
    // wireguard-go exits with its TUN device: no process of the run holds a tunnel any more.
    await waitFor(
      'wireguard-go to exit',
      async () => {
        const ps = await c.ns.execNode(
          'n1',
          [
            'sh',
            '-c',
            'for p in /proc/[0-9]*; do [ "$(readlink $p/ns/net)" = "$(readlink /proc/self/ns/net)" ] && cat $p/comm; done',
          ],
          { check: false },
        );
        return ps.stdout.includes('wireguard') ? undefined : true;
      },
      { timeoutMs: 10_000 },
    );
    const ping = await c.ns.ping('n1p1', 'n2p1', { count: 2 });
    expect(ping.received).toBe(2);
  });
});
