/**
 * Pure IPsec planning: which SAs (SPI, epochs, peer key) and which pod CIDRs per peer, from the
 * same decoded cluster data the WireGuard planner uses. No keys, no I/O, sorted output. The
 * main planner (tunnels/plan/planner.ts) is expected to call {@link planIpsec} for mode `ipsec`
 * after its own skip rules, and hand the result to the IPsec driver.
 */
import type { PublicKey } from '../../keymgr/keys.js';
import { compareCidrs, parseCidr, parseIP } from '../../common/ip.js';
import { SealnetError } from '../../common/errors.js';
import type { DesiredIpsec, DesiredIpsecPeer, DesiredSa } from '../ports/ipsec.js';
import { SpiAllocator, type SpiNode, type SpiRange } from './spi.js';
import type { AeadKeyBits, XfrmMark } from '../ports/xfrm-types.js';

/** One published IPsec key of a node. */
export interface IpsecNodeKey {
  readonly epoch: number;
  readonly publicKey: PublicKey;
}

/** A node as the IPsec planner needs it. */
export interface IpsecPlanNode {
  readonly name: string;
  /** Underlay address (outer ESP header). */
  readonly address: string;
  /** Canonical pod CIDRs. */
  readonly podCIDRs: readonly string[];
  /** Epoch of the key the node sends with and expects traffic for. */
  readonly currentEpoch: number;
  /** Every key the node has published (the current one, plus a next or previous one during rotation). */
  readonly keys: readonly IpsecNodeKey[];
  /**
   * The node's IPsec generation (ipsec/kdf.ts); 0 or absent when it publishes none. A pair uses
   * generations only when both nodes have one.
   */
  readonly generation?: number | undefined;
}

/** Inputs of {@link planIpsec}. */
export interface IpsecPlanInput {
  readonly self: IpsecPlanNode;
  /** Nodes to build a pair with (after the main planner's skip rules), any order. */
  readonly peers: readonly IpsecPlanNode[];
  /**
   * Every node that publishes a parseable IPsec key, skipped or not. SPIs are allocated over
   * this set so that a skip decision (which can differ between nodes, e.g. a key-conflict
   * tie-break by history) never changes an SPI. Defaults to self + peers.
   */
  readonly spiUniverse?: readonly SpiNode[] | undefined;
  readonly keyBits: AeadKeyBits;
  readonly replayWindow: number;
  readonly policyMark?: XfrmMark | undefined;
  /** SPI range; sealnet's by default (tests narrow it to force collisions). */
  readonly spiRange?: SpiRange | undefined;
}

/** A peer the IPsec plan could not include. */
export interface IpsecSkip {
  readonly node: string;
  readonly detail: string;
}

/** Result of {@link planIpsec}. */
export interface IpsecPlan {
  readonly desired: DesiredIpsec;
  /** Sorted by node. */
  readonly skipped: readonly IpsecSkip[];
}

function keyOf(node: IpsecPlanNode, epoch: number): PublicKey | undefined {
  return node.keys.find((k) => k.epoch === epoch)?.publicKey;
}

function familyOfCidr(c: string): 4 | 6 | undefined {
  return parseCidr(c, { hostBits: 'clear' })?.family;
}

/** Computes the IPsec part of the desired state. Pure and deterministic. */
export function planIpsec(input: IpsecPlanInput): IpsecPlan {
  const { self } = input;
  const selfKey = keyOf(self, self.currentEpoch);
  if (selfKey === undefined)
    throw new SealnetError('INTERNAL', `this node has no IPsec key for its current epoch ${self.currentEpoch}`);
  const selfFamily = parseIP(self.address)?.family;
  if (selfFamily === undefined)
    throw new SealnetError('CONFIG_INVALID', `this node's underlay address ${self.address} is not an IP address`);

  const universe: SpiNode[] = [
    ...(input.spiUniverse ??
      [self, ...input.peers].map((n) => ({
        name: n.name,
        epochs: n.keys.map((k) => k.epoch),
        generation: n.generation,
      }))),
  ];
  for (const n of [self, ...input.peers]) {
    // A node must be in the universe with at least the epochs the plan uses, and its generation.
    const u = universe.find((x) => x.name === n.name);
    const epochs = n.keys.map((k) => k.epoch);
    if (u === undefined) universe.push({ name: n.name, epochs, generation: n.generation });
    else if (!epochs.every((e) => u.epochs.includes(e)) || (u.generation ?? 0) !== (n.generation ?? 0)) {
      universe.splice(universe.indexOf(u), 1, {
        name: n.name,
        epochs: [...new Set([...u.epochs, ...epochs])],
        generation: n.generation,
      });
    }
  }
  const spis = new SpiAllocator(universe, input.spiRange);

  const peers: DesiredIpsecPeer[] = [];
  const skipped: IpsecSkip[] = [];
  const stateOwner = new Map<string, string>();
  for (const peer of [...input.peers].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (peer.name === self.name) continue;
    const peerKey = keyOf(peer, peer.currentEpoch);
    if (peerKey === undefined) {
      skipped.push({ node: peer.name, detail: `no IPsec public key for its current epoch ${peer.currentEpoch}` });
      continue;
    }
    if (parseIP(peer.address)?.family !== selfFamily) {
      skipped.push({
        node: peer.name,
        detail: `underlay address ${peer.address} is not IPv${selfFamily} like this node's ${self.address}`,
      });
      continue;
    }
    const localCIDRs = [...self.podCIDRs].sort(compareCidrs);
    const remoteCIDRs = [...peer.podCIDRs].sort(compareCidrs);
    const shared = remoteCIDRs.some((r) => localCIDRs.some((l) => familyOfCidr(l) === familyOfCidr(r)));
    if (!shared) {
      skipped.push({ node: peer.name, detail: 'no pod CIDR of an address family this node also has' });
      continue;
    }
    // Generations count for a pair only when both nodes publish one (the SPI allocator applies the same rule).
    const selfGen = self.generation ?? 0;
    const peerGen = peer.generation ?? 0;
    const gens = selfGen !== 0 && peerGen !== 0;
    const outbound: DesiredSa = {
      spi: spis.spi(self.name, peer.name, self.currentEpoch, peer.currentEpoch),
      srcEpoch: self.currentEpoch,
      dstEpoch: peer.currentEpoch,
      peerPublicKey: peerKey,
      ...(gens ? { srcGeneration: selfGen, dstGeneration: peerGen } : {}),
    };
    const inbound: DesiredSa[] = [];
    for (const pk of peer.keys) {
      for (const sk of self.keys) {
        inbound.push({
          spi: spis.spi(peer.name, self.name, pk.epoch, sk.epoch),
          srcEpoch: pk.epoch,
          dstEpoch: sk.epoch,
          peerPublicKey: pk.publicKey,
          ...(gens ? { srcGeneration: peerGen, dstGeneration: selfGen } : {}),
        });
      }
    }
    inbound.sort((a, b) => a.spi - b.spi);
    // The kernel keys an SA by (destination, SPI): two desired SAs with one key would replace
    // each other on every pass. A peer that would add such a duplicate is refused whole (peers
    // are visited by name, so the outcome is deterministic); the allocator keeps SPIs unique per
    // receiving node, so this only happens when two nodes share an address.
    const stateKeys = [`${peer.address}/${outbound.spi}`, ...inbound.map((sa) => `${self.address}/${sa.spi}`)];
    const clash = stateKeys.find((k, i) => stateOwner.has(k) || stateKeys.indexOf(k) !== i);
    if (clash !== undefined) {
      skipped.push({
        node: peer.name,
        detail: `SA (destination, SPI) ${clash} is already planned${stateOwner.has(clash) ? ` for node ${stateOwner.get(clash)!}` : ''}`,
      });
      continue;
    }
    for (const k of stateKeys) stateOwner.set(k, peer.name);
    peers.push({
      node: peer.name,
      localAddress: self.address,
      remoteAddress: peer.address,
      localCIDRs,
      remoteCIDRs,
      outbound,
      inbound,
    });
  }
  return {
    desired: {
      self: self.name,
      keyBits: input.keyBits,
      replayWindow: input.replayWindow,
      ...(input.policyMark !== undefined ? { policyMark: input.policyMark } : {}),
      peers,
    },
    skipped,
  };
}
