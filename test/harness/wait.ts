/** Polling and Prometheus helpers shared by the e2e, k8s and qemu tiers. */
import type { NsCluster } from './cluster.js';
import { sleep } from './exec.js';

/** Polls `fn` until it returns something other than undefined; throws after `timeoutMs`. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, opts: { timeoutMs: number; pollMs?: number }): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${what}`);
    await sleep(opts.pollMs ?? 100);
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
