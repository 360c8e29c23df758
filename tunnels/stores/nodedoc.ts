/**
 * Converts a Kubernetes-shaped Node document (the file store's format, and the API object)
 * to a {@link RawNode}. Pure; says what is wrong instead of throwing.
 */
import type { RawNode } from '../ports/model.js';
import { isObject } from '../../common/json.js';

/** Result of reading one document. */
export type NodeDocResult = { readonly ok: true; readonly node: RawNode } | { readonly ok: false; readonly error: string };


/** Reads `metadata.name`, `metadata.annotations`, `spec.podCIDRs` (or `spec.podCIDR`), `status.addresses`. */
export function rawNodeFromDoc(doc: unknown): NodeDocResult {
  if (!isObject(doc)) return { ok: false, error: 'document is not a JSON object' };
  const meta = doc.metadata;
  if (!isObject(meta) || typeof meta.name !== 'string' || meta.name === '') return { ok: false, error: 'metadata.name is missing' };
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
