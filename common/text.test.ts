import { describe, expect, it } from '@jest/globals';
import { escapeMarkdown, escapeText, isSafeText, quoteShort } from './text.js';

describe('common/text', () => {
  it.each(['\u001b[2J', 'a\u0000b', 'x\u007f', '\u0085', 'evil\u202egnp.exe', '\u2066x\u2069', '\r'])(
    'refuses %j',
    (s) => {
      expect(isSafeText(s)).toBe(false);
      expect(isSafeText(escapeText(s))).toBe(true);
    },
  );

  it('keeps ordinary text, including non-ASCII letters', () => {
    expect(isSafeText('node-ä 10.0.0.1 → ok')).toBe(true);
    expect(escapeText('node-ä → ok')).toBe('node-ä → ok');
  });

  it('quotes at most a short prefix and says how long the value was', () => {
    const q = quoteShort('A'.repeat(200_000));
    expect(q.length).toBeLessThan(100);
    expect(q).toContain('(200000 chars)');
    expect(quoteShort('\u001b[31mred')).toBe('"\\\\u{1b}[31mred"');
  });

  it('escapes Markdown and HTML', () => {
    expect(escapeMarkdown('<img src=x onerror=alert(1)> | [x](http://e) **b**\nline')).toBe(
      '&lt;img src=x onerror=alert(1)&gt; \\| \\[x\\](http://e) \\*\\*b\\*\\* line',
    );
  });
});
