/**
 * A small public state file in the state directory (0600, atomic replace: a crash leaves the old
 * or the new content, never a torn one), read with a size bound and without following a symlink.
 * The caller's codec decides what the text means; nothing here may hold key material.
 */
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ioError, readBounded, writeAtomic } from './atomicfile.js';

/** Reads and replaces `<stateDir>/<name>`. */
export class StateTextFile {
  readonly dir: string;
  readonly path: string;
  private readonly name: string;
  private readonly maxBytes: number;

  constructor(stateDir: string, opts: { readonly name: string; readonly maxBytes: number }) {
    this.dir = resolve(stateDir);
    this.name = opts.name;
    this.path = join(this.dir, opts.name);
    this.maxBytes = opts.maxBytes;
  }

  /**
   * The file's text; undefined when there is none.
   * @throws SealnetError `KEYSTORE_IO` (unreadable, a symlink, larger than the bound).
   */
  read(): Promise<string | undefined> {
    return readBounded(this.path, this.maxBytes, this.name);
  }

  /** Replaces the content atomically (temp file 0600, fsync, rename, fsync of the directory). */
  async write(text: string): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw ioError('cannot create state directory', this.dir, err);
    }
    await writeAtomic(this.dir, this.name, new TextEncoder().encode(text), { how: 'replace', secret: false });
  }
}
