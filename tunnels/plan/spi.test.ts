import { describe, expect, it } from '@jest/globals';
import { XFRM_SPI_MAX, XFRM_SPI_MIN } from '../../common/constants.js';
import { DEFAULT_SPI_RANGE, saKey, SpiAllocator, type SpiNode, type SpiRange } from './spi.js';

/** Deterministic PRNG (xorshift32) so a failing case can be replayed from its seed. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789-.';
const EXOTIC = ['ü', 'ß', '日本', 'é', 'ø'];

function randomName(rnd: () => number): string {
  const len = 1 + Math.floor(rnd() * 40);
  let s = '';
  for (let i = 0; i < len; i++) s += ALPHABET[Math.floor(rnd() * ALPHABET.length)];
  // Some names beyond Kubernetes' alphabet: allocation must not depend on it.
  if (rnd() < 0.05) s += EXOTIC[Math.floor(rnd() * EXOTIC.length)];
  return s;
}

function randomCluster(rnd: () => number, size: number): SpiNode[] {
  const names = new Set<string>();
  while (names.size < size) names.add(randomName(rnd));
  return [...names].map((name) => {
    const e = 1 + Math.floor(rnd() * 1000);
    // A fifth of the nodes are mid-rotation: two key epochs in play.
    return { name, epochs: rnd() < 0.2 ? [e, e + 1] : [e] };
  });
}

function shuffled<T>(xs: readonly T[], rnd: () => number): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * Checks every node's inbound table: complete, distinct, in range. Returns the SA count.
 * (Plain loops and one assertion per node: a per-SPI expect() would dominate the run time.)
 */
function checkCluster(nodes: readonly SpiNode[], alloc: SpiAllocator, range: SpiRange): number {
  let total = 0;
  for (const d of nodes) {
    const table = alloc.inbound(d.name);
    const expected = nodes.filter((s) => s.name !== d.name).reduce((n, s) => n + s.epochs.length * d.epochs.length, 0);
    const spis = [...table.values()];
    const outOfRange = spis.filter((spi) => spi < range.min || spi > range.max).length;
    expect({ node: d.name, size: table.size, distinct: new Set(spis).size, outOfRange }).toEqual({
      node: d.name,
      size: expected,
      distinct: expected,
      outOfRange: 0,
    });
    total += table.size;
  }
  return total;
}

/** SAs beyond one per ordered pair, from nodes with two epochs. */
function extraSas(nodes: readonly SpiNode[]): number {
  let all = 0;
  for (const d of nodes) for (const s of nodes) if (s !== d) all += s.epochs.length * d.epochs.length;
  return all - nodes.length * (nodes.length - 1);
}

describe('SPI allocation', () => {
  it("uses sealnet's reserved range by default", () => {
    expect(DEFAULT_SPI_RANGE).toEqual({ min: XFRM_SPI_MIN, max: XFRM_SPI_MAX });
    const alloc = new SpiAllocator([
      { name: 'a', epochs: [1] },
      { name: 'b', epochs: [1] },
    ]);
    const spi = alloc.spi('a', 'b', 1, 1);
    expect(spi).toBeGreaterThanOrEqual(XFRM_SPI_MIN);
    expect(spi).toBeLessThanOrEqual(XFRM_SPI_MAX);
  });

  it('is a fixed function of names and epochs (changing it is a protocol change)', () => {
    // Mixed-version clusters compute each other's SPIs: these values must never change silently.
    const alloc = new SpiAllocator([
      { name: 'node-a', epochs: [1, 2] },
      { name: 'node-b', epochs: [1] },
    ]);
    expect(
      [
        alloc.spi('node-a', 'node-b', 1, 1),
        alloc.spi('node-a', 'node-b', 2, 1),
        alloc.spi('node-b', 'node-a', 1, 1),
        alloc.spi('node-b', 'node-a', 1, 2),
      ].map((s) => s.toString(16)),
    ).toEqual(['511da287', '514c0e12', '5184469e', '510a4703']);
  });

  it('mixes in generations only when both nodes of a pair have one (golden values; one side without: as before)', () => {
    const alloc = new SpiAllocator([
      { name: 'node-a', epochs: [1, 2], generation: 0xa },
      { name: 'node-b', epochs: [1], generation: 0xb },
      { name: 'node-c', epochs: [1] },
    ]);
    const legacy = new SpiAllocator([
      { name: 'node-a', epochs: [1, 2] },
      { name: 'node-b', epochs: [1] },
      { name: 'node-c', epochs: [1] },
    ]);
    const withGens = [alloc.spi('node-a', 'node-b', 1, 1), alloc.spi('node-b', 'node-a', 1, 2)];
    expect(withGens.map((s) => s.toString(16))).toEqual(['5116dbb9', '519c4e36']);
    expect(withGens).not.toContain(legacy.spi('node-a', 'node-b', 1, 1));
    expect(withGens).not.toContain(legacy.spi('node-b', 'node-a', 1, 2));
    // node-c publishes no generation: its pairs hash as they did before generations existed.
    expect(alloc.spi('node-a', 'node-c', 1, 1)).toBe(legacy.spi('node-a', 'node-c', 1, 1));
    expect(alloc.spi('node-c', 'node-b', 1, 1)).toBe(legacy.spi('node-c', 'node-b', 1, 1));
    // A new generation on one node moves its pairs' SPIs.
    const rebooted = new SpiAllocator([
      { name: 'node-a', epochs: [1, 2], generation: 0xa },
      { name: 'node-b', epochs: [1], generation: 0xc },
      { name: 'node-c', epochs: [1] },
    ]);
    expect(rebooted.spi('node-a', 'node-b', 1, 1)).not.toBe(withGens[0]);
    expect(() => new SpiAllocator([{ name: 'x', epochs: [1], generation: 2 ** 32 }])).toThrow(/generation/);
  });

  it.each([1, 2, 3])(
    'never collides on any node of a random cluster of hundreds of nodes (seed %i)',
    (seed) => {
      const rnd = prng(seed * 7919);
      const nodes = randomCluster(rnd, 200 + Math.floor(rnd() * 150));
      const alloc = new SpiAllocator(nodes);
      expect(checkCluster(nodes, alloc, DEFAULT_SPI_RANGE)).toBeGreaterThan(200 * 199);
    },
    60_000,
  );

  it.each([11, 12])(
    'resolves heavy collisions in a small range without a duplicate (seed %i)',
    (seed) => {
      const rnd = prng(seed * 104729);
      const nodes = randomCluster(rnd, 200);
      // ~240 SAs per node into 512 SPIs: dozens of first-choice collisions per node.
      const range = { min: 0x51000000, max: 0x510001ff };
      const alloc = new SpiAllocator(nodes, range);
      checkCluster(nodes, alloc, range);
    },
    60_000,
  );

  it('fills a range exactly and refuses one SA more', () => {
    const nodes: SpiNode[] = Array.from({ length: 11 }, (_, i) => ({ name: `n${i}`, epochs: [1] }));
    const exact = { min: 1000, max: 1009 };
    const alloc = new SpiAllocator(nodes, exact);
    checkCluster(nodes, alloc, exact);
    expect(() => new SpiAllocator(nodes, { min: 1000, max: 1008 }).inbound('n0')).toThrow(/more than the 9 SPIs/);
  });

  it('gives both ends the same SPI whatever order each lists the nodes in, and again after a restart', () => {
    const rnd = prng(99);
    const nodes = randomCluster(rnd, 150);
    const a = new SpiAllocator(nodes);
    const b = new SpiAllocator(shuffled(nodes, rnd));
    for (const d of nodes.slice(0, 30)) {
      expect(new Map([...b.inbound(d.name)].sort())).toEqual(new Map([...a.inbound(d.name)].sort()));
    }
  });

  it('keeps almost every existing SPI when nodes join', () => {
    const rnd = prng(4242);
    const nodes = randomCluster(rnd, 200);
    const range = { min: 0x51000000, max: 0x51000fff }; // 4096 SPIs: collisions do happen
    const before = new SpiAllocator(nodes, range);
    const joined = [...nodes, ...randomCluster(prng(777), 10).map((n) => ({ ...n, name: `new-${n.name}` }))];
    const after = new SpiAllocator(joined, range);
    let changed = 0;
    let total = 0;
    for (const d of nodes) {
      const now = after.inbound(d.name);
      for (const [k, spi] of before.inbound(d.name)) {
        total++;
        if (now.get(k) !== spi) changed++;
      }
    }
    expect(total).toBe(200 * 199 + extraSas(nodes));
    // Only an SA whose first choice a newcomer takes (and sorts before) may move.
    expect(changed / total).toBeLessThan(0.01);
  });

  it('separates directions and epochs', () => {
    const alloc = new SpiAllocator([
      { name: 'a', epochs: [1, 2] },
      { name: 'b', epochs: [1, 2] },
    ]);
    const spis = [
      alloc.spi('a', 'b', 1, 1),
      alloc.spi('a', 'b', 1, 2),
      alloc.spi('a', 'b', 2, 1),
      alloc.spi('a', 'b', 2, 2),
    ];
    expect(new Set(spis).size).toBe(4);
    expect(alloc.inbound('b').get(saKey('a', 'b', 2, 1))).toBe(alloc.spi('a', 'b', 2, 1));
  });

  it('refuses unknown nodes or epochs, duplicates, bad epochs and bad ranges', () => {
    const alloc = new SpiAllocator([
      { name: 'a', epochs: [1] },
      { name: 'b', epochs: [1] },
    ]);
    expect(() => alloc.spi('a', 'b', 2, 1)).toThrow(/no SPI/);
    expect(() => alloc.spi('a', 'c', 1, 1)).toThrow(/not two of the allocator's nodes/);
    expect(() => alloc.spi('a', 'a', 1, 1)).toThrow(/not two/);
    expect(
      () =>
        new SpiAllocator([
          { name: 'a', epochs: [1] },
          { name: 'a', epochs: [2] },
        ]),
    ).toThrow(/twice/);
    expect(() => new SpiAllocator([{ name: 'a', epochs: [-1] }])).toThrow(/epoch/);
    expect(() => new SpiAllocator([], { min: 10, max: 20 })).toThrow(/range/);
    expect(() => new SpiAllocator([], { min: 2000, max: 1000 })).toThrow(/range/);
  });
});
