/**
 * `sealctl audit verify`: a report file passes only if every byte is as sealctl wrote it. The
 * file must be valid UTF-8 JSON in exactly the canonical layout, the Ed25519 signature must
 * verify over the canonical body (with the given public key, when one is given), the verdict,
 * completeness and summary must follow from the report's own pairs and violations, and the
 * Markdown page beside it, when present, must be exactly what the report renders to.
 */
import { readFile } from 'node:fs/promises';
import { timingSafeEqual } from 'node:crypto';
import { prettyCanonical } from './canonical.js';
import { renderMarkdown } from './render.js';
import { expectedVerdict, type AuditPair, type AuditReport, type AuditReportBody } from './report.js';
import { checkSignature, parseB64, type ReportSignature } from './sign.js';
import { isObject } from '../../common/json.js';
import { carriesPq } from './pq.js';

/** Outcome of a verification. */
export interface VerifyResult {
  readonly ok: boolean;
  /** Every failed check, one sentence each. */
  readonly problems: readonly string[];
  /** Checks that passed. */
  readonly checks: readonly string[];
  readonly signer: string | undefined;
  readonly verdict: string | undefined;
  /** True when no public key was given: the signature only proves integrity, not who signed. */
  readonly signerUnpinned: boolean;
}

const TOP_FIELDS = [
  'complete',
  'evidence',
  'format',
  'generatedAt',
  'nodes',
  'pairs',
  'policy',
  'scope',
  'signature',
  'summary',
  'tool',
  'verdict',
  'version',
  'violations',
];

function shapeProblems(doc: unknown): string[] {
  if (!isObject(doc)) return ['the report is not a JSON object'];
  const p: string[] = [];
  const keys = Object.keys(doc).sort();
  if (keys.join(',') !== TOP_FIELDS.join(','))
    p.push(`the report's fields are ${keys.join(', ')}; want ${TOP_FIELDS.join(', ')}`);
  if (doc.format !== 'sealnet-audit-report' || doc.version !== 1) p.push('not a sealnet audit report version 1');
  if (doc.verdict !== 'compliant' && doc.verdict !== 'non-compliant')
    p.push('verdict must be "compliant" or "non-compliant"');
  if (
    !Array.isArray(doc.pairs) ||
    !doc.pairs.every(
      (x) =>
        isObject(x) &&
        typeof x.compliant === 'boolean' &&
        typeof x.partial === 'boolean' &&
        Array.isArray(x.violations),
    )
  )
    p.push('pairs must be a list of pair objects');
  if (!Array.isArray(doc.nodes) || !doc.nodes.every((x) => isObject(x) && typeof x.name === 'string'))
    p.push('nodes must be a list of node objects');
  if (
    !Array.isArray(doc.violations) ||
    !doc.violations.every(
      (x) =>
        isObject(x) && typeof x.code === 'string' && typeof x.subject === 'string' && typeof x.message === 'string',
    )
  )
    p.push('violations must be a list of violations');
  const s = doc.signature;
  if (
    !isObject(s) ||
    Object.keys(s).sort().join(',') !== 'algorithm,publicKey,publicKeyFingerprint,value' ||
    !Object.values(s).every((x) => typeof x === 'string')
  )
    p.push('signature must hold algorithm, publicKey, publicKeyFingerprint and value');
  return p;
}

/** Verifies the report in `text` (and the Markdown page `markdown`, if given). */
export async function verifyReport(
  bytes: Uint8Array,
  opts: { publicKey?: Uint8Array | undefined; markdown?: Uint8Array | undefined } = {},
): Promise<VerifyResult> {
  const problems: string[] = [];
  const checks: string[] = [];
  const fail = (msg: string): VerifyResult => ({
    ok: false,
    problems: [...problems, msg],
    checks,
    signer: undefined,
    verdict: undefined,
    signerUnpinned: opts.publicKey === undefined,
  });
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return fail('the report is not valid UTF-8');
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    return fail(`the report is not valid JSON (${(err as Error).message})`);
  }
  const shape = shapeProblems(doc);
  if (shape.length > 0) return { ...fail(shape[0] ?? ''), problems: shape };
  checks.push('structure');
  const report = doc as AuditReport;
  if (prettyCanonical(report) !== text)
    problems.push('the file is not byte-for-byte in the canonical layout sealctl writes (it was edited)');
  else checks.push('canonical layout');
  const { signature, ...body } = report;
  const sig = signature as ReportSignature;
  if (!(await checkSignature(body, sig))) problems.push('the Ed25519 signature does not match the report content');
  else checks.push('signature');
  const embedded = parseB64(sig.publicKey, 32);
  if (opts.publicKey !== undefined) {
    if (
      embedded === undefined ||
      embedded.length !== opts.publicKey.length ||
      !timingSafeEqual(embedded, opts.publicKey)
    )
      problems.push(`the report was signed by ${sig.publicKeyFingerprint}, not by the given public key`);
    else checks.push('signer');
  }
  const want = expectedVerdict(body as AuditReportBody);
  if (
    want.verdict !== report.verdict ||
    want.complete !== report.complete ||
    JSON.stringify(want.summary) !== JSON.stringify(prettyOrder(report.summary))
  ) {
    problems.push(
      `the verdict or summary does not follow from the report's pairs and violations (want ${want.verdict}, complete ${want.complete})`,
    );
  } else checks.push('verdict');
  for (const p of report.pairs) {
    if (p.compliant !== (p.violations.length === 0))
      problems.push(
        `pair ${p.a} ↔ ${p.b} is marked ${p.compliant ? 'compliant' : 'not compliant'} against its ${p.violations.length} violations`,
      );
    problems.push(...pqProblems(report, p));
  }
  if (opts.markdown !== undefined) {
    if (Buffer.compare(Buffer.from(opts.markdown), Buffer.from(renderMarkdown(report))) !== 0)
      problems.push('the Markdown page does not match the signed report (it was edited)');
    else checks.push('markdown page');
  }
  return {
    ok: problems.length === 0,
    problems,
    checks,
    signer: sig.publicKeyFingerprint,
    verdict: report.verdict,
    signerUnpinned: opts.publicKey === undefined,
  };
}

function prettyOrder(s: AuditReportBody['summary']): AuditReportBody['summary'] {
  return {
    nodes: s.nodes,
    pairs: s.pairs,
    compliantPairs: s.compliantPairs,
    nonCompliantPairs: s.nonCompliantPairs,
    violations: s.violations,
    ...(s.postQuantumPairs === undefined && s.nonPostQuantumPairs === undefined
      ? {}
      : { postQuantumPairs: s.postQuantumPairs, nonPostQuantumPairs: s.nonPostQuantumPairs }),
  };
}

/**
 * A pair's post-quantum evidence must be consistent with itself and the policy: confirmed only
 * with both ends confirmed, and not confirmed under a policy requiring it only with a violation.
 */
function pqProblems(r: AuditReportBody, p: AuditPair): string[] {
  const pq = p.postQuantum as unknown;
  const pairName = `pair ${p.a} ↔ ${p.b}`;
  if (pq === undefined) return carriesPq(r) ? [`${pairName} carries no post-quantum evidence`] : [];
  if (
    !isObject(pq) ||
    typeof pq.confirmed !== 'boolean' ||
    !isObject(pq.a) ||
    !isObject(pq.b) ||
    typeof pq.a.confirmed !== 'boolean' ||
    typeof pq.b.confirmed !== 'boolean' ||
    !Array.isArray(pq.problems)
  )
    return [`${pairName} has malformed post-quantum evidence`];
  const out: string[] = [];
  if (pq.confirmed !== (pq.a.confirmed && pq.b.confirmed && pq.problems.length === 0))
    out.push(`${pairName} is marked post-quantum ${pq.confirmed ? 'confirmed' : 'unconfirmed'} against its two ends`);
  if (
    isObject(r.policy) &&
    r.policy.requirePostQuantum === true &&
    !pq.confirmed &&
    !(p.violations as readonly unknown[]).some((v) => isObject(v) && v.code === 'post-quantum-missing')
  )
    out.push(`${pairName} has no confirmed post-quantum secret but no post-quantum-missing violation`);
  return out;
}

/** Reads and verifies a report file (and `page`, the Markdown file, when it exists). */
export async function verifyReportFile(
  file: string,
  opts: { publicKey?: Uint8Array | undefined; page?: string | undefined },
): Promise<VerifyResult> {
  const bytes = await readFile(file);
  const markdown = opts.page === undefined ? undefined : await readFile(opts.page).catch(() => undefined);
  return verifyReport(bytes, { publicKey: opts.publicKey, markdown });
}
