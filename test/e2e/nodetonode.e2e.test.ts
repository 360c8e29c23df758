/**
 * Node-to-node (host network) encryption end to end (issue 3, `steering.nodeToNode`): real
 * agents, real wireguard-go, BPF at TC, real packets, a capture on the underlay bridge.
 *
 * With nodeToNode on (3 nodes):
 *   1. host to host on every ordered node pair, from the node's own network namespace (no pod):
 *      ping with a canary pattern, TCP and UDP canary echoes, one large TCP transfer. The
 *      capture holds nothing but ARP and WireGuard, never the canary; every node pair's
 *      WireGuard packets are there both ways.
 *   2. pod to pod (and host to pod) stays encrypted: the shared proof of mesh.e2e.
 *   3. the simulated API server (198.18.0.201:6443, a second InternalIP of n1, listed in
 *      steering.exemptCidrs) is reached in plaintext, and the capture sees its canary in
 *      plaintext (exempt works, and the capture can see it), while host traffic to n1's other
 *      address in the same capture stays WireGuard.
 *   4. n3's agent dies and n3's key disappears from the store: n3 still reaches the API
 *      server both ways (its replies pass n1's guard although n3 is not ready there), n1's host
 *      traffic to n3 is dropped and counted, and plaintext n3 sends with its own guard removed
 *      is dropped by n1's ingress guard.
 *
 * The same host-to-host traffic with nodeToNode off sees the canary in plaintext between node
 * addresses: proof that the capture can fail.
 *
 * Numbers are printed to stderr (NODETONODE lines) for the report.
 */
import { jest } from '@jest/globals';
import { ANNOTATIONS } from '../../common/constants.js';
import type { CaptureResult } from '../harness/capture.js';
import { NsCluster } from '../harness/cluster.js';
import { waitStatusPublished } from '../harness/encryption.js';
import { sleep, type BackgroundProcess } from '../harness/exec.js';
import { bpfCounters, counterOf } from '../harness/faults.js';
import { updateNodeDoc } from '../harness/nodestore.js';
import { toolPath } from '../harness/paths.js';
import { proveAllPairs } from '../harness/prove.js';
import { canaryPingPattern, newCanary, type CanaryResult } from '../harness/traffic.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) throw new Error('nodetonode.e2e needs root (network namespaces); run the suite as root');

jest.setTimeout(180_000);

/** The simulated API server: a second InternalIP of n1, exempt from node-to-node encryption. */
const API = '198.18.0.201';
const API_PORT = 6443;
const ECHO_PORT = 7001;

const report = (line: string): void => {
  process.stderr.write(`NODETONODE ${line}\n`);
};

/** Starts the canary echo server in a node's own network namespace. */
async function startHostServer(
  c: NsCluster,
  node: string,
  opts: { port: number; bind?: string },
): Promise<BackgroundProcess> {
  const dir = await c.workDir('host-canary');
  const log = `${dir}/${node}-${opts.port}.log`;
  const proc = c.spawnNode(
    node,
    [
      process.execPath,
      toolPath('canary.mjs'),
      'server',
      '--port',
      String(opts.port),
      ...(opts.bind !== undefined ? ['--bind', opts.bind] : []),
    ],
    { logFile: log },
  );
  for (let i = 0; i < 200; i++) {
    const r = await c.execNode(node, ['ss', '-Hltn', `sport = :${opts.port}`], { check: false });
    if (r.stdout.includes(`:${opts.port}`)) return proc;
    if (!proc.running()) throw new Error(`canary server on ${node} exited`);
    await sleep(50);
  }
  throw new Error(`canary server on ${node}:${opts.port} did not listen`);
}

/** The canary client run from a node's own network namespace. */
async function hostCanary(
  c: NsCluster,
  o: {
    from: string;
    to: string;
    proto: 'tcp' | 'udp';
    canary: string;
    port?: number;
    size?: number;
    count?: number;
    timeoutMs?: number;
  },
): Promise<CanaryResult> {
  const timeoutMs = o.timeoutMs ?? 5000;
  const argv = [
    process.execPath,
    toolPath('canary.mjs'),
    'client',
    '--proto',
    o.proto,
    '--host',
    o.to,
    '--port',
    String(o.port ?? ECHO_PORT),
    '--canary',
    o.canary,
    '--count',
    String(o.count ?? 3),
    '--size',
    String(o.size ?? 1000),
    '--timeout-ms',
    String(timeoutMs),
  ];
  const r = await c.execNode(o.from, argv, { check: false, timeoutMs: timeoutMs + 10_000 });
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as CanaryResult;
  } catch {
    return {
      ok: false,
      proto: o.proto,
      sent: 0,
      echoed: 0,
      bytes: 0,
      ms: 0,
      error: `no result (exit ${r.code}): ${r.stderr.trim().slice(0, 300)}`,
    };
  }
}

async function hostPing(c: NsCluster, from: string, to: string, canary: string, count = 3): Promise<number> {
  const r = await c.execNode(
    from,
    ['ping', '-c', String(count), '-i', '0.2', '-W', '1', '-s', '120', '-p', canaryPingPattern(canary), to],
    { check: false, timeoutMs: 20_000 },
  );
  return Number(/(\d+) received/.exec(r.stdout)?.[1] ?? '0');
}

interface HostRun {
  readonly capture: CaptureResult;
  /** `from>to kind` for every check that failed. */
  readonly failures: string[];
}

/** Host-to-host canary traffic on every ordered node pair under one capture. */
async function hostToHost(c: NsCluster, name: string): Promise<HostRun> {
  const canary = newCanary();
  const servers = await Promise.all(c.nodeNames().map((n) => startHostServer(c, n, { port: ECHO_PORT })));
  const failures: string[] = [];
  const cap = await c.startCapture({ name, canaries: [canary], bufferKiB: 65536 });
  let capture: CaptureResult;
  try {
    for (const a of c.nodes) {
      for (const b of c.nodes) {
        if (a === b) continue;
        const [tcp, udp, big, ping] = await Promise.all([
          hostCanary(c, { from: a.name, to: b.address, proto: 'tcp', canary }),
          hostCanary(c, { from: a.name, to: b.address, proto: 'udp', canary, size: 500 }),
          // Full-size segments: 1500-byte packets into a 1440-byte tunnel.
          hostCanary(c, {
            from: a.name,
            to: b.address,
            proto: 'tcp',
            canary,
            size: 200_000,
            count: 2,
            timeoutMs: 15_000,
          }),
          hostPing(c, a.name, b.address, canary),
        ]);
        for (const [kind, r] of [
          ['tcp', tcp],
          ['udp', udp],
          ['tcp-200k', big],
        ] as const)
          if (!r.ok) failures.push(`${a.name}>${b.name} ${kind}: ${r.error ?? `${r.echoed}/${r.sent}`}`);
        if (ping !== 3) failures.push(`${a.name}>${b.name} ping: ${ping}/3`);
      }
    }
  } finally {
    capture = await cap.stop();
    await Promise.all(servers.map((s) => s.stop({ timeoutMs: 2000 })));
  }
  report(
    `${name}: ${capture.totalPackets} packets (${capture.byKind.arp} ARP, ${capture.wireguardPackets} WireGuard, tcp ${capture.byKind.tcp}, udp ${capture.byKind.udp}, icmp ${capture.byKind.icmp}), canary hits ${capture.canaryHits} ${JSON.stringify(capture.canaries[0]?.byEndpoints ?? {})}, complete ${capture.complete}, failures ${failures.length}`,
  );
  return { capture, failures };
}

const nodePairs = [
  '198.18.0.1>198.18.0.2',
  '198.18.0.2>198.18.0.1',
  '198.18.0.1>198.18.0.3',
  '198.18.0.3>198.18.0.1',
  '198.18.0.2>198.18.0.3',
  '198.18.0.3>198.18.0.2',
];

describe('node-to-node encryption on (3 nodes, the API server exempt)', () => {
  let c: NsCluster;
  beforeAll(async () => {
    c = await NsCluster.create({
      nodes: 3,
      podsPerNode: 1,
      startAgents: false,
      agentConfig: { steering: { nodeToNode: true, exemptCidrs: [`${API}/32`] } },
    });
    // The "API server" lives on n1 at a second address, which the control plane lists as an
    // InternalIP of n1: without the exemption it would be steered like n1's first address.
    await c.execNode('n1', ['ip', 'addr', 'add', `${API}/24`, 'dev', 'eth0']);
    await updateNodeDoc(c.storeDir, 'n1', (d) => {
      d.status.addresses.push({ type: 'InternalIP', address: API });
    });
    await Promise.all(c.nodeNames().map((n) => c.startAgent(n)));
    await c.waitEncrypted({ timeoutMs: 45_000 });
  });
  afterAll(async () => {
    await c?.destroy();
  });

  it('puts node addresses into the tunnel (allowed IPs), routes only pod CIDRs, and reports nodeToNode in the status', async () => {
    const dump = await c.wgDump('n2');
    const allowed = Object.fromEntries((dump?.peers ?? []).map((p) => [p.endpoint, [...p.allowedIPs].sort()]));
    expect(allowed).toEqual({
      '198.18.0.1:51880': ['100.64.1.0/24', '198.18.0.1/32'],
      '198.18.0.3:51880': ['100.64.3.0/24', '198.18.0.3/32'],
    });
    expect((await c.execNode('n2', ['ip', 'route', 'show', 'table', '5188'])).stdout).not.toContain('198.18.');
    // The tunnel link accepts decrypted packets from node addresses (reverse-path filter).
    expect((await c.execNode('n2', ['ip', '-4', 'addr', 'show', 'dev', 'sealwg0'])).stdout).toContain('100.64.2.1/32');
    let st: { steering?: { nodeToNode?: boolean } } | undefined;
    for (let i = 0; i < 100 && st?.steering?.nodeToNode === undefined; i++) {
      const raw = (await c.nodeDoc('n2'))?.metadata.annotations[ANNOTATIONS.status];
      st = raw === undefined ? undefined : (JSON.parse(raw) as typeof st);
      if (st?.steering?.nodeToNode === undefined) await sleep(200);
    }
    expect(st?.steering?.nodeToNode).toBe(true);
    // Every node's status says every peer encrypted (it said "dropping" for every pair until
    // 2026-12-07: the check wanted the node addresses among the pod steering entries).
    await waitStatusPublished(c, { timeoutMs: 30_000 });
  });

  it('carries host-to-host ping, TCP, UDP and a large TCP transfer between every node pair only as WireGuard', async () => {
    const before = await Promise.all(c.nodeNames().map((n) => bpfCounters(c, n)));
    const { capture, failures } = await hostToHost(c, 'n2n-on');
    expect(failures).toEqual([]);
    expect(capture.complete).toBe(true);
    expect(capture.canaryHits).toBe(0);
    // Everything IP on the underlay is WireGuard (ARP is link-layer housekeeping).
    expect(capture.totalPackets - capture.byKind.arp).toBe(capture.wireguardPackets);
    expect(Object.keys(capture.wireguardByEndpoints).sort()).toEqual([...nodePairs].sort());
    const after = await Promise.all(c.nodeNames().map((n) => bpfCounters(c, n)));
    const redirected = after.map(
      (a, i) => counterOf(a, 'egress', 'redirected') - counterOf(before[i]!, 'egress', 'redirected'),
    );
    report(`egress redirected per node during host traffic: ${JSON.stringify(redirected)}`);
    for (const r of redirected) expect(r).toBeGreaterThan(100);
  });

  it('keeps pod-to-pod and host-to-pod traffic encrypted', async () => {
    const proof = await proveAllPairs(c, { mode: 'wireguard', hostToPod: true, captureName: 'n2n-pods' });
    expect(proof.directions.filter((d) => d.errors.length > 0)).toEqual([]);
    expect(proof.hostDirections.filter((d) => d.errors.length > 0)).toEqual([]);
    expect(proof.capture.complete).toBe(true);
    expect(proof.capture.podPlaintextPackets).toBe(0);
    expect(proof.capture.canaryHits).toBe(0);
    expect(proof.capture.totalPackets - proof.capture.byKind.arp).toBe(proof.capture.wireguardPackets);
    expect(proof.pairs.every((p) => p.encrypted)).toBe(true);
    report(
      `pods: ${proof.capture.totalPackets} packets, ${proof.capture.wireguardPackets} WireGuard, 0 plaintext, 0 canary`,
    );
  });

  it("reaches the exempt API server endpoint in plaintext (seen as such), while n1's other address stays encrypted", async () => {
    const server = await startHostServer(c, 'n1', { port: API_PORT, bind: API });
    const canary = newCanary();
    const before = await bpfCounters(c, 'n2');
    const cap = await c.startCapture({ name: 'n2n-exempt', canaries: [canary] });
    let capture: CaptureResult;
    let results: CanaryResult[];
    let ping: number;
    try {
      results = await Promise.all(
        ['n2', 'n3'].map((n) => hostCanary(c, { from: n, to: API, port: API_PORT, proto: 'tcp', canary })),
      );
      ping = await hostPing(c, 'n2', '198.18.0.1', canary);
    } finally {
      capture = await cap.stop();
      await server.stop({ timeoutMs: 2000 });
    }
    const after = await bpfCounters(c, 'n2');
    report(
      `exempt: ${capture.totalPackets} packets, tcp ${capture.byKind.tcp}, canary hits ${capture.canaryHits} ${JSON.stringify(capture.canaries[0]?.byEndpoints ?? {})}, WireGuard ${JSON.stringify(capture.wireguardByEndpoints)}`,
    );
    expect(results.map((r) => r.ok)).toEqual([true, true]);
    expect(ping).toBe(3);
    expect(capture.complete).toBe(true);
    // The canary crossed in plaintext, and only to and from the exempt address.
    expect(capture.canaryHits).toBeGreaterThan(0);
    expect(Object.keys(capture.canaries[0]?.byEndpoints ?? {}).every((k) => k.includes(API))).toBe(true);
    expect(capture.byKind.tcp).toBeGreaterThan(0);
    expect(capture.byKind.icmp).toBe(0);
    expect(capture.wireguardByEndpoints['198.18.0.2>198.18.0.1']).toBeGreaterThanOrEqual(3);
    expect(counterOf(after, 'egress', 'exempt') - counterOf(before, 'egress', 'exempt')).toBeGreaterThan(0);
  });

  it('a node without a key still reaches the API server both ways; other host traffic with it fails closed, leaked plaintext is refused', async () => {
    // n3's agent dies (its pinned guard stays) and its key leaves the store: to n1 and n2, n3
    // is now a node without a key, whose node address is a not-ready entry.
    await c.killAgent('n3');
    await updateNodeDoc(c.storeDir, 'n3', (d) => {
      delete d.metadata.annotations[ANNOTATIONS.wireguardPublicKey];
    });
    for (let i = 0; i < 150; i++) {
      const peers = (await c.wgDump('n1'))?.peers ?? [];
      if (!peers.some((p) => p.endpoint?.startsWith('198.18.0.3:'))) break;
      await sleep(200);
    }
    expect(((await c.wgDump('n1'))?.peers ?? []).map((p) => p.endpoint)).toEqual(['198.18.0.2:51880']);

    const server = await startHostServer(c, 'n1', { port: API_PORT, bind: API });
    const canary = newCanary();
    const n1Before = await bpfCounters(c, 'n1');
    let api: CanaryResult;
    let n1ToN3: number;
    let leaked: number;
    const cap = await c.startCapture({ name: 'n2n-keyless', canaries: [canary] });
    let capture: CaptureResult;
    try {
      api = await hostCanary(c, { from: 'n3', to: API, port: API_PORT, proto: 'tcp', canary });
      n1ToN3 = await hostPing(c, 'n1', '198.18.0.3', canary);
      // n3 leaks: its egress guard removed, it sends plaintext to n1's node address.
      await c.execNode('n3', ['tc', 'filter', 'del', 'dev', 'eth0', 'egress', 'pref', '1']);
      leaked = await hostPing(c, 'n3', '198.18.0.1', canary);
    } finally {
      capture = await cap.stop();
      await server.stop({ timeoutMs: 2000 });
    }
    const n1After = await bpfCounters(c, 'n1');
    const delta = (hook: string, reason: string): number =>
      counterOf(n1After, hook, reason) - counterOf(n1Before, hook, reason);
    report(
      `keyless n3: api ${api.ok}, n1>n3 ping ${n1ToN3}/3 (n1 egress not_ready +${delta('egress', 'not_ready')}), n3 leak ping ${leaked}/3 (n1 ingress plaintext_in +${delta('ingress', 'plaintext_in')}), canary ${JSON.stringify(capture.canaries[0]?.byEndpoints ?? {})}`,
    );
    expect(api.ok).toBe(true);
    expect(n1ToN3).toBe(0);
    expect(delta('egress', 'not_ready')).toBeGreaterThanOrEqual(3);
    expect(leaked).toBe(0);
    expect(delta('ingress', 'plaintext_in')).toBeGreaterThanOrEqual(3);
    // n1 never sent anything to n3 in plaintext: the only plaintext canary n1 emitted is the API's.
    const fromN1 = Object.keys(capture.canaries[0]?.byEndpoints ?? {}).filter((k) => k.startsWith('198.18.0.1>'));
    expect(fromN1).toEqual([]);
  });
});

describe('node-to-node encryption off (the same host traffic): the capture sees the plaintext', () => {
  let c: NsCluster;
  beforeAll(async () => {
    c = await NsCluster.create({ nodes: 3, podsPerNode: 1 });
    await c.waitEncrypted({ timeoutMs: 45_000 });
  });
  afterAll(async () => {
    await c?.destroy();
  });

  it('sees the canary in plaintext between every node pair', async () => {
    const { capture, failures } = await hostToHost(c, 'n2n-off');
    expect(failures).toEqual([]);
    expect(capture.complete).toBe(true);
    expect(capture.canaryHits).toBeGreaterThan(0);
    const hit = Object.keys(capture.canaries[0]?.byEndpoints ?? {});
    for (const pair of nodePairs) expect(hit).toContain(pair);
    expect(capture.byKind.tcp).toBeGreaterThan(0);
    expect(capture.byKind.icmp).toBeGreaterThan(0);
  });
});
