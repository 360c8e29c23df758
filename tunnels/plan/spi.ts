/**
 * SPI allocation without coordination. The kernel finds an inbound SA by (destination, SPI), so
 * every SA a node receives needs its own SPI; the sender must know it without asking. Both
 * ends compute it from public data only — node names and key epochs — so it is the same on
 * both ends and across restarts:
 *
 * 1. Every SA that node D receives (sender S, S's epoch, D's epoch) has a sequence of candidate
 *    slots c0, c1, … = hash(S, D, epochs, attempt) mapped into sealnet's SPI range.
 * 2. Among the SAs of D whose c0 coincide, the one with the smallest order hash keeps it (a
 *    deterministic sort; names break exact ties). Every other ("displaced") SA takes its first
 *    candidate that is nobody's c0 and not taken by a displaced SA sorted before it.
 *
 * Because displaced SAs never land on anyone's c0, an SA whose c0 is unique keeps its SPI
 * whatever else joins, unless a newcomer hashes to the same c0 and sorts first: with a 24-bit
 * range and n SAs on D that happens with probability about n / 2^25 per new SA. The result of
 * a node's allocation depends only on the set of (sender, epochs) it receives, never on the
 * order in which nodes were listed.
 *
 * When both nodes of a pair publish an IPsec generation (see ipsec/kdf.ts), both generations
 * are hashed too: a node that lost its XFRM state (a reboot) and drew a new generation gets new
 * SPIs on all its pairs, so a replay of traffic captured before finds no SA. A pair where either
 * node has no generation hashes exactly as before generations existed.
 */
import { createHash } from 'node:crypto';
import { XFRM_SPI_MAX, XFRM_SPI_MIN } from '../../common/constants.js';
import { SealnetError } from '../../common/errors.js';

/** A node as SPI allocation sees it: its name and the epochs of the IPsec keys it has published. */
export interface SpiNode {
  readonly name: string;
  /** Key epochs in use (the current one, and the next or previous one during a rotation). */
  readonly epochs: readonly number[];
  /** The node's IPsec generation; 0 or absent when it publishes none. */
  readonly generation?: number | undefined;
}

/** Inclusive SPI range to allocate from. */
export interface SpiRange {
  readonly min: number;
  readonly max: number;
}

/** sealnet's range (common/constants.ts). */
export const DEFAULT_SPI_RANGE: SpiRange = { min: XFRM_SPI_MIN, max: XFRM_SPI_MAX };

/** Candidates tried per displaced SA before a linear scan of the range. */
const MAX_ATTEMPTS = 64;
const SLOT_SEED = 0x51880001;
const ORDER_SEED = 0x51880002;

/** The identity of one SA for allocation: `src`, `dst`, epochs. */
export function saKey(src: string, dst: string, srcEpoch: number, dstEpoch: number): string {
  return `${src}\u0000${dst}\u0000${srcEpoch}\u0000${dstEpoch}`;
}

function fmix32(x: number): number {
  let h = x;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** One MurmurHash3 (x86, 32-bit) round. */
function mixIn(h: number, w: number): number {
  let k = Math.imul(w | 0, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  let x = h ^ k;
  x = (x << 13) | (x >>> 19);
  return (Math.imul(x, 5) + 0xe6546b64) | 0;
}

/** The generations hashed for a pair: both nodes' when both have one, else none. */
function pairGenerations(s: NodeInfo, d: NodeInfo): readonly [number, number] | undefined {
  return s.generation !== 0 && d.generation !== 0 ? [s.generation, d.generation] : undefined;
}

/**
 * MurmurHash3 (x86, 32-bit) over the 11 words (sender digest 4, receiver digest 4, epochs 2,
 * attempt 1), or 13 with the pair's generations: cheap, well mixed, and the same on every node.
 * Written out (no arrays) because a 1000-node plan hashes a million SAs.
 */
function hashSa(
  seed: number,
  s: Uint32Array,
  d: Uint32Array,
  se: number,
  de: number,
  attempt: number,
  gens: readonly [number, number] | undefined,
): number {
  let h = seed | 0;
  h = mixIn(h, s[0]!);
  h = mixIn(h, s[1]!);
  h = mixIn(h, s[2]!);
  h = mixIn(h, s[3]!);
  h = mixIn(h, d[0]!);
  h = mixIn(h, d[1]!);
  h = mixIn(h, d[2]!);
  h = mixIn(h, d[3]!);
  h = mixIn(h, se);
  h = mixIn(h, de);
  if (gens !== undefined) {
    h = mixIn(h, gens[0]);
    h = mixIn(h, gens[1]);
  }
  h = mixIn(h, attempt);
  return fmix32(h ^ (gens === undefined ? 44 : 52));
}

function checkEpoch(node: string, e: number): void {
  if (!Number.isInteger(e) || e < 0 || e > 0xffffffff) {
    throw new SealnetError('INTERNAL', `node ${node} has key epoch ${String(e)}, not a 32-bit unsigned integer`);
  }
}

interface NodeInfo {
  readonly name: string;
  readonly index: number;
  readonly digest: Uint32Array;
  /** Sorted, distinct. */
  readonly epochs: readonly number[];
  /** 0 = none. */
  readonly generation: number;
}

/** One receiving node's allocation: SPI by (sender index, sender epoch, receiver epoch). */
interface InboundTable {
  /** `composite(senderIndex, senderEpochIndex, receiverEpochIndex)` → SPI. */
  readonly spis: Map<number, number>;
}

/**
 * SPIs of every SA in a cluster, computed lazily per receiving node and cached. Immutable
 * input; build a new allocator when the set of nodes or epochs changes.
 */
export class SpiAllocator {
  readonly #nodes: ReadonlyMap<string, NodeInfo>;
  readonly #byIndex: readonly NodeInfo[];
  /** Most epochs any node has (for composite keys). */
  readonly #maxEpochs: number;
  readonly #range: SpiRange;
  readonly #size: number;
  readonly #tables = new Map<string, InboundTable>();

  constructor(nodes: readonly SpiNode[], range: SpiRange = DEFAULT_SPI_RANGE) {
    if (
      !Number.isInteger(range.min) ||
      !Number.isInteger(range.max) ||
      range.min < 256 ||
      range.max > 0xffffffff ||
      range.min > range.max
    ) {
      throw new SealnetError('INTERNAL', `SPI range ${range.min}..${range.max} is not inside 256..0xffffffff`);
    }
    this.#range = range;
    this.#size = range.max - range.min + 1;
    const map = new Map<string, NodeInfo>();
    const byIndex: NodeInfo[] = [];
    let maxEpochs = 1;
    // Sorted by name so that indexes (and so iteration order) do not depend on the caller's order.
    for (const n of [...nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      if (n.name === '') throw new SealnetError('INTERNAL', 'a node with an empty name');
      if (map.has(n.name)) throw new SealnetError('INTERNAL', `node ${n.name} listed twice`);
      for (const e of n.epochs) checkEpoch(n.name, e);
      const generation = n.generation ?? 0;
      if (!Number.isInteger(generation) || generation < 0 || generation > 0xffffffff)
        throw new SealnetError('INTERNAL', `node ${n.name} has generation ${String(generation)}, not 32-bit unsigned`);
      const d = createHash('sha256').update(n.name, 'utf8').digest();
      const info: NodeInfo = {
        name: n.name,
        index: byIndex.length,
        digest: Uint32Array.of(d.readUInt32BE(0), d.readUInt32BE(4), d.readUInt32BE(8), d.readUInt32BE(12)),
        epochs: [...new Set(n.epochs)].sort((a, b) => a - b),
        generation,
      };
      maxEpochs = Math.max(maxEpochs, info.epochs.length);
      map.set(n.name, info);
      byIndex.push(info);
    }
    this.#nodes = map;
    this.#byIndex = byIndex;
    this.#maxEpochs = maxEpochs;
  }

  /**
   * SPI of the SA from `src` (key epoch `srcEpoch`) to `dst` (key epoch `dstEpoch`).
   * @throws SealnetError `INTERNAL` if the nodes or epochs are not among the allocator's.
   */
  spi(src: string, dst: string, srcEpoch: number, dstEpoch: number): number {
    const s = this.#nodes.get(src);
    const d = this.#nodes.get(dst);
    if (s === undefined || d === undefined || s === d) {
      throw new SealnetError('INTERNAL', `no SPI for ${src} -> ${dst}: not two of the allocator's nodes`);
    }
    const si = s.epochs.indexOf(srcEpoch);
    const di = d.epochs.indexOf(dstEpoch);
    const spi = si < 0 || di < 0 ? undefined : this.#table(d).spis.get(this.#composite(s.index, si, di));
    if (spi === undefined) {
      throw new SealnetError(
        'INTERNAL',
        `no SPI for ${src} (epoch ${srcEpoch}) -> ${dst} (epoch ${dstEpoch}): not among the allocator's nodes and epochs`,
      );
    }
    return spi;
  }

  /** Every SA `dst` receives, by {@link saKey}, with its SPI. Distinct SPIs, all in the range. */
  inbound(dst: string): ReadonlyMap<string, number> {
    const d = this.#nodes.get(dst);
    if (d === undefined) throw new SealnetError('INTERNAL', `node ${dst} is not among the allocator's nodes`);
    const out = new Map<string, number>();
    const m = this.#maxEpochs;
    for (const [composite, spi] of this.#table(d).spis) {
      const s = this.#byIndex[Math.floor(composite / (m * m))]!;
      const se = s.epochs[Math.floor(composite / m) % m]!;
      const de = d.epochs[composite % m]!;
      out.set(saKey(s.name, dst, se, de), spi);
    }
    return out;
  }

  #composite(senderIndex: number, senderEpochIndex: number, receiverEpochIndex: number): number {
    return (senderIndex * this.#maxEpochs + senderEpochIndex) * this.#maxEpochs + receiverEpochIndex;
  }

  #table(d: NodeInfo): InboundTable {
    let t = this.#tables.get(d.name);
    if (t === undefined) {
      t = this.#allocate(d);
      this.#tables.set(d.name, t);
    }
    return t;
  }

  #slot(s: NodeInfo, d: NodeInfo, se: number, de: number, attempt: number): number {
    return (
      this.#range.min + (hashSa(SLOT_SEED, s.digest, d.digest, se, de, attempt, pairGenerations(s, d)) % this.#size)
    );
  }

  #allocate(d: NodeInfo): InboundTable {
    // Entries as parallel arrays (a million of them for a 1000-node plan).
    const sender: number[] = [];
    const sEpoch: number[] = [];
    const dEpoch: number[] = [];
    const composite: number[] = [];
    const order: number[] = [];
    const c0: number[] = [];
    for (const s of this.#byIndex) {
      if (s === d) continue;
      for (let si = 0; si < s.epochs.length; si++) {
        for (let di = 0; di < d.epochs.length; di++) {
          const se = s.epochs[si]!;
          const de = d.epochs[di]!;
          sender.push(s.index);
          sEpoch.push(se);
          dEpoch.push(de);
          composite.push(this.#composite(s.index, si, di));
          order.push(hashSa(ORDER_SEED, s.digest, d.digest, se, de, 0, pairGenerations(s, d)));
          c0.push(this.#slot(s, d, se, de, 0));
        }
      }
    }
    const n = sender.length;
    if (n > this.#size) {
      throw new SealnetError(
        'INTERNAL',
        `node ${d.name} receives ${n} SAs, more than the ${this.#size} SPIs of the range`,
      );
    }
    // Sorted order: order hash, then the SA's identity (names, epochs) for exact ties.
    const key = (i: number): string => saKey(this.#byIndex[sender[i]!]!.name, d.name, sEpoch[i]!, dEpoch[i]!);
    const before = (i: number, j: number): boolean => (order[i] !== order[j] ? order[i]! < order[j]! : key(i) < key(j));
    // Winners: the first (in sorted order) of each c0.
    const holder = new Map<number, number>();
    const displaced: number[] = [];
    for (let i = 0; i < n; i++) {
      const h = holder.get(c0[i]!);
      if (h === undefined) holder.set(c0[i]!, i);
      else if (before(i, h)) {
        holder.set(c0[i]!, i);
        displaced.push(h);
      } else displaced.push(i);
    }
    const spis = new Map<number, number>();
    const taken = new Set<number>(holder.keys());
    for (const [slot, i] of holder) spis.set(composite[i]!, slot);
    displaced.sort((i, j) => (i === j ? 0 : before(i, j) ? -1 : 1));
    for (const i of displaced) {
      const s = this.#byIndex[sender[i]!]!;
      const slot = this.#place(taken, c0[i]!, (attempt) => this.#slot(s, d, sEpoch[i]!, dEpoch[i]!, attempt));
      taken.add(slot);
      spis.set(composite[i]!, slot);
    }
    return { spis };
  }

  #place(taken: ReadonlySet<number>, first: number, candidate: (attempt: number) => number): number {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const slot = candidate(attempt);
      if (!taken.has(slot)) return slot;
    }
    // A nearly full range (only in tests with tiny ranges): the next free SPI after c0.
    for (let i = 1; i <= this.#size; i++) {
      const slot = this.#range.min + ((first - this.#range.min + i) % this.#size);
      if (!taken.has(slot)) return slot;
    }
    throw new SealnetError('INTERNAL', 'SPI range exhausted');
  }
}
