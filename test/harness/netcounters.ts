/**
 * The kernel's drop counters of a namespace cluster, read without spawning anything: a network
 * namespace's /proc/net/snmp (Udp InErrors, RcvbufErrors, SndbufErrors, NoPorts; Ip InDiscards,
 * InAddrErrors, OutDiscards, OutNoRoutes), /proc/net/snmp6 (the Udp6 ones), /proc/net/netstat
 * (IpExt InNoRoutes, TcpExt IPReversePathFilter) and /proc/net/dev (each interface's rx/tx
 * drops) as seen through
 * /proc/<pid>/net/… of a process living in it, plus the host's per-CPU backlog drops
 * (/proc/net/softnet_stat, not per namespace). Used to tell a datagram lost to a full socket
 * buffer or queue (a starved reader) from one the data path never delivered.
 */
import { readFileSync, readlinkSync, statSync } from 'node:fs';

/** The UDP counters of one namespace (IPv4 and IPv6 added). */
export interface UdpCounters {
  readonly inErrors: number;
  readonly rcvbufErrors: number;
  readonly sndbufErrors: number;
  readonly noPorts: number;
}

/** Drops of one interface. */
export interface LinkDrops {
  readonly rx: number;
  readonly tx: number;
}

/** IPv4 drops of one namespace: no route, reverse-path filter, discards. */
export interface IpCounters {
  readonly inDiscards: number;
  readonly inAddrErrors: number;
  readonly outDiscards: number;
  readonly outNoRoutes: number;
  /** IpExt InNoRoutes. */
  readonly inNoRoutes: number;
  /** TcpExt IPReversePathFilter (every protocol, despite the name). */
  readonly rpFilter: number;
}

/** Counters of one namespace at one moment. */
export interface NsCounters {
  readonly udp: UdpCounters;
  /** Absent when not read (older callers, tests). */
  readonly ip?: IpCounters;
  readonly links: Readonly<Record<string, LinkDrops>>;
}

const UDP_ZERO: UdpCounters = { inErrors: 0, rcvbufErrors: 0, sndbufErrors: 0, noPorts: 0 };

/**
 * One table of /proc/net/snmp or /proc/net/netstat text (`Tag: names…` then `Tag: values…`),
 * as a lookup that throws on a missing name.
 */
export function procTable(text: string, tag: string, file: string): (name: string) => number {
  const lines = text.split('\n').filter((l) => l.startsWith(`${tag}: `));
  if (lines.length < 2) throw new Error(`no ${tag}: lines in ${file}`);
  const names = lines[0]!.split(/\s+/).slice(1);
  const values = lines[1]!.split(/\s+/).slice(1).map(Number);
  return (k: string): number => {
    const i = names.indexOf(k);
    if (i < 0 || !Number.isFinite(values[i])) throw new Error(`${file} ${tag}: has no ${k}`);
    return values[i]!;
  };
}

/** The `Udp:` counters of /proc/net/snmp text (a header line of names, then a line of values). */
export function parseSnmpUdp(text: string): UdpCounters {
  const get = procTable(text, 'Udp', '/proc/net/snmp');
  return {
    inErrors: get('InErrors'),
    rcvbufErrors: get('RcvbufErrors'),
    sndbufErrors: get('SndbufErrors'),
    noPorts: get('NoPorts'),
  };
}

/** The IPv4 drop counters of /proc/net/snmp and /proc/net/netstat text. */
export function parseIpDrops(snmp: string, netstat: string): IpCounters {
  const ip = procTable(snmp, 'Ip', '/proc/net/snmp');
  const ipExt = procTable(netstat, 'IpExt', '/proc/net/netstat');
  const tcpExt = procTable(netstat, 'TcpExt', '/proc/net/netstat');
  return {
    inDiscards: ip('InDiscards'),
    inAddrErrors: ip('InAddrErrors'),
    outDiscards: ip('OutDiscards'),
    outNoRoutes: ip('OutNoRoutes'),
    inNoRoutes: ipExt('InNoRoutes'),
    rpFilter: tcpExt('IPReversePathFilter'),
  };
}

/** The `Udp6…` counters of /proc/net/snmp6 text (`Udp6InErrors  N` lines); zero when absent. */
export function parseSnmp6Udp(text: string): UdpCounters {
  const m = new Map<string, number>();
  for (const l of text.split('\n')) {
    const [k, v] = l.trim().split(/\s+/);
    if (k !== undefined && v !== undefined) m.set(k, Number(v));
  }
  return {
    inErrors: m.get('Udp6InErrors') ?? 0,
    rcvbufErrors: m.get('Udp6RcvbufErrors') ?? 0,
    sndbufErrors: m.get('Udp6SndbufErrors') ?? 0,
    noPorts: m.get('Udp6NoPorts') ?? 0,
  };
}

/** rx/tx drops per interface of /proc/net/dev text. */
export function parseNetDev(text: string): Record<string, LinkDrops> {
  const out: Record<string, LinkDrops> = {};
  for (const l of text.split('\n').slice(2)) {
    const m = /^\s*([^:\s]+):\s*(.*)$/.exec(l);
    if (m === null) continue;
    const f = m[2]!.trim().split(/\s+/).map(Number);
    // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets errs drop …
    if (f.length < 16) throw new Error(`/proc/net/dev: short line for ${m[1]}`);
    out[m[1]!] = { rx: f[3]!, tx: f[11]! };
  }
  return out;
}

/** Packets dropped by the host's per-CPU input backlogs (second column of each CPU's line), summed. */
export function parseSoftnetDropped(text: string): number {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .reduce((a, l) => a + Number.parseInt(l.trim().split(/\s+/)[1] ?? '0', 16), 0);
}

const addUdp = (a: UdpCounters, b: UdpCounters): UdpCounters => ({
  inErrors: a.inErrors + b.inErrors,
  rcvbufErrors: a.rcvbufErrors + b.rcvbufErrors,
  sndbufErrors: a.sndbufErrors + b.sndbufErrors,
  noPorts: a.noPorts + b.noPorts,
});

/** A named network namespace and a process known to live in it. */
export interface NsProbe {
  /** Node or pod name. */
  readonly name: string;
  /** Name under /run/netns. */
  readonly netns: string;
  readonly pid: number;
}

function nsInode(netns: string): number {
  return statSync(`/run/netns/${netns}`).ino;
}

/** Reads a namespace's counters through its process; throws when the process left it. */
export function readNsCounters(p: NsProbe): NsCounters {
  const link = readlinkSync(`/proc/${p.pid}/ns/net`);
  if (Number(/\[(\d+)\]/.exec(link)?.[1]) !== nsInode(p.netns)) {
    throw new Error(`pid ${p.pid} is no longer in ${p.netns}`);
  }
  const snmp = readFileSync(`/proc/${p.pid}/net/snmp`, 'utf8');
  let udp = parseSnmpUdp(snmp);
  try {
    udp = addUdp(udp, parseSnmp6Udp(readFileSync(`/proc/${p.pid}/net/snmp6`, 'utf8')));
  } catch {
    // IPv6 off in this namespace: no snmp6
  }
  const ip = parseIpDrops(snmp, readFileSync(`/proc/${p.pid}/net/netstat`, 'utf8'));
  return { udp, ip, links: parseNetDev(readFileSync(`/proc/${p.pid}/net/dev`, 'utf8')) };
}

/** The host's backlog drops, or undefined when unreadable. */
export function readBacklogDrops(): number | undefined {
  try {
    return parseSoftnetDropped(readFileSync('/proc/net/softnet_stat', 'utf8'));
  } catch {
    return undefined;
  }
}

/** Increments of one namespace over a window; zero fields and quiet links are left out. */
export interface NsIncrements {
  readonly udpInErrors?: number;
  readonly udpRcvbufErrors?: number;
  readonly udpSndbufErrors?: number;
  readonly udpNoPorts?: number;
  /** IPv4 drops ({@link IpCounters}), nonzero ones only. */
  readonly ip?: Readonly<Partial<Record<keyof IpCounters, number>>>;
  /** Interface → drops during the window (links created or deleted meanwhile included, see {@link DropTracker}). */
  readonly links?: Readonly<Record<string, { rx?: number; tx?: number }>>;
}

/**
 * Follows counters across a window by sampling: a link first seen after the first sample counts
 * from zero (a link created meanwhile, e.g. the second WireGuard link of a rotation), a link gone
 * keeps what it had at its last sample (deleted before the end: drops after that sample are not
 * seen), and a counter that went down is a link deleted and created again under its name.
 */
export class DropTracker {
  private readonly base = new Map<string, NsCounters>();
  private readonly last = new Map<string, NsCounters>();
  /** ns → link → accumulated increments (rx, tx). */
  private readonly linkInc = new Map<string, Map<string, { rx: number; tx: number }>>();
  private readonly unread = new Set<string>();
  private backlog0: number | undefined;
  private backlog1: number | undefined;

  constructor(
    private readonly probes: () => readonly NsProbe[],
    private readonly read: (p: NsProbe) => NsCounters = readNsCounters,
    private readonly readBacklog: () => number | undefined = readBacklogDrops,
  ) {}

  /** Takes a sample of every namespace (the first one is the baseline). */
  sample(): void {
    const b = this.readBacklog();
    if (this.backlog0 === undefined) this.backlog0 = b;
    this.backlog1 = b;
    for (const p of this.probes()) {
      let now: NsCounters;
      try {
        now = this.read(p);
      } catch {
        this.unread.add(p.name);
        continue;
      }
      const prev = this.last.get(p.name);
      if (prev === undefined) {
        this.base.set(p.name, now);
      } else {
        const inc = this.linkInc.get(p.name) ?? new Map<string, { rx: number; tx: number }>();
        this.linkInc.set(p.name, inc);
        for (const [ifname, d] of Object.entries(now.links)) {
          const was = prev.links[ifname] ?? { rx: 0, tx: 0 };
          const acc = inc.get(ifname) ?? { rx: 0, tx: 0 };
          acc.rx += d.rx >= was.rx ? d.rx - was.rx : d.rx;
          acc.tx += d.tx >= was.tx ? d.tx - was.tx : d.tx;
          inc.set(ifname, acc);
        }
        // A link of the previous sample absent now keeps its accumulated drops; should it come
        // back under the same name, it is absent from `last` and counts from zero again.
      }
      this.last.set(p.name, now);
    }
  }

  /** Namespaces that could not be read at some sample. */
  unreadable(): string[] {
    return [...this.unread].sort();
  }

  /** The host's backlog drops between the first and the last sample. */
  backlogDrops(): number | undefined {
    return this.backlog0 === undefined || this.backlog1 === undefined ? undefined : this.backlog1 - this.backlog0;
  }

  /** Increments per namespace between its first and last sample; namespaces with none are left out. */
  increments(): Record<string, NsIncrements> {
    const out: Record<string, NsIncrements> = {};
    for (const [name, b] of this.base) {
      const l = this.last.get(name)!;
      const d = (k: keyof UdpCounters): number | undefined => {
        const v = l.udp[k] - b.udp[k];
        return v === 0 ? undefined : v;
      };
      const links: Record<string, { rx?: number; tx?: number }> = {};
      for (const [ifname, acc] of this.linkInc.get(name) ?? []) {
        if (acc.rx === 0 && acc.tx === 0) continue;
        links[ifname] = { ...(acc.rx > 0 ? { rx: acc.rx } : {}), ...(acc.tx > 0 ? { tx: acc.tx } : {}) };
      }
      const ip: Partial<Record<keyof IpCounters, number>> = {};
      if (b.ip !== undefined && l.ip !== undefined) {
        for (const k of Object.keys(l.ip) as (keyof IpCounters)[]) {
          const v = l.ip[k] - b.ip[k];
          if (v !== 0) ip[k] = v;
        }
      }
      const e: NsIncrements = {
        ...(d('inErrors') !== undefined ? { udpInErrors: d('inErrors') } : {}),
        ...(d('rcvbufErrors') !== undefined ? { udpRcvbufErrors: d('rcvbufErrors') } : {}),
        ...(d('sndbufErrors') !== undefined ? { udpSndbufErrors: d('sndbufErrors') } : {}),
        ...(d('noPorts') !== undefined ? { udpNoPorts: d('noPorts') } : {}),
        ...(Object.keys(ip).length > 0 ? { ip } : {}),
        ...(Object.keys(links).length > 0 ? { links } : {}),
      };
      if (Object.keys(e).length > 0) out[name] = e;
    }
    return out;
  }
}

/** IPv4 drops of one namespace's increments, summed. */
export function ipDropSum(e: NsIncrements | undefined): number {
  return Object.values(e?.ip ?? {}).reduce((a, v) => a + (v ?? 0), 0);
}

/** Link drops of one namespace's increments, summed. */
export function linkDropSum(e: NsIncrements | undefined): number {
  return Object.values(e?.links ?? {}).reduce((a, l) => a + (l.rx ?? 0) + (l.tx ?? 0), 0);
}
