/**
 * Hostile peers, class "copied key": first-seen ownership survives a restart and the older claim
 * wins; conflicts are reported.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { establishedWithOwners, KeyOwnerBook, KeyOwnersFile, recordOwners } from './keyowners.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sealnet-owners-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('first-seen key ownership', () => {
  it('the first claim owns a key; a later copier is a conflict and gets nothing', () => {
    const a = recordOwners({}, { 'node-b': ['KB'] }, 1000);
    expect(a.owners['KB']?.node).toBe('node-b');
    const b = recordOwners(a.owners, { 'node-b': ['KB'], 'node-x': ['KB'] }, 2000);
    expect(b.conflicts).toEqual([{ key: 'KB', owner: 'node-b', claimant: 'node-x' }]);
    expect(b.owners['KB']).toEqual({ node: 'node-b', firstSeen: 1000, lastSeen: 2000 });
    // An agent restarted with no in-memory history: the planner's established map gets node-b's claim.
    expect(establishedWithOwners({}, b.owners, { 'node-b': 'KB', 'node-x': 'KB' })).toEqual({ 'node-b': 'KB' });
  });

  it('two nodes first seen with one key at once: nobody owns it', () => {
    const r = recordOwners({}, { 'node-b': ['K'], 'node-x': ['K'] }, 1);
    expect(r.owners['K']).toBeUndefined();
    expect(r.conflicts.map((c) => c.claimant)).toEqual(['node-b', 'node-x']);
  });

  it('persists atomically (0600) and reads back; a malformed file is refused, not guessed at', async () => {
    const f = new KeyOwnersFile(join(dir, 'state'));
    expect(await f.read()).toEqual({});
    const { owners } = recordOwners({}, { 'node-b': ['KB'] }, 5);
    await f.write(owners);
    expect({ ...(await f.read()) }).toEqual(owners);
    expect((await stat(f.path)).mode & 0o777).toBe(0o600);
    await writeFile(f.path, '{"KB": 3}');
    await expect(f.read()).rejects.toThrow('malformed');
  });

  it('a restarted agent (KeyOwnerBook reopened) still gives the key to the node seen first', async () => {
    const stateDir = join(dir, 'restart');
    const errors: unknown[] = [];
    const before = await KeyOwnerBook.open(stateDir, (e) => errors.push(e));
    before.record({ 'node-b': ['KB'] }, 1);
    await before.flush();
    const after = await KeyOwnerBook.open(stateDir, (e) => errors.push(e));
    expect(after.record({ 'node-b': ['KB'], 'node-x': ['KB'] }, 2)).toEqual([
      { key: 'KB', owner: 'node-b', claimant: 'node-x' },
    ]);
    expect(establishedWithOwners({}, after.owners, { 'node-b': 'KB', 'node-x': 'KB' })).toEqual({ 'node-b': 'KB' });
    expect(errors).toEqual([]);
  });
  it('a pass that claims a few keys touches only those (O(claims) at 5,000 known) and writes only when a key is new', async () => {
    const stateDir = join(dir, 'inplace');
    const errors: unknown[] = [];
    const book = await KeyOwnerBook.open(stateDir, (e) => errors.push(e));
    const all = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`node-${i}`, [`K${i}`]]));
    book.record(all, 1);
    await book.flush();
    const untouched = book.owners['K1'];
    const file = join(stateDir, 'key-owners.json');
    const written = (await stat(file)).mtimeMs;
    // An event pass: one node changed its key, one was seen again.
    expect(book.record({ 'node-0': ['K0'], 'node-7': ['K7-new'] }, 2)).toEqual([]);
    expect(book.owners['K1']).toBe(untouched);
    expect(book.owners['K0']).toEqual({ node: 'node-0', firstSeen: 1, lastSeen: 2 });
    expect(book.owners['K7-new']).toEqual({ node: 'node-7', firstSeen: 2, lastSeen: 2 });
    await book.flush();
    const reopened = await KeyOwnerBook.open(stateDir, (e) => errors.push(e));
    expect(Object.keys(reopened.owners)).toHaveLength(5001);
    expect(reopened.owners['K7-new']).toEqual({ node: 'node-7', firstSeen: 2, lastSeen: 2 });
    // Seen again, nothing new: no write.
    const mtime = (await stat(file)).mtimeMs;
    expect(mtime).toBeGreaterThanOrEqual(written);
    await new Promise((r) => setTimeout(r, 20));
    book.record({ 'node-3': ['K3'] }, 3);
    await book.flush();
    expect((await stat(file)).mtimeMs).toBe(mtime);
    expect(errors).toEqual([]);
  });
});
