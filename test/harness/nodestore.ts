/**
 * The harness's side of the `file` node store: it plays the control plane, creating and
 * deleting one Kubernetes-shaped Node document per node (`<name>.json`). Agents add their
 * own `sealnet.io/` annotations. Writes are atomic (temp file + rename); temp files start
 * with a dot so the store ignores them.
 */
import { readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** The subset of a Kubernetes Node the file store carries. */
export interface NodeDoc {
  apiVersion: 'v1';
  kind: 'Node';
  metadata: { name: string; annotations: Record<string, string> };
  spec: { podCIDRs: string[] };
  status: { addresses: { type: string; address: string }[] };
}

/** A fresh Node document as the control plane would create it (one InternalIP per address given, in order). */
export function newNodeDoc(
  name: string,
  internalIPs: string | readonly string[],
  podCIDRs: readonly string[],
): NodeDoc {
  const ips = typeof internalIPs === 'string' ? [internalIPs] : internalIPs;
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, annotations: {} },
    spec: { podCIDRs: [...podCIDRs] },
    status: { addresses: ips.map((address) => ({ type: 'InternalIP', address })) },
  };
}

/** Writes `<dir>/<name>.json` atomically. */
export async function writeNodeDoc(dir: string, doc: NodeDoc): Promise<void> {
  const path = join(dir, `${doc.metadata.name}.json`);
  const tmp = join(dir, `.${doc.metadata.name}.json.harness-${process.pid}.tmp`);
  await writeFile(tmp, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o644 });
  await rename(tmp, path);
}

/** Reads a node's document, or undefined if absent or unreadable (mid-rename). */
export async function readNodeDoc(dir: string, name: string): Promise<NodeDoc | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, `${name}.json`), 'utf8')) as NodeDoc;
  } catch {
    return undefined;
  }
}

/** Read-modify-write of a node's document (e.g. to tamper with annotations in a test). */
export async function updateNodeDoc(dir: string, name: string, mutate: (doc: NodeDoc) => void): Promise<NodeDoc> {
  const doc = await readNodeDoc(dir, name);
  if (doc === undefined) throw new Error(`node document ${name}.json does not exist in ${dir}`);
  mutate(doc);
  await writeNodeDoc(dir, doc);
  return doc;
}

/** Deletes a node's document; missing is fine. */
export async function deleteNodeDoc(dir: string, name: string): Promise<void> {
  await unlink(join(dir, `${name}.json`)).catch(() => undefined);
}
