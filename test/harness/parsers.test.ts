import { parsePing, pingArgv } from './ping.js';
import { parseTcpdumpCounters } from './capture.js';
import { parseWgDump } from './wgdump.js';
import * as topo from './topology.js';
import { addressIn } from './leaks.js';

// Real iputils output, captured through a router namespace with a 1400-byte next hop.
const FRAG_NEEDED = `PING 198.18.8.1 (198.18.8.1) 1472(1500) bytes of data.
From 198.18.7.2 icmp_seq=1 Frag needed and DF set (mtu = 1400)

--- 198.18.8.1 ping statistics ---
2 packets transmitted, 0 received, +2 errors, 100% packet loss, time 204ms
`;
const TOO_LONG = `PING 198.18.8.1 (198.18.8.1) 1472(1500) bytes of data.

--- 198.18.8.1 ping statistics ---
2 packets transmitted, 0 received, +2 errors, 100% packet loss, time 201ms

ping: local error: message too long, mtu=1400
ping: local error: message too long, mtu=1400
`;
const OK = `PING 198.18.8.1 (198.18.8.1) 1372(1400) bytes of data.
1380 bytes from 198.18.8.1: icmp_seq=1 ttl=63 time=0.185 ms
1380 bytes from 198.18.8.1: icmp_seq=2 ttl=63 time=0.018 ms

--- 198.18.8.1 ping statistics ---
2 packets transmitted, 2 received, 0% packet loss, time 201ms
rtt min/avg/max/mdev = 0.018/0.101/0.185/0.083 ms
`;
// Real iputils output over IPv6 (ULA), a router namespace with a 1400-byte next hop: first the
// router's ICMPv6 Packet Too Big, then (path MTU cached) the local error.
const PACKET_TOO_BIG = `PING fd00:5ea1:ff:2::1(fd00:5ea1:ff:2::1) 1353 data bytes
From fd00:5ea1:ff:1::2 icmp_seq=1 Packet too big: mtu=1400

--- fd00:5ea1:ff:2::1 ping statistics ---
2 packets transmitted, 0 received, +2 errors, 100% packet loss, time 211ms
`;
const TOO_LONG6 = `PING fd00:5ea1:ff:2::1(fd00:5ea1:ff:2::1) 1353 data bytes
ping: local error: message too long, mtu: 1400
ping: local error: message too long, mtu: 1400

--- fd00:5ea1:ff:2::1 ping statistics ---
2 packets transmitted, 0 received, +2 errors, 100% packet loss, time 204ms
`;
const SILENT_LOSS = `PING 100.64.2.11 (100.64.2.11) 1472(1500) bytes of data.

--- 100.64.2.11 ping statistics ---
3 packets transmitted, 0 received, 100% packet loss, time 2040ms
`;

describe('parsePing', () => {
  it('reads ICMPv6 Packet Too Big and the IPv6 local error with their MTU', () => {
    expect(parsePing(PACKET_TOO_BIG)).toMatchObject({
      received: 0,
      fragNeeded: true,
      messageTooLong: false,
      reportedMtu: 1400,
      errors: 2,
    });
    expect(parsePing(TOO_LONG6)).toMatchObject({
      received: 0,
      fragNeeded: false,
      messageTooLong: true,
      reportedMtu: 1400,
      errors: 2,
    });
  });

  it('reads a clean run', () => {
    expect(parsePing(OK)).toEqual({
      transmitted: 2,
      received: 2,
      lossPercent: 0,
      rttAvgMs: 0.101,
      fragNeeded: false,
      messageTooLong: false,
      reportedMtu: undefined,
      errors: 0,
    });
  });
  it('detects "Frag needed" from a router and its MTU', () => {
    expect(parsePing(FRAG_NEEDED)).toMatchObject({
      received: 0,
      fragNeeded: true,
      messageTooLong: false,
      reportedMtu: 1400,
      errors: 2,
      lossPercent: 100,
    });
  });
  it('detects a local "message too long" (cached path MTU)', () => {
    expect(parsePing(TOO_LONG)).toMatchObject({
      fragNeeded: false,
      messageTooLong: true,
      reportedMtu: 1400,
      errors: 2,
    });
  });
  it('reports silent loss as loss without an MTU error', () => {
    expect(parsePing(SILENT_LOSS)).toMatchObject({
      transmitted: 3,
      received: 0,
      lossPercent: 100,
      fragNeeded: false,
      messageTooLong: false,
      reportedMtu: undefined,
    });
  });
  it('builds a DF command line', () => {
    expect(pingArgv('100.64.2.11', { size: 1472, count: 2 })).toEqual([
      'ping',
      '-n',
      '-c',
      '2',
      '-W',
      '1',
      '-i',
      '0.2',
      '-s',
      '1472',
      '-M',
      'do',
      '100.64.2.11',
    ]);
    expect(pingArgv('x', { df: false, patternHex: 'abcd' })).toEqual([
      'ping',
      '-n',
      '-c',
      '3',
      '-W',
      '1',
      '-i',
      '0.2',
      '-s',
      '56',
      '-p',
      'abcd',
      'x',
    ]);
  });
});

describe('parseWgDump', () => {
  const PRIV = 'cHJpdmF0ZWtleXByaXZhdGVrZXlwcml2YXRla2V5eHg=';
  const dump = [
    `${PRIV}\tUFVCS0VZcHVia2V5cHVia2V5cHVia2V5cHVia2V5eHg=\t51880\t0x5188`,
    'QUFBQWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=\t(none)\t198.18.0.2:51880\t100.64.2.0/24,198.18.0.2/32\t1700000000\t1234\t5678\t25',
    'QkJCQmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmI=\t(none)\t(none)\t(none)\t0\t0\t0\toff',
  ].join('\n');

  it('parses interface and peers and drops the private key', () => {
    const d = parseWgDump(`${dump}\n`);
    expect(d.listenPort).toBe(51880);
    expect(d.fwmark).toBe(0x5188);
    expect(d.peers).toHaveLength(2);
    expect(d.peers[0]).toMatchObject({
      endpoint: '198.18.0.2:51880',
      allowedIPs: ['100.64.2.0/24', '198.18.0.2/32'],
      latestHandshake: 1700000000,
      rxBytes: 1234,
      txBytes: 5678,
      persistentKeepalive: 25,
    });
    expect(d.peers[1]).toMatchObject({
      endpoint: undefined,
      allowedIPs: [],
      latestHandshake: 0,
      persistentKeepalive: 0,
    });
    expect(JSON.stringify(d)).not.toContain(PRIV);
  });

  it('refuses malformed input without quoting it', () => {
    expect(() => parseWgDump(`${PRIV}\tonly-two`)).toThrow(/interface line has 2 fields/);
    try {
      parseWgDump(`${PRIV}\ta\t1\toff\nbroken ${PRIV}`);
    } catch (e) {
      expect((e as Error).message).not.toContain(PRIV);
    }
  });
});

describe('parseTcpdumpCounters', () => {
  it('reads captured and dropped counts', () => {
    expect(
      parseTcpdumpCounters(
        'listening on br0\n163 packets captured\n163 packets received by filter\n0 packets dropped by kernel\n',
      ),
    ).toEqual({ tcpdumpCaptured: 163, kernelDropped: 0 });
    expect(parseTcpdumpCounters('')).toEqual({ tcpdumpCaptured: undefined, kernelDropped: undefined });
  });
});

describe('topology address plan', () => {
  it('keeps every address inside the test ranges', () => {
    for (const i of [1, 2, 77, topo.MAX_NODE_INDEX]) {
      expect(addressIn(topo.nodeAddress(i), [topo.UNDERLAY_RANGE])).toBe(true);
      expect(addressIn(topo.podGateway(i), [topo.POD_RANGE])).toBe(true);
      for (const j of [1, topo.MAX_POD_INDEX])
        expect(addressIn(topo.podAddress(i, j), [topo.POD_RANGE, topo.podCidr(i)])).toBe(true);
    }
  });

  it('keeps every IPv6 address inside the ULA test ranges, one /64 per node', () => {
    for (const i of [1, 2, 77, topo.MAX_NODE_INDEX]) {
      expect(addressIn(topo.nodeAddress6(i), [topo.UNDERLAY_RANGE6])).toBe(true);
      expect(addressIn(topo.podGateway6(i), [topo.POD_RANGE6, topo.podCidr6(i)])).toBe(true);
      expect(addressIn(topo.nodeAddress6(i), [topo.POD_RANGE6])).toBe(false);
      for (const j of [1, topo.MAX_POD_INDEX])
        expect(addressIn(topo.podAddress6(i, j), [topo.POD_RANGE6, topo.podCidr6(i)])).toBe(true);
    }
    expect(addressIn(topo.podAddress6(3, 1), [topo.podCidr6(2)])).toBe(false);
    expect(topo.podCidr6(77)).toBe('fd00:5ea1:1:4d::/64');
  });

  it('orders InternalIPs by underlay family and podCIDRs IPv4 first', () => {
    expect(topo.nodeAddresses(topo.addressPlan('dual', 6), 2)).toEqual(['fd00:5ea1::2', '198.18.0.2']);
    expect(topo.nodeAddresses(topo.addressPlan('dual'), 2)).toEqual(['198.18.0.2', 'fd00:5ea1::2']);
    expect(topo.nodeAddresses(topo.addressPlan('ipv6'), 2)).toEqual(['fd00:5ea1::2']);
    expect(topo.podCidrs(topo.addressPlan('dual', 6), 2)).toEqual(['100.64.2.0/24', 'fd00:5ea1:1:2::/64']);
    expect(topo.podRanges(topo.addressPlan('ipv6'))).toEqual(['fd00:5ea1:1::/56']);
    expect(() => topo.addressPlan('ipv4', 6)).toThrow();
    expect(() => topo.addressPlan('ipv6', 4)).toThrow();
  });

  it('routes both families of a dual-stack node, each via the owner of that family; IPv6 addresses skip DAD', () => {
    const lines = topo.nodeBatch({
      prefix: 'seal1a2b3c',
      index: 2,
      pods: 1,
      mtu: 1500,
      podMtu: 1500,
      peers: [1],
      plan: topo.addressPlan('dual', 6),
    });
    expect(lines).toContain('route add 100.64.1.0/24 via 198.18.0.1 dev eth0');
    expect(lines).toContain('route add fd00:5ea1:1:1::/64 via fd00:5ea1::1 dev eth0');
    for (const l of lines.filter((x) => x.startsWith('addr add fd00'))) expect(l).toMatch(/ nodad$/);
    expect(topo.podBatch(2, 1, topo.addressPlan('ipv6'))).toEqual([
      'link set lo up',
      'addr add fd00:5ea1:1:2::b/64 dev eth0 nodad',
      'link set eth0 up',
      'route add ::/0 via fd00:5ea1:1:2::1 dev eth0',
    ]);
  });

  it('names fit IFNAMSIZ and carry the prefix', () => {
    const p = 'seal1a2b3c';
    expect(topo.vethNames.underlay(p, topo.MAX_NODE_INDEX).length).toBeLessThanOrEqual(15);
    expect(topo.vethNames.pod(p, topo.MAX_POD_INDEX).length).toBeLessThanOrEqual(15);
    expect(topo.netnsNames.pod(p, 3, 2)).toBe('seal1a2b3c-n3p2');
    expect(() => topo.checkPrefix('Seal-1')).toThrow();
    expect(() => topo.checkPrefix('seal1a2b3c4d')).toThrow();
  });

  it('routes every remote pod CIDR via its node in the main table', () => {
    const lines = topo.nodeBatch({ prefix: 'seal1a2b3c', index: 2, pods: 1, mtu: 1500, podMtu: 1500, peers: [1, 3] });
    expect(lines).toContain('route add 100.64.1.0/24 via 198.18.0.1 dev eth0');
    expect(lines).toContain('route add 100.64.3.0/24 via 198.18.0.3 dev eth0');
    expect(lines.some((l) => l.includes('table'))).toBe(false);
    // Both ends of every veth are placed in a named namespace of the run, never the root.
    for (const l of lines.filter((x) => x.includes('type veth'))) expect(l).toMatch(/netns seal1a2b3c-/);
  });
});
