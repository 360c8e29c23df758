/**
 * The active-probe adapter for `sealctl audit --probe-command` in a namespace cluster
 * (tunnels/audit/probe.ts has the protocol). For every requested pair it sends TCP, UDP and
 * ICMP carrying a fresh canary from the first pod of each node to the first pod of the other,
 * while tcpdump captures on the underlay bridge, and judges each pair exactly as the mesh proof
 * does (`judgePairs`): traffic through, tunnel packets seen between the two nodes, no plaintext
 * pod packet and no canary between them, a complete capture.
 *
 *   node dist/test/harness/audit-probe.js --cluster FILE   (pairs JSON on stdin, answer on stdout)
 *
 * FILE is `NsCluster.topology()` plus `mode` and `listenPort`, written by the test or demo.
 * Exit 0 with an answer; 2 for bad input (unknown node, bad request); 1 when probing failed.
 */
import { readFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Mode } from '../../tunnels/ports/model.js';
import { startCapture, type CaptureResult } from './capture.js';
import { mapLimit, run, sleep, spawnBackground, type BackgroundProcess } from './exec.js';
import { toolPath } from './paths.js';
import { parsePing, pingArgv } from './ping.js';
import { judgePairs, type DirectionResult } from './prove.js';
import { canaryPingPattern, newCanary, type CanaryResult } from './traffic.js';
import { POD_RANGE, UNDERLAY_BRIDGE } from './topology.js';
import type { NodeInfo, PairStatus, Topology } from './types.js';

/** What the probe reads from `--cluster FILE`. */
export interface ProbeClusterFile extends Topology {
  readonly mode: Mode;
  readonly listenPort: number;
}

const PORT = 7002;

function fail(code: number, msg: string): never {
  process.stderr.write(`audit-probe: ${msg}\n`);
  process.exit(code);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function startServer(runDir: string, node: NodeInfo): Promise<BackgroundProcess> {
  const pod = node.pods[0];
  if (pod === undefined) throw new Error(`node ${node.name} has no pod`);
  const log = join(runDir, 'work', 'audit-probe', `${pod.name}-server-${process.pid}.log`);
  const proc = spawnBackground(
    [
      'nsenter',
      `--net=/run/netns/${pod.netns}`,
      '--',
      process.execPath,
      toolPath('canary.mjs'),
      'server',
      '--port',
      String(PORT),
    ],
    { logFile: log },
  );
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if ((await readFile(log, 'utf8').catch(() => '')).includes('"listening"')) return proc;
    if (!proc.running()) throw new Error(`canary server in ${pod.name} exited early`);
    await sleep(20);
  }
  throw new Error(`canary server in ${pod.name} did not listen`);
}

async function direction(a: NodeInfo, b: NodeInfo, canary: string): Promise<DirectionResult> {
  const from = a.pods[0] as NodeInfo['pods'][number];
  const to = b.pods[0] as NodeInfo['pods'][number];
  const ns = ['nsenter', `--net=/run/netns/${from.netns}`, '--'];
  const client = async (proto: 'tcp' | 'udp', size: number): Promise<CanaryResult> => {
    const r = await run(
      [
        ...ns,
        process.execPath,
        toolPath('canary.mjs'),
        'client',
        '--proto',
        proto,
        '--host',
        to.address,
        '--port',
        String(PORT),
        '--canary',
        canary,
        '--count',
        '3',
        '--size',
        String(size),
        '--timeout-ms',
        '4000',
      ],
      { check: false, timeoutMs: 15_000 },
    );
    try {
      return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as CanaryResult;
    } catch {
      return { ok: false, proto, sent: 0, echoed: 0, bytes: 0, ms: 0, error: `no result (exit ${String(r.code)})` };
    }
  };
  const [tcp, udp, ping] = await Promise.all([
    client('tcp', 1000),
    client('udp', 500),
    run([...ns, ...pingArgv(to.address, { count: 3, size: 120, patternHex: canaryPingPattern(canary), df: false })], {
      check: false,
      timeoutMs: 15_000,
    }).then((r) => parsePing(`${r.stdout}\n${r.stderr}`)),
  ]);
  const icmp = ping.transmitted > 0 && ping.received === ping.transmitted;
  const errors = [
    ...(tcp.ok ? [] : [`tcp: ${tcp.error ?? 'failed'}`]),
    ...(udp.ok ? [] : [`udp: ${udp.error ?? 'failed'}`]),
    ...(icmp ? [] : [`icmp: ${ping.received}/${ping.transmitted} replies`]),
  ];
  return { from: `${a.name}/${from.name}`, to: `${b.name}/${to.name}`, tcp: tcp.ok, udp: udp.ok, icmp, errors };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] !== '--cluster' || argv[1] === undefined || argv.length !== 2)
    fail(2, 'usage: audit-probe --cluster FILE  (pairs JSON on stdin)');
  let cluster: ProbeClusterFile;
  let req: { version: number; pairs: { a: string; b: string }[] };
  try {
    cluster = JSON.parse(readFileSync(argv[1], 'utf8')) as ProbeClusterFile;
    req = JSON.parse(await readStdin()) as typeof req;
  } catch (err) {
    fail(2, `bad input: ${(err as Error).message}`);
  }
  if (req.version !== 1 || !Array.isArray(req.pairs)) fail(2, 'the request must be {"version":1,"pairs":[...]}');
  const byName = new Map(cluster.nodes.map((n) => [n.name, n as NodeInfo]));
  for (const p of req.pairs)
    for (const n of [p.a, p.b])
      if (!byName.has(n))
        fail(2, `unknown node ${JSON.stringify(n)} (this cluster has ${[...byName.keys()].join(', ')})`);
  const probeable = req.pairs.filter(
    (p) => (byName.get(p.a)?.pods.length ?? 0) > 0 && (byName.get(p.b)?.pods.length ?? 0) > 0,
  );
  const involved = [...new Set(probeable.flatMap((p) => [p.a, p.b]))].map((n) => byName.get(n) as NodeInfo);
  await mkdir(join(cluster.runDir, 'work', 'audit-probe'), { recursive: true });

  const canary = newCanary();
  const servers: BackgroundProcess[] = [];
  let directions: DirectionResult[];
  const capture = await startCapture({
    netns: cluster.underlay.netns,
    iface: UNDERLAY_BRIDGE,
    file: join(cluster.runDir, 'work', 'audit-probe', `probe-${process.pid}-${Date.now()}.pcap`),
    podCidrs: [POD_RANGE],
    wireguardPorts: [cluster.listenPort],
    canaries: [canary],
  });
  try {
    for (const n of involved) servers.push(await startServer(cluster.runDir, n));
    const ordered = probeable.flatMap(
      (p) =>
        [
          [p.a, p.b],
          [p.b, p.a],
        ] as const,
    );
    directions = await mapLimit(
      ordered,
      ([a, b]) => direction(byName.get(a) as NodeInfo, byName.get(b) as NodeInfo, canary),
      { limit: 4 },
    );
  } catch (err) {
    capture.abort();
    throw err;
  } finally {
    await Promise.all(servers.map((s) => s.stop({ timeoutMs: 2000 })));
  }
  const cap: CaptureResult = await capture.stop();
  // The probe judges the wire only; tunnel state is the agents' evidence, not the probe's.
  const status = {
    ok: true,
    missing: [],
    pairs: probeable.map((p): PairStatus => ({
      a: p.a,
      b: p.b,
      tunnelAB: true,
      tunnelBA: true,
      pingAB: undefined,
      pingBA: undefined,
    })),
  };
  const judged = judgePairs(cluster.mode, cluster.nodes, status, directions, cap);
  const addr = (n: string): string => (byName.get(n) as NodeInfo).address;
  const esp = (a: string, b: string): number =>
    (cap.espByEndpoints[`${addr(a)}>${addr(b)}`] ?? 0) + (cap.espByEndpoints[`${addr(b)}>${addr(a)}`] ?? 0);
  const results = req.pairs.map((p) => {
    const j = judged.find((x) => x.a === p.a && x.b === p.b);
    if (j === undefined)
      return {
        a: p.a,
        b: p.b,
        ran: false,
        trafficOk: false,
        tunnelPackets: 0,
        plaintextPackets: 0,
        canaryLeaks: 0,
        captureComplete: cap.complete,
        encryptedOnWire: false,
        detail: 'a node of this pair has no pod to send from',
      };
    const errors = j.directions.flatMap((d) => d.errors.map((e) => `${d.from} → ${d.to}: ${e}`));
    const tunnelPackets = cluster.mode === 'wireguard' ? j.wireguardPackets : esp(p.a, p.b);
    return {
      a: p.a,
      b: p.b,
      ran: true,
      trafficOk: j.trafficOk,
      tunnelPackets,
      plaintextPackets: j.plaintextPackets,
      canaryLeaks: j.canaryLeaks,
      captureComplete: cap.complete,
      encryptedOnWire: j.encrypted && tunnelPackets > 0,
      detail:
        errors.length > 0
          ? errors.join('; ').slice(0, 1900)
          : `tcp, udp and icmp with canary ${canary} both ways; ${tunnelPackets} tunnel packets, ${j.plaintextPackets} plaintext pod packets, ${j.canaryLeaks} canary copies on the wire`,
    };
  });
  process.stdout.write(
    `${JSON.stringify({
      version: 1,
      adapter: 'sealnet-nscluster',
      note: `canary TCP/UDP/ICMP between the first pods of each pair, tcpdump on ${cluster.underlay.netns}/${UNDERLAY_BRIDGE} (${cap.totalPackets} packets, ${cap.complete ? 'complete' : 'INCOMPLETE'})`,
      results,
    })}\n`,
  );
}

main().catch((err: unknown) => fail(1, err instanceof Error ? (err.stack ?? err.message) : String(err)));
