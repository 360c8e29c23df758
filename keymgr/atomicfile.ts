/**
 * Crash-safe file primitives for secrets: write to a temporary file (O_EXCL, 0600) in the same
 * directory, fsync, rename or link into place, fsync the directory; overwrite a secret with
 * zeros before unlinking it. Zeroing is best effort: copy-on-write filesystems keep old blocks.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { link, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { SealnetError } from '../common/errors.js';

/** Mode of every file the key store writes. */
export const FILE_MODE = 0o600;

/** Node's errno code of an fs error, if any. */
export function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

/** A `KEYSTORE_IO` error naming the action, the path and the errno code. */
export function ioError(action: string, path: string, cause: unknown): SealnetError {
  const code = errnoCode(cause);
  return new SealnetError('KEYSTORE_IO', `${action} ${path}${code === undefined ? '' : ` (${code})`}`, { cause });
}

/** Random hex for temporary file names. */
export function randomSuffix(): string {
  return randomBytes(6).toString('hex');
}

/** fsyncs a directory so renames and unlinks in it are durable. */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
    await fh.sync();
  } catch (err) {
    throw ioError('cannot fsync directory', dir, err);
  } finally {
    await fh?.close();
  }
}

/** Overwrites a file's bytes with zeros, fsyncs and unlinks it. Missing files are fine. */
export async function scrubAndUnlink(path: string): Promise<boolean> {
  let fh: FileHandle;
  try {
    fh = await open(path, fsc.O_WRONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    if (errnoCode(err) !== 'ELOOP') throw ioError('cannot open for erasing', path, err);
    // A symlink is never followed: remove the link itself, not what it points at.
    await unlinkIfPresent(path);
    return true;
  }
  try {
    const st = await fh.stat();
    if (st.isFile() && st.size > 0) {
      await fh.write(new Uint8Array(st.size), 0, st.size, 0);
      await fh.sync();
    }
  } catch (err) {
    throw ioError('cannot overwrite', path, err);
  } finally {
    await fh.close();
  }
  await unlinkIfPresent(path);
  return true;
}

/** Unlinks a file; returns false if it did not exist. */
export async function unlinkIfPresent(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw ioError('cannot remove', path, err);
  }
}

/** How {@link writeAtomic} puts the temporary file in place. */
export type Placement =
  /** rename over the target; a previous target holding a secret is scrubbed afterwards. */
  | { readonly how: 'replace'; readonly secret: boolean }
  /** link to the target only if it does not exist (atomic create-if-absent). */
  | { readonly how: 'create' };

/**
 * Writes `data` to `dir/name` atomically: temp file (O_EXCL, 0600) in the same directory,
 * write, fsync, rename or link into place, fsync the directory. Returns false only for
 * `create` when the target already existed (nothing was changed).
 */
export async function writeAtomic(dir: string, name: string, data: Uint8Array, placement: Placement): Promise<boolean> {
  const target = join(dir, name);
  const tmp = join(dir, `.${name}.tmp-${randomSuffix()}`);
  try {
    const fh = await open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, FILE_MODE);
    try {
      await fh.chmod(FILE_MODE); // the umask may have removed bits; set exactly 0600
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    await scrubAndUnlink(tmp).catch(() => false);
    throw ioError('cannot write', tmp, err);
  }

  if (placement.how === 'create') {
    try {
      await link(tmp, target);
    } catch (err) {
      await scrubAndUnlink(tmp).catch(() => false);
      if (errnoCode(err) === 'EEXIST') return false;
      throw ioError('cannot create', target, err);
    }
    // The target now names the same inode: drop the temporary name only (no scrubbing).
    await unlinkIfPresent(tmp);
    await fsyncDir(dir);
    return true;
  }

  // Keep a second name for the previous secret so its bytes can be scrubbed after the switch.
  let old: string | undefined;
  if (placement.secret) {
    old = join(dir, `.${name}.old-${randomSuffix()}`);
    try {
      await link(target, old);
    } catch (err) {
      old = undefined;
      if (errnoCode(err) !== 'ENOENT') {
        await scrubAndUnlink(tmp).catch(() => false);
        throw ioError('cannot keep previous file', target, err);
      }
    }
  }
  try {
    await rename(tmp, target);
  } catch (err) {
    await scrubAndUnlink(tmp).catch(() => false);
    if (old !== undefined) await unlinkIfPresent(old).catch(() => false);
    throw ioError('cannot rename into place', target, err);
  }
  await fsyncDir(dir);
  if (old !== undefined) {
    await scrubAndUnlink(old);
    await fsyncDir(dir);
  }
  return true;
}

/**
 * Reads a small state file as UTF-8, refusing symlinks (O_NOFOLLOW) and anything over
 * `maxBytes`; undefined when it does not exist.
 * @throws SealnetError `KEYSTORE_IO` naming `what` and the path (unreadable, a symlink, too large).
 */
export async function readBounded(path: string, maxBytes: number, what: string): Promise<string | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw ioError(`cannot read ${what}`, path, err);
  }
  try {
    const buf = Buffer.alloc(maxBytes + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    if (bytesRead > maxBytes) throw ioError(`${what} file is larger than ${maxBytes} bytes:`, path, undefined);
    return buf.subarray(0, bytesRead).toString('utf8');
  } catch (err) {
    if (err instanceof SealnetError) throw err;
    throw ioError(`cannot read ${what}`, path, err);
  } finally {
    await fh.close();
  }
}
