#!/usr/bin/env bash
# The kernel tier's guest suite, run inside the qemu guest by `npm run test:kernel`
# (test/vm/run.sh). jest's own pass/fail lines stream to the console; the exit code is jest's.
set -uo pipefail
cd "$(dirname "$0")/../.."
[ "${SEALNET_VM_GUEST:-}" = 1 ] || { echo "test/vm/suite.sh runs inside the guest: use npm run test:kernel" >&2; exit 2; }

# The progress reporter's lines reach the host with $SEALNET_VM_OUT: when the host stops the guest
# at its time limit, they name the test that was running (scripts/suite-summary.cjs).
SEALNET_PROGRESS_FILE="$SEALNET_VM_OUT/progress" NODE_OPTIONS=--experimental-vm-modules node_modules/.bin/jest \
  --ci --runInBand --forceExit --verbose --selectProjects kernel \
  --reporters default --reporters ./scripts/progress-reporter.cjs \
  --json --outputFile "$SEALNET_VM_OUT/jest.json" \
  wireguard/driver.kernel.test.ts test/vm/
rc=$?
# In the guest every capability is there: a skipped test means the tier proved less than it
# claims, so it fails the run.
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`kernel-vm: ${r.numPassedTests} passed, ${r.numFailedTests + r.numRuntimeErrorTestSuites} failed, ${skipped} skipped`);
  // What failed, one line each, last: a CI log that keeps only its tail still names them; with
  // where in the test file and the first lines of the diff (as scripts/test.sh prints them).
  const rel = (p) => p.replace(/^.*?(test\/|wireguard\/)/, "$1");
  const { failureDetail } = require("./scripts/failure-line.cjs");
  const detail = (m) => failureDetail(m, rel);
  for (const s of r.testResults)
    for (const a of s.assertionResults.filter((x) => x.status === "failed"))
      console.log(`kernel-vm: FAILED ${rel(s.name)} › ${a.fullName}: ${detail(a.failureMessages[0])}`);
  if (skipped > 0) { console.log("kernel-vm: FAIL: tests were skipped inside the guest"); process.exit(1); }
' "$SEALNET_VM_OUT/jest.json" || { echo "kernel-vm: FAIL (no jest result file, or skipped tests)"; rc=1; }
exit $rc
