/**
 * CPU accounting for the throughput bench (issue 17, item 3): CPU seconds of the processes that
 * carry a variant's encryption (the agents, wireguard-go) during one iperf3 run, read from
 * /proc/<pid>/stat, plus the machine-wide softirq time of the run from /proc/stat. iperf3 itself
 * is never counted: it is the load, not the cost of carrying it.
 */
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import type { NsCluster } from '../harness/cluster.js';

/** Kernel clock ticks per second (USER_HZ): 100 on every Linux ABI Node runs on. */
export const USER_HZ = 100;

/** utime + stime (+ cutime + cstime: reaped helpers such as `ip` the agent ran) of a pid, in ticks. */
export function processTicks(pid: number, withChildren = true): number | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return parseStatTicks(text, withChildren);
}

/** Parses /proc/<pid>/stat: fields 14–17 (utime, stime, cutime, cstime), after the `(comm)`. */
export function parseStatTicks(text: string, withChildren = true): number | undefined {
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state): field n is rest[n - 3].
  const f = (n: number): number => Number(rest[n - 3]);
  const own = f(14) + f(15);
  const total = withChildren ? own + f(16) + f(17) : own;
  return Number.isFinite(total) ? total : undefined;
}

/** Machine-wide CPU ticks from the first line of /proc/stat: softirq and all busy time. */
export function parseProcStat(text: string): { softirq: number; busy: number } {
  const line = text.split('\n').find((l) => l.startsWith('cpu ')) ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user.
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = v;
  return { softirq, busy: user + nice + system + irq + softirq + steal };
}

/** Pids of wireguard-go processes living in a node's network namespace. */
export function wireguardGoPids(c: NsCluster, node: string): number[] {
  const want = `net:[${statSync(`/run/netns/${c.node(node).netns}`).ino}]`;
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/net`) !== want) continue;
      if (/wireguard/.test(readlinkSync(`/proc/${entry}/exe`))) pids.push(Number(entry));
    } catch {
      // exited meanwhile, or a kernel thread
    }
  }
  return pids.sort((a, b) => a - b);
}

/** The processes whose CPU a variant's run is charged with. */
export interface CpuSubjects {
  readonly agents: readonly number[];
  readonly wireguardGo: readonly number[];
}

/** Agents (if the cluster runs them) and wireguard-go of every node. */
export function cpuSubjects(c: NsCluster): CpuSubjects {
  const agents = c.nodeNames().flatMap((n) => {
    const pid = c.agentStatus(n).pid;
    return pid === undefined ? [] : [pid];
  });
  return { agents, wireguardGo: c.nodeNames().flatMap((n) => wireguardGoPids(c, n)) };
}

/** A snapshot to diff with {@link cpuSince}. */
export interface CpuSnapshot {
  readonly at: number;
  readonly agents: number;
  readonly wireguardGo: number;
  readonly softirq: number;
  readonly busy: number;
}

/** CPU seconds used during a run (see {@link cpuSince}). */
export interface CpuUsage {
  /** Agents of both nodes (0 where the variant has none). */
  readonly agentS: number;
  /** wireguard-go of both nodes, user + system (its TUN reads/writes and UDP sends run in its threads). */
  readonly wireguardGoS: number;
  /** Machine-wide softirq time during the run: the kernel's packet processing of every tenant. */
  readonly softirqS: number;
  /** Machine-wide busy time during the run (everything, iperf3 and other tenants included). */
  readonly machineBusyS: number;
  readonly wallS: number;
}

const sum = (pids: readonly number[], withChildren: boolean): number =>
  pids.reduce((a, p) => a + (processTicks(p, withChildren) ?? 0), 0);

/** Reads the counters now. */
export function cpuSnapshot(s: CpuSubjects): CpuSnapshot {
  const st = parseProcStat(readFileSync('/proc/stat', 'utf8'));
  return {
    at: Date.now(),
    agents: sum(s.agents, true),
    wireguardGo: sum(s.wireguardGo, false),
    softirq: st.softirq,
    busy: st.busy,
  };
}

/** CPU seconds between `before` and now. */
export function cpuSince(s: CpuSubjects, before: CpuSnapshot): CpuUsage {
  const now = cpuSnapshot(s);
  const sec = (t: number): number => t / USER_HZ;
  return {
    agentS: sec(now.agents - before.agents),
    wireguardGoS: sec(now.wireguardGo - before.wireguardGo),
    softirqS: sec(now.softirq - before.softirq),
    machineBusyS: sec(now.busy - before.busy),
    wallS: (now.at - before.at) / 1000,
  };
}
