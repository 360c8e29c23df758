/**
 * The four pinned maps of the steering program, opened by path through the bpf() addon, with
 * diff-based writes: read what the kernel holds, write what differs (all writes before any
 * delete), delete only with `prune`. Keys are compared as encoded bytes, so two spellings of one
 * prefix (`::ffff:100.64.2.0/120`, `::ffff:6440:200/120`) are one entry.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { BPF_MAP_NAMES } from '../../common/constants.js';
import { SealnetError } from '../../common/errors.js';
import {
  CONFIG_SIZE,
  COUNTER_SIZE,
  COUNTER_SLOTS,
  EXEMPT_VALUE_SIZE,
  HOOKS,
  KEY_SIZE,
  REASON_SLOTS,
  REASONS,
  REMOTE_VALUE_SIZE,
  decodeConfig,
  decodeKey,
  decodeRemoteValue,
  encodeConfig,
  encodeIndex,
  encodeKey,
  encodeRemoteValue,
  parsePossibleCpus,
  sumPerCpu,
  type CounterValue,
  type RemoteEntry,
  type SteeringConfig,
} from './layout.js';
import { MAP_TYPE, PinnedMap, loadAddon, type BpfAddon } from './syscall.js';

/** Result of a diff-based write. */
export interface SyncResult {
  readonly written: number;
  readonly deleted: number;
}

/** The steering maps pinned in one directory. */
export class SteeringMaps {
  readonly remote: PinnedMap;
  readonly exempt: PinnedMap;
  readonly config: PinnedMap;
  readonly counters: PinnedMap;
  readonly #possibleCpus: number;

  private constructor(
    maps: { remote: PinnedMap; exempt: PinnedMap; config: PinnedMap; counters: PinnedMap },
    possibleCpus: number,
  ) {
    this.remote = maps.remote;
    this.exempt = maps.exempt;
    this.config = maps.config;
    this.counters = maps.counters;
    this.#possibleCpus = possibleCpus;
  }

  /** Opens the maps pinned in `dir`, checking each one's type and sizes. */
  static open(dir: string, addon: BpfAddon = loadAddon()): SteeringMaps {
    const opened: PinnedMap[] = [];
    const open = (name: string, want: { type: number; keySize: number; valueSize: number }): PinnedMap => {
      const m = PinnedMap.open(addon, path.join(dir, name), want);
      opened.push(m);
      return m;
    };
    try {
      const maps = {
        remote: open(BPF_MAP_NAMES.remote, { type: MAP_TYPE.lpmTrie, keySize: KEY_SIZE, valueSize: REMOTE_VALUE_SIZE }),
        exempt: open(BPF_MAP_NAMES.exempt, { type: MAP_TYPE.lpmTrie, keySize: KEY_SIZE, valueSize: EXEMPT_VALUE_SIZE }),
        config: open(BPF_MAP_NAMES.config, { type: MAP_TYPE.array, keySize: 4, valueSize: CONFIG_SIZE }),
        counters: open(BPF_MAP_NAMES.counters, { type: MAP_TYPE.percpuArray, keySize: 4, valueSize: COUNTER_SIZE }),
      };
      if (maps.counters.info.maxEntries < COUNTER_SLOTS) {
        throw new SealnetError(
          'INTERNAL',
          `pinned counter map ${maps.counters.path} has ${maps.counters.info.maxEntries} slots, this build needs ${COUNTER_SLOTS}`,
        );
      }
      return new SteeringMaps(maps, parsePossibleCpus(readFileSync('/sys/devices/system/cpu/possible', 'utf8')));
    } catch (err) {
      for (const m of opened) m.close();
      throw err;
    }
  }

  /** Every entry of the remote map, sorted by key bytes (family, then address, then length). */
  remoteEntries(): RemoteEntry[] {
    return this.remote
      .entries()
      .map(([k, v]) => ({ k, e: decodeRemoteValue(decodeKey(k), v) }))
      .sort((a, b) => compareKeys(a.k, b.k))
      .map((x) => x.e);
  }

  /**
   * Makes the remote map hold `desired`: writes new and changed entries, then (with `prune`)
   * deletes entries not desired. A key listed twice keeps its last entry.
   */
  syncRemote(desired: readonly RemoteEntry[], opts: { prune: boolean; fromLastWrite?: boolean }): SyncResult {
    const want = new Map<string, Buffer>();
    for (const e of desired) {
      const enc = encodedRemote(e);
      want.set(enc.key, enc.value);
    }
    const have = opts.fromLastWrite === true ? this.#lastRemote : undefined;
    this.#lastRemote = undefined; // until this sync succeeded
    const r = syncLpm(this.remote, want, opts.prune, have);
    this.#lastRemote = opts.prune ? want : new Map([...(have ?? readLpm(this.remote)), ...want]);
    return r;
  }

  /** What the last successful {@link syncRemote} left in the remote map (hex key → value). */
  #lastRemote: Map<string, Buffer> | undefined;

  /** Writes these entries (create or replace), nothing else. */
  setRemote(entries: readonly RemoteEntry[]): number {
    this.#lastRemote = undefined;
    if (entries.length === 0) return 0;
    return this.remote.updateMany(
      Buffer.concat(entries.map((e) => encodeKey(e.cidr))),
      Buffer.concat(entries.map((e) => encodeRemoteValue(e))),
    );
  }

  /** Deletes these prefixes (absent ones are skipped); returns how many were deleted. */
  deleteRemote(cidrs: readonly string[]): number {
    this.#lastRemote = undefined;
    if (cidrs.length === 0) return 0;
    return this.remote.deleteMany(Buffer.concat(cidrs.map((c) => encodeKey(c))));
  }

  /** Exempt prefixes, sorted. */
  exemptCidrs(): string[] {
    return this.exempt
      .entries()
      .sort(([a], [b]) => compareKeys(a, b))
      .map(([k]) => decodeKey(k));
  }

  /** Makes the exempt map hold exactly `cidrs`. */
  syncExempt(cidrs: readonly string[]): SyncResult {
    const one = Buffer.alloc(EXEMPT_VALUE_SIZE);
    one.writeUInt8(1, 0);
    return syncLpm(this.exempt, new Map(cidrs.map((c) => [encodeKey(c).toString('hex'), one])), true);
  }

  readConfig(): SteeringConfig {
    const raw = this.config.lookup(encodeIndex(0));
    if (raw === undefined) throw new SealnetError('INTERNAL', `config map ${this.config.path} has no element 0`);
    return decodeConfig(raw);
  }

  /** Writes the config when it differs; returns true if it wrote. */
  writeConfig(c: SteeringConfig): boolean {
    const next = encodeConfig(c);
    const cur = this.config.lookup(encodeIndex(0));
    if (cur !== undefined && cur.equals(next)) return false;
    this.config.updateMany(encodeIndex(0), next);
    return true;
  }

  /** Every named counter, summed over CPUs (zeros included). */
  readCounters(): CounterValue[] {
    const perCpu = COUNTER_SIZE * this.#possibleCpus;
    const out: CounterValue[] = [];
    HOOKS.forEach((hook, h) => {
      REASONS.forEach((r, i) => {
        const raw = this.counters.lookup(encodeIndex(h * REASON_SLOTS + i), perCpu);
        const sum = raw === undefined ? { packets: 0n, bytes: 0n } : sumPerCpu(raw);
        out.push({ hook, reason: r.name, verdict: r.verdict, ...sum });
      });
    });
    return out;
  }

  close(): void {
    for (const m of [this.remote, this.exempt, this.config, this.counters]) m.close();
  }
}

/**
 * Each entry's map key (hex) and value, encoded once per entry object: the planner keeps the
 * objects of unchanged nodes from pass to pass, and an event pass at 5,000 nodes would otherwise
 * parse and encode every prefix again (~7 ms) to write one. Entries are immutable (readonly).
 */
const encodedEntries = new WeakMap<RemoteEntry, { readonly key: string; readonly value: Buffer }>();
function encodedRemote(e: RemoteEntry): { readonly key: string; readonly value: Buffer } {
  let enc = encodedEntries.get(e);
  if (enc === undefined) {
    enc = { key: encodeKey(e.cidr).toString('hex'), value: encodeRemoteValue(e) };
    encodedEntries.set(e, enc);
  }
  return enc;
}

/** Orders LPM keys by family, address, then prefix length. */
function compareKeys(a: Buffer, b: Buffer): number {
  return (
    a.subarray(4, 8).compare(b.subarray(4, 8)) ||
    a.subarray(8).compare(b.subarray(8)) ||
    a.subarray(0, 4).compare(b.subarray(0, 4))
  );
}

function readLpm(map: PinnedMap): Map<string, Buffer> {
  return new Map(map.entries().map(([k, v]) => [k.toString('hex'), v]));
}

/** Makes `map` hold `want` (and, with `prune`, nothing else); `known`: its content if already known. */
function syncLpm(
  map: PinnedMap,
  want: ReadonlyMap<string, Buffer>,
  prune: boolean,
  known?: ReadonlyMap<string, Buffer>,
): SyncResult {
  const have = known ?? readLpm(map);
  const writeKeys: Buffer[] = [];
  const writeValues: Buffer[] = [];
  for (const [k, v] of want) {
    const h = have.get(k);
    if (h !== undefined && (h === v || h.equals(v))) continue;
    writeKeys.push(Buffer.from(k, 'hex'));
    writeValues.push(v);
  }
  const written = writeKeys.length === 0 ? 0 : map.updateMany(Buffer.concat(writeKeys), Buffer.concat(writeValues));
  if (!prune) return { written, deleted: 0 };
  const gone = [...have.keys()].filter((k) => !want.has(k)).map((k) => Buffer.from(k, 'hex'));
  const deleted = gone.length === 0 ? 0 : map.deleteMany(Buffer.concat(gone));
  return { written, deleted };
}
