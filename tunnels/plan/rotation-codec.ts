/**
 * The JSON values of the rotation annotations, pure. The keys live in
 * `constants.ts`; `annotations.ts` decodes a node's whole annotation set with these helpers.
 *
 *   sealnet.io/rotate-request   written by `sealctl keys rotate`:   {"id":"r-…","requestedAt":"…"}
 *   sealnet.io/rotation         the agent's progress:               {"phase":"moving","id":"r-…","since":"…","epoch":3}
 *                                                                   {"phase":"idle","last":{"id":"r-…","completedAt":"…","epoch":3,"lagging":[]}}
 *   sealnet.io/rotation-peers   what the agent did with other nodes' next keys:
 *                                                                   {"n2":"<fingerprint>:staged","n3":"<fingerprint>:moved"}
 *
 * Nothing here is secret: public keys appear only as fingerprints.
 */
import { isValidRotationId, type RotationPhase } from '../../keymgr/rotation.js';
import type { AnnouncedPhase, PeerRotationReport } from '../ports/model.js';
import { isObject } from '../../common/json.js';
import { isValidEpoch } from '../../common/bounds.js';
import { isSafeText } from '../../common/text.js';

export type { AnnouncedPhase, PeerRotationReport } from '../ports/model.js';

/** A rotation request (`sealctl keys rotate`). */
export interface RotateRequest {
  readonly id: string;
  readonly requestedAt: Date;
}

/** A node's published rotation progress. */
export interface RotationStatus {
  readonly phase: AnnouncedPhase;
  /** Rotation in progress (any phase but idle). */
  readonly id?: string;
  readonly since?: Date;
  /** Epoch of the key being brought in. */
  readonly epoch?: number;
  readonly graceUntil?: Date;
  /** The last completed rotation. */
  readonly last?: {
    readonly id: string;
    readonly completedAt: Date;
    readonly epoch: number;
    readonly lagging: readonly string[];
  };
  /** Why the rotation is stuck, if it is. */
  readonly error?: string;
}

const PHASES: readonly AnnouncedPhase[] = ['idle', 'preparing', 'staging', 'moving', 'grace', 'finishing'];
const FP = /^[0-9a-f]{16}$/;
/** Kubernetes node names (RFC 1123 subdomain). */
const NODE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function date(v: unknown): Date | undefined {
  if (typeof v !== 'string') return undefined;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** `sealnet.io/rotate-request` value. */
export function encodeRotateRequest(r: RotateRequest): string {
  return JSON.stringify({ id: r.id, requestedAt: r.requestedAt.toISOString() });
}

/** Parses a rotate request; the reason when malformed. */
export function decodeRotateRequest(text: string): { ok: true; request: RotateRequest } | { ok: false; error: string } {
  const v = parseJson(text);
  if (!isObject(v)) return { ok: false, error: 'is not a JSON object' };
  if (!isValidRotationId(v.id)) return { ok: false, error: 'id must be 1-128 of [A-Za-z0-9._:-]' };
  const at = date(v.requestedAt);
  if (at === undefined) return { ok: false, error: 'requestedAt is not an RFC 3339 time' };
  return { ok: true, request: { id: v.id, requestedAt: at } };
}

/** `sealnet.io/rotation` value. */
export function encodeRotationStatus(s: RotationStatus): string {
  return JSON.stringify({
    phase: s.phase,
    ...(s.id !== undefined ? { id: s.id } : {}),
    ...(s.since !== undefined ? { since: s.since.toISOString() } : {}),
    ...(s.epoch !== undefined ? { epoch: s.epoch } : {}),
    ...(s.graceUntil !== undefined ? { graceUntil: s.graceUntil.toISOString() } : {}),
    ...(s.last !== undefined
      ? {
          last: {
            id: s.last.id,
            completedAt: s.last.completedAt.toISOString(),
            epoch: s.last.epoch,
            lagging: s.last.lagging,
          },
        }
      : {}),
    ...(s.error !== undefined ? { error: s.error } : {}),
  });
}

/** Parses a rotation status; undefined when malformed (callers treat the node as idle). */
export function decodeRotationStatus(text: string): RotationStatus | undefined {
  const v = parseJson(text);
  if (!isObject(v) || typeof v.phase !== 'string' || !(PHASES as readonly string[]).includes(v.phase)) return undefined;
  const phase = v.phase as AnnouncedPhase;
  if (phase !== 'idle' && !isValidRotationId(v.id)) return undefined;
  let last: RotationStatus['last'];
  if (v.last !== undefined) {
    const l = v.last;
    const completedAt = isObject(l) ? date(l.completedAt) : undefined;
    if (
      !isObject(l) ||
      !isValidRotationId(l.id) ||
      completedAt === undefined ||
      !isValidEpoch(l.epoch) ||
      !Array.isArray(l.lagging) ||
      !l.lagging.every((x) => typeof x === 'string' && NODE.test(x))
    )
      return undefined;
    last = { id: l.id, completedAt, epoch: l.epoch as number, lagging: l.lagging as string[] };
  }
  const since = date(v.since);
  const graceUntil = date(v.graceUntil);
  return {
    phase,
    ...(phase !== 'idle' ? { id: v.id as string } : {}),
    ...(since !== undefined ? { since } : {}),
    ...(isValidEpoch(v.epoch) ? { epoch: v.epoch as number } : {}),
    ...(graceUntil !== undefined ? { graceUntil } : {}),
    ...(last !== undefined ? { last } : {}),
    ...(typeof v.error === 'string' && isSafeText(v.error) ? { error: v.error.slice(0, 500) } : {}),
  };
}

/** `sealnet.io/rotation-peers` value: sorted by node name, so equal reports encode equally. */
export function encodeRotationReports(reports: Readonly<Record<string, PeerRotationReport>>): string {
  const names = Object.keys(reports).sort();
  return JSON.stringify(Object.fromEntries(names.map((n) => [n, `${reports[n]!.fingerprint}:${reports[n]!.state}`])));
}

/** Parses a node's reports; malformed entries are dropped (a report only ever speeds things up). */
export function decodeRotationReports(text: string): Record<string, PeerRotationReport> {
  const v = parseJson(text);
  const out: Record<string, PeerRotationReport> = {};
  if (!isObject(v)) return out;
  for (const [node, value] of Object.entries(v)) {
    if (!NODE.test(node) || typeof value !== 'string') continue;
    const [fp, state] = value.split(':');
    if (fp === undefined || !FP.test(fp) || (state !== 'staged' && state !== 'moved')) continue;
    out[node] = { fingerprint: fp, state };
  }
  return out;
}
