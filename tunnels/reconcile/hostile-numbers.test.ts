/**
 * Hostile peers, class "numbers": one node publishes epochs outside any honest range. Expected:
 * the node is skipped (or its extra key ignored) with a counted reason, the pass never throws,
 * and every honest pair is still planned.
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import {
  fixtureCluster,
  fixtureKey,
  FIXTURE_NAMES,
  FIXTURE_SEEDS,
  type FixtureCluster,
  type FixtureName,
} from '../../test/fixtures.js';
import { ANNOTATIONS } from '../../common/constants.js';
import { planIpsecMode } from './ipsec-pass.js';
import { plan } from '../plan/planner.js';
import { ipsecOf, type DesiredState, type RawNode } from '../ports/model.js';
import { peerIpsecKeys } from '../rotation/ipsec.js';
import { decodeRotationStatus } from '../plan/rotation-codec.js';

let C: FixtureCluster;
let IK: Record<FixtureName, PublicKey>;
let SPARE: PublicKey;
beforeAll(async () => {
  await sodiumReady();
  C = fixtureCluster();
  IK = Object.fromEntries(FIXTURE_NAMES.map((n) => [n, fixtureKey(FIXTURE_SEEDS[n] + 100)])) as Record<
    FixtureName,
    PublicKey
  >;
  SPARE = fixtureKey(4242);
});

function nodes(over: Partial<Record<FixtureName, Record<string, string>>> = {}): RawNode[] {
  return C.nodes.map((n) => {
    const name = n.name as FixtureName;
    return {
      ...n,
      annotations: {
        ...n.annotations,
        [ANNOTATIONS.mode]: 'ipsec',
        [ANNOTATIONS.ipsecPublicKey]: IK[name],
        [ANNOTATIONS.ipsecKeyEpoch]: '1',
        ...over[name],
      },
    };
  });
}

function planFrom(self: FixtureName, ns: RawNode[]): DesiredState {
  const raw = ns.find((n) => n.name === self)!;
  return planIpsecMode({
    nodes: ns,
    self: { name: self, wireguardPublicKey: C.keys[self], localAddresses: C.localAddresses[self] },
    config: { mode: 'ipsec', listenPort: 51880, persistentKeepalive: 0, underlayMtu: 1500, underlayFamily: 4 },
    ipsec: {
      publicKey: IK[self],
      epoch: 1,
      address: raw.internalIPs[0]!,
      underlayDev: 'eth0',
      keyBits: 256,
      replayWindow: 1024,
    },
  });
}

const pairs = (d: DesiredState): string[] => (ipsecOf(d)?.peers ?? []).map((p) => p.node);

describe('hostile epochs', () => {
  it.each([
    ['2^32', '4294967296'],
    ['15 digits', '999999999999999'],
    ['2^31', '2147483648'],
  ])('an IPsec key epoch of %s skips only that node; every other pair is planned', (_, epoch) => {
    const ns = nodes({ 'node-c': { [ANNOTATIONS.ipsecKeyEpoch]: epoch } });
    for (const self of ['node-a', 'node-b', 'node-d'] as const) {
      const d = planFrom(self, ns);
      expect(d.skipped.find((s) => s.name === 'node-c')).toMatchObject({ reason: 'annotations-invalid' });
      expect(pairs(d).sort()).toEqual(['node-a', 'node-b', 'node-d', 'node-e'].filter((n) => n !== self));
    }
  });

  it('a node running mode wireguard with an epoch of 2^32 cannot fail the IPsec plan', () => {
    const ns = nodes({ 'node-c': { [ANNOTATIONS.mode]: 'wireguard', [ANNOTATIONS.ipsecKeyEpoch]: '4294967296' } });
    const d = planFrom('node-a', ns);
    expect(d.skipped.find((s) => s.name === 'node-c')?.reason).toBe('mode-mismatch');
    expect(pairs(d)).toContain('node-b');
  });

  it('a next key with epoch 2^32 (or any jump but +1) is ignored; the pair stays on the current key', () => {
    for (const e of ['4294967296', '7', '0']) {
      const ns = nodes({
        'node-c': {
          [ANNOTATIONS.ipsecNextKey]: `${e}:${SPARE}`,
          [ANNOTATIONS.rotation]: JSON.stringify({ phase: 'moving', id: 'r-1' }),
        },
      });
      const d = planFrom('node-a', ns);
      const c = ipsecOf(d)!.peers.find((p) => p.node === 'node-c')!;
      expect(c.outbound.dstEpoch).toBe(1);
      expect(c.inbound.map((sa) => sa.srcEpoch)).toEqual([1]);
      expect(pairs(d)).toContain('node-b');
    }
    // The honest next key (current + 1) is still followed.
    const ns = nodes({
      'node-c': {
        [ANNOTATIONS.ipsecNextKey]: `2:${SPARE}`,
        [ANNOTATIONS.rotation]: JSON.stringify({ phase: 'moving', id: 'r-1' }),
      },
    });
    expect(peerIpsecKeys(ns[2]!, { epoch: 1, publicKey: IK['node-c'] }).sendEpoch).toBe(2);
  });

  it('a previous key whose epoch is not current − 1 is ignored', () => {
    const raw = nodes({ 'node-c': { [ANNOTATIONS.ipsecPreviousKey]: `9:${SPARE}` } })[2]!;
    expect(peerIpsecKeys(raw, { epoch: 1, publicKey: IK['node-c'] }).keys.map((k) => k.epoch)).toEqual([1]);
    const ok = nodes({ 'node-c': { [ANNOTATIONS.ipsecPreviousKey]: `0:${SPARE}` } })[2]!;
    expect(peerIpsecKeys(ok, { epoch: 1, publicKey: IK['node-c'] }).keys.map((k) => k.epoch)).toEqual([0, 1]);
  });

  it('a WireGuard key epoch past 2^31 − 1 skips the node in plan()', () => {
    const ns = C.nodes.map((n) =>
      n.name === 'node-c' ? { ...n, annotations: { ...n.annotations, [ANNOTATIONS.keyEpoch]: '4294967296' } } : n,
    );
    const d = plan({
      nodes: ns,
      self: { name: 'node-a', wireguardPublicKey: C.keys['node-a'], localAddresses: C.localAddresses['node-a'] },
      config: { mode: 'wireguard', listenPort: 51880, persistentKeepalive: 0, underlayMtu: 1500, underlayFamily: 4 },
    });
    expect(d.skipped.find((s) => s.name === 'node-c')?.reason).toBe('annotations-invalid');
    expect(d.tunnel.peers.map((p) => p.node)).toEqual(['node-b', 'node-d', 'node-e']);
  });

  it('rotation status epochs outside 0..2^31 − 1 are dropped', () => {
    expect(decodeRotationStatus(JSON.stringify({ phase: 'moving', id: 'r-1', epoch: 2 ** 40 }))?.epoch).toBeUndefined();
    expect(decodeRotationStatus(JSON.stringify({ phase: 'moving', id: 'r-1', epoch: 3 }))?.epoch).toBe(3);
  });
});
