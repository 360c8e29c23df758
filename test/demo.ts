/**
 * `npm run demo`: builds a namespace cluster, starts agents, waits until every node pair is
 * encrypted, sends pod-to-pod TCP, UDP and ICMP with a canary on every pair in both directions
 * while capturing on the underlay, and reports what the capture proves.
 *
 *   npm run demo -- --nodes 3 --mode wireguard [--pods 1] [--mtu 1500] [--json] [--keep]
 *   npm run demo -- --no-encryption     the sanity baseline: must see plaintext, exits 1
 *   npm run demo -- --down              removes a cluster left by --keep
 *
 * Exit 0 only if every pair is encrypted, all traffic got through, and the capture holds no
 * plaintext pod packet and no canary. With --json the last stdout line is one JSON object.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { NsCluster, cleanupStale, type EncryptionStatus, type NodeInfo } from './harness/cluster.js';
import type { CaptureResult } from './harness/capture.js';
import { describeArgv, mapLimit } from './harness/exec.js';
import { repoRoot } from './harness/paths.js';
import { addressIn } from './harness/leaks.js';
import { listNetns } from './harness/teardown.js';
import { canaryPingPattern, newCanary, runCanary, startCanaryServer } from './harness/traffic.js';
import type { Mode } from '../tunnels/model.js';

/** Where `--keep` records the cluster it left running. */
export const DEMO_STATE_FILE = '/run/sealnet-demo/state.json';

/** Parsed command line. */
export interface DemoArgs {
  readonly nodes: number;
  readonly pods: number;
  readonly mode: Mode;
  readonly mtu: number;
  readonly json: boolean;
  readonly keep: boolean;
  readonly encryption: boolean;
  readonly down: boolean;
  readonly timeoutS: number;
}

/** Parses demo arguments; throws with a usage message. */
export function parseDemoArgs(argv: readonly string[]): DemoArgs {
  const a = { nodes: 3, pods: 1, mode: 'wireguard' as Mode, mtu: 1500, json: false, keep: false, encryption: true, down: false, timeoutS: 90 };
  const num = (flag: string, v: string | undefined, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${flag} needs an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i];
    switch (f) {
      case '--nodes':
        a.nodes = num(f, argv[++i], 2, 254);
        break;
      case '--pods':
        a.pods = num(f, argv[++i], 1, 50);
        break;
      case '--mtu':
        a.mtu = num(f, argv[++i], 1280, 9000);
        break;
      case '--timeout':
        a.timeoutS = num(f, argv[++i], 1, 3600);
        break;
      case '--mode': {
        const m = argv[++i];
        if (m !== 'wireguard' && m !== 'ipsec') throw new Error(`--mode must be wireguard or ipsec, got ${JSON.stringify(m)}`);
        a.mode = m;
        break;
      }
      case '--json':
        a.json = true;
        break;
      case '--keep':
        a.keep = true;
        break;
      case '--no-encryption':
        a.encryption = false;
        break;
      case '--down':
        a.down = true;
        break;
      default:
        throw new Error(`unknown argument ${JSON.stringify(f)}\nusage: demo [--nodes N] [--pods N] [--mode wireguard|ipsec] [--mtu N] [--timeout S] [--json] [--keep] [--no-encryption] | --down`);
    }
  }
  return a;
}

/** Result of one ordered pod pair (first pods of two nodes). */
export interface DirectionResult {
  readonly from: string;
  readonly to: string;
  readonly tcp: boolean;
  readonly udp: boolean;
  readonly icmp: boolean;
  readonly errors: readonly string[];
}

/** Verdict of one unordered node pair. */
export interface PairResult {
  readonly a: string;
  readonly b: string;
  readonly tunnel: boolean;
  readonly trafficOk: boolean;
  readonly plaintextPackets: number;
  readonly canaryLeaks: number;
  readonly wireguardPackets: number;
  readonly encrypted: boolean;
  readonly directions: readonly DirectionResult[];
}

/** The --json report. */
export interface DemoReport {
  readonly ok: boolean;
  readonly nodes: number;
  readonly mode: Mode;
  readonly encryption: boolean;
  readonly pairs: number;
  readonly encryptedPairs: number;
  readonly plaintextPackets: number;
  readonly canaryLeaks: number;
  readonly trafficOk: boolean;
  readonly pairDetails: readonly PairResult[];
  readonly capture: Omit<CaptureResult, 'canaries' | 'podPlaintextSamples'>;
  readonly encryptionError: string | undefined;
  readonly topology: ReturnType<NsCluster['topology']>;
  readonly ctl: readonly string[];
  readonly kept: boolean;
  readonly timings: Readonly<Record<string, number>>;
}

const err = (line: string): void => void process.stderr.write(`${line}\n`);

/** Entry point; returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  let args: DemoArgs;
  try {
    args = parseDemoArgs(argv);
  } catch (e) {
    err((e as Error).message);
    return 2;
  }
  if (args.down) return down();
  const kept = readState();
  if (args.keep && kept !== undefined && listNetns().some((n) => n.startsWith(`${kept.prefix}-`))) {
    err(`a kept demo cluster (${kept.prefix}) is still running; remove it first with: npm run demo -- --down`);
    return 2;
  }

  const tStart = Date.now();
  const cluster = await NsCluster.create({ nodes: args.nodes, podsPerNode: args.pods, mode: args.mode, mtu: args.mtu, encryption: args.encryption, log: err });
  try {
    const report = await exercise(cluster, args, tStart);
    printReport(report, args);
    if (args.keep) {
      keepCluster(cluster, report);
    }
    return report.ok ? 0 : 1;
  } finally {
    if (!args.keep) await cluster.destroy();
  }
}

async function exercise(cluster: NsCluster, args: DemoArgs, tStart: number): Promise<DemoReport> {
  const timings: Record<string, number> = { ...cluster.timings };
  let encryptionError: string | undefined;
  if (args.encryption) {
    const t = Date.now();
    try {
      await cluster.waitEncrypted({ timeoutMs: args.timeoutS * 1000 });
    } catch (e) {
      encryptionError = (e as Error).message;
      err(`not encrypted: ${encryptionError}`);
    }
    timings.encryptMs = Date.now() - t;
  }

  const tTraffic = Date.now();
  const canary = newCanary();
  const nodes = cluster.nodes;
  const firstPod = (n: NodeInfo): string => (n.pods[0] as { name: string }).name;
  const servers = await Promise.all(nodes.map((n) => startCanaryServer(cluster, { pod: firstPod(n) })));
  const capture = await cluster.startCapture({ name: 'demo', canaries: [canary] });
  const ordered = nodes.flatMap((a) => nodes.filter((b) => b !== a).map((b) => [a, b] as const));
  const directions = await mapLimit(ordered, async ([a, b]): Promise<DirectionResult> => {
    const from = firstPod(a);
    const to = firstPod(b);
    const [tcp, udp, icmp] = await Promise.all([
      runCanary(cluster, { from, to, proto: 'tcp', canary, size: 1000 }),
      runCanary(cluster, { from, to, proto: 'udp', canary, size: 500 }),
      cluster.ping(from, to, { count: 3, size: 120, patternHex: canaryPingPattern(canary), df: false }),
    ]);
    const errors = [
      ...(tcp.ok ? [] : [`tcp: ${tcp.error ?? 'failed'}`]),
      ...(udp.ok ? [] : [`udp: ${udp.error ?? 'failed'}`]),
      ...(icmp.received === icmp.transmitted && icmp.transmitted > 0 ? [] : [`icmp: ${icmp.received}/${icmp.transmitted} replies`]),
    ];
    return { from: `${a.name}/${from}`, to: `${b.name}/${to}`, tcp: tcp.ok, udp: udp.ok, icmp: icmp.transmitted > 0 && icmp.received === icmp.transmitted, errors };
  }, { limit: 4 });
  const cap = await capture.stop();
  await Promise.all(servers.map((s) => s.stop({ timeoutMs: 2000 })));
  timings.trafficMs = Date.now() - tTraffic;

  const status: EncryptionStatus = await cluster.encryptionStatus();
  const pairDetails = judgePairs(args.mode, nodes, status, directions, cap);
  const plaintextPackets = cap.podPlaintextPackets;
  const canaryLeaks = cap.canaryHits;
  const encryptedPairs = pairDetails.filter((p) => p.encrypted).length;
  const trafficOk = directions.every((d) => d.errors.length === 0);
  timings.totalMs = Date.now() - tStart;
  const { canaries: _c, podPlaintextSamples: _s, ...capRest } = cap;
  return {
    ok: args.encryption && encryptionError === undefined && encryptedPairs === pairDetails.length && plaintextPackets === 0 && canaryLeaks === 0 && trafficOk,
    nodes: nodes.length,
    mode: args.mode,
    encryption: args.encryption,
    pairs: pairDetails.length,
    encryptedPairs,
    plaintextPackets,
    canaryLeaks,
    trafficOk,
    pairDetails,
    capture: capRest,
    encryptionError,
    topology: cluster.topology(),
    ctl: ['node', join(repoRoot(), 'bin', 'sealctl.js'), '--store', 'file', '--store-dir', cluster.storeDir],
    kept: args.keep,
    timings,
  };
}

/** A pair is encrypted when both tunnels are up, all traffic passed, and nothing of it leaked. */
function judgePairs(mode: Mode, nodes: readonly NodeInfo[], status: EncryptionStatus, directions: readonly DirectionResult[], cap: CaptureResult): PairResult[] {
  const nodeOf = (addr: string): string | undefined => nodes.find((n) => n.address === addr || addressIn(addr, [n.podCIDR]))?.name;
  const between = (key: string, a: string, b: string): boolean => {
    const [src = '', rest = ''] = key.split('>');
    const dst = rest.split('/')[0] ?? '';
    const s = nodeOf(src);
    const d = nodeOf(dst);
    return (s === a && d === b) || (s === b && d === a);
  };
  const sumWhere = (rec: Readonly<Record<string, number>>, a: string, b: string): number =>
    Object.entries(rec)
      .filter(([k]) => between(k, a, b))
      .reduce((n, [, v]) => n + v, 0);
  return status.pairs.map((p) => {
    const dirs = directions.filter((d) => [`${p.a}>${p.b}`, `${p.b}>${p.a}`].includes(`${d.from.split('/')[0]}>${d.to.split('/')[0]}`));
    const plaintext = sumWhere(cap.podPlaintextFlows, p.a, p.b);
    const canary = cap.canaries.reduce((n, c) => n + sumWhere(c.byEndpoints, p.a, p.b), 0);
    const wg = sumWhere(cap.wireguardByEndpoints, p.a, p.b);
    const tunnel = p.tunnelAB && p.tunnelBA;
    const trafficOk = dirs.length === 2 && dirs.every((d) => d.errors.length === 0);
    // The traffic got through and the capture saw no plaintext: it must then have seen the
    // tunnel packets that carried it, or the capture missed the traffic and proves nothing.
    const tunnelSeen = mode === 'wireguard' ? wg > 0 : sumWhere(cap.espByEndpoints, p.a, p.b) > 0;
    return {
      a: p.a,
      b: p.b,
      tunnel,
      trafficOk,
      plaintextPackets: plaintext,
      canaryLeaks: canary,
      wireguardPackets: wg,
      encrypted: tunnel && trafficOk && tunnelSeen && cap.complete && plaintext === 0 && canary === 0,
      directions: dirs,
    };
  });
}

function printReport(r: DemoReport, args: DemoArgs): void {
  const out: string[] = [];
  const t = r.timings;
  out.push(`sealnet demo: ${r.nodes} nodes, mode ${r.mode}${r.encryption ? '' : ' (ENCRYPTION OFF: sanity baseline)'}, prefix ${r.topology.prefix}`);
  out.push(`  cluster built in ${t.buildMs} ms${t.encryptMs !== undefined ? `, encrypted after ${t.encryptMs} ms` : ''}, traffic + capture ${t.trafficMs} ms, total ${t.totalMs} ms`);
  out.push('');
  out.push('  pair        tunnel  tcp  udp  icmp  wg-pkts  plaintext  canary  verdict');
  for (const p of r.pairDetails) {
    const ok = (f: 'tcp' | 'udp' | 'icmp'): string => (p.directions.every((d) => d[f]) ? 'ok' : 'FAIL');
    out.push(
      `  ${`${p.a} <-> ${p.b}`.padEnd(12)}${(p.tunnel ? 'yes' : 'no').padEnd(8)}${ok('tcp').padEnd(5)}${ok('udp').padEnd(5)}${ok('icmp').padEnd(6)}${String(p.wireguardPackets).padEnd(9)}${String(p.plaintextPackets).padEnd(11)}${String(p.canaryLeaks).padEnd(8)}${p.encrypted ? 'encrypted' : 'NOT ENCRYPTED'}`,
    );
    for (const d of p.directions) for (const e of d.errors) out.push(`      ${d.from} -> ${d.to}: ${e}`);
  }
  out.push('');
  const kinds = Object.entries(r.capture.byKind)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  out.push(`  capture on ${r.topology.underlay.netns}/${r.topology.underlay.bridge}: ${r.capture.totalPackets} packets (${kinds || 'none'}); kernel drops: ${r.capture.kernelDropped ?? '?'}${r.capture.complete ? '' : '; CAPTURE INCOMPLETE'}`);
  const flows = Object.entries(r.capture.podPlaintextFlows).slice(0, 8);
  for (const [k, v] of flows) out.push(`    plaintext pod flow ${k}: ${v} packets`);
  out.push(`  canary ${r.capture.canaryHits > 0 ? 'SEEN' : 'never seen'} on the wire (${r.canaryLeaks} packets)`);
  if (r.encryptionError !== undefined) out.push(`  encryption not reached: ${r.encryptionError}`);
  out.push('');
  if (r.ok) out.push(`RESULT: PASS: ${r.encryptedPairs}/${r.pairs} pairs encrypted, 0 plaintext pod packets, canary never on the wire`);
  else if (!r.encryption) out.push(`RESULT: SANITY BASELINE: ${r.plaintextPackets} plaintext pod packets and ${r.canaryLeaks} canary packets seen (the capture can detect leaks); exit 1 as there is no encryption`);
  else out.push(`RESULT: FAIL: ${r.encryptedPairs}/${r.pairs} pairs encrypted, ${r.plaintextPackets} plaintext pod packets, ${r.canaryLeaks} canary packets${r.trafficOk ? '' : ', some traffic failed'}`);
  if (args.keep) {
    out.push('');
    out.push(`Cluster kept running (prefix ${r.topology.prefix}, run dir ${r.topology.runDir}).`);
    out.push(`  sealctl:  ${describeArgv(r.ctl)} <command>`);
    out.push(`  a node:   ip netns exec ${r.topology.nodes[0]?.netns ?? ''} ip route`);
    out.push('  remove:   npm run demo -- --down');
  }
  process.stdout.write(`${out.join('\n')}\n`);
  if (args.json) process.stdout.write(`${JSON.stringify(r)}\n`);
}

interface DemoState {
  readonly prefix: string;
  readonly runDir: string;
  readonly createdAt: string;
  readonly ctl: readonly string[];
  readonly topology: unknown;
}

function readState(): DemoState | undefined {
  try {
    return JSON.parse(readFileSync(DEMO_STATE_FILE, 'utf8')) as DemoState;
  } catch {
    return undefined;
  }
}

function keepCluster(cluster: NsCluster, r: DemoReport): void {
  mkdirSync(dirname(DEMO_STATE_FILE), { recursive: true });
  const state: DemoState = { prefix: cluster.prefix, runDir: cluster.runDir, createdAt: new Date().toISOString(), ctl: r.ctl, topology: r.topology };
  writeFileSync(DEMO_STATE_FILE, `${JSON.stringify(state, null, 2)}\n`);
  cluster.detach();
}

function down(): number {
  const s = readState();
  if (s === undefined) {
    err(`no kept demo cluster (${DEMO_STATE_FILE} not found)`);
    return 0;
  }
  const r = cleanupStale(s.prefix, { force: true, runDirBase: dirname(s.runDir) });
  rmSync(DEMO_STATE_FILE, { force: true });
  const left = listNetns().filter((n) => n.startsWith(`${s.prefix}-`));
  process.stdout.write(`removed demo cluster ${s.prefix}: ${r.netns.length} namespaces, ${r.killed} processes${left.length > 0 ? `; STILL PRESENT: ${left.join(', ')}` : ''}\n`);
  return left.length > 0 ? 1 : 0;
}
