#!/bin/sh
# Deletes sealnet's state directory contents (the node's private keys) for uninstall step 1
# (cleanup.sh with SEALNET_PURGE_STATE=true), scrubbing every regular file before unlinking it.
#
# Usage: purge-state.sh STATE_DIR
# Environment: SEALNET_PURGE_ROOT (default /var/lib/sealnet): the only tree this script deletes
# in. The chart never sets it; it exists for a by-hand run on a node whose state dir lives
# elsewhere (and for the tests, which keep their nodes' state under their own run directory).
#
# Why the checks: the purge used to be `find "$dir" -delete` on any
# configured path, so stateDir=/var wiped the host's /var, and deleted keys stayed readable on
# disk and through any other hard link to the file. Now the directory's canonical path (symlinks
# and .. resolved) must be the root or below it, the walk stays on the directory's filesystem,
# and every regular file is overwritten with zeros and synced before it is unlinked. The
# overwrite is what the file system allows: on copy-on-write file systems or SSDs old blocks may
# survive; full-disk encryption is the answer there.
set -u

say() { echo "cleanup: $*"; }

dir=${1:-}
root=${SEALNET_PURGE_ROOT:-/var/lib/sealnet}
if [ -z "$dir" ]; then
  say "purge-state.sh: no state directory given" >&2
  exit 2
fi
case "$root" in
  /*/*) ;;
  *) say "refusing to purge: SEALNET_PURGE_ROOT=$root must be an absolute path at least two levels deep" >&2; exit 2 ;;
esac
[ -d "$dir" ] || exit 0
canon=$(cd "$dir" 2>/dev/null && pwd -P) || { say "refusing to purge $dir: cannot resolve it" >&2; exit 2; }
canon_root=$(cd "$root" 2>/dev/null && pwd -P) || canon_root=$root
case "$canon" in
  "$canon_root" | "$canon_root"/*) ;;
  *) say "refusing to purge $dir (resolves to $canon): sealnet deletes only under $canon_root" >&2; exit 2 ;;
esac

failed=0
# Regular files: zeros over their whole length, synced, then unlinked (shred -n 0 -z: one pass
# of zeros; -u: sync, unlink). Only this file system (-xdev); find never follows symlinks, and
# with `-exec {} +` its status says whether every shred succeeded.
files=$(find "$canon" -xdev -mindepth 1 -type f -print | wc -l)
if ! find "$canon" -xdev -mindepth 1 -type f -exec shred -n 0 -z -u {} +; then
  say "could not scrub every file under $canon" >&2
  failed=1
fi
# What is left: directories, symlinks (their targets are not touched), sockets, fifos.
find "$canon" -xdev -mindepth 1 -depth ! -type f -delete || failed=1
if [ "$failed" != 0 ] || [ -n "$(find "$canon" -mindepth 1 -print 2>/dev/null | head -n 1)" ]; then
  say "could not purge everything in $canon; see above" >&2
  exit 1
fi
say "purged $canon ($files files scrubbed)"
