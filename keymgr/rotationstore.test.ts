import { afterEach, describe, expect, it } from '@jest/globals';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyStore } from './keystore.js';
import { INITIAL_ROTATION_STATE, type RotationState } from './rotation.js';
import { RotationStateFile } from './rotationstore.js';

// The rotation state file (atomic, 0600, strict) and the start-up sweep of key files a crash
// left behind.

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function dir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'sealnet-rotstore-'));
  dirs.push(d);
  return d;
}

describe('RotationStateFile', () => {
  it('reads the initial state when there is no file, and what was written after', async () => {
    const d = await dir();
    const f = new RotationStateFile(d);
    expect(await f.read(0)).toEqual({ state: INITIAL_ROTATION_STATE, found: false, warnings: [] });
    const s: RotationState = {
      activeSlot: 1,
      handledRequestId: 'r-1',
      last: { id: 'r-1', reason: 'request', completedAt: 1_000, epoch: 2, lagging: [] },
      rotation: undefined,
    };
    await f.write(s);
    expect(await f.read(0)).toEqual({ state: s, found: true, warnings: [] });
    expect((await stat(f.path)).mode & 0o777).toBe(0o600);
    // Atomic replace: no temporary file is left beside it.
    expect(await readdir(d)).toEqual(['rotation.json']);
  });

  it('refuses a corrupt file with a message naming it and what to do', async () => {
    const d = await dir();
    const f = new RotationStateFile(d);
    await writeFile(f.path, '{"version":1,"activeSlot":7}');
    await expect(f.read(0)).rejects.toThrow(
      /rotation state is unusable \(activeSlot 7, want 0 or 1\); fix or remove the file/,
    );
  });
});

describe('KeyStore.sweep at start-up', () => {
  it('scrubs a temporary key file an interrupted write left, however young', async () => {
    const d = await dir();
    const ks = new KeyStore({ stateDir: d });
    await ks.loadOrCreate('wireguard');
    const leftover = join(ks.keysDir, '.wireguard.next.key.tmp-0123456789ab');
    await writeFile(leftover, 'not a real key, but it could have been\n', { mode: 0o600 });
    expect(await ks.sweep('wireguard', { olderThanMs: 60_000 })).toEqual([]);
    const w = await ks.sweep('wireguard', { olderThanMs: 0 });
    expect(w).toEqual([`removed leftover file ${leftover} from an interrupted write`]);
    expect((await readdir(ks.keysDir)).sort()).toEqual(['wireguard.json', 'wireguard.key']);
  });
});
