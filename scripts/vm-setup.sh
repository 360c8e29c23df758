#!/usr/bin/env bash
# Prepares the kernel test tier (test/vm/README.md): qemu on the host, and under .cache/vm/ a
# Debian 6.1 kernel (uncompressed vmlinux + its modules tree, depmod'ed) and a small initramfs
# (static busybox, the virtio/9p/overlay modules, test/vm/initramfs-init.sh as /init).
#
# The kernel and busybox-static packages are fetched with `apt-get download` and unpacked with
# `dpkg-deb -x` into the cache: installing a kernel image package would run the host's
# initramfs/bootloader hooks, and busybox-static would replace the host's busybox package.
# Only qemu (and the host tools the guest suite runs: the guest's root is the host's root) are
# installed with apt-get, and only when missing.
#
# Idempotent and cached: the build is keyed on the kernel package version, the busybox-static
# version and a hash of the init script; a second run only checks and prints the paths.
# Safe to run concurrently (flock). Writes .cache/vm/current.env for test/vm/run.sh.
#
# Usage: bash scripts/vm-setup.sh
# Env:   SEALNET_VM_KERNEL_PKG  kernel package (default: what linux-image-amd64 depends on,
#                               e.g. linux-image-6.1.0-56-amd64)
#        SEALNET_VM_CACHE       cache folder (default <repo>/.cache/vm)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CACHE=${SEALNET_VM_CACHE:-$REPO/.cache/vm}
INIT_SRC=$REPO/test/vm/initramfs-init.sh
# The modules the initramfs loads, in dependency order (modprobe --show-depends adds the rest).
INITRAMFS_MODULES=(virtio_pci 9pnet_virtio 9p overlay)
# Host tools the guest suite uses (package:binary); the guest runs them from the host's root.
GUEST_TOOLS=(iproute2:ip wireguard-tools:wg wireguard-go:wireguard-go tcpdump:tcpdump iputils-ping:ping kmod:modprobe)
# Host tools this script itself runs beyond the base image (package:binary): qemu for the guest,
# cpio to pack the initramfs (not on a fresh machine of this kind).
HOST_TOOLS=(qemu-system-x86:qemu-system-x86_64 cpio:cpio)
APT=(apt-get -y -q -o DPkg::Lock::Timeout=600)

t0=$(date +%s.%N)
log() { echo "vm-setup: $*" >&2; }
die() { echo "vm-setup: ERROR: $*" >&2; exit 1; }

[ "$(uname -m)" = x86_64 ] || die "the kernel tier needs an x86_64 host (this is $(uname -m))"

apt_updated=0
apt_update() {
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    "${APT[@]}" update >/dev/null || die "apt-get update failed"
    apt_updated=1
  fi
}

# --- host packages: only the missing ones -----------------------------------------------------
missing=()
for pair in "${HOST_TOOLS[@]}" "${GUEST_TOOLS[@]}"; do
  command -v "${pair#*:}" >/dev/null || missing+=("${pair%%:*}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}) and not root: install them or run as root"
  apt_update
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive "${APT[@]}" install --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed"
fi

# --- which kernel and busybox: from the local package lists (no network) ----------------------
resolve() {
  local pkg=${SEALNET_VM_KERNEL_PKG:-}
  if [ -z "$pkg" ]; then
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  fi
  [ -n "$pkg" ] || return 1
  KPKG=$pkg
  KVER=$(apt-cache policy "$KPKG" 2>/dev/null | awk '/Candidate:/ {print $2}')
  BBVER=$(apt-cache policy busybox-static 2>/dev/null | awk '/Candidate:/ {print $2}')
  [ -n "$KVER" ] && [ "$KVER" != "(none)" ] && [ -n "$BBVER" ] && [ "$BBVER" != "(none)" ]
}
if ! resolve; then
  apt_update
  resolve || die "cannot resolve the kernel package (linux-image-amd64 / ${SEALNET_VM_KERNEL_PKG:-unset}) or busybox-static from apt"
fi
KREL=${KPKG#linux-image-}
INIT_HASH=$(cat "$INIT_SRC" <(printf '%s\n' "${INITRAMFS_MODULES[@]}") | sha256sum | cut -c1-12)
KDIR=$CACHE/kernel-$KPKG-$KVER
INITRD=$CACHE/initramfs-$KREL-bb$BBVER-$INIT_HASH.cpio.gz
INITRD=${INITRD//:/_}

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

work=$(mktemp -d "$CACHE/.sealv-setup.XXXXXX")
trap 'rm -rf "$work"' EXIT

fetch() { # fetch <package> <version> → path of the downloaded .deb (in $work: dropped after use)
  local want=$work/dl/${1}_${2//:/%3a}_amd64.deb
  log "apt-get download $1=$2"
  mkdir -p "$work/dl"
  (cd "$work/dl" && "${APT[@]}" download "$1=$2" >/dev/null 2>&1) ||
    { apt_update; (cd "$work/dl" && "${APT[@]}" download "$1=$2" >/dev/null) || die "apt-get download $1=$2 failed"; }
  [ -f "$want" ] || die "apt-get download $1=$2 did not produce $(basename "$want")"
  echo "$want"
}

# --- kernel: vmlinux + modules tree ------------------------------------------------------------
if [ ! -f "$KDIR/.complete" ]; then
  rm -rf "$KDIR"
  deb=$(fetch "$KPKG" "$KVER")
  log "unpacking $(basename "$deb")"
  mkdir -p "$work/k"
  dpkg-deb -x "$deb" "$work/k"
  [ -d "$work/k/lib/modules/$KREL" ] || die "$deb has no lib/modules/$KREL"
  # modules.dep & co. are normally made by the package's postinst; make them here.
  depmod -b "$work/k" "$KREL"
  # The bzImage holds an xz-compressed ELF vmlinux (Debian: CONFIG_KERNEL_XZ); the raw ELF
  # boots through its PVH entry, skipping the decompressor (scripts/extract-vmlinux does the same).
  vmlinuz=$work/k/boot/vmlinuz-$KREL
  found=0
  for off in $(LC_ALL=C grep -obUaP '\xFD7zXZ\x00' "$vmlinuz" | cut -d: -f1); do
    tail -c +"$((off + 1))" "$vmlinuz" | xz -dc 2>/dev/null >"$work/vmlinux" || true
    if [ "$(head -c4 "$work/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ]; then found=1; break; fi
  done
  [ "$found" = 1 ] || die "no xz-compressed ELF vmlinux found in $vmlinuz"
  mkdir -p "$work/kdir"
  mv "$work/vmlinux" "$work/kdir/vmlinux"
  mv "$work/k/lib" "$work/kdir/lib"
  cp "$work/k/boot/config-$KREL" "$work/kdir/config"
  printf 'pkg=%s\nversion=%s\nrelease=%s\n' "$KPKG" "$KVER" "$KREL" >"$work/kdir/.complete"
  mv "$work/kdir" "$KDIR"
  rm -rf "$work/k"
  log "kernel $KPKG $KVER ready in $KDIR"
fi

# --- initramfs ----------------------------------------------------------------------------------
if [ ! -f "$INITRD" ]; then
  deb=$(fetch busybox-static "$BBVER")
  mkdir -p "$work/bb" "$work/root"/{bin,dev,proc,sys,lower,rw,newroot,modules}
  dpkg-deb -x "$deb" "$work/bb"
  cp "$work/bb/bin/busybox" "$work/root/bin/busybox"
  # The kernel opens /dev/console for init's stdio before init can mount devtmpfs.
  mknod -m 600 "$work/root/dev/console" c 5 1
  mknod -m 666 "$work/root/dev/null" c 1 3
  : >"$work/root/modules/order"
  for m in "${INITRAMFS_MODULES[@]}"; do
    modprobe --show-depends -d "$KDIR" -S "$KREL" "$m" | awk '$1 == "insmod" {print $2}'
  done | awk '!seen[$0]++' | while read -r ko; do
    cp "$ko" "$work/root/modules/"
    basename "$ko" >>"$work/root/modules/order"
  done
  install -m 755 "$INIT_SRC" "$work/root/init"
  (cd "$work/root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet | gzip -1 >"$work/initrd")
  mv "$work/initrd" "$INITRD"
  log "initramfs ready: $INITRD ($(du -h "$INITRD" | cut -f1), modules: $(tr '\n' ' ' <"$work/root/modules/order"))"
fi

# Older builds of this cache: drop initramfs images of other keys (kernels are kept: large, but
# another worktree may use a pinned one).
find "$CACHE" -maxdepth 1 -name 'initramfs-*.cpio.gz' ! -path "$INITRD" -delete

cat >"$CACHE/current.env.tmp" <<EOF
SEALV_KPKG=$KPKG
SEALV_KVER=$KVER
SEALV_KREL=$KREL
SEALV_VMLINUX=$KDIR/vmlinux
SEALV_INITRD=$INITRD
SEALV_MODROOT=$KDIR
EOF
mv "$CACHE/current.env.tmp" "$CACHE/current.env"
log "ready: $KPKG $KVER, busybox-static $BBVER ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s)"
