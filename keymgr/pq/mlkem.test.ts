/**
 * ML-KEM-768 through our wrapper: NIST ACVP known answers (keyGen, encapsulation, decapsulation
 * including modified ciphertexts, and the encapsulation-key modulus check), then the strict
 * annotation codec against hostile spellings.
 */
import { readFileSync } from 'node:fs';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import {
  CIPHERTEXT_BYTES,
  ENCAPSULATION_KEY_BASE64_CHARS,
  ENCAPSULATION_KEY_BYTES,
  decapsulate,
  encapsulate,
  generateKemKeyPair,
  modulusViolation,
  parseEncapsulationKey,
  tryParseEncapsulationKey,
  type DecapsulationKey,
  type EncapsulationKey,
} from './mlkem.js';

interface Acvp {
  source: string;
  keyGen: { tcId: number; d: string; z: string; ek: string; dk: string }[];
  encapsulation: { tcId: number; ek: string; m: string; c: string; k: string }[];
  decapsulation: { tcId: number; dk: string; c: string; k: string; reason: string }[];
  encapsulationKeyCheck: { tcId: number; ek: string; testPassed: boolean; reason: string }[];
}

const ACVP = JSON.parse(readFileSync(new URL('./fixtures/mlkem768-acvp.json', import.meta.url), 'utf8')) as Acvp;
const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex').toUpperCase();
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');

// q = 3329 = 0xD01: as the high coefficient of a 3-byte group its low nibble goes in the middle
// byte's top half and the remaining 8 bits fill the last byte.
const Q_LOW_NIBBLE = 3329 & 0x0f;
const Q_HIGH_BYTE = 3329 >> 4;

describe('ML-KEM-768 known answers (NIST ACVP, FIPS 203)', () => {
  it('the fixture holds the cases the tests expect', () => {
    expect(ACVP.keyGen).toHaveLength(3);
    expect(ACVP.encapsulation).toHaveLength(3);
    expect(ACVP.decapsulation.some((t) => t.reason === 'modified ciphertext')).toBe(true);
    expect(ACVP.encapsulationKeyCheck.map((t) => t.testPassed)).toEqual(expect.arrayContaining([true, false]));
  });

  it.each(ACVP.keyGen.map((t) => [t.tcId, t] as const))('keyGen tcId %i', (_id, t) => {
    const pair = generateKemKeyPair(new Uint8Array([...hex(t.d), ...hex(t.z)]));
    expect(toHex(Buffer.from(pair.encapsulationKey, 'base64'))).toBe(t.ek);
    expect(toHex(pair.decapsulationKey)).toBe(t.dk);
  });

  it.each(ACVP.encapsulation.map((t) => [t.tcId, t] as const))('encapsulation tcId %i', (_id, t) => {
    const key = parseEncapsulationKey(b64(hex(t.ek)));
    const { ciphertext, sharedSecret } = encapsulate(key, hex(t.m));
    expect(toHex(ciphertext)).toBe(t.c);
    expect(toHex(sharedSecret)).toBe(t.k);
  });

  it.each(ACVP.decapsulation.map((t) => [t.tcId, t.reason, t] as const))('decapsulation tcId %i (%s)', (_id, _r, t) => {
    // For a "modified ciphertext" case the expected k is the implicit-rejection value J(z ‖ c).
    expect(toHex(decapsulate(hex(t.c), hex(t.dk) as DecapsulationKey))).toBe(t.k);
  });

  it.each(ACVP.encapsulationKeyCheck.map((t) => [t.tcId, t.reason, t] as const))(
    'encapsulationKeyCheck tcId %i (%s)',
    (_id, _r, t) => {
      const r = tryParseEncapsulationKey(b64(hex(t.ek)));
      expect(r.ok).toBe(t.testPassed);
      if (!r.ok) expect(r.error).toMatch(/FIPS 203 modulus check/);
      // Our own decoder and the library agree on every case (the library throws on a bad key).
      let libraryAccepts = true;
      try {
        ml_kem768.encapsulate(hex(t.ek));
      } catch {
        libraryAccepts = false;
      }
      expect(libraryAccepts).toBe(t.testPassed);
    },
  );
});

describe('ML-KEM-768 round trip', () => {
  it('a fresh pair agrees on the secret and a wrong key does not', () => {
    const a = generateKemKeyPair();
    const b = generateKemKeyPair();
    expect(a.encapsulationKey).not.toBe(b.encapsulationKey);
    const { ciphertext, sharedSecret } = encapsulate(a.encapsulationKey);
    expect(ciphertext).toHaveLength(CIPHERTEXT_BYTES);
    expect(decapsulate(ciphertext, a.decapsulationKey)).toEqual(sharedSecret);
    expect(decapsulate(ciphertext, b.decapsulationKey)).not.toEqual(sharedSecret);
  });

  it('refuses a ciphertext of the wrong length with a named error', () => {
    const a = generateKemKeyPair();
    expect(() => decapsulate(new Uint8Array(CIPHERTEXT_BYTES - 1), a.decapsulationKey)).toThrow(
      /ciphertext has 1087 bytes, expected 1088/,
    );
  });

  it('refuses a seed of the wrong length', () => {
    expect(() => generateKemKeyPair(new Uint8Array(32))).toThrow(/seed has 32 bytes, expected 64/);
  });
});

describe('encapsulation key annotation codec', () => {
  const good = generateKemKeyPair().encapsulationKey;
  const goodBytes = new Uint8Array(Buffer.from(good, 'base64'));

  it('accepts our own key, 1580 characters decoding to 1184 bytes', () => {
    expect(good).toHaveLength(ENCAPSULATION_KEY_BASE64_CHARS);
    const r = tryParseEncapsulationKey(good);
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.bytes).toHaveLength(ENCAPSULATION_KEY_BYTES);
  });

  // A coefficient of 4095 (0xFFF) in the first slot: above q, so the key must be refused.
  const overModulus = Uint8Array.from(goodBytes);
  overModulus[0] = 0xff;
  overModulus[1] = overModulus[1]! | 0x0f;
  // The last coefficient of t̂ (index 767, the high 12 bits of bytes 1149..1151) set to 3329 = q.
  const lastAtQ = Uint8Array.from(goodBytes);
  lastAtQ[1150] = (lastAtQ[1150]! & 0x0f) | ((Q_LOW_NIBBLE & 0x0f) << 4);
  lastAtQ[1151] = Q_HIGH_BYTE;

  // 1184 bytes leave 2 unused bits in the last base64 character before the `=`: setting one gives
  // a second spelling of the same bytes, which Node's decoder would silently accept.
  const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const setTrailingBit = (s: string): string => s.slice(0, -2) + ALPHABET[ALPHABET.indexOf(s.at(-2)!) | 1]! + '=';
  const cases: [string, unknown, RegExp][] = [
    ['not a string', 42, /not a string/],
    ['empty', '', /has 0 characters, expected 1580/],
    ['too long', good + 'AAAA', /has 1584 characters/],
    ['one byte short', b64(goodBytes.subarray(1)), /decodes to 1183 bytes, expected 1184/],
    ['url-safe alphabet', good.replace(/\+/g, '-').replace(/\//g, '_').slice(0, 1579) + '-', /not standard base64/],
    ['whitespace inside', ' ' + good.slice(1), /not standard base64/],
    ['control character', '\u0007' + good.slice(1), /not standard base64/],
    ['two paddings', good.slice(0, 1578) + '==', /decodes to 1183 bytes/],
    ['non-zero trailing bits', setTrailingBit(good), /not canonical base64/],
    ['coefficient 4095', b64(overModulus), /modulus check \(coefficient 0 /],
    ['last coefficient equal to q', b64(lastAtQ), /modulus check \(coefficient 767 /],
  ];

  it.each(cases)('refuses %s with a clear error and never throws', (_name, input, message) => {
    let r: ReturnType<typeof tryParseEncapsulationKey> | undefined;
    expect(() => (r = tryParseEncapsulationKey(input))).not.toThrow();
    expect(r?.ok).toBe(false);
    if (r && !r.ok) {
      expect(r.error).toMatch(message);
      // The error never echoes the key.
      expect(r.error).not.toContain(good.slice(0, 16));
    }
  });

  it('modulusViolation accepts q-1 and refuses q in the same slot', () => {
    const k = Uint8Array.from(goodBytes);
    k[0] = 3328 & 0xff;
    k[1] = (k[1]! & 0xf0) | (3328 >> 8);
    expect(modulusViolation(k)).toBeUndefined();
    k[0] = 3329 & 0xff;
    k[1] = (k[1]! & 0xf0) | (3329 >> 8);
    expect(modulusViolation(k)).toBe(0);
  });

  it('parseEncapsulationKey throws KEY_INVALID for our own corrupted value', () => {
    expect(() => parseEncapsulationKey('AAAA' as EncapsulationKey)).toThrow(/expected 1580/);
  });
});
