import { isWireGuardMessage, summarizeCapture } from './leaks.js';
import { decodePacket, LINKTYPE, readPcap, type PcapFile } from './pcap.js';

// ---- synthetic frames -------------------------------------------------------------------------

const MAC_A = Buffer.from('020000000001', 'hex');
const MAC_B = Buffer.from('020000000002', 'hex');

function ether(type: number, payload: Buffer, vlan?: number): Buffer {
  const tag = vlan === undefined ? Buffer.alloc(0) : Buffer.from([0x81, 0x00, (vlan >> 8) & 0x0f, vlan & 0xff]);
  const t = Buffer.alloc(2);
  t.writeUInt16BE(type);
  return Buffer.concat([MAC_B, MAC_A, tag, t, payload]);
}

function v4(addr: string): Buffer {
  return Buffer.from(addr.split('.').map(Number));
}

function ipv4(src: string, dst: string, proto: number, payload: Buffer, opts: { fragOffset?: number } = {}): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + payload.length, 2);
  h.writeUInt16BE(opts.fragOffset ?? 0x4000, 6); // DF, offset 0 unless told
  h[8] = 64;
  h[9] = proto;
  v4(src).copy(h, 12);
  v4(dst).copy(h, 16);
  return Buffer.concat([h, payload]);
}

function ipv6(src: Buffer, dst: Buffer, next: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(payload.length, 4);
  h[6] = next;
  h[7] = 64;
  src.copy(h, 8);
  dst.copy(h, 24);
  return Buffer.concat([h, payload]);
}

function udp(sport: number, dport: number, data: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(8 + data.length, 4);
  return Buffer.concat([h, data]);
}

function tcp(sport: number, dport: number, data: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h[12] = 5 << 4;
  h[13] = 0x18; // PSH ACK
  return Buffer.concat([h, data]);
}

function icmp(type: number, code: number, rest: Buffer): Buffer {
  return Buffer.concat([Buffer.from([type, code, 0, 0, 0, 0, 0, 0]), rest]);
}

function wgMessage(type: 1 | 2 | 3 | 4, payloadLen = 0): Buffer {
  const len = { 1: 148, 2: 92, 3: 64, 4: 32 + payloadLen }[type];
  const b = Buffer.alloc(len, 0xab);
  b[0] = type;
  b[1] = 0;
  b[2] = 0;
  b[3] = 0;
  return b;
}

function arp(sender: string, target: string): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt16BE(1, 0);
  b.writeUInt16BE(0x0800, 2);
  b[4] = 6;
  b[5] = 4;
  b.writeUInt16BE(1, 6);
  MAC_A.copy(b, 8);
  v4(sender).copy(b, 14);
  v4(target).copy(b, 24);
  return b;
}

function pcap(
  frames: readonly Buffer[],
  opts: { bigEndian?: boolean; nanos?: boolean; linkType?: number; snap?: number; cutTail?: number } = {},
): Buffer {
  const be = opts.bigEndian === true;
  const u32 = (v: number): Buffer => {
    const b = Buffer.alloc(4);
    if (be) b.writeUInt32BE(v >>> 0);
    else b.writeUInt32LE(v >>> 0);
    return b;
  };
  const u16 = (v: number): Buffer => {
    const b = Buffer.alloc(2);
    if (be) b.writeUInt16BE(v);
    else b.writeUInt16LE(v);
    return b;
  };
  const magic = opts.nanos === true ? 0xa1b23c4d : 0xa1b2c3d4;
  const parts = [
    u32(magic),
    u16(2),
    u16(4),
    u32(0),
    u32(0),
    u32(opts.snap ?? 262144),
    u32(opts.linkType ?? LINKTYPE.ETHERNET),
  ];
  frames.forEach((f, i) => {
    const cap = opts.snap !== undefined ? f.subarray(0, opts.snap) : f;
    parts.push(
      u32(1_700_000_000 + i),
      u32(opts.nanos === true ? 500_000_000 : 500_000),
      u32(cap.length),
      u32(f.length),
      cap,
    );
  });
  const all = Buffer.concat(parts);
  return opts.cutTail !== undefined ? all.subarray(0, all.length - opts.cutTail) : all;
}

const POD_A = '100.64.1.11';
const POD_B = '100.64.2.11';
const NODE_A = '198.18.0.1';
const NODE_B = '198.18.0.2';
const CANARY = 'SEALCANARYabc123';

// ---- tests ------------------------------------------------------------------------------------

describe('readPcap', () => {
  const frames = [ether(0x0800, ipv4(NODE_A, NODE_B, 17, udp(51880, 51880, wgMessage(1))))];

  it.each([
    ['little-endian µs', {}],
    ['big-endian µs', { bigEndian: true }],
    ['little-endian ns', { nanos: true }],
    ['big-endian ns', { bigEndian: true, nanos: true }],
  ])('reads %s files', (_name, opts) => {
    const f = readPcap(pcap(frames, opts));
    expect(f.linkType).toBe(LINKTYPE.ETHERNET);
    expect(f.records).toHaveLength(1);
    expect(f.records[0]?.time).toBeCloseTo(1_700_000_000.5, 6);
    expect(f.records[0]?.data.equals(frames[0] as Buffer)).toBe(true);
    expect(f.truncated).toBe(false);
  });

  it('stops at a record cut short and says so', () => {
    const f = readPcap(pcap([...frames, ...frames], { cutTail: 10 }));
    expect(f.records).toHaveLength(1);
    expect(f.truncated).toBe(true);
  });

  it('reads an empty capture (header only)', () => {
    const f = readPcap(pcap([]));
    expect(f.records).toHaveLength(0);
    expect(f.truncated).toBe(false);
  });

  it('rejects pcapng and garbage with a clear message', () => {
    const ng = Buffer.alloc(32);
    ng.writeUInt32LE(0x0a0d0d0a, 0);
    expect(() => readPcap(ng)).toThrow(/pcapng/);
    expect(() => readPcap(Buffer.alloc(30, 1))).toThrow(/bad magic/);
    expect(() => readPcap(Buffer.alloc(10))).toThrow(/too short/);
  });
});

describe('decodePacket', () => {
  it('decodes Ethernet/IPv4/UDP with ports and payload', () => {
    const d = decodePacket(
      ether(0x0800, ipv4(POD_A, POD_B, 17, udp(40000, 7001, Buffer.from('hello')))),
      LINKTYPE.ETHERNET,
    );
    expect(d).toMatchObject({ l3: 'ipv4', src: POD_A, dst: POD_B, proto: 17, srcPort: 40000, dstPort: 7001 });
    expect(d.payload?.toString()).toBe('hello');
  });

  it('decodes TCP payload after the header and ignores Ethernet padding', () => {
    const frame = Buffer.concat([
      ether(0x0800, ipv4(POD_A, POD_B, 6, tcp(1234, 80, Buffer.from('ab')))),
      Buffer.alloc(6),
    ]);
    const d = decodePacket(frame, LINKTYPE.ETHERNET);
    expect(d).toMatchObject({ proto: 6, srcPort: 1234, dstPort: 80 });
    expect(d.payload?.toString()).toBe('ab');
  });

  it('skips 802.1Q tags', () => {
    const d = decodePacket(ether(0x0800, ipv4(NODE_A, NODE_B, 1, icmp(8, 0, Buffer.alloc(8))), 42), LINKTYPE.ETHERNET);
    expect(d).toMatchObject({ l3: 'ipv4', src: NODE_A, proto: 1, icmpType: 8 });
  });

  it('marks non-first fragments and does not read a transport header from them', () => {
    const d = decodePacket(
      ether(0x0800, ipv4(POD_A, POD_B, 17, Buffer.alloc(40, 0xff), { fragOffset: 185 })),
      LINKTYPE.ETHERNET,
    );
    expect(d.fragment).toBe(true);
    expect(d.srcPort).toBeUndefined();
  });

  it('reads the header quoted by an ICMP error', () => {
    const quoted = ipv4(POD_A, POD_B, 6, Buffer.alloc(8));
    const d = decodePacket(ether(0x0800, ipv4(NODE_B, NODE_A, 1, icmp(3, 4, quoted))), LINKTYPE.ETHERNET);
    expect(d).toMatchObject({ icmpType: 3, icmpCode: 4, quoted: { src: POD_A, dst: POD_B, proto: 6 } });
  });

  it('decodes IPv6 with compressed addresses, through a hop-by-hop header', () => {
    const src = Buffer.from('fd000000000000000000000000000001', 'hex');
    const dst = Buffer.from('20010db8000000010000000000000002', 'hex');
    const hbh = Buffer.from([17, 0, 0, 0, 0, 0, 0, 0]); // next header UDP, length 8
    const d = decodePacket(
      ether(0x86dd, ipv6(src, dst, 0, Buffer.concat([hbh, udp(1, 2, Buffer.from('x'))]))),
      LINKTYPE.ETHERNET,
    );
    expect(d).toMatchObject({ l3: 'ipv6', src: 'fd00::1', dst: '2001:db8:0:1::2', proto: 17, srcPort: 1, dstPort: 2 });
  });

  it('decodes ARP sender and target', () => {
    expect(decodePacket(ether(0x0806, arp(NODE_A, NODE_B)), LINKTYPE.ETHERNET)).toMatchObject({
      l3: 'arp',
      arpSender: NODE_A,
      arpTarget: NODE_B,
    });
  });

  it('handles Linux cooked and raw IP link types', () => {
    const ip = ipv4(NODE_A, NODE_B, 17, udp(5, 6, Buffer.alloc(0)));
    const sll = Buffer.concat([Buffer.alloc(14), Buffer.from([0x08, 0x00]), ip]);
    expect(decodePacket(sll, LINKTYPE.LINUX_SLL)).toMatchObject({ src: NODE_A, dstPort: 6 });
    const sll2 = Buffer.concat([Buffer.from([0x08, 0x00]), Buffer.alloc(18), ip]);
    expect(decodePacket(sll2, LINKTYPE.LINUX_SLL2)).toMatchObject({ src: NODE_A, dstPort: 6 });
    expect(decodePacket(ip, LINKTYPE.RAW)).toMatchObject({ src: NODE_A, dstPort: 6 });
  });

  it('never throws on short or garbage frames', () => {
    expect(decodePacket(Buffer.alloc(5), LINKTYPE.ETHERNET).l3).toBe('malformed');
    expect(decodePacket(ether(0x0800, Buffer.from([0x45, 0, 0])), LINKTYPE.ETHERNET).l3).toBe('malformed');
    expect(decodePacket(ether(0x88cc, Buffer.alloc(20)), LINKTYPE.ETHERNET).l3).toBe('other');
  });
});

describe('isWireGuardMessage', () => {
  it.each([
    [1, wgMessage(1)],
    [2, wgMessage(2)],
    [3, wgMessage(3)],
    [4, wgMessage(4, 0)],
    [4, wgMessage(4, 1424)],
  ])('accepts a type %i message of the right size', (t, m) => expect(isWireGuardMessage(m)).toBe(t));

  it('accepts an unpadded full-size data message only for a listed tunnel MTU', () => {
    expect(isWireGuardMessage(wgMessage(4, 1420))).toBeUndefined();
    expect(isWireGuardMessage(wgMessage(4, 1420), [1420])).toBe(4);
    expect(isWireGuardMessage(wgMessage(4, 1419), [1420])).toBeUndefined();
  });

  it('rejects wrong sizes, reserved bytes and unknown types', () => {
    expect(isWireGuardMessage(Buffer.concat([wgMessage(1), Buffer.alloc(1)]))).toBeUndefined();
    expect(isWireGuardMessage(wgMessage(4, 15))).toBeUndefined();
    const r = wgMessage(2);
    r[2] = 1;
    expect(isWireGuardMessage(r)).toBeUndefined();
    const u = wgMessage(3);
    u[0] = 5;
    expect(isWireGuardMessage(u)).toBeUndefined();
    expect(isWireGuardMessage(Buffer.from(`${CANARY}`))).toBeUndefined();
  });
});

describe('summarizeCapture', () => {
  const wg = (src: string, dst: string, m: Buffer): Buffer => ether(0x0800, ipv4(src, dst, 17, udp(51880, 51880, m)));
  const frames = [
    ether(0x0806, arp(NODE_A, NODE_B)),
    wg(NODE_A, NODE_B, wgMessage(1)),
    wg(NODE_B, NODE_A, wgMessage(2)),
    wg(NODE_A, NODE_B, wgMessage(4, 64)),
    wg(NODE_B, NODE_A, wgMessage(4, 64)),
    // A plaintext pod packet carrying the canary: the leak the capture must find.
    ether(0x0800, ipv4(POD_A, POD_B, 6, tcp(40000, 7001, Buffer.from(`xx${CANARY}yy`)))),
    ether(0x0800, ipv4(POD_B, POD_A, 1, icmp(0, 0, Buffer.from(CANARY)))),
    // Node-to-node plaintext with the canary (not pod traffic, but still a canary hit).
    ether(0x0800, ipv4(NODE_A, NODE_B, 17, udp(9999, 53, Buffer.from(CANARY)))),
    // Something on the WireGuard port that is not WireGuard.
    ether(0x0800, ipv4(NODE_A, NODE_B, 17, udp(51880, 51880, Buffer.from('not wireguard')))),
    // ESP, and an ICMP error quoting a pod header sent node to node.
    ether(0x0800, ipv4(NODE_A, NODE_B, 50, Buffer.alloc(40, 7))),
    ether(0x0800, ipv4(NODE_B, NODE_A, 1, icmp(3, 4, ipv4(POD_A, POD_B, 6, Buffer.alloc(8))))),
  ];

  it('classifies every packet, finds plaintext pod traffic and every canary', () => {
    const s = summarizeCapture(readPcap(pcap(frames)), {
      podCidrs: ['100.64.0.0/10'],
      wireguardPorts: [51880],
      canaries: [CANARY, 'NEVERSENT'],
    });
    expect(s.totalPackets).toBe(frames.length);
    expect(s.byKind).toMatchObject({ arp: 1, wireguard: 4, 'pod-plaintext': 2, udp: 2, esp: 1, icmp: 1 });
    expect(s.wireguardByType).toEqual({ '1': 1, '2': 1, '3': 0, '4': 2 });
    expect(s.wireguardByEndpoints).toEqual({ [`${NODE_A}>${NODE_B}`]: 2, [`${NODE_B}>${NODE_A}`]: 2 });
    expect(s.wireguardPortNonWireguard).toBe(1);
    expect(s.podPlaintextPackets).toBe(2);
    expect(s.podPlaintextFlows).toEqual({ [`${POD_A}>${POD_B}/tcp`]: 1, [`${POD_B}>${POD_A}/icmp`]: 1 });
    expect(s.podPlaintextSamples.map((p) => p.index)).toEqual([5, 6]);
    expect(s.podAddressInIcmpErrors).toBe(1);
    expect(s.espByEndpoints).toEqual({ [`${NODE_A}>${NODE_B}`]: 1 });
    expect(s.canaries[0]).toMatchObject({
      canary: CANARY,
      hits: 3,
      byEndpoints: { [`${POD_A}>${POD_B}`]: 1, [`${POD_B}>${POD_A}`]: 1, [`${NODE_A}>${NODE_B}`]: 1 },
    });
    expect(s.canaries[1]?.hits).toBe(0);
    expect(s.canaryHits).toBe(3);
    expect(s.firstTime).toBeCloseTo(1_700_000_000.5);
    expect(s.lastTime).toBeCloseTo(1_700_000_000.5 + frames.length - 1);
  });

  it('with vxlanPorts, counts a pod packet inside VXLAN as plaintext (by its inner header); without, only its canary', () => {
    const vxlanHeader = Buffer.from([0x08, 0, 0, 0, 0, 0, 1, 0]); // I flag, VNI 1
    const inner = ether(0x0800, ipv4(POD_A, POD_B, 17, udp(40000, 7002, Buffer.from(CANARY))));
    const inVxlan = ether(0x0800, ipv4(NODE_A, NODE_B, 17, udp(51000, 8472, Buffer.concat([vxlanHeader, inner]))));
    // VXLAN between nodes carrying node traffic only: not pod plaintext.
    const nodeInner = ether(0x0800, ipv4(NODE_A, NODE_B, 17, udp(1, 2, Buffer.from('x'))));
    const nodeVxlan = ether(
      0x0800,
      ipv4(NODE_A, NODE_B, 17, udp(51000, 8472, Buffer.concat([vxlanHeader, nodeInner]))),
    );
    const f = readPcap(pcap([inVxlan, nodeVxlan]));
    const s = summarizeCapture(f, { vxlanPorts: [8472], canaries: [CANARY] });
    expect(s.podPlaintextPackets).toBe(1);
    expect(s.vxlanPodPlaintextPackets).toBe(1);
    expect(s.podPlaintextFlows).toEqual({ [`vxlan:${POD_A}>${POD_B}/udp`]: 1 });
    expect(s.canaryHits).toBe(1);
    const blind = summarizeCapture(f, { canaries: [CANARY] });
    expect(blind.podPlaintextPackets).toBe(0);
    expect(blind.canaryHits).toBe(1);
  });

  it('finds nothing in a clean, encrypted-only capture', () => {
    const clean = frames.slice(0, 5);
    const s = summarizeCapture(readPcap(pcap(clean)), { canaries: [CANARY] });
    expect(s.podPlaintextPackets).toBe(0);
    expect(s.canaryHits).toBe(0);
    expect(s.wireguardPackets).toBe(4);
  });

  it('does not count a WireGuard-shaped packet with pod addresses as WireGuard', () => {
    const s = summarizeCapture(readPcap(pcap([wg(POD_A, POD_B, wgMessage(4, 16))])));
    expect(s.wireguardPackets).toBe(0);
    expect(s.podPlaintextPackets).toBe(1);
  });

  it('uses the configured WireGuard port and pod ranges', () => {
    const f = readPcap(
      pcap([
        ether(0x0800, ipv4(NODE_A, NODE_B, 17, udp(51820, 51820, wgMessage(4, 16)))),
        ether(0x0800, ipv4('10.1.0.5', '10.2.0.5', 6, tcp(1, 2, Buffer.alloc(0)))),
      ]),
    );
    const def = summarizeCapture(f);
    expect(def.wireguardPackets).toBe(0);
    expect(def.podPlaintextPackets).toBe(0);
    const custom = summarizeCapture(f, { wireguardPorts: [51820], podCidrs: ['10.0.0.0/12'] });
    expect(custom.wireguardPackets).toBe(1);
    expect(custom.podPlaintextPackets).toBe(1);
  });

  it('counts snapped packets and finds a canary only in captured bytes', () => {
    const f: PcapFile = readPcap(
      pcap(
        [ether(0x0800, ipv4(NODE_A, NODE_B, 17, udp(1, 2, Buffer.concat([Buffer.alloc(100), Buffer.from(CANARY)]))))],
        { snap: 64 },
      ),
    );
    const s = summarizeCapture(f, { canaries: [CANARY] });
    expect(s.snappedPackets).toBe(1);
    expect(s.canaryHits).toBe(0);
  });

  it('matches IPv6 pod ranges', () => {
    const src = Buffer.from('fd640000000000010000000000000011', 'hex');
    const dst = Buffer.from('fd640000000000020000000000000011', 'hex');
    const s = summarizeCapture(readPcap(pcap([ether(0x86dd, ipv6(src, dst, 17, udp(1, 2, Buffer.alloc(4))))])), {
      podCidrs: ['fd64::/48'],
    });
    expect(s.podPlaintextPackets).toBe(1);
  });
});
