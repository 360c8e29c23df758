/**
 * Text from another node (annotations, status reasons, node names in a file store) reaches
 * terminals, logs and a Markdown report. One rule for all of it: C0 and C1 controls, DEL and the
 * bidirectional overrides/isolates (which reorder what a reader sees: "Trojan Source") are
 * refused where text is decoded and escaped where it is printed; a hostile value is quoted by
 * at most a short prefix, so a 200 kB annotation never becomes a 200 kB log line.
 */

/** C0, DEL, C1, and the bidi controls (LRM/RLM, ALM, LRE…RLO, LRI…PDI). */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;
const UNSAFE_ALL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

/** True when `s` holds no control, DEL or bidi override character. */
export function isSafeText(s: string): boolean {
  return !UNSAFE.test(s);
}

/** `s` with every unsafe character written as `\u{…}` (visible, and inert on a terminal). */
export function escapeText(s: string): string {
  return s.replace(UNSAFE_ALL, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}

/** Default prefix length of {@link quoteShort}. */
export const QUOTE_MAX = 64;

/**
 * A hostile value for a message: JSON-quoted, escaped, at most `max` characters of it, and its
 * full length when cut (`"abc…" (200000 chars)`).
 */
export function quoteShort(s: string, max = QUOTE_MAX): string {
  const cut = s.length > max;
  const q = JSON.stringify(escapeText(cut ? s.slice(0, max) : s));
  return cut ? `${q.slice(0, -1)}…" (${s.length} chars)` : q;
}

/**
 * Text for a Markdown page (a table cell or inline, never at a line start): unsafe characters
 * escaped, the Markdown punctuation that acts inline (`\\ ` * _ [ ] | ~`) backslash-escaped and HTML's `&`, `<`, `>` as entities, newlines as spaces.
 */
export function escapeMarkdown(s: string): string {
  return escapeText(s.replace(/\r?\n/g, ' '))
    .replace(/[\\`*_[\]|~]/g, (c) => `\\${c}`)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;');
}
