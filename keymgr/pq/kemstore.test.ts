/** The ML-KEM key on disk: created once with mode 0600, the same key after a reload, bad files refused. */
import { mkdtemp, readFile, rm, stat, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOrCreateKemKey } from './kemstore.js';
import { tryParseEncapsulationKey } from './mlkem.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sealnet-kem-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('creates a 64-byte seed file with mode 0600 and a valid encapsulation key', async () => {
  const k = await loadOrCreateKemKey(dir);
  expect(k.created).toBe(true);
  const st = await stat(k.file);
  expect(st.mode & 0o777).toBe(0o600);
  expect(st.size).toBe(64);
  expect(tryParseEncapsulationKey(k.pair.encapsulationKey).ok).toBe(true);
});

test('a reload gives the same key, not a new one', async () => {
  const a = await loadOrCreateKemKey(dir);
  const b = await loadOrCreateKemKey(dir);
  expect(b.created).toBe(false);
  expect(b.pair.encapsulationKey).toBe(a.pair.encapsulationKey);
  expect(Buffer.from(b.pair.decapsulationKey).equals(Buffer.from(a.pair.decapsulationKey))).toBe(true);
});

test('a loose mode is tightened with a warning', async () => {
  const a = await loadOrCreateKemKey(dir);
  await chmod(a.file, 0o644);
  const b = await loadOrCreateKemKey(dir);
  expect(b.warnings.join()).toMatch(/mode 644/);
  expect((await stat(a.file)).mode & 0o777).toBe(0o600);
});

test('a file of the wrong size is refused and never overwritten', async () => {
  const a = await loadOrCreateKemKey(dir);
  await writeFile(a.file, Buffer.alloc(10));
  await expect(loadOrCreateKemKey(dir)).rejects.toThrow(/10 bytes, expected 64; move it away/);
  expect((await readFile(a.file)).length).toBe(10);
});
