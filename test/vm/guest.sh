#!/bin/bash
# Stage 2 of the kernel-tier guest: PID 1 after the initramfs switched to the host's root (read-only
# 9p + tmpfs overlay). Mounts the usual API filesystems, binds the guest kernel's modules tree
# (from the cache, matching `uname -r`) at /lib/modules/<release>, loads the modules the suites
# need, mounts the job share (9p tag `sealvio`: cmd, env in; rc, times, out/ back), runs the job
# in the repo with its output on the console (the host's stdout), stores its exit code and
# powers off. Never exits: PID 1 exiting panics the kernel.
set -u
REPO=${0%/test/vm/guest.sh}
IO=/run/sealv-io
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C TERM=dumb
# Modules the suites need up front (a missing one fails loudly here, not as a vague test error):
# kernel WireGuard, TUN (wireguard-go fallback), veth/dummy/bridge links, XFRM ESP (IPv4 and IPv6
# outer headers) with AES-GCM, TC BPF.
MODULES=(wireguard tun veth dummy bridge esp4 esp6 xfrm_user gcm ghash_generic seqiv sch_ingress cls_bpf act_bpf)

poweroff_now() {
  sync
  umount "$IO" 2>/dev/null
  echo o >/proc/sysrq-trigger
  sleep 10 2>/dev/null
  echo b >/proc/sysrq-trigger # qemu runs with -no-reboot: a reboot ends it too
  while :; do sleep 60; done
}
fatal() {
  echo "sealv-guest: FATAL: $*"
  [ -d "$IO" ] && echo "guest setup failed: $*" >"$IO/error" 2>/dev/null
  poweroff_now
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=755 tmpfs /run
# /tmp stays the overlay's (writable, tmpfs-backed): a fresh tmpfs here would hide a checkout
# that lives under the host's /tmp (CI clones can), and with it the job and the modules tree.
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# The console is ttyS0: without this every \n reaches the host as \r\n.
stty -onlcr </dev/console 2>/dev/null

mkdir -p "$IO"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 sealvio "$IO" || fatal "cannot mount the job share (9p tag sealvio)"

modroot=
for arg in $(cat /proc/cmdline); do
  case $arg in sealv_modroot=*) modroot=${arg#sealv_modroot=} ;; esac
done
krel=$(uname -r)
[ -d "$modroot/lib/modules/$krel" ] || fatal "no modules tree for $krel at $modroot/lib/modules/$krel"
mkdir -p "/lib/modules/$krel"
mount --bind -o ro "$modroot/lib/modules/$krel" "/lib/modules/$krel" || fatal "cannot bind the modules tree"
modprobe -a "${MODULES[@]}" || fatal "modprobe ${MODULES[*]} failed"
hostname sealv-guest
# The guest's own kernel: let the rotation suites' UDP receivers ask for a 4 MiB receive buffer
# (a receiver starved for seconds under TCG would otherwise overflow its socket, a loss that is
# not the tunnel's). The default stays as it was; only sockets that ask get more.
echo 8388608 >/proc/sys/net/core/rmem_max || fatal "cannot raise net.core.rmem_max"
# Likewise the per-CPU input backlog (1000 packets, ~2.5 s of the suites' load): a guest vCPU
# stalled by the host under TCG must not drop what a veth queued for it (counted in softnet_stat).
echo 10000 >/proc/sys/net/core/netdev_max_backlog || fatal "cannot raise net.core.netdev_max_backlog"

read -r up _ </proc/uptime
echo "$up" >"$IO/boot_s"
echo "sealv-guest: up after ${up} s (kernel $krel, $(nproc) CPUs, $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) MiB); running the job"

# The host's chosen variables (CI, SEALNET_*), then the markers the suites check.
# shellcheck disable=SC1091
[ -f "$IO/env" ] && . "$IO/env"
export SEALNET_VM_GUEST=1 SEALNET_VM_OUT=$IO/out
mkdir -p "$IO/out"
cd "$REPO" || fatal "no repo at $REPO"
# Output through a pipe, as in CI: on the console (a tty) jest and npm would draw progress
# lines with cursor escapes. Background + wait: bash as PID 1 then also reaps the orphans the
# job leaves behind.
(
  bash "$IO/cmd" </dev/null 2>&1 | cat
  exit "${PIPESTATUS[0]}"
) &
wait $!
rc=$?
read -r end _ </proc/uptime
echo "$rc" >"$IO/rc.tmp" && mv "$IO/rc.tmp" "$IO/rc"
awk -v a="$up" -v b="$end" 'BEGIN {printf "%.1f\n", b - a}' >"$IO/job_s"
poweroff_now
