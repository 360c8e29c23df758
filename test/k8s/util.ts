/** Small helpers shared by the Kubernetes-tier tests. */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NsCluster } from '../harness/cluster.js';
import { sleep } from '../harness/exec.js';

/** Polls `fn` until it returns something other than undefined; throws after `timeoutMs`. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, opts: { timeoutMs: number; pollMs?: number }): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${what}`);
    await sleep(opts.pollMs ?? 200);
  }
}

/** Scrapes a node agent's Prometheus endpoint from inside the node. */
export async function scrapeMetrics(c: NsCluster, node: string): Promise<string> {
  const script = "fetch('http://127.0.0.1:9588/metrics').then(r=>r.text()).then(t=>process.stdout.write(t),e=>{console.error(String(e));process.exit(1)})";
  return (await c.execNode(node, [process.execPath, '-e', script])).stdout;
}

/** Sum of a metric's samples whose label set contains `labelFilter` (0 when absent). */
export function metricValue(text: string, name: string, labelFilter = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
    if (m === null || m[1] !== name || !(m[2] ?? '').includes(labelFilter)) continue;
    sum += Number(m[3]);
  }
  return sum;
}

/** The agent's log lines (JSON objects; anything else skipped). */
export async function agentLog(c: NsCluster, node: string): Promise<Record<string, unknown>[]> {
  const text = await readFile(c.agentLogPath(node), 'utf8').catch(() => '');
  const out: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a torn line at a kill -9
    }
  }
  return out;
}

/** Every regular file under `dir`, recursively. */
export async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** The node's private WireGuard key as the agent stores it (base64) and as raw bytes. */
export async function privateKeyOf(c: NsCluster, node: string): Promise<{ base64: string; raw: Buffer }> {
  const base64 = (await readFile(join(c.runDir, node, 'state', 'keys', 'wireguard.key'), 'utf8')).trim();
  const raw = Buffer.from(base64, 'base64');
  if (raw.length !== 32) throw new Error(`${node}: private key file does not hold 32 bytes of base64`);
  return { base64, raw };
}
