/**
 * The status report an agent publishes about itself (annotation `sealnet.io/status` on its own
 * Node) and serves on its authenticated `/status` endpoint. Pure: no I/O, no clock reads (time
 * is an input). Key material never enters a report: only fingerprints.
 *
 * Why an annotation: `sealctl status` and `sealctl audit` must see every agent both in the
 * namespace cluster (file store) and in a real cluster (through the API server, no port on the
 * host network). Each agent already may patch `sealnet.io/` annotations of its own Node (and
 * only those: the chart's admission policy), so the report travels the way the keys do.
 * Reports are rate-limited by the publisher (tunnels/status/service.ts): counters in them are as
 * old as the report, which says when it was generated.
 */
import { fingerprint, type PublicKey } from '../../keymgr/keys.js';
import { decodeIpsecKey, decodeNode } from '../plan/annotations.js';
import { canonicalCidr } from '../../common/ip.js';
import { ANNOTATIONS, STATUS_MAX_BYTES, STATUS_VERSION } from '../../common/constants.js';
import { ipsecOf, wireguardOf, type DesiredState, type Mode, type RawNode } from '../ports/model.js';
import { spiHex } from '../ports/xfrm-types.js';
import {
  exactKeys,
  isObject,
  readBool,
  readCount,
  readText,
  readTime,
  type JsonObject,
  parseVersionedObject,
} from '../../common/json.js';
import type { IpsecPort, SaEvidence } from '../ports/ipsec.js';
import { publishedIpsecKeys } from '../rotation/ipsec.js';
import type { ObservedIpsec, ObservedPeer, SteeringCounter, SteeringEntry } from '../ports/index.js';
import { peerIdOf } from '../plan/steering.js';

/**
 * Per-peer state, from this node's side:
 * - `encrypted`: a tunnel with the peer's current key is programmed, steering sends the peer's
 *   pod traffic into it, and a handshake completed (recently, when keepalive is on);
 * - `pending`: programmed, but no (recent) handshake yet, or not planned yet;
 * - `dropping`: no usable tunnel, and fail-closed steering drops the peer's pod traffic;
 * - `misconfigured`: something waiting will not fix (a bad or conflicting node, a key mismatch),
 *   or no usable tunnel and nothing drops the traffic (it may leave in plaintext).
 */
export type PeerState = 'encrypted' | 'pending' | 'dropping' | 'misconfigured';

/** All peer states, best first. */
export const PEER_STATES: readonly PeerState[] = ['encrypted', 'pending', 'dropping', 'misconfigured'];

/** Algorithm identifiers used in reports and audit policies. */
export const ALGORITHMS = {
  /** WireGuard: Noise_IKpsk2 with X25519, ChaCha20-Poly1305 and BLAKE2s. */
  wireguard: 'wireguard-chacha20poly1305',
  /** IPsec ESP with AES-GCM (RFC 4106), 128-bit key. */
  ipsecAesGcm128: 'ipsec-esp-aes-gcm-128',
  /** IPsec ESP with AES-GCM (RFC 4106), 256-bit key. */
  ipsecAesGcm256: 'ipsec-esp-aes-gcm-256',
} as const;

/** One of {@link ALGORITHMS}. */
export type Algorithm = (typeof ALGORITHMS)[keyof typeof ALGORITHMS];

/** The algorithm a node runs in `mode` (IPsec: AES-GCM with `ipsecKeyBits`, default 256). */
export function algorithmOf(mode: Mode, ipsecKeyBits: 128 | 256 = 256): Algorithm {
  if (mode === 'wireguard') return ALGORITHMS.wireguard;
  return ipsecKeyBits === 128 ? ALGORITHMS.ipsecAesGcm128 : ALGORITHMS.ipsecAesGcm256;
}

/** One peer as this node sees it. */
/** A pair's post-quantum protection in the report (tunnels/ports/pq.ts `PqPairStatus` without the node). */
export interface PeerPq {
  readonly kem: string;
  readonly protection: 'hybrid' | 'classical' | 'none';
  readonly phase: 'idle' | 'sent' | 'confirmed';
  readonly role: 'initiator' | 'responder';
  readonly secretAgeSeconds?: number;
  readonly lastRenewal?: string;
  readonly reason?: string;
}

export interface PeerStatus {
  readonly node: string;
  readonly state: PeerState;
  /** Why the state is not `encrypted` (one sentence, at most {@link MAX_REASON} characters). */
  readonly reason?: string | undefined;
  /** Fingerprint of the key the tunnel holds for this peer (absent: no tunnel peer). */
  readonly key?: string | undefined;
  /** Last completed handshake, Unix seconds (0: never). Absent: no tunnel peer. */
  readonly handshake?: number | undefined;
  /** Bytes received from / sent to the peer through the tunnel (absent in compact reports). */
  readonly rx?: number | undefined;
  readonly tx?: number | undefined;
  /** Mode ipsec: the algorithm of the pair's SAs as the kernel holds them (an {@link ALGORITHMS} id, else `xfrm:<name>/<bits>`). */
  readonly algorithm?: string | undefined;
  /** Mode ipsec: SPI of the outbound SA and of the inbound SAs (`0x51…`). */
  readonly spiOut?: string | undefined;
  readonly spiIn?: readonly string[] | undefined;
  /** Mode ipsec: packets received from / sent to the peer (SA counters). */
  readonly rxPackets?: number | undefined;
  readonly txPackets?: number | undefined;
  /** Post-quantum protection of the pair (issue 19); absent with `postQuantum: off`. */
  readonly pq?: PeerPq | undefined;
}

/** What an agent publishes about itself. Version {@link STATUS_VERSION}. */
export interface NodeStatusReport {
  readonly v: number;
  readonly node: string;
  /** When the report was generated (RFC 3339). Every counter in it is as of this time. */
  readonly at: string;
  /** `stopped`: the agent exited cleanly; tunnels stay but nobody maintains them. */
  readonly agent: 'running' | 'stopped';
  /** The agent republishes at least this often (seconds); older reports are stale. */
  readonly heartbeatSeconds: number;
  readonly mode: Mode;
  readonly algorithm: string;
  readonly key: { readonly fingerprint: string; readonly epoch: number; readonly createdAt: string };
  readonly steering: { readonly enabled: boolean; readonly failClosed: boolean; readonly nodeToNode: boolean };
  /** Every known peer programmed (what `/readyz` answers). */
  readonly ready: boolean;
  /** Reconcile steps that failed in the last pass. */
  readonly errors: readonly string[];
  /** BPF drops by reason (packets, all hooks summed, node-wide: the program counts per reason, not per peer). */
  readonly drops: Readonly<Record<string, number>>;
  /** Packets the steering program passed although fail-closed would have dropped them (fail-open). */
  readonly failOpenPackets: number;
  /** `full`; `compact`: byte counters of encrypted peers left out to fit {@link STATUS_MAX_BYTES}. */
  readonly detail: 'full' | 'compact';
  /** Other nodes, sorted by name. */
  readonly peers: readonly PeerStatus[];
  /** Peers left out to fit the size bound (their pairs are reported as partial). */
  readonly omitted: number;
}

/** Why a mode ipsec peer is not `encrypted` when the agent has no XFRM observation (no observer wired in). */
export const IPSEC_UNOBSERVED = 'the XFRM SAs of mode ipsec are not observed by this agent; not proven encrypted';

/** Longest reason sentence kept in a report. */
export const MAX_REASON = 200;
/** WireGuard's REJECT_AFTER_TIME: a session older than this is unusable (seconds). */
export const WG_REJECT_AFTER_SECONDS = 180;
/** Slack on top of reject-after + keepalive before a handshake counts as stale (rekey timeouts). */
const HANDSHAKE_SLACK_SECONDS = 15;

/** Everything {@link buildNodeStatus} reads; all of it already observed by the caller. */
export interface NodeStatusInput {
  readonly self: string;
  readonly now: Date;
  readonly agent: 'running' | 'stopped';
  readonly heartbeatSeconds: number;
  readonly mode: Mode;
  readonly algorithm: string;
  readonly key: { readonly publicKey: PublicKey; readonly epoch: number; readonly createdAt: Date };
  readonly steering: { readonly enabled: boolean; readonly failClosed: boolean; readonly nodeToNode: boolean };
  /** Keepalive configured for every peer (seconds, 0 = off): decides whether a handshake can be stale. */
  readonly persistentKeepalive: number;
  /** The node store's list (every node, decodable or not). */
  readonly nodes: readonly RawNode[];
  /** The last reconcile pass; undefined before the first one. */
  readonly reconcile:
    | {
        readonly desired: DesiredState | undefined;
        readonly errors: readonly { step: string }[];
        readonly converged: boolean;
      }
    | undefined;
  /** Tunnel peers read from the kernel; undefined when they could not be read. */
  readonly observedPeers: readonly ObservedPeer[] | undefined;
  /** Mode ipsec: owned SAs and policies read from the kernel; undefined when not read (or unreadable). */
  readonly observedIpsec?: ObservedIpsec | undefined;
  /** Mode ipsec: the IPsec port's evidence reader (matches `observedIpsec` to a planned pair). */
  readonly ipsecEvidence?: Pick<IpsecPort, 'pairEvidence'> | undefined;
  /** Steering map entries read from the kernel; undefined when steering is off or unreadable. */
  readonly steeringEntries: readonly SteeringEntry[] | undefined;
  readonly counters: readonly SteeringCounter[] | undefined;
  /** Problems observing (cannot read the tunnel, the maps...). */
  readonly observeErrors: readonly string[];
}

function clip(text: string): string {
  return text.length <= MAX_REASON ? text : `${text.slice(0, MAX_REASON - 1)}…`;
}

/**
 * Lookups by key into the report's input lists, built once per list (a 5,000-node report looked
 * every peer up with find/filter: O(N²), a second of CPU per report).
 */
const indexes = new WeakMap<object, Map<string, unknown[]>>();
function lookup<T extends object>(
  list: readonly T[],
  key: (x: T) => string,
  tag: string,
  wanted: string,
): readonly T[] {
  let byTag = indexes.get(list);
  if (byTag === undefined) indexes.set(list, (byTag = new Map()));
  let ix = byTag.get(tag) as unknown as Map<string, T[]> | undefined;
  if (ix === undefined) {
    ix = new Map();
    for (const x of list) {
      const k = key(x);
      const l = ix.get(k);
      if (l === undefined) ix.set(k, [x]);
      else l.push(x);
    }
    byTag.set(tag, ix as unknown as unknown[]);
  }
  return ix.get(wanted) ?? [];
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const x = new Set(a.map((c) => canonicalCidr(c) ?? c));
  const y = new Set(b.map((c) => canonicalCidr(c) ?? c));
  return x.size === y.size && [...x].every((c) => y.has(c));
}

/** The report's name of an SA's algorithm. */
function saAlgorithm(sa: SaEvidence): string {
  const { aead, aesGcmBits: bits } = sa;
  if (bits !== undefined) return bits === 128 ? ALGORITHMS.ipsecAesGcm128 : ALGORITHMS.ipsecAesGcm256;
  return aead === undefined ? 'xfrm:none' : `xfrm:${aead.name}/${aead.cipherBits}`;
}

/**
 * Mode ipsec, a planned pair: `encrypted` when the kernel holds the outbound SA, every planned
 * inbound SA and the pair's policies (outbound pinned to that SA), all with the node's
 * configured AES-GCM, and steering sends the peer's pod CIDRs into XFRM. No handshake exists:
 * inbound ICV failures with nothing received mean the two ends derived different keys.
 */
function ipsecPeerStatus(input: NodeStatusInput, node: RawNode, notUsable: (what: string) => PeerStatus): PeerStatus {
  if (input.observedIpsec === undefined || input.ipsecEvidence === undefined) {
    return {
      node: node.name,
      state: 'pending',
      reason:
        input.observeErrors.length > 0
          ? clip(`cannot read the XFRM state: ${input.observeErrors.join('; ')}`)
          : IPSEC_UNOBSERVED,
    };
  }
  const desired = ipsecOf(input.reconcile?.desired);
  const peer = desired === undefined ? undefined : lookup(desired.peers, (p) => p.node, 'node', node.name)[0];
  if (desired === undefined || peer === undefined)
    return notUsable('no IPsec pair with it is planned yet (it appeared after the last reconcile)');
  const ev = input.ipsecEvidence.pairEvidence(desired, peer, input.observedIpsec);
  const sas = [...(ev.outbound === undefined ? [] : [ev.outbound]), ...ev.inbound];
  const algorithms = [...new Set(sas.map((x) => saAlgorithm(x)))].sort();
  const seen = {
    key: fingerprint(peer.outbound.peerPublicKey),
    algorithm: algorithms.length === 0 ? undefined : algorithms.join('+'),
    spiOut: ev.outbound === undefined ? undefined : spiHex(ev.outbound.spi),
    spiIn: ev.inbound.map((x) => spiHex(x.spi)),
    rx: ev.inbound.reduce((n, x) => n + x.bytes, 0),
    tx: ev.outbound?.bytes,
    rxPackets: ev.inbound.reduce((n, x) => n + x.packets, 0),
    txPackets: ev.outbound?.packets,
  };
  if (ev.problems.length > 0) return { ...seen, ...notUsable(ev.problems.join('; ')) };
  const wrong = algorithms.filter((a) => a !== input.algorithm);
  if (wrong.length > 0)
    return {
      ...seen,
      node: node.name,
      state: 'misconfigured',
      reason: clip(`its SAs use ${wrong.join(', ')}, this node is configured for ${input.algorithm}`),
    };
  const decoded = decodeIpsecKey(node);
  // During the node's key rotation its SAs may hold the key it announces as next.
  if (decoded.ok && !publishedIpsecKeys(node).includes(peer.outbound.peerPublicKey)) {
    // The next reconcile pass rebuilds the pair with the published key (a rotation in progress).
    return {
      ...seen,
      node: node.name,
      state: 'pending',
      reason: clip(
        `the SAs hold IPsec key ${fingerprint(peer.outbound.peerPublicKey)}, the node now publishes ${fingerprint(decoded.publicKey)}`,
      ),
    };
  }
  const steer = steeringProblem(input, node, peer.remoteCIDRs, notUsable);
  if (steer !== undefined) return { ...seen, ...steer };
  if (seen.rxPackets === 0 && ev.inbound.some((x) => x.integrityFailures > 0)) {
    return {
      ...seen,
      node: node.name,
      state: 'pending',
      reason: 'ESP from it fails the integrity check and none was accepted: the two ends hold different SA keys',
    };
  }
  return { ...seen, node: node.name, state: 'encrypted' };
}

/** With steering on: undefined when the steering map sends every CIDR of the peer into the tunnel, else the peer's state. */
function steeringProblem(
  input: NodeStatusInput,
  node: RawNode,
  cidrs: readonly string[],
  notUsable: (what: string) => PeerStatus,
): PeerStatus | undefined {
  if (!input.steering.enabled) return undefined;
  if (input.steeringEntries === undefined)
    return {
      node: node.name,
      state: 'pending',
      reason: clip(`cannot read the steering map: ${input.observeErrors.join('; ') || 'unknown error'}`),
    };
  const id = peerIdOf(node.name);
  const entries = lookup(input.steeringEntries, (e) => `${e.peerId}|${e.kind}`, 'peer', `${id}|pod`);
  const steered = cidrs.every((c) => entries.some((e) => e.cidr === (canonicalCidr(c) ?? c) && e.state === 'ready'));
  return steered ? undefined : notUsable('the steering map does not send its pod CIDRs into the tunnel');
}

/** The state of one peer from this node's side, with the reason when it is not encrypted. */
function peerStatus(input: NodeStatusInput, node: RawNode): PeerStatus {
  const guard = input.steering.enabled && input.steering.failClosed;
  const unguarded = input.steering.enabled
    ? 'fail-closed is off: its traffic may leave in plaintext'
    : 'steering is disabled: its traffic may leave in plaintext';
  const notUsable = (what: string): PeerStatus =>
    guard
      ? { node: node.name, state: 'dropping', reason: clip(`${what}; fail-closed drops its pod traffic`) }
      : { node: node.name, state: 'misconfigured', reason: clip(`${what}; ${unguarded}`) };
  const r = input.reconcile;
  if (r === undefined || r.desired === undefined) return notUsable('the agent has not completed a reconcile pass yet');
  const skipped = lookup(r.desired.skipped, (s) => s.name, 'name', node.name)[0];
  if (skipped !== undefined) {
    if (skipped.reason === 'annotations-missing') return notUsable('the node publishes no key (is its agent running?)');
    return { node: node.name, state: 'misconfigured', reason: clip(skipped.detail) };
  }
  if (input.mode === 'ipsec') return ipsecPeerStatus(input, node, notUsable);
  const desired = lookup(wireguardOf(r.desired)?.peers ?? [], (p) => p.node, 'node', node.name)[0];
  if (desired === undefined) return notUsable('the node is not planned yet (it appeared after the last reconcile)');
  if (input.observedPeers === undefined)
    return {
      node: node.name,
      state: 'pending',
      reason: clip(`cannot read the tunnel: ${input.observeErrors.join('; ') || 'unknown error'}`),
    };
  const peer = lookup(input.observedPeers, (p) => p.publicKey, 'key', desired.publicKey)[0];
  const seen = {
    key: peer === undefined ? undefined : fingerprint(peer.publicKey),
    handshake: peer?.latestHandshake,
    rx: peer?.rxBytes,
    tx: peer?.txBytes,
  };
  if (peer === undefined || !sameSet(peer.allowedIPs, desired.allowedIPs)) {
    return {
      ...seen,
      ...notUsable(
        peer === undefined
          ? 'no tunnel peer with its key is programmed'
          : 'the tunnel peer does not carry exactly its pod CIDRs',
      ),
    };
  }
  const decoded = decodeNode(node);
  if (decoded.ok && decoded.node.wireguardPublicKey !== desired.publicKey) {
    return {
      ...seen,
      node: node.name,
      state: 'misconfigured',
      reason: clip(
        `the tunnel holds key ${fingerprint(desired.publicKey)}, the node publishes ${fingerprint(decoded.node.wireguardPublicKey)}`,
      ),
    };
  }
  // The pod CIDRs among its allowed IPs: with node-to-node encryption the peer also carries the
  // node's addresses, whose steering entries are of kind `node` (or absent when exempt).
  const podCidrs = new Set(node.podCIDRs.map((c) => canonicalCidr(c) ?? c));
  const steer = steeringProblem(
    input,
    node,
    desired.allowedIPs.filter((a) => podCidrs.has(canonicalCidr(a) ?? a)),
    notUsable,
  );
  if (steer !== undefined) return { ...seen, ...steer };
  if (peer.latestHandshake === 0)
    return { ...seen, node: node.name, state: 'pending', reason: 'programmed; no handshake has completed yet' };
  const age = Math.floor(input.now.getTime() / 1000) - peer.latestHandshake;
  const limit = WG_REJECT_AFTER_SECONDS + input.persistentKeepalive + HANDSHAKE_SLACK_SECONDS;
  if (input.persistentKeepalive > 0 && age > limit) {
    return {
      ...seen,
      node: node.name,
      state: 'pending',
      reason: clip(
        `no handshake for ${age} s although keepalive is ${input.persistentKeepalive} s (peer unreachable?)`,
      ),
    };
  }
  return { ...seen, node: node.name, state: 'encrypted' };
}

/**
 * Readiness: ready only when a reconcile pass completed after the store synced and every known
 * peer (every peer the planner wants) is programmed: a tunnel peer with its key and exactly its
 * pod CIDRs, and, with steering on, ready steering entries for them.
 */
export function readiness(input: NodeStatusInput): { ready: boolean; reasons: string[] } {
  return readinessOf(input, (name) => {
    const raw = lookup(input.nodes, (n) => n.name, 'name', name)[0];
    return raw === undefined ? undefined : peerStatus(input, raw);
  });
}

/** {@link readiness} with each peer's status given (`undefined`: the peer left the node store). */
function readinessOf(
  input: NodeStatusInput,
  statusOf: (name: string) => PeerStatus | undefined,
): { ready: boolean; reasons: string[] } {
  const r = input.reconcile;
  if (r === undefined) return { ready: false, reasons: ['no reconcile pass yet'] };
  const reasons: string[] = [];
  if (!r.converged)
    reasons.push(
      r.errors.length > 0
        ? `last reconcile failed at: ${[...new Set(r.errors.map((e) => e.step))].join(', ')}`
        : 'node store not synced',
    );
  if (r.desired === undefined) return { ready: false, reasons: reasons.length > 0 ? reasons : ['no plan yet'] };
  // Mode ipsec without an observation of XFRM: a converged pass applied every desired SA.
  if (input.mode === 'ipsec' && input.observedIpsec === undefined) return { ready: reasons.length === 0, reasons };
  const planned = (ipsecOf(r.desired)?.peers ?? wireguardOf(r.desired)?.peers ?? []).map((p) => p.node);
  for (const name of planned) {
    const s = statusOf(name);
    if (s === undefined) reasons.push(`peer ${name}: left the node store`);
    else if (s.state === 'dropping' || s.state === 'misconfigured' || (s.state === 'pending' && s.key === undefined))
      reasons.push(`peer ${name}: ${s.reason ?? s.state}`);
  }
  return { ready: reasons.length === 0, reasons };
}

function sumDrops(counters: readonly SteeringCounter[] | undefined): {
  drops: Record<string, number>;
  failOpen: number;
} {
  const drops: Record<string, number> = {};
  let failOpen = 0;
  for (const c of counters ?? []) {
    if (c.verdict === 'drop' && c.packets > 0n) drops[c.reason] = (drops[c.reason] ?? 0) + Number(c.packets);
    if (c.reason === 'fail_open') failOpen += Number(c.packets);
  }
  return { drops: Object.fromEntries(Object.entries(drops).sort(([a], [b]) => (a < b ? -1 : 1))), failOpen };
}

/** Builds this node's report. Pure and deterministic; peers sorted by name. */
export function buildNodeStatus(input: NodeStatusInput): NodeStatusReport {
  // Readiness judges the same peer statuses (computing them twice was half of a report's cost);
  // the first node of a name, as `readiness` looks it up.
  const peers = input.nodes.filter((n) => n.name !== input.self).map((n) => peerStatus(input, n));
  const byName = new Map<string, PeerStatus>();
  for (const p of peers) if (!byName.has(p.node)) byName.set(p.node, p);
  peers.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  const self = lookup(input.nodes, (n) => n.name, 'name', input.self)[0];
  const statusOf = (name: string): PeerStatus | undefined =>
    name === input.self ? (self === undefined ? undefined : peerStatus(input, self)) : byName.get(name);
  const { drops, failOpen } = sumDrops(input.counters);
  return {
    v: STATUS_VERSION,
    node: input.self,
    at: input.now.toISOString(),
    agent: input.agent,
    heartbeatSeconds: input.heartbeatSeconds,
    mode: input.mode,
    algorithm: input.algorithm,
    key: {
      fingerprint: fingerprint(input.key.publicKey),
      epoch: input.key.epoch,
      createdAt: input.key.createdAt.toISOString(),
    },
    steering: { ...input.steering },
    ready: readinessOf(input, statusOf).ready,
    errors: [
      ...new Set([
        ...(input.reconcile?.errors.map((e) => e.step) ?? []),
        ...(input.observeErrors.length > 0 ? ['observe'] : []),
      ]),
    ].sort(),
    drops,
    failOpenPackets: failOpen,
    detail: 'full',
    peers,
    omitted: 0,
  };
}

/**
 * What changes the state a reader cares about, without counters and timestamps: the publisher
 * republishes at once when this changes, and only on the heartbeat otherwise.
 */
export function statusDigest(r: NodeStatusReport): string {
  return JSON.stringify([
    r.agent,
    r.mode,
    r.algorithm,
    r.key,
    r.steering,
    r.ready,
    r.errors,
    r.peers.map((p) => [p.node, p.state, p.reason, p.key, p.handshake === 0]),
  ]);
}

/**
 * Serialises a report for the annotation, within `maxBytes`: whole if it fits; else byte counters
 * of encrypted peers are dropped (`detail: compact`); else encrypted peers, then the others, are
 * left out from the end (`omitted`), never the header.
 */
export function encodeStatus(report: NodeStatusReport, maxBytes = STATUS_MAX_BYTES): string {
  const text = (r: NodeStatusReport): string => JSON.stringify(r);
  let r = report;
  if (Buffer.byteLength(text(r)) <= maxBytes) return text(r);
  r = {
    ...r,
    detail: 'compact',
    peers: r.peers.map((p) =>
      p.state === 'encrypted' ? { node: p.node, state: p.state, key: p.key, handshake: p.handshake } : p,
    ),
  };
  if (Buffer.byteLength(text(r)) <= maxBytes) return text(r);
  // Keep the peers that are not encrypted first: they are what a reader must not miss.
  const ordered = [
    ...r.peers.filter((p) => p.state !== 'encrypted'),
    ...r.peers.filter((p) => p.state === 'encrypted'),
  ];
  let lo = 0;
  let hi = ordered.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    const kept = ordered.slice(0, mid).sort((a, b) => (a.node < b.node ? -1 : 1));
    if (Buffer.byteLength(text({ ...r, peers: kept, omitted: ordered.length - mid })) <= maxBytes) lo = mid;
    else hi = mid - 1;
  }
  const kept = ordered.slice(0, lo).sort((a, b) => (a.node < b.node ? -1 : 1));
  return text({ ...r, peers: kept, omitted: ordered.length - lo });
}

/** Result of {@link decodeStatus}. */
export type DecodeStatusResult =
  { readonly ok: true; readonly report: NodeStatusReport } | { readonly ok: false; readonly error: string };

const FINGERPRINT = /^[0-9a-f]{16}$/;
const NODE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

type Obj = JsonObject;

function spi(v: unknown, where: string): string {
  if (typeof v !== 'string' || !/^0x[0-9a-f]{8}$/.test(v))
    throw new Error(`${where} must be an SPI as 0x and 8 hex digits`);
  return v;
}

function spiList(v: unknown, where: string): string[] {
  if (!Array.isArray(v) || v.length > 16) throw new Error(`${where} must be a list of at most 16 SPIs`);
  return v.map((x, i) => spi(x, `${where}[${i}]`));
}

function decodePeer(v: unknown, i: number): PeerStatus {
  const where = `peers[${i}]`;
  if (!isObject(v)) throw new Error(`${where} must be an object`);
  exactKeys(
    v,
    ['node', 'state'],
    ['reason', 'key', 'handshake', 'rx', 'tx', 'algorithm', 'spiOut', 'spiIn', 'rxPackets', 'txPackets', 'pq'],
    where,
  );
  const node = readText(v.node, `${where}.node`);
  if (!NODE_NAME.test(node)) throw new Error(`${where}.node is not a node name`);
  if (!(PEER_STATES as readonly unknown[]).includes(v.state))
    throw new Error(`${where}.state must be one of ${PEER_STATES.join(', ')}`);
  if (v.key !== undefined && (typeof v.key !== 'string' || !FINGERPRINT.test(v.key)))
    throw new Error(`${where}.key must be a 16-hex-digit fingerprint`);
  return {
    node,
    state: v.state as PeerState,
    ...(v.reason === undefined ? {} : { reason: readText(v.reason, `${where}.reason`, MAX_REASON) }),
    ...(v.key === undefined ? {} : { key: v.key as string }),
    ...(v.handshake === undefined ? {} : { handshake: readCount(v.handshake, `${where}.handshake`) }),
    ...(v.rx === undefined ? {} : { rx: readCount(v.rx, `${where}.rx`) }),
    ...(v.tx === undefined ? {} : { tx: readCount(v.tx, `${where}.tx`) }),
    ...(v.algorithm === undefined ? {} : { algorithm: readText(v.algorithm, `${where}.algorithm`, 64) }),
    ...(v.spiOut === undefined ? {} : { spiOut: spi(v.spiOut, `${where}.spiOut`) }),
    ...(v.spiIn === undefined ? {} : { spiIn: spiList(v.spiIn, `${where}.spiIn`) }),
    ...(v.rxPackets === undefined ? {} : { rxPackets: readCount(v.rxPackets, `${where}.rxPackets`) }),
    ...(v.txPackets === undefined ? {} : { txPackets: readCount(v.txPackets, `${where}.txPackets`) }),
    ...(v.pq === undefined ? {} : { pq: decodePeerPq(v.pq, `${where}.pq`) }),
  };
}

function decodePeerPq(v: unknown, where: string): PeerPq {
  if (!isObject(v)) throw new Error(`${where} must be an object`);
  exactKeys(v, ['kem', 'protection', 'phase', 'role'], ['secretAgeSeconds', 'lastRenewal', 'reason'], where);
  const oneOf = <T extends string>(x: unknown, all: readonly T[], f: string): T => {
    if (!(all as readonly unknown[]).includes(x)) throw new Error(`${where}.${f} must be one of ${all.join(', ')}`);
    return x as T;
  };
  return {
    kem: readText(v.kem, `${where}.kem`, 32),
    protection: oneOf(v.protection, ['hybrid', 'classical', 'none'] as const, 'protection'),
    phase: oneOf(v.phase, ['idle', 'sent', 'confirmed'] as const, 'phase'),
    role: oneOf(v.role, ['initiator', 'responder'] as const, 'role'),
    ...(v.secretAgeSeconds === undefined
      ? {}
      : { secretAgeSeconds: readCount(v.secretAgeSeconds, `${where}.secretAgeSeconds`) }),
    ...(v.lastRenewal === undefined ? {} : { lastRenewal: readText(v.lastRenewal, `${where}.lastRenewal`, 40) }),
    ...(v.reason === undefined ? {} : { reason: readText(v.reason, `${where}.reason`, MAX_REASON) }),
  };
}

/** Decodes a full report strictly: any unknown field, wrong type or version is an error. */
export function decodeStatus(textIn: string, maxBytes = STATUS_MAX_BYTES): DecodeStatusResult {
  try {
    const v = parseVersionedObject(textIn, maxBytes, STATUS_VERSION);
    exactKeys(
      v,
      [
        'v',
        'node',
        'at',
        'agent',
        'heartbeatSeconds',
        'mode',
        'algorithm',
        'key',
        'steering',
        'ready',
        'errors',
        'drops',
        'failOpenPackets',
        'detail',
        'peers',
        'omitted',
      ],
      [],
      'status',
    );
    const node = readText(v.node, 'node');
    if (!NODE_NAME.test(node)) throw new Error('node is not a node name');
    if (v.agent !== 'running' && v.agent !== 'stopped') throw new Error('agent must be "running" or "stopped"');
    if (v.mode !== 'wireguard' && v.mode !== 'ipsec') throw new Error('mode must be "wireguard" or "ipsec"');
    if (v.detail !== 'full' && v.detail !== 'compact') throw new Error('detail must be "full" or "compact"');
    const hb = readCount(v.heartbeatSeconds, 'heartbeatSeconds');
    if (hb < 1) throw new Error('heartbeatSeconds must be at least 1');
    if (!isObject(v.key)) throw new Error('key must be an object');
    exactKeys(v.key, ['fingerprint', 'epoch', 'createdAt'], [], 'key');
    if (typeof v.key.fingerprint !== 'string' || !FINGERPRINT.test(v.key.fingerprint))
      throw new Error('key.fingerprint must be a 16-hex-digit fingerprint');
    if (!isObject(v.steering)) throw new Error('steering must be an object');
    exactKeys(v.steering, ['enabled', 'failClosed', 'nodeToNode'], [], 'steering');
    if (!Array.isArray(v.errors)) throw new Error('errors must be a list');
    if (!isObject(v.drops)) throw new Error('drops must be an object');
    if (!Array.isArray(v.peers)) throw new Error('peers must be a list');
    const peers = v.peers.map(decodePeer);
    for (let i = 1; i < peers.length; i++)
      if (!((peers[i - 1]?.node ?? '') < (peers[i]?.node ?? '')))
        throw new Error('peers must be sorted by node name without duplicates');
    const report: NodeStatusReport = {
      v: STATUS_VERSION,
      node,
      at: readTime(v.at, 'at'),
      agent: v.agent,
      heartbeatSeconds: hb,
      mode: v.mode,
      algorithm: readText(v.algorithm, 'algorithm', 64),
      key: {
        fingerprint: v.key.fingerprint,
        epoch: readCount(v.key.epoch, 'key.epoch'),
        createdAt: readTime(v.key.createdAt, 'key.createdAt'),
      },
      steering: {
        enabled: readBool(v.steering.enabled, 'steering.enabled'),
        failClosed: readBool(v.steering.failClosed, 'steering.failClosed'),
        nodeToNode: readBool(v.steering.nodeToNode, 'steering.nodeToNode'),
      },
      ready: readBool(v.ready, 'ready'),
      errors: v.errors.map((e, i) => readText(e, `errors[${i}]`, 64)),
      drops: Object.fromEntries(
        Object.entries(v.drops).map(([k, n]) => [readText(k, 'drops key', 32), readCount(n, `drops.${k}`)]),
      ),
      failOpenPackets: readCount(v.failOpenPackets, 'failOpenPackets'),
      detail: v.detail,
      peers,
      omitted: readCount(v.omitted, 'omitted'),
    };
    return { ok: true, report };
  } catch (err) {
    return { ok: false, error: `the status report ${(err as Error).message}` };
  }
}
