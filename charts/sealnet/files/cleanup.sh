#!/bin/sh
# Removes every kernel object sealnet creates on this node (the names are those of
# common/constants.ts, listed in the README's "Kernel objects sealnet owns"), then idles.
# Run by the DaemonSet when the chart is installed with cleanup.enabled=true (uninstall step 1),
# or by hand on a node as root. Idempotent: objects that do not exist are skipped.
#
# Environment: SEALNET_STATE_DIR (default /var/lib/sealnet), SEALNET_PURGE_STATE=true to delete
# its contents (the private keys; purge-state.sh, beside this script, scrubs and deletes only
# under SEALNET_PURGE_ROOT, default /var/lib/sealnet), SEALNET_DONE_FILE: touched when finished (the readiness probe checks
# it), SEALNET_CLEANUP_EXIT=true to exit instead of idling (for use outside Kubernetes).
set -u
# Both WireGuard slots (a key rotation brings the new key up on the other one).
WG_IFS="sealwg0 sealwg1"
TABLE=5188
PROTO=206
RULE_PRIO=90
TC_PREF=1
TC_HANDLE=0x5188
XFRM_REQID=0x5188
BPF_PIN_DIR=/sys/fs/bpf/sealnet
WG_SOCKET_DIR=/var/run/wireguard
state_dir=${SEALNET_STATE_DIR:-/var/lib/sealnet}
failed=0

say() { echo "cleanup: $*"; }

# Routes first: with the rule gone traffic falls back to the CNI's routes in the main table.
if ip rule show priority "$RULE_PRIO" | grep -q "lookup $TABLE"; then
  while ip rule del priority "$RULE_PRIO" table "$TABLE" 2>/dev/null; do :; done
  say "removed rule priority $RULE_PRIO lookup $TABLE"
fi
for fam in -4 -6; do
  if [ -n "$(ip $fam route show table "$TABLE" proto "$PROTO" 2>/dev/null)" ]; then
    ip $fam route flush table "$TABLE" proto "$PROTO" && say "flushed $fam routes of table $TABLE (proto $PROTO)" || failed=1
  fi
done

# The tunnel links (their qdiscs and the rotation mirror filter go with them). With wireguard-go,
# deleting its TUN device makes the daemon exit.
for wg_if in $WG_IFS; do
  if ip link show "$wg_if" >/dev/null 2>&1; then
    ip link del "$wg_if" && say "deleted link $wg_if" || failed=1
  fi
  rm -f "$WG_SOCKET_DIR/$wg_if.sock"
done

# TC classifiers sealnet attached (pref + handle + kind bpf identify ours; the clsact qdisc may be
# shared with other tools and stays).
for dev in $(ls /sys/class/net); do
  for dir in ingress egress; do
    if tc filter show dev "$dev" "$dir" 2>/dev/null | grep -q "handle $TC_HANDLE"; then
      tc filter del dev "$dev" "$dir" protocol all pref "$TC_PREF" handle "$TC_HANDLE" bpf && say "removed tc $dir filter on $dev" || failed=1
    fi
  done
done
if [ -d "$BPF_PIN_DIR" ]; then
  rm -rf "$BPF_PIN_DIR" && say "removed BPF pins under $BPF_PIN_DIR" || failed=1
fi

# IPsec mode's states carry sealnet's reqid.
if ip xfrm state list reqid "$XFRM_REQID" 2>/dev/null | grep -q .; then
  ip xfrm state deleteall reqid "$XFRM_REQID" && say "deleted XFRM states with reqid $XFRM_REQID" || failed=1
fi

# The private keys: scrubbed, and only inside /var/lib/sealnet (purge-state.sh says why).
if [ "${SEALNET_PURGE_STATE:-false}" = true ] && [ -d "$state_dir" ]; then
  sh "$(dirname "$0")/purge-state.sh" "$state_dir" || failed=1
fi

if [ "$failed" != 0 ]; then
  say "some objects could not be removed; see above" >&2
  exit 1
fi
say "node clean"
if [ -n "${SEALNET_DONE_FILE:-}" ]; then touch "$SEALNET_DONE_FILE"; fi
if [ "${SEALNET_CLEANUP_EXIT:-false}" = true ]; then exit 0; fi
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
