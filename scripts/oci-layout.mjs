#!/usr/bin/env node
// Writes an OCI image layout (image-spec v1.1: oci-layout, index.json, blobs/sha256/) for the
// sealnet agent from gzip layers that scripts/image.sh made, and prints the manifest digest.
// Every JSON document is written with sorted keys and no whitespace, and `created` comes from
// --created (SOURCE_DATE_EPOCH), so the same layers and arguments give the same digest.
//
// Usage: node scripts/oci-layout.mjs --out DIR --created EPOCH --revision SHA --version V --tag T
//          --layer GZ:DIFFID:COMMENT [--layer …]
import { createHash } from 'node:crypto';
import { copyFileSync, createReadStream, mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    out: { type: 'string' },
    created: { type: 'string' },
    revision: { type: 'string' },
    version: { type: 'string' },
    tag: { type: 'string' },
    layer: { type: 'string', multiple: true },
  },
  strict: true,
});
for (const k of ['out', 'created', 'revision', 'version', 'tag']) {
  if (values[k] === undefined) throw new Error(`oci-layout: --${k} is required`);
}
if (!/^\d+$/.test(values.created))
  throw new Error(`oci-layout: --created must be seconds since the epoch, got ${values.created}`);

const out = values.out;
const blobs = path.join(out, 'blobs', 'sha256');
mkdirSync(blobs, { recursive: true });

/** JSON with keys sorted at every level: a stable byte form to hash. */
function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

function sha256File(file) {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('data', (d) => h.update(d))
      .on('end', () => resolve(h.digest('hex')))
      .on('error', reject);
  });
}

/** Stores a JSON document as a blob; returns its descriptor. */
function putJson(mediaType, doc) {
  const bytes = Buffer.from(canonical(doc), 'utf8');
  const hex = createHash('sha256').update(bytes).digest('hex');
  writeFileSync(path.join(blobs, hex), bytes);
  return { mediaType, digest: `sha256:${hex}`, size: bytes.length };
}

const created = new Date(Number(values.created) * 1000).toISOString().replace('.000Z', 'Z');
const layers = [];
const diffIds = [];
const history = [];
for (const spec of values.layer ?? []) {
  const [file, diffId, ...comment] = spec.split(':');
  if (!/^[0-9a-f]{64}$/.test(diffId ?? '')) throw new Error(`oci-layout: bad diff id in --layer ${spec}`);
  const hex = await sha256File(file);
  copyFileSync(file, path.join(blobs, hex));
  layers.push({
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    digest: `sha256:${hex}`,
    size: statSync(file).size,
  });
  diffIds.push(`sha256:${diffId}`);
  history.push({ created, created_by: 'scripts/image.sh', comment: comment.join(':') });
}
if (layers.length === 0) throw new Error('oci-layout: no --layer');

const labels = {
  'org.opencontainers.image.title': 'sealnet-agent',
  'org.opencontainers.image.description':
    'sealnet node agent: WireGuard/IPsec encryption between Kubernetes nodes and pods, fail-closed',
  'org.opencontainers.image.licenses': 'Apache-2.0',
  'org.opencontainers.image.revision': values.revision,
  'org.opencontainers.image.version': values.version,
  'org.opencontainers.image.created': created,
};
const config = putJson('application/vnd.oci.image.config.v1+json', {
  created,
  architecture: 'amd64',
  os: 'linux',
  config: {
    // tini reaps wireguard-go and forwards signals; the chart runs the agent as uid 0 with every
    // capability dropped but NET_ADMIN and BPF (SYS_ADMIN on old kernels). The image's own
    // default user is unprivileged: `sealctl` and `sealnet-agent --version` need no root.
    User: '65532:65532',
    Entrypoint: ['/usr/bin/tini', '--', '/usr/local/bin/sealnet-agent'],
    Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'NODE_ENV=production'],
    WorkingDir: '/',
    Labels: labels,
  },
  rootfs: { type: 'layers', diff_ids: diffIds },
  history,
});
const manifest = putJson('application/vnd.oci.image.manifest.v1+json', {
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config,
  layers,
  annotations: { 'org.opencontainers.image.revision': values.revision, 'org.opencontainers.image.created': created },
});
const index = {
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.index.v1+json',
  manifests: [{ ...manifest, annotations: { 'org.opencontainers.image.ref.name': values.tag } }],
};
writeFileSync(path.join(out, 'index.json'), canonical(index));
writeFileSync(path.join(out, 'oci-layout'), canonical({ imageLayoutVersion: '1.0.0' }));
process.stdout.write(`${manifest.digest}\n`);
