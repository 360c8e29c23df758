import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sodiumReady } from '../../keymgr/keys.js';
import {
  auditFixture,
  healthyStatusNodes,
  pqStatusNodes,
  statusNode,
  statusPq,
  statusReport,
} from '../../test/status-fixtures.js';
import { canonicalJson, prettyCanonical } from './canonical.js';
import { parsePolicy, profile, type AuditPolicy } from './policy.js';
import { renderMarkdown } from './render.js';
import { expectedVerdict, type AuditReport, type AuditReportBody } from './report.js';
import {
  checkSignature,
  loadOrCreateSigningKey,
  readPublicKeyFile,
  signReport,
  SIGNATURE_DOMAIN,
  type SigningKey,
} from './sign.js';
import { verifyReport } from './verify.js';

let dir: string;
let key: SigningKey;
let other: SigningKey;

beforeAll(async () => {
  await sodiumReady();
  dir = await mkdtemp(join(tmpdir(), 'sealnet-sign-'));
  key = await loadOrCreateSigningKey(join(dir, 'audit', 'signing.key'));
  other = await loadOrCreateSigningKey(join(dir, 'other.key'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function body(nodes = healthyStatusNodes(), policy: AuditPolicy = profile('default')): AuditReportBody {
  return auditFixture(nodes, { policy });
}

async function signed(b = body()): Promise<{ report: AuditReport; file: Uint8Array; page: Uint8Array }> {
  const report = await signReport(b, key);
  return {
    report,
    file: new TextEncoder().encode(prettyCanonical(report)),
    page: new TextEncoder().encode(renderMarkdown(report)),
  };
}

describe('canonical JSON', () => {
  it('sorts keys at every depth, drops undefined members, and is what JSON.stringify writes for values', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: true, y: null }], c: 'é\n"' }, u: undefined })).toBe(
      '{"a":{"c":"é\\n\\"","d":[3,{"y":null,"z":true}]},"b":1}',
    );
    expect(canonicalJson({ n: 1e21, m: 0.1, k: -0 })).toBe('{"k":0,"m":0.1,"n":1e+21}');
    expect(prettyCanonical({ b: [1], a: 2 })).toBe('{\n  "a": 2,\n  "b": [\n    1\n  ]\n}\n');
  });

  it('refuses what JSON cannot carry exactly', () => {
    expect(() => canonicalJson({ x: Number.NaN })).toThrow('not a finite number');
    expect(() => canonicalJson({ x: [undefined] })).toThrow('$.x[0] is undefined');
    expect(() => canonicalJson({ x: new Date(0) })).toThrow('not a plain object');
    expect(() => canonicalJson({ x: 1n })).toThrow('has type bigint');
  });
});

describe('signing key', () => {
  it('is created 0600 with a public key beside it, and the same key comes back', async () => {
    const f = join(dir, 'audit', 'signing.key');
    expect((await stat(f)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'audit'))).mode & 0o777).toBe(0o700);
    expect(key.created).toBe(true);
    const again = await loadOrCreateSigningKey(f);
    expect(again.created).toBe(false);
    expect(Buffer.from(again.publicKey).equals(Buffer.from(key.publicKey))).toBe(true);
    expect(
      Buffer.from(await readPublicKeyFile(join(dir, 'audit', 'signing.pub'))).equals(Buffer.from(key.publicKey)),
    ).toBe(true);
    expect(key.fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('is refused when others can read it, or when it is not a seed', async () => {
    const f = join(dir, 'loose.key');
    await loadOrCreateSigningKey(f);
    await chmod(f, 0o644);
    await expect(loadOrCreateSigningKey(f)).rejects.toThrow(/has mode 0644: others can read it; run chmod 600/);
    const g = join(dir, 'bad.key');
    await writeFile(g, 'not a key\n', { mode: 0o600 });
    await expect(loadOrCreateSigningKey(g)).rejects.toThrow('must hold one line: the base64 of a 32-byte Ed25519 seed');
  });
});

describe('signed reports', () => {
  it('verify: canonical layout, signature, signer, verdict and page all check out', async () => {
    const s = await signed();
    const r = await verifyReport(s.file, { publicKey: key.publicKey, markdown: s.page });
    expect(r).toEqual({
      ok: true,
      problems: [],
      checks: ['structure', 'canonical layout', 'signature', 'signer', 'verdict', 'markdown page'],
      signer: key.fingerprint,
      verdict: 'compliant',
      signerUnpinned: false,
    });
    expect(await checkSignature(body(), s.report.signature)).toBe(true);
  });

  it('fails when any single byte of the report is changed (every position)', async () => {
    // A small report keeps this exhaustive: two nodes, one pair.
    const s = await signed(body(healthyStatusNodes(2)));
    const failures: number[] = [];
    for (let i = 0; i < s.file.length; i++) {
      const t = Uint8Array.from(s.file);
      t[i] = (t[i] ?? 0) ^ 0x01;
      const r = await verifyReport(t, {});
      if (r.ok) failures.push(i);
    }
    expect(s.file.length).toBeGreaterThan(2000);
    expect(failures).toEqual([]);
  });

  it('fails when a byte is inserted or removed, and names what broke', async () => {
    const s = await signed();
    const text = new TextDecoder().decode(s.file);
    const flipped = text.replace('"verdict": "compliant"', '"verdict": "compliamt"');
    expect((await verifyReport(new TextEncoder().encode(flipped), {})).problems).toEqual([
      'verdict must be "compliant" or "non-compliant"',
    ]);
    const renumbered = text.replace('"pairs": 3', '"pairs": 4');
    expect((await verifyReport(new TextEncoder().encode(renumbered), {})).problems).toEqual([
      'the Ed25519 signature does not match the report content',
      "the verdict or summary does not follow from the report's pairs and violations (want compliant, complete true)",
    ]);
    const spaced = text.replace('{\n  "complete"', '{\n   "complete"');
    expect((await verifyReport(new TextEncoder().encode(spaced), {})).problems).toEqual([
      'the file is not byte-for-byte in the canonical layout sealctl writes (it was edited)',
    ]);
    expect((await verifyReport(s.file.subarray(0, s.file.length - 1), {})).ok).toBe(false);
  });

  it('fails when the page beside it was edited', async () => {
    const s = await signed();
    const page = new TextDecoder().decode(s.page).replace('COMPLIANT', 'COMPLIANT!');
    expect((await verifyReport(s.file, { markdown: new TextEncoder().encode(page) })).problems).toEqual([
      'the Markdown page does not match the signed report (it was edited)',
    ]);
  });

  it('a forged report re-signed with another key passes only without --public-key, and says the signer is unpinned', async () => {
    const nodes = healthyStatusNodes();
    nodes[0] = statusNode(
      'n1',
      statusReport('n1', ['n1', 'n2', 'n3'], { steering: { enabled: true, failClosed: false, nodeToNode: false } }),
    );
    const real = body(nodes);
    expect(real.verdict).toBe('non-compliant');
    // The forger drops the violations and recomputes everything, then signs with their own key.
    const forged: AuditReportBody = {
      ...real,
      verdict: 'compliant',
      violations: [],
      pairs: real.pairs.map((p) => ({ ...p, compliant: true, violations: [] })),
      nodes: real.nodes.map((n) => ({ ...n, violations: [] })),
      summary: { ...real.summary, compliantPairs: 3, nonCompliantPairs: 0, violations: 0 },
    };
    const f = await signReport(forged, other);
    const bytes = new TextEncoder().encode(prettyCanonical(f));
    const unpinned = await verifyReport(bytes, {});
    expect([unpinned.ok, unpinned.signerUnpinned]).toEqual([true, true]);
    const pinned = await verifyReport(bytes, { publicKey: key.publicKey });
    expect(pinned.problems).toEqual([`the report was signed by ${other.fingerprint}, not by the given public key`]);
  });

  it('a verdict that does not follow from the content fails even with a valid signature', async () => {
    const nodes = healthyStatusNodes();
    nodes[0] = statusNode('n1', statusReport('n1', ['n1', 'n2', 'n3'], {}, { n2: { state: 'dropping' } }));
    const real = body(nodes);
    const lie = await signReport({ ...real, verdict: 'compliant' as const }, key);
    const r = await verifyReport(new TextEncoder().encode(prettyCanonical(lie)), { publicKey: key.publicKey });
    expect(r.problems).toEqual([
      "the verdict or summary does not follow from the report's pairs and violations (want non-compliant, complete true)",
    ]);
  });

  it('signs the domain-separated canonical body', async () => {
    const sodium = await sodiumReady();
    const s = await signed();
    const { signature, ...rest } = s.report;
    const msg = new TextEncoder().encode(SIGNATURE_DOMAIN + canonicalJson(rest));
    expect(sodium.crypto_sign_verify_detached(Buffer.from(signature.value, 'base64'), msg, key.publicKey)).toBe(true);
    expect(
      sodium.crypto_sign_verify_detached(
        Buffer.from(signature.value, 'base64'),
        new TextEncoder().encode(canonicalJson(rest)),
        key.publicKey,
      ),
    ).toBe(false);
    expect(await readFile(join(dir, 'audit', 'signing.key'), 'utf8')).not.toContain(signature.publicKey);
  });
});

describe('signed reports with post-quantum evidence', () => {
  const requirePq = (): AuditPolicy => parsePolicy('{"version":1,"requirePostQuantum":true}', 'p.json');
  /** n3 runs `preferred` without n1's ML-KEM key: the pair is encrypted, classical only. */
  function pqBody(): AuditReportBody {
    const nodes = pqStatusNodes();
    const peers = Object.fromEntries(
      ['n1', 'n2'].map((o) => [
        o,
        {
          pq:
            o === 'n1'
              ? statusPq('n3', o, {
                  protection: 'classical',
                  phase: 'idle',
                  secretAgeSeconds: undefined,
                  lastRenewal: undefined,
                  reason: 'the peer publishes no usable ML-KEM encapsulation key',
                })
              : statusPq('n3', o),
        },
      ]),
    );
    nodes[2] = statusNode('n3', statusReport('n3', ['n1', 'n2', 'n3'], {}, peers));
    return body(nodes, requirePq());
  }

  it('a report with the new fields verifies, page included; the page shows them', async () => {
    const b = pqBody();
    expect([b.verdict, b.summary.postQuantumPairs, b.summary.nonPostQuantumPairs]).toEqual(['non-compliant', 2, 1]);
    expect(b.violations.map((v) => `${v.code}@${v.subject}`)).toEqual(['post-quantum-missing@n1~n3']);
    const s = await signed(b);
    const r = await verifyReport(s.file, { publicKey: key.publicKey, markdown: s.page });
    expect([r.ok, r.problems]).toEqual([true, []]);
    const page = new TextDecoder().decode(s.page);
    expect(page).toContain(
      '- **Post-quantum:** 2 pairs protected by a confirmed ML-KEM-768 secret (both ends agree), 1 not',
    );
    expect(page).toContain('post-quantum pair secret required');
    expect(page).toContain('| n1 ↔ n3 | **no** | n1: ');
    expect(page).toContain('n3: **not confirmed**: n3 reports protection classical with n1');
  });

  it('fails when a post-quantum field of the signed file is changed', async () => {
    const s = await signed(pqBody());
    const text = new TextDecoder().decode(s.file);
    for (const [from, to] of [
      ['"protection": "classical"', '"protection": "hybrid"'],
      ['"postQuantumPairs": 2', '"postQuantumPairs": 3'],
      ['"requirePostQuantum": true', '"requirePostQuantum": false'],
      ['"secretAgeSeconds": 120', '"secretAgeSeconds": 121'],
    ] as const) {
      expect(text).toContain(from);
      const r = await verifyReport(new TextEncoder().encode(text.replace(from, to)), { publicKey: key.publicKey });
      expect([from, r.ok, r.problems[0]]).toEqual([
        from,
        false,
        'the Ed25519 signature does not match the report content',
      ]);
    }
  });

  it('a signed post-quantum claim that does not follow from its two ends, or a dropped pq violation, fails', async () => {
    const real = pqBody();
    const flipped = {
      ...real,
      pairs: real.pairs.map((p) =>
        p.postQuantum !== undefined && !p.postQuantum.confirmed
          ? { ...p, postQuantum: { ...p.postQuantum, confirmed: true } }
          : p,
      ),
    };
    const lie1 = await signReport({ ...flipped, summary: expectedVerdict(flipped).summary }, key);
    expect(
      (await verifyReport(new TextEncoder().encode(prettyCanonical(lie1)), { publicKey: key.publicKey })).problems,
    ).toEqual(['pair n1 ↔ n3 is marked post-quantum confirmed against its two ends']);
    // The signer drops the violation and recomputes verdict and summary: still caught.
    const dropped = {
      ...real,
      violations: [],
      pairs: real.pairs.map((p) => ({ ...p, violations: [], compliant: true })),
    };
    const lie2 = await signReport({ ...dropped, ...expectedVerdict(dropped) }, key);
    expect(
      (await verifyReport(new TextEncoder().encode(prettyCanonical(lie2)), { publicKey: key.publicKey })).problems,
    ).toEqual(['pair n1 ↔ n3 has no confirmed post-quantum secret but no post-quantum-missing violation']);
    // Evidence stripped from one pair while the summary still counts it.
    const stripped = { ...real, pairs: real.pairs.map((p, i) => (i === 0 ? { ...p, postQuantum: undefined } : p)) };
    const lie3 = await signReport(stripped, key);
    expect(
      (await verifyReport(new TextEncoder().encode(prettyCanonical(lie3)), { publicKey: key.publicKey })).problems,
    ).toEqual([
      "the verdict or summary does not follow from the report's pairs and violations (want non-compliant, complete true)",
      'pair n1 ↔ n2 carries no post-quantum evidence',
    ]);
  });

  it('a report from before issue 19 (no requirePostQuantum, no evidence) still verifies and renders as it did', async () => {
    const { requirePostQuantum: _gone, ...oldPolicy } = profile('default');
    const old = { ...body(), policy: oldPolicy as AuditPolicy };
    const s = await signed(old);
    const r = await verifyReport(s.file, { publicKey: key.publicKey, markdown: s.page });
    expect([r.ok, r.problems]).toEqual([true, []]);
    expect(new TextDecoder().decode(s.page)).not.toMatch(/post-quantum/i);
  });
});
