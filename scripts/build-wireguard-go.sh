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
# Integrity: only versions whose module hash is recorded below are built.
# Before the build the module's hash as the go command holds it (`go mod download -json`) and the
# hash of its extracted source in the module cache (the same dirhash `go mod verify` computes)
# must both equal the recorded one; after it, the hash embedded in the binary must too. The
# binary's sha256 is kept beside it, and a cached binary whose sha256 differs is rebuilt.
# To allow another version: record its go.sum hash here (`go mod download -json
# golang.zx2c4.com/wireguard@<v>` prints it as "Sum", after checking it against the Go checksum
# database, the default GOSUMDB; do not record a hash obtained with GOSUMDB=off or GONOSUMDB).
#
# Exit status: 0 built or reused (prints the path), 3 refused on integrity (unrecorded version,
# hash mismatch), 1 anything else (no go, no network).
#
# Idempotent: skips the build when the binary exists, its embedded module version and hash
# (`go version -m`) are the requested ones, and its sha256 is the one recorded when it was built.
set -euo pipefail

MODULE=golang.zx2c4.com/wireguard
# Newest on the proxy when pinned (`scripts/build-wireguard-go.sh --latest` prints the current one).
PINNED=v0.0.0-20260522210424-ecfc5a8d5446
VERSION="${WIREGUARD_GO_VERSION:-$PINNED}"

# Module hashes (h1, as in go.sum) of the versions this script may build, one "version hash" a
# line; each checked against the Go checksum database when it was recorded.
RECORDED_SUMS="
v0.0.0-20260522210424-ecfc5a8d5446 h1:cqHQ3AycTHvM2R7ikgyX57D+XvtcSnGylsLkOVhta/w=
"

fail() {
  echo "build-wireguard-go: $*" >&2
  exit 1
}
# An integrity refusal exits 3: setup.sh never falls back to another wireguard-go on that.
refuse() {
  echo "build-wireguard-go: $*" >&2
  exit 3
}

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

want_sum="$(awk -v v="$VERSION" '$1 == v { print $2; exit }' <<<"$RECORDED_SUMS")"
[[ -n "$want_sum" ]] || refuse "no module hash is recorded for $MODULE@$VERSION (WIREGUARD_GO_VERSION); refusing to build it. Record its go.sum hash in RECORDED_SUMS of this script after checking it against the Go checksum database"

installed() {
  # `go version -m` prints "\tmod\t<module>\t<version>\t<sum>" for the main module.
  { go version -m "$1" 2>/dev/null || true; } | awk -v m="$MODULE" '$1 == "mod" && $2 == m { print $3, $4; exit }'
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Go's dirhash "h1" of an extracted module directory: base64 of the sha256 of the lines
# "<sha256 hex>  <module>@<version>/<path>\n" over every file, sorted by path. `go mod verify`
# compares the same hash; `go install` trusts an extracted directory without checking it.
dir_h1() {
  local dir="$1" prefix="$2" f summary=""
  summary="$(cd "$dir" && find . -type f -print | sed 's|^\./||' | LC_ALL=C sort | while IFS= read -r f; do
    printf '%s  %s/%s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "$prefix" "$f"
  done)"
  local hex
  hex="$(printf '%s\n' "$summary" | sha256sum | cut -d' ' -f1)"
  printf 'h1:%s' "$(printf "$(sed 's/../\\x&/g' <<<"$hex")" | base64 -w0)"
}

if [[ -x "$bin" && "$(installed "$bin")" == "$VERSION $want_sum" ]]; then
  if [[ -f "$bin.sha256" && "$(cat "$bin.sha256")" == "$(sha256_of "$bin")" ]]; then
    echo "$bin"
    exit 0
  fi
  echo "build-wireguard-go: $bin does not match the sha256 recorded when it was built; rebuilding it" >&2
fi

# The module as the go command holds it: its hash (checked against the checksum database
# when first downloaded, and here against the recorded one) and its extracted source.
info="$(cd "$work" && GOTOOLCHAIN="${GOTOOLCHAIN:-local}" go mod download -json "$MODULE@$VERSION")" || fail "cannot download $MODULE@$VERSION: $info"
got_sum="$(sed -n 's/^\s*"Sum": "\(.*\)",\?$/\1/p' <<<"$info")"
moddir="$(sed -n 's/^\s*"Dir": "\(.*\)",\?$/\1/p' <<<"$info")"
[[ "$got_sum" == "$want_sum" ]] || refuse "$MODULE@$VERSION has module hash '$got_sum', recorded $want_sum: refusing to build it (a changed module or a tampered module cache)"
[[ -d "$moddir" ]] || fail "go mod download reported no directory for $MODULE@$VERSION"
got_dir="$(dir_h1 "$moddir" "$MODULE@$VERSION")"
[[ "$got_dir" == "$want_sum" ]] || refuse "the extracted source of $MODULE@$VERSION in $moddir hashes to $got_dir, recorded $want_sum: the module cache was modified; refusing to build (go clean -modcache, then retry)"

mkdir -p "$bindir"
# Build outside the repo so no go.mod/go.work of ours is picked up; static binary, no cgo.
# `go install` names the binary after the module's last path element ("wireguard"): install
# into a scratch GOBIN and move it into place atomically under the name the tools expect.
(
  cd "$work"
  GOBIN="$work/bin" CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN="${GOTOOLCHAIN:-local}" \
    go install "$MODULE@$VERSION" >&2
)
got="$(installed "$work/bin/wireguard")"
[[ "$got" == "$VERSION $want_sum" ]] || refuse "built binary reports module '$got', wanted '$VERSION $want_sum'"
sha256_of "$work/bin/wireguard" >"$work/bin/wireguard.sha256"
mv -f "$work/bin/wireguard" "$bin.tmp"
mv -f "$bin.tmp" "$bin"
mv -f "$work/bin/wireguard.sha256" "$bin.sha256"
echo "$bin"
