/** The post-quantum annotations decoded from hostile Node objects: a reason, never an exception. */
import { ANNOTATIONS } from '../../common/constants.js';
import { encapsulationKeyId, generateKemKeyPair } from '../../keymgr/pq/mlkem.js';
import type { RawNode } from '../ports/model.js';
import { decodePqPublication, encodePqAnnotations } from './pq-codec.js';

const kem = generateKemKeyPair(new Uint8Array(64).fill(7));
const node = (annotations: Record<string, string>): RawNode => ({
  name: 'n2',
  annotations,
  podCIDRs: ['100.64.2.0/24'],
  internalIPs: ['198.18.0.2'],
});

test('a published key and address round-trip', () => {
  const r = decodePqPublication(node(encodePqAnnotations({ kemKey: kem.encapsulationKey, address: '100.64.2.1' })));
  expect(r).toMatchObject({ ok: true, address: '100.64.2.1', kemKeyId: encapsulationKeyId(kem.encapsulationKey) });
});

const bad: [string, Record<string, string>, RegExp][] = [
  ['no key', { [ANNOTATIONS.pqAddress]: '100.64.2.1' }, /pq-kem-key is missing/],
  [
    'a short key',
    { [ANNOTATIONS.pqKemKey]: 'AAAA', [ANNOTATIONS.pqAddress]: '100.64.2.1' },
    /4 characters, expected 1580/,
  ],
  [
    'a key failing the modulus check',
    { [ANNOTATIONS.pqKemKey]: Buffer.alloc(1184, 0xff).toString('base64'), [ANNOTATIONS.pqAddress]: '100.64.2.1' },
    /modulus check/,
  ],
  ['no address', { [ANNOTATIONS.pqKemKey]: kem.encapsulationKey }, /pq-address is missing/],
  [
    'an address that is not one',
    { [ANNOTATIONS.pqKemKey]: kem.encapsulationKey, [ANNOTATIONS.pqAddress]: '100.64.2.1\n' },
    /is not an IP address/,
  ],
  [
    "another node's address (outside the pod CIDRs)",
    { [ANNOTATIONS.pqKemKey]: kem.encapsulationKey, [ANNOTATIONS.pqAddress]: '100.64.3.1' },
    /not inside the node's pod CIDRs/,
  ],
  [
    'the node address (routes over the underlay)',
    { [ANNOTATIONS.pqKemKey]: kem.encapsulationKey, [ANNOTATIONS.pqAddress]: '198.18.0.2' },
    /not inside the node's pod CIDRs/,
  ],
];

test.each(bad)('%s gives a reason', (_name, annotations, re) => {
  const r = decodePqPublication(node(annotations));
  expect(r.ok).toBe(false);
  if (!r.ok) {
    expect(r.problem).toMatch(re);
    expect(r.problem.length).toBeLessThan(200); // never echoes a whole key
  }
});
