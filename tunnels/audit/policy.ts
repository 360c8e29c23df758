/**
 * Audit policies: what a cluster must satisfy to be reported compliant. A policy file is JSON,
 * validated strictly (unknown fields, wrong types, unknown algorithms and bad durations are
 * errors naming the field); it may start from a built-in profile and override fields.
 */
import { SealnetError } from '../../common/errors.js';
import { ALGORITHMS } from '../status/report.js';

/** A resolved policy (every field set). */
export interface AuditPolicy {
  readonly name: string;
  readonly description: string;
  /** Algorithm identifiers (tunnels/status/report.ts ALGORITHMS) a node may use. */
  readonly allowedAlgorithms: readonly string[];
  /** A node key older than this is a violation. */
  readonly maxKeyAgeSeconds: number;
  /** Every node must drop pod traffic that has no ready tunnel. */
  readonly requireFailClosed: boolean;
  /** Node-to-node (host network) traffic must be encrypted too, not only pod traffic. */
  readonly requireNodeToNodeEncryption: boolean;
  /** Every node pair must be encrypted (both ends, fresh evidence). */
  readonly requireAllPairsEncrypted: boolean;
  /** An active probe must have shown every pair encrypted on the wire. */
  readonly requireProbe: boolean;
  /** Status evidence older than this counts as missing. */
  readonly maxStatusAgeSeconds: number;
  /**
   * Every node pair must be protected by a confirmed post-quantum (ML-KEM-768) pair secret, as
   * both ends report it (issue 19; WireGuard with `postQuantum` preferred or required).
   */
  readonly requirePostQuantum: boolean;
}

/** Built-in profiles. */
export const PROFILES = {
  default: {
    name: 'default',
    description:
      'Every node pair encrypted with WireGuard or IPsec AES-GCM, fail-closed on every node, keys at most 90 days old.',
    allowedAlgorithms: [ALGORITHMS.wireguard, ALGORITHMS.ipsecAesGcm128, ALGORITHMS.ipsecAesGcm256],
    maxKeyAgeSeconds: 90 * 86400,
    requireFailClosed: true,
    requireNodeToNodeEncryption: false,
    requireAllPairsEncrypted: true,
    requireProbe: false,
    maxStatusAgeSeconds: 15 * 60,
    requirePostQuantum: false,
  },
  fips: {
    name: 'fips',
    description:
      'FIPS 140 algorithm profile: only IPsec ESP with AES-GCM (RFC 4106) is accepted; WireGuard (ChaCha20-Poly1305, Curve25519, BLAKE2s) is not a FIPS-approved construction. This checks the algorithms in use, not that the kernel crypto module is FIPS-validated.',
    allowedAlgorithms: [ALGORITHMS.ipsecAesGcm128, ALGORITHMS.ipsecAesGcm256],
    maxKeyAgeSeconds: 30 * 86400,
    requireFailClosed: true,
    requireNodeToNodeEncryption: false,
    requireAllPairsEncrypted: true,
    requireProbe: false,
    maxStatusAgeSeconds: 15 * 60,
    requirePostQuantum: false,
  },
} as const satisfies Record<string, AuditPolicy>;

/** Name of a built-in profile. */
export type ProfileName = keyof typeof PROFILES;

/** The policy version this build reads. */
export const POLICY_VERSION = 1;

const FIELDS = [
  'version',
  'profile',
  'name',
  'description',
  'allowedAlgorithms',
  'maxKeyAge',
  'requireFailClosed',
  'requireNodeToNodeEncryption',
  'requireAllPairsEncrypted',
  'requireProbe',
  'maxStatusAge',
  'requirePostQuantum',
];
const UNITS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86400 };
const MAX_DURATION = 3650 * 86400;

/** Parses `30d`, `12h`, `15m`, `45s` to seconds; undefined if malformed or out of range. */
export function parseDuration(text: string): number | undefined {
  const m = /^([1-9]\d{0,9})([smhd])$/.exec(text);
  if (m === null) return undefined;
  const s = Number(m[1]) * (UNITS[m[2] ?? ''] ?? 0);
  return s > 0 && s <= MAX_DURATION ? s : undefined;
}

/** Seconds as the largest whole unit (`90d`, `36h`, `15m`, `45s`). */
export function formatDuration(seconds: number): string {
  for (const [u, n] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
  ] as const)
    if (seconds % n === 0 && seconds >= n) return `${seconds / n}${u}`;
  return `${seconds}s`;
}

function invalid(source: string, msg: string): SealnetError {
  return new SealnetError('CONFIG_INVALID', `invalid audit policy ${source}: ${msg}`);
}

/** A built-in profile by name; throws naming the known ones. */
export function profile(name: string): AuditPolicy {
  const p = (PROFILES as Record<string, AuditPolicy>)[name];
  if (p === undefined)
    throw new SealnetError(
      'CONFIG_INVALID',
      `unknown audit profile ${JSON.stringify(name)} (known: ${Object.keys(PROFILES).join(', ')})`,
    );
  return { ...p, allowedAlgorithms: [...p.allowedAlgorithms].sort() };
}

/** Validates a parsed policy document; `source` names it in errors (a file path). */
export function validatePolicy(doc: unknown, source: string): AuditPolicy {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw invalid(source, 'must be a JSON object');
  const o = doc as Record<string, unknown>;
  for (const k of Object.keys(o))
    if (!FIELDS.includes(k)) throw invalid(source, `${k} is not a known field (known: ${FIELDS.join(', ')})`);
  if (o.version !== POLICY_VERSION)
    throw invalid(source, `version must be ${POLICY_VERSION}, got ${JSON.stringify(o.version)}`);
  let base: AuditPolicy = PROFILES.default;
  if (o.profile !== undefined) {
    if (typeof o.profile !== 'string' || !(o.profile in PROFILES))
      throw invalid(
        source,
        `profile must be one of ${Object.keys(PROFILES)
          .map((k) => JSON.stringify(k))
          .join(', ')}, got ${JSON.stringify(o.profile)}`,
      );
    base = profile(o.profile);
  }
  const str = (k: string, max: number): string | undefined => {
    const v = o[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v.length === 0 || v.length > max)
      throw invalid(source, `${k} must be a non-empty string of at most ${max} characters, got ${JSON.stringify(v)}`);
    return v;
  };
  const bool = (k: string): boolean | undefined => {
    const v = o[k];
    if (v !== undefined && typeof v !== 'boolean')
      throw invalid(source, `${k} must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };
  const duration = (k: string): number | undefined => {
    const v = o[k];
    if (v === undefined) return undefined;
    const s = typeof v === 'string' ? parseDuration(v) : undefined;
    if (s === undefined)
      throw invalid(
        source,
        `${k} must be a duration such as "90d", "12h", "15m" or "30s" (at most 3650d), got ${JSON.stringify(v)}`,
      );
    return s;
  };
  let allowed: string[] | undefined;
  if (o.allowedAlgorithms !== undefined) {
    const known = Object.values(ALGORITHMS) as string[];
    const v = o.allowedAlgorithms;
    if (!Array.isArray(v) || v.length === 0)
      throw invalid(source, `allowedAlgorithms must be a non-empty list, got ${JSON.stringify(v)}`);
    v.forEach((a, i) => {
      if (typeof a !== 'string' || !known.includes(a))
        throw invalid(source, `allowedAlgorithms[${i}] is ${JSON.stringify(a)}; known algorithms: ${known.join(', ')}`);
      if (v.indexOf(a) !== i) throw invalid(source, `allowedAlgorithms lists ${JSON.stringify(a)} twice`);
    });
    allowed = [...(v as string[])].sort();
  }
  return {
    name: str('name', 100) ?? base.name,
    description: str('description', 2000) ?? base.description,
    allowedAlgorithms: allowed ?? [...base.allowedAlgorithms].sort(),
    maxKeyAgeSeconds: duration('maxKeyAge') ?? base.maxKeyAgeSeconds,
    requireFailClosed: bool('requireFailClosed') ?? base.requireFailClosed,
    requireNodeToNodeEncryption: bool('requireNodeToNodeEncryption') ?? base.requireNodeToNodeEncryption,
    requireAllPairsEncrypted: bool('requireAllPairsEncrypted') ?? base.requireAllPairsEncrypted,
    requireProbe: bool('requireProbe') ?? base.requireProbe,
    maxStatusAgeSeconds: duration('maxStatusAge') ?? base.maxStatusAgeSeconds,
    requirePostQuantum: bool('requirePostQuantum') ?? base.requirePostQuantum,
  };
}

/** Parses a policy file's text (JSON) strictly. */
export function parsePolicy(text: string, source: string): AuditPolicy {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalid(source, `not valid JSON (${(err as Error).message})`);
  }
  return validatePolicy(doc, source);
}
