/**
 * This node's ML-KEM-768 key on disk (issue 19): the 64-byte FIPS 203 key-generation seed
 * (d ‖ z) in `<stateDir>/keys/pq-mlkem768.seed`, mode 0600, written atomically, created once and
 * read back on every start, so the published encapsulation key survives agent restarts (peers
 * keep their pair secrets; a new key would start a renewal with every peer). The key pair is
 * derived from the seed on load; neither the seed nor the decapsulation key is ever logged.
 */
import { constants as fsc } from 'node:fs';
import { chmod, mkdir, open } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PQ_KEM_SEED_FILE } from '../../common/constants.js';
import { SealnetError } from '../../common/errors.js';
import { errnoCode, FILE_MODE, ioError, writeAtomic } from '../atomicfile.js';
import { generateKemKeyPair, KEM_SEED_BYTES, type KemKeyPair } from './mlkem.js';

/** What {@link loadOrCreateKemKey} found or made. */
export interface LoadedKemKey {
  readonly pair: KemKeyPair;
  /** True when this call generated the key. */
  readonly created: boolean;
  /** Path of the seed file (for messages; its content is secret). */
  readonly file: string;
  /** Repairs made (a loose mode tightened). */
  readonly warnings: readonly string[];
}

/**
 * Loads the node's ML-KEM key, generating and storing it on first use.
 * @throws SealnetError `KEYSTORE_IO` when the file exists but is not exactly 64 bytes or cannot be
 *   read (it is never overwritten: move it away to get a new key).
 */
export async function loadOrCreateKemKey(stateDir: string): Promise<LoadedKemKey> {
  const dir = join(resolve(stateDir), 'keys');
  const file = join(dir, PQ_KEM_SEED_FILE);
  await mkdir(dir, { recursive: true, mode: 0o700 }).catch((err: unknown) => {
    throw ioError('cannot create key directory', dir, err);
  });
  const existing = await readSeed(file);
  if (existing !== undefined) {
    try {
      return { pair: generateKemKeyPair(existing.seed), created: false, file, warnings: existing.warnings };
    } finally {
      existing.seed.fill(0);
    }
  }
  const seed = new Uint8Array(randomBytes(KEM_SEED_BYTES));
  try {
    const created = await writeAtomic(dir, PQ_KEM_SEED_FILE, seed, { how: 'create' });
    if (!created) return await loadOrCreateKemKey(stateDir); // another writer won: use theirs
    return { pair: generateKemKeyPair(seed), created: true, file, warnings: [] };
  } finally {
    seed.fill(0);
  }
}

async function readSeed(file: string): Promise<{ seed: Uint8Array; warnings: string[] } | undefined> {
  let fh;
  try {
    fh = await open(file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw ioError('cannot open the ML-KEM key', file, err);
  }
  try {
    const st = await fh.stat();
    const warnings: string[] = [];
    if (!st.isFile()) throw new SealnetError('KEYSTORE_IO', `ML-KEM key ${file} is not a regular file; move it away`);
    if (st.size !== KEM_SEED_BYTES) {
      throw new SealnetError(
        'KEYSTORE_IO',
        `ML-KEM key ${file} has ${st.size} bytes, expected ${KEM_SEED_BYTES}; move it away to generate a new key`,
      );
    }
    if ((st.mode & 0o777) !== FILE_MODE) {
      await chmod(file, FILE_MODE);
      warnings.push(`ML-KEM key ${file} had mode ${(st.mode & 0o777).toString(8)}; set to 600`);
    }
    const seed = new Uint8Array(KEM_SEED_BYTES);
    const { bytesRead } = await fh.read(seed, 0, KEM_SEED_BYTES, 0);
    if (bytesRead !== KEM_SEED_BYTES) throw new SealnetError('KEYSTORE_IO', `short read of ML-KEM key ${file}`);
    return { seed, warnings };
  } finally {
    await fh.close();
  }
}
