/**
 * Converts a Kubernetes-shaped Node document (the file store's format, and the API object)
 * to a {@link RawNode}. Pure; says what is wrong instead of throwing.
 */
import type { RawNode } from '../ports/model.js';
import { isObject } from '../../common/json.js';
import { ANNOTATION_PREFIX, ANNOTATIONS } from '../../common/constants.js';

/** Result of reading one document. */
export type NodeDocResult =
  { readonly ok: true; readonly node: RawNode } | { readonly ok: false; readonly error: string };

/** Reads `metadata.name`, `metadata.annotations`, `spec.podCIDRs` (or `spec.podCIDR`), `status.addresses`. */
export function rawNodeFromDoc(doc: unknown): NodeDocResult {
  if (!isObject(doc)) return { ok: false, error: 'document is not a JSON object' };
  const meta = doc.metadata;
  if (!isObject(meta) || typeof meta.name !== 'string' || meta.name === '')
    return { ok: false, error: 'metadata.name is missing' };
  const name = meta.name;
  const annotations: Record<string, string> = {};
  if (meta.annotations !== undefined && meta.annotations !== null) {
    if (!isObject(meta.annotations)) return { ok: false, error: `node ${name}: metadata.annotations is not an object` };
    for (const [k, v] of Object.entries(meta.annotations)) {
      if (typeof v !== 'string') return { ok: false, error: `node ${name}: annotation ${k} is not a string` };
      annotations[k] = v;
    }
  }
  const spec = isObject(doc.spec) ? doc.spec : {};
  let podCIDRs: string[] = [];
  if (Array.isArray(spec.podCIDRs)) podCIDRs = spec.podCIDRs.filter((c): c is string => typeof c === 'string');
  else if (typeof spec.podCIDR === 'string') podCIDRs = [spec.podCIDR];
  const status = isObject(doc.status) ? doc.status : {};
  const internalIPs: string[] = [];
  if (Array.isArray(status.addresses)) {
    for (const a of status.addresses) {
      if (isObject(a) && a.type === 'InternalIP' && typeof a.address === 'string') internalIPs.push(a.address);
    }
  }
  return { ok: true, node: { name, annotations, podCIDRs, internalIPs } };
}

/** Largest `sealnet.io/status` value kept (the summary's bound, tunnels/status/summary.ts SUMMARY_MAX_BYTES). */
export const STATUS_ANNOTATION_MAX_BYTES = 1024;
/**
 * Largest `sealnet.io/rotation-peers` value kept: it names every peer whose next key this node
 * staged during a rotation (~40 bytes per peer), so it is the one value that grows with N; the
 * API server caps all of a Node's annotations at 256 KiB together.
 */
export const ROTATION_PEERS_MAX_BYTES = 256 * 1024;
/** Largest value of any other known `sealnet.io/` annotation (keys, endpoints, small JSON). */
export const ANNOTATION_VALUE_MAX_BYTES = 4096;

/** Why an annotation was not kept. */
export type DroppedReason = 'unknown' | 'oversized' | 'not-a-string';

/** The `sealnet.io/` annotations a store keeps of a Node, and what it dropped. */
export interface LeanAnnotations {
  readonly kept: Record<string, string>;
  readonly dropped: readonly { readonly key: string; readonly reason: DroppedReason }[];
}

const KNOWN = new Set<string>(Object.values(ANNOTATIONS));

/**
 * Keeps only the known `sealnet.io/` annotations within their size bounds; other keys are not
 * looked at (kubelet, cloud and user annotations), unknown or oversized `sealnet.io/` ones are
 * dropped with a reason. `keepStatus: false` drops the status summary silently (agents do not
 * read other nodes' summaries; `sealctl` does).
 */
export function leanAnnotations(
  all: Readonly<Record<string, unknown>> | undefined | null,
  opts: { readonly keepStatus: boolean },
): LeanAnnotations {
  const kept: Record<string, string> = {};
  const dropped: { key: string; reason: DroppedReason }[] = [];
  for (const [k, v] of Object.entries(all ?? {})) {
    if (!k.startsWith(ANNOTATION_PREFIX)) continue;
    if (k === ANNOTATIONS.status && !opts.keepStatus) continue;
    if (!KNOWN.has(k)) {
      dropped.push({ key: k.slice(0, 80), reason: 'unknown' });
      continue;
    }
    const max =
      k === ANNOTATIONS.status
        ? STATUS_ANNOTATION_MAX_BYTES
        : k === ANNOTATIONS.rotationPeers
          ? ROTATION_PEERS_MAX_BYTES
          : ANNOTATION_VALUE_MAX_BYTES;
    // Cheap length test first: a UTF-16 length above the bound may still fit only if it is ASCII.
    if (typeof v !== 'string') {
      dropped.push({ key: k, reason: 'not-a-string' });
      continue;
    }
    if (v.length > max || Buffer.byteLength(v) > max) {
      dropped.push({ key: k, reason: 'oversized' });
      continue;
    }
    kept[k] = v;
  }
  return { kept, dropped };
}
