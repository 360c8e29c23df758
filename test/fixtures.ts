/**
 * The shared fixture cluster for unit tests: five nodes on the test address plan (underlay
 * 198.18.0.0/15, pods 100.64.0.0/10, one dual-stack node with an IPv6 pod CIDR), each with a
 * deterministic X25519 key derived from a fixed scalar so golden outputs are stable.
 * Call `await sodiumReady()` before {@link fixtureKey} / {@link fixtureCluster}.
 */
import { parsePrivateKey, publicKeyFromPrivate, type PublicKey } from '../keymgr/keys.js';
import { ANNOTATIONS } from '../common/constants.js';
import type { RawNode } from '../tunnels/ports/model.js';

/** Public key of the fixed scalar [seed, seed, ..., seed] (clamped by X25519 itself). */
export function fixtureKey(seed: number): PublicKey {
  return publicKeyFromPrivate(parsePrivateKey(new Uint8Array(32).fill(seed)));
}

/** Fixed private-key seeds of the fixture nodes (the private keys never leave the test). */
export const FIXTURE_SEEDS = { 'node-a': 1, 'node-b': 2, 'node-c': 3, 'node-d': 4, 'node-e': 5 } as const;

/** Names of the fixture nodes, sorted. */
export type FixtureName = keyof typeof FIXTURE_SEEDS;
export const FIXTURE_NAMES = Object.keys(FIXTURE_SEEDS) as FixtureName[];

/** Annotations an agent of the given key and endpoint would have published (literal, not via encodeNode). */
export function sealnetAnnotations(
  key: string,
  endpoint: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    [ANNOTATIONS.version]: '1',
    [ANNOTATIONS.mode]: 'wireguard',
    [ANNOTATIONS.wireguardPublicKey]: key,
    [ANNOTATIONS.endpoint]: endpoint,
    [ANNOTATIONS.keyEpoch]: '1',
    [ANNOTATIONS.keyCreated]: '2024-01-01T00:00:00.000Z',
    ...extra,
  };
}

/** The fixture cluster, as the node store delivers it, plus each node's local addresses. */
export interface FixtureCluster {
  readonly nodes: RawNode[];
  readonly keys: Record<FixtureName, PublicKey>;
  /** Addresses on each node (`ip addr`): loopback, underlay, CNI bridge gateway. */
  readonly localAddresses: Record<FixtureName, string[]>;
}

/**
 * node-a..node-d: single-stack, 100.64.N.0/24, InternalIP 198.18.0.N.
 * node-c: listens on a non-default port (51999) and has an IPv6 InternalIP next to its IPv4 one.
 * node-d: key epoch 3, a non-sealnet annotation.
 * node-e: dual-stack pods, IPv6 CIDR listed first and spelled non-canonically in spec.podCIDRs.
 */
export function fixtureCluster(): FixtureCluster {
  const keys = Object.fromEntries(FIXTURE_NAMES.map((n) => [n, fixtureKey(FIXTURE_SEEDS[n])])) as Record<
    FixtureName,
    PublicKey
  >;
  const nodes: RawNode[] = [
    {
      name: 'node-a',
      annotations: sealnetAnnotations(keys['node-a'], '198.18.0.1:51880'),
      podCIDRs: ['100.64.1.0/24'],
      internalIPs: ['198.18.0.1'],
    },
    {
      name: 'node-b',
      annotations: sealnetAnnotations(keys['node-b'], '198.18.0.2:51880'),
      podCIDRs: ['100.64.2.0/24'],
      internalIPs: ['198.18.0.2'],
    },
    {
      name: 'node-c',
      annotations: sealnetAnnotations(keys['node-c'], '198.18.0.3:51999'),
      podCIDRs: ['100.64.3.0/24'],
      internalIPs: ['198.18.0.3', 'fd00:198:18::3'],
    },
    {
      name: 'node-d',
      annotations: {
        ...sealnetAnnotations(keys['node-d'], '198.18.0.4:51880', { [ANNOTATIONS.keyEpoch]: '3' }),
        'node.alpha.kubernetes.io/ttl': '0',
      },
      podCIDRs: ['100.64.4.0/24'],
      internalIPs: ['198.18.0.4'],
    },
    {
      name: 'node-e',
      annotations: sealnetAnnotations(keys['node-e'], '198.18.0.5:51880'),
      podCIDRs: ['fd00:64:5:0::/64', '100.64.5.0/24'],
      internalIPs: ['198.18.0.5'],
    },
  ];
  const localAddresses: Record<FixtureName, string[]> = {
    'node-a': ['127.0.0.1', '198.18.0.1', '100.64.1.1'],
    'node-b': ['127.0.0.1', '198.18.0.2', '100.64.2.1'],
    'node-c': ['127.0.0.1', '198.18.0.3', 'fd00:198:18::3', '100.64.3.1'],
    'node-d': ['127.0.0.1', '198.18.0.4', '100.64.4.1'],
    'node-e': ['127.0.0.1', '198.18.0.5', '100.64.5.1', 'fd00:64:5::1'],
  };
  return { nodes, keys, localAddresses };
}
