/**
 * `sealctl audit` and `sealctl audit verify`.
 *
 *   audit [--policy FILE | --profile default|fips] [--out DIR] [--node NAME]...
 *         [--probe-command PROGRAM [--probe-arg ARG]... [--probe-timeout SECONDS]]
 *         [--signing-key FILE | --state-dir DIR]
 *   audit verify REPORT (--public-key FILE | --fingerprint sha256:HEX | --trust FILE) [--page FILE]
 *
 * Exit codes: 0 compliant / report valid; 1 not compliant (partial evidence included) / report
 * invalid or tampered; 2 bad input (malformed policy, unknown node, bad flags, existing report).
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sodiumReady } from '../../keymgr/keys.js';
import { AUDIT_SIGNING_KEY_FILE, DEFAULT_STATE_DIR } from '../../common/constants.js';
import { SealnetError } from '../../common/errors.js';
import type { NodeStore } from '../ports/index.js';
import { checkKnownNodes, openStore } from './status.js';
import {
  FETCH_FLAGS,
  fetcherFor,
  fetchReports,
  fetchSettings,
  type FetchSettings,
  type ReportFetcher,
} from './fetch.js';
import { joinStatus } from '../status/join.js';
import { prettyCanonical } from '../audit/canonical.js';
import { parsePolicy, profile, type AuditPolicy } from '../audit/policy.js';
import { CommandProbeAdapter, type ProbeAdapter, type ProbeOutcome } from '../audit/probe.js';
import { renderMarkdown } from '../audit/render.js';
import { evaluate, type AuditReport } from '../audit/report.js';
import { keyFingerprint, loadOrCreateSigningKey, parseB64, readPublicKeyFile, signReport } from '../audit/sign.js';
import { isObject } from '../../common/json.js';
import { verifyReportFile } from '../audit/verify.js';
import { parseFlags } from '../../common/args.js';
import { escapeText } from '../../common/text.js';
import { pqShortfall } from '../audit/pq.js';

/** Parsed `audit` arguments. */
export interface AuditArgs {
  readonly policyFile: string | undefined;
  readonly profile: string | undefined;
  readonly out: string | undefined;
  readonly only: readonly string[];
  readonly probeCommand: readonly string[] | undefined;
  readonly probeTimeoutS: number;
  readonly signingKey: string;
  /** How the agents' full reports are fetched (tunnels/cli/fetch.ts). */
  readonly fetch: FetchSettings;
}

/** Parses the arguments after `audit`. */
export function parseAuditArgs(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
): AuditArgs {
  // `--probe-arg` takes the next argument verbatim, flag-like or not (it is the probe's own argv).
  const glued = args.flatMap((a, i) =>
    args[i - 1] === '--probe-arg'
      ? []
      : a === '--probe-arg' && i + 1 < args.length
        ? [`--probe-arg=${args[i + 1]}`]
        : [a],
  );
  const { values } = parseFlags(glued, {
    prefix: 'audit: ',
    options: {
      policy: { type: 'string' },
      profile: { type: 'string' },
      out: { type: 'string' },
      node: { type: 'string', multiple: true },
      'probe-command': { type: 'string' },
      'probe-arg': { type: 'string', multiple: true },
      'probe-timeout': { type: 'string' },
      'signing-key': { type: 'string' },
      'state-dir': { type: 'string' },
      ...FETCH_FLAGS,
    },
  });
  const policyFile = values.policy;
  const prof = values.profile;
  const out = values.out;
  const only = values.node ?? [];
  const probe = values['probe-command'];
  const probeArgs = values['probe-arg'] ?? [];
  let probeTimeoutS = 600;
  if (values['probe-timeout'] !== undefined) {
    const v = values['probe-timeout'];
    probeTimeoutS = Number(v);
    if (!/^\d+$/.test(v) || probeTimeoutS < 1 || probeTimeoutS > 86400)
      throw new SealnetError('CONFIG_INVALID', `--probe-timeout must be 1 to 86400 seconds, got ${JSON.stringify(v)}`);
  }
  const signingKey = values['signing-key'];
  const stateDir = values['state-dir'];
  if (policyFile !== undefined && prof !== undefined)
    throw new SealnetError(
      'CONFIG_INVALID',
      'give --policy or --profile, not both (a policy file can name its base profile)',
    );
  if (probe === undefined && probeArgs.length > 0)
    throw new SealnetError('CONFIG_INVALID', '--probe-arg needs --probe-command');
  return {
    policyFile,
    profile: prof,
    out,
    only,
    probeCommand: probe === undefined ? undefined : [probe, ...probeArgs],
    probeTimeoutS,
    signingKey: signingKey ?? join(stateDir ?? env.SEALNET_STATE_DIR ?? DEFAULT_STATE_DIR, AUDIT_SIGNING_KEY_FILE),
    fetch: fetchSettings(values),
  };
}

/** This build's version (package.json), for the report. */
export function toolVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        const p = JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string; version?: string };
        if (p.name === 'sealnet' && typeof p.version === 'string') return p.version;
      } catch {
        // keep looking
      }
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

/** Where `loadOrCreateSigningKey` writes the public key of `keyFile`. */
function signerPublicKeyFile(keyFile: string): string {
  return keyFile.replace(/\.key$/, '') + '.pub';
}

/** The public key a report file carries (unverified), or undefined. */
async function embeddedKey(file: string): Promise<Uint8Array | undefined> {
  try {
    const doc = JSON.parse(await readFile(file, 'utf8')) as unknown;
    const sig = isObject(doc) ? doc.signature : undefined;
    return isObject(sig) && typeof sig.publicKey === 'string' ? parseB64(sig.publicKey, 32) : undefined;
  } catch {
    return undefined;
  }
}

async function loadPolicy(a: AuditArgs): Promise<AuditPolicy> {
  if (a.policyFile === undefined) return profile(a.profile ?? 'default');
  let text: string;
  try {
    text = await readFile(a.policyFile, 'utf8');
  } catch (err) {
    throw new SealnetError('CONFIG_INVALID', `cannot read audit policy ${a.policyFile}`, { cause: err });
  }
  return parsePolicy(text, a.policyFile);
}

function stamp(d: Date): string {
  return d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

/** Runs `sealctl audit`. `probe` overrides `--probe-command` (in-process adapters, tests). */
export async function runAudit(opts: {
  store: NodeStore;
  storeType: string;
  json: boolean;
  args: readonly string[];
  probe?: ProbeAdapter;
  /** Overrides how the agents' reports are fetched (tests). */
  fetcher?: ReportFetcher;
  now?: () => Date;
  write?: (s: string) => void;
}): Promise<number> {
  const write = opts.write ?? ((s: string) => void process.stdout.write(s));
  const now = opts.now ?? (() => new Date());
  const a = parseAuditArgs(opts.args);
  const policy = await loadPolicy(a); // bad policy: exit 2 before touching anything
  await sodiumReady();
  const out = resolve(a.out ?? `sealnet-audit-${stamp(now())}`);
  const reportFile = join(out, 'report.json');
  const pageFile = join(out, 'report.md');
  if (existsSync(reportFile))
    throw new SealnetError(
      'CONFIG_INVALID',
      `${reportFile} exists; an audit report is never overwritten (choose another --out)`,
    );
  const key = await loadOrCreateSigningKey(a.signingKey);

  const fetcher = opts.fetcher ?? fetcherFor(opts.store, a.fetch);
  const store = await openStore(opts.store);
  let status;
  let probe: ProbeOutcome | undefined;
  try {
    checkKnownNodes(store.list(), a.only);
    // Every agent's full report, fetched now (bounded fan-out; an agent that does not answer
    // makes its pairs PARTIAL with the reason).
    const collect = async (): Promise<ReturnType<typeof joinStatus>> => {
      const nodes = store.list();
      const reports = await fetchReports(
        nodes.map((n) => n.name),
        fetcher,
        a.fetch,
      );
      return joinStatus(nodes, { now: now(), reports, only: a.only });
    };
    status = await collect();
    const adapter =
      opts.probe ??
      (a.probeCommand === undefined
        ? undefined
        : new CommandProbeAdapter(a.probeCommand, { timeoutMs: a.probeTimeoutS * 1000 }));
    if (adapter !== undefined) {
      probe = await adapter
        .probe(status.pairs.map((p) => ({ a: p.a, b: p.b })))
        .catch((err: unknown): ProbeOutcome => ({ ok: false, error: (err as Error).message }));
      // The probe took time: judge the status as it stands after it, not before.
      status = await collect();
    }
  } finally {
    await store.close();
  }
  const problems = store.problems;
  const body = evaluate({
    status,
    policy,
    now: now(),
    store: opts.storeType,
    toolVersion: toolVersion(),
    onlyNodes: a.only,
    probe,
  });
  const report: AuditReport = await signReport(body, key);
  await mkdir(out, { recursive: true, mode: 0o755 });
  await writeFile(reportFile, prettyCanonical(report), { flag: 'wx', mode: 0o644 });
  await writeFile(pageFile, renderMarkdown(report), { flag: 'wx', mode: 0o644 });

  if (opts.json) {
    write(
      `${JSON.stringify({
        verdict: report.verdict,
        complete: report.complete,
        report: reportFile,
        page: pageFile,
        signer: report.signature.publicKeyFingerprint,
        signerPublicKeyFile: signerPublicKeyFile(key.file),
        signingKeyCreated: key.created,
        probe: report.evidence.probe,
        pairs: report.pairs.map((p) => ({
          a: p.a,
          b: p.b,
          state: p.state,
          compliant: p.compliant,
          partial: p.partial,
          ...(p.postQuantum === undefined ? {} : { postQuantum: p.postQuantum.confirmed }),
          violations: p.violations.map((v) => v.code),
        })),
        ...(report.summary.postQuantumPairs === undefined
          ? {}
          : {
              postQuantum: {
                confirmedPairs: report.summary.postQuantumPairs,
                unconfirmedPairs: report.summary.nonPostQuantumPairs,
              },
            }),
        violations: report.violations,
        storeProblems: problems,
      })}\n`,
    );
  } else {
    const v = report.verdict === 'compliant' ? 'COMPLIANT' : 'NON-COMPLIANT';
    write(
      `audit: ${v}${report.complete ? '' : ' (PARTIAL: evidence is missing, see below)'} — policy ${policy.name}; ${report.summary.nodes} nodes, ${report.summary.pairs} pairs\n`,
    );
    for (const p of report.pairs) {
      write(
        `  ${p.a} ↔ ${p.b}: ${p.compliant ? 'compliant' : `NOT compliant (${p.state}${p.partial ? ', partial' : ''})`}\n`,
      );
      const q = p.postQuantum;
      if (q !== undefined)
        write(
          `      post-quantum: ${q.confirmed ? 'confirmed by both ends' : `not confirmed (${escapeText(pqShortfall(p, q))})`}\n`,
        );
      for (const x of p.violations) write(`      ${x.code} [${x.subject}]: ${escapeText(x.message)}\n`);
    }
    if (report.summary.postQuantumPairs !== undefined)
      write(
        `post-quantum: ${report.summary.postQuantumPairs} of ${report.summary.pairs} pairs protected by a confirmed secret on both ends\n`,
      );
    for (const x of report.violations.filter((x) => x.subject === 'cluster')) write(`  ${x.code}: ${x.message}\n`);
    write(`active probe: ${report.evidence.probe.note}\n`);
    write(
      `report: ${reportFile} (signed by ${key.fingerprint}${key.created ? `, new key ${key.file}` : ''})\npage:   ${pageFile}\n`,
    );
    write(
      `signer: ${key.fingerprint}; public key ${signerPublicKeyFile(key.file)} — verify with: sealctl audit verify ${reportFile} --public-key ${signerPublicKeyFile(key.file)} (or --fingerprint ${key.fingerprint})\n`,
    );
    for (const p of problems) write(`store: ${p}\n`);
  }
  return report.verdict === 'compliant' ? 0 : 1;
}

/** How to pin the signer, for every message that refuses an unpinned verification. */
export const PIN_HINT =
  'pin the signer with --public-key FILE (the signing.pub beside the signing key), --fingerprint sha256:HEX, or --trust FILE (one sha256:HEX fingerprint per line, # comments)';

function normaliseFingerprint(text: string, where: string): string {
  const m = /^(?:sha256:)?([0-9a-fA-F]{64})$/.exec(text.trim());
  if (m === null)
    throw new SealnetError(
      'CONFIG_INVALID',
      `${where} ${JSON.stringify(text.slice(0, 80))} is not a fingerprint; want sha256: and 64 hex digits`,
    );
  return `sha256:${m[1]!.toLowerCase()}`;
}

/**
 * Runs `sealctl audit verify REPORT (--public-key FILE | --fingerprint HEX | --trust FILE) [--page FILE]`.
 * A signature checked only against the key the report itself carries proves nothing about who
 * signed it (anyone can re-sign a forgery), so an unpinned verification always exits non-zero.
 */
export async function runVerify(opts: {
  args: readonly string[];
  json: boolean;
  write?: (s: string) => void;
}): Promise<number> {
  const write = opts.write ?? ((s: string) => void process.stdout.write(s));
  const { values, positionals } = parseFlags(opts.args, {
    prefix: 'audit verify: ',
    maxPositionals: 1,
    options: {
      'public-key': { type: 'string' },
      fingerprint: { type: 'string' },
      trust: { type: 'string' },
      page: { type: 'string' },
    },
  });
  const file = positionals[0];
  const pub = values['public-key'];
  const page = values.page;
  if (file === undefined) throw new SealnetError('CONFIG_INVALID', 'audit verify needs a REPORT file');
  let publicKey = pub === undefined ? undefined : await readPublicKeyFile(pub);
  const pins = new Set<string>();
  if (values.fingerprint !== undefined) pins.add(normaliseFingerprint(values.fingerprint, '--fingerprint'));
  if (values.trust !== undefined) {
    const text = await readFile(values.trust, 'utf8').catch((err: unknown) =>
      Promise.reject(new SealnetError('CONFIG_INVALID', `cannot read trust file ${values.trust}`, { cause: err })),
    );
    text.split('\n').forEach((line, i) => {
      const l = line.replace(/#.*/, '').trim();
      if (l !== '') pins.add(normaliseFingerprint(l, `${values.trust}:${i + 1}:`));
    });
    if (pins.size === 0) throw new SealnetError('CONFIG_INVALID', `trust file ${values.trust} lists no fingerprint`);
  }
  const sibling = file.replace(/\.json$/, '') + '.md';
  const pageFile = page ?? (sibling !== file && existsSync(sibling) ? sibling : undefined);
  if (page !== undefined && !existsSync(page)) throw new SealnetError('CONFIG_INVALID', `page ${page} does not exist`);
  // A fingerprint pin: the key the report carries must hash to a pinned fingerprint; then it is
  // checked like a given public key.
  let pinProblem: string | undefined;
  if (publicKey === undefined && pins.size > 0) {
    const embedded = await embeddedKey(file);
    const fp = embedded === undefined ? undefined : keyFingerprint(embedded);
    if (embedded !== undefined && fp !== undefined && pins.has(fp)) publicKey = embedded;
    else
      pinProblem = `the report's signing key ${fp ?? '(none readable)'} is not a pinned signer (${[...pins].join(', ')})`;
  }
  let r;
  try {
    r = await verifyReportFile(file, { publicKey, page: pageFile });
  } catch (err) {
    throw new SealnetError('CONFIG_INVALID', `cannot read report ${file}`, { cause: err });
  }
  const pinned = publicKey !== undefined;
  const problems = [
    ...r.problems,
    ...(pinProblem !== undefined ? [pinProblem] : []),
    ...(!pinned && pinProblem === undefined ? [`the signer is not pinned: ${PIN_HINT}`] : []),
  ];
  r = { ...r, ok: r.ok && pinned, problems };
  if (opts.json) write(`${JSON.stringify({ file, page: pageFile, ...r })}\n`);
  else {
    write(
      r.ok
        ? `${file}: VALID — signed by ${r.signer}; verdict ${r.verdict}; checked: ${r.checks.join(', ')}\n`
        : `${file}: ${pinned ? 'INVALID' : 'NOT VERIFIED'}${r.signer !== undefined ? ` (carries signer ${r.signer})` : ''}\n`,
    );
    for (const p of r.problems) write(`  - ${p}\n`);
    if (pageFile === undefined) write('  note: no Markdown page checked\n');
  }
  return r.ok ? 0 : 1;
}
