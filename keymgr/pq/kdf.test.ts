/**
 * The pair-secret KDF: both sides of an honest exchange derive the same PSK; every transcript
 * input and the shared secret change the output; a tampered ciphertext leaves the pair without
 * an agreed key (ML-KEM implicit rejection) and the confirmation tag exposes it.
 */
import { generateKeyPair, sodiumReady, type PublicKey } from '../keys.js';
import {
  CONFIRMATION_TAG_BYTES,
  ciphertextHash,
  confirmationTag,
  derivePairSecret,
  encodeTranscript,
  pqInitiator,
  verifyConfirmationTag,
  type PqTranscript,
} from './kdf.js';
import { decapsulate, encapsulate, encapsulationKeyHash, generateKemKeyPair, type KemKeyPair } from './mlkem.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (fill: number): Uint8Array => new Uint8Array(32).fill(fill);

let xA: PublicKey;
let xB: PublicKey;
let xC: PublicKey;
let kemA: KemKeyPair;
let kemB: KemKeyPair;

beforeAll(async () => {
  await sodiumReady();
  [xA, xB, xC] = [
    (await generateKeyPair()).publicKey,
    (await generateKeyPair()).publicKey,
    (await generateKeyPair()).publicKey,
  ];
  kemA = generateKemKeyPair();
  kemB = generateKemKeyPair();
});

/** One honest exchange, initiator "node-a" encapsulating to "node-b". */
function exchange(mutateCiphertext?: (c: Uint8Array) => void) {
  const { ciphertext, sharedSecret } = encapsulate(kemB.encapsulationKey);
  const sent = Uint8Array.from(ciphertext);
  const received = Uint8Array.from(ciphertext);
  mutateCiphertext?.(received);
  const transcript = (c: Uint8Array): PqTranscript => ({
    initiator: { name: 'node-a', x25519: xA, kemKeyHash: encapsulationKeyHash(kemA.encapsulationKey) },
    responder: { name: 'node-b', x25519: xB, kemKeyHash: encapsulationKeyHash(kemB.encapsulationKey) },
    ciphertextHash: ciphertextHash(c),
    renewalId: 7,
  });
  const initiator = derivePairSecret(sharedSecret, transcript(sent));
  const responderShared = decapsulate(received, kemB.decapsulationKey);
  const responder = derivePairSecret(responderShared, transcript(received));
  // The same responder secret, but over the sender's ciphertext hash: isolates implicit rejection.
  const responderSameHash = derivePairSecret(responderShared, transcript(sent));
  return { sharedSecret, responderShared, initiator, responder, responderSameHash };
}

describe('pair secret agreement', () => {
  it('both sides of an honest exchange derive the same 32-byte PSK, and the tag verifies', () => {
    const { initiator, responder } = exchange();
    expect(initiator.psk).toHaveLength(32);
    expect(hex(responder.psk)).toBe(hex(initiator.psk));
    expect(hex(responder.confirmKey)).toBe(hex(initiator.confirmKey));
    // The PSK and the confirmation key are different keys.
    expect(hex(initiator.psk)).not.toBe(hex(initiator.confirmKey));
    const tag = confirmationTag(responder.confirmKey, 7);
    expect(tag).toHaveLength(CONFIRMATION_TAG_BYTES);
    expect(verifyConfirmationTag(initiator.confirmKey, 7, tag)).toBe(true);
  });

  it.each([
    ['first byte', 0],
    ['middle byte', 544],
    ['last byte', 1087],
  ])('a ciphertext tampered at its %s gives the pair no common key', (_where, index) => {
    const { sharedSecret, responderShared, initiator, responder, responderSameHash } = exchange((c) => {
      c[index] = c[index]! ^ 0x01;
    });
    // ML-KEM implicit rejection: decapsulation "succeeds" with a secret the sender does not know.
    expect(responderShared).toHaveLength(32);
    expect(hex(responderShared)).not.toBe(hex(sharedSecret));
    expect(hex(responder.psk)).not.toBe(hex(initiator.psk));
    expect(hex(responderSameHash.psk)).not.toBe(hex(initiator.psk));
    // So the responder's acknowledgement never verifies and the initiator never installs the PSK.
    expect(verifyConfirmationTag(initiator.confirmKey, 7, confirmationTag(responder.confirmKey, 7))).toBe(false);
  });

  it('a confirmation tag for another renewal id or of another length does not verify', () => {
    const { initiator } = exchange();
    const tag = confirmationTag(initiator.confirmKey, 7);
    expect(verifyConfirmationTag(initiator.confirmKey, 8, tag)).toBe(false);
    expect(verifyConfirmationTag(initiator.confirmKey, 7, tag.subarray(0, 31))).toBe(false);
    expect(verifyConfirmationTag(initiator.confirmKey, 7, new Uint8Array(0))).toBe(false);
  });
});

describe('the KDF binds every input', () => {
  const base = (): PqTranscript => ({
    initiator: { name: 'node-a', x25519: xA, kemKeyHash: bytes(1) },
    responder: { name: 'node-b', x25519: xB, kemKeyHash: bytes(2) },
    ciphertextHash: bytes(3),
    renewalId: 42,
  });
  const ss = bytes(9);
  type Case = [string, (t: PqTranscript) => PqTranscript, Uint8Array?];
  const cases: Case[] = [
    ['the ML-KEM shared secret', (t) => t, bytes(10)],
    ['the initiator name', (t) => ({ ...t, initiator: { ...t.initiator, name: 'node-c' } })],
    ['the responder name', (t) => ({ ...t, responder: { ...t.responder, name: 'node-c' } })],
    ['the initiator X25519 key', (t) => ({ ...t, initiator: { ...t.initiator, x25519: xC } })],
    ['the responder X25519 key', (t) => ({ ...t, responder: { ...t.responder, x25519: xC } })],
    ['the initiator encapsulation key hash', (t) => ({ ...t, initiator: { ...t.initiator, kemKeyHash: bytes(4) } })],
    ['the responder encapsulation key hash', (t) => ({ ...t, responder: { ...t.responder, kemKeyHash: bytes(4) } })],
    ['the ciphertext hash', (t) => ({ ...t, ciphertextHash: bytes(4) })],
    ['the renewal id', (t) => ({ ...t, renewalId: 43 })],
    ['the roles (initiator and responder swapped)', (t) => ({ ...t, initiator: t.responder, responder: t.initiator })],
    [
      'the X25519 keys swapped between roles',
      (t) => ({ ...t, initiator: { ...t.initiator, x25519: xB }, responder: { ...t.responder, x25519: xA } }),
    ],
    [
      'the name boundary ("node-a"+"node-b" vs "node-an"+"ode-b")',
      (t) => ({ ...t, initiator: { ...t.initiator, name: 'node-an' }, responder: { ...t.responder, name: 'ode-b' } }),
    ],
  ];

  // Rows always have three cells: with two, jest would pass its `done` callback as the third.
  const rows = cases.map(([what, mutate, secret]) => [what, mutate, secret ?? ss] as const);
  it.each(rows)('changing %s changes the PSK and the confirmation key', (_what, mutate, secret) => {
    const a = derivePairSecret(ss, base());
    const b = derivePairSecret(secret, mutate(base()));
    expect(hex(b.psk)).not.toBe(hex(a.psk));
    expect(hex(b.confirmKey)).not.toBe(hex(a.confirmKey));
  });

  it('is deterministic, and pinned: this value changes only with PQ_KDF_VERSION', () => {
    const fixed: PqTranscript = {
      ...base(),
      // Fixed X25519 keys (base64 of 32 bytes 0x11 / 0x22: canonical, not low-order points).
      initiator: { ...base().initiator, x25519: Buffer.alloc(32, 0x11).toString('base64') as PublicKey },
      responder: { ...base().responder, x25519: Buffer.alloc(32, 0x22).toString('base64') as PublicKey },
    };
    const a = derivePairSecret(ss, fixed);
    expect(hex(derivePairSecret(ss, fixed).psk)).toBe(hex(a.psk));
    // Our own regression value (not an external vector): two agent versions must derive alike.
    expect(hex(a.psk)).toBe(PINNED_PSK);
  });

  it.each([
    ['a short shared secret', () => derivePairSecret(new Uint8Array(31), base()), /shared secret has 31 bytes/],
    [
      'an empty node name',
      () => derivePairSecret(ss, { ...base(), initiator: { ...base().initiator, name: '' } }),
      /node name of 0 bytes/,
    ],
    [
      'a 254-byte node name',
      () => derivePairSecret(ss, { ...base(), responder: { ...base().responder, name: 'x'.repeat(254) } }),
      /node name of 254 bytes/,
    ],
    [
      'the same node on both sides',
      () => derivePairSecret(ss, { ...base(), responder: { ...base().responder, name: 'node-a' } }),
      /same node/,
    ],
    [
      'a short ciphertext hash',
      () => derivePairSecret(ss, { ...base(), ciphertextHash: new Uint8Array(31) }),
      /31 bytes/,
    ],
    ['a negative renewal id', () => derivePairSecret(ss, { ...base(), renewalId: -1 }), /renewal id -1/],
    ['a fractional renewal id', () => derivePairSecret(ss, { ...base(), renewalId: 1.5 }), /renewal id 1.5/],
  ])('refuses %s', (_what, run, message) => {
    expect(run).toThrow(message);
  });

  it('encodes the transcript with length prefixes, so shifted boundaries differ', () => {
    const t = base();
    const shifted = {
      ...t,
      initiator: { ...t.initiator, name: 'node-an' },
      responder: { ...t.responder, name: 'ode-b' },
    };
    expect(hex(encodeTranscript(shifted))).not.toBe(hex(encodeTranscript(t)));
  });
});

describe('pqInitiator', () => {
  it('is symmetric and names one of the two nodes', () => {
    for (const [a, b] of [
      ['node-a', 'node-b'],
      ['x', 'y'],
      ['worker-17', 'worker-3'],
    ] as const) {
      const i = pqInitiator(a, b);
      expect([a, b]).toContain(i);
      expect(pqInitiator(b, a)).toBe(i);
    }
  });

  it('spreads initiation: in a 101-node cluster every node initiates for 25..75 of its 100 pairs', () => {
    const names = Array.from({ length: 101 }, (_, i) => `node-${String(i).padStart(3, '0')}`);
    const count = new Map(names.map((n) => [n, 0]));
    for (let i = 0; i < names.length; i++) {
      for (let j = i + 1; j < names.length; j++) {
        const who = pqInitiator(names[i]!, names[j]!);
        count.set(who, count.get(who)! + 1);
      }
    }
    const values = [...count.values()];
    // The lexicographic rule would give node-000 all 100 and node-100 none.
    expect(Math.max(...values)).toBeLessThanOrEqual(75);
    expect(Math.min(...values)).toBeGreaterThanOrEqual(25);
  });

  it('refuses a pair of a node with itself', () => {
    expect(() => pqInitiator('node-a', 'node-a')).toThrow(/with itself/);
  });
});

const PINNED_PSK = '081ecb3b971411e2bbfc25552f4aa0febe451af04e9acdfa1e20c4a7d520a9d6';
