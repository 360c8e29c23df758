import { beforeAll, describe, expect, it } from '@jest/globals';
import { fingerprint, sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import { fixtureCluster, fixtureKey, type FixtureCluster } from '../../test/fixtures.js';
import { decodeNode } from '../plan/annotations.js';
import { validateConfig } from '../agent/config.js';
import { ANNOTATIONS } from '../../common/constants.js';
import { diffPeers } from '../plan/diff.js';
import type { DesiredPeer, RawNode } from '../ports/model.js';
import { plan, type PlanConfig } from '../plan/planner.js';
import type { ObservedPeer } from '../ports/index.js';
import { handshakesByNode, rotationReports } from './wireguard.js';
import {
  decodeRotateRequest,
  decodeRotationReports,
  decodeRotationStatus,
  encodeRotateRequest,
  encodeRotationReports,
  encodeRotationStatus,
} from '../plan/rotation-codec.js';
import { planSteering } from '../plan/steering.js';

// Rotation pieces that are pure: the annotation codec, the planner with next keys (from a peer's
// and from the rotating node's point of view), steering with two peers per node, the order of
// peer changes, and the reports a node publishes.

let C: FixtureCluster;
let NB: PublicKey; // node-b's next key
let NA: PublicKey; // node-a's own next key
beforeAll(async () => {
  await sodiumReady();
  C = fixtureCluster();
  NB = fixtureKey(12);
  NA = fixtureKey(11);
});

const WG: PlanConfig = {
  mode: 'wireguard',
  listenPort: 51880,
  persistentKeepalive: 25,
  underlayMtu: 1500,
  underlayFamily: 4,
};
const T = new Date('2026-02-03T04:05:06.000Z');

function withAnn(nodes: readonly RawNode[], name: string, ann: Record<string, string | undefined>): RawNode[] {
  return nodes.map((n) => {
    if (n.name !== name) return n;
    const a: Record<string, string> = { ...n.annotations };
    for (const [k, v] of Object.entries(ann)) {
      if (v === undefined) delete a[k];
      else a[k] = v;
    }
    return { ...n, annotations: a };
  });
}

function rotating(phase: 'staging' | 'moving' | 'grace', next?: string): Record<string, string> {
  return {
    [ANNOTATIONS.rotation]: encodeRotationStatus({ phase, id: 'r-b', since: T, epoch: 2 }),
    ...(next !== undefined
      ? { [ANNOTATIONS.wireguardNextPublicKey]: next, [ANNOTATIONS.nextEndpoint]: '198.18.0.2:51881' }
      : {}),
  };
}

describe('rotation annotations codec', () => {
  it('round-trips a request, a status and reports', () => {
    expect(decodeRotateRequest(encodeRotateRequest({ id: 'r-x1', requestedAt: T }))).toEqual({
      ok: true,
      request: { id: 'r-x1', requestedAt: T },
    });
    const st = {
      phase: 'grace' as const,
      id: 'r-1',
      since: T,
      epoch: 3,
      graceUntil: T,
      last: { id: 'r-0', completedAt: T, epoch: 2, lagging: ['n3'] },
    };
    expect(decodeRotationStatus(encodeRotationStatus(st))).toEqual(st);
    expect(decodeRotationStatus(encodeRotationStatus({ phase: 'idle' }))).toEqual({ phase: 'idle' });
    const rep = {
      n3: { fingerprint: 'aaaaaaaaaaaaaaaa', state: 'moved' as const },
      n2: { fingerprint: 'bbbbbbbbbbbbbbbb', state: 'staged' as const },
    };
    expect(encodeRotationReports(rep)).toBe('{"n2":"bbbbbbbbbbbbbbbb:staged","n3":"aaaaaaaaaaaaaaaa:moved"}');
    expect(decodeRotationReports(encodeRotationReports(rep))).toEqual(rep);
  });

  it.each([
    ['not JSON', '{'],
    ['an id with a space', JSON.stringify({ id: 'r 1', requestedAt: T.toISOString() })],
    ['no time', JSON.stringify({ id: 'r-1' })],
  ])('rejects a request that is %s', (_n, text) => {
    expect(decodeRotateRequest(text).ok).toBe(false);
  });

  it('treats a malformed status as no status, and drops malformed report entries', () => {
    expect(decodeRotationStatus('{"phase":"dancing"}')).toBeUndefined();
    expect(decodeRotationStatus('{"phase":"moving"}')).toBeUndefined();
    expect(
      decodeRotationReports(
        '{"n2":"zz:moved","N3":"aaaaaaaaaaaaaaaa:moved","n4":"aaaaaaaaaaaaaaaa:eaten","n5":"aaaaaaaaaaaaaaaa:staged"}',
      ),
    ).toEqual({ n5: { fingerprint: 'aaaaaaaaaaaaaaaa', state: 'staged' } });
  });

  it('decodeNode: a node staging a next key; a malformed next key or one equal to its key is ignored', () => {
    const b = (ann: Record<string, string | undefined>): ReturnType<typeof decodeNode> =>
      decodeNode(withAnn(C.nodes, 'node-b', ann).find((n) => n.name === 'node-b')!);
    const ok = b(rotating('staging', NB));
    expect(ok.ok && ok.node.next).toEqual({ publicKey: NB, endpointHost: '198.18.0.2', endpointPort: 51881 });
    expect(ok.ok && ok.node.rotationPhase).toBe('staging');
    const grace = b(rotating('grace', NB));
    expect(grace.ok && grace.node.next).toBeUndefined();
    expect(grace.ok && grace.node.rotationPhase).toBe('grace');
    const shortKey = b({
      ...rotating('moving'),
      [ANNOTATIONS.wireguardNextPublicKey]: 'AAAA',
      [ANNOTATIONS.nextEndpoint]: '198.18.0.2:51881',
    });
    expect(shortKey.ok && shortKey.node.next).toBeUndefined();
    const same = b({
      ...rotating('moving'),
      [ANNOTATIONS.wireguardNextPublicKey]: C.keys['node-b'],
      [ANNOTATIONS.nextEndpoint]: '198.18.0.2:51881',
    });
    expect(same.ok && same.node.next).toBeUndefined();
    // The rest of the node is untouched: the working tunnel stays.
    expect(shortKey.ok && shortKey.node.wireguardPublicKey).toBe(C.keys['node-b']);
  });
});

describe('plan: a peer rotating (node-b), seen from node-a', () => {
  const from = (nodes: readonly RawNode[], handshakes: string[] = []): ReturnType<typeof plan> =>
    plan({
      nodes,
      self: { name: 'node-a', wireguardPublicKey: C.keys['node-a'], localAddresses: C.localAddresses['node-a'] },
      config: WG,
      handshakes: new Set(handshakes),
    });
  const peersOfB = (d: ReturnType<typeof plan>): DesiredPeer[] => d.tunnel.peers.filter((p) => p.node === 'node-b');

  it('idle: one peer, as before (the goldens of planner.test.ts stay exact)', () => {
    const d = from(C.nodes);
    expect(peersOfB(d)).toHaveLength(1);
    expect('following' in d).toBe(false);
    expect('incoming' in d).toBe(false);
  });

  it.each([
    ['staging', [], 'current'],
    ['staging', ['next'], 'current'],
    ['moving', [], 'current'],
    ['moving', ['next'], 'next'],
  ] as ['staging' | 'moving', string[], 'current' | 'next'][])(
    '%s, handshakes with %j: the pod CIDR belongs to the %s key',
    (phase, hs, owner) => {
      const d = from(
        withAnn(C.nodes, 'node-b', rotating(phase, NB)),
        hs.map(() => NB),
      );
      const cidr = ['100.64.2.0/24'];
      expect(peersOfB(d)).toStrictEqual([
        {
          node: 'node-b',
          publicKey: C.keys['node-b'],
          endpoint: '198.18.0.2:51880',
          allowedIPs: owner === 'current' ? cidr : [],
          persistentKeepalive: 25,
        },
        {
          node: 'node-b',
          publicKey: NB,
          endpoint: '198.18.0.2:51881',
          allowedIPs: owner === 'next' ? cidr : [],
          persistentKeepalive: 25,
          next: true,
        },
      ]);
      expect(d.tunnel.following).toStrictEqual([{ node: 'node-b', publicKey: NB, podCIDRs: cidr }]);
      // Routes do not care which key: they name our link.
      expect(d.routes.find((r) => r.dst === '100.64.2.0/24')?.dev).toBe('sealwg0');
    },
  );

  it('a staged next key gets a keepalive even when keepalives are off', () => {
    const d = plan({
      nodes: withAnn(C.nodes, 'node-b', rotating('staging', NB)),
      self: { name: 'node-a', wireguardPublicKey: C.keys['node-a'], localAddresses: [] },
      config: { ...WG, persistentKeepalive: 0 },
    });
    expect(peersOfB(d).map((p) => p.persistentKeepalive)).toEqual([0, 25]);
  });

  it('grace: node-b publishes the new key as its key; it is followed (reported) until node-b is idle', () => {
    const nodes = withAnn(C.nodes, 'node-b', {
      ...rotating('grace'),
      [ANNOTATIONS.wireguardPublicKey]: NB,
      [ANNOTATIONS.endpoint]: '198.18.0.2:51881',
    });
    const d = from(nodes);
    expect(peersOfB(d)).toStrictEqual([
      {
        node: 'node-b',
        publicKey: NB,
        endpoint: '198.18.0.2:51881',
        allowedIPs: ['100.64.2.0/24'],
        persistentKeepalive: 25,
      },
    ]);
    expect(d.tunnel.following).toStrictEqual([{ node: 'node-b', publicKey: NB, podCIDRs: ['100.64.2.0/24'] }]);
  });

  it.each([
    ["another node's key", (): string => C.keys['node-c']],
    ["this node's own key", (): string => C.keys['node-a']],
    ["another rotating node's next key", (): string => NA],
  ])('ignores a next key equal to %s', (_n, key) => {
    let nodes = withAnn(C.nodes, 'node-b', rotating('moving', key()));
    nodes = withAnn(nodes, 'node-d', {
      [ANNOTATIONS.rotation]: encodeRotationStatus({ phase: 'staging', id: 'r-d', since: T, epoch: 4 }),
      [ANNOTATIONS.wireguardNextPublicKey]: NA,
      [ANNOTATIONS.nextEndpoint]: '198.18.0.4:51881',
    });
    const d = from(nodes, [key()]);
    expect(peersOfB(d)).toHaveLength(1);
    expect(peersOfB(d)[0]!.allowedIPs).toEqual(['100.64.2.0/24']);
  });
});

describe('plan: this node rotating (node-a)', () => {
  const self = (via: 'all' | string[]) => ({
    name: 'node-a',
    wireguardPublicKey: C.keys['node-a'],
    localAddresses: C.localAddresses['node-a'],
    link: { name: 'sealwg0', listenPort: 51880 },
    rotation: { link: { name: 'sealwg1', listenPort: 51881 }, publicKey: NA, viaIncoming: via },
  });

  it('staging: the new link with the same peers, routes still on the old link', () => {
    const d = plan({ nodes: C.nodes, self: self([]), config: WG });
    expect(d.tunnel.incoming).toStrictEqual({
      link: { name: 'sealwg1', listenPort: 51881, mtu: 1440, fwmark: 0x5188 },
      peers: d.tunnel.peers,
    });
    expect(new Set(d.routes.map((r) => r.dev))).toEqual(new Set(['sealwg0']));
  });

  it('moving on: every route into the new link', () => {
    const d = plan({ nodes: C.nodes, self: self('all'), config: WG });
    expect(new Set(d.routes.map((r) => r.dev))).toEqual(new Set(['sealwg1']));
    expect(d.tunnel.link.name).toBe('sealwg0');
  });

  it('idle on slot 1: link and routes are sealwg1 on port 51881', () => {
    const d = plan({
      nodes: C.nodes,
      self: {
        name: 'node-a',
        wireguardPublicKey: C.keys['node-a'],
        localAddresses: [],
        link: { name: 'sealwg1', listenPort: 51881 },
      },
      config: WG,
    });
    expect(d.tunnel.link).toStrictEqual({ name: 'sealwg1', listenPort: 51881, mtu: 1440, fwmark: 0x5188 });
    expect(new Set(d.routes.map((r) => r.dev))).toEqual(new Set(['sealwg1']));
  });

  it('a remote node publishing our next key is a key-equals-self skip', () => {
    const d = plan({
      nodes: withAnn(C.nodes, 'node-c', { [ANNOTATIONS.wireguardPublicKey]: NA }),
      self: self([]),
      config: WG,
    });
    expect(d.skipped.map((s) => [s.name, s.reason])).toEqual([['node-c', 'key-equals-self']]);
  });
});

describe('diffPeers: a prefix moving between two peers is gained before it is given up', () => {
  const obs = (publicKey: string, allowedIPs: string[]): ObservedPeer => ({
    publicKey: publicKey as PublicKey,
    endpoint: '198.18.0.2:51880',
    allowedIPs,
    latestHandshake: 1,
    rxBytes: 0,
    txBytes: 0,
    persistentKeepalive: 25,
  });
  const want = (publicKey: string, allowedIPs: string[], next?: true): DesiredPeer => ({
    node: 'node-b',
    publicKey: publicKey as PublicKey,
    endpoint: '198.18.0.2:51880',
    allowedIPs,
    persistentKeepalive: 25,
    ...(next ? { next } : {}),
  });

  it('the peer gaining the CIDR comes first, whatever the desired order', () => {
    const changes = diffPeers(
      [want(C.keys['node-b'], []), want(NB, ['100.64.2.0/24'], true)],
      [obs(C.keys['node-b'], ['100.64.2.0/24']), obs(NB, [])],
      { prune: true },
    );
    expect(changes.map((c) => [c.op, c.publicKey])).toEqual([
      ['set', NB],
      ['set', C.keys['node-b']],
    ]);
  });

  it('and back (a rotation rolled back by the peer): again the gaining one first', () => {
    const changes = diffPeers(
      [want(C.keys['node-b'], ['100.64.2.0/24']), want(NB, [], true)],
      [obs(C.keys['node-b'], []), obs(NB, ['100.64.2.0/24'])],
      { prune: true },
    );
    expect(changes.map((c) => c.publicKey)).toEqual([C.keys['node-b'], NB]);
  });
});

describe('planSteering with two peers for one node', () => {
  const run = (owner: 'current' | 'next', programmed: 'current' | 'next'): string => {
    const peers: DesiredPeer[] = [
      {
        node: 'node-b',
        publicKey: C.keys['node-b'],
        endpoint: 'x:1',
        allowedIPs: owner === 'current' ? ['100.64.2.0/24'] : [],
        persistentKeepalive: 25,
      },
      {
        node: 'node-b',
        publicKey: NB,
        endpoint: 'x:2',
        allowedIPs: owner === 'next' ? ['100.64.2.0/24'] : [],
        persistentKeepalive: 25,
        next: true,
      },
    ];
    const observed: ObservedPeer[] = [
      {
        publicKey: C.keys['node-b'],
        endpoint: undefined,
        allowedIPs: programmed === 'current' ? ['100.64.2.0/24'] : [],
        latestHandshake: 0,
        rxBytes: 0,
        txBytes: 0,
        persistentKeepalive: 25,
      },
      {
        publicKey: NB,
        endpoint: undefined,
        allowedIPs: programmed === 'next' ? ['100.64.2.0/24'] : [],
        latestHandshake: 0,
        rxBytes: 0,
        txBytes: 0,
        persistentKeepalive: 25,
      },
    ];
    const e = planSteering({
      self: 'node-a',
      clusterCidrs: [],
      nodes: C.nodes,
      desiredPeers: peers,
      observedPeers: observed,
      target: { action: 'redirect', ifindex: 7 },
      nodeToNode: false,
    });
    return e.find((x) => x.cidr === '100.64.2.0/24')!.state;
  };
  it('is ready when the peer meant to own the prefix owns it, whichever key that is', () => {
    expect(run('current', 'current')).toBe('ready');
    expect(run('next', 'next')).toBe('ready');
    expect(run('next', 'current')).toBe('not-ready');
    expect(run('current', 'next')).toBe('not-ready');
  });
});

describe("rotationReports: what a node says about others' next keys", () => {
  const p = (publicKey: string, allowedIPs: string[]): ObservedPeer => ({
    publicKey: publicKey as PublicKey,
    endpoint: undefined,
    allowedIPs,
    latestHandshake: 0,
    rxBytes: 0,
    txBytes: 0,
    persistentKeepalive: 25,
  });
  const follow = () => [{ node: 'node-b', publicKey: NB, podCIDRs: ['100.64.2.0/24'] }];

  it('staged when every link holds the key, moved when on every link it owns the CIDRs', () => {
    expect(rotationReports(follow(), [[p(NB, [])], [p(NB, [])]])).toEqual({
      'node-b': { fingerprint: fingerprint(NB), state: 'staged' },
    });
    expect(rotationReports(follow(), [[p(NB, ['100.64.2.0/24'])], [p(NB, ['100.64.2.0/24'])]])).toEqual({
      'node-b': { fingerprint: fingerprint(NB), state: 'moved' },
    });
    // One link behind: only staged.
    expect(rotationReports(follow(), [[p(NB, ['100.64.2.0/24'])], [p(NB, [])]])['node-b']?.state).toBe('staged');
    // A link without the key: nothing to report yet.
    expect(rotationReports(follow(), [[p(NB, [])], []])).toEqual({});
  });

  it('handshakesByNode counts a node when any of its desired keys completed a handshake', () => {
    const desired: DesiredPeer[] = [
      { node: 'node-b', publicKey: C.keys['node-b'], endpoint: 'x:1', allowedIPs: [], persistentKeepalive: 25 },
      { node: 'node-b', publicKey: NB, endpoint: 'x:2', allowedIPs: [], persistentKeepalive: 25, next: true },
      { node: 'node-c', publicKey: C.keys['node-c'], endpoint: 'x:3', allowedIPs: [], persistentKeepalive: 25 },
    ];
    const seen = [{ ...p(NB, []), latestHandshake: 5 }, p(C.keys['node-c'], [])];
    expect([...handshakesByNode(desired, seen)]).toEqual(['node-b']);
  });
});

describe('config: the rotation block', () => {
  const base = { nodeName: 'node-a' };
  it('defaults: 30 s grace, 15 s peer timeout, 30 days maximum age, one automatic rotation at a time', () => {
    expect(validateConfig(base).rotation).toStrictEqual({
      graceSeconds: 30,
      peerTimeoutSeconds: 15,
      maxKeyAgeSeconds: 2592000,
      maxConcurrentAuto: 1,
    });
  });
  it.each([
    [{ rotation: { graceSeconds: -1 } }, 'rotation.graceSeconds must be an integer from 0 to 86400'],
    [{ rotation: { maxKeyAgeSeconds: 60 } }, 'rotation.maxKeyAgeSeconds must be 0 (off) or at least 3600'],
    [{ rotation: { gracePeriod: 3 } }, 'rotation.gracePeriod is not a known field'],
    [{ wireguard: { listenPort: 65535 } }, 'wireguard.listenPort must be at most 65534'],
  ])('rejects %j', (over, msg) => {
    expect(() => validateConfig({ ...base, ...over })).toThrow(msg);
  });
  it('0 turns automatic rotation off', () => {
    expect(validateConfig({ ...base, rotation: { maxKeyAgeSeconds: 0 } }).rotation.maxKeyAgeSeconds).toBe(0);
  });
});
