/**
 * Loads `steer.o`, pins its maps and programs under the pin directory (so they outlive the
 * agent), and attaches the programs with tc (clsact). `bpftool` and `tc` are spawned through
 * common/spawn.ts: these are rare, start-up-time operations.
 *
 * Pin layout (all under `pinDir`, default /sys/fs/bpf/sealnet):
 *   maps_v1/sealnet_{remote,exempt,config,counters}   the maps; created once, then only adopted
 *   prog_<sha256 of steer.o>/sealnet_{egress,...}      programs of one build, bound to maps_v1
 *   tmp_*                                              a load in progress (removed at start-up)
 * Directories appear by rename, so a crash never leaves a half-filled maps_v1 or prog_ dir.
 * (bpffs refuses names containing a dot with EPERM, hence tmp_ rather than .tmp.)
 *
 * Ownership on a device: kind bpf, pref TC_PRIORITY, handle TC_HANDLE, program name
 * `sealnet_*` (or, where tc cannot name it, a program id pinned under pinDir). Attaching is `tc filter replace` on that slot: cls_bpf swaps the program in place
 * (RCU), so there is no moment without a classifier. Detaching deletes that slot only.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, statfs } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BPF_MAPS_SUBDIR,
  BPF_MAP_NAMES,
  BPF_PIN_DIR,
  BPF_PROGS_PREFIX,
  BPF_PROG_NAMES,
  TC_HANDLE,
  TC_PRIORITY,
} from '../../common/constants.js';
import { SealnetError } from '../../common/errors.js';
import type { SteeringAttachment } from '../../tunnels/ports/index.js';
import { run } from '../../common/spawn.js';
import { BPF_ERROR_CODE } from './syscall.js';

/** `statfs` magic of bpffs. */
const BPF_FS_MAGIC = 0xcafe4a11;
const OBJECT_FILE = path.join('.cache', 'bpf', 'steer.o');
const TOOL_TIMEOUT_MS = 30_000;

/** Where the loader finds its tools and files. */
export interface LoaderOptions {
  /** bpffs directory (default {@link BPF_PIN_DIR}). Its parent must be a bpffs mount. */
  readonly pinDir?: string;
  /** Built object (default `$SEALNET_BPF_OBJECT`, else `.cache/bpf/steer.o` above this module). */
  readonly objectPath?: string;
  readonly bpftool?: string;
  readonly tc?: string;
}

/** A sealnet classifier found on a device. */
export interface ObservedAttachment extends SteeringAttachment {
  readonly progId: number;
  readonly progName: string;
  readonly progTag: string;
}

/** Finds the built object: `$SEALNET_BPF_OBJECT`, else `.cache/bpf/steer.o` above this module. */
export function defaultObjectPath(): string {
  const fromEnv = process.env['SEALNET_BPF_OBJECT'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, OBJECT_FILE);
    if (existsSync(candidate)) return candidate;
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new SealnetError('KERNEL_FEATURE_MISSING', `BPF object ${OBJECT_FILE} not found; run scripts/build-bpf.sh`);
}

/** tc's direction for a hook. */
function direction(hook: SteeringAttachment['hook']): 'egress' | 'ingress' {
  return hook === 'egress' ? 'egress' : 'ingress';
}

/** The part of `tc -j filter show` output the loader reads. */
interface TcFilter {
  readonly kind?: string;
  readonly pref?: number;
  readonly options?: {
    readonly handle?: string;
    readonly prog?: { readonly id?: number; readonly name?: string; readonly tag?: string };
  };
}

/** Pins, loads and attaches the steering program. Holds no kernel state of its own. */
export class BpfLoader {
  readonly pinDir: string;
  readonly mapsDir: string;
  readonly #objectPath: string | undefined;
  readonly #bpftool: string;
  readonly #tc: string;

  constructor(opts: LoaderOptions = {}) {
    this.pinDir = opts.pinDir ?? BPF_PIN_DIR;
    this.mapsDir = path.join(this.pinDir, BPF_MAPS_SUBDIR);
    this.#objectPath = opts.objectPath;
    this.#bpftool = opts.bpftool ?? 'bpftool';
    this.#tc = opts.tc ?? 'tc';
  }

  get objectPath(): string {
    return this.#objectPath ?? defaultObjectPath();
  }

  /**
   * Checks that the pin directory's parent is bpffs, creates the pin directory, and removes
   * leftovers of an interrupted load. Does not mount anything.
   */
  async preparePinDir(): Promise<void> {
    const parent = path.dirname(this.pinDir);
    let type: number;
    try {
      type = (await statfs(parent)).type;
    } catch (err) {
      throw new SealnetError('KERNEL_FEATURE_MISSING', `cannot stat ${parent} (bpffs expected)`, { cause: err });
    }
    if (type !== BPF_FS_MAGIC) {
      throw new SealnetError(
        'KERNEL_FEATURE_MISSING',
        `${parent} is not a bpffs mount (statfs type 0x${type.toString(16)}); mount it with: mount -t bpf bpf ${parent}`,
      );
    }
    await mkdir(this.pinDir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.pinDir)) {
      if (name.startsWith('tmp_')) await rm(path.join(this.pinDir, name), { recursive: true, force: true });
    }
  }

  /** True when all four maps are pinned. */
  mapsPinned(): boolean {
    return Object.values(BPF_MAP_NAMES).every((n) => existsSync(path.join(this.mapsDir, n)));
  }

  /** Directory of this build's programs: `prog_<16 hex of sha256(object)>`. */
  async programDir(): Promise<string> {
    const digest = createHash('sha256')
      .update(await readFile(this.objectPath))
      .digest('hex')
      .slice(0, 16);
    return path.join(this.pinDir, `${BPF_PROGS_PREFIX}${digest}`);
  }

  /**
   * Makes the maps and this build's programs exist. New maps are created by the same load as
   * the programs (then their config element is all zero, which the program reads as
   * fail-closed). Existing maps are reused as they are, entries included. Programs already
   * pinned for this build and bound to the current maps are reused.
   */
  async ensureLoaded(): Promise<{ mapsCreated: boolean; programsLoaded: boolean; programDir: string }> {
    const progDir = await this.programDir();
    const mapsCreated = !this.mapsPinned();
    if (!mapsCreated && existsSync(progDir) && (await this.#boundToCurrentMaps(progDir))) {
      return { mapsCreated: false, programsLoaded: false, programDir: progDir };
    }
    const tmp = path.join(this.pinDir, `tmp_${randomBytes(6).toString('hex')}`);
    const tmpProgs = path.join(tmp, 'progs');
    const tmpMaps = path.join(tmp, 'maps');
    await mkdir(tmp, { mode: 0o700 });
    try {
      const args = ['prog', 'loadall', this.objectPath, tmpProgs, 'type', 'classifier'];
      if (mapsCreated) {
        args.push('pinmaps', tmpMaps);
      } else {
        for (const name of Object.values(BPF_MAP_NAMES))
          args.push('map', 'name', name, 'pinned', path.join(this.mapsDir, name));
      }
      await this.#bpftoolRun(args);
      if (mapsCreated) await rename(tmpMaps, this.mapsDir);
      await rm(progDir, { recursive: true, force: true });
      await rename(tmpProgs, progDir);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    return { mapsCreated, programsLoaded: true, programDir: progDir };
  }

  /** True when the programs pinned in `dir` use exactly the maps pinned in maps_v1. */
  async #boundToCurrentMaps(dir: string): Promise<boolean> {
    try {
      const prog = JSON.parse(
        (await this.#bpftoolRun(['-j', 'prog', 'show', 'pinned', path.join(dir, BPF_PROG_NAMES.egress)])).stdout,
      ) as { map_ids?: number[] };
      const ids = new Set(prog.map_ids ?? []);
      for (const name of Object.values(BPF_MAP_NAMES)) {
        const map = JSON.parse(
          (await this.#bpftoolRun(['-j', 'map', 'show', 'pinned', path.join(this.mapsDir, name)])).stdout,
        ) as { id?: number };
        if (map.id === undefined || !ids.has(map.id)) return false;
      }
      return true;
    } catch {
      return false;
    }
  }

  /** Removes program directories of other builds (their attachments hold their own refs). */
  async pruneOtherPrograms(keep: string): Promise<string[]> {
    const removed: string[] = [];
    for (const name of await readdir(this.pinDir)) {
      const full = path.join(this.pinDir, name);
      if (!name.startsWith(BPF_PROGS_PREFIX) || full === keep) continue;
      await rm(full, { recursive: true, force: true });
      removed.push(name);
    }
    return removed;
  }

  /**
   * Attaches this build's program for `a.hook` on `a.dev`: adds clsact if the device has none,
   * then `tc filter replace` on sealnet's slot. Refuses to overwrite a foreign classifier that
   * sits in that slot.
   */
  async attach(a: SteeringAttachment, programDir: string): Promise<'added' | 'replaced' | 'unchanged'> {
    const progPath = path.join(programDir, BPF_PROG_NAMES[a.hook]);
    const want = JSON.parse((await this.#bpftoolRun(['-j', 'prog', 'show', 'pinned', progPath])).stdout) as {
      id: number;
    };
    await this.#ensureClsact(a.dev);
    const slot = await this.#slot(a.dev, direction(a.hook));
    if (slot !== undefined && (await this.#owned(slot)) === undefined) {
      throw new SealnetError(
        BPF_ERROR_CODE,
        `tc ${direction(a.hook)} slot pref ${TC_PRIORITY} handle 0x${TC_HANDLE.toString(16)} on ${a.dev} holds a program sealnet did not load (${slot.options?.prog?.name ?? 'unknown'}); not replacing it`,
      );
    }
    if (slot?.options?.prog?.id === want.id) return 'unchanged';
    await this.#tcRun([
      'filter',
      'replace',
      'dev',
      a.dev,
      direction(a.hook),
      'protocol',
      'all',
      'pref',
      String(TC_PRIORITY),
      'handle',
      `0x${TC_HANDLE.toString(16)}`,
      'bpf',
      'direct-action',
      'object-pinned',
      progPath,
    ]);
    return slot === undefined ? 'added' : 'replaced';
  }

  /** Deletes sealnet's classifier from `a.dev`/`a.hook` if present; true if it removed one. */
  async detach(a: SteeringAttachment): Promise<boolean> {
    const slot = await this.#slot(a.dev, direction(a.hook));
    if (slot === undefined || (await this.#owned(slot)) === undefined) return false;
    await this.#tcRun([
      'filter',
      'del',
      'dev',
      a.dev,
      direction(a.hook),
      'protocol',
      'all',
      'pref',
      String(TC_PRIORITY),
      'handle',
      `0x${TC_HANDLE.toString(16)}`,
      'bpf',
    ]);
    return true;
  }

  /** sealnet's classifiers on `dev` (both directions). */
  async attachments(dev: string): Promise<ObservedAttachment[]> {
    const out: ObservedAttachment[] = [];
    for (const dir of ['egress', 'ingress'] as const) {
      const slot = await this.#slot(dev, dir);
      const owned = slot === undefined ? undefined : await this.#owned(slot);
      if (owned === undefined) continue;
      const hook =
        dir === 'egress' ? 'egress' : BPF_PROG_NAMES.from_pod.startsWith(owned.name) ? 'from_pod' : 'ingress';
      out.push({ dev, hook, progId: slot?.options?.prog?.id ?? 0, progName: owned.name, progTag: owned.tag });
    }
    return out;
  }

  /** Removes every pin (maps and programs). Uninstall only: counters and entries are lost. */
  async removePins(): Promise<void> {
    await rm(this.pinDir, { recursive: true, force: true });
  }

  async #ensureClsact(dev: string): Promise<void> {
    const qdiscs = JSON.parse((await this.#tcRun(['-j', 'qdisc', 'show', 'dev', dev])).stdout || '[]') as {
      kind?: string;
    }[];
    if (qdiscs.some((q) => q.kind === 'clsact')) return;
    if (qdiscs.some((q) => q.kind === 'ingress')) {
      throw new SealnetError(
        BPF_ERROR_CODE,
        `${dev} has an "ingress" qdisc, which excludes clsact; sealnet will not remove another tool's qdisc`,
      );
    }
    await this.#tcRun(['qdisc', 'add', 'dev', dev, 'clsact']);
  }

  /**
   * Name and tag of the program in sealnet's slot if sealnet loaded it, else undefined. tc names
   * a program only when it may open it by id (BPF_PROG_GET_FD_BY_ID needs CAP_SYS_ADMIN): in the
   * agent's container (NET_ADMIN and BPF only) it prints the id alone, so the id is matched
   * against the programs pinned under pinDir, which bpftool opens by path with CAP_BPF.
   * Without that, an agent restarted after a crash took its own classifier for a foreign one.
   */
  async #owned(slot: TcFilter): Promise<{ name: string; tag: string } | undefined> {
    const prog = slot.options?.prog;
    if (prog?.name !== undefined) return isOurs(slot) ? { name: prog.name, tag: prog.tag ?? '' } : undefined;
    if (prog?.id === undefined) return undefined;
    return (await this.#pinnedPrograms()).get(prog.id);
  }

  /** Programs pinned under pinDir (every build's prog_ directory), by kernel id. */
  async #pinnedPrograms(): Promise<Map<number, { name: string; tag: string }>> {
    const out = new Map<number, { name: string; tag: string }>();
    let dirs: string[];
    try {
      dirs = (await readdir(this.pinDir)).filter((d) => d.startsWith(BPF_PROGS_PREFIX));
    } catch {
      return out;
    }
    for (const d of dirs) {
      for (const name of Object.values(BPF_PROG_NAMES)) {
        const pinned = path.join(this.pinDir, d, name);
        if (!existsSync(pinned)) continue;
        const info = JSON.parse((await this.#bpftoolRun(['-j', 'prog', 'show', 'pinned', pinned])).stdout) as {
          id?: number;
          name?: string;
          tag?: string;
        };
        if (info.id !== undefined) out.set(info.id, { name: info.name ?? name, tag: info.tag ?? '' });
      }
    }
    return out;
  }

  /** The classifier in sealnet's slot, or undefined. */
  async #slot(dev: string, dir: 'egress' | 'ingress'): Promise<TcFilter | undefined> {
    const filters = JSON.parse(
      (await this.#tcRun(['-j', 'filter', 'show', 'dev', dev, dir])).stdout || '[]',
    ) as TcFilter[];
    // tc prints a header object per priority, then one object per filter (with options).
    return filters.find(
      (f) =>
        f.kind === 'bpf' &&
        f.pref === TC_PRIORITY &&
        f.options?.handle !== undefined &&
        parseInt(f.options.handle, 16) === TC_HANDLE,
    );
  }

  #bpftoolRun(args: string[]): Promise<{ stdout: string; stderr: string }> {
    return run(this.#bpftool, args, { timeoutMs: TOOL_TIMEOUT_MS });
  }

  #tcRun(args: string[]): Promise<{ stdout: string; stderr: string }> {
    return run(this.#tc, args, { timeoutMs: TOOL_TIMEOUT_MS });
  }
}

function isOurs(f: TcFilter): boolean {
  return (f.options?.prog?.name ?? '').startsWith('sealnet_');
}
