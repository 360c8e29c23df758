#!/usr/bin/env bash
# Builds the binaries of the Kubernetes API tier (DESIGN.md "Test tiers" 4) from the Go module
# proxy with the machine's own `go`, caches them, and prints their paths as shell assignments:
#
#   KUBE_APISERVER=/var/cache/sealnet/k8s-bin/kubernetes-v1.36.4/kube-apiserver
#   KUBECTL=/var/cache/sealnet/k8s-bin/kubernetes-v1.36.4/kubectl
#   ETCD=/var/cache/sealnet/k8s-bin/etcd-v3.6.8/etcd
#   HELM=/var/cache/sealnet/k8s-bin/helm-v3.22.0/helm
#
# Usage: scripts/k8s-binaries.sh          build what is missing (idempotent), print the paths
#        eval "$(scripts/k8s-binaries.sh)"
#
# Where: a machine-level cache ($SEALNET_K8S_CACHE, default /var/cache/sealnet/k8s-bin) so a
# fresh clone on the same machine (CI) does not rebuild; if that is not writable, the repo's
# ignored .cache/k8s-bin. Each tool lives in a directory keyed by its version; Go's own build
# and module caches make a rebuild after a version bump incremental.
#
# Why build instead of download: the machine reaches only the Go module proxy, Debian and npm.
#  - kube-apiserver, kubectl: k8s.io/kubernetes at a pinned tag. Its go.mod points the k8s.io/*
#    staging modules at ./staging/src, which the module zip does not contain, so a generated
#    wrapper module requires k8s.io/kubernetes and replaces every staging module with its
#    published v0.<minor>.<patch> twin (derived from the pinned go.mod, not hand-written).
#    Version strings are stamped with -X like upstream's hack/lib/version.sh (helm and kubectl
#    compare versions; an unstamped build reports v0.0.0-master).
#  - etcd: Debian bookworm ships 3.4.23, older than the 3.6 client kube-apiserver 1.36 is built
#    against, so etcd is built from go.etcd.io/etcd/server/v3 at the version k8s pins.
#  - helm: `go install helm.sh/helm/v3/cmd/helm@<pinned>` (its go.mod has no replace).
# First build on 2 cores: about 15 minutes (measured 14: kube-apiserver + kubectl 9, etcd 2,
# helm 3); cached: about 1 s.
#
# Integrity: every binary this script builds is recorded with its sha256
# in the cache's manifest.sha256 (sha256sum format, paths relative to the cache) at build time,
# and a cached binary is executed (even for --version) only when its sha256 matches its line
# there. One without a line (built before manifests existed) is rebuilt; one whose sha256 differs
# from its line was modified after the build: the script refuses to run anything and says which
# file to delete (a rebuild would hide the tampering).
set -euo pipefail

K8S_VERSION="${SEALNET_K8S_VERSION:-v1.36.4}"
ETCD_VERSION="${SEALNET_ETCD_VERSION:-v3.6.8}"
HELM_VERSION="${SEALNET_HELM_VERSION:-v3.22.0}"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
machine_cache="${SEALNET_K8S_CACHE:-/var/cache/sealnet/k8s-bin}"
repo_cache="$repo/.cache/k8s-bin"

log() { echo "k8s-binaries: $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "'go' not found on PATH"
  exit 1
fi

# The cache we build into: the machine's if we can write it, else the repo's.
if mkdir -p "$machine_cache" 2>/dev/null && [[ -w "$machine_cache" ]]; then
  cache="$machine_cache"
else
  cache="$repo_cache"
  mkdir -p "$cache"
fi

# One build at a time per cache (jest workers or two CI jobs may call this together).
exec 9>"$cache/.lock"
flock 9

# Reports whether the cached binary $1 (in cache $2) has a line in its cache's manifest (a
# mismatching line already stopped the script: see check_manifests).
verified() {
  local bin="$1" c="$2" rel
  rel="${bin#"$c"/}"
  if ! awk -v p="$rel" '$2 == p { found = 1 } END { exit !found }' "$c/manifest.sha256" 2>/dev/null; then
    log "$bin has no sha256 in $c/manifest.sha256 (built before manifests, or not by this script): rebuilding it"
    return 1
  fi
}

# Stops the script when a binary listed in a cache's manifest no longer has the recorded sha256.
check_manifests() {
  local c want rel got
  for c in "$machine_cache" "$repo_cache"; do
    [[ -f "$c/manifest.sha256" ]] || continue
    while read -r want rel; do
      [[ -e "$c/$rel" ]] || continue
      got="$(sha256sum "$c/$rel" | cut -d' ' -f1)"
      if [[ "$got" != "$want" ]]; then
        log "$c/$rel has sha256 $got, but $want was recorded when this script built it: the binary was modified after the build. Refusing to run it; delete it to have it rebuilt"
        exit 1
      fi
    done <"$c/manifest.sha256"
  done
}

# Records the sha256 of freshly built binaries (absolute paths under $cache) in the manifest,
# replacing their old lines. Called with the build lock held.
record() {
  local m="$cache/manifest.sha256" b rel tmp
  tmp="$(mktemp "$cache/.manifest.XXXXXX")"
  [[ -f "$m" ]] && cp "$m" "$tmp"
  for b in "$@"; do
    rel="${b#"$cache"/}"
    awk -v p="$rel" '$2 != p' "$tmp" >"$tmp.new" && mv -f "$tmp.new" "$tmp"
    printf '%s  %s\n' "$(sha256sum "$b" | cut -d' ' -f1)" "$rel" >>"$tmp"
  done
  mv -f "$tmp" "$m"
}

# Reports whether $1 is an executable whose version output contains $2.
has_version() {
  local bin="$1" want="$2"
  shift 2
  [[ -x "$bin" ]] || return 1
  # Not `| grep -q`: grep exits at the first match, the writer may get SIGPIPE, and pipefail
  # would turn that into a failure.
  local out
  out="$("$bin" "$@" 2>/dev/null)" || return 1
  [[ "$out" == *"$want"* ]]
}

# Prints the first of the candidate paths (machine cache, then repo cache) holding tool $1 of
# version $2 in directory $3; returns 1 if neither does. Remaining args: the version command.
find_cached() {
  local tool="$1" want="$2" dir="$3"
  shift 3
  local c
  for c in "$machine_cache" "$repo_cache"; do
    [[ -e "$c/$dir/$tool" ]] || continue
    if verified "$c/$dir/$tool" "$c" && has_version "$c/$dir/$tool" "$want" "$@"; then
      echo "$c/$dir/$tool"
      return 0
    fi
  done
  return 1
}

check_manifests

goenv=(CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" GOTOOLCHAIN="${GOTOOLCHAIN:-local}")

build_kubernetes() {
  local out="$cache/kubernetes-$K8S_VERSION" src="$cache/src/kubernetes-$K8S_VERSION"
  mkdir -p "$src" "$out"
  log "building kube-apiserver and kubectl $K8S_VERSION (first time: about 10 min on 2 cores)"
  local gomod
  gomod="$(cd / && env "${goenv[@]}" GO111MODULE=on go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')"
  [[ -f "$gomod" ]] || { log "cannot download k8s.io/kubernetes@$K8S_VERSION"; return 1; }
  local staging="v0.${K8S_VERSION#v1.}"
  local godirective
  godirective="$(awk '$1 == "go" { print $2; exit }' "$gomod")"
  {
    echo "// Generated by scripts/k8s-binaries.sh: builds k8s.io/kubernetes $K8S_VERSION binaries."
    echo "module sealnet.local/k8s-build"
    echo
    echo "go $godirective"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    # Every `k8s.io/x => ./staging/src/k8s.io/x` of the pinned go.mod becomes `k8s.io/x => k8s.io/x v0.N.P`.
    sed -n 's#^\s*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*$#\t\1 => \1 '"$staging"'#p' "$gomod"
    echo ")"
  } >"$src/go.mod"
  rm -f "$src/go.sum"
  (
    cd "$src"
    env "${goenv[@]}" go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION" >&2
    local minor="${K8S_VERSION#v1.}"
    minor="${minor%%.*}"
    local ld="-s -w" pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
      ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    env "${goenv[@]}" go build -p 2 -ldflags "$ld" -o "$out/.tmp/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl >&2
  )
  mv -f "$out/.tmp/kube-apiserver" "$out/kube-apiserver"
  mv -f "$out/.tmp/kubectl" "$out/kubectl"
  rmdir "$out/.tmp"
  record "$out/kube-apiserver" "$out/kubectl"
}

build_etcd() {
  local out="$cache/etcd-$ETCD_VERSION" src="$cache/src/etcd-$ETCD_VERSION"
  mkdir -p "$src" "$out"
  log "building etcd $ETCD_VERSION"
  # A wrapper module again: go.etcd.io/etcd/server/v3 replaces its sibling modules with ../,
  # which `go install pkg@version` refuses; as a dependency its replaces are ignored.
  printf '// Generated by scripts/k8s-binaries.sh: builds etcd %s.\nmodule sealnet.local/etcd-build\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" "$ETCD_VERSION" >"$src/go.mod"
  rm -f "$src/go.sum"
  (
    cd "$src"
    env "${goenv[@]}" go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
    env "${goenv[@]}" go build -p 2 -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3 >&2
  )
  mv -f "$out/etcd.tmp" "$out/etcd"
  record "$out/etcd"
}

build_helm() {
  local out="$cache/helm-$HELM_VERSION" work
  mkdir -p "$out"
  log "building helm $HELM_VERSION"
  work="$(mktemp -d)"
  (
    cd "$work"
    env "${goenv[@]}" GOBIN="$work/bin" go install -p 2 \
      -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
      "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  )
  mv -f "$work/bin/helm" "$out/helm"
  rm -rf "$work"
  record "$out/helm"
}

apiserver="$(find_cached kube-apiserver "Kubernetes $K8S_VERSION" "kubernetes-$K8S_VERSION" --version)" &&
  kubectl="$(find_cached kubectl "$K8S_VERSION" "kubernetes-$K8S_VERSION" version --client)" || {
  build_kubernetes
  apiserver="$cache/kubernetes-$K8S_VERSION/kube-apiserver"
  kubectl="$cache/kubernetes-$K8S_VERSION/kubectl"
}
etcd="$(find_cached etcd "etcd Version: ${ETCD_VERSION#v}" "etcd-$ETCD_VERSION" --version)" || {
  build_etcd
  etcd="$cache/etcd-$ETCD_VERSION/etcd"
}
helm="$(find_cached helm "$HELM_VERSION" "helm-$HELM_VERSION" version --short)" || {
  build_helm
  helm="$cache/helm-$HELM_VERSION/helm"
}

# Verify what we built reports the pinned versions (a silent mismatch would make the tier test
# something other than what it names).
has_version "$apiserver" "Kubernetes $K8S_VERSION" --version || { log "$apiserver does not report $K8S_VERSION"; exit 1; }
has_version "$kubectl" "$K8S_VERSION" version --client || { log "$kubectl does not report $K8S_VERSION"; exit 1; }
has_version "$etcd" "etcd Version: ${ETCD_VERSION#v}" --version || { log "$etcd does not report $ETCD_VERSION"; exit 1; }
has_version "$helm" "$HELM_VERSION" version --short || { log "$helm does not report $HELM_VERSION"; exit 1; }

echo "KUBE_APISERVER=$apiserver"
echo "KUBECTL=$kubectl"
echo "ETCD=$etcd"
echo "HELM=$helm"
