#!/usr/bin/env bash
# Builds wireguard-go from the Go module proxy into <repo>/.cache/bin and prints the binary's path.
#
# Why: Debian's wireguard-go (0.0.20220316) predates upstream's batching and GSO/GRO work (2023).
# Measured with iperf3 between two network namespaces on a 2-vCPU VM (one TCP stream, busy host):
# Debian's 540-730 Mbit/s, this build 1620-1980 Mbit/s. The module has no release tags, so a
# pseudo-version is pinned.
#
# Usage: scripts/build-wireguard-go.sh            build the pinned version (no-op if already built)
#        scripts/build-wireguard-go.sh --latest   print the newest version on the proxy, build nothing
#        WIREGUARD_GO_VERSION=v... scripts/...    build another version
#
# Idempotent: skips the build when the binary exists and its embedded module version
# (`go version -m`) equals the requested one.
set -euo pipefail

MODULE=golang.zx2c4.com/wireguard
# Newest on the proxy when pinned (`scripts/build-wireguard-go.sh --latest` prints the current one).
PINNED=v0.0.0-20260522210424-ecfc5a8d5446
VERSION="${WIREGUARD_GO_VERSION:-$PINNED}"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bindir="$repo/.cache/bin"
bin="$bindir/wireguard-go"

if ! command -v go >/dev/null 2>&1; then
  echo "build-wireguard-go: 'go' not found on PATH" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ "${1:-}" == "--latest" ]]; then
  # `go list -m -versions` prints no versions for this module (no tags): ask for @latest.
  (cd "$work" && go list -m -f '{{.Version}}' "$MODULE@latest")
  exit 0
fi

installed_version() {
  # `go version -m` prints "\tmod\t<module>\t<version>\t<sum>" for the main module.
  { go version -m "$1" 2>/dev/null || true; } | awk -v m="$MODULE" '$1 == "mod" && $2 == m { print $3; exit }'
}

if [[ -x "$bin" && "$(installed_version "$bin")" == "$VERSION" ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$bindir"
# Build outside the repo so no go.mod/go.work of ours is picked up; static binary, no cgo.
# `go install` names the binary after the module's last path element ("wireguard"): install
# into a scratch GOBIN and move it into place atomically under the name the tools expect.
(
  cd "$work"
  GOBIN="$work/bin" CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN="${GOTOOLCHAIN:-local}" \
    go install "$MODULE@$VERSION" >&2
)
mv -f "$work/bin/wireguard" "$bin.tmp"
mv -f "$bin.tmp" "$bin"

got="$(installed_version "$bin")"
if [[ "$got" != "$VERSION" ]]; then
  echo "build-wireguard-go: built binary reports version '$got', wanted '$VERSION'" >&2
  exit 1
fi
echo "$bin"
