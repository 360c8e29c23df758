/**
 * The post-quantum annotations of a Node (issue 19): its ML-KEM-768 encapsulation key and the
 * address its agent takes exchange messages on. Pure; a hostile value gives a reason, never an
 * exception, and never fails the rest of the node's decode (a peer with a bad key is a classical
 * or dropped pair, by `postQuantum.mode`, while its tunnel keeps working).
 */
import { ANNOTATIONS } from '../../common/constants.js';
import { canonicalIP, cidrContains, parseCidr, parseIP } from '../../common/ip.js';
import { quoteShort } from '../../common/text.js';
import { encapsulationKeyHash, tryParseEncapsulationKey, type EncapsulationKey } from '../../keymgr/pq/mlkem.js';
import type { RawNode } from '../ports/model.js';

/** A node's usable post-quantum publication, or why it has none. */
export type PqPublication =
  | {
      readonly ok: true;
      readonly kemKey: EncapsulationKey;
      /** SHA-256 of the key bytes (the transcript's key hash). */
      readonly kemKeyHash: Uint8Array;
      /** Hex of {@link kemKeyHash} (the state machine's key id). */
      readonly kemKeyId: string;
      /** Canonical text of the exchange address (inside the node's own pod CIDRs). */
      readonly address: string;
    }
  | { readonly ok: false; readonly problem: string };

/** The annotations this node publishes for its post-quantum exchange. */
export function encodePqAnnotations(p: { kemKey: EncapsulationKey; address: string }): Record<string, string> {
  return { [ANNOTATIONS.pqKemKey]: p.kemKey, [ANNOTATIONS.pqAddress]: p.address };
}

/**
 * Reads a node's ML-KEM key and exchange address. The address must lie inside the node's own
 * `spec.podCIDRs` (written by the control plane, not by the node): those are the allowed IPs of
 * its WireGuard peer, so a message from it can only have come through the tunnel, and a node
 * cannot point peers' exchanges at another node's address.
 */
export function decodePqPublication(raw: RawNode): PqPublication {
  const keyText = raw.annotations[ANNOTATIONS.pqKemKey];
  if (keyText === undefined) return { ok: false, problem: `${ANNOTATIONS.pqKemKey} is missing` };
  const k = tryParseEncapsulationKey(keyText);
  if (!k.ok) return { ok: false, problem: `${ANNOTATIONS.pqKemKey}: ${k.error}` };
  const addrText = raw.annotations[ANNOTATIONS.pqAddress];
  if (addrText === undefined) return { ok: false, problem: `${ANNOTATIONS.pqAddress} is missing` };
  const ip = addrText.length <= 45 ? parseIP(addrText) : undefined;
  if (ip === undefined) {
    return { ok: false, problem: `${ANNOTATIONS.pqAddress} ${quoteShort(addrText)} is not an IP address` };
  }
  const inside = raw.podCIDRs.some((c) => {
    const cidr = parseCidr(c, { hostBits: 'clear' });
    return cidr !== undefined && cidrContains(cidr, addrText);
  });
  if (!inside) {
    return {
      ok: false,
      problem: `${ANNOTATIONS.pqAddress} ${quoteShort(addrText)} is not inside the node's pod CIDRs`,
    };
  }
  const hash = encapsulationKeyHash(k.key);
  return {
    ok: true,
    kemKey: k.key,
    kemKeyHash: hash,
    kemKeyId: Buffer.from(hash).toString('hex'),
    address: canonicalIP(addrText),
  };
}
