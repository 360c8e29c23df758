#!/usr/bin/env bash
# Builds sealnet's Node-API addons (today: ipsec/addon, the NETLINK_XFRM transport) with the
# node-gyp from devDependencies, offline: the Node headers come from the nodejs package
# (/usr/include/node), never from a download.
#
# Idempotent: skips the build when the .node file is newer than binding.gyp, every source
# under src/, and the node binary it was built for. `--force` rebuilds anyway.
# Prints the path of each addon.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
force=0
[[ "${1:-}" == "--force" ]] && force=1

gyp="$repo/node_modules/.bin/node-gyp"
if [[ ! -x "$gyp" ]]; then
  echo "build-addons: $gyp not found; run 'npm ci' first (node-gyp is a devDependency)" >&2
  exit 1
fi
nodedir_args=()
if [[ -f /usr/include/node/node_api.h ]]; then
  nodedir_args=(--nodedir=/usr)
elif [[ -n "${npm_config_nodedir:-}" ]]; then
  nodedir_args=(--nodedir="$npm_config_nodedir")
else
  echo "build-addons: no Node headers at /usr/include/node (Debian package nodejs) and npm_config_nodedir unset" >&2
  exit 1
fi

build_one() {
  local dir="$1" target="$2"
  local out="$dir/build/Release/$target.node"
  if [[ $force == 0 && -f "$out" ]]; then
    local newer
    newer="$(find "$dir/binding.gyp" "$dir/src" "$(command -v node)" -newer "$out" -print -quit 2>/dev/null || true)"
    if [[ -z "$newer" ]]; then
      echo "$out"
      return 0
    fi
  fi
  # node-gyp prints its progress on stderr; keep stdout for the result path.
  "$gyp" rebuild -C "$dir" "${nodedir_args[@]}" >&2
  if [[ ! -f "$out" ]]; then
    echo "build-addons: node-gyp finished but $out is missing" >&2
    exit 1
  fi
  echo "$out"
}

build_one "$repo/ipsec/addon" sealnet_xfrm
# routing/bpf/addon: bpf(2) map commands on the steering program's pinned maps (routing/bpf/syscall.ts).
build_one "$repo/routing/bpf/addon" sealnet_bpf
