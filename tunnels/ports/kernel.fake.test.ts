import { beforeAll, describe, expect, it } from '@jest/globals';
import { sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import type { RawNode } from './model.js';
import { createFakeKernel, MAIN_TABLE, MemoryNodeStore } from './kernel.fake.js';
import { fixtureKey } from '../../test/fixtures.js';

// The fakes' claims (kernel semantics, refused calls) are what the reconciler tests lean on.

let K1: PublicKey;
let K2: PublicKey;
let K3: PublicKey;
beforeAll(async () => {
  await sodiumReady();
  [K1, K2, K3] = [fixtureKey(31), fixtureKey(32), fixtureKey(33)];
});

const link = { name: 'sealwg0', privateKeyFile: '/k', listenPort: 51880, fwmark: 0x5188 };

describe('FakeWireGuard', () => {
  it('creates the link once, then adopts it; the link shows up in routing', async () => {
    const { wg, routing, journal } = createFakeKernel();
    expect((await wg.ensureLink({ ...link, publicKey: K1 })).created).toBe(true);
    expect((await wg.ensureLink({ ...link, publicKey: K1 })).created).toBe(false);
    expect(journal.entries).toStrictEqual([{ op: 'wg.link_create', target: 'sealwg0' }]);
    expect(await routing.getLink('sealwg0')).toMatchObject({ mtu: 1420, up: true });
    expect(wg.privateKeyLoads).toBe(1);
    expect(wg.sessionResets).toBe(0);
  });

  it('a different private key is a session reset; a port change is a mutation', async () => {
    const { wg } = createFakeKernel();
    await wg.ensureLink({ ...link, publicKey: K1 });
    await wg.ensureLink({ ...link, publicKey: K2, listenPort: 51820 });
    expect(wg.sessionResets).toBe(1);
    expect(wg.mutations).toBe(3);
    expect((await wg.show('sealwg0'))!.iface).toStrictEqual({ publicKey: K2, listenPort: 51820, fwmark: 0x5188 });
  });

  it('moves an allowed IP to the peer set last, as the kernel does', async () => {
    const { wg } = createFakeKernel();
    await wg.ensureLink({ ...link, publicKey: K1 });
    await wg.applyPeers('sealwg0', [
      {
        op: 'set',
        publicKey: K2,
        endpoint: '198.18.0.2:51880',
        allowedIPs: ['100.64.2.0/24', '100.64.9.0/24'],
        persistentKeepalive: 25,
      },
    ]);
    await wg.applyPeers('sealwg0', [
      { op: 'set', publicKey: K3, endpoint: '[FD00::3]:51880', allowedIPs: ['100.64.2.0/24'], persistentKeepalive: 0 },
    ]);
    expect(wg.peersOf('sealwg0')).toStrictEqual([
      { publicKey: K2, endpoint: '198.18.0.2:51880', allowedIPs: ['100.64.9.0/24'], persistentKeepalive: 25 },
      { publicKey: K3, endpoint: '[fd00::3]:51880', allowedIPs: ['100.64.2.0/24'], persistentKeepalive: 0 },
    ]);
    expect(wg.ownershipHistory.map((m) => Object.fromEntries(m))).toStrictEqual([
      { '100.64.2.0/24': K2, '100.64.9.0/24': K2 },
      { '100.64.2.0/24': K3, '100.64.9.0/24': K2 },
    ]);
  });

  it('refuses what wg would refuse and what the agent must not do', async () => {
    const { wg } = createFakeKernel();
    await expect(wg.applyPeers('sealwg0', [{ op: 'remove', publicKey: K1 }])).rejects.toThrow('no such device sealwg0');
    await wg.ensureLink({ ...link, publicKey: K1 });
    await expect(wg.applyPeers('sealwg0', [])).rejects.toThrow('no changes');
    await expect(
      wg.applyPeers('sealwg0', [
        {
          op: 'set',
          publicKey: K2,
          endpoint: '198.18.0.2:51880',
          allowedIPs: ['100.64.2.1/24'],
          persistentKeepalive: 0,
        },
      ]),
    ).rejects.toThrow('not canonical');
    await expect(
      wg.applyPeers('sealwg0', [
        { op: 'set', publicKey: K2, endpoint: 'fd00::1:51880', allowedIPs: [], persistentKeepalive: 0 },
      ]),
    ).rejects.toThrow('is not ip:port');
  });

  it('fails exactly the next N calls of an operation', async () => {
    const { wg } = createFakeKernel();
    wg.failNext('ensureLink', 2, 'boom');
    await expect(wg.ensureLink({ ...link, publicKey: K1 })).rejects.toThrow('boom');
    await expect(wg.ensureLink({ ...link, publicKey: K1 })).rejects.toThrow('boom');
    expect((await wg.ensureLink({ ...link, publicKey: K1 })).created).toBe(true);
  });
});

describe('FakeRouting', () => {
  const setup = () => {
    const k = createFakeKernel();
    k.routing.addLink('eth0', { mtu: 1500, up: true });
    k.routing.addLink('sealwg0', { mtu: 1420, up: true });
    k.routing.addAddress('198.18.0.1', 15, 'eth0');
    k.routing.addAddress('100.64.1.1', 24, 'eth0');
    k.routing.seedRoute({
      dst: '100.64.9.0/24',
      dev: 'eth0',
      mtu: undefined,
      src: undefined,
      table: 5188,
      protocol: 4,
    });
    k.routing.seedRoute({
      dst: '100.64.2.0/24',
      dev: 'eth0',
      mtu: undefined,
      src: undefined,
      table: MAIN_TABLE,
      protocol: 4,
    });
    return k;
  };

  it('lists only sealnet-owned routes of the table', async () => {
    const { routing } = setup();
    await routing.replaceRoute({ dst: '100.64.3.0/24', dev: 'sealwg0', mtu: 1440, src: '100.64.1.1', table: 5188 });
    expect(await routing.listRoutes(5188)).toStrictEqual([
      { dst: '100.64.3.0/24', dev: 'sealwg0', mtu: 1440, src: '100.64.1.1', table: 5188, protocol: 206 },
    ]);
  });

  it('refuses to delete a route of another protocol, or outside its table', async () => {
    const { routing } = setup();
    await expect(routing.deleteRoute({ dst: '100.64.9.0/24', table: 5188 })).rejects.toThrow(
      'of protocol 4, which it does not own',
    );
    await expect(routing.deleteRoute({ dst: '100.64.2.0/24', table: MAIN_TABLE })).rejects.toThrow('it owns only 5188');
    await expect(
      routing.replaceRoute({ dst: '100.64.2.0/24', dev: 'sealwg0', mtu: 1440, table: MAIN_TABLE }),
    ).rejects.toThrow('it owns only 5188');
    expect(routing.routesIn(5188)).toHaveLength(1);
    expect(routing.routesIn(MAIN_TABLE)).toHaveLength(1);
  });

  it('refuses a source address the node does not have, a missing link, a bad MTU', async () => {
    const { routing } = setup();
    await expect(
      routing.replaceRoute({ dst: '100.64.3.0/24', dev: 'sealwg0', mtu: 1440, src: '100.64.3.1', table: 5188 }),
    ).rejects.toThrow('invalid prefsrc');
    await expect(
      routing.replaceRoute({ dst: 'fd00::/64', dev: 'sealwg0', mtu: 1440, src: '100.64.1.1', table: 5188 }),
    ).rejects.toThrow('not in the family');
    await expect(
      routing.replaceRoute({ dst: '100.64.3.0/24', dev: 'sealwg9', mtu: 1440, table: 5188 }),
    ).rejects.toThrow('ENODEV');
    await expect(routing.replaceRoute({ dst: '100.64.3.0/24', dev: 'sealwg0', mtu: 10, table: 5188 })).rejects.toThrow(
      'MTU 10',
    );
    expect(routing.mutations).toBe(0);
  });

  it('ensureRule adds once and is then a no-op', async () => {
    const { routing } = setup();
    await routing.ensureRule({ priority: 90, table: 5188, family: 4 });
    await routing.ensureRule({ priority: 90, table: 5188, family: 4 });
    expect(routing.rules).toStrictEqual([{ priority: 90, table: 5188, family: 4, protocol: 206 }]);
    expect(routing.mutations).toBe(1);
  });

  it('finds the underlay link of an address', async () => {
    const { routing } = setup();
    expect(await routing.linkForAddress('198.18.0.1')).toStrictEqual({ name: 'eth0', mtu: 1500 });
    expect(await routing.linkForAddress('203.0.113.1')).toBeUndefined();
  });
});

describe('MemoryNodeStore', () => {
  const node: RawNode = {
    name: 'node-a',
    annotations: { other: 'x', 'sealnet.io/rotation': 'r' },
    podCIDRs: ['100.64.1.0/24'],
    internalIPs: ['198.18.0.1'],
  };

  it('merges only sealnet.io/ keys and throws for unknown nodes', async () => {
    const store = new MemoryNodeStore([node]);
    await store.patchAnnotations('node-a', { 'sealnet.io/version': '1', 'sealnet.io/rotation': undefined });
    expect(store.get('node-a')!.annotations).toStrictEqual({ other: 'x', 'sealnet.io/version': '1' });
    await expect(store.patchAnnotations('node-a', { other: 'y' })).rejects.toThrow('non-sealnet annotation other');
    await expect(store.patchAnnotations('node-z', { 'sealnet.io/version': '1' })).rejects.toThrow('not found');
    expect(store.patches).toHaveLength(1);
  });

  it('fires events only on demand and controls sync', async () => {
    const store = new MemoryNodeStore([node]);
    const seen: string[] = [];
    await store.start({
      onChange: (n) => seen.push(`change ${n.length}`),
      onSynced: () => seen.push('synced'),
      onError: (e) => seen.push(`error ${e.message}`),
    });
    expect(store.synced()).toBe(false);
    store.upsert({ ...node, name: 'node-b' });
    store.emitChange();
    store.setSynced();
    store.setSynced();
    store.emitError(new Error('x'));
    expect(seen).toStrictEqual(['change 2', 'synced', 'error x']);
    expect(store.synced()).toBe(true);
  });
});
