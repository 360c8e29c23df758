/**
 * The layering rule (DESIGN.md "Layout"), written as data and checked on every run: each room
 * may import only the rooms listed for it. Imports are read from the source text (`import … from`,
 * `export … from`, `import()`), so the check needs no dependency and sees type-only imports too.
 * A failure names the importing file, the imported file and the rule it breaks.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = normalize(join(dirname(fileURLToPath(import.meta.url)), '..'));

/**
 * Which rooms each room may import (besides itself). A room is the longest matching folder
 * prefix; `tunnels/agent` and `tunnels/cli` are the composition roots and may wire drivers.
 */
export const LAYERS: Readonly<Record<string, readonly string[]>> = {
  common: [],
  keymgr: ['common'],
  'tunnels/ports': ['common', 'keymgr'],
  wireguard: ['common', 'keymgr', 'tunnels/ports'],
  ipsec: ['common', 'keymgr', 'tunnels/ports'],
  routing: ['common', 'keymgr', 'tunnels/ports'],
  'tunnels/plan': ['common', 'keymgr', 'tunnels/ports'],
  'tunnels/stores': ['common', 'keymgr', 'tunnels/ports', 'tunnels/plan'],
  'tunnels/rotation': ['common', 'keymgr', 'tunnels/ports', 'tunnels/plan'],
  'tunnels/status': ['common', 'keymgr', 'tunnels/ports', 'tunnels/plan', 'tunnels/rotation'],
  'tunnels/reconcile': ['common', 'keymgr', 'tunnels/ports', 'tunnels/plan', 'tunnels/rotation', 'tunnels/status'],
  'tunnels/pq': ['common', 'keymgr', 'tunnels/ports', 'tunnels/plan'],
  'tunnels/audit': ['common', 'keymgr', 'tunnels/ports', 'tunnels/plan', 'tunnels/status'],
  'tunnels/agent': ['common', 'keymgr', 'tunnels', 'wireguard', 'ipsec', 'routing'],
  'tunnels/cli': ['common', 'keymgr', 'tunnels', 'wireguard', 'ipsec', 'routing'],
};

/** Rooms sorted longest first, so `tunnels/plan` wins over a shorter prefix. */
const ROOMS = Object.keys(LAYERS).sort((a, b) => b.length - a.length);

/** The room a repo-relative file belongs to, or undefined (test/, bin/, scripts: unrestricted). */
export function roomOf(file: string): string | undefined {
  return ROOMS.find((r) => file === r || file.startsWith(r + '/'));
}

function isTestFile(file: string): boolean {
  return /\.test\.ts$|\.fixture\.m?js$|\/fixtures\//.test(file);
}

function isFake(file: string): boolean {
  return /\.fake\.ts$/.test(file);
}

/** Whether `from` may import `to` (both repo-relative); a reason when it may not. */
export function checkImport(from: string, to: string): string | undefined {
  const fromRoom = roomOf(from);
  // Tests and their fixtures wire anything they exercise; the rule binds production code.
  if (fromRoom === undefined || isTestFile(from)) return undefined;
  if (isFake(to) && !isTestFile(from) && !isFake(from)) {
    return `${from} imports the fake ${to}: fakes serve tests only and stay out of the build`;
  }
  const toRoom = roomOf(to);
  if (toRoom === undefined) return `${from} (room ${fromRoom}) imports ${to}, which belongs to no room (test code?)`;
  if (toRoom === fromRoom) return undefined;
  const allowed = LAYERS[fromRoom] ?? [];
  const ok = allowed.some((a) => toRoom === a || toRoom.startsWith(a + '/'));
  if (ok) return undefined;
  return `${from} (room ${fromRoom}) imports ${to} (room ${toRoom}); rule: ${fromRoom} may import only [${allowed.join(', ')}]`;
}

/** Every relative import specifier in `source`. */
export function importsOf(source: string): string[] {
  const out: string[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)(['"])(\.{1,2}\/[^'"]+)\1/gm;
  for (const m of source.matchAll(re)) out.push(m[2]!);
  return out;
}

function walk(dir: string, acc: string[]): string[] {
  for (const name of readdirSync(join(ROOT, dir))) {
    if (name === 'node_modules' || name === 'dist' || name.startsWith('.')) continue;
    const rel = dir ? `${dir}/${name}` : name;
    const st = statSync(join(ROOT, rel));
    if (st.isDirectory()) walk(rel, acc);
    else if (/\.(ts|mjs)$/.test(name) && !name.endsWith('.d.ts')) acc.push(rel);
  }
  return acc;
}

/** The project's import graph: repo-relative file → repo-relative imported files. */
export function importGraph(roots: readonly string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const root of roots) {
    for (const file of walk(root, [])) {
      const targets = importsOf(readFileSync(join(ROOT, file), 'utf8'))
        .map((spec) => relative(ROOT, normalize(join(ROOT, dirname(file), spec))).replace(/\.js$/, '.ts'))
        .filter((t) => !t.startsWith('dist/') && !t.startsWith('..'));
      graph.set(file, targets);
    }
  }
  return graph;
}

/** Strongly connected components with more than one file (or a self-import): the cycles. */
export function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, idx.get(w)!));
      }
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

const SOURCE_ROOTS = ['common', 'keymgr', 'tunnels', 'wireguard', 'ipsec', 'routing'];

describe('layering (DESIGN.md "Layout")', () => {
  const graph = importGraph(SOURCE_ROOTS);

  it('finds the project sources', () => {
    expect(graph.size).toBeGreaterThan(100);
    expect([...graph.keys()].some((f) => f.startsWith('common/'))).toBe(true);
  });

  it('every import follows the allowed-imports table', () => {
    const violations: string[] = [];
    for (const [from, targets] of graph) {
      for (const to of targets) {
        const why = checkImport(from, to);
        if (why !== undefined) violations.push(why);
      }
    }
    expect(violations).toEqual([]);
  });

  it('has no import cycles', () => {
    expect(cycles(graph)).toEqual([]);
  });

  it('every source file belongs to a room', () => {
    const orphans = [...graph.keys()].filter((f) => roomOf(f) === undefined);
    expect(orphans).toEqual([]);
  });
});

describe('the layering check itself', () => {
  it('names the import and the rule when a driver imports the core', () => {
    expect(checkImport('wireguard/driver.ts', 'tunnels/plan/planner.ts')).toBe(
      'wireguard/driver.ts (room wireguard) imports tunnels/plan/planner.ts (room tunnels/plan); rule: wireguard may import only [common, keymgr, tunnels/ports]',
    );
  });

  it('refuses the core importing a driver except from the composition roots', () => {
    expect(checkImport('tunnels/status/report.ts', 'ipsec/evidence.ts')).toMatch(
      /rule: tunnels\/status may import only/,
    );
    expect(checkImport('tunnels/agent/main.ts', 'wireguard/driver.ts')).toBeUndefined();
    expect(checkImport('common/ip.ts', 'keymgr/keys.ts')).toMatch(/rule: common may import only \[\]/);
  });

  it('keeps fakes out of production code', () => {
    expect(checkImport('tunnels/reconcile/reconciler.ts', 'tunnels/ports/kernel.fake.ts')).toMatch(
      /fakes serve tests only/,
    );
    expect(checkImport('tunnels/reconcile/reconciler.test.ts', 'tunnels/ports/kernel.fake.ts')).toBeUndefined();
  });

  it('finds a cycle', () => {
    const g = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts']],
      ['d.ts', ['a.ts']],
    ]);
    expect(cycles(g)).toEqual([['a.ts', 'b.ts', 'c.ts']]);
  });

  it('reads import, export-from and dynamic imports', () => {
    const src = `import { a } from './a.js';\nexport { b } from "../b.js";\nconst c = await import('./c.js');\nimport './side.js';\nimport x from 'node:fs';`;
    expect(importsOf(src)).toEqual(['./a.js', '../b.js', './c.js', './side.js']);
  });
});
