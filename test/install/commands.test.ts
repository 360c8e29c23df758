/**
 * Fresh-machine install check (issue 15): every external command that a script, a test or the
 * agent runs must come from the machine's base image (the env skill's installed-go.txt), from a
 * package the project's own scripts install (scripts/setup.sh PACKAGES, scripts/vm-setup.sh
 * HOST_TOOLS/GUEST_TOOLS, scripts/image.sh HOST_PACKAGES) or from a project build. The scripts
 * are read as text; the command → Debian package table is data (commands.json), because
 * `dpkg -S` cannot answer for a package that is not installed, and `which` on a developer's
 * machine would see whatever was installed by hand. A command the scanner cannot classify fails.
 */
import { readdirSync, readFileSync, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { scanShell } from './shell.js';
import { resolveArgv, baseName, type Word, type WrapperRule } from './scan.js';
import { arrayConsts, findCalls } from './tsscan.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Table {
  readonly basePackageList: string;
  readonly installLists: readonly { file: string; variable: string; pairs?: boolean }[];
  readonly builtins: readonly string[];
  readonly packages: Readonly<Record<string, string>>;
  readonly baseImageNonApt: Readonly<Record<string, string>>;
  readonly projectBuilds: Readonly<Record<string, string>>;
  readonly projectPaths: readonly { contains: string; provider: string }[];
  readonly wrappers: Readonly<Record<string, WrapperRule>>;
  readonly tsCallees: Readonly<Record<string, number>>;
  readonly expressions: Readonly<Record<string, string>>;
  readonly optional: Readonly<Record<string, string>>;
  readonly dynamic: readonly { file: string; expr: string; commands: readonly string[]; why: string }[];
  readonly fileContexts: readonly { file: string; provider: string; commands: readonly string[] }[];
}
const table = JSON.parse(readFileSync(path.join(repo, 'test/install/commands.json'), 'utf8')) as Table;

/** A command found in a file, before classification. */
interface Use {
  readonly file: string;
  readonly line: number;
  readonly word: string;
  readonly dynamic: boolean;
}

function walk(dir: string, keep: (f: string) => boolean, out: string[] = []): string[] {
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (!['node_modules', 'dist', 'build', '.cache'].includes(e.name)) walk(p, keep, out);
    } else if (keep(p)) out.push(p);
  }
  return out;
}
const rel = (f: string): string => path.relative(repo, f);

/** Scans a shell script (or `-c` string); returns the commands and the file's assignments. */
function scanShellText(file: string, text: string, firstLine = 1): { uses: Use[]; defined: Set<string> } {
  const uses: Use[] = [];
  const defined = new Set<string>();
  const assigned = new Map<string, Word[][]>();
  const pending: Word[][] = [];
  const script = (t: string, line: number): void => {
    const inner = scanShellText(file, t, line);
    uses.push(...inner.uses);
    inner.defined.forEach((d) => defined.add(d));
  };
  const sink: Parameters<typeof scanShell>[2] = {
    command: (words) => {
      pending.push([...words]);
      const head = words[0] as Word;
      if (['local', 'export', 'declare', 'readonly', 'typeset'].includes(head.text)) {
        for (const w of words.slice(1)) {
          const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(w.text);
          if (m !== null)
            (assigned.get(m[1] as string) ?? assigned.set(m[1] as string, []).get(m[1] as string))!.push([
              { ...w, text: m[2] as string },
            ]);
        }
      }
    },
    assign: (name, value) => {
      (assigned.get(name) ?? assigned.set(name, []).get(name))!.push([...value]);
    },
    define: (name) => defined.add(name),
  };
  try {
    scanShell(text, firstLine, sink);
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`, { cause: err });
  }
  for (const words of pending) {
    resolveArgv(spliceArrays(resolveVars(words, assigned), assigned), {
      wrappers: table.wrappers,
      emit: (w) => uses.push({ file, line: w.line, word: w.text, dynamic: w.dynamic }),
      script,
    });
  }
  return { uses, defined };
}

/** `"$CLANG"` → `clang` when the script assigns CLANG once from a literal (or `${CLANG:-clang}`). */
function resolveVars(words: readonly Word[], assigned: Map<string, Word[][]>): Word[] {
  const head = words[0] as Word;
  if (!head.dynamic) return [...words];
  const m = /^"?\$\{?([A-Za-z_][A-Za-z0-9_]*)(\[@\])?\}?"?$/.exec(head.text);
  const values = m === null ? undefined : assigned.get(m[1] as string);
  if (values === undefined || values.length !== 1) return [...words];
  const v = values[0] as Word[];
  const first = v[0];
  if (first === undefined) return [...words];
  let text = first.text;
  let dynamic = first.dynamic;
  const dflt = /^"?\$\{[A-Za-z_][A-Za-z0-9_]*:-([A-Za-z0-9_.\/-]+)\}"?$/.exec(text);
  if (dynamic && dflt !== null) {
    text = dflt[1] as string;
    dynamic = false;
  }
  // "$repo/node_modules/.bin/x": a path under the repository, classified by projectPaths.
  const under = /^"?\$\{?(?:repo|REPO)\}?(\/[^$"`]+)"?$/.exec(text);
  if (dynamic && under !== null) {
    text = `<repo>${under[1] as string}`;
    dynamic = false;
  }
  return [{ ...head, text, dynamic }, ...(m?.[2] !== undefined ? v.slice(1) : []), ...words.slice(1)];
}

/** `"${NAME[@]}"` of an array the script assigns once, spliced in (e.g. `env "${goenv[@]}" go`). */
function spliceArrays(words: readonly Word[], assigned: Map<string, Word[][]>): Word[] {
  return words.flatMap((w, i) => {
    const m = i > 0 && w.dynamic ? /^"?\$\{([A-Za-z_][A-Za-z0-9_]*)\[@\]\}"?$/.exec(w.text) : null;
    const v = m === null ? undefined : assigned.get(m[1] as string);
    return v !== undefined && v.length === 1 ? (v[0] as Word[]) : [w];
  });
}

/** Commands in spawn-style calls of a TypeScript/JavaScript file. */
function scanTs(file: string, text: string): Use[] {
  const uses: Use[] = [];
  const script = (t: string, line: number): void => {
    uses.push(...scanShellText(file, t, line).uses);
  };
  const names = [...new Set(Object.keys(table.tsCallees).map((k) => k.replace(/^.*#/, '')))];
  let consts: ReturnType<typeof arrayConsts>;
  let calls: ReturnType<typeof findCalls>;
  try {
    consts = arrayConsts(text);
    calls = findCalls(text, names);
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`, { cause: err });
  }
  // An argv held in a `const` of this file, or spread from one, is read from its literal.
  const expand = (ws: Word[]): Word[] =>
    ws.flatMap((w) => (w.dynamic ? (consts.get(w.text.replace(/^\.\.\./, '')) ?? [w]) : [w]));
  for (const call of calls) {
    // "file#callee" overrides "callee": helpers of the same name differ between test files.
    const at = table.tsCallees[`${path.basename(file)}#${call.callee}`] ?? table.tsCallees[call.callee];
    if (at === undefined || at < 0) continue;
    const a = call.args[at];
    if (a === undefined) continue;
    let argv: Word[];
    const rest = call.args[at + 1];
    if (a.kind === 'array') argv = a.items;
    else if (rest?.kind === 'array') argv = [a.word, ...rest.items];
    else
      argv = call.args
        .slice(at)
        .map((x) => (x.kind === 'expr' ? x.word : { text: '[…]', dynamic: true, line: call.line }));
    argv = expand(argv).map((w) =>
      w.dynamic && table.expressions[w.text] !== undefined
        ? { ...w, text: table.expressions[w.text] as string, dynamic: false }
        : w,
    );
    if (argv.length === 0) continue;
    resolveArgv(argv, {
      wrappers: table.wrappers,
      emit: (w) => uses.push({ file, line: w.line, word: w.text, dynamic: w.dynamic }),
      script,
    });
  }
  return uses;
}

function readArrayVar(file: string, variable: string): string[] {
  const vals: string[][] = [];
  const text = readFileSync(path.join(repo, file), 'utf8');
  const scan = (sink: Parameters<typeof scanShell>[2]): void => {
    try {
      scanShell(text, 1, sink);
    } catch (err) {
      throw new Error(`${file}: ${(err as Error).message}`, { cause: err });
    }
  };
  scan({
    command: () => undefined,
    define: () => undefined,
    assign: (name, value) => {
      if (name === variable) vals.push(value.map((w) => w.text));
    },
  });
  if (vals.length !== 1) throw new Error(`${file}: expected one assignment of ${variable}, found ${vals.length}`);
  return vals[0] as string[];
}

function basePackages(): Set<string> {
  const file = process.env['SEALNET_BASE_PACKAGES'] ?? table.basePackageList;
  if (!existsSync(file))
    throw new Error(`the base image's package list ${file} is missing (set SEALNET_BASE_PACKAGES)`);
  return new Set(
    readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('apt\t'))
      .map((l) => l.split('\t')[1] as string),
  );
}

function projectInstalls(): Map<string, string> {
  const out = new Map<string, string>();
  for (const l of table.installLists) {
    for (const v of readArrayVar(l.file, l.variable))
      out.set(l.pairs ? (v.split(':')[0] as string) : v, `${l.file} ${l.variable}`);
  }
  return out;
}

/** Every command any scanned file runs. */
export function allUses(): Use[] {
  const uses: Use[] = [];
  const shellFiles = [
    ...walk(path.join(repo, 'scripts'), (f) => f.endsWith('.sh')),
    ...walk(path.join(repo, 'test'), (f) => f.endsWith('.sh')),
  ];
  for (const f of shellFiles) uses.push(...scanShellText(rel(f), readFileSync(f, 'utf8')).uses.concat(shebang(f)));
  const binFiles = readdirSync(path.join(repo, 'bin'))
    .map((n) => path.join(repo, 'bin', n))
    .filter((f) => statSync(f).isFile());
  for (const f of binFiles) {
    const text = readFileSync(f, 'utf8');
    uses.push(...shebang(f));
    uses.push(
      ...(text.startsWith('#!/usr/bin/env node') || f.endsWith('.js')
        ? scanTs(rel(f), text)
        : scanShellText(rel(f), text).uses),
    );
  }
  for (const dir of ['tunnels', 'wireguard', 'ipsec', 'routing', 'keymgr', 'common', 'test']) {
    for (const f of walk(path.join(repo, dir), (p) => /\.(ts|mjs)$/.test(p) && !p.endsWith('.d.ts'))) {
      if (rel(f).startsWith('test/install/')) continue; // this checker's own fixtures
      uses.push(...scanTs(rel(f), readFileSync(f, 'utf8')));
    }
  }
  const pkg = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  for (const [name, s] of Object.entries(pkg.scripts))
    uses.push(...scanShellText(`package.json scripts.${name}`, s).uses);
  return uses;
}

function shebang(f: string): Use[] {
  const first = readFileSync(f, 'utf8').split('\n')[0] as string;
  const m = /^#!\s*(\S+)(?:\s+(\S+))?/.exec(first);
  if (m === null) return [];
  const cmd = baseName(m[1] as string) === 'env' ? (m[2] as string) : (m[1] as string);
  return [{ file: rel(f), line: 1, word: cmd, dynamic: false }];
}

/** Why `u` is allowed, or the failure message. */
export function classify(
  u: Use,
  ctx: { base: Set<string>; installs: Map<string, string>; defined: (file: string) => Set<string> },
): { ok: true; by: string } | { ok: false; why: string } {
  const where = `${u.file}:${u.line}`;
  if (u.dynamic) {
    const d = table.dynamic.find((x) => (u.file === x.file || u.file.endsWith(`/${x.file}`)) && x.expr === u.word);
    if (d === undefined)
      return {
        ok: false,
        why: `${where}: cannot classify the command \`${u.word}\` (not a literal): name what it runs in commands.json "dynamic"`,
      };
    for (const c of d.commands) {
      const r = classify({ ...u, word: c, dynamic: false }, ctx);
      if (!r.ok) return r;
    }
    return { ok: true, by: `dynamic: ${d.why}` };
  }
  const word = u.word;
  const fc = table.fileContexts.find((x) => u.file === x.file);
  if (fc !== undefined && !table.builtins.includes(word) && !ctx.defined(u.file).has(word)) {
    if (fc.commands.includes(word)) return { ok: true, by: fc.provider };
    return {
      ok: false,
      why: `${where}: \`${word}\` is not among the commands ${fc.provider} provides (commands.json "fileContexts")`,
    };
  }
  if (word.includes('/')) {
    const p = table.projectPaths.find((x) => word.includes(x.contains));
    if (p !== undefined) return { ok: true, by: p.provider };
    if (/^\/(usr\/)?s?bin\//.test(word)) return classify({ ...u, word: baseName(word) }, ctx);
    return {
      ok: false,
      why: `${where}: cannot classify the command path \`${word}\`: add it to commands.json "projectPaths" or run it by name`,
    };
  }
  if (table.builtins.includes(word)) return { ok: true, by: 'shell builtin' };
  if (ctx.defined(u.file).has(word)) return { ok: true, by: 'function in the same file' };
  const build = table.projectBuilds[word];
  if (build !== undefined) return { ok: true, by: build };
  const optional = table.optional[word];
  if (optional !== undefined) return { ok: true, by: `optional: ${optional}` };
  const nonApt = table.baseImageNonApt[word];
  if (nonApt !== undefined) return { ok: true, by: nonApt };
  const pkg = table.packages[word];
  if (pkg === undefined)
    return {
      ok: false,
      why: `${where}: cannot classify the command \`${word}\`: add it to commands.json "packages" (command → Debian package) or "projectBuilds"`,
    };
  if (ctx.base.has(pkg)) return { ok: true, by: `base image package ${pkg}` };
  const inst = ctx.installs.get(pkg);
  if (inst !== undefined) return { ok: true, by: `${pkg} from ${inst}` };
  return {
    ok: false,
    why: `${where}: runs \`${word}\`, from Debian package ${pkg}, which neither the base image (${path.basename(table.basePackageList)}) nor the project's install lists (${table.installLists.map((l) => `${l.file} ${l.variable}`).join(', ')}) provide`,
  };
}

describe('fresh-machine install: every command a script or test runs has a provider', () => {
  const definedCache = new Map<string, Set<string>>();
  const defined = (file: string): Set<string> => {
    let s = definedCache.get(file);
    if (s === undefined) {
      const f = path.join(repo, file);
      s =
        existsSync(f) && file.endsWith('.sh')
          ? scanShellText(file, readFileSync(f, 'utf8')).defined
          : new Set<string>();
      definedCache.set(file, s);
    }
    return s;
  };

  it('classifies every command, naming the file and the missing package otherwise', () => {
    const ctx = { base: basePackages(), installs: projectInstalls(), defined };
    const uses = allUses();
    if (process.env['SEALNET_COMMANDS_REPORT'] === '1') {
      const by = new Map<string, Set<string>>();
      for (const u of uses) {
        const r = classify(u, ctx);
        const k = `${u.word} → ${r.ok ? r.by : 'FAIL'}`;
        (by.get(k) ?? by.set(k, new Set()).get(k))!.add(u.file);
      }
      process.stderr.write(
        uses
          .map((u) => classify(u, ctx))
          .filter((r) => !r.ok)
          .map((r) => `FAILURE ${(r as { why: string }).why}\n`)
          .join(''),
      );
      process.stderr.write(
        [...by]
          .sort()
          .map(([k, f]) => `${k}   [${[...f].slice(0, 3).join(' ')}${f.size > 3 ? ' …' : ''}]`)
          .join('\n') + '\n',
      );
    }
    // The scan must see the commands we know are there, or it scans nothing.
    for (const must of ['cpio', 'qemu-system-x86_64', 'wg', 'ip', 'tc', 'bpftool', 'tcpdump', 'go', 'clang']) {
      expect(uses.map((u) => baseName(u.word))).toContain(must);
    }
    const failures = [
      ...new Set(
        uses
          .map((u) => classify(u, ctx))
          .filter((r): r is { ok: false; why: string } => !r.ok)
          .map((r) => r.why),
      ),
    ];
    expect(failures).toEqual([]);
  });

  it('names the file, the command and the missing package when a package is dropped from the install lists', () => {
    const installs = projectInstalls();
    expect(installs.get('cpio')).toBe('scripts/vm-setup.sh HOST_TOOLS');
    installs.delete('cpio');
    const cpio = allUses().filter((u) => u.word === 'cpio');
    expect(cpio.length).toBeGreaterThan(0);
    const r = classify(cpio[0] as Use, { base: basePackages(), installs, defined });
    expect(r).toEqual({
      ok: false,
      why: expect.stringMatching(
        /^scripts\/vm-setup\.sh:\d+: runs `cpio`, from Debian package cpio, which neither the base image/,
      ),
    });
  });

  it('fails on a command it cannot classify rather than allowing it', () => {
    const ctx = { base: basePackages(), installs: projectInstalls(), defined };
    expect(classify({ file: 'x.sh', line: 3, word: 'no-such-tool-xyz', dynamic: false }, ctx)).toEqual({
      ok: false,
      why: expect.stringContaining('cannot classify the command `no-such-tool-xyz`'),
    });
    expect(classify({ file: 'x.sh', line: 4, word: '"$TOOL"', dynamic: true }, ctx)).toEqual({
      ok: false,
      why: expect.stringContaining('cannot classify the command `"$TOOL"`'),
    });
  });
});
