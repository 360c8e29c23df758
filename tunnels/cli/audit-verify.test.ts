/**
 * `sealctl audit verify` pins the signer: a forgery re-signed with another key, or any report
 * checked without a pin, exits non-zero and says how to pin.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sodiumReady } from '../../keymgr/keys.js';
import { auditFixture, healthyStatusNodes } from '../../test/status-fixtures.js';
import { prettyCanonical } from '../audit/canonical.js';
import { loadOrCreateSigningKey, signReport, type SigningKey } from '../audit/sign.js';
import { runVerify } from './audit.js';

let dir: string;
let key: SigningKey;
let other: SigningKey;
let good: string;
let forged: string;
beforeAll(async () => {
  await sodiumReady();
  dir = await mkdtemp(join(tmpdir(), 'sealnet-verify-'));
  key = await loadOrCreateSigningKey(join(dir, 'signing.key'));
  other = await loadOrCreateSigningKey(join(dir, 'other.key'));
  const body = auditFixture(healthyStatusNodes());
  good = join(dir, 'good.json');
  forged = join(dir, 'forged.json');
  await writeFile(good, prettyCanonical(await signReport(body, key)));
  await writeFile(forged, prettyCanonical(await signReport(body, other)));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function verify(args: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runVerify({ args, json: false, write: (s) => void (out += s) });
  return { code, out };
}

describe('sealctl audit verify pins the signer', () => {
  it('refuses an unpinned verification (even of an intact report) and says how to pin', async () => {
    for (const f of [good, forged]) {
      const r = await verify([f]);
      expect(r.code).toBe(1);
      expect(r.out).toContain('NOT VERIFIED');
      expect(r.out).toContain('--public-key FILE');
      expect(r.out).toContain('--fingerprint');
    }
  });

  it('accepts the right signer by key file, fingerprint or trust file; refuses the forgery each way', async () => {
    const trust = join(dir, 'trust');
    await writeFile(trust, `# audit signers\n${key.fingerprint}\n`);
    for (const pin of [
      ['--public-key', join(dir, 'signing.pub')],
      ['--fingerprint', key.fingerprint],
      ['--fingerprint', key.fingerprint.slice('sha256:'.length).toUpperCase()],
      ['--trust', trust],
    ]) {
      expect((await verify([good, ...pin])).code).toBe(0);
      const f = await verify([forged, ...pin]);
      expect([f.code, f.out]).toEqual([1, expect.stringContaining(other.fingerprint)]);
    }
  });

  it('refuses a malformed fingerprint and an empty trust file', async () => {
    await expect(verify([good, '--fingerprint', 'abc'])).rejects.toThrow('not a fingerprint');
    const empty = join(dir, 'empty-trust');
    await writeFile(empty, '# nothing\n');
    await expect(verify([good, '--trust', empty])).rejects.toThrow('lists no fingerprint');
  });
});
