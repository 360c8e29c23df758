/**
 * Finds spawn-style calls in TypeScript/JavaScript source text: a callee from the table
 * (`spawn`, `execFile`, the project's `run`, `execNode`, …) whose command argument is a string
 * literal, or an array literal whose first element is one (an argv). Comments are removed first;
 * strings, template literals and regular expressions are respected. Nothing is imported.
 */
import type { Word } from './scan.js';

/** One argument of a call: an array literal's elements, or a single expression. */
export type Arg = { readonly kind: 'array'; readonly items: Word[] } | { readonly kind: 'expr'; readonly word: Word };

/** A call of one of the `callees`, with its parsed arguments. */
export interface Call {
  readonly callee: string;
  readonly line: number;
  readonly args: Arg[];
}

/** Removes comments, keeping strings, template literals, regexes and line numbers intact. */
export function stripComments(src: string): string {
  let out = '';
  let i = 0;
  let prev = '';
  while (i < src.length) {
    const c = src[i] as string;
    const d = src[i + 1];
    if (c === '/' && d === '/') {
      while (i < src.length && src[i] !== '\n') i++;
      continue;
    }
    if (c === '/' && d === '*') {
      const j = src.indexOf('*/', i + 2);
      const body = src.slice(i, j < 0 ? src.length : j + 2);
      out += body.replace(/[^\n]/g, ' ');
      i += body.length;
      continue;
    }
    if (c === "'" || c === '"' || c === '`') {
      const j = skipString(src, i);
      out += src.slice(i, j);
      i = j;
      prev = c;
      continue;
    }
    if (c === '/' && /[(,=:[!&|?{};+\-*%<>~^]|^$/.test(prev)) {
      let j = i + 1;
      let cls = false;
      while (j < src.length && src[j] !== '\n') {
        const e = src[j];
        if (e === '\\') {
          j += 2;
          continue;
        }
        if (e === '[') cls = true;
        else if (e === ']') cls = false;
        else if (e === '/' && !cls) break;
        j++;
      }
      out += src.slice(i, j + 1);
      i = j + 1;
      prev = '/';
      continue;
    }
    out += c;
    if (!/\s/.test(c)) prev = c;
    i++;
  }
  return out;
}

/** `text` with the inside of every string literal blanked, so calls are found in code only. */
function maskStrings(text: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (c === "'" || c === '"' || c === '`') {
      const j = skipString(text, i);
      out += c + ' '.repeat(Math.max(0, j - i - 2)) + (j - i >= 2 ? c : '');
      i = j;
      continue;
    }
    out += c;
    i++;
  }
  return out;
}

/** Index just past the string/template literal starting at `i`. */
function skipString(src: string, i: number): number {
  const q = src[i];
  let j = i + 1;
  while (j < src.length) {
    const c = src[j];
    if (c === '\\') {
      j += 2;
      continue;
    }
    if (c === q) return j + 1;
    if (q === '`' && c === '$' && src[j + 1] === '{') {
      j = skipBalanced(src, j + 1);
      continue;
    }
    j++;
  }
  return j;
}

/** Index just past the bracket group opening at `i` (`(`, `[` or `{`). */
function skipBalanced(src: string, i: number): number {
  const open = src[i] as string;
  const close = ({ '(': ')', '[': ']', '{': '}' } as Record<string, string>)[open] as string;
  let depth = 0;
  let j = i;
  while (j < src.length) {
    const c = src[j] as string;
    if (c === "'" || c === '"' || c === '`') {
      j = skipString(src, j);
      continue;
    }
    if (c === open) depth++;
    else if (c === close && --depth === 0) return j + 1;
    j++;
  }
  throw new Error(`unbalanced '${open}'`);
}

/** Splits the text between brackets at top-level commas. */
function splitTop(src: string): string[] {
  const parts: string[] = [];
  let j = 0;
  let start = 0;
  while (j < src.length) {
    const c = src[j] as string;
    if (c === "'" || c === '"' || c === '`') {
      j = skipString(src, j);
      continue;
    }
    if (c === '(' || c === '[' || c === '{') {
      j = skipBalanced(src, j);
      continue;
    }
    if (c === ',') {
      parts.push(src.slice(start, j));
      start = j + 1;
    }
    j++;
  }
  if (src.slice(start).trim() !== '') parts.push(src.slice(start));
  return parts.map((p) => p.trim()).filter((p) => p !== '');
}

/** A literal string's value, or undefined for anything else (template literals with `${}` too). */
export function literal(expr: string): string | undefined {
  const m = /^(['"`])([\s\S]*)\1$/.exec(expr.trim());
  if (m === null) return undefined;
  if (m[1] === '`' && m[2]?.includes('${')) return undefined;
  return (m[2] as string).replace(/\\(.)/g, '$1');
}

/** Every call of a name in `callees` (as `name(`, `.name(`, `#name(`), skipping definitions. */
export function findCalls(src: string, callees: readonly string[]): Call[] {
  const text = stripComments(src);
  const masked = maskStrings(text);
  const calls: Call[] = [];
  const re = new RegExp(
    `(?<![\\w$])(?:function\\s+|async\\s+)?(${callees.map((c) => c.replace(/[$]/g, '\\$')).join('|')})\\s*(?:<[^>()]*>)?\\(`,
    'g',
  );
  for (const m of masked.matchAll(re)) {
    if (m[0].startsWith('function') || m[0].startsWith('async')) continue;
    const open = (m.index as number) + m[0].length - 1;
    const before = text.slice(Math.max(0, (m.index as number) - 12), m.index as number);
    if (/\b(?:function|get|set)\s*$/.test(before)) continue;
    let end: number;
    try {
      end = skipBalanced(text, open);
    } catch {
      end = text.length;
    }
    const after = text.slice(end).trimStart();
    const inner = text.slice(open + 1, end - 1);
    // A method or function definition: `name(a: T, …) {` or `name(…): R {`.
    if (after.startsWith('{') || (after.startsWith(':') && !/^\s*['"`[]/.test(inner))) continue;
    const line = text.slice(0, m.index as number).split('\n').length;
    const args = splitTop(inner).map((a): Arg => {
      if (a.startsWith('[') && skipBalanced(a, 0) === a.length) {
        return { kind: 'array', items: splitTop(a.slice(1, -1)).map((e) => toWord(e, line)) };
      }
      return { kind: 'expr', word: toWord(a, line) };
    });
    calls.push({ callee: m[1] as string, line, args });
  }
  return calls;
}

function toWord(expr: string, line: number): Word {
  const lit = literal(expr);
  return lit !== undefined
    ? { text: lit, dynamic: false, line }
    : { text: expr.replace(/\s+/g, ' '), dynamic: true, line };
}

/**
 * `const NAME = ['cmd', …]` declared once in the file: NAME → its elements, so that
 * `run(argv)` after `const argv = ['iperf3', …]` is read as iperf3.
 */
export function arrayConsts(src: string): Map<string, Word[]> {
  const text = stripComments(src);
  const masked = maskStrings(text);
  const seen = new Map<string, Word[] | undefined>();
  for (const m of masked.matchAll(/(?<![\w$.])(?:const|let)\s+([A-Za-z_$][\w$]*)\s*(?::[^=]+)?=\s*\[/g)) {
    const name = m[1] as string;
    const open = (m.index as number) + m[0].length - 1;
    let end: number;
    try {
      end = skipBalanced(text, open);
    } catch {
      continue;
    }
    const line = text.slice(0, open).split('\n').length;
    const items = splitTop(text.slice(open + 1, end - 1)).map((e) => toWord(e, line));
    seen.set(name, seen.has(name) ? undefined : items);
  }
  const out = new Map<string, Word[]>();
  for (const [k, v] of seen) if (v !== undefined) out.set(k, v);
  return out;
}
