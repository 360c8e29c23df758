import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  chmod,
  link,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  rename,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SealnetError } from '../common/errors.js';
import { generateKeyPair, parsePrivateKey, publicKeyFromPrivate, sodiumReady } from './keys.js';
import { INITIAL_EPOCH, KeyStore } from './keystore.js';

const ALICE_PRIVATE_B64 = 'dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=';
const ALICE_PUBLIC_B64 = 'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=';
const T0 = new Date('2025-03-01T12:00:00.000Z');

let stateDir: string;
let keysDir: string;

beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'sealnet-keystore-'));
  keysDir = join(stateDir, 'keys');
});
afterEach(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

const store = (): KeyStore => new KeyStore({ stateDir, now: () => T0 });
const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;
const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const metaOf = async (path: string): Promise<Record<string, unknown>> =>
  JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;

async function rejection(p: Promise<unknown>): Promise<SealnetError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(SealnetError);
    return err as SealnetError;
  }
  throw new Error('expected a rejection');
}

/** Writes Alice's RFC 7748 key as the current wireguard key, with metadata, through the store. */
async function writeAlice(ks: KeyStore, epoch = 7): Promise<void> {
  const privateKey = parsePrivateKey(ALICE_PRIVATE_B64);
  await ks.writeKey(
    'wireguard',
    'current',
    { privateKey, publicKey: publicKeyFromPrivate(privateKey) },
    { createdAt: T0, epoch },
  );
}

describe('KeyStore.loadOrCreate', () => {
  it('creates a key file wg can read, 0600 in a 0700 directory, with metadata', async () => {
    const k = await store().loadOrCreate('wireguard');
    expect(k.created).toBe(true);
    expect(k.warnings).toEqual([]);
    expect(k.epoch).toBe(INITIAL_EPOCH);
    expect(k.createdAt.toISOString()).toBe(T0.toISOString());
    expect(k.privateKeyFile).toBe(join(keysDir, 'wireguard.key'));
    expect(k.publicKey).toBe(publicKeyFromPrivate(k.privateKey));

    const text = await readFile(k.privateKeyFile, 'latin1');
    expect(text).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    expect(Buffer.from(text.trim(), 'base64').toString('hex')).toBe(hexOf(k.privateKey));
    expect(await mode(k.privateKeyFile)).toBe(0o600);
    expect(await mode(keysDir)).toBe(0o700);
    expect(await mode(join(keysDir, 'wireguard.json'))).toBe(0o600);
    expect(await metaOf(join(keysDir, 'wireguard.json'))).toEqual({
      version: 1,
      kind: 'wireguard',
      publicKey: k.publicKey,
      createdAt: T0.toISOString(),
      epoch: INITIAL_EPOCH,
    });
    // Atomic writes leave no temporary files behind.
    expect((await readdir(keysDir)).sort()).toEqual(['wireguard.json', 'wireguard.key']);
  });

  it('returns the same key after a restart (new instance), without rewriting it', async () => {
    const first = await store().loadOrCreate('wireguard');
    const before = await stat(first.privateKeyFile);
    const again = await new KeyStore({ stateDir, now: () => new Date('2030-01-01T00:00:00Z') }).loadOrCreate(
      'wireguard',
    );
    expect(again.created).toBe(false);
    expect(again.warnings).toEqual([]);
    expect(again.publicKey).toBe(first.publicKey);
    expect(hexOf(again.privateKey)).toBe(hexOf(first.privateKey));
    expect(again.createdAt.toISOString()).toBe(T0.toISOString());
    expect(again.epoch).toBe(INITIAL_EPOCH);
    expect((await stat(first.privateKeyFile)).ino).toBe(before.ino);
  });

  it('keeps wireguard and ipsec keys separate', async () => {
    const ks = store();
    const wg = await ks.loadOrCreate('wireguard');
    const ipsec = await ks.loadOrCreate('ipsec');
    expect(ipsec.privateKeyFile).toBe(join(keysDir, 'ipsec.key'));
    expect(ipsec.publicKey).not.toBe(wg.publicKey);
    expect((await readdir(keysDir)).sort()).toEqual(['ipsec.json', 'ipsec.key', 'wireguard.json', 'wireguard.key']);
  });

  it('loads a key written by `wg genkey` format and derives the RFC 7748 public key', async () => {
    await mkdir(keysDir, { recursive: true, mode: 0o700 });
    await writeFile(join(keysDir, 'wireguard.key'), `${ALICE_PRIVATE_B64}\n`, { mode: 0o600 });
    const k = await store().loadOrCreate('wireguard');
    expect(k.created).toBe(false);
    expect(k.publicKey).toBe(ALICE_PUBLIC_B64);
    // Metadata was missing: rebuilt and reported.
    expect(k.warnings).toHaveLength(1);
    expect(k.warnings[0]).toContain('was missing; rewritten');
    expect((await metaOf(join(keysDir, 'wireguard.json')))['publicKey']).toBe(ALICE_PUBLIC_B64);
  });

  it('tightens a group/world-readable key file to 0600 and a loose directory to 0700, with warnings', async () => {
    const k = await store().loadOrCreate('wireguard');
    await chmod(k.privateKeyFile, 0o644);
    await chmod(keysDir, 0o755);
    const again = await store().loadOrCreate('wireguard');
    expect(again.publicKey).toBe(k.publicKey);
    expect(again.warnings).toEqual([
      `key directory ${keysDir} had mode 0755; changed to 0700`,
      `key file ${k.privateKeyFile} had mode 0644; changed to 0600`,
    ]);
    expect(await mode(k.privateKeyFile)).toBe(0o600);
    expect(await mode(keysDir)).toBe(0o700);
  });

  it('rewrites metadata that names another public key, keeping its epoch', async () => {
    const ks = store();
    await writeAlice(ks, 5);
    const other = await generateKeyPair();
    const metaPath = join(keysDir, 'wireguard.json');
    const doc = await metaOf(metaPath);
    await writeFile(metaPath, JSON.stringify({ ...doc, publicKey: other.publicKey }));
    const k = await store().loadOrCreate('wireguard');
    expect(k.publicKey).toBe(ALICE_PUBLIC_B64);
    expect(k.epoch).toBe(5);
    expect(k.warnings).toHaveLength(1);
    expect(k.warnings[0]).toContain('named a different public key');
    expect((await metaOf(metaPath))['publicKey']).toBe(ALICE_PUBLIC_B64);
    expect((await metaOf(metaPath))['epoch']).toBe(5);
  });

  it('rewrites unparseable metadata', async () => {
    const ks = store();
    await writeAlice(ks);
    await writeFile(join(keysDir, 'wireguard.json'), '{not json');
    const k = await store().loadOrCreate('wireguard');
    expect(k.publicKey).toBe(ALICE_PUBLIC_B64);
    expect(k.epoch).toBe(INITIAL_EPOCH);
    expect(k.warnings[0]).toContain('was invalid (not JSON)');
    expect((await metaOf(join(keysDir, 'wireguard.json')))['publicKey']).toBe(ALICE_PUBLIC_B64);
  });

  it.each([
    ['garbage', 'not a key\n', 'private key contains whitespace'],
    [
      'truncated key',
      `${ALICE_PRIVATE_B64.slice(0, 30)}\n`,
      'private key is 30 characters, want 44 (base64 of 32 bytes)',
    ],
    ['empty file', '', 'private key is empty'],
    ['zeroed file', '\0'.repeat(45), 'it holds only zero bytes, as an interrupted erase leaves it'],
    ['all-zero key', `${Buffer.alloc(32).toString('base64')}\n`, 'private key is all zeros'],
    ['huge file', 'A'.repeat(10_000), 'it is 10000 bytes, want 45'],
  ])('refuses a corrupt key file (%s) without touching it', async (_name, content, reason) => {
    await mkdir(keysDir, { recursive: true, mode: 0o700 });
    const path = join(keysDir, 'wireguard.key');
    await writeFile(path, content, { mode: 0o600 });
    const err = await rejection(store().loadOrCreate('wireguard'));
    expect(err.code).toBe('KEYSTORE_IO');
    expect(err.message).toContain(`key file ${path} is corrupt (${reason})`);
    expect(err.message).toContain('delete it to generate a new key');
    if (content.length > 8) expect(err.message).not.toContain(content.slice(0, 8));
    expect(await readFile(path, 'latin1')).toBe(content);
    expect(await readdir(keysDir)).toEqual(['wireguard.key']);
  });

  it('refuses to follow a symlinked key file', async () => {
    await mkdir(keysDir, { recursive: true, mode: 0o700 });
    const elsewhere = join(stateDir, 'elsewhere.key');
    await writeFile(elsewhere, `${ALICE_PRIVATE_B64}\n`, { mode: 0o600 });
    await symlink(elsewhere, join(keysDir, 'wireguard.key'));
    const err = await rejection(store().loadOrCreate('wireguard'));
    expect(err.code).toBe('KEYSTORE_IO');
    expect(err.message).toContain('is a symbolic link');
    expect(err.message).not.toContain(ALICE_PRIVATE_B64);
  });

  it('two concurrent first starts agree on one key', async () => {
    const [a, b] = await Promise.all([store().loadOrCreate('wireguard'), store().loadOrCreate('wireguard')]);
    expect(a.publicKey).toBe(b.publicKey);
    expect([a.created, b.created].sort()).toEqual([false, true]);
    const onDisk = await store().loadOrCreate('wireguard');
    expect(onDisk.publicKey).toBe(a.publicKey);
    expect((await readdir(keysDir)).sort()).toEqual(['wireguard.json', 'wireguard.key']);
  });

  it('scrubs stale temporary files left by a crash, but not fresh ones', async () => {
    const ks = store();
    await ks.loadOrCreate('wireguard');
    const stale = join(keysDir, '.wireguard.key.tmp-0123456789ab');
    const fresh = join(keysDir, '.wireguard.key.tmp-ba9876543210');
    await writeFile(stale, `${ALICE_PRIVATE_B64}\n`, { mode: 0o600 });
    await writeFile(fresh, `${ALICE_PRIVATE_B64}\n`, { mode: 0o600 });
    const old = new Date(Date.now() - 10 * 60_000);
    await utimes(stale, old, old);
    const witness = join(stateDir, 'witness');
    await link(stale, witness); // a second name for the stale file's inode
    const k = await store().loadOrCreate('wireguard');
    expect(k.warnings).toEqual([`removed leftover file ${stale} from an interrupted write`]);
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(fresh)).toBe(true);
    expect(await readFile(witness)).toEqual(Buffer.alloc(45)); // overwritten with zeros before unlink
  });
});

describe('KeyStore rotation slots', () => {
  it('writes a next key beside the current one and reads both back', async () => {
    const ks = store();
    const current = await ks.loadOrCreate('wireguard');
    const next = await generateKeyPair();
    const path = await ks.writeKey('wireguard', 'next', next, { createdAt: T0, epoch: 2 });
    expect(path).toBe(join(keysDir, 'wireguard.next.key'));
    expect(await mode(path)).toBe(0o600);
    expect((await readdir(keysDir)).sort()).toEqual([
      'wireguard.json',
      'wireguard.key',
      'wireguard.next.json',
      'wireguard.next.key',
    ]);

    const readNext = await ks.read('wireguard', 'next');
    expect(readNext?.publicKey).toBe(next.publicKey);
    expect(readNext?.epoch).toBe(2);
    expect((await ks.read('wireguard', 'current'))?.publicKey).toBe(current.publicKey);
    expect(await ks.read('ipsec', 'next')).toBeUndefined();
  });

  it('rejects a keypair whose halves do not match, writing nothing', async () => {
    const ks = store();
    const a = await generateKeyPair();
    const b = await generateKeyPair();
    const err = await rejection(
      ks.writeKey(
        'wireguard',
        'next',
        { privateKey: a.privateKey, publicKey: b.publicKey },
        { createdAt: T0, epoch: 2 },
      ),
    );
    expect(err.code).toBe('KEY_INVALID');
    expect(existsSync(join(keysDir, 'wireguard.next.key'))).toBe(false);
  });

  it('promoteNext makes the next key current and scrubs the replaced one', async () => {
    const ks = store();
    const oldKey = await ks.loadOrCreate('wireguard');
    const witness = join(stateDir, 'old-witness');
    await link(oldKey.privateKeyFile, witness); // keeps the old inode observable after promotion
    const next = await generateKeyPair();
    await ks.writeKey('wireguard', 'next', next, { createdAt: new Date('2025-04-01T00:00:00Z'), epoch: 2 });

    const promoted = await ks.promoteNext('wireguard');
    expect(promoted.publicKey).toBe(next.publicKey);
    expect(promoted.epoch).toBe(2);
    expect(promoted.privateKeyFile).toBe(join(keysDir, 'wireguard.key'));
    expect((await readdir(keysDir)).sort()).toEqual(['wireguard.json', 'wireguard.key']);
    expect(await readFile(witness)).toEqual(Buffer.alloc(45));

    const reloaded = await store().loadOrCreate('wireguard');
    expect(reloaded.publicKey).toBe(next.publicKey);
    expect(reloaded.epoch).toBe(2);
    expect(reloaded.createdAt.toISOString()).toBe('2025-04-01T00:00:00.000Z');
    expect(reloaded.warnings).toEqual([]);
  });

  it('promoteNext without a next key fails and changes nothing', async () => {
    const ks = store();
    const k = await ks.loadOrCreate('wireguard');
    const err = await rejection(ks.promoteNext('wireguard'));
    expect(err.code).toBe('KEYSTORE_IO');
    expect(err.message).toContain('no next wireguard key to promote');
    expect((await ks.read('wireguard', 'current'))?.publicKey).toBe(k.publicKey);
  });

  it('completes a promotion interrupted between the key and the metadata rename', async () => {
    const ks = store();
    await ks.loadOrCreate('wireguard');
    const next = await generateKeyPair();
    await ks.writeKey('wireguard', 'next', next, { createdAt: T0, epoch: 3 });
    // Simulate a crash after the first rename of promoteNext.
    await rename(join(keysDir, 'wireguard.next.key'), join(keysDir, 'wireguard.key'));
    const k = await store().loadOrCreate('wireguard');
    expect(k.publicKey).toBe(next.publicKey);
    expect(k.epoch).toBe(3);
    expect(k.warnings).toHaveLength(1);
    expect(k.warnings[0]).toContain('completed an interrupted key promotion');
    expect((await readdir(keysDir)).sort()).toEqual(['wireguard.json', 'wireguard.key']);
  });

  it('writeKey over an existing slot scrubs the previous key file', async () => {
    const ks = store();
    await ks.writeKey('wireguard', 'next', await generateKeyPair(), { createdAt: T0, epoch: 2 });
    const witness = join(stateDir, 'next-witness');
    await link(join(keysDir, 'wireguard.next.key'), witness);
    const replacement = await generateKeyPair();
    await ks.writeKey('wireguard', 'next', replacement, { createdAt: T0, epoch: 2 });
    expect(await readFile(witness)).toEqual(Buffer.alloc(45));
    expect((await ks.read('wireguard', 'next'))?.publicKey).toBe(replacement.publicKey);
    expect((await readdir(keysDir)).sort()).toEqual(['wireguard.next.json', 'wireguard.next.key']);
  });

  it('erase overwrites the key file with zeros, then removes it and its metadata', async () => {
    const ks = store();
    const k = await ks.loadOrCreate('wireguard');
    const witness = join(stateDir, 'erase-witness');
    await link(k.privateKeyFile, witness);
    expect(await ks.erase('wireguard', 'current')).toBe(true);
    expect(await readFile(witness)).toEqual(Buffer.alloc(45));
    expect(await readdir(keysDir)).toEqual([]);
    expect(await ks.erase('wireguard', 'current')).toBe(false);
    // A fresh start now generates a different key.
    const fresh = await store().loadOrCreate('wireguard');
    expect(fresh.created).toBe(true);
    expect(fresh.publicKey).not.toBe(k.publicKey);
  });
});

describe('compatibility with wireguard-tools', () => {
  const wgPath = ['/usr/bin/wg', '/usr/local/bin/wg', '/bin/wg'].find((p) => existsSync(p));
  const itWithWg = wgPath === undefined ? it.skip : it;

  itWithWg('`wg pubkey` reads the stored key file and derives the same public key', async () => {
    await sodiumReady();
    const k = await store().loadOrCreate('wireguard');
    const content = await readFile(k.privateKeyFile);
    const pub = await new Promise<string>((resolve, reject) => {
      const child = execFile(wgPath ?? 'wg', ['pubkey'], { env: { LC_ALL: 'C' }, timeout: 5000 }, (err, stdout) => {
        if (err) reject(err);
        else resolve(stdout);
      });
      child.stdin?.end(content);
    });
    expect(pub).toBe(`${k.publicKey}\n`);
  });
});
