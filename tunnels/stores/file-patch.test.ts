import { afterEach, beforeEach, expect, it } from '@jest/globals';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileNodeStore } from './file.js';

// Concurrent patches from one agent (reconciler and status publisher) are serialised: every
// change lands, the document is never torn, no temp file is left behind.

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sealnet-filepatch-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

it('applies concurrent patches of one node one after the other, none lost, the document intact', async () => {
  const doc = {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'n1', annotations: { other: 'kept' } },
    spec: { podCIDRs: ['100.64.1.0/24'] },
    status: { addresses: [] },
  };
  await writeFile(join(dir, 'n1.json'), JSON.stringify(doc));
  const store = new FileNodeStore({ dir, pollMs: 60_000 });
  // Values of very different sizes, as the status report (large) and the key annotations (small).
  await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      store.patchAnnotations('n1', { [`sealnet.io/k${i}`]: 'x'.repeat(i % 2 === 0 ? 5000 : 3) }),
    ),
  );
  const text = await readFile(join(dir, 'n1.json'), 'utf8');
  const parsed = JSON.parse(text) as { metadata: { annotations: Record<string, string> } };
  expect(Object.keys(parsed.metadata.annotations).sort()).toEqual(
    ['other', ...Array.from({ length: 20 }, (_, i) => `sealnet.io/k${i}`)].sort(),
  );
  expect(await readdir(dir)).toEqual(['n1.json']);
});

it('a failed patch does not block the next one', async () => {
  const store = new FileNodeStore({ dir, pollMs: 60_000 });
  await expect(store.patchAnnotations('missing', { 'sealnet.io/a': '1' })).rejects.toMatchObject({ code: 'STORE_IO' });
  await writeFile(join(dir, 'n2.json'), JSON.stringify({ metadata: { name: 'n2' } }));
  await store.patchAnnotations('n2', { 'sealnet.io/a': '1' });
  expect(JSON.parse(await readFile(join(dir, 'n2.json'), 'utf8')).metadata.annotations).toEqual({
    'sealnet.io/a': '1',
  });
});
