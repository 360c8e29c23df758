/**
 * Canonical JSON and `__proto__`. `JSON.parse` makes `"__proto__"` an own
 * data member of the parsed object, but assigning it to an ordinary object (`out[k] = x`) sets the
 * object's prototype instead: the member vanished from the canonical form, so two documents that
 * differ only in it signed to the same bytes and shared one signature.
 */
import { sodiumReady } from '../../keymgr/keys.js';
import { canonicalJson, prettyCanonical } from './canonical.js';
import { checkSignature, keyFingerprint, signReport, type SigningKey } from './sign.js';

/** An in-memory Ed25519 key (no file: the test is about the message, not the key store). */
async function memoryKey(): Promise<SigningKey> {
  const sodium = await sodiumReady();
  const kp = sodium.crypto_sign_keypair();
  return {
    file: '(memory)',
    created: true,
    publicKey: kp.publicKey,
    fingerprint: keyFingerprint(kp.publicKey),
    sign: async (m: Uint8Array) => sodium.crypto_sign_detached(m, kp.privateKey),
  };
}

describe('canonical JSON keeps __proto__ members', () => {
  const plain = JSON.parse('{"verdict":"compliant","pairs":[{"a":"n1","b":"n2"}]}') as object;
  const withProto = JSON.parse(
    '{"verdict":"compliant","__proto__":{"verdict":"non-compliant"},"pairs":[{"a":"n1","b":"n2","__proto__":"x"}]}',
  ) as object;

  it('writes a __proto__ member like any other member, at every depth, in sorted position', () => {
    expect(canonicalJson(withProto)).toBe(
      '{"__proto__":{"verdict":"non-compliant"},"pairs":[{"__proto__":"x","a":"n1","b":"n2"}],"verdict":"compliant"}',
    );
    // The pretty form (the report file) keeps it too, so a file with the member round-trips.
    expect(JSON.parse(prettyCanonical(withProto))).toEqual(withProto);
    expect(prettyCanonical(JSON.parse(prettyCanonical(withProto)))).toBe(prettyCanonical(withProto));
  });

  it('never lets a __proto__ member change the prototype of the output', () => {
    const out = JSON.parse(canonicalJson(JSON.parse('{"__proto__":{"polluted":true}}'))) as Record<string, unknown>;
    expect(Object.keys(out)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('gives two documents that differ only in __proto__ different canonical forms and signatures', async () => {
    expect(canonicalJson(withProto)).not.toBe(canonicalJson(plain));
    const key = await memoryKey();
    const signed = await signReport(plain, key);
    expect(await checkSignature(plain, signed.signature)).toBe(true);
    // The signature over the plain document must not verify the one with the extra member.
    expect(await checkSignature(withProto, signed.signature)).toBe(false);
    const signedProto = await signReport(withProto, key);
    expect(await checkSignature(withProto, signedProto.signature)).toBe(true);
    expect(await checkSignature(plain, signedProto.signature)).toBe(false);
  });
});
