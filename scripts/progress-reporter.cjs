// A jest reporter that appends one line per event to a progress file (the reporter option `file`,
// else $SEALNET_PROGRESS_FILE): which test file started, each test's result, which file ended.
// scripts/test.sh runs every tier under a time limit; when a tier is stopped, its jest writes no
// --json result, and this file is what says where it was: the test file still running and the
// last test that finished (scripts/suite-summary.cjs prints both).
'use strict';
const fs = require('fs');

/** A test's name as one tab-separated field: no tabs or newlines, at most 300 characters. */
const field = (name) =>
  String(name)
    .replace(/[\t\n]/g, ' ')
    .slice(0, 300);

class ProgressReporter {
  constructor(_globalConfig, options = {}) {
    this.file = options.file || process.env.SEALNET_PROGRESS_FILE || '';
    this.root = process.cwd() + '/';
  }
  write(kind, path, extra = '') {
    if (!this.file) return;
    const rel = String(path).replace(this.root, '');
    const line = `${new Date().toISOString()}\t${kind}\t${rel}${extra ? '\t' + extra : ''}\n`;
    try {
      fs.appendFileSync(this.file, line);
    } catch {
      // progress is a diagnostic: never fail a test run over it
    }
  }
  onTestFileStart(test) {
    this.write('start', test.path);
  }
  onTestCaseStart(test, info) {
    this.write('case', test.path, field(info.fullName));
  }
  onTestCaseResult(test, result) {
    this.write(result.status, test.path, `${field(result.fullName)}\t${result.duration ?? ''}`);
  }
  onTestFileResult(test, result) {
    this.write('end', test.path, `${result.numFailingTests} failed`);
  }
}
module.exports = ProgressReporter;
