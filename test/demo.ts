/**
 * `npm run demo`: builds a namespace cluster, starts agents, waits until every node pair is
 * encrypted, sends pod-to-pod TCP, UDP and ICMP with a canary on every pair in both directions
 * while capturing on the underlay, and reports what the capture proves.
 *
 *   npm run demo -- --nodes 3 --mode wireguard [--pods 1] [--mtu 1500] [--json] [--keep]
 *                   [--ip-family ipv4|ipv6|dual] [--underlay-family 4|6]
 *     --ip-family: the families of nodes and pods (default ipv4); with dual, every direction is
 *     exercised once per family. --underlay-family: what the tunnels run over in a dual-stack
 *     cluster (default 4).
 *   npm run demo -- --no-encryption     the sanity baseline: must see plaintext, exits 1
 *   npm run demo -- --down              removes a cluster left by --keep
 *
 * Exit 0 only if every pair is encrypted, every node published a status saying so (an audit run
 * right after reads a complete cluster), all traffic got through, and the capture holds no
 * plaintext pod packet and no canary. With --json the last stdout line is one JSON object.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { NsCluster, cleanupStale, type EncryptionStatus, type NodeInfo } from './harness/cluster.js';
import { waitStatusPublished } from './harness/encryption.js';
import type { CaptureResult } from './harness/capture.js';
import { describeArgv, mapLimit } from './harness/exec.js';
import { repoRoot } from './harness/paths.js';
import { addressIn } from './harness/leaks.js';
import { listNetns } from './harness/teardown.js';
import { installWatchdog } from './harness/wait.js';
import { proveAllPairs, type PairResult } from './harness/prove.js';
import type { Mode } from '../tunnels/ports/model.js';
import type { IpFamily } from './harness/topology.js';

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
  readonly ipFamily: IpFamily;
  readonly underlayFamily: 4 | 6 | undefined;
}

/** Parses demo arguments; throws with a usage message. */
export function parseDemoArgs(argv: readonly string[]): DemoArgs {
  const a = {
    nodes: 3,
    pods: 1,
    mode: 'wireguard' as Mode,
    mtu: 1500,
    json: false,
    keep: false,
    encryption: true,
    down: false,
    timeoutS: 90,
    ipFamily: 'ipv4' as IpFamily,
    underlayFamily: undefined as 4 | 6 | undefined,
  };
  const num = (flag: string, v: string | undefined, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new Error(`${flag} needs an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
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
        if (m !== 'wireguard' && m !== 'ipsec')
          throw new Error(`--mode must be wireguard or ipsec, got ${JSON.stringify(m)}`);
        a.mode = m;
        break;
      }
      case '--ip-family': {
        const v = argv[++i];
        if (v !== 'ipv4' && v !== 'ipv6' && v !== 'dual')
          throw new Error(`--ip-family must be ipv4, ipv6 or dual, got ${JSON.stringify(v)}`);
        a.ipFamily = v;
        break;
      }
      case '--underlay-family': {
        const v = argv[++i];
        if (v !== '4' && v !== '6') throw new Error(`--underlay-family must be 4 or 6, got ${JSON.stringify(v)}`);
        a.underlayFamily = v === '4' ? 4 : 6;
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
        throw new Error(
          `unknown argument ${JSON.stringify(f)}\nusage: demo [--nodes N] [--pods N] [--mode wireguard|ipsec] [--mtu N] [--ip-family ipv4|ipv6|dual] [--underlay-family 4|6] [--timeout S] [--json] [--keep] [--no-encryption] | --down`,
        );
    }
  }
  if (a.ipFamily !== 'dual' && a.underlayFamily !== undefined && a.underlayFamily !== (a.ipFamily === 'ipv4' ? 4 : 6)) {
    throw new Error(`--underlay-family ${a.underlayFamily} does not fit --ip-family ${a.ipFamily}`);
  }
  return a;
}

/** The --json report. */
export interface DemoReport {
  readonly ok: boolean;
  readonly nodes: number;
  readonly mode: Mode;
  readonly ipFamily: IpFamily;
  readonly underlayFamily: 4 | 6;
  readonly encryption: boolean;
  readonly pairs: number;
  readonly encryptedPairs: number;
  readonly plaintextPackets: number;
  readonly canaryLeaks: number;
  readonly trafficOk: boolean;
  readonly pairDetails: readonly PairResult[];
  readonly capture: Omit<CaptureResult, 'canaries' | 'podPlaintextSamples'>;
  readonly encryptionError: string | undefined;
  /**
   * Every node published a status summary saying it is ready with every peer encrypted: a
   * `sealctl audit` run now reads a complete cluster (false without encryption).
   */
  readonly statusPublished: boolean;
  readonly statusError: string | undefined;
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
  // SIGUSR2 prints what the demo waits for; a drained event loop mid-run is reported, not silent.
  let finished = false;
  const uninstall = installWatchdog({ name: 'demo', finished: () => finished });
  try {
    return await runDemo(args, tStart);
  } finally {
    finished = true;
    uninstall();
  }
}

async function runDemo(args: DemoArgs, tStart: number): Promise<number> {
  const cluster = await NsCluster.create({
    nodes: args.nodes,
    podsPerNode: args.pods,
    mode: args.mode,
    mtu: args.mtu,
    encryption: args.encryption,
    ipFamily: args.ipFamily,
    ...(args.underlayFamily !== undefined ? { underlayFamily: args.underlayFamily } : {}),
    log: err,
  });
  try {
    const early = await waitForAgents(cluster, args);
    if (early !== undefined) {
      // The agents are gone: no traffic test can say more than their own last words.
      err(`RESULT: FAIL: ${early}`);
      if (args.json)
        process.stdout.write(
          `${JSON.stringify({ ok: false, nodes: args.nodes, mode: args.mode, encryption: args.encryption, error: early, topology: cluster.topology() })}\n`,
        );
      return 1;
    }
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

/**
 * Waits until every pair is encrypted (bounded by --timeout). Returns the reason when the wait
 * ended because an agent exited (it fails fast: no waiting out the timeout for a dead agent);
 * undefined otherwise, also on a plain timeout, which {@link exercise} reports in full.
 */
async function waitForAgents(cluster: NsCluster, args: DemoArgs): Promise<string | undefined> {
  if (!args.encryption) return undefined;
  const t = Date.now();
  try {
    await cluster.waitEncrypted({ timeoutMs: args.timeoutS * 1000 });
    cluster.timings.encryptMs = Date.now() - t;
    return undefined;
  } catch (e) {
    if (cluster.agentFailures().length === 0) return undefined;
    return `agents exited ${Date.now() - t} ms into the wait, before every pair was encrypted:\n  ${cluster.agentFailures().join('\n  ')}`;
  }
}

async function exercise(cluster: NsCluster, args: DemoArgs, tStart: number): Promise<DemoReport> {
  const timings: Record<string, number> = { ...cluster.timings };
  let encryptionError: string | undefined;
  if (args.encryption && timings.encryptMs === undefined) {
    const t = Date.now();
    try {
      await cluster.waitEncrypted({ timeoutMs: args.timeoutS * 1000 });
    } catch (e) {
      encryptionError = (e as Error).message;
      err(`not encrypted: ${encryptionError}`);
    }
    timings.encryptMs = Date.now() - t;
  }
  // Ready means what an auditor would read says so too: every node's published status.
  let statusError: string | undefined;
  if (args.encryption && encryptionError === undefined) {
    const t = Date.now();
    try {
      await waitStatusPublished(cluster, { timeoutMs: args.timeoutS * 1000 });
    } catch (e) {
      statusError = (e as Error).message;
      err(`status not published: ${statusError}`);
    }
    timings.statusMs = Date.now() - t;
  }
  const statusPublished = args.encryption && encryptionError === undefined && statusError === undefined;

  const tTraffic = Date.now();
  const nodes = cluster.nodes;
  const plan = cluster.addressPlan;
  const families =
    args.ipFamily === 'ipv4' ? undefined : [...(plan.v4 ? [4 as const] : []), ...(plan.v6 ? [6 as const] : [])];
  const proof = await proveAllPairs(cluster, {
    mode: args.mode,
    hostToPod: true,
    captureName: 'demo',
    ...(families !== undefined ? { families } : {}),
  });
  const { directions: podDirections, hostDirections, capture: cap, status, pairs: pairDetails } = proof;
  const directions = [...podDirections, ...hostDirections];
  timings.trafficMs = Date.now() - tTraffic;

  const plaintextPackets = cap.podPlaintextPackets;
  const canaryLeaks = cap.canaryHits;
  const encryptedPairs = pairDetails.filter((p) => p.encrypted).length;
  const trafficOk = directions.every((d) => d.errors.length === 0);
  timings.totalMs = Date.now() - tStart;
  const { canaries: _c, podPlaintextSamples: _s, ...capRest } = cap;
  return {
    ok:
      args.encryption &&
      encryptionError === undefined &&
      statusPublished &&
      encryptedPairs === pairDetails.length &&
      plaintextPackets === 0 &&
      canaryLeaks === 0 &&
      trafficOk,
    nodes: nodes.length,
    mode: args.mode,
    ipFamily: args.ipFamily,
    underlayFamily: cluster.addressPlan.underlay,
    encryption: args.encryption,
    pairs: pairDetails.length,
    encryptedPairs,
    plaintextPackets,
    canaryLeaks,
    trafficOk,
    pairDetails,
    capture: capRest,
    encryptionError,
    statusPublished,
    statusError,
    topology: cluster.topology(),
    ctl: ['node', join(repoRoot(), 'bin', 'sealctl.js'), '--store', 'file', '--store-dir', cluster.storeDir],
    kept: args.keep,
    timings,
  };
}

function printReport(r: DemoReport, args: DemoArgs): void {
  const out: string[] = [];
  const t = r.timings;
  out.push(
    `sealnet demo: ${r.nodes} nodes, mode ${r.mode}, ${r.ipFamily} over an IPv${r.underlayFamily} underlay${r.encryption ? '' : ' (ENCRYPTION OFF: sanity baseline)'}, prefix ${r.topology.prefix}`,
  );
  out.push(
    `  cluster built in ${t.buildMs} ms${t.encryptMs !== undefined ? `, encrypted after ${t.encryptMs} ms` : ''}${t.statusMs !== undefined ? `, every status published ${t.statusMs} ms later` : ''}, traffic + capture ${t.trafficMs} ms, total ${t.totalMs} ms`,
  );
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
  out.push(
    `  capture on ${r.topology.underlay.netns}/${r.topology.underlay.bridge}: ${r.capture.totalPackets} packets (${kinds || 'none'}); kernel drops: ${r.capture.kernelDropped ?? '?'}${r.capture.complete ? '' : '; CAPTURE INCOMPLETE'}`,
  );
  const flows = Object.entries(r.capture.podPlaintextFlows).slice(0, 8);
  for (const [k, v] of flows) out.push(`    plaintext pod flow ${k}: ${v} packets`);
  out.push(`  canary ${r.capture.canaryHits > 0 ? 'SEEN' : 'never seen'} on the wire (${r.canaryLeaks} packets)`);
  if (r.encryptionError !== undefined) out.push(`  encryption not reached: ${r.encryptionError}`);
  if (r.statusError !== undefined) out.push(`  status not published: ${r.statusError}`);
  out.push('');
  if (r.ok)
    out.push(
      `RESULT: PASS: ${r.encryptedPairs}/${r.pairs} pairs encrypted, 0 plaintext pod packets, canary never on the wire`,
    );
  else if (!r.encryption)
    out.push(
      `RESULT: SANITY BASELINE: ${r.plaintextPackets} plaintext pod packets and ${r.canaryLeaks} canary packets seen (the capture can detect leaks); exit 1 as there is no encryption`,
    );
  else
    out.push(
      `RESULT: FAIL: ${r.encryptedPairs}/${r.pairs} pairs encrypted, ${r.plaintextPackets} plaintext pod packets, ${r.canaryLeaks} canary packets${r.trafficOk ? '' : ', some traffic failed'}`,
    );
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
  const state: DemoState = {
    prefix: cluster.prefix,
    runDir: cluster.runDir,
    createdAt: new Date().toISOString(),
    ctl: r.ctl,
    topology: r.topology,
  };
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
  process.stdout.write(
    `removed demo cluster ${s.prefix}: ${r.netns.length} namespaces, ${r.killed} processes${left.length > 0 ? `; STILL PRESENT: ${left.join(', ')}` : ''}\n`,
  );
  return left.length > 0 ? 1 : 0;
}
