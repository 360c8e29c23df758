/** `required` mode in the plan: a blocked pair's pod routes leave the tunnel, its exchange route stays. */
import type { PublicKey } from '../../keymgr/keys.js';
import type { DesiredWireGuardState } from '../ports/model.js';
import { gatePqRoutes } from './pq-gate.js';

const peer = (node: string, cidrs: string[]) => ({
  node,
  publicKey: `${node}-key` as PublicKey,
  endpoint: '198.18.0.9:51880',
  allowedIPs: cidrs,
  persistentKeepalive: 25,
});
const route = (dst: string, src: string) => ({ dst, dev: 'sealwg0', mtu: 1440, src, table: 5188 });

const desired = {
  tunnel: {
    kind: 'wireguard',
    link: { name: 'sealwg0', listenPort: 51880, mtu: 1440, fwmark: 0x5188 },
    peers: [peer('n2', ['100.64.2.0/24', 'fd00:2::/64']), peer('n3', ['100.64.3.0/24'])],
  },
  routes: [
    route('100.64.2.0/24', '100.64.1.1'),
    route('100.64.3.0/24', '100.64.1.1'),
    route('fd00:2::/64', 'fd00:1::1'),
  ],
} as unknown as DesiredWireGuardState;

test('nothing blocked: the plan is unchanged', () => {
  expect(gatePqRoutes(desired, new Map())).toBe(desired);
});

test("a blocked node's pod routes go, a host route to its exchange address stays in the tunnel", () => {
  const g = gatePqRoutes(desired, new Map([['n2', '100.64.2.1']]));
  expect(g.routes).toEqual([route('100.64.2.1/32', '100.64.1.1'), route('100.64.3.0/24', '100.64.1.1')]);
  expect(g.tunnel.peers).toBe(desired.tunnel.peers); // the peer stays: the exchange needs it
});

test('a blocked node without a usable exchange address keeps no route at all', () => {
  const g = gatePqRoutes(desired, new Map([['n3', undefined]]));
  expect(g.routes.map((r) => r.dst)).toEqual(['100.64.2.0/24', 'fd00:2::/64']);
});
