import { beforeAll, describe, expect, it } from '@jest/globals';
import { sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import { fixtureKey } from '../../test/fixtures.js';
import { diffPeers, diffRoutes } from './diff.js';
import type { DesiredPeer, DesiredRoute } from '../ports/model.js';
import type { ObservedPeer, ObservedRoute } from '../ports/index.js';

let K1: PublicKey;
let K2: PublicKey;
let K3: PublicKey;
beforeAll(async () => {
  await sodiumReady();
  [K1, K2, K3] = [fixtureKey(11), fixtureKey(12), fixtureKey(13)];
});

const desiredPeer = (publicKey: PublicKey, over: Partial<DesiredPeer> = {}): DesiredPeer => ({
  node: 'node-x',
  publicKey,
  endpoint: '198.18.0.2:51880',
  allowedIPs: ['100.64.2.0/24'],
  persistentKeepalive: 25,
  ...over,
});

const observedPeer = (publicKey: PublicKey, over: Partial<ObservedPeer> = {}): ObservedPeer => ({
  publicKey,
  endpoint: '198.18.0.2:51880',
  allowedIPs: ['100.64.2.0/24'],
  latestHandshake: 1700000000,
  rxBytes: 123,
  txBytes: 456,
  persistentKeepalive: 25,
  ...over,
});

describe('diffPeers', () => {
  it('nothing to do when the kernel matches (handshake and counters do not matter)', () => {
    expect(
      diffPeers([desiredPeer(K1)], [observedPeer(K1, { latestHandshake: 0, rxBytes: 0 })], { prune: true }),
    ).toStrictEqual([]);
  });

  it('adds a missing peer with all its settings', () => {
    expect(diffPeers([desiredPeer(K1)], [], { prune: true })).toStrictEqual([
      {
        op: 'set',
        publicKey: K1,
        endpoint: '198.18.0.2:51880',
        allowedIPs: ['100.64.2.0/24'],
        persistentKeepalive: 25,
      },
    ]);
  });

  it.each([
    ['endpoint', { endpoint: '198.18.0.9:51880' }],
    ['endpoint unknown to the kernel', { endpoint: undefined }],
    ['allowed IPs', { allowedIPs: ['100.64.9.0/24'] }],
    ['an extra allowed IP', { allowedIPs: ['100.64.2.0/24', '100.64.9.0/24'] }],
    ['no allowed IPs', { allowedIPs: [] }],
    ['keepalive', { persistentKeepalive: 0 }],
  ] as [string, Partial<ObservedPeer>][])('re-sets a peer whose %s differs', (_label, drift) => {
    expect(diffPeers([desiredPeer(K1)], [observedPeer(K1, drift)], { prune: true })).toStrictEqual([
      {
        op: 'set',
        publicKey: K1,
        endpoint: '198.18.0.2:51880',
        allowedIPs: ['100.64.2.0/24'],
        persistentKeepalive: 25,
      },
    ]);
  });

  it('sends only the changed peers', () => {
    const desired = [desiredPeer(K1), desiredPeer(K2, { allowedIPs: ['100.64.3.0/24'], endpoint: '198.18.0.3:51880' })];
    const observed = [
      observedPeer(K1),
      observedPeer(K2, { allowedIPs: ['100.64.3.0/24'], endpoint: '198.18.0.33:51880' }),
    ];
    const got = diffPeers(desired, observed, { prune: true });
    expect(got.map((c) => [c.op, c.publicKey])).toStrictEqual([['set', K2]]);
  });

  it('does not prune before the store synced', () => {
    expect(diffPeers([desiredPeer(K1)], [observedPeer(K1), observedPeer(K2)], { prune: false })).toStrictEqual([]);
  });

  it('prunes peers nobody wants after sync', () => {
    expect(diffPeers([desiredPeer(K1)], [observedPeer(K1), observedPeer(K2)], { prune: true })).toStrictEqual([
      { op: 'remove', publicKey: K2 },
    ]);
  });

  it('a key change sets the new peer before removing the old one', () => {
    // Node x rotated from K1 to K2: same allowed IPs, new key.
    const got = diffPeers([desiredPeer(K2)], [observedPeer(K3, { allowedIPs: ['100.64.3.0/24'] }), observedPeer(K1)], {
      prune: true,
    });
    expect(got).toStrictEqual([
      {
        op: 'set',
        publicKey: K2,
        endpoint: '198.18.0.2:51880',
        allowedIPs: ['100.64.2.0/24'],
        persistentKeepalive: 25,
      },
      { op: 'remove', publicKey: K3 },
      { op: 'remove', publicKey: K1 },
    ]);
  });

  it('every set comes before every remove, whatever the input order', () => {
    const desired = [desiredPeer(K1), desiredPeer(K3, { allowedIPs: ['100.64.3.0/24'] })];
    const got = diffPeers(desired, [observedPeer(K2)], { prune: true });
    expect(got.map((c) => c.op)).toStrictEqual(['set', 'set', 'remove']);
  });
});

const desiredRoute = (dst: string, over: Partial<DesiredRoute> = {}): DesiredRoute => ({
  dst,
  dev: 'sealwg0',
  mtu: 1440,
  src: '100.64.1.1',
  table: 5188,
  ...over,
});
const observedRoute = (dst: string, over: Partial<ObservedRoute> = {}): ObservedRoute => ({
  dst,
  dev: 'sealwg0',
  mtu: 1440,
  src: '100.64.1.1',
  table: 5188,
  protocol: 206,
  ...over,
});

describe('diffRoutes', () => {
  it('nothing to do when the kernel matches', () => {
    expect(
      diffRoutes([desiredRoute('100.64.2.0/24')], [observedRoute('100.64.2.0/24')], { prune: true }),
    ).toStrictEqual([]);
  });

  it('a route without a source matches an observed route without one', () => {
    expect(
      diffRoutes(
        [desiredRoute('fd00:64:5::/64', { src: undefined })],
        [observedRoute('fd00:64:5::/64', { src: undefined })],
        { prune: true },
      ),
    ).toStrictEqual([]);
  });

  it.each([
    ['device', { dev: 'eth0' }],
    ['MTU', { mtu: 1420 }],
    ['missing MTU', { mtu: undefined }],
    ['source', { src: '100.64.1.2' }],
    ['missing source', { src: undefined }],
    ['missing device', { dev: undefined }],
  ] as [string, Partial<ObservedRoute>][])('replaces a route whose %s differs', (_label, drift) => {
    expect(
      diffRoutes([desiredRoute('100.64.2.0/24')], [observedRoute('100.64.2.0/24', drift)], { prune: true }),
    ).toStrictEqual([{ op: 'replace', route: desiredRoute('100.64.2.0/24') }]);
  });

  it('the same dst in another table is a different route', () => {
    const got = diffRoutes([desiredRoute('100.64.2.0/24')], [observedRoute('100.64.2.0/24', { table: 254 })], {
      prune: true,
    });
    expect(got).toStrictEqual([
      { op: 'replace', route: desiredRoute('100.64.2.0/24') },
      { op: 'delete', route: observedRoute('100.64.2.0/24', { table: 254 }) },
    ]);
  });

  it('does not delete before the store synced', () => {
    expect(diffRoutes([], [observedRoute('100.64.9.0/24')], { prune: false })).toStrictEqual([]);
  });

  it('replaces before it deletes', () => {
    const got = diffRoutes(
      [desiredRoute('100.64.3.0/24'), desiredRoute('100.64.4.0/24')],
      [observedRoute('100.64.2.0/24'), observedRoute('100.64.4.0/24')],
      { prune: true },
    );
    expect(got).toStrictEqual([
      { op: 'replace', route: desiredRoute('100.64.3.0/24') },
      { op: 'delete', route: observedRoute('100.64.2.0/24') },
    ]);
  });
});
