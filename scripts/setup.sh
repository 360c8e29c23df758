#!/usr/bin/env bash
# Installs what sealnet needs to build and to run its test tiers, then builds it.
# Idempotent: every step checks first and does nothing when already done.
#
#   1. system packages (apt): `apt-get update` only when something is missing
#   2. `npm ci --ignore-scripts` when node_modules is missing or from another package-lock.json,
#      then netlink built from source (scripts/install-node-modules.sh)
#   3. `scripts/build-wireguard-go.sh` (the pinned wireguard-go, module hash checked)
#   4. BPF objects (scripts/build-bpf.sh) and Node-API addons (scripts/build-addons.sh)
#   5. `npm run build`
#
# Usage: scripts/setup.sh            (as root, or with sudo available)
# Env:   SEALNET_SKIP_APT=1          skip step 1 (e.g. a prepared CI image)
#        SEALNET_REQUIRE_WG_BUILD=1  fail when building wireguard-go fails (default: warn and
#                                    use the distribution's wireguard-go)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

log() { printf 'setup: %s\n' "$*" >&2; }

# libseccomp-dev and containernetworking-plugins serve the real-cluster tier: runc links libseccomp
# statically (scripts/cluster-binaries.sh); the routed CNI uses Debian's bridge and host-local plugins.
PACKAGES=(wireguard-tools wireguard-go iproute2 iperf3 tcpdump iputils-ping clang llvm libbpf-dev bpftool linux-libc-dev make g++ python3
  libseccomp-dev containernetworking-plugins)

as_root() {
  if [[ "$(id -u)" == 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    log "need root (or sudo) for: $*"
    return 1
  fi
}

# --- 1. system packages -------------------------------------------------------------------------
if [[ "${SEALNET_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]]; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]} > 0)); then
    if ! command -v apt-get >/dev/null 2>&1; then
      log "missing packages (${missing[*]}) and no apt-get: install them with your package manager"
      exit 1
    fi
    log "installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  else
    log "system packages: all present"
  fi
fi

# --- 2. node modules ----------------------------------------------------------------------------
# With every package's install scripts off; the one native dependency (netlink) is built from
# source explicitly (scripts/install-node-modules.sh says why).
bash scripts/install-node-modules.sh

# --- 3. pinned wireguard-go -----------------------------------------------------------------------
if [[ -f scripts/build-wireguard-go.sh ]]; then
  wg_status=0
  out="$(bash scripts/build-wireguard-go.sh)" || wg_status=$?
  if ((wg_status == 0)); then
    log "wireguard-go: $out"
  elif ((wg_status == 3)); then
    # An integrity refusal (unrecorded WIREGUARD_GO_VERSION, module hash mismatch) is never
    # papered over by falling back to another binary.
    log "wireguard-go refused (see above)"
    exit 1
  elif [[ "${SEALNET_REQUIRE_WG_BUILD:-0}" == 1 ]]; then
    log "building wireguard-go failed"
    exit 1
  else
    log "building wireguard-go failed; agents fall back to $(command -v wireguard-go || echo 'wireguard-go on PATH')"
  fi
fi

# --- 4. BPF objects and Node-API addons ------------------------------------------------------------
log "bpf: $(bash scripts/build-bpf.sh | tr '\n' ' ')"
log "addons: $(bash scripts/build-addons.sh | tr '\n' ' ')"

# --- 5. build -------------------------------------------------------------------------------------
log "npm run build"
npm run build
log "done"
