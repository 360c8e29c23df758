#!/usr/bin/env bash
# Fetches the Prometheus Operator's CRDs (PodMonitor, ServiceMonitor, PrometheusRule) from the
# Go module proxy with the machine's own `go`, for the k8s tier to install into its API server
# before applying the chart's monitoring objects (test/k8s/monitoring.k8s.test.ts). Prints the
# directory holding the three YAML files.
#
# The module github.com/prometheus-operator/prometheus-operator ships them under
# example/prometheus-operator-crd/. `go mod download` verifies the zip against the checksum
# database; this script also requires the module hash recorded below, so a proxy (or a GOFLAGS
# / GONOSUMDB setting) serving other content for the pinned version stops here, naming both
# hashes. Cached (about 4 MB of module zip, once): a second run copies nothing new.
set -euo pipefail

VERSION="v0.85.0"
MODULE="github.com/prometheus-operator/prometheus-operator"
# `go mod download -json` "Sum" of $MODULE@$VERSION (the go.sum h1: hash of the module zip).
SUM="h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s="
CRDS=(monitoring.coreos.com_podmonitors.yaml monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml)

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$repo/.cache/prometheus-operator-crds-$VERSION"

log() { echo "monitoring-crds: $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "'go' not found on PATH"
  exit 1
fi

json="$(cd / && GO111MODULE=on GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION")"
sum="$(sed -n 's/^\s*"Sum": "\(.*\)",\?$/\1/p' <<<"$json")"
dir="$(sed -n 's/^\s*"Dir": "\(.*\)",\?$/\1/p' <<<"$json")"
if [[ "$sum" != "$SUM" ]]; then
  log "$MODULE@$VERSION has module hash '$sum', expected $SUM: refusing to use it"
  exit 1
fi
mkdir -p "$out"
for f in "${CRDS[@]}"; do
  src="$dir/example/prometheus-operator-crd/$f"
  [[ -f "$src" ]] || { log "$MODULE@$VERSION has no example/prometheus-operator-crd/$f"; exit 1; }
  cp -f "$src" "$out/$f"
done
echo "$out"
