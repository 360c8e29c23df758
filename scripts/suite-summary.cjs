// The closing summary of scripts/test.sh: one line per tier (passed, failed, skipped, suites, wall
// time), one FAILED line per failure, and the closing "tests: N passed, N failed, N skipped".
//
// scripts/test.sh leaves, per tier, in its output folder:
//   <tier>.json      jest's --json result (absent when the tier was stopped or crashed)
//   <tier>.run       "rc=<exit> seconds=<wall> limit=<s>" once the tier's command returned
//   <tier>.notrun    why the tier was not started (the suite's time budget was spent)
//   <tier>.progress  scripts/progress-reporter.cjs's lines (the vm tier: vm/progress)
// and steps.failed: one line per step outside the tiers that failed (typecheck, format, build,
// binaries, the agent image).
// A tier whose command exited non-zero although none of its tests failed is named too.
// A tier stopped at its time limit counts as one failure and is named with the test file and test
// that were running, so a CI log that keeps only its tail says where the time went.
// CommonJS so the summary runs with plain `node` from the repository root.
'use strict';
const fs = require('fs');
const path = require('path');
const { failureDetail, firstLine } = require('./failure-line.cjs');

const TIERS = ['unit', 'kernel', 'e2e', 'k8s', 'image', 'cluster', 'vm'];

function readRun(file) {
  if (!fs.existsSync(file)) return undefined;
  const kv = Object.fromEntries(
    fs
      .readFileSync(file, 'utf8')
      .trim()
      .split(/\s+/)
      .map((x) => x.split('=')),
  );
  return { rc: Number(kv.rc), seconds: Number(kv.seconds), limit: Number(kv.limit) };
}

/** Where a stopped tier was, from its progress lines: the file and test running, the last result. */
function whereStopped(progressFile) {
  if (!fs.existsSync(progressFile)) return 'no progress file';
  const lines = fs
    .readFileSync(progressFile, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('\t'));
  const open = new Map(); // file → the test case running in it (or '')
  let last;
  for (const [at, kind, file, extra] of lines) {
    if (kind === 'start') open.set(file, '');
    else if (kind === 'end') open.delete(file);
    else if (kind === 'case') open.set(file, `${extra} (started ${at})`);
    else {
      if (open.has(file)) open.set(file, '');
      last = `${kind} ${file} › ${extra} at ${at}`;
    }
  }
  const running = [...open].map(([f, t]) => (t ? `${f} › ${t}` : `${f} (between tests)`));
  return `running: ${running.length ? running.join('; ') : 'no test file'}; last finished: ${last ?? 'none'}`;
}

function summarize(out, cwd = process.cwd()) {
  const rel = (x) => x.replace(cwd + '/', '');
  const detail = (m) => failureDetail(m, rel);
  const lines = [];
  const failures = [];
  /** Non-test failures: steps outside the tiers, tiers that exited non-zero with every test passed. */
  const exits = [];
  const stepsFile = path.join(out, 'steps.failed');
  if (fs.existsSync(stepsFile))
    for (const step of fs
      .readFileSync(stepsFile, 'utf8')
      .split('\n')
      .filter((x) => x !== ''))
      exits.push(`step ${step} failed (its output is above, under "== ${step}")`);
  let p = 0;
  let f = 0;
  let s = 0;
  for (const t of TIERS) {
    const json = path.join(out, t === 'vm' ? 'vm/jest.json' : `${t}.json`);
    const run = readRun(path.join(out, `${t}.run`));
    const wall = run ? `, ${run.seconds} s` : '';
    const notrun = path.join(out, `${t}.notrun`);
    if (fs.existsSync(notrun)) {
      const why = fs.readFileSync(notrun, 'utf8').trim();
      lines.push(`tier ${t}: not run: ${why}`);
      failures.push(`${t}: not run: ${why}`);
      f++;
      continue;
    }
    // timeout(1) exits 124 when it stopped the command (137 when it had to KILL it).
    const stopped = run && (run.rc === 124 || run.rc === 137);
    if (stopped) {
      const progress = path.join(out, t === 'vm' ? 'vm/progress' : `${t}.progress`);
      failures.push(`${t}: stopped at its time limit of ${run.limit} s: ${whereStopped(progress)}`);
      f++;
    }
    if (!fs.existsSync(json)) {
      lines.push(`tier ${t}: no result file (${stopped ? `stopped at ${run.limit} s` : 'runner crashed'}${wall})`);
      if (!stopped) f++;
      continue;
    }
    const r = JSON.parse(fs.readFileSync(json, 'utf8'));
    p += r.numPassedTests;
    f += r.numFailedTests + r.numRuntimeErrorTestSuites;
    if (run && !stopped && run.rc !== 0 && r.numFailedTests + r.numRuntimeErrorTestSuites === 0)
      exits.push(`tier ${t}: its command exited ${run.rc} although no test failed (see "== ${t} tests" above)`);
    s += r.numPendingTests + r.numTodoTests;
    lines.push(
      `tier ${t}: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests} skipped (${r.numTotalTestSuites} suites${wall})`,
    );
    // Each failure in one line (file, test, first line of the message, where, first diff lines).
    for (const x of r.testResults) {
      if (x.status === 'failed' && x.assertionResults.length === 0)
        failures.push(`${t}: ${rel(x.name)}: ${firstLine(String(x.message).split('\n'))}`);
      for (const a of x.assertionResults.filter((y) => y.status === 'failed'))
        failures.push(`${t}: ${rel(x.name)} › ${a.fullName}: ${detail(a.failureMessages[0])}`);
    }
  }
  for (const l of failures.slice(0, 40)) lines.push(`FAILED ${l}`);
  if (failures.length > 40) lines.push(`FAILED … and ${failures.length - 40} more`);
  for (const l of exits) lines.push(`FAILED ${l}`);
  lines.push(`tests: ${p} passed, ${f} failed, ${s} skipped`);
  return { lines, passed: p, failed: f, skipped: s, otherFailures: exits.length };
}

module.exports = { summarize, whereStopped, TIERS };

if (require.main === module) {
  const out = process.argv[2];
  if (!out) {
    console.error('usage: node scripts/suite-summary.cjs OUT_DIR');
    process.exit(2);
  }
  for (const l of summarize(out).lines) console.log(l);
}
