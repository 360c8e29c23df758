/**
 * MTU math per encapsulation mode. Pure: the agent
 * reads the underlay link's MTU and derives the MTU of the tunnel link and of every route it
 * installs from it. A wrong MTU shows up as a throughput collapse, not an error, so the
 * results are exact (not a conservative guess) and checked packet size by packet size in the
 * unit tests.
 */
import { SealnetError } from './errors.js';

/** Extra encapsulation below sealnet's own (the underlay itself is a VXLAN/Geneve overlay). */
export type UnderlayOverlay = 'none' | 'vxlan' | 'geneve';

/** Inputs of {@link tunnelMtu}. */
export interface TunnelMtuOptions {
  /** MTU of the link that carries the outermost headers (jumbo frames included). */
  readonly underlayMtu: number;
  readonly mode: 'wireguard' | 'ipsec';
  /** Address family of the underlay (the outer IP header). */
  readonly family: 4 | 6;
  /** IPsec only: ESP in UDP (NAT traversal, +8 bytes). WireGuard is always UDP; ignored there. */
  readonly udpEncap?: boolean | undefined;
  /** The underlay path is itself a VXLAN/Geneve overlay (+50 bytes over IPv4, +70 over IPv6). */
  readonly overlay?: UnderlayOverlay | undefined;
  /**
   * The tunnel carries IPv6 (dual-stack or IPv6 pod CIDRs): the result must then be at least
   * 1280, the IPv6 minimum link MTU (RFC 8200 section 5). Default false: IPv4's minimum 576.
   */
  readonly innerIPv6?: boolean | undefined;
}

const IP_HEADER = { 4: 20, 6: 40 } as const;
const UDP_HEADER = 8;
/** WireGuard data message: type 4 + receiver index 4 + counter 8 + Poly1305 tag 16. */
const WG_MESSAGE_OVERHEAD = 32;
/** WireGuard pads the plaintext to a multiple of this (but never beyond the MTU, see below). */
const WG_PADDING_MULTIPLE = 16;
/** ESP header (SPI 4 + sequence 4) + rfc4106 explicit IV 8. */
const ESP_HEADER_AND_IV = 16;
/** ESP trailer after the padding: pad length 1 + next header 1. */
const ESP_TRAILER = 2;
/** AES-GCM ICV (rfc4106 with a 128-bit tag, the only tag length sealnet configures). */
const ESP_ICV = 16;
/** rfc4106 has block size 1; the kernel pads the ESP payload to ALIGN(blocksize, 4) = 4. */
const ESP_ALIGN = 4;
/** VXLAN and Geneve (no options): outer IP + UDP 8 + header 8 + inner Ethernet 14. */
const OVERLAY_OVERHEAD = { 4: 50, 6: 70 } as const;

const MIN_MTU_IPV4 = 576;
const MIN_MTU_IPV6 = 1280;
const MAX_MTU = 65535;

/**
 * The largest inner packet size (the MTU to set on the tunnel link and on its routes) whose
 * encapsulated packet still fits the underlay MTU.
 *
 * - WireGuard: outer = IP + UDP + 32 + padded payload. WireGuard pads to 16 bytes but clamps the
 *   padding at the MTU of the route/device the packet was sent through (kernel
 *   `calculate_skb_padding`, wireguard-go `calculatePaddingSize`: `min(mtu, ALIGN(len, 16))`),
 *   so a packet of at most `m` bytes never grows past `m` and `m = underlay - 60|80`.
 * - IPsec ESP tunnel mode, AES-GCM (rfc4106): outer = IP [+ UDP] + 16 + ALIGN(inner + 2, 4) + 16,
 *   i.e. 54–57 (IPv4) / 74–77 (IPv6) bytes depending on the inner length.
 * - A VXLAN/Geneve underlay adds 50 / 70 bytes below either.
 *
 * @throws SealnetError `CONFIG_INVALID` for a nonsensical underlay MTU, or when the result is
 *   below 576 (or 1280 with `innerIPv6`).
 */
export function tunnelMtu(opts: TunnelMtuOptions): number {
  const { underlayMtu } = opts;
  if (!Number.isInteger(underlayMtu) || underlayMtu < 68 || underlayMtu > MAX_MTU) {
    throw new SealnetError('CONFIG_INVALID', `underlay MTU ${String(underlayMtu)} is not an integer in 68..${MAX_MTU}`);
  }
  const fixed = fixedOverhead(opts);
  const room = underlayMtu - fixed;
  // ESP: the largest m with ALIGN(m + 2, 4) <= room. WireGuard: the padding is clamped at m.
  const mtu = opts.mode === 'ipsec' ? floorTo(room, ESP_ALIGN) - ESP_TRAILER : room;
  const minimum = opts.innerIPv6 === true ? MIN_MTU_IPV6 : MIN_MTU_IPV4;
  if (mtu < minimum) {
    throw new SealnetError(
      'CONFIG_INVALID',
      `underlay MTU ${underlayMtu} leaves ${mtu} bytes for ${describe(opts)}, below the ` +
        `${opts.innerIPv6 === true ? 'IPv6' : 'IPv4'} minimum of ${minimum}`,
    );
  }
  return mtu;
}

/**
 * Size on the underlay wire (outermost IP header included) of one inner packet of
 * `innerLength` bytes sent through a tunnel link whose MTU is `tunnelMtu`. Mirrors what the
 * kernel does (padding rules included); used by tests and benchmarks to check MTU choices.
 */
export function outerPacketSize(innerLength: number, opts: TunnelMtuOptions & { readonly tunnelMtu: number }): number {
  const fixed = fixedOverhead(opts);
  if (opts.mode === 'ipsec') return fixed + ceilTo(innerLength + ESP_TRAILER, ESP_ALIGN);
  // wireguard/send.c calculate_skb_padding: padded = min(mtu, ALIGN(len, 16)) for len <= mtu.
  const padded =
    innerLength <= opts.tunnelMtu
      ? Math.min(opts.tunnelMtu, ceilTo(innerLength, WG_PADDING_MULTIPLE))
      : ceilTo(innerLength, WG_PADDING_MULTIPLE);
  return fixed + padded;
}

/** Every byte the encapsulation adds except the length-dependent payload padding. */
function fixedOverhead(opts: TunnelMtuOptions): number {
  const ip = IP_HEADER[opts.family];
  const overlay = opts.overlay === undefined || opts.overlay === 'none' ? 0 : OVERLAY_OVERHEAD[opts.family];
  if (opts.mode === 'wireguard') return overlay + ip + UDP_HEADER + WG_MESSAGE_OVERHEAD;
  const udp = opts.udpEncap === true ? UDP_HEADER : 0;
  return overlay + ip + udp + ESP_HEADER_AND_IV + ESP_ICV;
}

function describe(opts: TunnelMtuOptions): string {
  const parts = [
    opts.mode === 'ipsec' && opts.udpEncap === true ? 'ipsec (UDP-encapsulated)' : opts.mode,
    `over IPv${opts.family}`,
  ];
  if (opts.overlay !== undefined && opts.overlay !== 'none') parts.push(`and ${opts.overlay}`);
  return parts.join(' ');
}

function floorTo(n: number, multiple: number): number {
  return Math.floor(n / multiple) * multiple;
}

function ceilTo(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}
