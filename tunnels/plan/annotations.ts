/**
 * The one codec between Node annotations and sealnet's model. Pure: no I/O, no clock.
 * Every annotation key comes from `constants.ts`; nothing else in the project reads them.
 */
import { tryParsePublicKey, type PublicKey } from '../../keymgr/keys.js';
import { ANNOTATIONS, ANNOTATION_PREFIX, ANNOTATION_VERSION } from '../../common/constants.js';
import { canonicalCidr, compareCidrs, formatIP, parseIP } from '../../common/ip.js';
import { MAX_KEY_EPOCH, parseEpoch } from '../../common/bounds.js';
import { nonUnicastText } from '../../common/addrclass.js';
import { isSafeText, quoteShort } from '../../common/text.js';
import type { Mode, PeerNode, RawNode, SkipReason } from '../ports/model.js';
import { decodeRotationReports, decodeRotationStatus } from './rotation-codec.js';

/** What the agent publishes about its own node. */
export interface OwnAnnotations {
  readonly mode: Mode;
  readonly wireguardPublicKey: PublicKey;
  readonly endpointHost: string;
  readonly endpointPort: number;
  readonly keyEpoch: number;
  readonly keyCreated: Date;
}

/** Result of decoding one node. */
export type DecodeResult =
  | { readonly ok: true; readonly node: PeerNode }
  | { readonly ok: false; readonly reason: SkipReason; readonly detail: string };

/** Formats `host:port`, bracketing IPv6 hosts. */
export function formatEndpoint(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Parses `ipv4:port` or `[ipv6]:port` strictly; undefined if malformed. The host comes back in
 * canonical form (RFC 5952 for IPv6), the form `wg show dump` reports, so a peer's endpoint
 * compares equal to what the kernel holds.
 */
export function parseEndpoint(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(\d{1,5})$/.exec(text);
  if (m === null) return undefined;
  const host = m[1] ?? m[2] ?? '';
  const ip = parseIP(host);
  const port = Number(m[3]);
  if (ip === undefined || (m[1] !== undefined) !== (ip.family === 6)) return undefined;
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { host: formatIP(ip.family, ip.value), port };
}

/** Encodes the agent's own annotations (the only thing an agent ever writes to a Node). */
export function encodeNode(own: OwnAnnotations): Record<string, string> {
  return {
    [ANNOTATIONS.version]: String(ANNOTATION_VERSION),
    [ANNOTATIONS.mode]: own.mode,
    [ANNOTATIONS.wireguardPublicKey]: own.wireguardPublicKey,
    [ANNOTATIONS.endpoint]: formatEndpoint(own.endpointHost, own.endpointPort),
    [ANNOTATIONS.keyEpoch]: String(own.keyEpoch),
    [ANNOTATIONS.keyCreated]: own.keyCreated.toISOString(),
  };
}

function fail(reason: SkipReason, detail: string): DecodeResult {
  return { ok: false, reason, detail };
}

/**
 * Decodes a node's `sealnet.io/` annotations and spec into a {@link PeerNode}, or says exactly
 * which field is wrong. Never throws.
 */
export function decodeNode(raw: RawNode): DecodeResult {
  // A pass decodes every node several times (plan, adoption, rotation, status); the stores hand
  // out the same immutable RawNode until the node changes, so the result is remembered per object.
  let r = decoded.get(raw);
  if (r === undefined) decoded.set(raw, (r = decodeNodeUncached(raw)));
  return r;
}

const decoded = new WeakMap<RawNode, DecodeResult>();

function decodeNodeUncached(raw: RawNode): DecodeResult {
  // The name goes into every detail and onto terminals; a file store does not validate it like
  // the API server does.
  if (!isSafeText(raw.name) || raw.name.length > 253)
    return fail(
      'annotations-invalid',
      `node ${quoteShort(raw.name)}: the name holds control or bidi characters or is longer than 253`,
    );
  const a = raw.annotations;
  const hasAny = Object.keys(a).some((k) => k.startsWith(ANNOTATION_PREFIX));
  if (!hasAny)
    return fail(
      'annotations-missing',
      `node ${raw.name} has no ${ANNOTATION_PREFIX} annotations yet (agent not started?)`,
    );

  const versionText = a[ANNOTATIONS.version];
  if (versionText === undefined)
    return fail('annotations-invalid', `node ${raw.name}: ${ANNOTATIONS.version} is missing`);
  if (!/^(0|[1-9]\d{0,5})$/.test(versionText))
    return fail(
      'annotations-invalid',
      `node ${raw.name}: ${ANNOTATIONS.version} is ${quoteShort(versionText)}, want an integer`,
    );
  const version = Number(versionText);
  if (version !== ANNOTATION_VERSION) {
    return fail(
      'version-unsupported',
      `node ${raw.name}: ${ANNOTATIONS.version} is ${version}, this agent understands only ${ANNOTATION_VERSION}; upgrade sealnet on all nodes`,
    );
  }

  const mode = a[ANNOTATIONS.mode];
  if (mode !== 'wireguard' && mode !== 'ipsec') {
    return fail(
      'annotations-invalid',
      `node ${raw.name}: ${ANNOTATIONS.mode} is ${mode === undefined ? 'missing' : quoteShort(mode)}, want "wireguard" or "ipsec"`,
    );
  }

  const keyText = a[ANNOTATIONS.wireguardPublicKey];
  if (keyText === undefined)
    return fail('annotations-invalid', `node ${raw.name}: ${ANNOTATIONS.wireguardPublicKey} is missing`);
  const key = tryParsePublicKey(keyText);
  if (!key.ok) return fail('annotations-invalid', `node ${raw.name}: ${ANNOTATIONS.wireguardPublicKey}: ${key.error}`);

  const endpointText = a[ANNOTATIONS.endpoint];
  if (endpointText === undefined)
    return fail('annotations-invalid', `node ${raw.name}: ${ANNOTATIONS.endpoint} is missing`);
  const endpoint = parseEndpoint(endpointText);
  if (endpoint === undefined) {
    return fail(
      'annotations-invalid',
      `node ${raw.name}: ${ANNOTATIONS.endpoint} is ${quoteShort(endpointText)}, want "ip:port" or "[ipv6]:port"`,
    );
  }
  // Every node sends its tunnel traffic to this address: only a routable unicast one.
  const endpointClass = nonUnicastText(endpoint.host);
  if (endpointClass !== undefined)
    return fail(
      'annotations-invalid',
      `node ${raw.name}: ${ANNOTATIONS.endpoint} host ${endpoint.host} is ${endpointClass}, want a unicast address`,
    );

  const epochText = a[ANNOTATIONS.keyEpoch] ?? '0';
  const keyEpoch = parseEpoch(epochText);
  if (keyEpoch === undefined)
    return fail(
      'annotations-invalid',
      `node ${raw.name}: ${ANNOTATIONS.keyEpoch} is ${quoteShort(epochText)}, want an integer from 0 to ${MAX_KEY_EPOCH}`,
    );

  const podCIDRs: string[] = [];
  for (const c of raw.podCIDRs) {
    const canon = canonicalCidr(c);
    if (canon === undefined)
      return fail('annotations-invalid', `node ${raw.name}: spec.podCIDRs entry ${quoteShort(c)} is not a CIDR`);
    podCIDRs.push(canon);
  }
  if (podCIDRs.length === 0) return fail('no-pod-cidrs', `node ${raw.name} has no spec.podCIDRs`);
  podCIDRs.sort(compareCidrs);

  return {
    ok: true,
    node: {
      name: raw.name,
      version,
      mode,
      wireguardPublicKey: key.key,
      endpointHost: endpoint.host,
      endpointPort: endpoint.port,
      keyEpoch,
      podCIDRs: [...new Set(podCIDRs)],
      internalIPs: raw.internalIPs.filter((ip) => parseIP(ip) !== undefined),
      ...decodeRotation(a, key.key),
    },
  };
}

/**
 * The rotation fields of a node. Lenient on purpose: a malformed rotation annotation
 * only means the node's rotation is not followed (it then proceeds without this peer, which
 * keeps the node's current key), never that the node's working tunnel is dropped.
 */
function decodeRotation(
  a: Readonly<Record<string, string>>,
  current: PublicKey,
): Pick<PeerNode, 'rotationPhase' | 'next' | 'rotationReports'> {
  const out: {
    rotationPhase?: PeerNode['rotationPhase'];
    next?: PeerNode['next'];
    rotationReports?: PeerNode['rotationReports'];
  } = {};
  const statusText = a[ANNOTATIONS.rotation];
  const status = statusText === undefined ? undefined : decodeRotationStatus(statusText);
  if (status !== undefined && status.phase !== 'idle') out.rotationPhase = status.phase;
  const nextText = a[ANNOTATIONS.wireguardNextPublicKey];
  const nextEndpointText = a[ANNOTATIONS.nextEndpoint];
  if (
    (status?.phase === 'staging' || status?.phase === 'moving') &&
    nextText !== undefined &&
    nextEndpointText !== undefined
  ) {
    const next = tryParsePublicKey(nextText);
    const ep = parseEndpoint(nextEndpointText);
    if (next.ok && ep !== undefined && nonUnicastText(ep.host) === undefined && next.key !== current)
      out.next = { publicKey: next.key, endpointHost: ep.host, endpointPort: ep.port };
  }
  const reportsText = a[ANNOTATIONS.rotationPeers];
  if (reportsText !== undefined) {
    const reports = decodeRotationReports(reportsText);
    if (Object.keys(reports).length > 0) out.rotationReports = reports;
  }
  return out;
}

/** A node's published IPsec key (mode ipsec), or why it has none usable. */
export type IpsecKeyResult =
  | {
      readonly ok: true;
      readonly publicKey: PublicKey;
      readonly epoch: number;
      /** The node's IPsec generation; 0 when it publishes none (an agent from before generations). */
      readonly generation: number;
    }
  | { readonly ok: false; readonly reason: SkipReason; readonly detail: string };

/** Encodes this node's IPsec key annotations (mode ipsec), merged into {@link encodeNode}'s. */
export function encodeIpsecKey(own: { readonly publicKey: PublicKey; readonly epoch: number }): Record<string, string> {
  return { [ANNOTATIONS.ipsecPublicKey]: own.publicKey, [ANNOTATIONS.ipsecKeyEpoch]: String(own.epoch) };
}

/** Encodes this node's IPsec generation (8 lowercase hex digits). */
export function encodeIpsecGeneration(generation: number): Record<string, string> {
  return { [ANNOTATIONS.ipsecGeneration]: generation.toString(16).padStart(8, '0') };
}

/** Parses a generation annotation: exactly 8 hex digits, not all zero; undefined otherwise. */
export function parseIpsecGeneration(text: string): number | undefined {
  if (!/^[0-9a-f]{8}$/.test(text)) return undefined;
  const g = Number.parseInt(text, 16);
  return g === 0 ? undefined : g;
}

/**
 * Decodes a node's IPsec public key and its epoch, strictly (malformed keys and low-order points
 * are refused by `tryParsePublicKey`). Never throws.
 */
export function decodeIpsecKey(raw: RawNode): IpsecKeyResult {
  const a = raw.annotations;
  const keyText = a[ANNOTATIONS.ipsecPublicKey];
  if (keyText === undefined)
    return {
      ok: false,
      reason: 'annotations-invalid',
      detail: `node ${raw.name}: ${ANNOTATIONS.ipsecPublicKey} is missing (mode ipsec needs it)`,
    };
  const key = tryParsePublicKey(keyText);
  if (!key.ok)
    return {
      ok: false,
      reason: 'annotations-invalid',
      detail: `node ${raw.name}: ${ANNOTATIONS.ipsecPublicKey}: ${key.error}`,
    };
  const epochText = a[ANNOTATIONS.ipsecKeyEpoch];
  const epoch = parseEpoch(epochText);
  if (epoch === undefined) {
    return {
      ok: false,
      reason: 'annotations-invalid',
      detail: `node ${raw.name}: ${ANNOTATIONS.ipsecKeyEpoch} is ${epochText === undefined ? 'missing' : quoteShort(epochText)}, want an integer from 0 to ${MAX_KEY_EPOCH}`,
    };
  }
  const generationText = a[ANNOTATIONS.ipsecGeneration];
  const generation = generationText === undefined ? 0 : parseIpsecGeneration(generationText);
  if (generation === undefined) {
    return {
      ok: false,
      reason: 'annotations-invalid',
      detail: `node ${raw.name}: ${ANNOTATIONS.ipsecGeneration} is ${quoteShort(generationText ?? '')}, want 8 lowercase hex digits, not all zero`,
    };
  }
  return { ok: true, publicKey: key.key, epoch, generation };
}
