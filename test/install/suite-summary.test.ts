/**
 * The suite's closing summary (scripts/suite-summary.cjs) and the progress reporter it reads
 * (scripts/progress-reporter.cjs): a tier that scripts/test.sh stopped at its time limit leaves no
 * jest result, and the summary must still count it as a failure and name the test that was running.
 */
import { mkdtempSync, writeFileSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(import.meta.url);
const { summarize } = require(path.join(repo, 'scripts/suite-summary.cjs')) as {
  summarize(
    out: string,
    cwd?: string,
  ): { lines: string[]; passed: number; failed: number; skipped: number; otherFailures: number };
};
const ProgressReporter = require(path.join(repo, 'scripts/progress-reporter.cjs')) as new (
  g: unknown,
  o: { file: string },
) => {
  onTestFileStart(t: { path: string }): void;
  onTestCaseStart(t: { path: string }, i: { fullName: string }): void;
  onTestCaseResult(t: { path: string }, r: { status: string; fullName: string; duration?: number }): void;
  onTestFileResult(t: { path: string }, r: { numFailingTests: number }): void;
};

/** A jest --json result with `passed` passing tests in one suite. */
const jestJson = (passed: number, failed: { name: string; message: string }[] = []) =>
  JSON.stringify({
    numPassedTests: passed,
    numFailedTests: failed.length,
    numRuntimeErrorTestSuites: 0,
    numPendingTests: 0,
    numTodoTests: 0,
    numTotalTestSuites: 1,
    testResults: [
      {
        name: `${repo}/x.test.ts`,
        status: failed.length ? 'failed' : 'passed',
        message: '',
        assertionResults: failed.map((f) => ({ status: 'failed', fullName: f.name, failureMessages: [f.message] })),
      },
    ],
  });

describe('suite summary', () => {
  let out: string;
  beforeEach(() => {
    out = mkdtempSync(path.join(os.tmpdir(), 'sealnet-summary-'));
    for (const t of ['unit', 'kernel', 'k8s', 'image', 'cluster']) {
      writeFileSync(path.join(out, `${t}.json`), jestJson(10));
      writeFileSync(path.join(out, `${t}.run`), 'rc=0 seconds=12 limit=900');
    }
    mkdirSync(path.join(out, 'vm'));
    writeFileSync(path.join(out, 'vm/jest.json'), jestJson(3));
  });
  afterEach(() => rmSync(out, { recursive: true, force: true }));

  it('names a failed step outside the tiers and a tier that exited non-zero with every test passed', () => {
    writeFileSync(path.join(out, 'e2e.json'), jestJson(10));
    writeFileSync(path.join(out, 'e2e.run'), 'rc=0 seconds=12 limit=2100');
    const clean = summarize(out, repo);
    expect(clean.otherFailures).toBe(0);
    expect(clean.lines.filter((l) => l.startsWith('FAILED'))).toEqual([]);
    writeFileSync(path.join(out, 'steps.failed'), 'format\nagent image (npm run image)\n');
    writeFileSync(path.join(out, 'k8s.run'), 'rc=1 seconds=12 limit=900');
    const r = summarize(out, repo);
    expect(r.lines.filter((l) => l.startsWith('FAILED'))).toEqual([
      'FAILED step format failed (its output is above, under "== format")',
      'FAILED step agent image (npm run image) failed (its output is above, under "== agent image (npm run image)")',
      'FAILED tier k8s: its command exited 1 although no test failed (see "== k8s tests" above)',
    ]);
    expect(r.otherFailures).toBe(3);
    // The tests' own count stays what the tests said; the closing line is still last.
    expect(r.failed).toBe(0);
    expect(r.lines.at(-1)).toBe(`tests: ${r.passed} passed, 0 failed, 0 skipped`);
  });

  it('a tier stopped at its limit is a failure named with the test the progress file shows running', () => {
    // The reporter as jest drives it: one file done, a second one hanging in its second test.
    const r = new ProgressReporter({}, { file: path.join(out, 'e2e.progress') });
    const a = { path: `${repo}/test/e2e/a.e2e.test.ts` };
    const b = { path: `${repo}/test/e2e/b.e2e.test.ts` };
    r.onTestFileStart(a);
    r.onTestCaseStart(a, { fullName: 'a one' });
    r.onTestCaseResult(a, { status: 'passed', fullName: 'a one', duration: 5 });
    r.onTestFileResult(a, { numFailingTests: 0 });
    r.onTestFileStart(b);
    r.onTestCaseStart(b, { fullName: 'b first' });
    r.onTestCaseResult(b, { status: 'passed', fullName: 'b first', duration: 7 });
    r.onTestCaseStart(b, { fullName: 'b hangs' });
    expect(readFileSync(path.join(out, 'e2e.progress'), 'utf8')).not.toContain(repo);
    writeFileSync(path.join(out, 'e2e.run'), 'rc=124 seconds=2100 limit=2100');

    const s = summarize(out, repo);
    expect(s.passed).toBe(53);
    expect(s.failed).toBe(1);
    expect(s.lines).toContain('tier e2e: no result file (stopped at 2100 s, 2100 s)');
    const failed = s.lines.filter((l) => l.startsWith('FAILED'));
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatch(
      /^FAILED e2e: stopped at its time limit of 2100 s: running: test\/e2e\/b\.e2e\.test\.ts › b hangs \(started [^)]+\); last finished: passed test\/e2e\/b\.e2e\.test\.ts › b first/,
    );
    expect(s.lines.at(-1)).toBe('tests: 53 passed, 1 failed, 0 skipped');
  });

  it('a tier killed after its limit (137) counts the same; one that crashed is a failure without a limit', () => {
    writeFileSync(path.join(out, 'e2e.json'), jestJson(10));
    writeFileSync(path.join(out, 'e2e.run'), 'rc=0 seconds=800 limit=2100');
    writeFileSync(path.join(out, 'cluster.run'), 'rc=137 seconds=1530 limit=1500');
    rmSync(path.join(out, 'cluster.json'));
    rmSync(path.join(out, 'vm/jest.json'));
    writeFileSync(path.join(out, 'vm.run'), 'rc=125 seconds=40 limit=1800');
    const s = summarize(out, repo);
    expect(s.failed).toBe(2);
    expect(s.lines).toContain('tier vm: no result file (runner crashed, 40 s)');
    expect(s.lines.find((l) => l.startsWith('FAILED cluster:'))).toBe(
      'FAILED cluster: stopped at its time limit of 1500 s: no progress file',
    );
  });

  it('a tier not started because the budget was spent is a failure, and failures inside tiers stay listed', () => {
    writeFileSync(path.join(out, 'e2e.json'), jestJson(9, [{ name: 'x fails', message: 'Error: boom' }]));
    writeFileSync(path.join(out, 'e2e.run'), 'rc=1 seconds=800 limit=2100');
    rmSync(path.join(out, 'vm/jest.json'));
    writeFileSync(path.join(out, 'vm.notrun'), "the suite's time budget (SEALNET_SUITE_BUDGET_S=5100 s) was spent");
    const s = summarize(out, repo);
    expect(s.failed).toBe(2);
    expect(s.lines).toContain('FAILED e2e: x.test.ts › x fails: Error: boom');
    expect(s.lines).toContain("FAILED vm: not run: the suite's time budget (SEALNET_SUITE_BUDGET_S=5100 s) was spent");
    expect(s.lines).toContain('tier e2e: 9 passed, 1 failed, 0 skipped (1 suites, 800 s)');
  });
});
