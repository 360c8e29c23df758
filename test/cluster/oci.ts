/**
 * One-layer OCI image archives for the real-cluster tier's own tiny images (the pause sandbox and
 * the traffic pod), built from a static binary without Docker or a registry: `tar` makes the
 * layer and the archive, node:crypto the digests. Each node's containerd imports them with `ctr`.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, copyFileSync, chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../harness/exec.js';

function blob(dir: string, data: Buffer): { digest: string; size: number } {
  const hex = createHash('sha256').update(data).digest('hex');
  writeFileSync(join(dir, 'blobs', 'sha256', hex), data);
  return { digest: `sha256:${hex}`, size: data.length };
}

/**
 * Writes `out` (an OCI archive) holding image `ref` whose only layer is `binary` at `/<name>`,
 * with `entrypoint` as its command. `work` is a scratch directory (removed afterwards).
 */
export async function buildOciArchive(o: {
  work: string;
  out: string;
  ref: string;
  binary: string;
  name: string;
  entrypoint: readonly string[];
}): Promise<void> {
  const layout = join(o.work, 'layout');
  const rootfs = join(o.work, 'rootfs');
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  mkdirSync(rootfs, { recursive: true });
  copyFileSync(o.binary, join(rootfs, o.name));
  chmodSync(join(rootfs, o.name), 0o755);
  const layerTar = join(o.work, 'layer.tar');
  // Fixed owner and mtime: the same binary gives the same digest.
  await run([
    'tar',
    '--create',
    '--file',
    layerTar,
    '--directory',
    rootfs,
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--mtime=@0',
    '--sort=name',
    o.name,
  ]);
  const layerData = readFileSync(layerTar);
  const layer = blob(layout, layerData);
  const config = blob(
    layout,
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: { Entrypoint: o.entrypoint, Env: ['PATH=/'] },
        rootfs: { type: 'layers', diff_ids: [layer.digest] },
      }),
    ),
  );
  const manifest = blob(
    layout,
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
      }),
    ),
  );
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: {
            'io.containerd.image.name': o.ref,
            'org.opencontainers.image.ref.name': o.ref.split(':').pop(),
          },
        },
      ],
    }),
  );
  await run([
    'tar',
    '--create',
    '--file',
    o.out,
    '--directory',
    layout,
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--mtime=@0',
    '--sort=name',
    'oci-layout',
    'index.json',
    'blobs',
  ]);
  rmSync(o.work, { recursive: true, force: true });
}

/**
 * Writes `out`: the OCI archive `src` with one more config label (`io.sealnet.test.variant`) and
 * ref name `tag`. Layers are shared, config and manifest are new: a genuinely different image
 * digest (what a release with unchanged binaries but new metadata looks like), for the tier's
 * `helm upgrade` to a second image. Returns the new manifest and config digests.
 */
export async function variantOciArchive(o: {
  src: string;
  out: string;
  work: string;
  tag: string;
}): Promise<{ manifestDigest: string; configDigest: string }> {
  rmSync(o.work, { recursive: true, force: true });
  mkdirSync(o.work, { recursive: true });
  await run(['tar', '--extract', '--file', o.src, '--directory', o.work]);
  const blobPath = (d: string): string => join(o.work, 'blobs', 'sha256', d.replace(/^sha256:/, ''));
  const index = JSON.parse(readFileSync(join(o.work, 'index.json'), 'utf8')) as {
    manifests: { digest: string; size: number; mediaType: string; annotations?: Record<string, string> }[];
  };
  const entry = index.manifests[0];
  if (index.manifests.length !== 1 || entry === undefined)
    throw new Error(`${o.src}: expected one manifest in index.json, found ${index.manifests.length}`);
  const manifest = JSON.parse(readFileSync(blobPath(entry.digest), 'utf8')) as {
    config: { digest: string; size: number };
  };
  const config = JSON.parse(readFileSync(blobPath(manifest.config.digest), 'utf8')) as {
    config: { Labels?: Record<string, string> };
  };
  const oldConfig = manifest.config.digest;
  config.config.Labels = { ...config.config.Labels, 'io.sealnet.test.variant': o.tag };
  const newConfig = blob(o.work, Buffer.from(JSON.stringify(config)));
  manifest.config = { ...manifest.config, ...newConfig };
  const newManifest = blob(o.work, Buffer.from(JSON.stringify(manifest)));
  // The old config and manifest stay out of the archive: nothing references them.
  rmSync(blobPath(entry.digest));
  rmSync(blobPath(oldConfig));
  index.manifests = [
    {
      ...entry,
      ...newManifest,
      annotations: { ...entry.annotations, 'org.opencontainers.image.ref.name': o.tag },
    },
  ];
  writeFileSync(join(o.work, 'index.json'), JSON.stringify(index));
  await run([
    'tar',
    '--create',
    '--file',
    o.out,
    '--directory',
    o.work,
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--mtime=@0',
    '--sort=name',
    'oci-layout',
    'index.json',
    'blobs',
  ]);
  rmSync(o.work, { recursive: true, force: true });
  return { manifestDigest: newManifest.digest, configDigest: newConfig.digest };
}
