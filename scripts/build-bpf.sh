#!/usr/bin/env bash
# Builds sealnet's BPF objects (routing/bpf/*.c) with clang into <repo>/.cache/bpf/ and prints
# the paths. The objects are build output, never committed (.cache/ is ignored).
#
# Needs: clang, llvm, libbpf-dev (bpf_helpers.h), linux-libc-dev (linux/bpf.h). -g keeps BTF,
# which the kernel test reads to check that routing/bpf/layout.ts matches the C structs.
#
# Idempotent: an object is rebuilt only when its source (or this script) is newer, and it is
# written to a temporary file and renamed into place, so a reader never sees half an object.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src_dir="$repo/routing/bpf"
out_dir="$repo/.cache/bpf"
CLANG="${CLANG:-clang}"

if ! command -v "$CLANG" >/dev/null 2>&1; then
  echo "build-bpf: '$CLANG' not found (apt-get install clang llvm libbpf-dev)" >&2
  exit 1
fi
if [[ ! -f /usr/include/bpf/bpf_helpers.h ]]; then
  echo "build-bpf: /usr/include/bpf/bpf_helpers.h missing (apt-get install libbpf-dev)" >&2
  exit 1
fi
# <linux/types.h> includes <asm/types.h>, which Debian keeps under the multiarch directory;
# -target bpf does not search it by itself.
multiarch="$(gcc -print-multiarch 2>/dev/null || dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || uname -m)"

mkdir -p "$out_dir"
for src in "$src_dir"/*.c; do
  [[ -e "$src" ]] || continue
  obj="$out_dir/$(basename "${src%.c}").o"
  if [[ -f "$obj" && "$obj" -nt "$src" && "$obj" -nt "${BASH_SOURCE[0]}" ]]; then
    echo "$obj"
    continue
  fi
  tmp="$obj.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  "$CLANG" -target bpf -O2 -g -Wall -Werror -I"/usr/include/$multiarch" -c "$src" -o "$tmp"
  mv -f "$tmp" "$obj"
  trap - EXIT
  echo "$obj"
done
