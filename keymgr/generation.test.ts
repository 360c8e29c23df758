/**
 * IPsec generation (hostile peers, finding 3): kept while the kernel holds the node's SAs, new
 * when it holds none (a reboot); the file is public data but still read strictly.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GENERATION_FILE, loadGeneration, parseGenerationFile, randomGeneration } from './generation.js';

let root: string;
let n = 0;
const freshDir = (): string => join(root, `state-${++n}`);
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sealnet-generation-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A random source returning the given 4-byte words in turn. */
const words =
  (...w: number[]) =>
  (len: number): Uint8Array => {
    expect(len).toBe(4);
    const b = Buffer.alloc(4);
    b.writeUInt32BE(w.shift() ?? 7, 0);
    return b;
  };

describe('IPsec generation', () => {
  it('first start: draws one and stores it as 8 hex digits', async () => {
    const dir = freshDir();
    const d = await loadGeneration({ stateDir: dir, kernelHoldsStates: false, random: words(0x1234abcd) });
    expect(d).toMatchObject({ generation: 0x1234abcd, fresh: true, warnings: [] });
    expect(await readFile(join(dir, GENERATION_FILE), 'utf8')).toBe('1234abcd\n');
  });

  it('agent restart with its SAs in the kernel: keeps the stored one (nothing in the kernel changes)', async () => {
    const dir = freshDir();
    await loadGeneration({ stateDir: dir, kernelHoldsStates: false, random: words(0x11111111) });
    const d = await loadGeneration({ stateDir: dir, kernelHoldsStates: true, random: words(0x22222222) });
    expect(d).toMatchObject({ generation: 0x11111111, fresh: false });
  });

  it('reboot (the kernel holds none of its SAs): a new one, stored', async () => {
    const dir = freshDir();
    await loadGeneration({ stateDir: dir, kernelHoldsStates: false, random: words(0x11111111) });
    const d = await loadGeneration({ stateDir: dir, kernelHoldsStates: false, random: words(0x33333333) });
    expect(d.generation).toBe(0x33333333);
    expect(d.fresh).toBe(true);
    expect(d.reason).toMatch(/reboot/);
    expect(await readFile(join(dir, GENERATION_FILE), 'utf8')).toBe('33333333\n');
  });

  it('a malformed file is replaced with a warning naming it, even when the kernel holds SAs', async () => {
    for (const bad of ['00000000\n', 'xyz', '1234abcd1', '1234ABCD', '']) {
      const dir = freshDir();
      await loadGeneration({ stateDir: dir, kernelHoldsStates: false });
      await writeFile(join(dir, GENERATION_FILE), bad);
      const d = await loadGeneration({ stateDir: dir, kernelHoldsStates: true, random: words(0x44444444) });
      expect(d.generation).toBe(0x44444444);
      expect(d.warnings.join()).toContain(join(dir, GENERATION_FILE));
    }
  });

  it('refuses a symlink and an oversized file with an error naming the path', async () => {
    const dir = freshDir();
    await loadGeneration({ stateDir: dir, kernelHoldsStates: false });
    await rm(join(dir, GENERATION_FILE));
    await symlink('/etc/hostname', join(dir, GENERATION_FILE));
    await expect(loadGeneration({ stateDir: dir, kernelHoldsStates: true })).rejects.toThrow(GENERATION_FILE);
    await rm(join(dir, GENERATION_FILE));
    await writeFile(join(dir, GENERATION_FILE), 'a'.repeat(100));
    await expect(loadGeneration({ stateDir: dir, kernelHoldsStates: true })).rejects.toThrow(/larger than 64 bytes/);
  });

  it('never draws 0 (0 means "no generation")', () => {
    expect(randomGeneration(words(0, 0, 5))).toBe(5);
    expect(parseGenerationFile('00000000')).toBeUndefined();
    expect(parseGenerationFile('ffffffff')).toBe(0xffffffff);
  });
});
