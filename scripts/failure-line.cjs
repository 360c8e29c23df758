// What the closing summaries of scripts/test.sh and test/vm/suite.sh print for one failed jest
// test: the first line of its message, where in the test file it failed, and the first lines of
// the diff ("expect(received).toEqual(expected)" alone does not say which check of a test failed).
// CommonJS so the summaries' `node -e` scripts can require it from the repository root.
'use strict';

/** The first non-empty line of `lines`, trimmed, at most 300 characters (undefined: none). */
const firstLine = (lines) =>
  lines
    .find((l) => l.trim() !== '')
    ?.trim()
    .slice(0, 300);
exports.firstLine = firstLine;

/** `message`: a jest failure message (ANSI colours allowed); `rel`: a path as the summary shows it. */
exports.failureDetail = (message, rel) => {
  const lines = String(message ?? '')
    .replace(/\x1b\[[0-9;]*m/g, '')
    .split('\n');
  const head = firstLine(lines) ?? '';
  const at = lines
    .map((l) => /\(?([^\s()]+\.test\.ts):(\d+):\d+\)?/.exec(l))
    .find((x) => x && !x[1].includes('node_modules'));
  const diff = lines
    .filter((l) => /^\s*([+-] |(Expected|Received)\b)/.test(l) && !/^\s*[+-] (Expected|Received)\s/.test(l))
    .slice(0, 6)
    .map((l) => l.trim().slice(0, 200));
  return [head, ...(at ? [`at ${rel(at[1])}:${at[2]}`] : []), ...diff].join(' | ');
};
