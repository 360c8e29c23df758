import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from '@jest/globals';
import { SealnetError } from '../common/errors.js';
import {
  decodePrivateKeyFile,
  encodePrivateKeyFile,
  fingerprint,
  generateKeyPair,
  keysEqual,
  lowOrderPoints,
  parsePrivateKey,
  parsePublicKey,
  publicKeyBytes,
  publicKeyFromBytes,
  publicKeyFromPrivate,
  sodiumReady,
  tryParsePublicKey,
  zeroKey,
  type PublicKey,
  type Sodium,
} from './keys.js';

// RFC 7748 section 6.1.
const ALICE_PRIVATE_HEX = '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a';
const ALICE_PUBLIC_HEX = '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a';
const BOB_PRIVATE_HEX = '5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb';
const BOB_PUBLIC_HEX = 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f';
const SHARED_HEX = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
const ALICE_PUBLIC_B64 = 'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=';
const BOB_PUBLIC_B64 = '3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=';
const ALICE_PRIVATE_B64 = 'dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=';

const hex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
const replaceAt = (s: string, i: number, c: string): string => s.slice(0, i) + c + s.slice(i + 1);

let sodium: Sodium;
beforeAll(async () => {
  sodium = await sodiumReady();
});

describe('RFC 7748 section 6.1 X25519 vectors', () => {
  it('derives Alice and Bob public keys from their private keys', () => {
    const alice = publicKeyFromPrivate(parsePrivateKey(hex(ALICE_PRIVATE_HEX)));
    const bob = publicKeyFromPrivate(parsePrivateKey(hex(BOB_PRIVATE_HEX)));
    expect(alice).toBe(ALICE_PUBLIC_B64);
    expect(toHex(publicKeyBytes(alice))).toBe(ALICE_PUBLIC_HEX);
    expect(toHex(publicKeyBytes(bob))).toBe(BOB_PUBLIC_HEX);
  });

  it('agrees on the shared secret both ways', () => {
    const alice = parsePrivateKey(ALICE_PRIVATE_B64);
    const bob = parsePrivateKey(hex(BOB_PRIVATE_HEX));
    const k1 = sodium.crypto_scalarmult(alice, publicKeyBytes(parsePublicKey(BOB_PUBLIC_B64)));
    const k2 = sodium.crypto_scalarmult(bob, publicKeyBytes(parsePublicKey(ALICE_PUBLIC_B64)));
    expect(toHex(k1)).toBe(SHARED_HEX);
    expect(toHex(k2)).toBe(SHARED_HEX);
  });
});

describe('parsePublicKey', () => {
  it('accepts the canonical spelling and returns it unchanged', () => {
    expect(parsePublicKey(ALICE_PUBLIC_B64)).toBe(ALICE_PUBLIC_B64);
    expect(tryParsePublicKey(BOB_PUBLIC_B64)).toEqual({ ok: true, key: BOB_PUBLIC_B64 });
  });

  // The Alice key ends in "...Tmo=": 'o' is 40 (0b101000), so its 2 unused low bits are zero.
  const nonCanonical = replaceAt(ALICE_PUBLIC_B64, 42, 'p');
  const cases: ReadonlyArray<readonly [string, string, string]> = [
    ['empty', '', 'public key is empty'],
    ['43 characters', ALICE_PUBLIC_B64.slice(1), 'public key is 43 characters, want 44 (base64 of 32 bytes)'],
    ['45 characters', 'A' + ALICE_PUBLIC_B64, 'public key is 45 characters, want 44 (base64 of 32 bytes)'],
    ['trailing garbage', ALICE_PUBLIC_B64 + 'AAAA', 'public key is 48 characters, want 44 (base64 of 32 bytes)'],
    ['trailing newline', ALICE_PUBLIC_B64 + '\n', 'public key contains whitespace'],
    ['leading space', ' ' + ALICE_PUBLIC_B64, 'public key contains whitespace'],
    ['inner space at full length', replaceAt(ALICE_PUBLIC_B64, 10, ' '), 'public key contains whitespace'],
    ['tab', replaceAt(ALICE_PUBLIC_B64, 0, '\t'), 'public key contains whitespace'],
    [
      'URL-safe "-"',
      replaceAt(ALICE_PUBLIC_B64, 5, '-'),
      "public key uses the URL-safe base64 alphabet ('-' or '_'), want standard base64 ('+' and '/')",
    ],
    [
      'URL-safe "_"',
      ALICE_PUBLIC_B64.replace('/', '_'),
      "public key uses the URL-safe base64 alphabet ('-' or '_'), want standard base64 ('+' and '/')",
    ],
    [
      'invalid character',
      replaceAt(ALICE_PUBLIC_B64, 3, '*'),
      'public key has a character that is not standard base64 at position 4',
    ],
    [
      'non-ASCII character',
      replaceAt(ALICE_PUBLIC_B64, 7, 'é'),
      'public key has a character that is not standard base64 at position 8',
    ],
    [
      'missing padding (44 data chars)',
      ALICE_PUBLIC_B64.slice(0, 43) + 'A',
      "public key does not end with '=' (base64 of 32 bytes ends with exactly one '=' padding character)",
    ],
    [
      'missing padding (43 chars, unpadded)',
      ALICE_PUBLIC_B64.slice(0, 43),
      'public key is 43 characters, want 44 (base64 of 32 bytes)',
    ],
    [
      'two padding characters',
      ALICE_PUBLIC_B64.slice(0, 42) + '==',
      "public key has 2 '=' padding characters, want 1 (base64 of 32 bytes)",
    ],
    [
      'padding in the middle',
      replaceAt(ALICE_PUBLIC_B64, 20, '='),
      "public key has '=' at position 21, before the end",
    ],
    [
      'non-canonical last character',
      nonCanonical,
      "public key is not canonical base64 (the last character's unused bits are not zero)",
    ],
    ['all zeros', b64(new Uint8Array(32)), 'public key is a low-order point'],
    [
      'high bit set (non-canonical u)',
      b64(Uint8Array.from([...hex(ALICE_PUBLIC_HEX).subarray(0, 31), 0x6a | 0x80])),
      'public key is not a canonical X25519 u-coordinate (it is not below 2^255-19)',
    ],
    [
      'u = p + 2 (non-canonical u)',
      b64(Uint8Array.from([0xef, ...new Array<number>(30).fill(0xff), 0x7f])),
      'public key is not a canonical X25519 u-coordinate (it is not below 2^255-19)',
    ],
    [
      'u = 2^255 - 1',
      b64(Uint8Array.from([...new Array<number>(31).fill(0xff), 0x7f])),
      'public key is not a canonical X25519 u-coordinate (it is not below 2^255-19)',
    ],
  ];

  it.each(cases)('rejects %s', (_name, text, message) => {
    const r = tryParsePublicKey(text);
    expect(r).toEqual({ ok: false, error: message });
    let thrown: unknown;
    try {
      parsePublicKey(text);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(SealnetError);
    expect((thrown as SealnetError).code).toBe('KEY_INVALID');
    expect((thrown as SealnetError).message).toBe(message);
  });

  it('the non-canonical spelling decodes to the same bytes as the canonical one (why it must be rejected)', () => {
    expect(nonCanonical).not.toBe(ALICE_PUBLIC_B64);
    expect(Buffer.from(nonCanonical, 'base64').toString('hex')).toBe(ALICE_PUBLIC_HEX);
  });

  it('accepts u = p - 2: canonical and not on the list (p - 1 is)', () => {
    const pMinus2 = Uint8Array.from([0xeb, ...new Array<number>(30).fill(0xff), 0x7f]);
    expect(tryParsePublicKey(b64(pMinus2)).ok).toBe(true);
  });
});

describe('low-order points', () => {
  const points = lowOrderPoints();

  it('lists the 7 libsodium blacklist entries with and without the high bit', () => {
    expect(points).toHaveLength(14);
    const ff = (n: number): string => 'ff'.repeat(n);
    expect(points.map(toHex)).toEqual([
      '00'.repeat(32),
      '00'.repeat(31) + '80',
      '01' + '00'.repeat(31),
      '01' + '00'.repeat(30) + '80',
      'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
      'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880',
      '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
      '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7',
      'ec' + ff(30) + '7f',
      'ec' + ff(31),
      'ed' + ff(30) + '7f',
      'ed' + ff(31),
      'ee' + ff(30) + '7f',
      'ee' + ff(31),
    ]);
  });

  it.each(points.map((p) => [toHex(p), p] as const))('rejects %s as a low-order point', (_h, point) => {
    expect(tryParsePublicKey(b64(point))).toEqual({ ok: false, error: 'public key is a low-order point' });
    expect(() => publicKeyFromBytes(point)).toThrow('public key is a low-order point');
  });

  it.each(points.map((p) => [toHex(p), p] as const))(
    'libsodium refuses X25519 with %s too (the list is right)',
    (_h, point) => {
      const scalar = parsePrivateKey(hex(ALICE_PRIVATE_HEX));
      expect(() => sodium.crypto_scalarmult(scalar, point)).toThrow();
    },
  );
});

describe('private keys', () => {
  it('parses raw bytes (copying them) and base64', () => {
    const raw = hex(ALICE_PRIVATE_HEX);
    const fromBytes = parsePrivateKey(raw);
    raw.fill(0);
    expect(toHex(fromBytes)).toBe(ALICE_PRIVATE_HEX);
    expect(toHex(parsePrivateKey(ALICE_PRIVATE_B64))).toBe(ALICE_PRIVATE_HEX);
  });

  const badPrivate: ReadonlyArray<[string, Uint8Array | string, string]> = [
    ['31 bytes', new Uint8Array(31).fill(1), 'private key is 31 bytes, want 32'],
    ['33 bytes', new Uint8Array(33).fill(1), 'private key is 33 bytes, want 32'],
    ['all-zero bytes', new Uint8Array(32), 'private key is all zeros'],
    ['all-zero base64', b64(new Uint8Array(32)), 'private key is all zeros'],
    ['43 characters', ALICE_PRIVATE_B64.slice(1), 'private key is 43 characters, want 44 (base64 of 32 bytes)'],
    [
      'URL-safe',
      replaceAt(ALICE_PRIVATE_B64, 2, '_'),
      "private key uses the URL-safe base64 alphabet ('-' or '_'), want standard base64 ('+' and '/')",
    ],
  ];
  it.each(badPrivate)('rejects %s', (_name, input, message) => {
    expect(() => parsePrivateKey(input)).toThrow(message);
  });

  it('error messages never contain the key text', () => {
    const truncated = ALICE_PRIVATE_B64.slice(0, 40);
    let message = '';
    try {
      parsePrivateKey(truncated);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toBe('private key is 40 characters, want 44 (base64 of 32 bytes)');
    expect(message).not.toContain(truncated.slice(0, 8));
  });

  it('encodes the key file as base64 plus newline and decodes it back', () => {
    const priv = parsePrivateKey(hex(ALICE_PRIVATE_HEX));
    const file = encodePrivateKeyFile(priv);
    expect(Buffer.from(file).toString('latin1')).toBe(`${ALICE_PRIVATE_B64}\n`);
    expect(toHex(decodePrivateKeyFile(file))).toBe(ALICE_PRIVATE_HEX);
    expect(toHex(decodePrivateKeyFile(file.subarray(0, 44)))).toBe(ALICE_PRIVATE_HEX);
  });

  it('rejects key files with anything else around the key', () => {
    const enc = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));
    expect(() => decodePrivateKeyFile(enc(`${ALICE_PRIVATE_B64}\n\n`))).toThrow('private key contains whitespace');
    expect(() => decodePrivateKeyFile(enc(`${ALICE_PRIVATE_B64}\r\n`))).toThrow('private key contains whitespace');
    expect(() => decodePrivateKeyFile(enc(''))).toThrow('private key is empty');
    expect(() => decodePrivateKeyFile(new Uint8Array(44))).toThrow(
      'private key has a character that is not standard base64 at position 1',
    );
  });

  it('generates clamped keys whose public key matches, and distinct keys each time', async () => {
    const a = await generateKeyPair();
    const b = await generateKeyPair();
    expect(a.privateKey).toHaveLength(32);
    expect((a.privateKey[0] ?? 0) & 7).toBe(0);
    expect((a.privateKey[31] ?? 0) & 0xc0).toBe(0x40);
    expect(a.publicKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(parsePublicKey(a.publicKey)).toBe(a.publicKey);
    expect(publicKeyFromPrivate(a.privateKey)).toBe(a.publicKey);
    expect(a.publicKey).not.toBe(b.publicKey);
    // The pair actually works for X25519 with another key.
    const s1 = sodium.crypto_scalarmult(a.privateKey, publicKeyBytes(b.publicKey));
    const s2 = sodium.crypto_scalarmult(b.privateKey, publicKeyBytes(a.publicKey));
    expect(toHex(s1)).toBe(toHex(s2));
  });

  it('zeroKey wipes the bytes', async () => {
    const { privateKey } = await generateKeyPair();
    zeroKey(privateKey);
    expect(Array.from(privateKey)).toEqual(new Array<number>(32).fill(0));
  });
});

describe('public key helpers', () => {
  it('round-trips bytes and text', () => {
    const key = parsePublicKey(ALICE_PUBLIC_B64);
    const bytes = publicKeyBytes(key);
    expect(toHex(bytes)).toBe(ALICE_PUBLIC_HEX);
    expect(publicKeyFromBytes(bytes)).toBe(ALICE_PUBLIC_B64);
    bytes.fill(0); // a copy: the key is unaffected
    expect(toHex(publicKeyBytes(key))).toBe(ALICE_PUBLIC_HEX);
  });

  it('keysEqual compares keys', () => {
    const a = parsePublicKey(ALICE_PUBLIC_B64);
    const b = parsePublicKey(BOB_PUBLIC_B64);
    expect(keysEqual(a, parsePublicKey(`${ALICE_PUBLIC_B64}`))).toBe(true);
    expect(keysEqual(a, b)).toBe(false);
    // Differs in the last byte only.
    const almost = publicKeyFromBytes(Uint8Array.from([...hex(ALICE_PUBLIC_HEX).subarray(0, 31), 0x6b]));
    expect(keysEqual(a, almost)).toBe(false);
    expect(keysEqual(b, b)).toBe(true);
  });

  it('fingerprint is the hex of the first 8 bytes of SHA-256 of the key bytes', () => {
    const key = parsePublicKey(ALICE_PUBLIC_B64);
    // sha256sum of the 32 raw bytes: 300c9c9603b92a4b39ed3958bf924011... / f35e5616160a30bf...
    expect(fingerprint(key)).toBe('300c9c9603b92a4b');
    expect(fingerprint(parsePublicKey(BOB_PUBLIC_B64))).toBe('f35e5616160a30bf');
    expect(ALICE_PUBLIC_B64).not.toContain(fingerprint(key));
  });

  it('fingerprint stays the same for a key seen before and after its bounded cache filled and was cleared', () => {
    const direct = (k: PublicKey): string =>
      createHash('sha256').update(Buffer.from(k, 'base64')).digest().subarray(0, 8).toString('hex');
    const alice = parsePublicKey(ALICE_PUBLIC_B64);
    expect([fingerprint(alice), fingerprint(alice)]).toEqual(['300c9c9603b92a4b', '300c9c9603b92a4b']);
    // More distinct keys than the cache holds (65,536): every answer still the key's own.
    const keys = Array.from({ length: 70_000 }, (_, i) => {
      const b = new Uint8Array(32);
      new DataView(b.buffer).setUint32(0, i + 1);
      return publicKeyFromBytes(b);
    });
    const wrong = keys.filter((k) => fingerprint(k) !== direct(k) || fingerprint(k) !== direct(k));
    expect(wrong).toEqual([]);
    expect(fingerprint(alice)).toBe('300c9c9603b92a4b');
    expect(fingerprint(parsePublicKey(BOB_PUBLIC_B64))).toBe('f35e5616160a30bf');
  });

  it('PublicKey is a plain string at runtime', () => {
    const key: PublicKey = parsePublicKey(ALICE_PUBLIC_B64);
    expect(typeof key).toBe('string');
    expect(JSON.stringify({ key })).toBe(`{"key":"${ALICE_PUBLIC_B64}"}`);
  });
});
