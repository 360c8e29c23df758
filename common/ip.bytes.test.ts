import { formatCidrBytes, formatIpBytes, parseCidrBytes, parseIpBytes } from './ip.js';

describe('parseIpBytes / formatIpBytes', () => {
  it.each([
    ['198.18.0.1', '198.18.0.1', 'c6120001'],
    ['100.64.0.0', '100.64.0.0', '64400000'],
    ['::', '::', '0'.repeat(32)],
    ['::1', '::1', `${'0'.repeat(31)}1`],
    ['FD00:0:0:0:0:0:0:1', 'fd00::1', `fd00${'0'.repeat(27)}1`],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1', '20010db8000000000001000000000001'],
    ['2001:0db8:0000:0001:0001:0001:0001:0001', '2001:db8:0:1:1:1:1:1', '20010db8000000010001000100010001'],
    ['fe80::', 'fe80::', `fe80${'0'.repeat(28)}`],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3', '00010000000000020000000000000003'],
    ['::ffff:198.18.0.1', '::ffff:198.18.0.1', '00000000000000000000ffffc6120001'],
    ['::ffff:c612:1', '::ffff:198.18.0.1', '00000000000000000000ffffc6120001'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8', '00010002000300040005000600070008'],
  ])('%s -> %s', (text, canonical, hex) => {
    const ip = parseIpBytes(text);
    expect(ip?.bytes.toString('hex')).toBe(hex);
    expect(ip?.family).toBe(text.includes(':') ? 6 : 4);
    expect(formatIpBytes(ip?.bytes ?? Buffer.alloc(0))).toBe(canonical);
  });

  it.each(['', '198.18.0', '198.18.0.256', '01.2.3.4', 'fe80::1%eth0', '[::1]', '1::2::3', 'x', '198.18.0.1/24'])(
    'rejects %j',
    (text) => {
      expect(parseIpBytes(text)).toBeUndefined();
    },
  );

  it('rejects byte strings of other lengths', () => {
    expect(() => formatIpBytes(Buffer.alloc(5))).toThrow(RangeError);
  });
});

describe('parseCidrBytes', () => {
  it.each([
    ['100.64.2.0/24', '100.64.2.0/24'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['198.18.0.1/32', '198.18.0.1/32'],
    ['fd00:0::/64', 'fd00::/64'],
    ['::ffff:100.64.2.0/120', '::ffff:100.64.2.0/120'],
  ])('%s', (text, canonical) => {
    const p = parseCidrBytes(text, { hostBits: 'reject' });
    expect(p === undefined ? undefined : formatCidrBytes(p.bytes, p.prefixLength)).toBe(canonical);
  });

  it.each([
    '100.64.2.1/24',
    '100.64.2.0/33',
    '100.64.2.0',
    '100.64.2.0/',
    '100.64.2.0/024',
    'fd00::1/64',
    'fd00::/129',
    'x/8',
  ])('rejects %j', (text) => {
    expect(parseCidrBytes(text, { hostBits: 'reject' })).toBeUndefined();
  });

  it('clears host bits when asked to', () => {
    const p = parseCidrBytes('100.64.2.77/22', { hostBits: 'clear' });
    expect(p === undefined ? undefined : formatCidrBytes(p.bytes, p.prefixLength)).toBe('100.64.0.0/22');
  });

  it('masks at non-byte boundaries', () => {
    expect(parseCidrBytes('255.255.255.255/13', { hostBits: 'clear' })?.bytes.toString('hex')).toBe('fff80000');
    expect(parseCidrBytes('255.255.255.255/0', { hostBits: 'clear' })?.bytes.toString('hex')).toBe('00000000');
    expect(parseCidrBytes('ffff::/13', { hostBits: 'clear' })?.bytes.toString('hex')).toBe('fff8' + '0'.repeat(28));
  });
});
