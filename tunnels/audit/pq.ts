/**
 * Post-quantum evidence of a pair (issue 19) for the audit: did a confirmed ML-KEM-768 pair
 * secret protect it, as both ends report? Pure. One end's claim is never enough: each end must
 * say, in a usable report, that it holds an installed, unexpired secret for the other one, on a
 * tunnel that is encrypted with the key the other end really has, with the role the pair's
 * names give it; and its own numbers must hang together. Every claim comes from another node
 * and is treated as hostile: the decoder (tunnels/status/report.ts) bounds lengths and enums,
 * this module checks meaning, and quotes hostile text only short and escaped.
 */
import { pqInitiator } from '../../keymgr/pq/kdf.js';
import { RENEW_MINUTES_MAX } from '../../keymgr/pq/exchange.js';
import { KEM_NAME } from '../../keymgr/pq/mlkem.js';
import { quoteShort } from '../../common/text.js';
import type { NodeView, PairRow, PairSide } from '../status/join.js';
import { MAX_REASON, type PeerPq } from '../status/report.js';
import { isObject } from '../../common/json.js';

/** A secret is valid for two renewal periods at most (keymgr/pq/exchange.ts `pqSettings`). */
export const PQ_MAX_SECRET_AGE_SECONDS = 2 * RENEW_MINUTES_MAX * 60;
/** Slack between a report's time, its secret's age and its last renewal (the agent reads its clock twice). */
export const PQ_CLOCK_SLACK_SECONDS = 5;

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/** One end of a pair: what it claims, and whether the claim counts. */
export interface AuditPqEnd {
  readonly node: string;
  /** This end reports a confirmed, installed, unexpired post-quantum secret for the other end, and the claim holds up. */
  readonly confirmed: boolean;
  /** As reported (only values that passed validation are copied). */
  readonly kem?: string | undefined;
  readonly protection?: PeerPq['protection'] | undefined;
  readonly phase?: PeerPq['phase'] | undefined;
  readonly role?: PeerPq['role'] | undefined;
  readonly secretAgeSeconds?: number | undefined;
  readonly lastRenewal?: string | undefined;
  /** Why this end does not count as confirmed (one sentence). */
  readonly problem?: string | undefined;
}

/** A pair's post-quantum evidence in the report. */
export interface AuditPairPq {
  /** Both ends confirmed: a post-quantum secret protected the pair. */
  readonly confirmed: boolean;
  readonly a: AuditPqEnd;
  readonly b: AuditPqEnd;
  /** Why the pair as a whole is not confirmed although its ends are (empty otherwise). */
  readonly problems: readonly string[];
}

/** Whether any end of any pair reports a post-quantum exchange (then the report carries the evidence). */
export function anyPq(pairs: readonly PairRow[]): boolean {
  return pairs.some((p) => p.sides.some((s) => s.pq !== undefined));
}

function endOf(side: PairSide, other: string, view: NodeView | undefined, role: PeerPq['role']): AuditPqEnd {
  const n = side.node;
  const lack = (problem: string, copy: Partial<AuditPqEnd> = {}): AuditPqEnd => ({
    node: n,
    confirmed: false,
    ...copy,
    problem,
  });
  const r = view?.report;
  if (view === undefined || view.health !== 'ok' || r === undefined)
    return lack(`${n} gave no usable status (${view?.problem ?? 'not in the audit'})`);
  const pq = side.pq;
  if (pq === undefined)
    return lack(
      side.state === 'unknown'
        ? `${n} does not report on ${other}`
        : `${n} reports no post-quantum exchange with ${other} (postQuantum is off there)`,
    );
  const claimed = {
    protection: pq.protection,
    phase: pq.phase,
    role: pq.role,
    ...(pq.kem === KEM_NAME ? { kem: pq.kem } : {}),
    ...(pq.secretAgeSeconds === undefined ? {} : { secretAgeSeconds: pq.secretAgeSeconds }),
  };
  // Hostile: a node may claim a secret for a pair it has no tunnel for, in a mode without the exchange.
  if (r.mode !== 'wireguard')
    return lack(`${n} runs ${r.mode}, which has no post-quantum exchange, yet reports one with ${other}`, claimed);
  if (pq.kem !== KEM_NAME) return lack(`${n} reports KEM ${quoteShort(pq.kem)}, not ${KEM_NAME}`, claimed);
  if (pq.protection !== 'hybrid')
    return lack(
      `${n} reports protection ${pq.protection} with ${other}${pq.reason === undefined ? '' : `: ${quoteShort(pq.reason, MAX_REASON)}`}`,
      claimed,
    );
  // A secret is a preshared key on a tunnel peer: no peer, no secret (whatever the state says).
  if (side.peerKey === undefined)
    return lack(`${n} claims a post-quantum secret with ${other} but holds no tunnel peer for it`, claimed);
  if (pq.phase === 'idle')
    return lack(`${n} reports protection hybrid with ${other} in phase idle (no confirmed secret)`, claimed);
  if (pq.reason !== undefined)
    return lack(`${n} holds an old post-quantum secret with ${other}: ${quoteShort(pq.reason, MAX_REASON)}`, claimed);
  if (pq.role !== role)
    return lack(
      `${n} reports role ${pq.role} with ${other}, but ${role === 'initiator' ? n : other} initiates for this pair`,
      claimed,
    );
  const age = pq.secretAgeSeconds;
  if (age === undefined || age > PQ_MAX_SECRET_AGE_SECONDS)
    return lack(
      `${n} reports protection hybrid with ${other} ${age === undefined ? 'without a secret age' : `with a secret ${age} s old, beyond any renewal period (${PQ_MAX_SECRET_AGE_SECONDS} s)`}`,
      claimed,
    );
  const lr = pq.lastRenewal;
  if (lr === undefined || !RFC3339.test(lr) || Number.isNaN(Date.parse(lr)))
    return lack(
      `${n} reports protection hybrid with ${other} ${lr === undefined ? 'without' : `with a malformed (${quoteShort(lr)})`} last renewal time`,
      claimed,
    );
  const skew = Math.abs((Date.parse(r.at) - Date.parse(lr)) / 1000 - age);
  if (skew > PQ_CLOCK_SLACK_SECONDS)
    return lack(
      `${n}'s secret with ${other} is ${age} s old by its report of ${r.at}, but its last renewal ${lr} says otherwise`,
      claimed,
    );
  return { node: n, confirmed: true, ...claimed, lastRenewal: lr };
}

/** The post-quantum evidence of `pair`; `views` by node name. */
export function pairPq(pair: PairRow, views: ReadonlyMap<string, NodeView>): AuditPairPq {
  const initiator = pqInitiator(pair.a, pair.b);
  const roleOf = (n: string): PeerPq['role'] => (n === initiator ? 'initiator' : 'responder');
  const [sa, sb] = pair.sides;
  const a = endOf(sa, pair.b, views.get(pair.a), roleOf(pair.a));
  const b = endOf(sb, pair.a, views.get(pair.b), roleOf(pair.b));
  const problems: string[] = [];
  // The secret protects the pair only if each end's tunnel peer is the key the other end really
  // has. (Whether the pair is encrypted is its own rule, `pair-not-encrypted`.)
  if (a.confirmed && b.confirmed)
    for (const [x, y] of [
      [sa, sb],
      [sb, sa],
    ] as const)
      if (x.peerKey !== y.ownKey)
        problems.push(
          `${x.node} holds its secret on a tunnel peer with key ${x.peerKey ?? '–'}, but ${y.node}'s key is ${y.ownKey ?? 'unknown'}`,
        );
  return { confirmed: a.confirmed && b.confirmed && problems.length === 0, a, b, problems };
}

/** Why `pq` is not confirmed, naming the end(s) that lack it (one sentence). */
export function pqShortfall(pair: { readonly a: string; readonly b: string }, pq: AuditPairPq): string {
  const ends = [pq.a, pq.b].filter((e) => !e.confirmed);
  const who =
    ends.length === 2
      ? `neither ${pair.a} nor ${pair.b} confirms one`
      : ends.length === 1
        ? `${ends[0]?.node} lacks it`
        : 'both ends confirm one, but they disagree';
  const why = [...ends.map((e) => e.problem ?? ''), ...pq.problems].filter((x) => x !== '');
  return `no confirmed post-quantum secret on both ends of ${pair.a} ↔ ${pair.b}: ${who} (${why.join('; ')})`;
}

/**
 * Whether a (possibly hostile, possibly pre-issue-19) report says it carries post-quantum
 * evidence: its policy requires it or its summary counts it.
 */
export function carriesPq(r: { readonly policy: unknown; readonly summary: unknown }): boolean {
  const { policy, summary } = r;
  return (
    (isObject(policy) && policy.requirePostQuantum === true) ||
    (isObject(summary) && (summary.postQuantumPairs !== undefined || summary.nonPostQuantumPairs !== undefined))
  );
}

/** The summary's post-quantum counts. */
export function pqCounts(pairs: readonly { readonly postQuantum?: AuditPairPq | undefined }[]): {
  postQuantumPairs: number;
  nonPostQuantumPairs: number;
} {
  const n = pairs.filter((p) => p.postQuantum?.confirmed === true).length;
  return { postQuantumPairs: n, nonPostQuantumPairs: pairs.length - n };
}
