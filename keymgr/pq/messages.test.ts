/** The exchange messages: round trip, and hostile messages refused with an error value naming the field. */
import { decodePqMessage, encodePqMessage, PQ_MESSAGE_MAX_BYTES, type PqMessage } from './messages.js';

const ID = 'ab'.repeat(32);
const BINDING = 'cd'.repeat(32);
const CT: PqMessage = {
  type: 'pq-ciphertext',
  from: 'node-a',
  to: 'node-b',
  renewalId: 1_800_000_000_000,
  forKemKeyId: ID,
  binding: BINDING,
  ciphertext: new Uint8Array(1088).fill(7),
};
const ACK: PqMessage = { type: 'pq-ack', from: 'node-b', to: 'node-a', renewalId: 5, tag: new Uint8Array(32).fill(9) };
const json = (m: PqMessage): Record<string, unknown> => JSON.parse(encodePqMessage(m)) as Record<string, unknown>;
const text = (o: unknown): string => JSON.stringify(o);

describe('pq messages', () => {
  it.each([
    ['ciphertext', CT],
    ['ack', ACK],
  ])('a %s message round-trips', (_n, m) => {
    const r = decodePqMessage(encodePqMessage(m));
    expect(r).toEqual({ ok: true, message: m });
  });

  it('a ciphertext message stays well under the size bound', () => {
    expect(Buffer.byteLength(encodePqMessage(CT))).toBeLessThan(PQ_MESSAGE_MAX_BYTES / 2);
  });

  const ct = json(CT);
  const ack = json(ACK);
  const cases: [string, string, RegExp][] = [
    ['not JSON', '{', /is not valid JSON/],
    ['an array', '[]', /must be a JSON object/],
    ['too large', ' '.repeat(PQ_MESSAGE_MAX_BYTES + 1), /larger than 4096 bytes/],
    ['another version', text({ ...ct, v: 2 }), /version 2; this build understands only 1/],
    ['an unknown type', text({ ...ct, type: 'pq-hello' }), /type must be "pq-ciphertext" or "pq-ack", got "pq-hello"/],
    ['an extra field', text({ ...ct, extra: 1 }), /message\.extra is not a known field/],
    ['a missing field', text({ ...ack, tag: undefined }), /message\.tag is missing/],
    [
      'a control character in from',
      text({ ...ct, from: 'node-\u001b[31m' }),
      /from must be a node name, got "node-\\\\u\{1b\}\[31m"/,
    ],
    [
      'a 300-character name',
      text({ ...ct, to: 'a'.repeat(300) }),
      /to must be a node name, got "a{64}…" \(300 chars\)/,
    ],
    ['a negative renewal id', text({ ...ct, renewalId: -1 }), /renewalId must be a non-negative integer/],
    ['a renewal id beyond 2^53', text({ ...ct, renewalId: 2 ** 53 }), /renewalId must be a non-negative integer/],
    ['an uppercase key id', text({ ...ct, forKemKeyId: ID.toUpperCase() }), /forKemKeyId must be 64 lowercase hex/],
    ['a short binding', text({ ...ct, binding: 'cd' }), /binding must be 64 lowercase hex/],
    [
      'a ciphertext of 1087 bytes (same base64 length)',
      text({ ...ct, ciphertext: Buffer.alloc(1087).toString('base64') }),
      /ciphertext must be canonical base64 of exactly 1088 bytes/,
    ],
    [
      'a short ciphertext',
      text({ ...ct, ciphertext: Buffer.alloc(1000).toString('base64') }),
      /ciphertext must be 1452 characters of base64 \(1088 bytes\)/,
    ],
    ['a ciphertext as a number', text({ ...ct, ciphertext: 5 }), /ciphertext must be 1452 characters/],
    ['a url-safe tag', text({ ...ack, tag: '-'.repeat(43) + '=' }), /tag must be 44 characters of base64/],
    [
      'a tag with trailing bits set',
      text({ ...ack, tag: (ack.tag as string).slice(0, 42) + 'R=' }),
      /tag must be canonical base64 of exactly 32 bytes/,
    ],
  ];

  it.each(cases)('refuses %s without throwing', (_n, input, message) => {
    let r: ReturnType<typeof decodePqMessage> | undefined;
    expect(() => (r = decodePqMessage(input))).not.toThrow();
    expect(r!.ok).toBe(false);
    if (!r!.ok) expect(r!.error).toMatch(message);
  });
});
