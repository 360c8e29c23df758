import { describe, expect, it } from '@jest/globals';
import {
  bytesToValue,
  canonicalCidr,
  canonicalIP,
  cidrContains,
  cidrsOverlap,
  compareCidrs,
  formatCidr,
  formatIP,
  formatIpBytes,
  parseCidr,
  parseIP,
  parseIpBytes,
  valueToBytes,
} from './ip.js';

const P = (text: string) => {
  const c = parseCidr(text, { hostBits: 'clear' });
  if (c === undefined) throw new Error(`test setup: ${text} is not a CIDR`);
  return c;
};

describe('parseIP / formatIP', () => {
  it.each([
    ['0.0.0.0', 4, 0n],
    ['198.18.0.1', 4, 0xc6120001n],
    ['255.255.255.255', 4, 0xffffffffn],
    ['::', 6, 0n],
    ['::1', 6, 1n],
    ['fd00::1', 6, (0xfd00n << 112n) | 1n],
    ['FD00:0:0:0:0:0:0:1', 6, (0xfd00n << 112n) | 1n],
    ['1::', 6, 1n << 112n],
    ['::ffff:198.18.0.1', 6, (0xffffn << 32n) | 0xc6120001n],
  ] as [string, 4 | 6, bigint][])('%s is IPv%i %s', (text, family, value) => {
    expect(parseIP(text)).toStrictEqual({ family, value });
  });

  it.each([
    '',
    '1.2.3',
    '1.2.3.4.5',
    '256.0.0.1',
    '01.2.3.4',
    '1.2.3.4/32',
    'fd00:::1',
    '1:2:3:4:5:6:7:8:9',
    'g::1',
    'localhost',
    ' 1.2.3.4',
  ])('%j is not an address', (text) => {
    expect(parseIP(text)).toBeUndefined();
  });

  it.each([
    ['198.18.0.1', '198.18.0.1'],
    ['FD00:0000:0000:0000:0000:0000:0000:0001', 'fd00::1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:0:0:0:0:0:0:0', '1::'],
    // RFC 5952 4.2.2: a single 0 group is not shortened.
    ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
    // 4.2.3: the longest run wins; on a tie, the first.
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['1:0:0:2:0:0:3:4', '1::2:0:0:3:4'],
    // 4.3: lower case, no leading zeros.
    ['fd00:0AbC:000d::', 'fd00:abc:d::'],
  ])('%s formats as %s', (text, want) => {
    const ip = parseIP(text)!;
    expect(formatIP(ip.family, ip.value)).toBe(want);
  });
});

describe('parseCidr / canonicalCidr', () => {
  it.each([
    ['100.64.1.0/24', '100.64.1.0/24'],
    ['100.64.1.77/24', '100.64.1.0/24'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['198.18.0.1/32', '198.18.0.1/32'],
    ['198.18.0.1/0', '0.0.0.0/0'],
    ['fd00:64:5:0::/64', 'fd00:64:5::/64'],
    ['FD00:64:5::1/64', 'fd00:64:5::/64'],
    ['fd00::1/128', 'fd00::1/128'],
    ['::/0', '::/0'],
    ['fd00:64:5:8000::/48', 'fd00:64:5::/48'],
    ['fd00:64:5:c000::/49', 'fd00:64:5:8000::/49'],
  ])('%s → %s', (text, want) => {
    expect(canonicalCidr(text)).toBe(want);
  });

  it.each([
    '100.64.1.0',
    '100.64.1.0/',
    '100.64.1.0/33',
    'fd00::/129',
    '100.64.1.0/-1',
    '100.64.1.0/2 4',
    '100.64.1.0/24/1',
    '/24',
    'banana/24',
    '100.64.1.0/1e1',
    '100.64.1.0/ 24',
  ])('%j is rejected', (text) => {
    expect(parseCidr(text, { hostBits: 'clear' })).toBeUndefined();
    expect(canonicalCidr(text)).toBeUndefined();
  });

  it('strict mode rejects host bits, lenient mode clears them', () => {
    expect(parseCidr('100.64.1.1/24', { hostBits: 'reject' })).toBeUndefined();
    expect(parseCidr('fd00::1/64', { hostBits: 'reject' })).toBeUndefined();
    expect(parseCidr('100.64.1.0/24', { hostBits: 'reject' })).toStrictEqual({
      family: 4,
      network: 0x64400100n,
      prefixLength: 24,
    });
    expect(parseCidr('100.64.1.1/24', { hostBits: 'clear' })).toStrictEqual({
      family: 4,
      network: 0x64400100n,
      prefixLength: 24,
    });
  });

  it('formatCidr is the inverse of parseCidr on canonical text', () => {
    for (const t of ['100.64.1.0/24', 'fd00:64:5::/64', '0.0.0.0/0', '::/0', '198.18.0.1/32'])
      expect(formatCidr(P(t))).toBe(t);
  });
});

describe('cidrsOverlap', () => {
  it.each([
    ['100.64.1.0/24', '100.64.1.0/24', true],
    ['100.64.1.0/24', '100.64.1.128/25', true],
    ['100.64.1.128/25', '100.64.1.0/24', true],
    ['100.64.0.0/10', '100.127.255.0/24', true],
    ['0.0.0.0/0', '198.18.0.1/32', true],
    ['100.64.1.0/24', '100.64.2.0/24', false],
    ['100.64.1.0/25', '100.64.1.128/25', false],
    ['100.64.0.0/10', '100.128.0.0/24', false],
    ['fd00:64::/32', 'fd00:64:5::/64', true],
    ['fd00:64:5::/64', 'fd00:64:6::/64', false],
    // Different families never overlap, even when the bits would.
    ['0.0.0.0/0', '::/0', false],
    ['100.64.1.0/24', '::6440:100/120', false],
  ])('%s and %s: %s', (a, b, want) => {
    expect(cidrsOverlap(P(a), P(b))).toBe(want);
    expect(cidrsOverlap(P(b), P(a))).toBe(want);
  });
});

describe('cidrContains', () => {
  it.each([
    ['100.64.1.0/24', '100.64.1.1', true],
    ['100.64.1.0/24', '100.64.1.0', true],
    ['100.64.1.0/24', '100.64.1.255', true],
    ['100.64.1.0/24', '100.64.2.0', false],
    ['100.64.1.0/24', '100.64.0.255', false],
    ['0.0.0.0/0', '198.18.0.1', true],
    ['198.18.0.1/32', '198.18.0.1', true],
    ['198.18.0.1/32', '198.18.0.2', false],
    ['fd00:64:5::/64', 'fd00:64:5::1', true],
    ['fd00:64:5::/64', 'fd00:64:5:1::1', false],
    ['fd00:64:5::/64', '100.64.5.1', false],
    ['100.64.5.0/24', '::ffff:100.64.5.1', false],
    ['100.64.1.0/24', 'not-an-ip', false],
  ])('%s contains %s: %s', (cidr, addr, want) => {
    expect(cidrContains(P(cidr), addr)).toBe(want);
  });
});

describe('compareCidrs', () => {
  it('sorts IPv4 before IPv6, then by network numerically, then shorter prefix first', () => {
    const input = [
      'fd00:64:5::/64',
      '100.64.10.0/24',
      '100.64.9.0/24',
      '100.64.0.0/10',
      '100.64.0.0/24',
      '9.0.0.0/8',
      'fd00::/8',
      '::/0',
    ];
    expect([...input].sort(compareCidrs)).toStrictEqual([
      '9.0.0.0/8',
      '100.64.0.0/10',
      '100.64.0.0/24',
      '100.64.9.0/24',
      '100.64.10.0/24',
      '::/0',
      'fd00::/8',
      'fd00:64:5::/64',
    ]);
  });

  it('is 0 only for equal prefixes and antisymmetric', () => {
    expect(compareCidrs('100.64.1.0/24', '100.64.1.0/24')).toBe(0);
    expect(Math.sign(compareCidrs('100.64.1.0/24', '100.64.2.0/24'))).toBe(-1);
    expect(Math.sign(compareCidrs('100.64.2.0/24', '100.64.1.0/24'))).toBe(1);
  });

  it('orders unparsable text after nothing in particular but consistently (string order)', () => {
    expect(Math.sign(compareCidrs('a', 'b'))).toBe(-1);
    expect(compareCidrs('x', 'x')).toBe(0);
  });
});

describe('one IP module: the rules every caller shares', () => {
  it('formats IPv4-mapped and IPv4-compatible addresses in mixed form (as iproute2 and wg print them)', () => {
    const mapped = parseIP('::ffff:c612:1')!;
    expect(formatIP(mapped.family, mapped.value)).toBe('::ffff:198.18.0.1');
    expect(canonicalCidr('::ffff:100.64.2.0/120')).toBe('::ffff:100.64.2.0/120');
    expect(canonicalIP('::c612:1')).toBe('::198.18.0.1');
    // Not mapped: a plain ULA with the same low bits stays hex.
    expect(canonicalIP('fd00::ffff:c612:1')).toBe('fd00::ffff:c612:1');
  });

  it('rejects zone ids, brackets, leading zeros in a prefix length', () => {
    expect(parseIP('fe80::1%eth0')).toBeUndefined();
    expect(parseIP('[::1]')).toBeUndefined();
    expect(parseCidr('100.64.2.0/024', { hostBits: 'clear' })).toBeUndefined();
  });

  it('says at every call what host bits mean', () => {
    expect(parseCidr('100.64.2.77/22', { hostBits: 'reject' })).toBeUndefined();
    expect(formatCidr(parseCidr('100.64.2.77/22', { hostBits: 'clear' })!)).toBe('100.64.0.0/22');
  });

  it('round-trips values and bytes for both families', () => {
    for (const text of ['198.18.0.1', 'fd00:5ea1::1', '::ffff:198.18.0.1', '::']) {
      const b = parseIpBytes(text)!;
      expect(formatIpBytes(b.bytes)).toBe(canonicalIP(text));
      const v = bytesToValue(b.bytes);
      expect(valueToBytes(v.family, v.value).equals(b.bytes)).toBe(true);
    }
  });
});
