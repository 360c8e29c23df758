/**
 * Per-pair evidence of mode ipsec: what the kernel holds for each desired pair, matched against
 * what the plan wants. Pure (the caller reads the kernel with `IpsecPort.observe()`); no key
 * material ever enters it (observed SAs carry none).
 *
 * A pair is complete when the kernel holds, owned by sealnet (SPI range + reqid, policy
 * priority + reqid):
 * - the outbound SA with the planned SPI to the peer's address,
 * - every planned inbound SA (the current one, plus old/new ones during a rotation) from it,
 * - every outbound policy of the pair, its template pinned to that outbound SPI (so the kernel
 *   encrypts the pair's pod traffic with that SA and nothing else), and the in/fwd policies.
 * The algorithm of each SA is reported as the kernel states it; judging it (is it the one the
 * node is configured with, is it allowed) is the status builder's and the audit's job.
 */
import { peerPolicies, policyKey } from './objects.js';
import { canonicalIP } from '../common/ip.js';
import type {
  DesiredIpsec,
  DesiredIpsecPeer,
  ObservedIpsec,
  ObservedSa,
  PairEvidence,
  SaEvidence,
} from '../tunnels/ports/ipsec.js';
import { spiHex } from '../tunnels/ports/xfrm-types.js';
import { AEAD_ICV_BITS, AEAD_RFC4106 } from '../tunnels/ports/xfrm-types.js';

export function aesGcmBits(aead: ObservedSa['aead']): 128 | 256 | undefined {
  if (aead === undefined || aead.name !== AEAD_RFC4106 || aead.icvBits !== AEAD_ICV_BITS) return undefined;
  return aead.cipherBits === 128 || aead.cipherBits === 256 ? aead.cipherBits : undefined;
}

function toNumber(n: bigint): number {
  return n > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(n);
}

function evidenceOf(s: ObservedSa): SaEvidence {
  return {
    spi: s.spi,
    aead: s.aead,
    aesGcmBits: aesGcmBits(s.aead),
    bytes: toNumber(s.current.bytes),
    packets: toNumber(s.current.packets),
    integrityFailures: s.integrityFailures,
  };
}

/** Evidence for one desired pair. */
export function pairEvidence(desired: DesiredIpsec, peer: DesiredIpsecPeer, observed: ObservedIpsec): PairEvidence {
  const problems: string[] = [];
  const local = canonicalIP(peer.localAddress);
  const remote = canonicalIP(peer.remoteAddress);
  const find = (direction: 'in' | 'out', spi: number, src: string, dst: string): ObservedSa | undefined =>
    observed.states.find(
      (s) => s.direction === direction && s.spi === spi && canonicalIP(s.src) === src && canonicalIP(s.dst) === dst,
    );

  const out = find('out', peer.outbound.spi, local, remote);
  if (out === undefined)
    problems.push(`no outbound SA spi ${spiHex(peer.outbound.spi)} ${peer.localAddress}->${peer.remoteAddress}`);
  const inbound: SaEvidence[] = [];
  for (const sa of peer.inbound) {
    const s = find('in', sa.spi, remote, local);
    if (s === undefined)
      problems.push(`no inbound SA spi ${spiHex(sa.spi)} ${peer.remoteAddress}->${peer.localAddress}`);
    else inbound.push(evidenceOf(s));
  }

  const { accept, out: outPolicies } = peerPolicies(peer, desired);
  const policies = new Map(observed.policies.map((p) => [policyKey(p), p]));
  for (const want of [...outPolicies, ...accept]) {
    const p = policies.get(policyKey(want));
    const label = `${want.dir} policy ${want.selector.src}->${want.selector.dst}`;
    if (p === undefined || p.action !== 'allow') problems.push(`no ${label}`);
    else if (want.dir === 'out' && p.templates[0]?.spi !== peer.outbound.spi) {
      problems.push(
        `${label} sends with spi ${spiHex(p.templates[0]?.spi ?? 0)}, not the planned ${spiHex(peer.outbound.spi)}`,
      );
    }
  }
  return {
    node: peer.node,
    outbound: out === undefined ? undefined : evidenceOf(out),
    inbound: inbound.sort((a, b) => a.spi - b.spi),
    problems,
  };
}
