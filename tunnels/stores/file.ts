/**
 * The `file` node store: a directory with one Kubernetes-shaped JSON document per node
 * (`<name>.json`). Local agents share it (demo, namespace tests). Each agent only ever rewrites
 * its own document, atomically (temp file + rename); the "control plane" (the test harness)
 * creates and deletes documents.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, rename, stat, writeFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ANNOTATION_PREFIX } from '../../common/constants.js';
import { SealnetError } from '../../common/errors.js';
import type { RawNode } from '../ports/model.js';
import type { NodeStore, NodeStoreEvents } from '../ports/index.js';
import { rawNodeFromDoc } from './nodedoc.js';

/** Options for {@link FileNodeStore}. */
export interface FileNodeStoreOptions {
  readonly dir: string;
  /**
   * Full rescan interval while inotify works: only a safety net, since each inotify event names
   * the one document to re-read (default 30 s; a full rescan stats every document).
   */
  readonly pollMs?: number;
  /**
   * Interval of the cheap check (default 2 s): the directory's inode and mtime, and a full
   * rescan when either changed (every writer renames documents into place, which changes the
   * directory's mtime; a directory replaced or moved back changes the inode or mtime). When the
   * directory cannot be watched, a full rescan at this interval instead.
   */
  readonly unwatchedPollMs?: number;
}

interface Entry {
  readonly mtimeMs: number;
  readonly size: number;
  readonly ino: number;
  readonly node: RawNode | undefined;
}

/** File-directory node store. */
export class FileNodeStore implements NodeStore {
  private readonly dir: string;
  private readonly pollMs: number;
  private readonly entries = new Map<string, Entry>();
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  /** The directory as the last full scan saw it (inode, mtime). */
  private dirIno: number | undefined;
  private dirMtimeMs: number | undefined;
  private events: NodeStoreEvents | undefined;
  private isSynced = false;
  private readonly unwatchedPollMs: number;
  private scanning: Promise<void> | undefined;
  /** Documents named by inotify events since the last scan; `fullScan` when one had no name. */
  private readonly pending = new Set<string>();
  private fullScan = false;
  /** {@link list}'s sorted result, until the next change. */
  private sorted: readonly RawNode[] | undefined;
  /** Errors already reported per file, so a broken document is logged once, not every poll. */
  private readonly reported = new Map<string, string>();
  /**
   * Patches run one at a time: each is a read-modify-write of a document through one temp file,
   * and the agent patches from two places (reconciler, status publisher). Concurrent ones wrote
   * into the same temp file (a torn document) and lost each other's changes.
   */
  private patching: Promise<unknown> = Promise.resolve();

  constructor(opts: FileNodeStoreOptions) {
    this.dir = opts.dir;
    this.pollMs = opts.pollMs ?? 30_000;
    this.unwatchedPollMs = opts.unwatchedPollMs ?? 2000;
  }

  async start(events: NodeStoreEvents): Promise<void> {
    this.events = events;
    this.startWatcher();
    this.checkTimer = setInterval(() => void this.checkDir(), this.unwatchedPollMs);
    this.timer = setInterval(() => this.queueScan(), this.pollMs);
    this.queueScan();
    await this.scanning;
  }

  /** (Re)starts the inotify watch on the directory (its current inode). */
  private startWatcher(): void {
    this.watcher?.close();
    this.watcher = undefined;
    try {
      const w = watch(this.dir, (_event, filename) =>
        this.queueScan(typeof filename === 'string' ? filename : undefined),
      );
      w.on('error', (err) => {
        this.events?.onError(
          new SealnetError(
            'STORE_IO',
            `watching ${this.dir} failed; falling back to a full rescan every ${this.unwatchedPollMs} ms`,
            { cause: err },
          ),
        );
        w.close();
        if (this.watcher === w) this.watcher = undefined;
      });
      this.watcher = w;
    } catch (err) {
      this.events?.onError(
        new SealnetError('STORE_IO', `cannot watch ${this.dir}; a full rescan every ${this.unwatchedPollMs} ms`, {
          cause: err,
        }),
      );
    }
  }

  /** The cheap periodic check: a full rescan when the directory changed (or is not watched). */
  private async checkDir(): Promise<void> {
    if (this.watcher === undefined) {
      this.queueScan();
      return;
    }
    const st = await stat(this.dir).catch(() => undefined);
    // Unavailable: keep every node as last seen; the next full rescan reports the error.
    if (st === undefined) return;
    if (st.ino !== this.dirIno || st.mtimeMs !== this.dirMtimeMs) this.queueScan();
  }

  async stop(): Promise<void> {
    this.watcher?.close();
    if (this.timer !== undefined) clearInterval(this.timer);
    if (this.checkTimer !== undefined) clearInterval(this.checkTimer);
    this.events = undefined;
    await this.scanning;
  }

  /** Sorted by name. Unchanged documents keep their RawNode object from one list to the next. */
  /** The directory of Node documents. */
  get directory(): string {
    return this.dir;
  }

  list(): readonly RawNode[] {
    this.sorted ??= [...this.entries.values()]
      .flatMap((e) => (e.node === undefined ? [] : [e.node]))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
    return this.sorted;
  }

  synced(): boolean {
    return this.isSynced;
  }

  /** Re-reads `file` (an inotify event named it), or every document when no file is given. */
  private queueScan(file?: string): void {
    if (file === undefined) this.fullScan = true;
    else if (file.endsWith('.json') && !file.startsWith('.')) this.pending.add(file);
    else return; // temp and lock files
    if (this.scanning !== undefined) return;
    this.scanning = this.scan()
      .catch((err: unknown) =>
        this.events?.onError(new SealnetError('STORE_IO', `reading node store ${this.dir} failed`, { cause: err })),
      )
      .finally(() => {
        this.scanning = undefined;
        if (this.fullScan) this.queueScan();
        else if (this.pending.size > 0) this.queueScan([...this.pending][0]);
      });
  }

  private async scan(): Promise<void> {
    const files = [...this.pending];
    this.pending.clear();
    const wantFull = this.fullScan;
    // Cleared before anything can fail: a failed scan is not retried at once (that was a tight
    // loop of errors during an outage) but by the 2 s directory check once the directory is
    // back and differs from what the last full scan saw, or by the periodic full rescan.
    this.fullScan = false;
    // The directory first: gone or unreadable (the store is unavailable) is an error that keeps
    // every node as last seen, never "every document was deleted". Replaced by another directory
    // (another inode): read it all, and watch the new one.
    const dir = await stat(this.dir);
    const full = wantFull || dir.ino !== this.dirIno;
    let changed = false;
    if (full) {
      if (this.dirIno !== undefined && dir.ino !== this.dirIno) this.startWatcher();
      this.dirIno = dir.ino;
      this.dirMtimeMs = dir.mtimeMs;
      const names = (await readdir(this.dir)).filter((n) => n.endsWith('.json') && !n.startsWith('.'));
      const present = new Set(names);
      for (const file of [...this.entries.keys()]) {
        if (!present.has(file)) {
          this.entries.delete(file);
          this.reported.delete(file);
          changed = true;
        }
      }
      // stat() in parallel batches: one at a time, 5,000 documents take a second.
      for (let i = 0; i < names.length; i += 64) {
        const results = await Promise.all(names.slice(i, i + 64).map((f) => this.refresh(f)));
        changed ||= results.includes(true);
      }
    } else {
      const results = await Promise.all(files.map((f) => this.refresh(f)));
      changed = results.includes(true);
    }
    if (changed) this.sorted = undefined;
    const firstSync = !this.isSynced;
    this.isSynced = true;
    if (changed || firstSync) this.events?.onChange(this.list());
    if (firstSync) this.events?.onSynced();
  }

  /** Re-reads one document if it changed (or drops it if it is gone); true when it changed. */
  private async refresh(file: string): Promise<boolean> {
    const path = join(this.dir, file);
    let st;
    try {
      st = await stat(path);
    } catch {
      this.reported.delete(file);
      return this.entries.delete(file); // removed since the event or the readdir
    }
    const prev = this.entries.get(file);
    if (prev !== undefined && prev.mtimeMs === st.mtimeMs && prev.size === st.size && prev.ino === st.ino) return false;
    const node = await this.readDoc(file, path);
    this.entries.set(file, { mtimeMs: st.mtimeMs, size: st.size, ino: st.ino, node });
    return true;
  }

  private async readDoc(file: string, path: string): Promise<RawNode | undefined> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch {
      return undefined;
    }
    let doc: unknown;
    let problem: string | undefined;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      problem = `node document ${path} is not valid JSON (${(err as Error).message}); skipping it`;
    }
    if (problem === undefined) {
      const r = rawNodeFromDoc(doc);
      if (r.ok && `${r.node.name}.json` !== file)
        problem = `node document ${path} names node ${JSON.stringify(r.node.name)}, want the file to be named ${r.node.name}.json; skipping it`;
      else if (!r.ok) problem = `node document ${path}: ${r.error}; skipping it`;
      else {
        this.reported.delete(file);
        return r.node;
      }
    }
    if (this.reported.get(file) !== problem) {
      this.reported.set(file, problem);
      this.events?.onError(new SealnetError('STORE_IO', problem));
    }
    return undefined;
  }

  patchAnnotations(name: string, annotations: Readonly<Record<string, string | undefined>>): Promise<void> {
    const run = this.patching.then(() => this.patchNow(name, annotations));
    this.patching = run.catch(() => undefined);
    return run;
  }

  private async patchNow(name: string, annotations: Readonly<Record<string, string | undefined>>): Promise<void> {
    for (const k of Object.keys(annotations)) {
      if (!k.startsWith(ANNOTATION_PREFIX))
        throw new SealnetError(
          'INTERNAL',
          `refusing to patch annotation ${k}: agents write only ${ANNOTATION_PREFIX} keys`,
        );
    }
    const path = join(this.dir, `${name}.json`);
    // Read-modify-write under a lock file: an agent and `sealctl` (a rotation request) patch the
    // same document, and without it one of them would write back the other's old annotations.
    const release = await lockFile(join(this.dir, `.${name}.json.lock`));
    try {
      await this.patchLocked(name, path, annotations);
    } finally {
      await release();
    }
    this.queueScan();
  }

  private async patchLocked(
    name: string,
    path: string,
    annotations: Readonly<Record<string, string | undefined>>,
  ): Promise<void> {
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new SealnetError('STORE_IO', `cannot patch node ${name}: ${path} is missing or unreadable`, { cause: err });
    }
    const meta = (doc.metadata ?? {}) as Record<string, unknown>;
    const current = { ...((meta.annotations ?? {}) as Record<string, string>) };
    for (const [k, v] of Object.entries(annotations)) {
      if (v === undefined) delete current[k];
      else current[k] = v;
    }
    doc.metadata = { ...meta, annotations: current };
    const tmp = join(this.dir, `.${name}.json.${process.pid}.tmp`);
    try {
      await writeFile(tmp, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o644 });
      await rename(tmp, path);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw new SealnetError('STORE_IO', `cannot write node document ${path}`, { cause: err });
    }
  }
}

/** A lock held longer than this belongs to a writer that died: it is taken over. */
const STALE_LOCK_MS = 10_000;

/**
 * Takes an exclusive lock file (O_EXCL create), waiting up to 5 s for another writer; returns
 * its release. Only documents in the store directory are ever locked this way.
 */
async function lockFile(path: string): Promise<() => Promise<void>> {
  const deadline = Date.now() + 5000;
  for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: 'wx', mode: 0o644 });
      return () => unlink(path).catch(() => undefined);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST')
        throw new SealnetError('STORE_IO', `cannot create lock ${path}`, { cause: err });
    }
    const st = await stat(path).catch(() => undefined);
    if (st !== undefined && Date.now() - st.mtimeMs > STALE_LOCK_MS) await unlink(path).catch(() => undefined);
    if (Date.now() > deadline)
      throw new SealnetError('STORE_IO', `node document is locked by another writer for 5 s: ${path}`);
    await new Promise((r) => setTimeout(r, delay + Math.random() * delay));
  }
}
