import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { mkdtemp, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SealnetError } from '../../common/errors.js';
import type { RawNode } from '../ports/model.js';
import type { NodeStoreEvents } from '../ports/index.js';
import { FileNodeStore } from './file.js';

// Real files in a temp dir; a short poll interval so changes are seen without relying on inotify.

/** Everything a store reported, in order. */
interface Recorder {
  readonly changes: (readonly RawNode[])[];
  synced: number;
  readonly errors: Error[];
  readonly events: NodeStoreEvents;
}

function recorder(): Recorder {
  const rec: Recorder = {
    changes: [],
    synced: 0,
    errors: [],
    events: {
      onChange: (n) => rec.changes.push(n),
      onSynced: () => {
        rec.synced++;
      },
      onError: (e) => rec.errors.push(e),
    },
  };
  return rec;
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function doc(
  name: string,
  over: { annotations?: Record<string, string>; podCIDRs?: string[]; ip?: string } = {},
): string {
  return `${JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name, annotations: over.annotations ?? { 'node.alpha.kubernetes.io/ttl': '0' } },
      spec: { podCIDRs: over.podCIDRs ?? ['100.64.1.0/24'] },
      status: {
        addresses: [
          { type: 'Hostname', address: name },
          { type: 'InternalIP', address: over.ip ?? '198.18.0.1' },
        ],
      },
    },
    null,
    2,
  )}\n`;
}

let dir: string;
let store: FileNodeStore | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sealnet-filestore-test-'));
});

afterEach(async () => {
  await store?.stop();
  store = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function started(files: Record<string, string>): Promise<Recorder> {
  for (const [f, content] of Object.entries(files)) await writeFile(join(dir, f), content);
  const rec = recorder();
  store = new FileNodeStore({ dir, pollMs: 25 });
  await store.start(rec.events);
  return rec;
}

describe('FileNodeStore', () => {
  it('is synced after start, with every document read', async () => {
    const rec = await started({
      'node-a.json': doc('node-a'),
      'node-b.json': doc('node-b', { podCIDRs: ['100.64.2.0/24'], ip: '198.18.0.2' }),
    });
    expect(store!.synced()).toBe(true);
    expect(rec.synced).toBe(1);
    expect(store!.list()).toStrictEqual([
      {
        name: 'node-a',
        annotations: { 'node.alpha.kubernetes.io/ttl': '0' },
        podCIDRs: ['100.64.1.0/24'],
        internalIPs: ['198.18.0.1'],
      },
      {
        name: 'node-b',
        annotations: { 'node.alpha.kubernetes.io/ttl': '0' },
        podCIDRs: ['100.64.2.0/24'],
        internalIPs: ['198.18.0.2'],
      },
    ]);
    expect(rec.changes).toHaveLength(1);
    expect(rec.changes[0]!.map((n) => n.name)).toStrictEqual(['node-a', 'node-b']);
    expect(rec.errors).toStrictEqual([]);
  });

  it('an empty directory is synced with an empty list', async () => {
    const rec = await started({});
    expect(store!.synced()).toBe(true);
    expect(store!.list()).toStrictEqual([]);
    expect(rec.synced).toBe(1);
  });

  it('ignores files that are not *.json and dot files (temp files of a patch)', async () => {
    await started({
      'node-a.json': doc('node-a'),
      README: 'x',
      '.node-b.json.123.tmp': doc('node-b'),
      '.node-c.json': doc('node-c'),
    });
    expect(store!.list().map((n) => n.name)).toStrictEqual(['node-a']);
  });

  it('reports added, changed and removed documents with the full list', async () => {
    const rec = await started({ 'node-a.json': doc('node-a') });
    await writeFile(join(dir, 'node-b.json'), doc('node-b', { ip: '198.18.0.2' }));
    await waitFor('node-b added', () => rec.changes.at(-1)?.length === 2);
    expect(rec.changes.at(-1)!.map((n) => n.name)).toStrictEqual(['node-a', 'node-b']);

    await writeFile(
      join(dir, 'node-b.json'),
      doc('node-b', { ip: '198.18.0.22', annotations: { 'sealnet.io/version': '1' } }),
    );
    await waitFor(
      'node-b changed',
      () => rec.changes.at(-1)?.find((n) => n.name === 'node-b')?.internalIPs[0] === '198.18.0.22',
    );
    expect(store!.list().find((n) => n.name === 'node-b')!.annotations).toStrictEqual({ 'sealnet.io/version': '1' });

    await unlink(join(dir, 'node-a.json'));
    await waitFor('node-a removed', () => rec.changes.at(-1)?.length === 1);
    expect(store!.list().map((n) => n.name)).toStrictEqual(['node-b']);
    expect(rec.synced).toBe(1);
    expect(rec.errors).toStrictEqual([]);
  });

  it('no change, no event: polling an unchanged directory stays quiet', async () => {
    const rec = await started({ 'node-a.json': doc('node-a') });
    await sleep(150); // several poll intervals
    expect(rec.changes).toHaveLength(1);
  });

  it('garbage JSON is reported once, skipped, and the other nodes stay', async () => {
    const rec = await started({
      'node-a.json': doc('node-a'),
      'node-b.json': '{"metadata": {"name": "node-b"',
      'node-c.json': doc('node-c', { ip: '198.18.0.3' }),
    });
    expect(store!.list().map((n) => n.name)).toStrictEqual(['node-a', 'node-c']);
    expect(rec.errors).toHaveLength(1);
    expect(rec.errors[0]).toBeInstanceOf(SealnetError);
    expect(rec.errors[0]!.message).toContain(`node document ${join(dir, 'node-b.json')} is not valid JSON`);
    expect(rec.errors[0]!.message).toContain('skipping it');
    // Touch another file so scans happen; still only one report for node-b.
    await writeFile(join(dir, 'node-c.json'), doc('node-c', { ip: '198.18.0.33' }));
    await waitFor(
      'node-c changed',
      () => store!.list().find((n) => n.name === 'node-c')?.internalIPs[0] === '198.18.0.33',
    );
    // Rewritten with the same garbage (new mtime, so it is read again): still one report.
    await sleep(20);
    await writeFile(join(dir, 'node-b.json'), '{"metadata": {"name": "node-b"');
    await sleep(150);
    expect(rec.errors).toHaveLength(1);
    expect(store!.list().map((n) => n.name)).toStrictEqual(['node-a', 'node-c']);
  });

  it('a broken document that is fixed comes back; broken again is reported again', async () => {
    const rec = await started({ 'node-b.json': 'not json' });
    expect(store!.list()).toStrictEqual([]);
    await writeFile(join(dir, 'node-b.json'), doc('node-b'));
    await waitFor('node-b fixed', () => store!.list().length === 1);
    expect(rec.errors).toHaveLength(1);
    await writeFile(join(dir, 'node-b.json'), 'still not json!');
    await waitFor('node-b broken again', () => store!.list().length === 0);
    await waitFor('second report', () => rec.errors.length === 2);
  });

  it('a document whose name does not match its file is skipped and reported', async () => {
    const rec = await started({ 'node-a.json': doc('node-a'), 'node-b.json': doc('node-c') });
    expect(store!.list().map((n) => n.name)).toStrictEqual(['node-a']);
    expect(rec.errors.map((e) => e.message)).toStrictEqual([
      `node document ${join(dir, 'node-b.json')} names node "node-c", want the file to be named node-c.json; skipping it`,
    ]);
  });

  it('a document without metadata.name is skipped and reported', async () => {
    const rec = await started({ 'node-a.json': JSON.stringify({ metadata: {} }) });
    expect(store!.list()).toStrictEqual([]);
    expect(rec.errors.map((e) => e.message)).toStrictEqual([
      `node document ${join(dir, 'node-a.json')}: metadata.name is missing; skipping it`,
    ]);
  });

  it('reads spec.podCIDR when spec.podCIDRs is absent, and only InternalIP addresses', async () => {
    const legacy = JSON.stringify({
      metadata: { name: 'node-a' },
      spec: { podCIDR: '100.64.1.0/24' },
      status: {
        addresses: [
          { type: 'ExternalIP', address: '203.0.113.1' },
          { type: 'InternalIP', address: '198.18.0.1' },
        ],
      },
    });
    await started({ 'node-a.json': legacy });
    expect(store!.list()).toStrictEqual([
      { name: 'node-a', annotations: {}, podCIDRs: ['100.64.1.0/24'], internalIPs: ['198.18.0.1'] },
    ]);
  });

  describe('patchAnnotations', () => {
    it('merges sealnet.io/ keys, keeps every other field, removes keys set to undefined', async () => {
      await started({
        'node-a.json': doc('node-a', {
          annotations: { 'node.alpha.kubernetes.io/ttl': '0', 'sealnet.io/rotation': '{"old":true}' },
        }),
      });
      await store!.patchAnnotations('node-a', {
        'sealnet.io/version': '1',
        'sealnet.io/endpoint': '198.18.0.1:51880',
        'sealnet.io/rotation': undefined,
      });
      const written = JSON.parse(await readFile(join(dir, 'node-a.json'), 'utf8'));
      expect(written).toStrictEqual({
        apiVersion: 'v1',
        kind: 'Node',
        metadata: {
          name: 'node-a',
          annotations: {
            'node.alpha.kubernetes.io/ttl': '0',
            'sealnet.io/version': '1',
            'sealnet.io/endpoint': '198.18.0.1:51880',
          },
        },
        spec: { podCIDRs: ['100.64.1.0/24'] },
        status: {
          addresses: [
            { type: 'Hostname', address: 'node-a' },
            { type: 'InternalIP', address: '198.18.0.1' },
          ],
        },
      });
      await waitFor('store sees the patch', () => store!.list()[0]?.annotations['sealnet.io/version'] === '1');
    });

    it('creates metadata.annotations when the node has none', async () => {
      await started({
        'node-a.json': JSON.stringify({ metadata: { name: 'node-a' }, spec: { podCIDRs: ['100.64.1.0/24'] } }),
      });
      await store!.patchAnnotations('node-a', { 'sealnet.io/version': '1' });
      expect(JSON.parse(await readFile(join(dir, 'node-a.json'), 'utf8')).metadata).toStrictEqual({
        name: 'node-a',
        annotations: { 'sealnet.io/version': '1' },
      });
    });

    it('replaces the file atomically (new inode, no temp file left behind)', async () => {
      await started({ 'node-a.json': doc('node-a') });
      const before = await stat(join(dir, 'node-a.json'));
      await store!.patchAnnotations('node-a', { 'sealnet.io/version': '1' });
      const after = await stat(join(dir, 'node-a.json'));
      expect(after.ino).not.toBe(before.ino);
      expect(await readdir(dir)).toStrictEqual(['node-a.json']);
    });

    it('refuses keys outside sealnet.io/ and leaves the file untouched', async () => {
      await started({ 'node-a.json': doc('node-a') });
      const before = await readFile(join(dir, 'node-a.json'), 'utf8');
      let err: unknown;
      try {
        await store!.patchAnnotations('node-a', { 'sealnet.io/version': '1', 'node.alpha.kubernetes.io/ttl': '30' });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SealnetError);
      expect((err as SealnetError).code).toBe('INTERNAL');
      expect((err as SealnetError).message).toBe(
        'refusing to patch annotation node.alpha.kubernetes.io/ttl: agents write only sealnet.io/ keys',
      );
      expect(await readFile(join(dir, 'node-a.json'), 'utf8')).toBe(before);
    });

    it('a missing node is an error, and no file is created', async () => {
      await started({ 'node-a.json': doc('node-a') });
      await expect(store!.patchAnnotations('node-z', { 'sealnet.io/version': '1' })).rejects.toThrow(
        `cannot patch node node-z: ${join(dir, 'node-z.json')} is missing or unreadable`,
      );
      expect(await readdir(dir)).toStrictEqual(['node-a.json']);
    });

    it('two patches in a row both land', async () => {
      await started({ 'node-a.json': doc('node-a') });
      await store!.patchAnnotations('node-a', { 'sealnet.io/version': '1' });
      await store!.patchAnnotations('node-a', { 'sealnet.io/mode': 'wireguard' });
      expect(JSON.parse(await readFile(join(dir, 'node-a.json'), 'utf8')).metadata.annotations).toStrictEqual({
        'node.alpha.kubernetes.io/ttl': '0',
        'sealnet.io/version': '1',
        'sealnet.io/mode': 'wireguard',
      });
    });
  });

  describe('with inotify and the slow safety-net rescan (the defaults an agent runs with)', () => {
    async function watched(files: Record<string, string>): Promise<Recorder> {
      for (const [f, content] of Object.entries(files)) await writeFile(join(dir, f), content);
      const rec = recorder();
      store = new FileNodeStore({ dir, pollMs: 60_000, unwatchedPollMs: 50 });
      await store.start(rec.events);
      return rec;
    }
    const names = (rec: Recorder): string[] => (rec.changes.at(-1) ?? []).map((n) => n.name);

    it('sees a new document and a removed one from the inotify event alone', async () => {
      const rec = await watched({ 'node-a.json': doc('node-a') });
      await writeFile(join(dir, '.tmp'), doc('node-b'));
      await rename(join(dir, '.tmp'), join(dir, 'node-b.json'));
      await waitFor('node-b', () => names(rec).includes('node-b'));
      await unlink(join(dir, 'node-a.json'));
      await waitFor('node-a gone', () => !names(rec).includes('node-a'));
    });

    it('a store directory moved away keeps every node (no deletions), and a change made meanwhile arrives once it is back', async () => {
      const rec = await watched({ 'node-a.json': doc('node-a'), 'node-b.json': doc('node-b') });
      const away = `${dir}-away`;
      await rename(dir, away);
      try {
        // Events still arrive for the moved directory; none of them may look like deletions.
        await writeFile(join(away, 'node-c.json'), doc('node-c'));
        await writeFile(join(away, 'node-a.json'), doc('node-a', { ip: '198.18.0.9' }));
        await sleep(300);
        expect(store!.list().map((n) => n.name)).toEqual(['node-a', 'node-b']);
        expect(rec.errors.length).toBeGreaterThan(0);
      } finally {
        await rename(away, dir);
      }
      await waitFor('node-c after the directory came back', () => names(rec).includes('node-c'));
      expect(store!.list().find((n) => n.name === 'node-a')?.internalIPs).toEqual(['198.18.0.9']);
    });

    it('an outage with a full rescan pending reports errors at the check interval, not in a tight loop', async () => {
      const rec = await watched({ 'node-a.json': doc('node-a') });
      const away = `${dir}-away`;
      await rename(dir, away);
      try {
        // A full rescan is requested while the directory is gone (what the 2 s check does).
        (store as unknown as { queueScan(): void }).queueScan();
        await sleep(500);
        // unwatchedPollMs is 50 here: about 10 checks, each at most one error.
        expect(rec.errors.length).toBeLessThan(25);
        expect(store!.list().map((n) => n.name)).toEqual(['node-a']);
      } finally {
        await rename(away, dir);
      }
    });
  });

  it('stop() ends events', async () => {
    const rec = await started({ 'node-a.json': doc('node-a') });
    await store!.stop();
    const count = rec.changes.length;
    await writeFile(join(dir, 'node-b.json'), doc('node-b'));
    await sleep(100);
    expect(rec.changes).toHaveLength(count);
  });
});
