/**
 * Diagnostics printed by the guest's key-rotation suite, so a lost datagram can be placed: the
 * kernel's XFRM error counters (/proc/net/xfrm_stat, per namespace), the agents' BPF drops,
 * reconcile errors and kernel writes (Prometheus), and the agents' XFRM changes and warnings
 * with their time relative to the rotation request.
 */
import { readFile } from 'node:fs/promises';
import type { NsCluster } from '../harness/cluster.js';
import { metrics } from './ipsec-cluster.js';

/** Counters of one node: `xfrm:<name>` and `<metric>{labels}`. */
export type Counters = Record<string, number>;

/** The counters of every node that can explain a lost packet. */
export async function nodeCounters(c: NsCluster): Promise<Record<string, Counters>> {
  const out: Record<string, Counters> = {};
  for (const n of c.nodeNames()) {
    const k: Counters = {};
    const stat = await c.execNode(n, ['cat', '/proc/net/xfrm_stat'], { check: false });
    for (const line of stat.stdout.split('\n')) {
      const m = /^(\w+)\s+(\d+)$/.exec(line.trim());
      if (m !== null) k[`xfrm:${m[1]}`] = Number(m[2]);
    }
    const text = await metrics(c, n).catch(() => '');
    for (const line of text.split('\n')) {
      const m =
        /^(sealnet_bpf_packets_total\{[^}]*verdict="drop"[^}]*\}|sealnet_reconcile_errors_total\{[^}]*\}|sealnet_kernel_operations_total\{[^}]*\}) ([0-9.e+-]+)$/.exec(
          line,
        );
      if (m !== null) k[m[1]!] = Number(m[2]);
    }
    // Every link's error and drop counters (a kernel WireGuard link counts a datagram it could not
    // send to a peer, or whose inner source its peer may not use, as an error).
    const links = await c.execNode(n, ['ip', '-j', '-s', 'link', 'show'], { check: false });
    for (const l of parseLinkStats(links.stdout))
      for (const [f, v] of Object.entries(l.counts)) k[`link:${l.ifname}:${f}`] = v;
    out[n] = k;
  }
  // Receive-side drops that are not the tunnel's: UDP socket buffers of the pods (a starved
  // receiver under TCG) and the guest's per-CPU backlog queues (global).
  for (const p of c.pods()) {
    const snmp = (await c.execPod(p.name, ['cat', '/proc/net/snmp'], { check: false })).stdout
      .split('\n')
      .filter((l) => l.startsWith('Udp:'));
    const [names, values] = [snmp[0]?.split(/\s+/) ?? [], snmp[1]?.split(/\s+/) ?? []];
    for (const f of ['InErrors', 'RcvbufErrors']) {
      const i = names.indexOf(f);
      if (i > 0) (out[p.node] ??= {})[`udp:${p.name}:${f}`] = Number(values[i]);
    }
  }
  const softnet = (await readFile('/proc/net/softnet_stat', 'utf8').catch(() => ''))
    .split('\n')
    .filter((l) => l !== '');
  (out['guest'] ??= {})['softnet:dropped'] = softnet.reduce((n, l) => n + parseInt(l.split(/\s+/)[1] ?? '0', 16), 0);
  return out;
}

/** Non-zero differences, by node. */
export function counterDeltas(
  before: Record<string, Counters>,
  after: Record<string, Counters>,
): Record<string, Counters> {
  const out: Record<string, Counters> = {};
  for (const [n, a] of Object.entries(after)) {
    const d: Counters = {};
    for (const [k, v] of Object.entries(a)) if (v - (before[n]?.[k] ?? 0) !== 0) d[k] = v - (before[n]?.[k] ?? 0);
    out[n] = d;
  }
  return out;
}

/** The agents' XFRM changes, rotation events, warnings and errors between `from` and `to` (epoch ms), as `+s node msg`. */
export async function agentEvents(c: NsCluster, window: { from: number; to: number }): Promise<string[]> {
  const lines: { t: number; text: string }[] = [];
  for (const n of c.nodeNames()) {
    for (const raw of (await readFile(c.agentLogPath(n), 'utf8').catch(() => '')).split('\n')) {
      let e: { time?: number; level?: number; msg?: string; changes?: string[]; err?: unknown };
      try {
        e = JSON.parse(raw) as typeof e;
      } catch {
        continue;
      }
      if (e.time === undefined || e.time < window.from || e.time > window.to) continue;
      const interesting = (e.level ?? 0) >= 40 || /XFRM|rotation|IPsec key|phase/i.test(e.msg ?? '');
      if (!interesting) continue;
      const extra =
        e.changes !== undefined
          ? `: ${e.changes.join(', ')}`
          : e.err !== undefined
            ? `: ${JSON.stringify(e.err).slice(0, 300)}`
            : '';
      lines.push({ t: e.time, text: `+${((e.time - window.from) / 1000).toFixed(2)}s ${n} ${e.msg ?? ''}${extra}` });
    }
  }
  return lines.sort((a, b) => a.t - b.t).map((l) => l.text);
}

/** Error and drop counters of each link in `ip -j -s link show` output; unparsable output reads as none. */
export function parseLinkStats(json: string): { ifname: string; counts: Record<string, number> }[] {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch {
    return [];
  }
  if (!Array.isArray(doc)) return [];
  const out: { ifname: string; counts: Record<string, number> }[] = [];
  for (const l of doc as { ifname?: unknown; stats64?: Record<string, Record<string, unknown>> }[]) {
    if (typeof l.ifname !== 'string') continue;
    const counts: Record<string, number> = {};
    for (const dir of ['rx', 'tx'])
      for (const f of ['errors', 'dropped']) {
        const v = l.stats64?.[dir]?.[f];
        if (typeof v === 'number') counts[`${dir}_${f}`] = v;
      }
    out.push({ ifname: l.ifname, counts });
  }
  return out;
}

/** The deltas whose names match `pattern`, flattened to `"<node> <counter>": delta` as JSON (for a failure sentence). */
export function countersWhy(deltas: Record<string, Counters>, pattern: RegExp): string {
  return JSON.stringify(
    Object.fromEntries(
      Object.entries(deltas).flatMap(([n, k]) =>
        Object.entries(k)
          .filter(([x]) => pattern.test(x))
          .map(([x, v]) => [`${n} ${x}`, v]),
      ),
    ),
  );
}
