/**
 * Helpers shared by the guest's mode-ipsec cluster suites (cluster.kernel.test.ts,
 * ipsec-rotation.kernel.test.ts): building an encrypted {@link NsCluster}, the kernel's SAs as
 * `ip -s xfrm state` shows them, and the real `sealctl` (status) against the cluster's store.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NsCluster } from '../harness/cluster.js';
import { run, type ExecResult } from '../harness/exec.js';
import { repoRoot } from '../harness/paths.js';
import { waitFor as pollUntil } from '../harness/wait.js';

/** Nodes of the guest's clusters (each agent costs seconds of CPU under TCG). */
export const NODES = 3;

/** A stderr logger whose lines start with `kernel-vm <what>:`. */
export function noter(what: string): (line: string) => void {
  return (line) => {
    process.stderr.write(`kernel-vm ${what}: ${line}\n`);
  };
}

/** Polls until `fn` returns a value, with a slower default poll: the guest is emulated. */
export function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  opts: { timeoutMs: number; pollMs?: number },
): Promise<T> {
  return pollUntil(what, fn, { pollMs: 250, ...opts });
}

/** Scrapes the agent's Prometheus endpoint from inside the node (curl: a node process costs seconds of CPU under TCG). */
export async function metrics(c: NsCluster, node: string): Promise<string> {
  return (
    await c.execNode(node, ['curl', '-sf', '--max-time', '10', 'http://127.0.0.1:9588/metrics'], { timeoutMs: 15_000 })
  ).stdout;
}

/** Builds a {@link NODES}-node cluster and waits until every pair pings through its tunnels; logs the timings. */
export async function encryptedCluster(
  mode: 'wireguard' | 'ipsec',
  opts: { log: (line: string) => void; agentConfig?: Record<string, unknown> },
): Promise<NsCluster> {
  const { log, agentConfig } = opts;
  const t0 = Date.now();
  const c = await NsCluster.create({
    nodes: NODES,
    podsPerNode: 1,
    mode,
    log,
    ...(agentConfig === undefined ? {} : { agentConfig }),
  });
  try {
    await c.waitEncrypted({ timeoutMs: 120_000, pollMs: 1000 });
  } catch (err) {
    for (const n of c.nodeNames())
      log(
        `${n} agent log tail:\n${(await readFile(c.agentLogPath(n), 'utf8').catch(() => '')).split('\n').slice(-15).join('\n')}`,
      );
    await c.destroy();
    throw err;
  }
  log(
    `mode ${mode}: ${NODES} nodes built in ${c.timings.buildMs} ms, agents started in ${c.timings.agentsStartMs} ms, all pairs encrypted after ${Date.now() - t0} ms`,
  );
  return c;
}

/** One SA as `ip -s xfrm state` shows it. */
export interface SaCounters {
  readonly src: string;
  readonly dst: string;
  readonly spi: string;
  readonly bytes: number;
  readonly packets: number;
}

/** Parses `ip -s xfrm state list` (the AEAD key lines are ignored, never printed). */
export function parseXfrmStates(text: string): SaCounters[] {
  const out: SaCounters[] = [];
  for (const block of text.split(/^(?=src )/m)) {
    const head = /^src (\S+) dst (\S+)\s*\n\s*proto esp spi (0x[0-9a-f]+)/.exec(block);
    const cur = /lifetime current:\s*\n\s*(\d+)\(bytes\), (\d+)\(packets\)/.exec(block);
    if (head === null || cur === null) continue;
    out.push({ src: head[1]!, dst: head[2]!, spi: head[3]!, bytes: Number(cur[1]), packets: Number(cur[2]) });
  }
  return out;
}

/** A node's SAs with their counters. */
export async function xfrmStates(c: NsCluster, node: string): Promise<SaCounters[]> {
  return parseXfrmStates((await c.execNode(node, ['ip', '-s', 'xfrm', 'state', 'list'])).stdout);
}

/** One side of a pair in `sealctl status --json` (the fields these tests read). */
export interface StatusSide {
  node: string;
  state: string;
  algorithm?: string;
  spiOut?: string;
  spiIn?: string[];
  rx?: number;
  tx?: number;
  rxPackets?: number;
  txPackets?: number;
}

/** `sealctl status --json`, the fields these tests read. */
export interface StatusJson {
  partial: boolean;
  nodes: { name: string; health: string; report?: { mode: string; algorithm: string } }[];
  pairs: {
    a: string;
    b: string;
    state: string;
    algorithm?: string;
    notes: string[];
    sides: [StatusSide, StatusSide];
  }[];
}

/** The real `sealctl` CLI against the cluster's file store; never throws on a non-zero exit. */
export async function sealctl(
  c: NsCluster,
  args: readonly string[],
  opts: { timeoutMs?: number } = {},
): Promise<ExecResult> {
  return run(
    [process.execPath, join(repoRoot(), 'bin', 'sealctl.js'), '--store', 'file', '--store-dir', c.storeDir, ...args],
    { check: false, timeoutMs: opts.timeoutMs ?? 120_000 },
  );
}

/** `sealctl status --json`. */
export async function clusterStatus(c: NsCluster): Promise<StatusJson> {
  return JSON.parse((await sealctl(c, ['status', '--json'])).stdout) as StatusJson;
}

/** Every pair encrypted from both ends with AES-GCM 256 SAs that carried packets both ways. */
export function everyPairEncryptedWithTraffic(s: StatusJson): boolean {
  return (
    !s.partial &&
    s.pairs.length === (NODES * (NODES - 1)) / 2 &&
    s.pairs.every(
      (p) =>
        p.state === 'encrypted' &&
        p.algorithm === 'ipsec-esp-aes-gcm-256' &&
        p.sides.every(
          (x) => x.algorithm === 'ipsec-esp-aes-gcm-256' && (x.rxPackets ?? 0) > 0 && (x.txPackets ?? 0) > 0,
        ),
    )
  );
}

/** Status of mode ipsec agents: fast publication so the tests see state changes and counters at once. */
export const IPSEC_STATUS_CONFIG = {
  status: { heartbeatSeconds: 5, minIntervalSeconds: 1 },
  resyncIntervalSeconds: 300,
};
