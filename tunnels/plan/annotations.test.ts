import { beforeAll, describe, expect, it } from '@jest/globals';
import { sodiumReady, type PublicKey } from '../../keymgr/keys.js';
import { fixtureKey } from '../../test/fixtures.js';
import { decodeNode, encodeNode, formatEndpoint, parseEndpoint, type DecodeResult } from './annotations.js';
import type { PeerNode, RawNode } from '../ports/model.js';

let KEY: PublicKey;
let KEY2: PublicKey;
beforeAll(async () => {
  await sodiumReady();
  KEY = fixtureKey(1);
  KEY2 = fixtureKey(2);
});

// Written out literally (not via constants) so a renamed key breaks this test: the names are a contract.
const VALID = (): Record<string, string> => ({
  'sealnet.io/version': '1',
  'sealnet.io/mode': 'wireguard',
  'sealnet.io/wireguard-public-key': KEY,
  'sealnet.io/endpoint': '198.18.0.1:51880',
  'sealnet.io/key-epoch': '4',
  'sealnet.io/key-created': '2024-01-01T00:00:00.000Z',
});

const raw = (annotations: Record<string, string>, over: Partial<RawNode> = {}): RawNode => ({
  name: 'node-a',
  annotations,
  podCIDRs: ['100.64.1.0/24'],
  internalIPs: ['198.18.0.1'],
  ...over,
});

function without(key: string): Record<string, string> {
  const a = VALID();
  delete a[key];
  return a;
}

describe('decodeNode (like Kilo TestTranslateNode)', () => {
  const valid = (over: Partial<PeerNode> = {}): DecodeResult => ({
    ok: true,
    node: {
      name: 'node-a',
      version: 1,
      mode: 'wireguard',
      wireguardPublicKey: KEY,
      endpointHost: '198.18.0.1',
      endpointPort: 51880,
      keyEpoch: 4,
      podCIDRs: ['100.64.1.0/24'],
      internalIPs: ['198.18.0.1'],
      ...over,
    },
  });

  const cases: [string, () => RawNode, () => DecodeResult][] = [
    ['all annotations present', () => raw(VALID()), () => valid()],
    [
      'foreign annotations are ignored',
      () => raw({ ...VALID(), 'flannel.alpha.coreos.com/public-ip': '198.18.0.1', 'sealnet.io/rotation': '{}' }),
      () => valid(),
    ],
    ['key epoch absent means 0', () => raw(without('sealnet.io/key-epoch')), () => valid({ keyEpoch: 0 })],
    ['key created absent is fine', () => raw(without('sealnet.io/key-created')), () => valid()],
    ['ipsec mode', () => raw({ ...VALID(), 'sealnet.io/mode': 'ipsec' }), () => valid({ mode: 'ipsec' })],
    [
      'IPv6 endpoint, canonicalised',
      () => raw({ ...VALID(), 'sealnet.io/endpoint': '[FD00:198:18:0::1]:51820' }),
      () => valid({ endpointHost: 'fd00:198:18::1', endpointPort: 51820 }),
    ],
    [
      'pod CIDRs canonicalised, sorted IPv4 first, duplicates dropped',
      () => raw(VALID(), { podCIDRs: ['fd00:64:1:0:0::/64', '100.64.1.7/24', '100.64.1.0/24'] }),
      () => valid({ podCIDRs: ['100.64.1.0/24', 'fd00:64:1::/64'] }),
    ],
    [
      'internal IPs that are not addresses are dropped',
      () => raw(VALID(), { internalIPs: ['198.18.0.1', 'node-a.local', 'fd00:198:18::1'] }),
      () => valid({ internalIPs: ['198.18.0.1', 'fd00:198:18::1'] }),
    ],
    [
      'no internal IPs is fine (the endpoint is what matters)',
      () => raw(VALID(), { internalIPs: [] }),
      () => valid({ internalIPs: [] }),
    ],
    [
      'no annotations',
      () => raw({}),
      () => ({
        ok: false,
        reason: 'annotations-missing',
        detail: 'node node-a has no sealnet.io/ annotations yet (agent not started?)',
      }),
    ],
    [
      'only foreign annotations',
      () => raw({ 'example.com/sealnet.io/version': '1' }),
      () => ({
        ok: false,
        reason: 'annotations-missing',
        detail: 'node node-a has no sealnet.io/ annotations yet (agent not started?)',
      }),
    ],
    [
      'version missing',
      () => raw(without('sealnet.io/version')),
      () => ({ ok: false, reason: 'annotations-invalid', detail: 'node node-a: sealnet.io/version is missing' }),
    ],
    [
      'version not an integer',
      () => raw({ ...VALID(), 'sealnet.io/version': '1.0' }),
      () => ({
        ok: false,
        reason: 'annotations-invalid',
        detail: 'node node-a: sealnet.io/version is "1.0", want an integer',
      }),
    ],
    [
      'version from the future',
      () => raw({ ...VALID(), 'sealnet.io/version': '2' }),
      () => ({
        ok: false,
        reason: 'version-unsupported',
        detail: 'node node-a: sealnet.io/version is 2, this agent understands only 1; upgrade sealnet on all nodes',
      }),
    ],
    [
      'version 0',
      () => raw({ ...VALID(), 'sealnet.io/version': '0' }),
      () => ({
        ok: false,
        reason: 'version-unsupported',
        detail: 'node node-a: sealnet.io/version is 0, this agent understands only 1; upgrade sealnet on all nodes',
      }),
    ],
    [
      'mode missing',
      () => raw(without('sealnet.io/mode')),
      () => ({
        ok: false,
        reason: 'annotations-invalid',
        detail: 'node node-a: sealnet.io/mode is missing, want "wireguard" or "ipsec"',
      }),
    ],
    [
      'mode in capitals',
      () => raw({ ...VALID(), 'sealnet.io/mode': 'WireGuard' }),
      () => ({
        ok: false,
        reason: 'annotations-invalid',
        detail: 'node node-a: sealnet.io/mode is "WireGuard", want "wireguard" or "ipsec"',
      }),
    ],
    [
      'key missing',
      () => raw(without('sealnet.io/wireguard-public-key')),
      () => ({
        ok: false,
        reason: 'annotations-invalid',
        detail: 'node node-a: sealnet.io/wireguard-public-key is missing',
      }),
    ],
    [
      'key with a trailing newline',
      () => raw({ ...VALID(), 'sealnet.io/wireguard-public-key': `${KEY}\n` }),
      () => ({
        ok: false,
        reason: 'annotations-invalid',
        detail: 'node node-a: sealnet.io/wireguard-public-key: public key contains whitespace',
      }),
    ],
    [
      'key without padding',
      () => raw({ ...VALID(), 'sealnet.io/wireguard-public-key': KEY.slice(0, 43) }),
      () => ({
        ok: false,
        reason: 'annotations-invalid',
        detail:
          'node node-a: sealnet.io/wireguard-public-key: public key is 43 characters, want 44 (base64 of 32 bytes)',
      }),
    ],
    [
      'low-order key',
      () => raw({ ...VALID(), 'sealnet.io/wireguard-public-key': 'AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' }),
      () => ({
        ok: false,
        reason: 'annotations-invalid',
        detail: 'node node-a: sealnet.io/wireguard-public-key: public key is a low-order point',
      }),
    ],
    [
      'endpoint missing',
      () => raw(without('sealnet.io/endpoint')),
      () => ({ ok: false, reason: 'annotations-invalid', detail: 'node node-a: sealnet.io/endpoint is missing' }),
    ],
    [
      'IPv6 endpoint without brackets',
      () => raw({ ...VALID(), 'sealnet.io/endpoint': 'fd00::1:51880' }),
      () => ({
        ok: false,
        reason: 'annotations-invalid',
        detail: 'node node-a: sealnet.io/endpoint is "fd00::1:51880", want "ip:port" or "[ipv6]:port"',
      }),
    ],
    [
      'key epoch negative',
      () => raw({ ...VALID(), 'sealnet.io/key-epoch': '-3' }),
      () => ({
        ok: false,
        reason: 'annotations-invalid',
        detail: 'node node-a: sealnet.io/key-epoch is "-3", want an integer from 0 to 2147483647',
      }),
    ],
    [
      'key epoch empty',
      () => raw({ ...VALID(), 'sealnet.io/key-epoch': '' }),
      () => ({
        ok: false,
        reason: 'annotations-invalid',
        detail: 'node node-a: sealnet.io/key-epoch is "", want an integer from 0 to 2147483647',
      }),
    ],
    [
      'no pod CIDRs',
      () => raw(VALID(), { podCIDRs: [] }),
      () => ({ ok: false, reason: 'no-pod-cidrs', detail: 'node node-a has no spec.podCIDRs' }),
    ],
    [
      'a pod CIDR that is not a CIDR',
      () => raw(VALID(), { podCIDRs: ['100.64.1.0/24', '100.64.1.0'] }),
      () => ({
        ok: false,
        reason: 'annotations-invalid',
        detail: 'node node-a: spec.podCIDRs entry "100.64.1.0" is not a CIDR',
      }),
    ],
  ];

  it.each(cases)('%s', (_label, input, want) => {
    expect(decodeNode(input())).toStrictEqual(want());
  });

  it('never quotes a public key it rejects', () => {
    const broken = `${KEY.slice(0, 40)}!!!=`;
    const r = decodeNode(raw({ ...VALID(), 'sealnet.io/wireguard-public-key': broken }));
    expect(r.ok).toBe(false);
    expect(r.ok ? '' : r.detail).not.toContain(KEY.slice(0, 40));
  });

  it('never throws, whatever the annotation values', () => {
    const junk = ['', ' ', '\u0000', '[', ']:', '1'.repeat(10000), '{"a":1}', 'NaN', '-0', '1e3'];
    for (const v of junk) {
      for (const k of Object.keys(VALID())) {
        expect(() => decodeNode(raw({ ...VALID(), [k]: v }))).not.toThrow();
      }
    }
  });
});

describe('encodeNode', () => {
  const own = () => ({
    mode: 'wireguard' as const,
    wireguardPublicKey: KEY2,
    endpointHost: '198.18.0.2',
    endpointPort: 51880,
    keyEpoch: 7,
    keyCreated: new Date('2024-05-06T07:08:09.010Z'),
  });

  it('writes exactly the sealnet.io/ keys, version 1', () => {
    expect(encodeNode(own())).toStrictEqual({
      'sealnet.io/version': '1',
      'sealnet.io/mode': 'wireguard',
      'sealnet.io/wireguard-public-key': KEY2,
      'sealnet.io/endpoint': '198.18.0.2:51880',
      'sealnet.io/key-epoch': '7',
      'sealnet.io/key-created': '2024-05-06T07:08:09.010Z',
    });
  });

  it.each([
    ['IPv4', '198.18.0.2', 51880],
    ['IPv6', 'fd00:198:18::2', 51820],
    ['lowest port', '198.18.0.2', 1],
    ['highest port', '198.18.0.2', 65535],
  ] as [string, string, number][])('round-trips through decodeNode (%s endpoint)', (_label, host, port) => {
    const encoded = encodeNode({ ...own(), endpointHost: host, endpointPort: port });
    const decoded = decodeNode({
      name: 'node-b',
      annotations: encoded,
      podCIDRs: ['100.64.2.0/24'],
      internalIPs: ['198.18.0.2'],
    });
    expect(decoded).toStrictEqual({
      ok: true,
      node: {
        name: 'node-b',
        version: 1,
        mode: 'wireguard',
        wireguardPublicKey: KEY2,
        endpointHost: host,
        endpointPort: port,
        keyEpoch: 7,
        podCIDRs: ['100.64.2.0/24'],
        internalIPs: ['198.18.0.2'],
      },
    });
  });

  it('ipsec mode round-trips', () => {
    const decoded = decodeNode({
      name: 'node-b',
      annotations: encodeNode({ ...own(), mode: 'ipsec' }),
      podCIDRs: ['100.64.2.0/24'],
      internalIPs: [],
    });
    expect(decoded.ok && decoded.node.mode).toBe('ipsec');
  });
});

describe('parseEndpoint / formatEndpoint', () => {
  it.each([
    ['198.18.0.1:51880', { host: '198.18.0.1', port: 51880 }],
    ['198.18.0.1:1', { host: '198.18.0.1', port: 1 }],
    ['198.18.0.1:65535', { host: '198.18.0.1', port: 65535 }],
    ['[fd00:198:18::1]:51880', { host: 'fd00:198:18::1', port: 51880 }],
    ['[::1]:51880', { host: '::1', port: 51880 }],
    ['[FD00:198:18:0:0:0:0:1]:51880', { host: 'fd00:198:18::1', port: 51880 }],
  ])('%s parses', (text, want) => {
    expect(parseEndpoint(text)).toStrictEqual(want);
  });

  it.each([
    ['no port', '198.18.0.1'],
    ['empty port', '198.18.0.1:'],
    ['port 0', '198.18.0.1:0'],
    ['port 65536', '198.18.0.1:65536'],
    ['port 6 digits', '198.18.0.1:518800'],
    ['negative port', '198.18.0.1:-1'],
    ['port with sign', '198.18.0.1:+80'],
    ['octet over 255', '256.18.0.1:51880'],
    ['leading zero octet', '198.018.0.1:51880'],
    ['hostname', 'node-a:51880'],
    ['IPv6 without brackets', 'fd00::1:51880'],
    ['IPv6 brackets without port', '[fd00::1]'],
    ['IPv6 brackets, empty port', '[fd00::1]:'],
    ['IPv4 in brackets', '[198.18.0.1]:51880'],
    ['IPv6 with zone', '[fe80::1%eth0]:51880'],
    ['unbalanced bracket', '[fd00::1:51880'],
    ['leading space', ' 198.18.0.1:51880'],
    ['trailing newline', '198.18.0.1:51880\n'],
    ['empty', ''],
  ])('%s is rejected', (_label, text) => {
    expect(parseEndpoint(text)).toBeUndefined();
  });

  it('formats IPv4 bare and IPv6 bracketed', () => {
    expect(formatEndpoint('198.18.0.1', 51880)).toBe('198.18.0.1:51880');
    expect(formatEndpoint('fd00::1', 51880)).toBe('[fd00::1]:51880');
  });

  it('format then parse is the identity for canonical hosts', () => {
    for (const [h, p] of [
      ['198.18.0.1', 51880],
      ['fd00::1', 51820],
      ['::', 1],
    ] as const) {
      expect(parseEndpoint(formatEndpoint(h, p))).toStrictEqual({ host: h, port: p });
    }
  });
});
