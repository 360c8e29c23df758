#!/usr/bin/env bash
# The whole test suite, every tier (DESIGN.md "Test tiers"): typecheck, unit, kernel objects in
# scratch namespaces, and the namespace cluster end to end. Needs root for the last two.
# Prints one closing line "tests: N passed, N failed, N skipped" summed over all tiers.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the kernel and e2e tiers build network namespaces and need root; run as root (sudo)" >&2
  exit 2
fi
bash scripts/setup.sh || { echo "setup failed" >&2; exit 1; }
out=$(mktemp -d /tmp/sealnet-test.XXXXXX)
trap 'rm -rf "$out"' EXIT
status=0
echo "== typecheck"; npm run -s typecheck || status=1
# Formatting (prettier, pinned): a file prettier would change fails the suite, named.
echo "== format"; npx prettier --check "**/*.{ts,mjs,js,json}" || status=1
echo "== build"; npm run -s build || status=1
# The Kubernetes tier needs kube-apiserver, etcd, kubectl and helm: built from the Go module
# proxy once per machine (about 15 minutes cold), cached in /var/cache/sealnet/k8s-bin.
echo "== Kubernetes binaries"; bash scripts/k8s-binaries.sh >/dev/null || status=1
# The real-cluster tier (issue 15): kubelet, controller-manager, scheduler, containerd, runc.
echo "== cluster binaries"; bash scripts/cluster-binaries.sh >/dev/null || status=1
for tier in unit kernel e2e k8s; do
  echo "== $tier tests"
  NODE_OPTIONS=--experimental-vm-modules npx jest --runInBand --json --outputFile "$out/$tier.json" "$@" --selectProjects "$tier" || status=1
done
# --- the agent image (issue 15): builds it (base layer cached in /var/cache/sealnet/image), checks
# the digest is stable, runs it unpacked, reads it with skopeo. Separate jest project 'image'.
echo "== image tests"
NODE_OPTIONS=--experimental-vm-modules npx jest --runInBand --json --outputFile "$out/image.json" "$@" --selectProjects image || status=1
# --- the real-cluster tier (issue 15): kubelets, containerd, runc, a routed CNI, and the agent image
# the user would build (`npm run image` into dist-image/; the image tests above build into scratch
# folders of their own).
echo "== agent image (npm run image)"; npm run -s image >/dev/null || status=1
echo "== cluster tests"
NODE_OPTIONS=--experimental-vm-modules npx jest --runInBand --json --outputFile "$out/cluster.json" "$@" --selectProjects cluster || status=1
echo "== kernel tier in a qemu guest (kernel WireGuard, XFRM ESP)"
SEALNET_VM_OUT="$out/vm" npm run -s test:kernel || status=1
node -e '
  const fs = require("fs"); let p = 0, f = 0, s = 0; const failures = [];
  const { failureDetail } = require("./scripts/failure-line.cjs");
  const detail = (m) => failureDetail(m, (x) => x.replace(process.cwd() + "/", ""));
  for (const t of ["unit", "kernel", "e2e", "k8s", "image", "cluster", "vm"]) {
    const file = process.argv[1] + "/" + (t === "vm" ? "vm/jest.json" : t + ".json");
    if (!fs.existsSync(file)) { console.log(`tier ${t}: no result file (runner crashed)`); f++; continue; }
    const r = JSON.parse(fs.readFileSync(file, "utf8"));
    p += r.numPassedTests; f += r.numFailedTests + r.numRuntimeErrorTestSuites; s += r.numPendingTests + r.numTodoTests;
    console.log(`tier ${t}: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests} skipped (${r.numTotalTestSuites} suites)`);
    // Each failure in one line (file, test, first line of the message): a CI log that keeps only
    // its tail still names what failed.
    for (const s of r.testResults) {
      if (s.status === "failed" && s.assertionResults.length === 0)
        failures.push(`${t}: ${s.name.replace(process.cwd() + "/", "")}: ${String(s.message).split("\n").find((l) => l.trim() !== "")?.trim().slice(0, 300)}`);
      for (const a of s.assertionResults.filter((x) => x.status === "failed"))
        failures.push(`${t}: ${s.name.replace(process.cwd() + "/", "")} › ${a.fullName}: ${detail(a.failureMessages[0])}`);
    }
  }
  for (const l of failures.slice(0, 40)) console.log(`FAILED ${l}`);
  if (failures.length > 40) console.log(`FAILED … and ${failures.length - 40} more`);
  console.log(`tests: ${p} passed, ${f} failed, ${s} skipped`);
' "$out"
exit $status
