import { outerPacketSize, tunnelMtu, type TunnelMtuOptions } from './mtu.js';

/**
 * Reference model, written out field by field from the packet formats and independently of
 * mtu.ts: the size on the underlay of one inner packet of `len` bytes sent through a tunnel
 * link with MTU `mtu`.
 */
function referenceOuter(len: number, mtu: number, o: TunnelMtuOptions): number {
  const ip = o.family === 4 ? 20 : 40;
  // VXLAN/Geneve: outer IP + UDP 8 + VXLAN/Geneve header 8 + inner Ethernet 14.
  const overlay = o.overlay === 'vxlan' || o.overlay === 'geneve' ? ip + 8 + 8 + 14 : 0;
  if (o.mode === 'wireguard') {
    // type 4 + receiver 4 + counter 8, payload padded to 16 but never past the MTU, tag 16.
    const padded = Math.min(mtu, Math.ceil(len / 16) * 16);
    return overlay + ip + 8 + 4 + 4 + 8 + padded + 16;
  }
  // SPI 4 + seq 4 + IV 8, payload + pad-length 1 + next-header 1 padded to 4, ICV 16.
  const udp = o.udpEncap === true ? 8 : 0;
  const esp = Math.ceil((len + 1 + 1) / 4) * 4;
  return overlay + ip + udp + 4 + 4 + 8 + esp + 16;
}

describe('tunnelMtu', () => {
  it.each<[string, TunnelMtuOptions, number]>([
    ['WireGuard, IPv4, 1500', { underlayMtu: 1500, mode: 'wireguard', family: 4 }, 1440],
    ['WireGuard, IPv6, 1500', { underlayMtu: 1500, mode: 'wireguard', family: 6 }, 1420],
    ['WireGuard, IPv4, jumbo 9000', { underlayMtu: 9000, mode: 'wireguard', family: 4 }, 8940],
    ['WireGuard, IPv6, jumbo 9000', { underlayMtu: 9000, mode: 'wireguard', family: 6 }, 8920],
    ['WireGuard, IPv4, 1500 over VXLAN', { underlayMtu: 1500, mode: 'wireguard', family: 4, overlay: 'vxlan' }, 1390],
    ['WireGuard, IPv6, 1500 over Geneve', { underlayMtu: 1500, mode: 'wireguard', family: 6, overlay: 'geneve' }, 1350],
    ['WireGuard, IPv4, 9001 (odd, AWS-like)', { underlayMtu: 9001, mode: 'wireguard', family: 4 }, 8941],
    ['WireGuard, overlay none', { underlayMtu: 1500, mode: 'wireguard', family: 4, overlay: 'none' }, 1440],
    ['WireGuard ignores udpEncap', { underlayMtu: 1500, mode: 'wireguard', family: 4, udpEncap: true }, 1440],
    // ESP: 1500 - 20 - 16 - 16 = 1448 for ALIGN(m + 2, 4) -> m = 1446 (overhead 54).
    ['ESP, IPv4, 1500', { underlayMtu: 1500, mode: 'ipsec', family: 4 }, 1446],
    ['ESP, IPv6, 1500', { underlayMtu: 1500, mode: 'ipsec', family: 6 }, 1426],
    ['ESP-in-UDP, IPv4, 1500', { underlayMtu: 1500, mode: 'ipsec', family: 4, udpEncap: true }, 1438],
    ['ESP-in-UDP, IPv6, 1500', { underlayMtu: 1500, mode: 'ipsec', family: 6, udpEncap: true }, 1418],
    // 1501 - 52 = 1449 -> floor to 4 = 1448 -> 1446: the odd byte cannot be used.
    ['ESP, IPv4, 1501', { underlayMtu: 1501, mode: 'ipsec', family: 4 }, 1446],
    ['ESP, IPv4, 1503', { underlayMtu: 1503, mode: 'ipsec', family: 4 }, 1446],
    ['ESP, IPv4, 1504', { underlayMtu: 1504, mode: 'ipsec', family: 4 }, 1450],
    ['ESP, IPv4, jumbo 9000', { underlayMtu: 9000, mode: 'ipsec', family: 4 }, 8946],
    ['ESP, IPv4, 1500 over VXLAN', { underlayMtu: 1500, mode: 'ipsec', family: 4, overlay: 'vxlan' }, 1394],
    [
      'ESP-in-UDP, IPv6, 9000 over Geneve',
      { underlayMtu: 9000, mode: 'ipsec', family: 6, udpEncap: true, overlay: 'geneve' },
      8846,
    ],
    ['IPv6 inner traffic at the minimum', { underlayMtu: 1360, mode: 'wireguard', family: 6, innerIPv6: true }, 1280],
    ['IPv4 inner traffic at the minimum', { underlayMtu: 636, mode: 'wireguard', family: 4 }, 576],
  ])('%s', (_name, opts, want) => {
    expect(tunnelMtu(opts)).toBe(want);
  });

  it.each<[string, TunnelMtuOptions, RegExp]>([
    [
      'IPv6 inner traffic below 1280',
      { underlayMtu: 1359, mode: 'wireguard', family: 6, innerIPv6: true },
      /underlay MTU 1359 leaves 1279 bytes .*IPv6 minimum of 1280/,
    ],
    [
      '1280 underlay cannot carry IPv6 through WireGuard',
      { underlayMtu: 1280, mode: 'wireguard', family: 4, innerIPv6: true },
      /underlay MTU 1280 leaves 1220/,
    ],
    [
      'IPv4 below 576',
      { underlayMtu: 635, mode: 'wireguard', family: 4 },
      /underlay MTU 635 leaves 575 bytes .*IPv4 minimum of 576/,
    ],
    [
      'ESP over VXLAN on a small underlay',
      { underlayMtu: 680, mode: 'ipsec', family: 6, overlay: 'vxlan' },
      /underlay MTU 680 .*ipsec over IPv6 and vxlan/,
    ],
    ['not an integer', { underlayMtu: 1500.5, mode: 'wireguard', family: 4 }, /underlay MTU 1500.5/],
    ['NaN', { underlayMtu: Number.NaN, mode: 'wireguard', family: 4 }, /underlay MTU NaN/],
    ['too large', { underlayMtu: 65536, mode: 'wireguard', family: 4 }, /underlay MTU 65536/],
    ['zero', { underlayMtu: 0, mode: 'ipsec', family: 4 }, /underlay MTU 0/],
  ])('rejects %s with CONFIG_INVALID', (_name, opts, message) => {
    expect(() => tunnelMtu(opts)).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringMatching(message) }),
    );
  });

  // Every combination, every underlay MTU from 1280 to 9216: the largest inner packet fits
  // (padding included) and one byte more would not.
  const combos: TunnelMtuOptions[] = [];
  for (const mode of ['wireguard', 'ipsec'] as const) {
    for (const family of [4, 6] as const) {
      for (const overlay of ['none', 'vxlan', 'geneve'] as const) {
        for (const udpEncap of mode === 'ipsec' ? [false, true] : [false]) {
          combos.push({ underlayMtu: 0, mode, family, overlay, udpEncap });
        }
      }
    }
  }

  it.each(combos.map((c) => [`${c.mode} IPv${c.family} overlay=${c.overlay} udp=${c.udpEncap}`, c] as const))(
    'is the largest inner MTU that fits, for every underlay MTU (%s)',
    (_name, combo) => {
      for (let underlayMtu = 1280; underlayMtu <= 9216; underlayMtu++) {
        const opts = { ...combo, underlayMtu };
        const m = tunnelMtu(opts);
        // Every inner length near the top (padding is not monotonic per byte for WireGuard).
        for (let len = Math.max(0, m - 64); len <= m; len++) {
          const outer = referenceOuter(len, m, opts);
          if (outer > underlayMtu) throw new Error(`underlay ${underlayMtu}: inner ${len} -> outer ${outer}`);
        }
        // One byte more: the largest packet of a tunnel with MTU m + 1 no longer fits.
        const over = referenceOuter(m + 1, m + 1, opts);
        if (over <= underlayMtu)
          throw new Error(`underlay ${underlayMtu}: MTU ${m} is not the largest (${m + 1} -> ${over})`);
      }
    },
  );

  it('packets well below the MTU are padded to 16 (WireGuard) and 4 (ESP)', () => {
    const wg = { underlayMtu: 1500, mode: 'wireguard', family: 4, tunnelMtu: 1440 } as const;
    expect(outerPacketSize(1, wg)).toBe(60 + 16);
    expect(outerPacketSize(17, wg)).toBe(60 + 32);
    expect(outerPacketSize(1439, wg)).toBe(60 + 1440);
    // 1420 (IPv6 underlay) is not a multiple of 16: the last unit is padded to the MTU only.
    expect(outerPacketSize(1419, { underlayMtu: 1500, mode: 'wireguard', family: 6, tunnelMtu: 1420 })).toBe(1500);
    const esp = { underlayMtu: 1500, mode: 'ipsec', family: 4, tunnelMtu: 1446 } as const;
    expect(outerPacketSize(1446, esp)).toBe(1500);
    expect(outerPacketSize(1443, esp)).toBe(1500);
    expect(outerPacketSize(1442, esp)).toBe(1496);
  });

  it('outerPacketSize agrees with the reference model', () => {
    const mismatches: string[] = [];
    for (const combo of combos) {
      const opts = { ...combo, underlayMtu: 1500 };
      const mtu = tunnelMtu(opts);
      for (let len = 0; len <= mtu; len++) {
        const got = outerPacketSize(len, { ...opts, tunnelMtu: mtu });
        const want = referenceOuter(len, mtu, opts);
        if (got !== want) mismatches.push(`${opts.mode}/${opts.family}/${opts.overlay} len ${len}: ${got} != ${want}`);
      }
    }
    expect(mismatches).toEqual([]);
  });
});
