/**
 * The `bpf()` map commands, through the Node-API addon in `routing/bpf/addon/` (built by
 * `scripts/build-addons.sh` into `routing/bpf/addon/build/Release/`). Chosen over spawning
 * `bpftool` by measurement (routing/bpf/README.md). Calls are synchronous and short; errors
 * become `SealnetError`s naming the operation, the pin path and the errno.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SealnetError } from '../../common/errors.js';

/** What `BPF_OBJ_GET_INFO_BY_FD` says about a map. */
export interface MapInfo {
  readonly id: number;
  /** `enum bpf_map_type` (2 array, 6 per-CPU array, 11 LPM trie). */
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  readonly name: string;
}

/** The addon's exports (see addon/sealnet_bpf.c). */
export interface BpfAddon {
  objGet(path: string): number;
  close(fd: number): void;
  mapInfo(fd: number): MapInfo;
  lookup(fd: number, key: Buffer, valueSize: number): Buffer | undefined;
  updateMany(fd: number, keys: Buffer, values: Buffer, keySize: number, valueSize: number, flags: number): number;
  deleteMany(fd: number, keys: Buffer, keySize: number): number;
  dump(fd: number, keySize: number, valueSize: number): { keys: Buffer; values: Buffer; count: number };
  /** prctl(PR_SET_DUMPABLE, 0) on this process; PR_GET_DUMPABLE afterwards, or -errno. */
  noDump(): number;
}

/**
 * Turns this process's "dumpable" flag off (prctl PR_SET_DUMPABLE 0): no core file, no ptrace
 * attach or /proc/<pid>/mem for anyone without CAP_SYS_PTRACE — the agent's heap holds key
 * material. Reset by execve, so the tools the agent spawns are not affected.
 * @throws SealnetError `KERNEL_FEATURE_MISSING` when the flag did not go to 0.
 */
export function disableDumpable(addon: Pick<BpfAddon, 'noDump'> = loadAddon()): void {
  const now = addon.noDump();
  if (now !== 0)
    throw new SealnetError(
      'KERNEL_FEATURE_MISSING',
      now < 0 ? `prctl(PR_SET_DUMPABLE, 0) failed with errno ${-now}` : `the dumpable flag is still ${now}`,
    );
}

/** `BPF_ANY`: create or replace. */
export const BPF_ANY = 0;
/** Map types sealnet uses. */
export const MAP_TYPE = { array: 2, percpuArray: 6, lpmTrie: 11 } as const;

const ADDON_FILE = path.join('routing', 'bpf', 'addon', 'build', 'Release', 'sealnet_bpf.node');

/**
 * Finds the built addon: `$SEALNET_BPF_ADDON`, else `routing/bpf/addon/build/Release/
 * sealnet_bpf.node` under the nearest ancestor of this module that has it (works from the
 * sources under ts-jest and from dist/).
 */
export function addonPath(): string {
  const fromEnv = process.env['SEALNET_BPF_ADDON'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, ADDON_FILE);
    if (existsSync(candidate)) return candidate;
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new SealnetError(
    'KERNEL_FEATURE_MISSING',
    `BPF map addon ${ADDON_FILE} not found above ${path.dirname(fileURLToPath(import.meta.url))}; run scripts/build-addons.sh`,
  );
}

/** Loads the addon once per call site (no module-level cache: callers keep the handle). */
export function loadAddon(file: string = addonPath()): BpfAddon {
  const require = createRequire(import.meta.url);
  try {
    return require(file) as BpfAddon;
  } catch (err) {
    throw new SealnetError('KERNEL_FEATURE_MISSING', `cannot load BPF map addon ${file}`, { cause: err });
  }
}

/**
 * Error code for failed bpf() calls. common/errors.ts has no BPF code yet; kernel-object
 * failures share NETLINK_FAILED until one is added (the message always says "BPF").
 */
export const BPF_ERROR_CODE = 'NETLINK_FAILED' as const;

/** Wraps an addon failure: the message names what was done to which pinned map, and the errno. */
export function bpfError(what: string, pinPath: string, err: unknown): SealnetError {
  const code = (err as { code?: unknown }).code;
  return new SealnetError(BPF_ERROR_CODE, `BPF ${what} on ${pinPath}: ${typeof code === 'string' ? code : 'error'}`, {
    cause: err,
  });
}

/** A pinned map opened by path; close it when done. */
export class PinnedMap {
  readonly path: string;
  readonly info: MapInfo;
  readonly #addon: BpfAddon;
  #fd: number;

  private constructor(addon: BpfAddon, pinPath: string, fd: number, info: MapInfo) {
    this.#addon = addon;
    this.path = pinPath;
    this.#fd = fd;
    this.info = info;
  }

  /**
   * Opens the map pinned at `pinPath` and checks that it is the map the caller expects
   * (type, key and value size): a pin left by another build is refused, not misread.
   */
  static open(addon: BpfAddon, pinPath: string, want: { type: number; keySize: number; valueSize: number }): PinnedMap {
    let fd: number;
    try {
      fd = addon.objGet(pinPath);
    } catch (err) {
      throw bpfError('open', pinPath, err);
    }
    try {
      const info = addon.mapInfo(fd);
      if (info.type !== want.type || info.keySize !== want.keySize || info.valueSize !== want.valueSize) {
        throw new SealnetError(
          'INTERNAL',
          `pinned map ${pinPath} has type ${info.type}, key ${info.keySize} B, value ${info.valueSize} B; this build expects type ${want.type}, key ${want.keySize} B, value ${want.valueSize} B`,
        );
      }
      return new PinnedMap(addon, pinPath, fd, info);
    } catch (err) {
      addon.close(fd);
      throw err instanceof SealnetError ? err : bpfError('inspect', pinPath, err);
    }
  }

  #checkOpen(): number {
    if (this.#fd < 0) throw new SealnetError('INTERNAL', `map ${this.path} is closed`);
    return this.#fd;
  }

  /** The value for `key`, or undefined. `valueSize` overrides the map's (per-CPU maps). */
  lookup(key: Buffer, valueSize: number = this.info.valueSize): Buffer | undefined {
    try {
      return this.#addon.lookup(this.#checkOpen(), key, valueSize);
    } catch (err) {
      throw bpfError('lookup', this.path, err);
    }
  }

  /** Writes `n` elements (keys and values concatenated) with BPF_ANY. */
  updateMany(keys: Buffer, values: Buffer): number {
    try {
      return this.#addon.updateMany(this.#checkOpen(), keys, values, this.info.keySize, this.info.valueSize, BPF_ANY);
    } catch (err) {
      throw bpfError('update', this.path, err);
    }
  }

  /** Deletes the given keys (concatenated); absent keys are skipped. Returns how many went. */
  deleteMany(keys: Buffer): number {
    try {
      return this.#addon.deleteMany(this.#checkOpen(), keys, this.info.keySize);
    } catch (err) {
      throw bpfError('delete', this.path, err);
    }
  }

  /** Every element, as [key, value] pairs. */
  entries(): [Buffer, Buffer][] {
    let d: { keys: Buffer; values: Buffer; count: number };
    try {
      d = this.#addon.dump(this.#checkOpen(), this.info.keySize, this.info.valueSize);
    } catch (err) {
      throw bpfError('dump', this.path, err);
    }
    const out: [Buffer, Buffer][] = [];
    for (let i = 0; i < d.count; i++) {
      out.push([
        d.keys.subarray(i * this.info.keySize, (i + 1) * this.info.keySize),
        d.values.subarray(i * this.info.valueSize, (i + 1) * this.info.valueSize),
      ]);
    }
    return out;
  }

  close(): void {
    if (this.#fd >= 0) this.#addon.close(this.#fd);
    this.#fd = -1;
  }
}
