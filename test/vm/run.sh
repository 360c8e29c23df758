#!/usr/bin/env bash
# Runs a command inside a qemu guest booted from a Debian 6.1 kernel (test/vm/README.md).
#
# Usage: bash test/vm/run.sh                 build dist/, run the guest suite (test/vm/suite.sh)
#        bash test/vm/run.sh -- CMD [ARG...]  run CMD in the repo inside the guest (no build)
#
# Streams the guest's console to stdout and exits with the guest command's exit code; 125 when
# the guest could not boot or did not report one. SEALNET_SKIP_VM=1 skips (exit 0) with a
# message; nothing else skips.
#
# Env: SEALNET_VM_MEM (MiB, default 3072), SEALNET_VM_SMP (default 2), SEALNET_VM_TIMEOUT
#      (seconds, default 1800), SEALNET_VM_OUT (folder that receives the guest's $SEALNET_VM_OUT),
#      SEALNET_VM_DEBUG=1 (kernel messages on the console). CI and SEALNET_* (others) are passed in.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
CACHE=${SEALNET_VM_CACHE:-$REPO/.cache/vm}
MEM=${SEALNET_VM_MEM:-3072}
SMP=${SEALNET_VM_SMP:-2}
TIMEOUT=${SEALNET_VM_TIMEOUT:-1800}
INFRA_FAIL=125

say() { echo "sealv: $*" >&2; }
infra_fail() { say "FAIL: $*"; exit "$INFRA_FAIL"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", b - a}'; }

if [ "${SEALNET_SKIP_VM:-}" = 1 ]; then
  say "SKIP: kernel test tier not run (SEALNET_SKIP_VM=1): kernel WireGuard and XFRM ESP are NOT proven by this run"
  exit 0
fi

default_suite=1
if [ "${1:-}" = -- ]; then
  shift
  [ "$#" -gt 0 ] || { echo "usage: bash test/vm/run.sh [-- CMD [ARG...]]" >&2; exit 2; }
  default_suite=0
elif [ "$#" -gt 0 ]; then
  echo "usage: bash test/vm/run.sh [-- CMD [ARG...]]" >&2
  exit 2
fi
case $REPO in *[[:space:]]*) infra_fail "the repo path must not contain white space: $REPO" ;; esac

t_start=$(now)
bash scripts/vm-setup.sh || infra_fail "scripts/vm-setup.sh failed"
t_setup=$(now)
# shellcheck disable=SC1091
. "$CACHE/current.env"
for f in "$SEALV_VMLINUX" "$SEALV_INITRD"; do [ -f "$f" ] || infra_fail "$f missing after setup"; done

if [ "$default_suite" = 1 ]; then
  say "building dist/ on the host (npm run build)"
  npm run -s build || infra_fail "npm run build failed"
  set -- bash test/vm/suite.sh
fi
t_build=$(now)

io=$(mktemp -d /tmp/sealv-io.XXXXXX)
qpid=
cleanup() {
  # $qpid is `timeout`, which passes the TERM on to qemu (and KILLs it 10 s later if needed).
  if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then kill -TERM "$qpid" 2>/dev/null || true; wait "$qpid" 2>/dev/null || true; fi
  if [ -n "${SEALNET_VM_OUT:-}" ] && [ -d "$io/out" ]; then
    mkdir -p "$SEALNET_VM_OUT" && cp -a "$io/out/." "$SEALNET_VM_OUT/" || say "cannot copy the guest's output to $SEALNET_VM_OUT"
  fi
  rm -rf "$io"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

printf '%q ' "$@" >"$io/cmd"
echo >>"$io/cmd"
# Variables the job sees: CI and SEALNET_* (not the VM's own settings).
: >"$io/env"
for v in $(compgen -e); do
  case $v in
    SEALNET_VM_* | SEALNET_SKIP_VM) ;;
    CI | SEALNET_*) printf 'export %s=%q\n' "$v" "${!v}" >>"$io/env" ;;
  esac
done

loglevel=3
[ "${SEALNET_VM_DEBUG:-}" = 1 ] && loglevel=7
append="console=ttyS0 loglevel=$loglevel panic=-1 mitigations=off rdinit=/init sealv_repo=$REPO sealv_modroot=$SEALV_MODROOT"
say "booting $SEALV_KPKG $SEALV_KVER (TCG, -cpu qemu64, $SMP vCPUs, $MEM MiB); job: $(cat "$io/cmd")"
t_boot=$(now)
# TCG, not KVM: /dev/kvm here is a nested software hypervisor on which a stock kernel crawls.
# qemu64: the fastest TCG model measured (+aes crashes aesni_intel, max emulates AVX slowly).
timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 \
  -name sealv-guest -nodefaults -no-user-config -display none -no-reboot \
  -machine pc -accel tcg,thread=multi -cpu qemu64 -smp "$SMP" -m "$MEM" \
  -kernel "$SEALV_VMLINUX" -initrd "$SEALV_INITRD" -append "$append" \
  -chardev stdio,id=con,signal=on -serial chardev:con \
  -fsdev local,id=sealvroot,path=/,security_model=passthrough,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=sealvroot,mount_tag=sealvroot \
  -fsdev local,id=sealvio,path="$io",security_model=none,multidevs=remap \
  -device virtio-9p-pci,fsdev=sealvio,mount_tag=sealvio \
  -device virtio-rng-pci \
  </dev/null &
qpid=$!
qrc=0
wait "$qpid" || qrc=$?
qpid=
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then say "FAIL: guest stopped after SEALNET_VM_TIMEOUT=${TIMEOUT} s"; fi
t_end=$(now)

boot=$(cat "$io/boot_s" 2>/dev/null || echo '?')
job=$(cat "$io/job_s" 2>/dev/null || echo '?')
say "timings: setup $(secs "$t_start" "$t_setup") s, build $(secs "$t_setup" "$t_build") s, guest boot-to-job ${boot} s (guest clock), job ${job} s, qemu wall $(secs "$t_boot" "$t_end") s, total $(secs "$t_start" "$t_end") s"
[ -f "$io/error" ] && infra_fail "$(cat "$io/error")"
[ -f "$io/rc" ] || infra_fail "the guest reported no exit code (qemu exit $qrc): it did not boot or died; rerun with SEALNET_VM_DEBUG=1 for kernel messages"
rc=$(cat "$io/rc")
say "guest command exited $rc"
exit "$rc"
