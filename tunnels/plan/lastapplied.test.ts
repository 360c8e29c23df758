import { beforeAll, describe, expect, it } from '@jest/globals';
import { sodiumReady } from '../../keymgr/keys.js';
import { fixtureKey } from '../../test/fixtures.js';
import {
  decodeLastApplied,
  encodeLastApplied,
  LAST_APPLIED_MAX_BYTES,
  type LastApplied,
  type LastAppliedExpect,
} from './lastapplied.js';

// The last applied state codec: a round trip, and the file read back as hostile input.

let S: LastApplied;
const EXPECT: LastAppliedExpect = {
  nodeName: 'node-a',
  linkNames: ['sealwg0', 'sealwg1'],
  table: 5188,
  clusterCidrs: ['100.64.0.0/10', 'fd00:64::/32'],
  exemptCidrs: ['100.127.0.0/16'],
  nodeToNode: false,
};

beforeAll(async () => {
  await sodiumReady();
  S = {
    nodeName: 'node-a',
    endpointHost: '198.18.0.1',
    link: { name: 'sealwg0', publicKey: fixtureKey(1), listenPort: 51880, mtu: 1440 },
    peers: [
      {
        node: 'node-b',
        publicKey: fixtureKey(2),
        endpoint: '198.18.0.2:51880',
        allowedIPs: ['100.64.2.0/24'],
        persistentKeepalive: 25,
      },
      {
        node: 'node-e',
        publicKey: fixtureKey(5),
        endpoint: '[2001:db8::5]:51880',
        allowedIPs: ['100.64.5.0/24', 'fd00:64:5::/64'],
        persistentKeepalive: 0,
      },
    ],
    routes: [
      { dst: '100.64.2.0/24', dev: 'sealwg0', mtu: 1440, src: '100.64.1.1', table: 5188 },
      { dst: '100.64.5.0/24', dev: 'sealwg0', mtu: 1440, table: 5188 },
      { dst: 'fd00:64:5::/64', dev: 'sealwg0', mtu: 1420, table: 5188 },
    ],
    steering: [
      { cidr: '100.64.0.0/10', state: 'no-peer', kind: 'pod', peerId: 0 },
      { cidr: '100.64.2.0/24', state: 'ready', kind: 'pod', peerId: 1 },
      { cidr: '100.64.5.0/24', state: 'not-ready', kind: 'pod', peerId: 2 },
    ],
  };
});

const decode = (text: string, expect: LastAppliedExpect = EXPECT) => decodeLastApplied(text, expect);

describe('last applied state codec', () => {
  it('round-trips, one line, no private material', () => {
    const text = encodeLastApplied(S);
    expect(text.endsWith('\n')).toBe(true);
    expect(text.trimEnd()).not.toContain('\n');
    expect(text).not.toMatch(/private/i);
    expect(decode(text)).toEqual({ ok: true, state: S });
    const again = decode(text);
    expect(again.ok && encodeLastApplied(again.state)).toBe(text);
  });

  it('an empty cluster view round-trips too', () => {
    const empty = { ...S, peers: [], routes: [], steering: [] };
    expect(decode(encodeLastApplied(empty))).toEqual({ ok: true, state: empty });
  });

  const mutate = (f: (o: Record<string, any>) => void): string => {
    const o = JSON.parse(encodeLastApplied(S)) as Record<string, any>;
    f(o);
    return JSON.stringify(o);
  };

  const HOSTILE: [string, () => string, RegExp][] = [
    ['truncated', () => encodeLastApplied(S).slice(0, 100), /not valid JSON/],
    ['not an object', () => '[1,2]', /JSON object/],
    ['another version', () => mutate((o) => (o.v = 2)), /version 2/],
    ['another node (a foreign file)', () => mutate((o) => (o.nodeName = 'node-b')), /belongs to node "node-b"/],
    ['an unknown field', () => mutate((o) => (o.privateKey = 'x')), /privateKey is not a known field/],
    ['an endpoint that is not an address', () => mutate((o) => (o.endpointHost = 'eth0')), /endpointHost/],
    ['a link that is not sealnet’s', () => mutate((o) => (o.link.name = 'eth0')), /not a sealnet link/],
    ['a bad own key', () => mutate((o) => (o.link.publicKey = 'AAAA')), /link.publicKey/],
    ['a low-order peer key', () => mutate((o) => (o.peers[0].publicKey = 'A'.repeat(43) + '=')), /low-order/],
    ['a port 0 endpoint', () => mutate((o) => (o.peers[0].endpoint = '198.18.0.2:0')), /endpoint/],
    ['a hostname endpoint', () => mutate((o) => (o.peers[0].endpoint = 'evil.example:1')), /endpoint/],
    [
      'a peer allowed the whole internet',
      () => mutate((o) => (o.peers[0].allowedIPs = ['0.0.0.0/0'])),
      /outside the cluster CIDRs/,
    ],
    [
      'a peer prefix in an exempt CIDR',
      () => mutate((o) => (o.peers[0].allowedIPs = ['100.127.1.0/24'])),
      /overlaps an exempt CIDR/,
    ],
    [
      'a node host prefix outside node-to-node mode',
      () => mutate((o) => (o.peers[0].allowedIPs = ['198.18.0.2/32'])),
      /outside the cluster CIDRs/,
    ],
    ['a non-canonical prefix', () => mutate((o) => (o.peers[0].allowedIPs = ['100.64.2.1/24'])), /canonical/],
    [
      'two peers owning overlapping prefixes',
      () => mutate((o) => (o.peers[1].allowedIPs = ['100.64.2.128/25'])),
      /overlap/,
    ],
    ['one node twice', () => mutate((o) => (o.peers[1].node = 'node-b')), /appears twice/],
    ['the own key as a peer', () => mutate((o) => (o.peers[0].publicKey = o.link.publicKey)), /appears twice/],
    ['a control character in a node name', () => mutate((o) => (o.peers[0].node = 'a\u202eb')), /control or bidi/],
    ['a route into another device', () => mutate((o) => (o.routes[0].dev = 'eth0')), /must be the link/],
    ['a route into another table', () => mutate((o) => (o.routes[0].table = 254)), /table must be 5188/],
    ['a route no peer owns', () => mutate((o) => (o.routes[0].dst = '100.64.9.0/24')), /not an allowed IP of any peer/],
    ['an MTU out of range', () => mutate((o) => (o.routes[0].mtu = 70000)), /MTU/],
    ['a steering state that passes', () => mutate((o) => (o.steering[0].state = 'pass')), /state must be one of/],
    ['a steering entry twice', () => mutate((o) => o.steering.push(o.steering[1])), /appears twice/],
    [
      'too many peers',
      () => mutate((o) => (o.peers = Array.from({ length: 20_001 }, () => o.peers[0]))),
      /more than 20000/,
    ],
    ['too large', () => ' '.repeat(LAST_APPLIED_MAX_BYTES + 1), /larger than/],
  ];

  it.each(HOSTILE)('refuses %s, naming what is wrong', (_name, text, why) => {
    const r = decode(text());
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(why);
  });

  it('node host prefixes are accepted in node-to-node mode only', () => {
    const text = mutate((o) => {
      o.peers[0].allowedIPs = ['100.64.2.0/24', '198.18.0.2/32'];
    });
    expect(decode(text).ok).toBe(false);
    expect(decode(text, { ...EXPECT, nodeToNode: true }).ok).toBe(true);
  });
});
