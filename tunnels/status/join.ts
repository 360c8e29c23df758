/**
 * Joins every agent's full report (tunnels/status/report.ts, fetched from the agent's `/status`
 * by `sealctl`) into one row per node pair, as `sealctl status` and `sealctl audit` show them.
 * Pure: the node list, the fetch results and the time are inputs. A pair is only `encrypted`
 * when both ends say so about each other in fresh reports and agree on each other's keys;
 * anything missing (an agent that did not answer, among others) makes the row `partial`.
 */
import { fingerprint } from '../../keymgr/keys.js';
import { decodeNode } from '../plan/annotations.js';
import { ANNOTATIONS } from '../../common/constants.js';
import type { RawNode } from '../ports/model.js';
import { decodeStatus, type NodeStatusReport, type PeerPq, type PeerState, type PeerStatus } from './report.js';
import { decodeSummary } from './summary.js';

/** Seconds on top of two heartbeats before a report counts as stale. */
export const STALE_GRACE_SECONDS = 10;
/** A report this far in the future (clock skew) is not trusted. */
const MAX_FUTURE_SECONDS = 300;

/** How usable a node's report is. */
export type ReportHealth = 'ok' | 'missing' | 'invalid' | 'stale' | 'stopped' | 'no-agent' | 'unreachable';

/**
 * What fetching one agent's full report gave: its text, or why there is none (one sentence:
 * the agent did not answer in time, refused the token, no agent pod on the node...).
 */
export type FetchedReport =
  | { readonly ok: true; readonly text: string }
  | { readonly ok: false; readonly reason: string; readonly noAgent?: boolean };

/** Largest full report accepted from an agent (bytes): ~250 bytes per peer at 20,000 peers, doubled. */
export const FULL_REPORT_MAX_BYTES = 12 * 1024 * 1024;

/** One node as the join sees it. */
export interface NodeView {
  readonly name: string;
  readonly health: ReportHealth;
  /** Sentence for anything but `ok`. */
  readonly problem: string | undefined;
  readonly report: NodeStatusReport | undefined;
  /** Seconds since the report was generated (negative: from the future). */
  readonly reportAgeSeconds: number | undefined;
  /** Fingerprint of the key the node publishes in its annotations (undefined: none / invalid). */
  readonly publishedKey: string | undefined;
  readonly keyAgeSeconds: number | undefined;
}

/** Pair state: a peer state, or `unknown` when a side's report is missing or unusable. */
export type PairState = PeerState | 'unknown';

/** One side of a pair: what node `node` says about the other one. */
export interface PairSide {
  readonly node: string;
  readonly state: PairState;
  readonly reason: string | undefined;
  /** Fingerprint of the key this side's tunnel holds for the other side. */
  readonly peerKey: string | undefined;
  /** This side's own key fingerprint (from its report, else its annotation). */
  readonly ownKey: string | undefined;
  readonly keyAgeSeconds: number | undefined;
  /** Last handshake with the other side, Unix seconds (0: never). */
  readonly handshake: number | undefined;
  readonly handshakeAgeSeconds: number | undefined;
  readonly rx: number | undefined;
  readonly tx: number | undefined;
  /** Mode ipsec: what the SAs this side holds for the other side use, as observed in its kernel. */
  readonly algorithm?: string | undefined;
  /** Mode ipsec: this side's outbound / inbound SPIs with the other side, and packet counters. */
  readonly spiOut?: string | undefined;
  readonly spiIn?: readonly string[] | undefined;
  readonly rxPackets?: number | undefined;
  readonly txPackets?: number | undefined;
  /** Post-quantum protection of the pair as this side sees it (absent with `postQuantum: off`). */
  readonly pq?: PeerPq | undefined;
  /** When this side's data was generated. */
  readonly asOf: string | undefined;
}

/** One unordered node pair, `a < b`. */
export interface PairRow {
  readonly a: string;
  readonly b: string;
  readonly state: PairState;
  /** Some of the evidence is missing (a report missing, stale, invalid, stopped or truncated). */
  readonly partial: boolean;
  readonly mode: string | undefined;
  readonly algorithm: string | undefined;
  readonly sides: readonly [PairSide, PairSide];
  /** Every reason the pair is not plainly encrypted, one sentence each. */
  readonly notes: readonly string[];
}

/** Everything `sealctl status` shows. */
export interface ClusterStatus {
  readonly generatedAt: string;
  readonly nodes: readonly NodeView[];
  readonly pairs: readonly PairRow[];
  /** True when any pair is partial or any node's report is not `ok`. */
  readonly partial: boolean;
  /** Longest heartbeat among the reports: counters may be this old (plus publication delay). */
  readonly maxHeartbeatSeconds: number;
}

const SEVERITY: Readonly<Record<PairState, number>> = {
  encrypted: 0,
  unknown: 1,
  pending: 2,
  dropping: 3,
  misconfigured: 4,
};

function worst(a: PairState, b: PairState): PairState {
  const [x, y] = [SEVERITY[a], SEVERITY[b]];
  // A known problem outranks missing evidence; missing evidence outranks "encrypted".
  return x >= y ? a : b;
}

function viewOf(raw: RawNode, now: Date, fetched: FetchedReport | undefined): NodeView {
  const nowS = now.getTime() / 1000;
  const decoded = decodeNode(raw);
  const publishedKey = decoded.ok ? fingerprint(decoded.node.wireguardPublicKey) : undefined;
  const keyCreated = raw.annotations[ANNOTATIONS.keyCreated];
  const annotationKeyAge =
    keyCreated === undefined || Number.isNaN(Date.parse(keyCreated))
      ? undefined
      : Math.floor(nowS - Date.parse(keyCreated) / 1000);
  const base = {
    name: raw.name,
    publishedKey,
    report: undefined,
    reportAgeSeconds: undefined,
    keyAgeSeconds: annotationKeyAge,
  };
  const agentless = !Object.keys(raw.annotations).some((k) => k.startsWith('sealnet.io/'));
  const summaryText = raw.annotations[ANNOTATIONS.status];
  const summary = summaryText === undefined ? undefined : decodeSummary(summaryText);
  if (fetched === undefined || !fetched.ok) {
    if (agentless && (fetched === undefined || fetched.noAgent === true))
      return {
        ...base,
        health: 'no-agent',
        problem: `node ${raw.name} has no sealnet annotations: no agent has ever run there`,
      };
    if (fetched === undefined)
      return { ...base, health: 'missing', problem: `the full status of ${raw.name} was not fetched` };
    // A clean stop publishes a last summary saying so: the agent is gone, not just unreachable.
    if (summary?.ok === true && summary.summary.agent === 'stopped')
      return {
        ...base,
        health: 'stopped',
        problem: `the agent on ${raw.name} stopped at ${summary.summary.at} and does not answer (${fetched.reason}); its tunnels are left in place but nobody maintains them`,
      };
    // Otherwise the summary on the Node says what the agent last published: context, not evidence.
    const last =
      summary?.ok === true
        ? ` (its last published summary, ${summary.summary.at}: ${summary.summary.agent}, ${summary.summary.counts.encrypted} encrypted, ${summary.summary.counts.pending + summary.summary.counts.dropping + summary.summary.counts.misconfigured} not)`
        : '';
    return {
      ...base,
      health: 'unreachable',
      problem: `the agent on ${raw.name} did not give its status: ${fetched.reason}${last}`,
    };
  }
  const r = decodeStatus(fetched.text, FULL_REPORT_MAX_BYTES);
  if (!r.ok) return { ...base, health: 'invalid', problem: `node ${raw.name}: ${r.error}` };
  const report = r.report;
  if (report.node !== raw.name)
    return {
      ...base,
      health: 'invalid',
      problem: `the agent reached for node ${raw.name} reports about node ${report.node}`,
    };
  const age = Math.floor(nowS - Date.parse(report.at) / 1000);
  const view = {
    ...base,
    report,
    reportAgeSeconds: age,
    keyAgeSeconds: Math.floor(nowS - Date.parse(report.key.createdAt) / 1000),
  };
  const staleAfter = 2 * report.heartbeatSeconds + STALE_GRACE_SECONDS;
  if (report.agent === 'stopped')
    return {
      ...view,
      health: 'stopped',
      problem: `the agent on ${raw.name} stopped at ${report.at}; its tunnels are left in place but nobody maintains them`,
    };
  if (age > staleAfter)
    return {
      ...view,
      health: 'stale',
      problem: `the status of ${raw.name} is ${age} s old (stale after ${staleAfter} s)`,
    };
  if (age < -MAX_FUTURE_SECONDS)
    return {
      ...view,
      health: 'invalid',
      problem: `the status of ${raw.name} is dated ${-age} s in the future (clock skew?)`,
    };
  return { ...view, health: 'ok', problem: undefined };
}

/** Peers of each report by name, built once per join (a lookup per pair side, not a scan). */
const peerIndex = new WeakMap<NodeStatusReport, Map<string, PeerStatus>>();
function peerOf(r: NodeStatusReport | undefined, name: string): PeerStatus | undefined {
  if (r === undefined) return undefined;
  let ix = peerIndex.get(r);
  if (ix === undefined) peerIndex.set(r, (ix = new Map(r.peers.map((p) => [p.node, p]))));
  return ix.get(name);
}

function side(self: NodeView, other: string, nowS: number): { side: PairSide; notes: string[] } {
  const notes: string[] = [];
  const r = self.report;
  const peer: PeerStatus | undefined = peerOf(r, other);
  const usable = self.health === 'ok' && r !== undefined;
  let state: PairState = 'unknown';
  let reason: string | undefined;
  if (!usable) {
    reason = self.problem;
    notes.push(self.problem ?? `no usable status from ${self.name}`);
  } else if (peer === undefined) {
    reason =
      r.omitted > 0
        ? `${self.name} left ${other} out of its report (size bound, ${r.omitted} peers omitted)`
        : `${self.name} does not list ${other} as a peer (it may have joined after ${r.at})`;
    notes.push(reason);
  } else {
    state = peer.state;
    reason = peer.reason;
    if (peer.state !== 'encrypted')
      notes.push(`${self.name} → ${other}: ${peer.state}${peer.reason === undefined ? '' : ` (${peer.reason})`}`);
    if (peer.pq?.reason !== undefined) notes.push(`${self.name} → ${other}: post-quantum: ${peer.pq.reason}`);
  }
  const hs = peer?.handshake;
  return {
    side: {
      node: self.name,
      state,
      reason,
      peerKey: peer?.key,
      ownKey: r?.key.fingerprint ?? self.publishedKey,
      keyAgeSeconds: self.keyAgeSeconds,
      handshake: hs,
      handshakeAgeSeconds: hs === undefined || hs === 0 ? undefined : Math.floor(nowS - hs),
      rx: peer?.rx,
      tx: peer?.tx,
      ...(peer?.algorithm === undefined
        ? {}
        : {
            algorithm: peer.algorithm,
            spiOut: peer.spiOut,
            spiIn: peer.spiIn,
            rxPackets: peer.rxPackets,
            txPackets: peer.txPackets,
          }),
      ...(peer?.pq === undefined ? {} : { pq: peer.pq }),
      asOf: r?.at,
    },
    notes,
  };
}

/** One name when both ends agree, else `a/b` (`?` for an end that says nothing). Observed SA algorithms (mode ipsec) win over configured ones. */
function pairAlgorithm(a: string | undefined, b: string | undefined): string | undefined {
  return a === b ? a : [a ?? '?', b ?? '?'].join('/');
}

/**
 * Joins every node's report into pair rows. `reports`: what fetching each agent's full report
 * gave, by node name (a node without an entry is `missing`). `only`: keep pairs that involve
 * these nodes.
 */
export function joinStatus(
  nodes: readonly RawNode[],
  opts: { now: Date; reports: ReadonlyMap<string, FetchedReport>; only?: readonly string[] | undefined },
): ClusterStatus {
  const now = opts.now;
  const nowS = now.getTime() / 1000;
  const views = [...nodes]
    .sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))
    .map((n) => viewOf(n, now, opts.reports.get(n.name)));
  const only = opts.only === undefined || opts.only.length === 0 ? undefined : new Set(opts.only);
  const pairs: PairRow[] = [];
  for (let i = 0; i < views.length; i++) {
    for (let j = i + 1; j < views.length; j++) {
      const va = views[i] as NodeView;
      const vb = views[j] as NodeView;
      if (only !== undefined && !only.has(va.name) && !only.has(vb.name)) continue;
      const sa = side(va, vb.name, nowS);
      const sb = side(vb, va.name, nowS);
      const notes = [...sa.notes, ...sb.notes];
      let state = worst(sa.side.state, sb.side.state);
      // Each end must hold the key the other end really has.
      for (const [x, y] of [
        [sa.side, sb.side],
        [sb.side, sa.side],
      ] as const) {
        if (x.peerKey !== undefined && y.ownKey !== undefined && x.peerKey !== y.ownKey) {
          notes.push(`${x.node} holds key ${x.peerKey} for ${y.node}, but ${y.node}'s key is ${y.ownKey}`);
          state = worst(state, 'misconfigured');
        }
      }
      const ra = va.report;
      const rb = vb.report;
      if (ra !== undefined && rb !== undefined && ra.mode !== rb.mode) {
        notes.push(`${va.name} runs ${ra.mode}, ${vb.name} runs ${rb.mode}`);
        state = worst(state, 'misconfigured');
      }
      const partial = sa.side.state === 'unknown' || sb.side.state === 'unknown';
      pairs.push({
        a: va.name,
        b: vb.name,
        state,
        partial,
        mode: ra?.mode === rb?.mode ? ra?.mode : [ra?.mode ?? '?', rb?.mode ?? '?'].join('/'),
        algorithm: pairAlgorithm(sa.side.algorithm ?? ra?.algorithm, sb.side.algorithm ?? rb?.algorithm),
        sides: [sa.side, sb.side],
        notes,
      });
    }
  }
  const inPairs = only === undefined ? undefined : new Set(pairs.flatMap((p) => [p.a, p.b]));
  const scoped = only === undefined ? views : views.filter((v) => only.has(v.name) || inPairs?.has(v.name) === true);
  return {
    generatedAt: now.toISOString(),
    nodes: scoped,
    pairs,
    partial: pairs.some((p) => p.partial) || scoped.some((v) => v.health !== 'ok'),
    maxHeartbeatSeconds: Math.max(0, ...scoped.map((v) => v.report?.heartbeatSeconds ?? 0)),
  };
}
