#!/bin/busybox sh
# /init of the kernel tier's initramfs (built by scripts/vm-setup.sh; a change here rebuilds it).
# Loads the virtio/9p/overlay modules, mounts the host's root (9p tag `sealvroot`, read-only)
# under a tmpfs overlay, and switches to it, running stage 2 (test/vm/guest.sh of the repo
# named by `sealv_repo=` on the kernel command line) as PID 1.
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
  echo "sealv-init: FATAL: $*" >/dev/console
  # -no-reboot on the qemu side: a reboot ends qemu, and run.sh reports no exit code.
  echo b >/proc/sysrq-trigger
  sleep 5
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

for ko in $(cat /modules/order); do
  insmod "/modules/$ko" || fail "insmod $ko"
done

repo=
for arg in $(cat /proc/cmdline); do
  case $arg in sealv_repo=*) repo=${arg#sealv_repo=} ;; esac
done
[ -n "$repo" ] || fail "no sealv_repo= on the kernel command line"

# The virtio-9p devices may bind a moment after the module loads.
i=0
until mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose sealvroot /lower 2>/dev/null; do
  i=$((i + 1))
  [ "$i" -lt 50 ] || fail "cannot mount the host root (9p tag sealvroot)"
  sleep 0.1
done
mount -t tmpfs -o mode=755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail "overlay mount"
[ -f "/newroot$repo/test/vm/guest.sh" ] || fail "$repo/test/vm/guest.sh not found in the host root"
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /bin/bash "$repo/test/vm/guest.sh"
