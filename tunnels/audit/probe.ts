/**
 * Active probes: canary traffic between the two ends of a pair, captured on the underlay, to
 * show the pair is encrypted on the wire and never in plaintext. sealctl cannot reach pods and
 * the underlay by itself in every environment, so the probe is an adapter: a program the
 * environment supplies (the namespace-cluster harness has one: test/harness/audit-probe.ts).
 *
 * Command protocol (version 1): sealctl runs `PROGRAM ARGS...` (no shell), writes
 * `{"version":1,"pairs":[{"a":"n1","b":"n2"},...]}` to its stdin, and reads one JSON document
 * from its stdout: `{"version":1,"adapter":"NAME","note":"...","results":[ProbeResult...]}`.
 * Exit status 0 is required; results are validated strictly and must name only requested pairs.
 */
import { spawn } from 'node:child_process';
import { SealnetError } from '../../common/errors.js';
import { isObject } from '../../common/json.js';

/** A pair to probe (`a < b`). */
export interface ProbePair {
  readonly a: string;
  readonly b: string;
}

/** What the probe found for one pair (both directions). */
export interface ProbeResult {
  readonly a: string;
  readonly b: string;
  /** False: the adapter could not probe this pair (`detail` says why). */
  readonly ran: boolean;
  /** All canary traffic (both directions) got through. */
  readonly trafficOk: boolean;
  /** Tunnel packets (WireGuard UDP / ESP) between the two nodes in the capture. */
  readonly tunnelPackets: number;
  /** Pod packets in plaintext between the two nodes in the capture. */
  readonly plaintextPackets: number;
  /** Copies of the canary payload seen on the wire. */
  readonly canaryLeaks: number;
  /** The capture is trustworthy (nothing dropped or truncated). */
  readonly captureComplete: boolean;
  /** Encrypted on the wire: traffic ok, tunnel packets seen, no plaintext, no canary, complete capture. */
  readonly encryptedOnWire: boolean;
  readonly detail: string;
}

/** What probing produced: results, or why it could not run at all. */
export type ProbeOutcome =
  | { readonly ok: true; readonly adapter: string; readonly note: string; readonly results: readonly ProbeResult[] }
  | { readonly ok: false; readonly error: string };

/** Something that can probe pairs. */
export interface ProbeAdapter {
  readonly name: string;
  probe(pairs: readonly ProbePair[]): Promise<ProbeOutcome>;
}

type Obj = Record<string, unknown>;

const RESULT_FIELDS = [
  'a',
  'b',
  'ran',
  'trafficOk',
  'tunnelPackets',
  'plaintextPackets',
  'canaryLeaks',
  'captureComplete',
  'encryptedOnWire',
  'detail',
];

/** Validates an adapter's answer against the request. Throws a sentence naming the problem. */
export function parseProbeAnswer(
  text: string,
  requested: readonly ProbePair[],
): { adapter: string; note: string; results: ProbeResult[] } {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new Error(`the probe printed no valid JSON (${(err as Error).message})`);
  }
  if (!isObject(doc)) throw new Error('the probe answer must be a JSON object');
  for (const k of Object.keys(doc))
    if (!['version', 'adapter', 'note', 'results'].includes(k))
      throw new Error(`the probe answer has an unknown field ${k}`);
  if (doc.version !== 1) throw new Error(`the probe answer has version ${JSON.stringify(doc.version)}, want 1`);
  if (typeof doc.adapter !== 'string' || doc.adapter === '' || doc.adapter.length > 100)
    throw new Error('the probe answer must name its adapter');
  if (typeof doc.note !== 'string' || doc.note.length > 2000)
    throw new Error('the probe answer must carry a note (a string)');
  if (!Array.isArray(doc.results)) throw new Error('the probe answer must hold a results list');
  const want = new Set(requested.map((p) => `${p.a}~${p.b}`));
  const seen = new Set<string>();
  const results = doc.results.map((r, i): ProbeResult => {
    if (!isObject(r)) throw new Error(`results[${i}] must be an object`);
    for (const k of Object.keys(r))
      if (!RESULT_FIELDS.includes(k)) throw new Error(`results[${i}].${k} is not a known field`);
    for (const k of RESULT_FIELDS) if (!(k in r)) throw new Error(`results[${i}].${k} is missing`);
    const key = `${String(r.a)}~${String(r.b)}`;
    if (!want.has(key))
      throw new Error(`results[${i}] is for pair ${key}, which was not requested (unknown node or wrong order)`);
    if (seen.has(key)) throw new Error(`results[${i}] repeats pair ${key}`);
    seen.add(key);
    for (const k of ['ran', 'trafficOk', 'captureComplete', 'encryptedOnWire'])
      if (typeof r[k] !== 'boolean') throw new Error(`results[${i}].${k} must be true or false`);
    for (const k of ['tunnelPackets', 'plaintextPackets', 'canaryLeaks']) {
      const n = r[k];
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0)
        throw new Error(`results[${i}].${k} must be a non-negative integer`);
    }
    if (typeof r.detail !== 'string' || r.detail.length > 2000)
      throw new Error(`results[${i}].detail must be a string`);
    const res = r as unknown as ProbeResult;
    // Never take an adapter's word for "encrypted" when its own numbers say otherwise.
    const consistent =
      res.ran &&
      res.trafficOk &&
      res.captureComplete &&
      res.tunnelPackets > 0 &&
      res.plaintextPackets === 0 &&
      res.canaryLeaks === 0;
    if (res.encryptedOnWire && !consistent)
      throw new Error(`results[${i}] claims encryptedOnWire for ${key} but its own counts do not support it`);
    return {
      a: res.a,
      b: res.b,
      ran: res.ran,
      trafficOk: res.trafficOk,
      tunnelPackets: res.tunnelPackets,
      plaintextPackets: res.plaintextPackets,
      canaryLeaks: res.canaryLeaks,
      captureComplete: res.captureComplete,
      encryptedOnWire: res.encryptedOnWire,
      detail: res.detail,
    };
  });
  return { adapter: doc.adapter, note: doc.note, results };
}

/** Runs an external probe program (see the module comment for the protocol). */
export class CommandProbeAdapter implements ProbeAdapter {
  readonly name: string;
  private readonly argv: readonly string[];
  private readonly timeoutMs: number;

  constructor(argv: readonly string[], opts: { timeoutMs?: number } = {}) {
    if (argv.length === 0 || argv[0] === '')
      throw new SealnetError('CONFIG_INVALID', '--probe-command needs a program');
    this.argv = argv;
    this.name = argv.join(' ');
    this.timeoutMs = opts.timeoutMs ?? 600_000;
  }

  probe(pairs: readonly ProbePair[]): Promise<ProbeOutcome> {
    const [cmd, ...args] = this.argv as [string, ...string[]];
    return new Promise((resolve) => {
      const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let done = false;
      const finish = (o: ProbeOutcome): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(o);
      };
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        finish({ ok: false, error: `probe command ${this.name} timed out after ${this.timeoutMs / 1000} s` });
      }, this.timeoutMs);
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.stderr.on('data', (b: Buffer) => err.push(b));
      child.stdin.on('error', () => undefined);
      child.stdin.end(JSON.stringify({ version: 1, pairs }));
      child.on('error', (e) => finish({ ok: false, error: `cannot start probe command ${this.name}: ${e.message}` }));
      child.on('close', (code, signal) => {
        const stderr = Buffer.concat(err).toString('utf8').trim().split('\n').slice(-5).join(' | ').slice(0, 1000);
        if (code !== 0)
          return finish({
            ok: false,
            error: `probe command ${this.name} ${code === null ? `was killed by ${String(signal)}` : `exited with ${code}`}${stderr === '' ? '' : `: ${stderr}`}`,
          });
        try {
          const a = parseProbeAnswer(Buffer.concat(out).toString('utf8'), pairs);
          finish({ ok: true, ...a });
        } catch (e) {
          finish({ ok: false, error: `probe command ${this.name}: ${(e as Error).message}` });
        }
      });
    });
  }
}
