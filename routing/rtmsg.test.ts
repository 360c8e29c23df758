import type { rt } from 'netlink';
import { ROUTE_PROTOCOL } from '../common/constants.js';
import { parseCidrBytes, parseIpBytes } from '../common/ip.js';
import {
  decodeAddress,
  decodeLink,
  decodeRoute,
  encodeRouteDelete,
  encodeRouteReplace,
  encodeRule,
  errnoName,
  errorText,
  headerTable,
  isLocalRoute,
  ruleMatches,
} from './rtmsg.js';

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const NONE = u32(0xffffffff);

function prefix(text: string) {
  const p = parseCidrBytes(text, { hostBits: 'reject' });
  if (p === undefined) throw new Error(text);
  return p;
}

describe('route encoding', () => {
  it('puts table ids above 255 only in RTA_TABLE', () => {
    expect(headerTable(5188)).toBe(0);
    expect(headerTable(254)).toBe(254);
  });

  it('encodes a replace with protocol, table, MTU metric, oif and prefsrc', () => {
    const req = encodeRouteReplace({
      dst: prefix('100.64.2.0/24'),
      oif: 7,
      mtu: 1440,
      src: parseIpBytes('198.18.0.1'),
      table: 5188,
    });
    expect(req.data).toEqual({ family: 2, dstLen: 24, table: 0, protocol: ROUTE_PROTOCOL, scope: 253, type: 1 });
    expect(req.attrs).toEqual({
      dst: Buffer.from([100, 64, 2, 0]),
      oif: 7,
      table: 5188,
      metrics: { mtu: u32(1440) },
      prefsrc: Buffer.from([198, 18, 0, 1]),
    });
  });

  it('omits prefsrc without src and encodes IPv6', () => {
    const req = encodeRouteReplace({ dst: prefix('fd00::/64'), oif: 3, mtu: 1420, table: 5188 });
    expect(req.data.family).toBe(10);
    expect(req.attrs).not.toHaveProperty('prefsrc');
  });

  it('restricts deletes to our protocol, any scope', () => {
    const req = encodeRouteDelete(prefix('100.64.2.0/24'), 5188);
    expect(req.data).toEqual({ family: 2, dstLen: 24, table: 0, protocol: ROUTE_PROTOCOL, scope: 255 });
    expect(req.attrs).toEqual({ dst: Buffer.from([100, 64, 2, 0]), table: 5188 });
  });
});

describe('decodeRoute', () => {
  const names = (i: number): string | undefined => ({ 7: 'sealwg0' })[i];

  it('reads dst, dev, MTU, src, the real table and the protocol', () => {
    const msg: rt.RouteMessage = {
      kind: 'route',
      data: { family: 2, dstLen: 24, table: 252, protocol: ROUTE_PROTOCOL as rt.RouteProtocol, type: 'UNICAST' },
      attrs: {
        dst: Buffer.from([100, 64, 2, 0]),
        oif: 7,
        table: 5188,
        metrics: { mtu: u32(1440) },
        prefsrc: Buffer.from([198, 18, 0, 1]),
      },
    };
    expect(decodeRoute(msg, names)).toEqual({
      dst: '100.64.2.0/24',
      dev: 'sealwg0',
      mtu: 1440,
      src: '198.18.0.1',
      table: 5188,
      protocol: ROUTE_PROTOCOL,
    });
  });

  it('handles a default route, a missing MTU and protocol names', () => {
    const msg: rt.RouteMessage = {
      kind: 'route',
      data: { family: 10, dstLen: 0, table: 254, protocol: 'BOOT' },
      attrs: { oif: 9 },
    };
    expect(decodeRoute(msg, names)).toEqual({
      dst: '::/0',
      dev: undefined,
      mtu: undefined,
      src: undefined,
      table: 254,
      protocol: 3,
    });
  });

  it('skips other families and recognises local routes', () => {
    expect(decodeRoute({ kind: 'route', data: { family: 7 }, attrs: {} }, names)).toBeUndefined();
    expect(isLocalRoute({ kind: 'route', data: { family: 2, type: 'LOCAL' }, attrs: {} })).toBe(true);
    expect(isLocalRoute({ kind: 'route', data: { family: 2, type: 'UNICAST' }, attrs: {} })).toBe(false);
  });
});

describe('rules', () => {
  const spec = { priority: 90, table: 5188, family: 4 } as const;
  const base: rt.RuleMessage = {
    kind: 'rule',
    data: { family: 2, dstLen: 0, srcLen: 0, tos: 0, table: 252, action: 'toTbl', flags: {} },
    attrs: { table: 5188, priority: 90, protocol: 0, suppressPrefixlen: NONE },
  };

  it('encodes priority P lookup T with an optional protocol', () => {
    expect(encodeRule(spec, { protocol: ROUTE_PROTOCOL })).toEqual({
      data: { family: 2, table: 0, action: 1 },
      attrs: { priority: 90, table: 5188, protocol: ROUTE_PROTOCOL },
    });
    expect(encodeRule({ ...spec, family: 6 }).attrs).toEqual({ priority: 90, table: 5188 });
  });

  it.each<[string, rt.RuleMessage, boolean]>([
    ['the exact rule', base, true],
    ['marked with our protocol', { ...base, attrs: { ...base.attrs, protocol: ROUTE_PROTOCOL } }, true],
    ['another family', { ...base, data: { ...base.data, family: 10 } }, false],
    ['another priority', { ...base, attrs: { ...base.attrs, priority: 91 } }, false],
    ['another table', { ...base, attrs: { ...base.attrs, table: 254 } }, false],
    [
      'a from selector',
      { ...base, data: { ...base.data, srcLen: 24 }, attrs: { ...base.attrs, src: Buffer.from([198, 18, 7, 0]) } },
      false,
    ],
    ['a fwmark', { ...base, attrs: { ...base.attrs, fwmark: 0x5188 } }, false],
    ['an iif', { ...base, attrs: { ...base.attrs, iifname: 'eth0' } }, false],
    ['inverted', { ...base, data: { ...base.data, flags: { invert: true } } }, false],
    ['suppress_prefixlength 0', { ...base, attrs: { ...base.attrs, suppressPrefixlen: u32(0) } }, false],
    ['a goto action', { ...base, data: { ...base.data, action: 'goto' } }, false],
  ])('matches %s: %s', (_name, msg, want) => {
    expect(ruleMatches(msg, spec)).toBe(want);
  });
});

describe('links and addresses', () => {
  it('decodes link facts', () => {
    expect(
      decodeLink({ kind: 'link', data: { index: 4, flags: { up: true } }, attrs: { ifname: 'eth0', mtu: 9000 } }),
    ).toEqual({ ifindex: 4, name: 'eth0', mtu: 9000, up: true });
    expect(decodeLink({ kind: 'link', data: { index: 5, flags: {} }, attrs: { ifname: 'x', mtu: 1500 } }).up).toBe(
      false,
    );
  });

  it('takes IFA_LOCAL for IPv4 (the peer is IFA_ADDRESS on point-to-point links) and IFA_ADDRESS for IPv6', () => {
    expect(
      decodeAddress({
        kind: 'address',
        data: { family: 2, prefixlen: 32, index: 3 },
        attrs: { local: Buffer.from([198, 18, 0, 1]), address: Buffer.from([198, 18, 0, 2]) },
      }),
    ).toEqual({
      address: '198.18.0.1',
      prefixLength: 32,
      ifindex: 3,
    });
    const v6 = parseIpBytes('fd00::1')?.bytes;
    expect(
      decodeAddress({ kind: 'address', data: { family: 10, prefixlen: 64, index: 3 }, attrs: { address: v6 } })
        ?.address,
    ).toBe('fd00::1');
    expect(decodeAddress({ kind: 'address', data: { family: 17 }, attrs: {} })).toBeUndefined();
  });
});

describe('errno', () => {
  it('reads the errno the netlink package puts in its message', () => {
    expect(errnoName(new Error('Request rejected: EEXIST'))).toBe('EEXIST');
    expect(errnoName(new Error('Request rejected: -3'))).toBe('ESRCH');
    expect(errnoName(new Error('Timeout has been reached'))).toBeUndefined();
    expect(errnoName('EEXIST')).toBeUndefined();
  });

  it('describes errors for messages', () => {
    expect(errorText(new Error('Request rejected: EINVAL'))).toMatch(/^EINVAL \(invalid argument\)$/i);
    expect(errorText(new Error('Timeout has been reached'))).toBe('Timeout has been reached');
  });
});
