import { beforeAll, describe, expect, it } from '@jest/globals';
import { hkdfSync, randomBytes } from 'node:crypto';
import {
  generateKeyPair,
  lowOrderPoints,
  parsePrivateKey,
  publicKeyFromBytes,
  sodiumReady,
  type KeyPair,
  type PublicKey,
  type Sodium,
} from '../keymgr/keys.js';
import {
  deriveSaKey,
  hkdfSha256,
  KDF_LABEL,
  KDF_LABEL_GENERATIONS,
  saKeyInfo,
  sharedSecret,
  type SaKeyContext,
} from './kdf.js';
import { SpiAllocator } from '../tunnels/plan/spi.js';

const hex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const range = (from: number, to: number): Uint8Array => Uint8Array.from({ length: to - from + 1 }, (_, i) => from + i);

let sodium: Sodium;
beforeAll(async () => {
  sodium = await sodiumReady();
});

describe('HKDF-SHA256 (RFC 5869 appendix A)', () => {
  it('A.1: basic test case', () => {
    const okm = hkdfSha256(new Uint8Array(22).fill(0x0b), range(0x00, 0x0c), range(0xf0, 0xf9), 42);
    expect(toHex(okm)).toBe('3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865');
  });

  it('A.2: longer inputs and outputs', () => {
    const okm = hkdfSha256(range(0x00, 0x4f), range(0x60, 0xaf), range(0xb0, 0xff), 82);
    expect(toHex(okm)).toBe(
      'b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87',
    );
  });

  it('A.3: zero-length salt and info', () => {
    const okm = hkdfSha256(new Uint8Array(22).fill(0x0b), new Uint8Array(0), new Uint8Array(0), 42);
    expect(toHex(okm)).toBe('8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8');
  });

  it('agrees with node:crypto hkdfSync on random inputs', () => {
    for (let i = 0; i < 50; i++) {
      const ikm = randomBytes(1 + (i % 70));
      const salt = randomBytes(i % 40);
      const info = randomBytes(i % 90);
      const len = 1 + ((i * 37) % 300);
      expect(toHex(hkdfSha256(ikm, salt, info, len))).toBe(
        Buffer.from(hkdfSync('sha256', ikm, salt, info, len)).toString('hex'),
      );
    }
  });

  it('refuses output lengths outside 1..255*HashLen', () => {
    expect(() => hkdfSha256(new Uint8Array(1), new Uint8Array(0), new Uint8Array(0), 0)).toThrow(/output length/);
    expect(() => hkdfSha256(new Uint8Array(1), new Uint8Array(0), new Uint8Array(0), 255 * 32 + 1)).toThrow(
      /output length/,
    );
    expect(hkdfSha256(new Uint8Array(1), new Uint8Array(0), new Uint8Array(0), 255 * 32)).toHaveLength(255 * 32);
  });
});

describe('X25519 shared secret', () => {
  it('matches RFC 7748 section 6.1 from both sides', () => {
    const alice = parsePrivateKey(hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'));
    const bob = parsePrivateKey(hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'));
    const alicePub = publicKeyFromBytes(hex('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a'));
    const bobPub = publicKeyFromBytes(hex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f'));
    const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
    expect(toHex(sharedSecret(sodium, alice, bobPub))).toBe(shared);
    expect(toHex(sharedSecret(sodium, bob, alicePub))).toBe(shared);
  });

  it('rejects every low-order point (all-zero shared secret) with KEY_INVALID', async () => {
    const { privateKey } = await generateKeyPair();
    const points = lowOrderPoints();
    expect(points.length).toBeGreaterThan(10);
    for (const p of points) {
      // The PublicKey type cannot hold these (parsing refuses them); bypass it as an attacker would.
      const bad = Buffer.from(p).toString('base64') as PublicKey;
      expect(() => sharedSecret(sodium, privateKey, bad)).toThrow(
        expect.objectContaining({ code: 'KEY_INVALID', message: expect.stringMatching(/all-zero/) }),
      );
      expect(() =>
        deriveSaKey(sodium, {
          privateKey,
          peerPublicKey: bad,
          role: 'sender',
          sa: { srcNode: 'a', dstNode: 'b', spi: 0x51000001, srcEpoch: 1, dstEpoch: 1, keyBits: 128 },
        }),
      ).toThrow(expect.objectContaining({ code: 'KEY_INVALID' }));
    }
  });
});

describe('SA key derivation', () => {
  let a: KeyPair;
  let b: KeyPair;
  beforeAll(async () => {
    a = await generateKeyPair();
    b = await generateKeyPair();
  });
  const ctx = (over: Partial<SaKeyContext> = {}): SaKeyContext => ({
    srcNode: 'node-a',
    dstNode: 'node-b',
    spi: 0x51abcdef,
    srcEpoch: 3,
    dstEpoch: 7,
    keyBits: 128,
    ...over,
  });

  // The info bytes of ctx() written out by hand: label, then the fixed fields, then `extra`.
  const goldenInfo = (label: string, extra: Uint8Array[] = []): string =>
    Buffer.concat([
      Buffer.from(label, 'ascii'),
      hex('0006'),
      Buffer.from('node-a'),
      hex('0006'),
      Buffer.from('node-b'),
      hex('51abcdef'),
      hex('00000003'),
      hex('00000007'),
      hex('01'),
      ...extra,
    ]).toString('hex');

  it('encodes info as label, length-prefixed names, SPI, epochs and algorithm (golden bytes)', () => {
    expect(toHex(saKeyInfo(ctx()))).toBe(goldenInfo(KDF_LABEL));
    expect(saKeyInfo(ctx({ keyBits: 256 })).at(-1)).toBe(2);
    // Length prefixes keep ("ab","c") and ("a","bc") apart.
    expect(toHex(saKeyInfo(ctx({ srcNode: 'ab', dstNode: 'c' })))).not.toBe(
      toHex(saKeyInfo(ctx({ srcNode: 'a', dstNode: 'bc' }))),
    );
  });

  it('with both generations set: label v2 and the two generations appended (golden bytes); 0/0 is v1 exactly', () => {
    const info = saKeyInfo(ctx({ srcGeneration: 0xdeadbeef, dstGeneration: 1 }));
    expect(toHex(info)).toBe(goldenInfo(KDF_LABEL_GENERATIONS, [hex('deadbeef'), hex('00000001')]));
    // A pair where a node publishes no generation derives exactly as before generations existed.
    expect(toHex(saKeyInfo(ctx({ srcGeneration: 0, dstGeneration: 0 })))).toBe(toHex(saKeyInfo(ctx())));
  });

  it('a new generation on either side gives the SA a new key (a reboot never reinstalls an old key)', () => {
    const key = (g: [number, number]): string =>
      toHex(
        deriveSaKey(sodium, {
          privateKey: a.privateKey,
          peerPublicKey: b.publicKey,
          role: 'sender',
          sa: ctx({ srcGeneration: g[0], dstGeneration: g[1] }),
        }),
      );
    const all = [key([0, 0]), key([1, 2]), key([3, 2]), key([1, 4]), key([2, 1])];
    expect(new Set(all).size).toBe(all.length);
  });

  it('refuses a context with one generation set and the other not, or one beyond 32 bits', () => {
    expect(() => saKeyInfo(ctx({ srcGeneration: 5 }))).toThrow(/one generation is set/);
    expect(() => saKeyInfo(ctx({ srcGeneration: 0, dstGeneration: 9 }))).toThrow(/one generation is set/);
    expect(() => saKeyInfo(ctx({ srcGeneration: 2 ** 32, dstGeneration: 1 }))).toThrow(/generation/);
  });

  it.each([128, 256] as const)('gives both ends the same %i-bit key and salt', (keyBits) => {
    const sa = ctx({ keyBits });
    const atSender = deriveSaKey(sodium, { privateKey: a.privateKey, peerPublicKey: b.publicKey, role: 'sender', sa });
    const atReceiver = deriveSaKey(sodium, {
      privateKey: b.privateKey,
      peerPublicKey: a.publicKey,
      role: 'receiver',
      sa,
    });
    expect(atSender).toHaveLength(keyBits / 8 + 4);
    expect(toHex(atSender)).toBe(toHex(atReceiver));
  });

  it('gives each direction, SPI, epoch, name and key size its own key', () => {
    // Always node A's keys; only the role and the context change.
    const key = (role: 'sender' | 'receiver', sa: SaKeyContext): string =>
      toHex(deriveSaKey(sodium, { privateKey: a.privateKey, peerPublicKey: b.publicKey, role, sa }));
    const base = key('sender', ctx());
    const variants = [
      key('receiver', ctx({ srcNode: 'node-b', dstNode: 'node-a' })), // B→A, same SPI and epochs
      key('sender', ctx({ spi: 0x51abcdee })),
      key('sender', ctx({ srcEpoch: 4 })),
      key('sender', ctx({ dstEpoch: 8 })),
      key('sender', ctx({ srcNode: 'node-c' })),
      key('sender', ctx({ keyBits: 256 })).slice(0, base.length),
      key('receiver', ctx()), // wrong role: salt order differs, so it does not match
    ];
    expect(new Set([base, ...variants]).size).toBe(variants.length + 1);
  });

  it('refuses malformed contexts', () => {
    expect(() => saKeyInfo(ctx({ srcNode: '' }))).toThrow(/node name/);
    expect(() => saKeyInfo(ctx({ dstNode: 'x'.repeat(254) }))).toThrow(/node name/);
    expect(() => saKeyInfo(ctx({ dstNode: 'node-a' }))).toThrow(/to itself/);
    expect(() => saKeyInfo(ctx({ spi: -1 }))).toThrow(/SPI/);
    expect(() => saKeyInfo(ctx({ srcEpoch: 2 ** 32 }))).toThrow(/epoch/);
    expect(() => saKeyInfo(ctx({ keyBits: 192 as 128 }))).toThrow(/key size/);
  });
});

describe('every SA of a cluster', () => {
  it('has a distinct key, and both ends of each SA derive the same one', async () => {
    // 24 nodes, each with two key epochs in play (a rotation): 24*23 pairs * 4 epoch combinations.
    const names = Array.from({ length: 24 }, (_, i) => `node-${String.fromCharCode(97 + i)}`);
    const keys = new Map<string, KeyPair[]>();
    for (const n of names) keys.set(n, [await generateKeyPair(), await generateKeyPair()]);
    const epochs = [5, 6];
    const spis = new SpiAllocator(names.map((name) => ({ name, epochs })));
    const seen = new Set<string>();
    let count = 0;
    for (const src of names) {
      for (const dst of names) {
        if (src === dst) continue;
        for (const [si, se] of epochs.entries()) {
          for (const [di, de] of epochs.entries()) {
            const sa: SaKeyContext = {
              srcNode: src,
              dstNode: dst,
              spi: spis.spi(src, dst, se, de),
              srcEpoch: se,
              dstEpoch: de,
              keyBits: 256,
            };
            const s = keys.get(src)![si]!;
            const d = keys.get(dst)![di]!;
            const atSender = toHex(
              deriveSaKey(sodium, { privateKey: s.privateKey, peerPublicKey: d.publicKey, role: 'sender', sa }),
            );
            const atReceiver = toHex(
              deriveSaKey(sodium, { privateKey: d.privateKey, peerPublicKey: s.publicKey, role: 'receiver', sa }),
            );
            expect(atReceiver).toBe(atSender);
            seen.add(atSender);
            count++;
          }
        }
      }
    }
    expect(count).toBe(24 * 23 * 4);
    expect(seen.size).toBe(count);
  }, 60_000);
});
