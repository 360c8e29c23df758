#!/usr/bin/env bash
# Installs node_modules from package-lock.json with every package's install scripts off, then
# builds the one native dependency (netlink) from its source explicitly. Step 2 of setup.sh.
#
# Why: `npm ci` as root runs the preinstall/install/postinstall scripts of
# every package in the tree, so one compromised package owns the machine that builds sealnet
# (`allowScripts` in package.json was never an npm field: it restricted nothing). With
# --ignore-scripts nothing runs; the packages that would have wanted to run something are listed
# by the lock file (`hasInstallScript`), and each must be handled below by name, else this
# script fails and names it.
#
# netlink's install script is `node-gyp-build`: it keeps the prebuilt binary shipped in the npm
# tarball (prebuilds/linux-x64) when that loads, else runs `node-gyp rebuild`. We run the
# rebuild ourselves, from the package's own source (src/binding.cc), with the project's node-gyp
# and the local Node headers (as scripts/build-addons.sh does: no header download), so no prebuilt
# binary from the registry is ever loaded: node-gyp-build's loader prefers build/Release, and this
# script checks that it resolves there.
#
# Idempotent: npm ci only when node_modules is missing or was installed from another lock file
# (sha256 kept in node_modules/.sealnet-setup-lock-sha256); netlink only when its build is missing.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

log() { printf 'install-node-modules: %s\n' "$*" >&2; }

# Packages whose install script we replace with an explicit step below.
HANDLED_INSTALL_SCRIPTS="node_modules/netlink"

# Every package of the lock file that declares an install script must be one we handle.
unhandled="$(node -e '
  const lock = require(process.argv[1]);
  const handled = new Set(process.argv[2].split(" "));
  const out = Object.entries(lock.packages ?? {}).filter(([k, v]) => k !== "" && v.hasInstallScript && !handled.has(k)).map(([k, v]) => `${k}@${v.version}`);
  process.stdout.write(out.join(" "));
' "$repo/package-lock.json" "$HANDLED_INSTALL_SCRIPTS")"
if [[ -n "$unhandled" ]]; then
  log "package-lock.json lists packages with install scripts that this script does not handle: $unhandled"
  log "npm would have run them as $(id -un); review what each does and add an explicit step for it here (or drop the package)"
  exit 1
fi

lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
stamp=node_modules/.sealnet-setup-lock-sha256
need_ci=0
if [[ ! -d node_modules || ! -f node_modules/.package-lock.json ]]; then
  need_ci=1
elif [[ -f "$stamp" ]]; then
  [[ "$(cat "$stamp")" == "$lock_hash" ]] || need_ci=1
elif [[ package-lock.json -nt node_modules/.package-lock.json || package.json -nt node_modules/.package-lock.json ]]; then
  need_ci=1
fi
if ((need_ci)); then
  log "npm ci --ignore-scripts"
  npm ci --ignore-scripts --no-audit --no-fund
else
  log "node_modules: up to date"
fi
echo "$lock_hash" >"$stamp"

# netlink from source (see above).
if [[ -d node_modules/netlink ]]; then
  out=node_modules/netlink/build/Release/netlink_binding.node
  if [[ ! -f "$out" ]]; then
    gyp="$repo/node_modules/.bin/node-gyp"
    [[ -x "$gyp" ]] || { log "$gyp not found (node-gyp is a devDependency)"; exit 1; }
    [[ -f /usr/include/node/node_api.h ]] || { log "no Node headers at /usr/include/node (Debian package nodejs)"; exit 1; }
    log "building netlink from source (node-gyp rebuild)"
    "$gyp" rebuild -C node_modules/netlink --nodedir=/usr >&2
  fi
  loaded="$(node -e 'process.stdout.write(require("node-gyp-build").path(process.argv[1]))' "$repo/node_modules/netlink")"
  if [[ "$loaded" != "$repo/node_modules/netlink/build/Release/netlink_binding.node" ]]; then
    log "netlink would load $loaded, not the binary built here from source"
    exit 1
  fi
  log "netlink: $loaded"
fi
