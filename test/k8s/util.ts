/** Small helpers shared by the Kubernetes-tier tests. */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NsCluster } from '../harness/cluster.js';
import { waitFor as pollUntil } from '../harness/wait.js';

export { metricValue, scrapeMetrics } from '../harness/wait.js';

/** {@link pollUntil} with the 200 ms default poll this tier has always used. */
export function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  opts: { timeoutMs: number; pollMs?: number },
): Promise<T> {
  return pollUntil(what, fn, { pollMs: 200, ...opts });
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
