/**
 * Address classes that must never be a tunnel endpoint or a node-to-node host prefix: another
 * node chooses these values, and an endpoint or allowed IP of such a class turns every node into
 * a reflector (loopback, broadcast, multicast) or sends host traffic somewhere no node is
 * (link-local metadata services, unspecified). Pure; bigint values as `ip.ts` parses them.
 */
import { parseIP } from './ip.js';

/** Why an address is not a routable unicast address, or undefined when it is one. */
export function nonUnicastClass(family: 4 | 6, value: bigint): string | undefined {
  if (family === 4) {
    const top = Number(value >> 24n);
    if (top === 0) return 'unspecified ("this network", 0.0.0.0/8)';
    if (top === 127) return 'loopback';
    if (value >> 16n === 0xa9fen) return 'link-local (169.254.0.0/16)';
    if (value === 0xffffffffn) return 'broadcast';
    if (top >= 224 && top <= 239) return 'multicast';
    if (top >= 240) return 'reserved (240.0.0.0/4)';
    return undefined;
  }
  if (value === 0n) return 'unspecified';
  if (value === 1n) return 'loopback';
  if (value >> 118n === 0x3fan) return 'link-local (fe80::/10)';
  if (value >> 120n === 0xffn) return 'multicast';
  if (value >> 32n === 0xffffn) return 'IPv4-mapped (::ffff:0:0/96)';
  if (value >> 32n === 0n) return 'IPv4-compatible (::/96)';
  return undefined;
}

/** {@link nonUnicastClass} of a text address; 'not an IP address' when it does not parse. */
export function nonUnicastText(text: string): string | undefined {
  const ip = parseIP(text);
  return ip === undefined ? 'not an IP address' : nonUnicastClass(ip.family, ip.value);
}
