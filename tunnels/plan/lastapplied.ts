/**
 * The last applied state, `<stateDir>/last-applied.json`: what the last clean pass after the
 * store synced left in the kernel (link, peers, routes, steering entries). A restarted agent
 * programs its tunnels from it within about a second, before its node store syncs (issue 15:
 * wireguard-go dies with the pod, and the store takes ~13 s to sync in a cluster), then reconciles
 * against the store once it synced. Pure codec; no key material (public keys only).
 *
 * The file is read back as hostile input: every field is bounded and checked, the file must be
 * this node's and this mode's, every prefix must lie inside the cluster CIDRs (or be a node host
 * prefix in node-to-node mode) and outside the exempt CIDRs, routes name only the link, and
 * peers' allowed IPs never overlap. Anything else is refused whole, with a sentence.
 */
import { canonicalCidr, cidrsOverlap, parseCidr, parseIP, type Cidr } from '../../common/ip.js';
import { exactKeys, isObject, parseVersionedObject, readCount, readText } from '../../common/json.js';
import { isSafeText } from '../../common/text.js';
import { tryParsePublicKey, type PublicKey } from '../../keymgr/keys.js';
import type { SteeringEntry } from '../ports/index.js';
import type { DesiredPeer, DesiredRoute } from '../ports/model.js';
import { formatEndpoint, parseEndpoint } from './annotations.js';

/** File name inside the state directory. */
export const LAST_APPLIED_FILE = 'last-applied.json';
/** Format version of the file. */
export const LAST_APPLIED_VERSION = 1;
/** Upper bound of the file (5,000 nodes with two pod CIDRs each need about 2 MiB). */
export const LAST_APPLIED_MAX_BYTES = 8 * 1024 * 1024;
const MAX_PEERS = 20_000;
const MAX_PREFIXES = 4 * MAX_PEERS;

/** A steering entry as persisted: the tunnel's ifindex is not (a recreated link has a new one). */
export type PersistedSteeringEntry = Pick<SteeringEntry, 'cidr' | 'state' | 'kind' | 'peerId'>;

/** What the last clean pass applied (mode wireguard, one link, no rotation in flight). */
export interface LastApplied {
  readonly nodeName: string;
  /** This node's endpoint address: the link carrying it is the underlay the guard attaches to. */
  readonly endpointHost: string;
  /** The link, its own public key (which private key it needs), port and MTU. */
  readonly link: {
    readonly name: string;
    readonly publicKey: PublicKey;
    readonly listenPort: number;
    readonly mtu: number;
  };
  /** Sorted by node. */
  readonly peers: readonly DesiredPeer[];
  /** Sorted by dst; every one names `link.name`. */
  readonly routes: readonly DesiredRoute[];
  /** Sorted by cidr. */
  readonly steering: readonly PersistedSteeringEntry[];
}

/** What the reader expects of the file: anything else is foreign or hostile. */
export interface LastAppliedExpect {
  readonly nodeName: string;
  /** Links the agent may own (WG_INTERFACES). */
  readonly linkNames: readonly string[];
  /** sealnet's routing table. */
  readonly table: number;
  readonly clusterCidrs: readonly string[];
  readonly exemptCidrs: readonly string[];
  /** Node-to-node mode: host prefixes (/32, /128) outside the cluster CIDRs are allowed too. */
  readonly nodeToNode: boolean;
}

/** Result of {@link decodeLastApplied}. */
export type LastAppliedResult = { ok: true; state: LastApplied } | { ok: false; error: string };

/** Serialises `s` (stable key order, one line). */
export function encodeLastApplied(s: LastApplied): string {
  return `${JSON.stringify({
    v: LAST_APPLIED_VERSION,
    nodeName: s.nodeName,
    endpointHost: s.endpointHost,
    link: { name: s.link.name, publicKey: s.link.publicKey, listenPort: s.link.listenPort, mtu: s.link.mtu },
    peers: s.peers.map((p) => ({
      node: p.node,
      publicKey: p.publicKey,
      endpoint: p.endpoint,
      allowedIPs: p.allowedIPs,
      persistentKeepalive: p.persistentKeepalive,
    })),
    routes: s.routes.map((r) => ({
      dst: r.dst,
      dev: r.dev,
      mtu: r.mtu,
      ...(r.src !== undefined ? { src: r.src } : {}),
      table: r.table,
    })),
    steering: s.steering.map((e) => ({ cidr: e.cidr, state: e.state, kind: e.kind, peerId: e.peerId })),
  })}\n`;
}

/** Decodes and checks a file's text against `expect`; never throws. */
export function decodeLastApplied(text: string, expect: LastAppliedExpect): LastAppliedResult {
  try {
    return { ok: true, state: decode(text, expect) };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

function decode(text: string, expect: LastAppliedExpect): LastApplied {
  const o = parseVersionedObject(text, LAST_APPLIED_MAX_BYTES, LAST_APPLIED_VERSION);
  exactKeys(o, ['v', 'nodeName', 'endpointHost', 'link', 'peers', 'routes', 'steering'], [], 'last-applied');
  const nodeName = readText(o.nodeName, 'nodeName', 253);
  if (nodeName !== expect.nodeName)
    throw new Error(`belongs to node ${JSON.stringify(nodeName.slice(0, 64))}, not to ${expect.nodeName}`);
  const endpointHost = readText(o.endpointHost, 'endpointHost', 64);
  if (parseIP(endpointHost) === undefined) throw new Error('endpointHost is not an IP address');
  const link = readLink(o.link, expect);
  const inScope = scopeChecker(expect);
  const peers = readArray(o.peers, 'peers', MAX_PEERS).map((p, i) => readPeer(p, `peers[${i}]`, inScope));
  checkPeers(peers, link.publicKey);
  const routes = readArray(o.routes, 'routes', MAX_PREFIXES).map((r, i) =>
    readRoute(r, `routes[${i}]`, { link: link.name, table: expect.table, inScope }),
  );
  const owned = new Set(peers.flatMap((p) => p.allowedIPs));
  checkUnique(
    routes.map((r) => r.dst),
    'routes',
  );
  for (const r of routes)
    if (!owned.has(r.dst)) throw new Error(`routes: ${r.dst} is not an allowed IP of any peer in the file`);
  const steering = readArray(o.steering, 'steering', MAX_PREFIXES).map((e, i) =>
    readSteering(e, `steering[${i}]`, inScope),
  );
  checkUnique(
    steering.map((e) => e.cidr),
    'steering',
  );
  return { nodeName, endpointHost, link, peers, routes, steering };
}

function readArray(v: unknown, where: string, max: number): unknown[] {
  if (!Array.isArray(v)) throw new Error(`${where} must be an array`);
  if (v.length > max) throw new Error(`${where} has ${v.length} entries, more than ${max}`);
  return v;
}

function readKey(v: unknown, where: string): PublicKey {
  const r = tryParsePublicKey(readText(v, where, 64));
  if (!r.ok) throw new Error(`${where}: ${r.error}`);
  return r.key;
}

function readMtu(v: unknown, where: string): number {
  const n = readCount(v, where);
  if (n < 576 || n > 65535) throw new Error(`${where} must be an MTU in 576..65535`);
  return n;
}

function readLink(v: unknown, expect: LastAppliedExpect): LastApplied['link'] {
  if (!isObject(v)) throw new Error('link must be an object');
  exactKeys(v, ['name', 'publicKey', 'listenPort', 'mtu'], [], 'link');
  const name = readText(v.name, 'link.name', 15);
  if (!expect.linkNames.includes(name))
    throw new Error(`link.name ${JSON.stringify(name)} is not a sealnet link (${expect.linkNames.join(', ')})`);
  const listenPort = readCount(v.listenPort, 'link.listenPort');
  if (listenPort < 1 || listenPort > 65535) throw new Error('link.listenPort must be a port in 1..65535');
  return { name, publicKey: readKey(v.publicKey, 'link.publicKey'), listenPort, mtu: readMtu(v.mtu, 'link.mtu') };
}

type ScopeCheck = (text: unknown, where: string, opts?: { readonly exemptOk?: boolean }) => string;

/**
 * A canonical prefix the file may name: inside the cluster CIDRs (or a node host prefix in
 * node-to-node mode), and, for peers and routes, clear of the exempt CIDRs (the API server path
 * must never be steered into a tunnel restored before the store confirmed it). Steering entries
 * may cover exempt CIDRs: they only ever drop or redirect, and the program checks exemptions first.
 */
function scopeChecker(expect: LastAppliedExpect): ScopeCheck {
  const parse = (c: string): Cidr[] => {
    const p = parseCidr(c, { hostBits: 'clear' });
    return p === undefined ? [] : [p];
  };
  const cluster = expect.clusterCidrs.flatMap(parse);
  const exempt = expect.exemptCidrs.flatMap(parse);
  return (text, where, opts = {}) => {
    const t = readText(text, where, 64);
    const c = parseCidr(t, { hostBits: 'reject' });
    if (c === undefined || canonicalCidr(t) !== t) throw new Error(`${where} is not a canonical CIDR`);
    const host = c.prefixLength === (c.family === 4 ? 32 : 128);
    const inCluster = cluster.some(
      (k) => k.family === c.family && k.prefixLength <= c.prefixLength && cidrsOverlap(k, c),
    );
    if (!inCluster && !(expect.nodeToNode && host))
      throw new Error(`${where} ${t} lies outside the cluster CIDRs (${expect.clusterCidrs.join(', ')})`);
    if (opts.exemptOk !== true && exempt.some((e) => cidrsOverlap(e, c)))
      throw new Error(`${where} ${t} overlaps an exempt CIDR`);
    return t;
  };
}

function readPeer(v: unknown, where: string, inScope: ScopeCheck): DesiredPeer {
  if (!isObject(v)) throw new Error(`${where} must be an object`);
  exactKeys(v, ['node', 'publicKey', 'endpoint', 'allowedIPs', 'persistentKeepalive'], [], where);
  const node = readText(v.node, `${where}.node`, 253);
  if (node === '' || !isSafeText(node)) throw new Error(`${where}.node holds control or bidi characters or is empty`);
  const endpointText = readText(v.endpoint, `${where}.endpoint`, 64);
  const ep = parseEndpoint(endpointText);
  const ip = ep === undefined ? undefined : parseIP(ep.host);
  if (ep === undefined || ip === undefined || formatEndpoint(ep.host, ep.port) !== endpointText || ep.port === 0)
    throw new Error(`${where}.endpoint must be "ip:port" or "[ipv6]:port"`);
  const allowed = readArray(v.allowedIPs, `${where}.allowedIPs`, 64).map((c, i) =>
    inScope(c, `${where}.allowedIPs[${i}]`),
  );
  if (allowed.length === 0) throw new Error(`${where}.allowedIPs is empty`);
  const keepalive = readCount(v.persistentKeepalive, `${where}.persistentKeepalive`);
  if (keepalive > 65535) throw new Error(`${where}.persistentKeepalive must be at most 65535`);
  return {
    node,
    publicKey: readKey(v.publicKey, `${where}.publicKey`),
    endpoint: endpointText,
    allowedIPs: allowed,
    persistentKeepalive: keepalive,
  };
}

/** One peer per node and per key, not the link's own key, no prefix owned twice. */
function checkPeers(peers: readonly DesiredPeer[], own: PublicKey): void {
  const nodes = new Set<string>();
  const keys = new Set<string>();
  const prefixes: { cidr: Cidr; text: string; node: string }[] = [];
  for (const p of peers) {
    if (nodes.has(p.node)) throw new Error(`peers: node ${JSON.stringify(p.node.slice(0, 64))} appears twice`);
    if (keys.has(p.publicKey) || p.publicKey === own)
      throw new Error(`peers: a public key appears twice (or is the link's own)`);
    nodes.add(p.node);
    keys.add(p.publicKey);
    for (const a of p.allowedIPs) prefixes.push({ cidr: parseCidr(a, { hostBits: 'reject' })!, text: a, node: p.node });
  }
  // Sorted by family and network: overlapping prefixes end up next to each other.
  prefixes.sort((a, b) =>
    a.cidr.family !== b.cidr.family
      ? a.cidr.family - b.cidr.family
      : a.cidr.network < b.cidr.network
        ? -1
        : a.cidr.network > b.cidr.network
          ? 1
          : a.cidr.prefixLength - b.cidr.prefixLength,
  );
  for (let i = 1; i < prefixes.length; i++) {
    const a = prefixes[i - 1]!;
    const b = prefixes[i]!;
    if (cidrsOverlap(a.cidr, b.cidr)) throw new Error(`peers: allowed IPs ${a.text} and ${b.text} overlap`);
  }
}

function readRoute(v: unknown, where: string, o: { link: string; table: number; inScope: ScopeCheck }): DesiredRoute {
  if (!isObject(v)) throw new Error(`${where} must be an object`);
  exactKeys(v, ['dst', 'dev', 'mtu', 'table'], ['src'], where);
  const dst = o.inScope(v.dst, `${where}.dst`);
  if (v.dev !== o.link) throw new Error(`${where}.dev must be the link ${o.link}`);
  if (v.table !== o.table) throw new Error(`${where}.table must be ${o.table}`);
  let src: string | undefined;
  if (v.src !== undefined) {
    src = readText(v.src, `${where}.src`, 64);
    if (parseIP(src) === undefined) throw new Error(`${where}.src is not an IP address`);
  }
  return {
    dst,
    dev: o.link,
    mtu: readMtu(v.mtu, `${where}.mtu`),
    ...(src !== undefined ? { src } : {}),
    table: o.table,
  };
}

const STATES: readonly SteeringEntry['state'][] = ['ready', 'not-ready', 'no-peer'];

function readSteering(v: unknown, where: string, inScope: ScopeCheck): PersistedSteeringEntry {
  if (!isObject(v)) throw new Error(`${where} must be an object`);
  exactKeys(v, ['cidr', 'state', 'kind', 'peerId'], [], where);
  const cidr = inScope(v.cidr, `${where}.cidr`, { exemptOk: true });
  const state = STATES.find((s) => s === v.state);
  if (state === undefined) throw new Error(`${where}.state must be one of ${STATES.join(', ')}`);
  if (v.kind !== 'pod' && v.kind !== 'node') throw new Error(`${where}.kind must be pod or node`);
  const peerId = readCount(v.peerId, `${where}.peerId`);
  if (peerId > 0xffffffff) throw new Error(`${where}.peerId must fit 32 bits`);
  return { cidr, state, kind: v.kind, peerId };
}

function checkUnique(items: readonly string[], where: string): void {
  const seen = new Set<string>();
  for (const i of items) {
    if (seen.has(i)) throw new Error(`${where}: ${i} appears twice`);
    seen.add(i);
  }
}
