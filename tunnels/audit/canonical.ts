/**
 * Canonical JSON for signed audit reports: object keys sorted by UTF-16 code units, numbers and
 * strings as ECMAScript's JSON.stringify writes them (the JSON Canonicalization Scheme, RFC 8785,
 * for the values a report holds). `canonicalJson` is what is signed; `prettyCanonical` is the
 * exact file layout sealctl writes, so a verifier can demand the file be byte-identical to it
 * and no byte of a report can change without failing verification.
 */
import { SealnetError } from '../../common/errors.js';

/** A JSON value. */
export type Json = null | boolean | number | string | readonly Json[] | { readonly [k: string]: Json };

function sortDeep(v: unknown, path: string): unknown {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new SealnetError('INTERNAL', `canonical JSON: ${path} is ${v}, not a finite number`);
    return v;
  }
  if (Array.isArray(v)) {
    return v.map((x, i) => {
      if (x === undefined) throw new SealnetError('INTERNAL', `canonical JSON: ${path}[${i}] is undefined`);
      return sortDeep(x, `${path}[${i}]`);
    });
  }
  if (typeof v === 'object') {
    const proto = Object.getPrototypeOf(v) as unknown;
    if (proto !== Object.prototype && proto !== null)
      throw new SealnetError('INTERNAL', `canonical JSON: ${path} is not a plain object`);
    // A null-prototype object: on an ordinary one, `out['__proto__'] = x` would set the prototype
    // instead of adding the member (JSON.parse makes it an own member), so the member vanished
    // from the signed bytes and two documents differing only in it shared a signature.
    const out = Object.create(null) as Record<string, unknown>;
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = sortDeep(x, `${path}.${k}`);
    }
    return out;
  }
  throw new SealnetError('INTERNAL', `canonical JSON: ${path} has type ${typeof v}`);
}

/** Compact canonical form (what is signed). Object members with value `undefined` are left out. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(sortDeep(v, '$'));
}

/** The canonical form with two-space indentation and a final newline (the report file). */
export function prettyCanonical(v: unknown): string {
  return `${JSON.stringify(sortDeep(v, '$'), null, 2)}\n`;
}
