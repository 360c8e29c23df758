import {
  CONFIG_SIZE,
  COUNTER_SLOTS,
  KEY_SIZE,
  REMOTE_VALUE_SIZE,
  counterIndex,
  decodeConfig,
  decodeKey,
  decodeRemoteValue,
  encodeConfig,
  encodeIndex,
  encodeKey,
  encodeRemoteValue,
  parsePossibleCpus,
  sumPerCpu,
  type RemoteEntry,
} from './layout.js';

// The layout tests run on little-endian hosts (x86_64, arm64); the byte strings below say so.
const hex = (b: Buffer): string => b.toString('hex');

describe('LPM keys', () => {
  it.each([
    // prefixlen = 32 family bits + prefix length, host order; family 4/6; address network order.
    ['100.64.2.0/24', '38000000' + '04000000' + '64400200' + '00'.repeat(12)],
    ['100.64.2.7/24', '38000000' + '04000000' + '64400200' + '00'.repeat(12)],
    ['198.18.0.3', '40000000' + '04000000' + 'c6120003' + '00'.repeat(12)],
    ['0.0.0.0/0', '20000000' + '04000000' + '00'.repeat(16)],
    ['100.64.0.0/10', '2a000000' + '04000000' + '64400000' + '00'.repeat(12)],
    ['fd00:1::/64', '60000000' + '06000000' + 'fd000001' + '00'.repeat(12)],
    ['::ffff:100.64.2.0/120', '98000000' + '06000000' + '00'.repeat(10) + 'ffff64400200'],
  ])('encodes %s', (cidr, want) => {
    expect(hex(encodeKey(cidr))).toBe(want);
    expect(encodeKey(cidr)).toHaveLength(KEY_SIZE);
  });

  it('keeps an IPv4 prefix apart from its IPv4-mapped IPv6 twin', () => {
    expect(hex(encodeKey('100.64.2.0/24'))).not.toBe(hex(encodeKey('::ffff:100.64.2.0/120')));
  });

  it.each([
    '100.64.2.0/24',
    '100.64.0.0/10',
    '198.18.0.3/32',
    '0.0.0.0/0',
    'fd00:1::/64',
    '::ffff:100.64.2.0/120',
    '::/0',
  ])('round-trips %s', (cidr) => {
    expect(decodeKey(encodeKey(cidr))).toBe(cidr);
  });

  it('treats two spellings of one prefix as one key', () => {
    expect(hex(encodeKey('::ffff:6440:200/120'))).toBe(hex(encodeKey('::ffff:100.64.2.0/120')));
    expect(hex(encodeKey('FD00:0001::/64'))).toBe(hex(encodeKey('fd00:1::/64')));
  });

  it.each(['', '100.64.2.0/33', 'fd00::/129', '100.64.2/24', 'nonsense', '100.64.2.0/-1'])('rejects %j', (bad) => {
    expect(() => encodeKey(bad)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });

  it('rejects malformed keys on decode', () => {
    expect(() => decodeKey(Buffer.alloc(23))).toThrow(/24/);
    const k = encodeKey('100.64.2.0/24');
    k.writeUInt32LE(9, 4);
    expect(() => decodeKey(k)).toThrow(/malformed/);
    const long = encodeKey('100.64.2.0/24');
    long.writeUInt32LE(32 + 33, 0);
    expect(() => decodeKey(long)).toThrow(/malformed/);
  });
});

describe('remote values', () => {
  const ready: RemoteEntry = {
    cidr: '100.64.2.0/24',
    state: 'ready',
    action: 'redirect',
    kind: 'pod',
    ifindex: 7,
    mark: 0,
    peerId: 0xdeadbeef,
  };

  it('lays out ifindex, mark, peer id, state, action, kind', () => {
    expect(hex(encodeRemoteValue(ready))).toBe('07000000' + '00000000' + 'efbeadde' + '01' + '00' + '00' + '00');
    expect(
      hex(
        encodeRemoteValue({
          ...ready,
          state: 'no-peer',
          action: 'mark',
          kind: 'node',
          ifindex: 0,
          mark: 0x0a00,
          peerId: 1,
        }),
      ),
    ).toBe('00000000' + '000a0000' + '01000000' + '02' + '01' + '01' + '00');
    expect(encodeRemoteValue(ready)).toHaveLength(REMOTE_VALUE_SIZE);
  });

  it('round-trips', () => {
    for (const e of [
      ready,
      { ...ready, state: 'not-ready' as const, ifindex: 0 },
      { ...ready, action: 'mark' as const, kind: 'node' as const, mark: 0xffffffff },
    ]) {
      expect(decodeRemoteValue(e.cidr, encodeRemoteValue(e))).toEqual(e);
    }
  });

  it('zero bytes mean not ready (the safe default)', () => {
    expect(decodeRemoteValue('x', Buffer.alloc(REMOTE_VALUE_SIZE))).toMatchObject({
      state: 'not-ready',
      action: 'redirect',
      kind: 'pod',
    });
  });

  it('reads an unknown state byte as not ready', () => {
    const v = encodeRemoteValue(ready);
    v[12] = 9;
    expect(decodeRemoteValue('x', v).state).toBe('not-ready');
  });

  it('rejects out-of-range numbers', () => {
    expect(() => encodeRemoteValue({ ...ready, ifindex: -1 })).toThrow(/ifindex/);
    expect(() => encodeRemoteValue({ ...ready, peerId: 2 ** 32 })).toThrow(/peerId/);
    expect(() => encodeRemoteValue({ ...ready, mark: 1.5 })).toThrow(/mark/);
  });
});

describe('config', () => {
  it('lays out flags, ports, fwmark, mark mask; fail-closed without ESP is flags 0', () => {
    const c = {
      failClosed: true,
      wireguardPort: 51880,
      espUdpPort: 4500,
      esp: false,
      tunnelFwmark: 0x5188,
      markMask: 0x0f00,
    };
    expect(hex(encodeConfig(c))).toBe('00000000' + 'a8ca' + '9411' + '88510000' + '000f0000');
    expect(hex(encodeConfig({ ...c, failClosed: false })).slice(0, 8)).toBe('01000000');
    expect(hex(encodeConfig({ ...c, esp: true })).slice(0, 8)).toBe('02000000');
    expect(decodeConfig(encodeConfig({ ...c, esp: true, failClosed: false }))).toEqual({
      ...c,
      esp: true,
      failClosed: false,
    });
    expect(encodeConfig(c)).toHaveLength(CONFIG_SIZE);
    expect(decodeConfig(encodeConfig(c))).toEqual(c);
  });

  it('reads an all-zero element as fail-closed with nothing exempt and ESP not taken for the tunnel', () => {
    expect(decodeConfig(Buffer.alloc(CONFIG_SIZE))).toEqual({
      failClosed: true,
      wireguardPort: 0,
      espUdpPort: 0,
      esp: false,
      tunnelFwmark: 0,
      markMask: 0,
    });
  });

  it('rejects a port out of range', () => {
    expect(() =>
      encodeConfig({ failClosed: true, wireguardPort: 70000, espUdpPort: 0, esp: false, tunnelFwmark: 0, markMask: 0 }),
    ).toThrow(/wireguardPort/);
  });
});

describe('counters', () => {
  it('indexes hook * 16 + reason, inside the array', () => {
    expect(counterIndex('egress', 'redirected')).toBe(0);
    expect(counterIndex('egress', 'not_ready')).toBe(2);
    expect(counterIndex('ingress', 'plaintext_in')).toBe(16 + 6);
    expect(counterIndex('from_pod', 'marked')).toBe(33);
    expect(counterIndex('from_pod', 'decrypted')).toBeLessThan(COUNTER_SLOTS);
    expect(hex(encodeIndex(22))).toBe('16000000');
  });

  it('sums per-CPU values', () => {
    const raw = Buffer.alloc(16 * 3);
    raw.writeBigUInt64LE(2n, 0);
    raw.writeBigUInt64LE(200n, 8);
    raw.writeBigUInt64LE(5n, 32);
    raw.writeBigUInt64LE(2n ** 40n, 40);
    expect(sumPerCpu(raw)).toEqual({ packets: 7n, bytes: 200n + 2n ** 40n });
    expect(() => sumPerCpu(Buffer.alloc(17))).toThrow(/multiple/);
  });

  it.each([
    ['0', 1],
    ['0-1\n', 2],
    ['0-3,8-11', 8],
    ['0,2,4-5', 4],
  ])('counts possible CPUs in %j', (text, n) => {
    expect(parsePossibleCpus(text)).toBe(n);
  });

  it('rejects a malformed CPU list', () => {
    expect(() => parsePossibleCpus('3-1')).toThrow();
    expect(() => parsePossibleCpus('a')).toThrow();
  });
});
