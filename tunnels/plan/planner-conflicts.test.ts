/**
 * Conflict resolution (duplicate keys, overlapping pod CIDRs) must give exactly what comparing
 * every pair of nodes gives: the planner finds the pairs with a sort instead (5,000 nodes), so
 * random clusters full of conflicts are checked against a literal pairwise reference.
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import { fixtureKey, sealnetAnnotations } from '../../test/fixtures.js';
import { cidrsOverlap, parseCidr } from '../../common/ip.js';
import type { RawNode, SkippedNode } from '../ports/model.js';
import { plan } from './planner.js';
import { seededRandom as rng } from '../../test/bench/stats.js';

let keys: PublicKey[];
beforeAll(async () => {
  await sodiumReady();
  keys = Array.from({ length: 12 }, (_, i) => fixtureKey(20 + i));
});

const CIDRS = [
  '100.65.0.0/16',
  '100.65.1.0/24',
  '100.65.2.0/24',
  '100.65.2.128/25',
  '100.66.0.0/24',
  '100.66.1.0/24',
  '100.67.0.0/24',
  'fd00:64:1::/64',
  'fd00:64::/48',
  'fd00:65::/64',
];

/** The pairwise definition, as the planner had it before it went O(N log N). */
function reference(
  nodes: readonly { name: string; key: string; cidrs: readonly string[] }[],
  established: Record<string, string>,
): SkippedNode[] {
  const loser = new Map<string, SkippedNode>();
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const a = nodes[i]!;
      const b = nodes[j]!;
      let what: 'duplicate-key' | 'pod-cidr-conflict' | undefined;
      if (a.key === b.key) what = 'duplicate-key';
      else if (
        a.cidrs.some((x) =>
          b.cidrs.some((y) => cidrsOverlap(parseCidr(x, { hostBits: 'clear' })!, parseCidr(y, { hostBits: 'clear' })!)),
        )
      )
        what = 'pod-cidr-conflict';
      if (what === undefined) continue;
      const aOwns = established[a.name] === a.key;
      const bOwns = established[b.name] === b.key;
      const detail =
        what === 'duplicate-key'
          ? `nodes ${a.name} and ${b.name} publish the same public key`
          : `nodes ${a.name} and ${b.name} have overlapping pod CIDRs`;
      const aKeeps = aOwns && !bOwns;
      const bKeeps = bOwns && !aOwns;
      if (!aKeeps)
        loser.set(a.name, {
          name: a.name,
          reason: what,
          detail: bKeeps ? `${detail}; ${b.name} had it first` : detail,
        });
      if (!bKeeps)
        loser.set(b.name, {
          name: b.name,
          reason: what,
          detail: aKeeps ? `${detail}; ${a.name} had it first` : detail,
        });
    }
  }
  return [...loser.values()].sort((x, y) => (x.name < y.name ? -1 : 1));
}

describe('plan() conflict resolution', () => {
  it('matches the pairwise reference on 300 random clusters', () => {
    let conflicts = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const r = rng(seed);
      const n = 2 + Math.floor(r() * 9);
      const nodes = Array.from({ length: n }, (_, i) => {
        const cidrs = [
          ...new Set(Array.from({ length: 1 + Math.floor(r() * 2) }, () => CIDRS[Math.floor(r() * CIDRS.length)]!)),
        ];
        return {
          name: `n${String(i).padStart(2, '0')}`,
          key: keys[1 + Math.floor(r() * 8)]! as string,
          cidrs,
          ip: `198.18.1.${i + 1}`,
        };
      });
      const established: Record<string, string> = {};
      for (const x of nodes) if (r() < 0.3) established[x.name] = x.key;
      const raw: RawNode[] = nodes.map((x) => ({
        name: x.name,
        annotations: sealnetAnnotations(x.key, `${x.ip}:51880`),
        podCIDRs: x.cidrs,
        internalIPs: [x.ip],
      }));
      const self: RawNode = {
        name: 'self',
        annotations: sealnetAnnotations(keys[0]!, '198.18.0.1:51880'),
        podCIDRs: ['100.64.1.0/24'],
        internalIPs: ['198.18.0.1'],
      };
      const desired = plan({
        nodes: [self, ...raw],
        self: { name: 'self', wireguardPublicKey: keys[0]!, localAddresses: ['198.18.0.1'] },
        config: { mode: 'wireguard', listenPort: 51880, persistentKeepalive: 25, underlayMtu: 1500, underlayFamily: 4 },
        established: established as Record<string, PublicKey>,
      });
      // The codec canonicalises and sorts pod CIDRs; the reference sees them as the planner does.
      const expected = reference(nodes, established);
      const got = desired.skipped.filter((s) => s.reason === 'duplicate-key' || s.reason === 'pod-cidr-conflict');
      expect({ seed, skipped: got }).toEqual({ seed, skipped: expected });
      expect(desired.tunnel.peers.map((p) => p.node).sort()).toEqual(
        nodes.map((x) => x.name).filter((x) => !expected.some((e) => e.name === x)),
      );
      conflicts += expected.length;
    }
    // The generator must actually produce conflicts, or the comparison proves nothing.
    expect(conflicts).toBeGreaterThan(300);
  });
});
