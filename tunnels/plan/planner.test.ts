import { beforeAll, describe, expect, it } from '@jest/globals';
import { sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import {
  FIXTURE_NAMES,
  fixtureCluster,
  fixtureKey,
  sealnetAnnotations,
  type FixtureCluster,
  type FixtureName,
} from '../../test/fixtures.js';
import { ANNOTATIONS } from '../../common/constants.js';
import type { DesiredPeer, DesiredRoute, DesiredWireGuardState, RawNode, SkipReason } from '../ports/model.js';
import { plan, type PlanConfig, type PlanInput } from './planner.js';

// One fixture cluster (test/fixtures.ts), viewed from every node. Expected values are written
// out literally: endpoints, allowed IPs, route destinations and sources.

let C: FixtureCluster;
let keyF: PublicKey;
let keyG: PublicKey;
beforeAll(async () => {
  await sodiumReady();
  C = fixtureCluster();
  keyF = fixtureKey(6);
  keyG = fixtureKey(7);
});

const WG: PlanConfig = {
  mode: 'wireguard',
  listenPort: 51880,
  persistentKeepalive: 25,
  underlayMtu: 1500,
  underlayFamily: 4,
};

function from(
  self: FixtureName,
  opts: {
    nodes?: readonly RawNode[];
    config?: Partial<PlanConfig>;
    established?: Record<string, PublicKey>;
    localAddresses?: string[];
  } = {},
): DesiredWireGuardState {
  const input: PlanInput = {
    nodes: opts.nodes ?? C.nodes,
    self: {
      name: self,
      wireguardPublicKey: C.keys[self],
      localAddresses: opts.localAddresses ?? C.localAddresses[self],
    },
    config: { ...WG, ...opts.config },
    ...(opts.established !== undefined ? { established: opts.established } : {}),
  };
  return plan(input);
}

/** [peer node, endpoint, allowed IPs] */
type PeerRow = readonly [string, string, readonly string[]];
/** [route dst, preferred source] */
type RouteRow = readonly [string, string | undefined];

const GOLDEN: Record<FixtureName, { peers: PeerRow[]; routes: RouteRow[] }> = {
  'node-a': {
    peers: [
      ['node-b', '198.18.0.2:51880', ['100.64.2.0/24']],
      ['node-c', '198.18.0.3:51999', ['100.64.3.0/24']],
      ['node-d', '198.18.0.4:51880', ['100.64.4.0/24']],
      ['node-e', '198.18.0.5:51880', ['100.64.5.0/24', 'fd00:64:5::/64']],
    ],
    routes: [
      ['100.64.2.0/24', '100.64.1.1'],
      ['100.64.3.0/24', '100.64.1.1'],
      ['100.64.4.0/24', '100.64.1.1'],
      ['100.64.5.0/24', '100.64.1.1'],
      ['fd00:64:5::/64', undefined],
    ],
  },
  'node-b': {
    peers: [
      ['node-a', '198.18.0.1:51880', ['100.64.1.0/24']],
      ['node-c', '198.18.0.3:51999', ['100.64.3.0/24']],
      ['node-d', '198.18.0.4:51880', ['100.64.4.0/24']],
      ['node-e', '198.18.0.5:51880', ['100.64.5.0/24', 'fd00:64:5::/64']],
    ],
    routes: [
      ['100.64.1.0/24', '100.64.2.1'],
      ['100.64.3.0/24', '100.64.2.1'],
      ['100.64.4.0/24', '100.64.2.1'],
      ['100.64.5.0/24', '100.64.2.1'],
      ['fd00:64:5::/64', undefined],
    ],
  },
  'node-c': {
    peers: [
      ['node-a', '198.18.0.1:51880', ['100.64.1.0/24']],
      ['node-b', '198.18.0.2:51880', ['100.64.2.0/24']],
      ['node-d', '198.18.0.4:51880', ['100.64.4.0/24']],
      ['node-e', '198.18.0.5:51880', ['100.64.5.0/24', 'fd00:64:5::/64']],
    ],
    routes: [
      ['100.64.1.0/24', '100.64.3.1'],
      ['100.64.2.0/24', '100.64.3.1'],
      ['100.64.4.0/24', '100.64.3.1'],
      ['100.64.5.0/24', '100.64.3.1'],
      // node-c has an IPv6 underlay address, but none inside an own IPv6 pod CIDR.
      ['fd00:64:5::/64', undefined],
    ],
  },
  'node-d': {
    peers: [
      ['node-a', '198.18.0.1:51880', ['100.64.1.0/24']],
      ['node-b', '198.18.0.2:51880', ['100.64.2.0/24']],
      ['node-c', '198.18.0.3:51999', ['100.64.3.0/24']],
      ['node-e', '198.18.0.5:51880', ['100.64.5.0/24', 'fd00:64:5::/64']],
    ],
    routes: [
      ['100.64.1.0/24', '100.64.4.1'],
      ['100.64.2.0/24', '100.64.4.1'],
      ['100.64.3.0/24', '100.64.4.1'],
      ['100.64.5.0/24', '100.64.4.1'],
      ['fd00:64:5::/64', undefined],
    ],
  },
  'node-e': {
    peers: [
      ['node-a', '198.18.0.1:51880', ['100.64.1.0/24']],
      ['node-b', '198.18.0.2:51880', ['100.64.2.0/24']],
      ['node-c', '198.18.0.3:51999', ['100.64.3.0/24']],
      ['node-d', '198.18.0.4:51880', ['100.64.4.0/24']],
    ],
    routes: [
      ['100.64.1.0/24', '100.64.5.1'],
      ['100.64.2.0/24', '100.64.5.1'],
      ['100.64.3.0/24', '100.64.5.1'],
      ['100.64.4.0/24', '100.64.5.1'],
    ],
  },
};

function keyOf(node: string): PublicKey {
  if (node === 'node-f') return keyF;
  if (node === 'node-g') return keyG;
  return C.keys[node as FixtureName];
}

function peers(rows: readonly PeerRow[], keepalive = 25): DesiredPeer[] {
  return rows.map(([node, endpoint, allowedIPs]) => ({
    node,
    publicKey: keyOf(node),
    endpoint,
    allowedIPs: [...allowedIPs],
    persistentKeepalive: keepalive,
  }));
}

function routes(rows: readonly RouteRow[], mtu = 1440): DesiredRoute[] {
  return rows.map(([dst, src]) => ({ dst, dev: 'sealwg0', mtu, src, table: 5188 }));
}

function golden(self: FixtureName): DesiredWireGuardState {
  const g = GOLDEN[self];
  return {
    tunnel: {
      kind: 'wireguard',
      link: { name: 'sealwg0', listenPort: 51880, mtu: 1440, fwmark: 0x5188 },
      peers: peers(g.peers),
    },
    routes: routes(g.routes),
    skipped: [],
  };
}

/** A sixth node, valid unless a test breaks it. */
function nodeF(
  over: {
    annotations?: Record<string, string>;
    drop?: string[];
    podCIDRs?: string[];
    name?: string;
    key?: string;
  } = {},
): RawNode {
  const annotations = { ...sealnetAnnotations(over.key ?? keyF, '198.18.0.6:51880'), ...over.annotations };
  for (const k of over.drop ?? []) delete annotations[k];
  return {
    name: over.name ?? 'node-f',
    annotations,
    podCIDRs: over.podCIDRs ?? ['100.64.6.0/24'],
    internalIPs: ['198.18.0.6'],
  };
}

/** Deterministic Fisher-Yates with a small LCG, so failures reproduce. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe('plan: the fixture cluster from every node', () => {
  it.each(FIXTURE_NAMES.map((n) => [n] as const))('wireguard from %s', (self) => {
    expect(from(self)).toStrictEqual(golden(self));
  });

  it('the fixture keys are distinct and stable', () => {
    expect(new Set(Object.values(C.keys)).size).toBe(5);
    // Seed 1 everywhere: a fixed scalar must give a fixed point, or every golden here drifts.
    expect(C.keys['node-a']).toBe(fixtureKey(1));
    expect(C.keys['node-a']).toMatch(/^[A-Za-z0-9+/]{43}=$/);
  });

  it('ipsec from node-a: every wireguard node is a mode mismatch, MTU for ESP', () => {
    const got = from('node-a', { config: { mode: 'ipsec' } });
    // plan() is the base plan in both modes (skips, routes with the mode's MTU); planIpsecMode
    // replaces its tunnel with SAs (tunnels/reconcile/ipsec-pass.ts).
    expect(got).toStrictEqual({
      // 1500 - 20 (IP) - 16 (ESP hdr + IV) - 16 (ICV) = 1448, aligned to 4, minus 2 trailer.
      tunnel: { kind: 'wireguard', link: { name: 'sealwg0', listenPort: 51880, mtu: 1446, fwmark: 0x5188 }, peers: [] },
      routes: [],
      skipped: (['node-b', 'node-c', 'node-d', 'node-e'] as const).map((name) => ({
        name,
        reason: 'mode-mismatch',
        detail: `node ${name} runs mode wireguard, this node runs ipsec`,
      })),
    });
  });

  it('self missing from the snapshot: all others are peers, no source address is known', () => {
    const got = from('node-a', { nodes: C.nodes.filter((n) => n.name !== 'node-a') });
    expect(got.tunnel.peers).toStrictEqual(peers(GOLDEN['node-a'].peers));
    expect(got.routes.map((r) => r.src)).toStrictEqual([undefined, undefined, undefined, undefined, undefined]);
  });

  it('an empty cluster plans only the link', () => {
    expect(from('node-a', { nodes: [] })).toStrictEqual({
      tunnel: { kind: 'wireguard', link: { name: 'sealwg0', listenPort: 51880, mtu: 1440, fwmark: 0x5188 }, peers: [] },
      routes: [],
      skipped: [],
    });
  });

  it('uses listen port and keepalive from the config', () => {
    const got = from('node-b', { config: { listenPort: 51820, persistentKeepalive: 0 } });
    expect(got.tunnel.link.listenPort).toBe(51820);
    expect(got.tunnel.peers).toStrictEqual(peers(GOLDEN['node-b'].peers, 0));
  });
});

describe('plan: MTU from the underlay', () => {
  it.each([
    ['1500 over IPv4', { underlayMtu: 1500, underlayFamily: 4 }, 1440],
    ['9000 jumbo over IPv4', { underlayMtu: 9000, underlayFamily: 4 }, 8940],
    ['1500 over IPv6', { underlayMtu: 1500, underlayFamily: 6 }, 1420],
    ['9000 jumbo over IPv6', { underlayMtu: 9000, underlayFamily: 6 }, 8920],
    ['1500 over IPv4 VXLAN', { underlayMtu: 1500, underlayFamily: 4, overlay: 'vxlan' }, 1390],
  ] as [string, Partial<PlanConfig>, number][])('%s → %i on the link and every route', (_label, cfg, mtu) => {
    const got = from('node-a', { config: cfg });
    expect(got.tunnel.link.mtu).toBe(mtu);
    expect(got.routes).toHaveLength(5);
    expect(got.routes.map((r) => r.mtu)).toStrictEqual([mtu, mtu, mtu, mtu, mtu]);
  });

  it('an underlay too small for the tunnel is an error, not a silent tiny MTU', () => {
    expect(() => from('node-a', { config: { underlayMtu: 600 } })).toThrow(/underlay MTU 600 leaves 540 bytes/);
  });
});

describe('plan: determinism and purity', () => {
  it.each([1, 2, 3, 42, 1234])('shuffled input (seed %i) gives identical output', (seed) => {
    const nodes = shuffled(C.nodes, seed).map((n) => ({ ...n, podCIDRs: shuffled(n.podCIDRs, seed) }));
    const local = shuffled(C.localAddresses['node-e'], seed);
    for (const self of FIXTURE_NAMES) {
      const a = from(self, { nodes, localAddresses: self === 'node-e' ? local : undefined });
      expect(JSON.stringify(a)).toBe(JSON.stringify(golden(self)));
    }
  });

  it('skipped nodes are sorted by name whatever the input order', () => {
    const bad = ['node-z', 'node-m', 'node-f'].map((name) =>
      nodeF({ name, annotations: { [ANNOTATIONS.version]: '9' } }),
    );
    const got = from('node-a', { nodes: [...bad, ...C.nodes] });
    expect(got.skipped.map((s) => s.name)).toStrictEqual(['node-f', 'node-m', 'node-z']);
  });

  it('does not modify its input', () => {
    const deepFreeze = <T>(o: T): T => {
      if (typeof o === 'object' && o !== null) {
        for (const v of Object.values(o)) deepFreeze(v);
        Object.freeze(o);
      }
      return o;
    };
    const nodes = deepFreeze(
      shuffled(C.nodes, 7).map((n) => ({
        ...n,
        annotations: { ...n.annotations },
        podCIDRs: [...n.podCIDRs],
        internalIPs: [...n.internalIPs],
      })),
    );
    const before = JSON.stringify(nodes);
    expect(from('node-a', { nodes, established: deepFreeze({ 'node-b': C.keys['node-b'] }) })).toStrictEqual(
      golden('node-a'),
    );
    expect(JSON.stringify(nodes)).toBe(before);
  });
});

describe('plan: bad nodes are skipped with the right reason, others unaffected', () => {
  const cases: [string, () => RawNode, SkipReason, string][] = [
    [
      'no sealnet annotations yet',
      () => ({
        ...nodeF(),
        annotations: { 'kubeadm.alpha.kubernetes.io/cri-socket': 'unix:///run/containerd/containerd.sock' },
      }),
      'annotations-missing',
      'node node-f has no sealnet.io/ annotations yet',
    ],
    [
      'malformed key',
      () => nodeF({ key: 'not-a-key' }),
      'annotations-invalid',
      'sealnet.io/wireguard-public-key: public key is 9 characters, want 44',
    ],
    [
      '43-character key',
      () => nodeF({ key: keyF.slice(0, 43) }),
      'annotations-invalid',
      'public key is 43 characters, want 44',
    ],
    ['URL-safe key', () => nodeF({ key: 'A'.repeat(42) + '_=' }), 'annotations-invalid', 'URL-safe base64'],
    [
      'low-order key (all zeros)',
      () => nodeF({ key: Buffer.alloc(32).toString('base64') }),
      'annotations-invalid',
      'public key is a low-order point',
    ],
    [
      'low-order key (order 8)',
      () => nodeF({ key: '4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA=' }),
      'annotations-invalid',
      'public key is a low-order point',
    ],
    [
      'key missing',
      () => nodeF({ drop: [ANNOTATIONS.wireguardPublicKey] }),
      'annotations-invalid',
      'sealnet.io/wireguard-public-key is missing',
    ],
    [
      "this node's own key",
      () => nodeF({ key: C.keys['node-a'] }),
      'key-equals-self',
      "node node-f publishes this node's own public key",
    ],
    [
      'missing endpoint',
      () => nodeF({ drop: [ANNOTATIONS.endpoint] }),
      'annotations-invalid',
      'sealnet.io/endpoint is missing',
    ],
    [
      'garbage endpoint',
      () => nodeF({ annotations: { [ANNOTATIONS.endpoint]: 'node-f.example:51880' } }),
      'annotations-invalid',
      'sealnet.io/endpoint is "node-f.example:51880", want "ip:port" or "[ipv6]:port"',
    ],
    [
      'endpoint without port',
      () => nodeF({ annotations: { [ANNOTATIONS.endpoint]: '198.18.0.6' } }),
      'annotations-invalid',
      'sealnet.io/endpoint is "198.18.0.6"',
    ],
    [
      'endpoint port 0',
      () => nodeF({ annotations: { [ANNOTATIONS.endpoint]: '198.18.0.6:0' } }),
      'annotations-invalid',
      'sealnet.io/endpoint is "198.18.0.6:0"',
    ],
    [
      'unknown version',
      () => nodeF({ annotations: { [ANNOTATIONS.version]: '2' } }),
      'version-unsupported',
      'sealnet.io/version is 2, this agent understands only 1',
    ],
    [
      'version missing',
      () => nodeF({ drop: [ANNOTATIONS.version] }),
      'annotations-invalid',
      'sealnet.io/version is missing',
    ],
    [
      'version not a number',
      () => nodeF({ annotations: { [ANNOTATIONS.version]: 'v1' } }),
      'annotations-invalid',
      'sealnet.io/version is "v1", want an integer',
    ],
    [
      'mode mismatch',
      () => nodeF({ annotations: { [ANNOTATIONS.mode]: 'ipsec' } }),
      'mode-mismatch',
      'node node-f runs mode ipsec, this node runs wireguard',
    ],
    [
      'unknown mode',
      () => nodeF({ annotations: { [ANNOTATIONS.mode]: 'gre' } }),
      'annotations-invalid',
      'sealnet.io/mode is "gre"',
    ],
    [
      'bad key epoch',
      () => nodeF({ annotations: { [ANNOTATIONS.keyEpoch]: '-1' } }),
      'annotations-invalid',
      'sealnet.io/key-epoch is "-1"',
    ],
    ['no pod CIDRs', () => nodeF({ podCIDRs: [] }), 'no-pod-cidrs', 'node node-f has no spec.podCIDRs'],
    [
      'garbage pod CIDR',
      () => nodeF({ podCIDRs: ['100.64.6.0/33'] }),
      'annotations-invalid',
      'spec.podCIDRs entry "100.64.6.0/33" is not a CIDR',
    ],
    [
      'pod CIDR inside our own',
      () => nodeF({ podCIDRs: ['100.64.1.128/25'] }),
      'pod-cidr-conflict',
      "node node-f pod CIDR 100.64.1.128/25 overlaps this node's own pod CIDRs",
    ],
    [
      'pod CIDR containing our own',
      () => nodeF({ podCIDRs: ['100.64.6.0/24', '100.64.0.0/16'] }),
      'pod-cidr-conflict',
      "pod CIDR 100.64.0.0/16 overlaps this node's own pod CIDRs",
    ],
  ];

  it.each(cases)('%s', (_label, make, reason, detail) => {
    const bad = make();
    const got = from('node-a', { nodes: [...C.nodes, bad] });
    expect(got.skipped).toHaveLength(1);
    expect(got.skipped[0]!.name).toBe('node-f');
    expect(got.skipped[0]!.reason).toBe(reason);
    expect(got.skipped[0]!.detail).toContain(detail);
    // Key material must not leak into the reason a person reads.
    expect(got.skipped[0]!.detail).not.toContain(keyF);
    const { skipped: _s, ...rest } = got;
    const { skipped: _g, ...want } = golden('node-a');
    expect(rest).toStrictEqual(want);
  });

  it('a valid sixth node is planned (the base of the cases above is good)', () => {
    const got = from('node-a', { nodes: [...C.nodes, nodeF()] });
    expect(got.skipped).toStrictEqual([]);
    expect(got.tunnel.peers.map((p) => p.node)).toStrictEqual(['node-b', 'node-c', 'node-d', 'node-e', 'node-f']);
    expect(got.tunnel.peers[4]).toStrictEqual({
      node: 'node-f',
      publicKey: keyF,
      endpoint: '198.18.0.6:51880',
      allowedIPs: ['100.64.6.0/24'],
      persistentKeepalive: 25,
    });
    expect(got.routes.map((r) => r.dst)).toStrictEqual([
      '100.64.2.0/24',
      '100.64.3.0/24',
      '100.64.4.0/24',
      '100.64.5.0/24',
      '100.64.6.0/24',
      'fd00:64:5::/64',
    ]);
  });

  it('an IPv6 endpoint is bracketed', () => {
    const got = from('node-a', {
      nodes: [...C.nodes, nodeF({ annotations: { [ANNOTATIONS.endpoint]: '[fd00:198:18::6]:51880' } })],
    });
    expect(got.tunnel.peers.find((p) => p.node === 'node-f')?.endpoint).toBe('[fd00:198:18::6]:51880');
  });

  it('an IPv6 endpoint is written in canonical form (as `wg show dump` reports it), so it does not churn', () => {
    const got = from('node-a', {
      nodes: [...C.nodes, nodeF({ annotations: { [ANNOTATIONS.endpoint]: '[FD00:198:18:0:0:0:0:6]:51880' } })],
    });
    expect(got.tunnel.peers.find((p) => p.node === 'node-f')?.endpoint).toBe('[fd00:198:18::6]:51880');
  });

  it('many bad nodes at once: each skipped for its own reason, good ones all planned', () => {
    const bad = [
      nodeF({ name: 'node-f', key: 'garbage' }),
      nodeF({ name: 'node-g', annotations: { [ANNOTATIONS.version]: '7' }, podCIDRs: ['100.64.7.0/24'] }),
      nodeF({ name: 'node-h', podCIDRs: [] }),
    ];
    const got = from('node-c', { nodes: [...bad, ...C.nodes] });
    expect(got.skipped.map((s) => [s.name, s.reason])).toStrictEqual([
      ['node-f', 'annotations-invalid'],
      ['node-g', 'version-unsupported'],
      ['node-h', 'no-pod-cidrs'],
    ]);
    expect(got.tunnel.peers).toStrictEqual(golden('node-c').tunnel.peers);
    expect(got.routes).toStrictEqual(golden('node-c').routes);
  });
});

describe('plan: conflicts between remote nodes', () => {
  const withoutB = (self: FixtureName): { peers: DesiredPeer[]; routes: DesiredRoute[] } => ({
    peers: golden(self).tunnel.peers.filter((p) => p.node !== 'node-b'),
    routes: golden(self).routes.filter((r) => r.dst !== '100.64.2.0/24'),
  });

  it('two nodes with one key, neither established: both skipped', () => {
    const got = from('node-a', { nodes: [...C.nodes, nodeF({ key: C.keys['node-b'] })] });
    expect(got.skipped).toStrictEqual([
      { name: 'node-b', reason: 'duplicate-key', detail: 'nodes node-b and node-f publish the same public key' },
      { name: 'node-f', reason: 'duplicate-key', detail: 'nodes node-b and node-f publish the same public key' },
    ]);
    expect({ peers: got.tunnel.peers, routes: got.routes }).toStrictEqual(withoutB('node-a'));
  });

  it('two nodes with one key: the established owner keeps it, the newcomer is skipped', () => {
    const got = from('node-a', {
      nodes: [...C.nodes, nodeF({ key: C.keys['node-b'] })],
      established: { 'node-b': C.keys['node-b'], 'node-c': C.keys['node-c'] },
    });
    expect(got.skipped).toStrictEqual([
      {
        name: 'node-f',
        reason: 'duplicate-key',
        detail: 'nodes node-b and node-f publish the same public key; node-b had it first',
      },
    ]);
    expect(got.tunnel.peers).toStrictEqual(golden('node-a').tunnel.peers);
    expect(got.routes).toStrictEqual(golden('node-a').routes);
  });

  it('established under a different key does not count as owning the copied key', () => {
    const got = from('node-a', {
      nodes: [...C.nodes, nodeF({ key: C.keys['node-b'] })],
      established: { 'node-b': keyG },
    });
    expect(got.skipped.map((s) => s.name)).toStrictEqual(['node-b', 'node-f']);
  });

  it('three nodes with one key, one established: the two copies are skipped', () => {
    const nodes = [
      ...C.nodes,
      nodeF({ key: C.keys['node-b'] }),
      nodeF({ name: 'node-g', key: C.keys['node-b'], podCIDRs: ['100.64.7.0/24'] }),
    ];
    const got = from('node-d', { nodes, established: { 'node-b': C.keys['node-b'] } });
    expect(got.skipped.map((s) => [s.name, s.reason])).toStrictEqual([
      ['node-f', 'duplicate-key'],
      ['node-g', 'duplicate-key'],
    ]);
    expect(got.tunnel.peers).toStrictEqual(golden('node-d').tunnel.peers);
  });

  it('overlapping pod CIDRs between two remote nodes, neither established: both skipped', () => {
    const got = from('node-a', { nodes: [...C.nodes, nodeF({ podCIDRs: ['100.64.2.64/26'] })] });
    expect(got.skipped).toStrictEqual([
      { name: 'node-b', reason: 'pod-cidr-conflict', detail: 'nodes node-b and node-f have overlapping pod CIDRs' },
      { name: 'node-f', reason: 'pod-cidr-conflict', detail: 'nodes node-b and node-f have overlapping pod CIDRs' },
    ]);
    expect({ peers: got.tunnel.peers, routes: got.routes }).toStrictEqual(withoutB('node-a'));
  });

  it('overlapping pod CIDRs: the established node keeps them', () => {
    const got = from('node-e', {
      nodes: [...C.nodes, nodeF({ podCIDRs: ['100.64.2.128/25'] })],
      established: { 'node-b': C.keys['node-b'] },
    });
    expect(got.skipped).toStrictEqual([
      {
        name: 'node-f',
        reason: 'pod-cidr-conflict',
        detail: 'nodes node-b and node-f have overlapping pod CIDRs; node-b had it first',
      },
    ]);
    expect(got.tunnel.peers).toStrictEqual(golden('node-e').tunnel.peers);
    expect(got.routes).toStrictEqual(golden('node-e').routes);
  });

  it('an IPv6 overlap is a conflict; an IPv4 and an IPv6 CIDR never overlap', () => {
    const v6clash = from('node-a', { nodes: [...C.nodes, nodeF({ podCIDRs: ['100.64.6.0/24', 'fd00:64::/32'] })] });
    expect(v6clash.skipped.map((s) => [s.name, s.reason])).toStrictEqual([
      ['node-e', 'pod-cidr-conflict'],
      ['node-f', 'pod-cidr-conflict'],
    ]);
    const v6ok = from('node-a', { nodes: [...C.nodes, nodeF({ podCIDRs: ['100.64.6.0/24', 'fd00:64:6::/64'] })] });
    expect(v6ok.skipped).toStrictEqual([]);
  });
});

describe('plan: host source address', () => {
  it('is the local address inside our own pod CIDR, per family', () => {
    const dual = nodeF({ podCIDRs: ['100.64.6.0/24', 'fd00:64:6::/64'] });
    const got = from('node-e', { nodes: [...C.nodes, dual] });
    expect(got.routes.map((r) => [r.dst, r.src])).toStrictEqual([
      ['100.64.1.0/24', '100.64.5.1'],
      ['100.64.2.0/24', '100.64.5.1'],
      ['100.64.3.0/24', '100.64.5.1'],
      ['100.64.4.0/24', '100.64.5.1'],
      ['100.64.6.0/24', '100.64.5.1'],
      ['fd00:64:6::/64', 'fd00:64:5::1'],
    ]);
  });

  it('is absent when no local address is inside our pod CIDR', () => {
    const got = from('node-a', { localAddresses: ['127.0.0.1', '198.18.0.1', '100.64.2.1'] });
    expect(got.routes.map((r) => r.src)).toStrictEqual([undefined, undefined, undefined, undefined, undefined]);
  });

  it('is chosen the same way whatever order the addresses come in', () => {
    const a = from('node-a', { localAddresses: ['100.64.1.9', '198.18.0.1', '100.64.1.1'] });
    const b = from('node-a', { localAddresses: ['100.64.1.1', '100.64.1.9', '198.18.0.1'] });
    expect(a.routes[0]!.src).toBe('100.64.1.1');
    expect(b.routes).toStrictEqual(a.routes);
  });
});
