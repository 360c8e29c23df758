/**
 * The status summary an agent publishes on its own Node (`sealnet.io/status`): a few hundred
 * bytes, at most {@link SUMMARY_MAX_BYTES} whatever the number of peers. Every agent watches
 * every Node, so nothing published there may grow with N: the full per-peer report stays on
 * the agent (`/status`, tunnels/status/service.ts) and `sealctl status` / `sealctl audit` fetch
 * it on demand. Pure: no I/O, no clock reads.
 *
 * The summary changes only when what it says changes (counts per state, the worst peers, the
 * key, health, the digest of the full report's states); counters and handshake times are not in
 * it, so a quiet cluster publishes nothing.
 */
import { createHash } from 'node:crypto';
import { ANNOTATIONS } from '../../common/constants.js';
import {
  exactKeys,
  isObject,
  readBool,
  readCount,
  readText,
  readTime,
  parseVersionedObject,
} from '../../common/json.js';
import { PEER_STATES, type NodeStatusReport, type PeerState } from './report.js';

/** Version of the summary codec (the `v` field); version 1 was the full report. */
export const SUMMARY_VERSION = 2;
/** Hard upper bound of an encoded summary, bytes (UTF-8). */
export const SUMMARY_MAX_BYTES = 1024;
/** Most peers named in {@link StatusSummary.worst}. */
export const SUMMARY_WORST = 3;
/** Longest reason kept for a worst peer (characters, before the size bound shortens more). */
const WORST_REASON = 120;
/** Most failed steps listed. */
const MAX_ERRORS = 4;

/** One of the worst peers, as named in the summary. */
export interface SummaryPeer {
  readonly node: string;
  readonly state: PeerState;
  readonly reason?: string | undefined;
}

/** What an agent publishes on its Node. */
export interface StatusSummary {
  readonly v: number;
  readonly node: string;
  /** When this summary's content last changed (RFC 3339). */
  readonly at: string;
  readonly agent: 'running' | 'stopped';
  readonly mode: 'wireguard' | 'ipsec';
  readonly algorithm: string;
  readonly key: { readonly fingerprint: string; readonly epoch: number };
  readonly steering: { readonly enabled: boolean; readonly failClosed: boolean; readonly nodeToNode: boolean };
  readonly ready: boolean;
  /** Failed steps of the last pass (at most {@link MAX_ERRORS}). */
  readonly errors: readonly string[];
  /** Peers per state. */
  readonly counts: Readonly<Record<PeerState, number>>;
  /** The worst peers (most severe state first), at most {@link SUMMARY_WORST}. */
  readonly worst: readonly SummaryPeer[];
  readonly failOpenPackets: number;
  /** First 16 hex digits of SHA-256 over the full report's states ({@link reportDigest}). */
  readonly digest: string;
}

const SEVERITY: Readonly<Record<PeerState, number>> = { misconfigured: 0, dropping: 1, pending: 2, encrypted: 3 };

/** Cuts `s` to at most `n` characters (an ellipsis marks the cut). */
function cut(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, Math.max(0, n - 1))}…`;
}

/**
 * The digest a summary carries for a full report: over every peer's state, reason (numbers
 * blanked: a reason that only counts up is no change), key and whether it ever shook hands;
 * not over counters and times. Two reports with the same digest say the same thing.
 */
export function reportDigest(r: NodeStatusReport): string {
  const h = createHash('sha256').update(
    JSON.stringify([r.agent, r.mode, r.algorithm, r.key, r.steering, r.ready, r.errors]),
  );
  // The same bytes as one update per peer, hashed in one call (5,000 calls cost more than the hash).
  const parts = r.peers.map((p) =>
    JSON.stringify([p.node, p.state, p.reason?.replace(/\d+/g, '#'), p.key, p.handshake === 0]),
  );
  h.update(parts.join(''));
  return h.digest('hex').slice(0, 16);
}

/** The summary of a full report. O(N) in the report's peers, once per publication check. */
export function summarize(r: NodeStatusReport): StatusSummary {
  const counts = { encrypted: 0, pending: 0, dropping: 0, misconfigured: 0 } as Record<PeerState, number>;
  // Worst peers: a bounded selection, not a sort of every peer.
  const worst: SummaryPeer[] = [];
  for (const p of r.peers) {
    counts[p.state]++;
    if (p.state === 'encrypted') continue;
    worst.push({
      node: p.node,
      state: p.state,
      ...(p.reason === undefined ? {} : { reason: cut(p.reason, WORST_REASON) }),
    });
    worst.sort((a, b) => SEVERITY[a.state] - SEVERITY[b.state] || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
    if (worst.length > SUMMARY_WORST) worst.pop();
  }
  return {
    v: SUMMARY_VERSION,
    node: r.node,
    at: r.at,
    agent: r.agent,
    mode: r.mode,
    algorithm: r.algorithm,
    key: { fingerprint: r.key.fingerprint, epoch: r.key.epoch },
    steering: { ...r.steering },
    ready: r.ready,
    errors: r.errors.slice(0, MAX_ERRORS).map((e) => cut(e, 32)),
    counts,
    worst,
    failOpenPackets: r.failOpenPackets,
    digest: reportDigest(r),
  };
}

/**
 * What decides whether a summary is republished: everything but the time, with numbers in
 * reasons blanked (a reason such as "no handshake for 213 s" must not republish every check).
 */
export function summaryChangeKey(s: StatusSummary): string {
  const { at: _at, failOpenPackets, ...rest } = s;
  return JSON.stringify({
    ...rest,
    failOpen: failOpenPackets > 0,
    worst: s.worst.map((w) => ({ ...w, reason: w.reason?.replace(/\d+/g, '#') })),
  });
}

/**
 * Encodes a summary within {@link SUMMARY_MAX_BYTES}: reasons are shortened, then dropped, then
 * worst peers are dropped, then long strings of the header are cut. Every step keeps the
 * counts, the key and the digest, so a reader always sees how many peers are in which state.
 */
export function encodeSummary(s: StatusSummary, maxBytes = SUMMARY_MAX_BYTES): string {
  const fits = (x: StatusSummary): string | undefined => {
    const t = JSON.stringify(x);
    return Buffer.byteLength(t) <= maxBytes ? t : undefined;
  };
  let x = s;
  for (const n of [WORST_REASON, 60, 24]) {
    x = { ...x, worst: x.worst.map((w) => (w.reason === undefined ? w : { ...w, reason: cut(w.reason, n) })) };
    const t = fits(x);
    if (t !== undefined) return t;
  }
  x = { ...x, worst: x.worst.map((w) => ({ node: w.node, state: w.state })) };
  while (x.worst.length > 0) {
    const t = fits(x);
    if (t !== undefined) return t;
    x = { ...x, worst: x.worst.slice(0, -1) };
  }
  // Only the header is left: shorten its free-text fields (the node name is bounded at 253).
  x = { ...x, algorithm: cut(x.algorithm, 40), errors: x.errors.slice(0, 2).map((e) => cut(e, 16)) };
  const t = fits(x);
  if (t !== undefined) return t;
  x = { ...x, node: cut(x.node, 64), algorithm: cut(x.algorithm, 16), errors: [] };
  const last = fits(x);
  if (last === undefined) throw new Error(`status summary cannot fit ${maxBytes} bytes`);
  return last;
}

/** Result of {@link decodeSummary}. */
export type DecodeSummaryResult =
  { readonly ok: true; readonly summary: StatusSummary } | { readonly ok: false; readonly error: string };

const FINGERPRINT = /^[0-9a-f]{16}$/;

/** Decodes a summary strictly (size bound, every field checked, no unknown field). */
export function decodeSummary(text: string): DecodeSummaryResult {
  try {
    const v = parseVersionedObject(text, SUMMARY_MAX_BYTES, SUMMARY_VERSION);
    exactKeys(
      v,
      [
        'v',
        'node',
        'at',
        'agent',
        'mode',
        'algorithm',
        'key',
        'steering',
        'ready',
        'errors',
        'counts',
        'worst',
        'failOpenPackets',
        'digest',
      ],
      [],
      'status',
    );
    if (v.agent !== 'running' && v.agent !== 'stopped') throw new Error('agent must be "running" or "stopped"');
    if (v.mode !== 'wireguard' && v.mode !== 'ipsec') throw new Error('mode must be "wireguard" or "ipsec"');
    if (!isObject(v.key)) throw new Error('key must be an object');
    exactKeys(v.key, ['fingerprint', 'epoch'], [], 'key');
    if (typeof v.key.fingerprint !== 'string' || !FINGERPRINT.test(v.key.fingerprint))
      throw new Error('key.fingerprint must be a 16-hex-digit fingerprint');
    if (!isObject(v.steering)) throw new Error('steering must be an object');
    exactKeys(v.steering, ['enabled', 'failClosed', 'nodeToNode'], [], 'steering');
    const steering = {
      enabled: readBool(v.steering.enabled, 'steering.enabled'),
      failClosed: readBool(v.steering.failClosed, 'steering.failClosed'),
      nodeToNode: readBool(v.steering.nodeToNode, 'steering.nodeToNode'),
    };
    if (!Array.isArray(v.errors) || v.errors.length > MAX_ERRORS)
      throw new Error(`errors must be a list of at most ${MAX_ERRORS}`);
    if (!isObject(v.counts)) throw new Error('counts must be an object');
    exactKeys(v.counts, [...PEER_STATES], [], 'counts');
    const counts = Object.fromEntries(
      PEER_STATES.map((s) => [s, readCount((v.counts as Record<string, unknown>)[s], `counts.${s}`)]),
    ) as Record<PeerState, number>;
    if (!Array.isArray(v.worst) || v.worst.length > SUMMARY_WORST)
      throw new Error(`worst must be a list of at most ${SUMMARY_WORST}`);
    const worst = v.worst.map((w, i): SummaryPeer => {
      if (!isObject(w)) throw new Error(`worst[${i}] must be an object`);
      exactKeys(w, ['node', 'state'], ['reason'], `worst[${i}]`);
      if (!(PEER_STATES as readonly unknown[]).includes(w.state))
        throw new Error(`worst[${i}].state must be one of ${PEER_STATES.join(', ')}`);
      return {
        node: readText(w.node, `worst[${i}].node`, 253),
        state: w.state as PeerState,
        ...(w.reason === undefined ? {} : { reason: readText(w.reason, `worst[${i}].reason`, WORST_REASON) }),
      };
    });
    if (typeof v.digest !== 'string' || !/^[0-9a-f]{16}$/.test(v.digest))
      throw new Error('digest must be 16 hex digits');
    return {
      ok: true,
      summary: {
        v: SUMMARY_VERSION,
        node: readText(v.node, 'node', 253),
        at: readTime(v.at, 'at'),
        agent: v.agent,
        mode: v.mode,
        algorithm: readText(v.algorithm, 'algorithm', 64),
        key: { fingerprint: v.key.fingerprint, epoch: readCount(v.key.epoch, 'key.epoch') },
        steering,
        ready: readBool(v.ready, 'ready'),
        errors: v.errors.map((e, i) => readText(e, `errors[${i}]`, 32)),
        counts,
        worst,
        failOpenPackets: readCount(v.failOpenPackets, 'failOpenPackets'),
        digest: v.digest,
      },
    };
  } catch (err) {
    return { ok: false, error: `${ANNOTATIONS.status} ${(err as Error).message}` };
  }
}
