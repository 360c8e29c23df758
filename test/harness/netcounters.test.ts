import {
  DropTracker,
  ipDropSum,
  linkDropSum,
  parseIpDrops,
  parseNetDev,
  parseSnmp6Udp,
  parseSnmpUdp,
  parseSoftnetDropped,
  type NsCounters,
  type NsProbe,
} from './netcounters.js';

// Real text of a 6.x kernel's /proc/net/snmp (Ip, Icmp and Tcp lines shortened), values changed.
const SNMP = `Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout
Ip: 1 64 1234 0 3 0 0 4 5 6 7 8 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 73 2 9 74 7 1 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 100 100 100 100 100 100 0 0 0
`;
const SNMP6 = `Ip6InReceives                   	10
Udp6InDatagrams                 	5
Udp6NoPorts                     	1
Udp6InErrors                    	3
Udp6OutDatagrams                	4
Udp6RcvbufErrors                	2
Udp6SndbufErrors                	0
UdpLite6InErrors                	50
`;
const DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0
sealwg0: 1000 10 0 4 0 0 0 0 2000 20 0 6 0 0 0 0
  eth0: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0
`;
const SOFTNET = `0010e920 00000003 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
000eb071 0000000a 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000000 00000000
`;

// /proc/net/netstat, most columns left out.
const NETSTAT = `TcpExt: SyncookiesSent IPReversePathFilter TCPTimeouts
TcpExt: 0 11 2
IpExt: InNoRoutes InTruncatedPkts
IpExt: 12 0
`;

describe('drop counter parsers', () => {
  it('reads the IPv4 drops by name', () => {
    expect(parseIpDrops(SNMP, NETSTAT)).toEqual({
      inDiscards: 4,
      inAddrErrors: 3,
      outDiscards: 7,
      outNoRoutes: 8,
      inNoRoutes: 12,
      rpFilter: 11,
    });
    expect(() => parseIpDrops(SNMP, 'IpExt: InNoRoutes\nIpExt: 1\n')).toThrow(/no TcpExt: lines/);
  });
  it('reads the Udp: line by name, not UdpLite:', () => {
    expect(parseSnmpUdp(SNMP)).toEqual({ inErrors: 9, rcvbufErrors: 7, sndbufErrors: 1, noPorts: 2 });
  });
  it('refuses a snmp text without Udp:', () => {
    expect(() => parseSnmpUdp('Ip: a\nIp: 1\n')).toThrow(/no Udp: lines/);
  });
  it('reads the Udp6 counters, not UdpLite6', () => {
    expect(parseSnmp6Udp(SNMP6)).toEqual({ inErrors: 3, rcvbufErrors: 2, sndbufErrors: 0, noPorts: 1 });
  });
  it('reads rx and tx drops per interface', () => {
    expect(parseNetDev(DEV)).toEqual({ lo: { rx: 0, tx: 0 }, sealwg0: { rx: 4, tx: 6 }, eth0: { rx: 0, tx: 0 } });
  });
  it('sums the second (hex) column of softnet_stat', () => {
    expect(parseSoftnetDropped(SOFTNET)).toBe(13);
  });
});

const udp = (inErrors: number, rcvbufErrors = 0): NsCounters['udp'] => ({
  inErrors,
  rcvbufErrors,
  sndbufErrors: 0,
  noPorts: 0,
});

const IP0 = { inDiscards: 0, inAddrErrors: 0, outDiscards: 0, outNoRoutes: 0, inNoRoutes: 0, rpFilter: 0 };

describe('DropTracker', () => {
  const probes: NsProbe[] = [
    { name: 'n1', netns: 'x-n1', pid: 1 },
    { name: 'n1p1', netns: 'x-n1p1', pid: 2 },
  ];

  function tracker(seq: Record<string, (NsCounters | Error)[]>, backlog: number[]): DropTracker {
    let i = 0;
    let b = 0;
    const t = new DropTracker(
      () => probes,
      (p) => {
        const v = seq[p.name]![Math.min(i, seq[p.name]!.length - 1)]!;
        if (v instanceof Error) throw v;
        return v;
      },
      () => backlog[Math.min(b++, backlog.length - 1)],
    );
    return Object.assign(t, {
      step(): void {
        t.sample();
        i++;
      },
    });
  }

  it('counts udp increments, links created and deleted meanwhile, and a link re-created under its name', () => {
    const t = tracker(
      {
        n1: [
          { udp: udp(5, 1), ip: IP0, links: { eth0: { rx: 1, tx: 0 }, sealwg0: { rx: 0, tx: 10 } } },
          // sealwg1 appears with 3 tx drops: all counted (created after the baseline)
          { udp: udp(5, 1), links: { eth0: { rx: 1, tx: 0 }, sealwg0: { rx: 0, tx: 12 }, sealwg1: { rx: 0, tx: 3 } } },
          // sealwg0 deleted: its 2 drops so far stay
          { udp: udp(8, 3), links: { eth0: { rx: 1, tx: 0 }, sealwg1: { rx: 0, tx: 3 } } },
          // sealwg0 back from zero with 1; 2 datagrams without a route
          {
            udp: udp(8, 3),
            ip: { ...IP0, outNoRoutes: 2 },
            links: { eth0: { rx: 1, tx: 0 }, sealwg0: { rx: 1, tx: 0 }, sealwg1: { rx: 0, tx: 3 } },
          },
        ],
        n1p1: [{ udp: udp(0), links: { eth0: { rx: 0, tx: 0 } } }],
      },
      [100, 104],
    ) as DropTracker & { step(): void };
    for (let k = 0; k < 4; k++) t.step();
    expect(t.increments()).toEqual({
      n1: {
        udpInErrors: 3,
        udpRcvbufErrors: 2,
        ip: { outNoRoutes: 2 },
        links: { sealwg0: { rx: 1, tx: 2 }, sealwg1: { tx: 3 } },
      },
    });
    expect(linkDropSum(t.increments().n1)).toBe(6);
    expect(ipDropSum(t.increments().n1)).toBe(2);
    expect(t.backlogDrops()).toBe(4);
    expect(t.unreadable()).toEqual([]);
  });

  it('names a namespace it could not read and keeps the others', () => {
    const t = tracker(
      {
        n1: [{ udp: udp(1), links: {} }, new Error('gone'), { udp: udp(2), links: {} }],
        n1p1: [{ udp: udp(0), links: {} }],
      },
      [0],
    ) as DropTracker & { step(): void };
    for (let k = 0; k < 3; k++) t.step();
    expect(t.unreadable()).toEqual(['n1']);
    expect(t.increments()).toEqual({ n1: { udpInErrors: 1 } });
  });
});
