/**
 * Bounds on numbers decoded from another node's annotations. Another node is not trusted: a
 * number it publishes must be bounded where it is decoded, so that no arithmetic or allocator
 * downstream can be driven outside its domain (an IPsec epoch of 2^32 once made the SPI
 * allocator throw and failed the plan of every IPsec node).
 */

/**
 * The largest key epoch accepted (WireGuard and IPsec). Epochs advance by one per rotation,
 * so 2^31 − 1 is never reached honestly; it leaves `epoch + 1` inside the 32-bit words the SPI
 * hash and the KDF take.
 */
export const MAX_KEY_EPOCH = 0x7fff_ffff;

/** Parses a decimal key epoch (no sign, at most 10 digits, ≤ {@link MAX_KEY_EPOCH}); undefined otherwise. */
export function parseEpoch(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,10}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= MAX_KEY_EPOCH ? n : undefined;
}

/** True for an integer epoch inside 0..{@link MAX_KEY_EPOCH}. */
export function isValidEpoch(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= MAX_KEY_EPOCH;
}
