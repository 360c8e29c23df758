/**
 * The rotation state file, `<stateDir>/rotation.json` (0600, atomic replace: a crash leaves the
 * old or the new state, never a torn one). The content is public (no key material); the codec
 * is pure and lives in `rotation.ts`.
 */
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ioError, readBounded, writeAtomic } from './atomicfile.js';
import { decodeRotationState, encodeRotationState, INITIAL_ROTATION_STATE, type RotationState } from './rotation.js';

/** Name of the state file inside the state directory. */
export const ROTATION_STATE_FILE = 'rotation.json';

const MAX_BYTES = 64 * 1024;

/** Result of {@link RotationStateFile.read}. */
export interface ReadState {
  readonly state: RotationState;
  /** False when there was no file (a node that never rotated). */
  readonly found: boolean;
  readonly warnings: readonly string[];
}

/** Reads and writes the rotation state of one agent. */
export class RotationStateFile {
  readonly dir: string;
  readonly path: string;

  constructor(stateDir: string) {
    this.dir = resolve(stateDir);
    this.path = join(this.dir, ROTATION_STATE_FILE);
  }

  /**
   * The persisted state; the initial state if there is none. A file that cannot be decoded is
   * not guessed at: the error names the file and what to do.
   * @throws SealnetError `KEYSTORE_IO`.
   */
  async read(now: number): Promise<ReadState> {
    const text = await readBounded(this.path, MAX_BYTES, 'rotation state');
    if (text === undefined) return { state: INITIAL_ROTATION_STATE, found: false, warnings: [] };
    const r = decodeRotationState(text, now);
    if (!r.ok) {
      throw ioError(
        `rotation state is unusable (${r.error}); fix or remove the file (removing it forgets a rotation in progress):`,
        this.path,
        undefined,
      );
    }
    return { state: r.state, found: true, warnings: r.warnings };
  }

  /** Replaces the state atomically (temp file, fsync, rename, fsync of the directory). */
  async write(state: RotationState): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw ioError('cannot create state directory', this.dir, err);
    }
    await writeAtomic(this.dir, ROTATION_STATE_FILE, new TextEncoder().encode(encodeRotationState(state)), {
      how: 'replace',
      secret: false,
    });
  }
}
