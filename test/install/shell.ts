/**
 * A small lexer and parser for the shell the project's scripts are written in (bash), enough to
 * find the words in command position: quotes, `$(…)`/backtick substitutions (scanned as scripts
 * of their own), `${…}` expansions, here-documents (bodies skipped), redirections, `case`
 * patterns, `for` headers, `[[ … ]]`, `(( … ))`, function definitions and assignments.
 * It never executes anything. Where it cannot read a word, the word is marked dynamic and the
 * caller decides (commands.test.ts fails on an unexplained dynamic command).
 */
import type { Word } from './scan.js';

type Token =
  | {
      readonly kind: 'word';
      readonly text: string;
      readonly raw: string;
      readonly dynamic: boolean;
      readonly line: number;
      readonly array?: Token[];
      readonly redirTarget: boolean;
    }
  | { readonly kind: 'op'; readonly text: string; readonly line: number };
type WordToken = Extract<Token, { kind: 'word' }>;

/** What the parser reports. */
export interface ShellSink {
  /** A simple command's words (after assignments and redirections were removed). */
  command(words: readonly Word[]): void;
  /** `NAME=value` or `NAME=(a b)`: the value's words. */
  assign(name: string, value: readonly Word[]): void;
  /** A function defined in the script. */
  define(name: string): void;
}

const OPS = [
  ';;&',
  ';;',
  ';&',
  '&&',
  '||',
  '|&',
  '&>>',
  '&>',
  '>>',
  '<<<',
  '<<-',
  '<<',
  '>&',
  '<&',
  '>|',
  '<>',
  ';',
  '&',
  '|',
  '(',
  ')',
  '<',
  '>',
];
const REDIRS = new Set(['&>>', '&>', '>>', '<<<', '>&', '<&', '>|', '<>', '<', '>']);
const START_KEYWORDS = new Set([
  'if',
  'then',
  'else',
  'elif',
  'do',
  'while',
  'until',
  '!',
  '{',
  '}',
  'fi',
  'done',
  'time',
]);

/** Scans `text` (a whole script or a `-c` string); `firstLine` numbers its first line. */
export function scanShell(text: string, firstLine: number, sink: ShellSink): void {
  parse(lex(text, firstLine, sink), sink);
}

function lex(src: string, firstLine: number, sink: ShellSink): Token[] {
  const out: Token[] = [];
  let i = 0;
  let line = firstLine;
  const heredocs: { delim: string; strip: boolean }[] = [];
  let redirNext = false;

  // Reads from src[i] (just after the opening char) to the matching close; returns the inner text.
  const balanced = (open: string, close: string): string => {
    const start = i;
    let depth = 1;
    while (i < src.length) {
      const c = src[i] as string;
      if (c === '\\') {
        i += 2;
        continue;
      }
      if (c === "'" && open !== '{') {
        const j = src.indexOf("'", i + 1);
        i = j < 0 ? src.length : j + 1;
        continue;
      }
      if (c === '"') {
        i++;
        while (i < src.length && src[i] !== '"') {
          if (src[i] === '\\') i++;
          i++;
        }
        i++;
        continue;
      }
      if (c === '\n') line++;
      if (c === open) depth++;
      else if (c === close && --depth === 0) {
        i++;
        return src.slice(start, i - 1);
      }
      i++;
    }
    throw new Error(`unbalanced '${open}' from line ${line}`);
  };
  const substitution = (inner: string, at: number): void => scanShell(inner, at, sink);

  while (i < src.length) {
    const c = src[i] as string;
    if (c === '\\' && src[i + 1] === '\n') {
      i += 2;
      line++;
      continue;
    }
    if (c === ' ' || c === '\t') {
      i++;
      continue;
    }
    if (c === '\n') {
      out.push({ kind: 'op', text: '\n', line });
      i++;
      line++;
      for (const h of heredocs.splice(0)) {
        for (;;) {
          if (i >= src.length) throw new Error(`here-document '${h.delim}' not closed`);
          const end = src.indexOf('\n', i);
          const l = src.slice(i, end < 0 ? src.length : end);
          i = end < 0 ? src.length : end + 1;
          line++;
          if ((h.strip ? l.replace(/^\t+/, '') : l) === h.delim) break;
        }
      }
      continue;
    }
    if (c === '#') {
      while (i < src.length && src[i] !== '\n') i++;
      continue;
    }
    if (c === '(' && src[i + 1] === '(') {
      i += 2;
      balanced('(', ')');
      if (src[i] === ')') i++;
      continue;
    }
    if ((c === '<' || c === '>') && src[i + 1] === '(') {
      const at = line;
      i += 2;
      substitution(balanced('(', ')'), at);
      out.push({ kind: 'word', text: '<(…)', raw: '<(…)', dynamic: true, line: at, redirTarget: redirNext });
      redirNext = false;
      continue;
    }
    const op = OPS.find((o) => src.startsWith(o, i));
    if (op !== undefined) {
      i += op.length;
      if (op === '<<' || op === '<<-') {
        while (src[i] === ' ') i++;
        const m = /^(['"]?)([A-Za-z_0-9]+)\1/.exec(src.slice(i));
        if (m === null) throw new Error(`unreadable here-document at line ${line}`);
        heredocs.push({ delim: m[2] as string, strip: op === '<<-' });
        i += m[0].length;
        continue;
      }
      if (REDIRS.has(op)) {
        redirNext = true;
        if (op.endsWith('&') && /[0-9-]/.test(src[i] ?? '')) {
          while (/[0-9-]/.test(src[i] ?? '')) i++;
          redirNext = false;
        }
        continue;
      }
      out.push({ kind: 'op', text: op, line });
      continue;
    }
    // a word
    const at = line;
    let text = '';
    let dynamic = false;
    const start = i;
    let array: Token[] | undefined;
    while (i < src.length) {
      const ch = src[i] as string;
      if (ch === ' ' || ch === '\t' || ch === '\n' || ';&|()<>'.includes(ch)) {
        if (ch === '(' && array === undefined && /^[A-Za-z_][A-Za-z0-9_]*\+?=$/.test(text)) {
          i++;
          array = lex(balanced('(', ')'), at, sink).filter((t) => t.kind === 'word');
          continue;
        }
        if ((ch === '<' || ch === '>') && /^[0-9]+$/.test(text)) {
          text = '';
          dynamic = false;
          redirNext = false;
          break;
        }
        break;
      }
      if (ch === '\\') {
        if (src[i + 1] === '\n') {
          i += 2;
          line++;
          continue;
        }
        text += src[i + 1] ?? '';
        i += 2;
        continue;
      }
      if (ch === "'") {
        const j = src.indexOf("'", i + 1);
        if (j < 0) throw new Error(`unclosed ' at line ${line}`);
        text += src.slice(i + 1, j);
        line += src.slice(i, j).split('\n').length - 1;
        i = j + 1;
        continue;
      }
      if (ch === '`') {
        const j = src.indexOf('`', i + 1);
        substitution(src.slice(i + 1, j), line);
        dynamic = true;
        text += '`…`';
        i = j + 1;
        continue;
      }
      if (ch === '$') {
        const r = dollar();
        text += r;
        dynamic = true;
        continue;
      }
      if (ch === '"') {
        i++;
        while (i < src.length && src[i] !== '"') {
          const d = src[i] as string;
          if (d === '\\') {
            text += src[i + 1] ?? '';
            i += 2;
            continue;
          }
          if (d === '$') {
            text += dollar();
            dynamic = true;
            continue;
          }
          if (d === '`') {
            const j = src.indexOf('`', i + 1);
            substitution(src.slice(i + 1, j), line);
            dynamic = true;
            i = j + 1;
            continue;
          }
          if (d === '\n') line++;
          text += d;
          i++;
        }
        i++;
        continue;
      }
      text += ch;
      i++;
    }
    if (text === '' && array === undefined && start === i) {
      i++;
      continue;
    }
    if (text === '' && !dynamic && array === undefined) continue;
    out.push({
      kind: 'word',
      text,
      raw: src.slice(start, i),
      dynamic,
      line: at,
      redirTarget: redirNext,
      ...(array !== undefined ? { array } : {}),
    });
    redirNext = false;
  }
  return out;

  // `$…` at src[i]: consumes it and returns a placeholder; substitutions are scanned.
  function dollar(): string {
    const n = src[i + 1];
    if (n === '(' && src[i + 2] === '(') {
      i += 3;
      balanced('(', ')');
      if (src[i] === ')') i++;
      return '$((…))';
    }
    if (n === '(') {
      const at = line;
      i += 2;
      substitution(balanced('(', ')'), at);
      return '$(…)';
    }
    if (n === '{') {
      const s = i;
      i += 2;
      balanced('{', '}');
      return src.slice(s, i);
    }
    const m = /^\$([A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-])/.exec(src.slice(i));
    if (m === null) {
      i++;
      return '$';
    }
    i += m[0].length;
    return m[0];
  }
}

function parse(tokens: Token[], sink: ShellSink): void {
  let words: Word[] = [];
  let casePattern = false;
  let skipToOp = false;
  let inTest = false;
  const flush = (): void => {
    if (words.length > 0) sink.command(words);
    words = [];
  };
  for (let k = 0; k < tokens.length; k++) {
    const t = tokens[k] as Token;
    if (t.kind === 'op') {
      if (casePattern) {
        if (t.text === ')') casePattern = false;
        continue;
      }
      if (inTest) continue;
      flush();
      skipToOp = false;
      if (t.text === ';;' || t.text === ';&' || t.text === ';;&') casePattern = true;
      continue;
    }
    if (casePattern) {
      if (t.text === 'esac' && t.raw === 'esac') casePattern = false;
      continue;
    }
    if (skipToOp) continue;
    if (inTest) {
      if (t.text === ']]' && t.raw === ']]') inTest = false;
      continue;
    }
    if (t.redirTarget) continue;
    const w: Word = { text: t.text, dynamic: t.dynamic, line: t.line };
    if (words.length === 0) {
      const kw = t.dynamic ? undefined : t.text;
      if (kw !== undefined && START_KEYWORDS.has(kw) && t.raw === kw) continue;
      if (kw === 'esac' && t.raw === kw) continue;
      if (kw === 'case' && t.raw === kw) {
        while (
          k + 1 < tokens.length &&
          !((tokens[k + 1] as Token).kind === 'word' && (tokens[k + 1] as Token).text === 'in')
        )
          k++;
        k++;
        casePattern = true;
        continue;
      }
      if ((kw === 'for' || kw === 'select') && t.raw === kw) {
        skipToOp = true;
        continue;
      }
      if (kw === '[[' && t.raw === kw) {
        inTest = true;
        continue;
      }
      if (kw === 'function' && t.raw === kw) {
        const n = tokens[k + 1];
        if (n?.kind === 'word') sink.define(n.text);
        k++;
        skipFnParens();
        continue;
      }
      const n1 = tokens[k + 1];
      const n2 = tokens[k + 2];
      if (!t.dynamic && n1?.kind === 'op' && n1.text === '(' && n2?.kind === 'op' && n2.text === ')') {
        sink.define(t.text);
        k += 2;
        continue;
      }
      const m = /^([A-Za-z_][A-Za-z0-9_]*)(\[[^\]]*\])?\+?=/.exec(t.raw);
      if (m !== null) {
        const value =
          t.array !== undefined
            ? (t.array as WordToken[]).map((a) => ({
                text: a.dynamic ? a.raw : a.text,
                dynamic: a.dynamic,
                line: a.line,
              }))
            : [valueWord(t.raw.slice(m[0].length), t)];
        sink.assign(m[1] as string, value);
        continue;
      }
    }
    words.push(t.dynamic ? { ...w, text: t.raw } : w);
  }
  flush();

  function skipFnParens(): void {
    /* `function f` has no parens; `function f()` has them: the next ops are harmless */
  }
}

function valueWord(rawValue: string, t: { line: number; dynamic: boolean }): Word {
  const lit = /^(["']?)([^$"'`\\]*)\1$/.exec(rawValue);
  return lit !== null
    ? { text: lit[2] as string, dynamic: false, line: t.line }
    : { text: rawValue, dynamic: true, line: t.line };
}
