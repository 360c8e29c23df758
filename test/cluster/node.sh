#!/usr/bin/env bash
# Boots one real-cluster-tier node (test/cluster/cluster.ts) INSIDE its network namespace and a
# private mount namespace (started as: nsenter --net=/run/netns/NS unshare --mount
# --propagation private bash node.sh NODEDIR). Nothing here is visible on the host:
#  - tmpfs on /run, overlays on /etc, /var/lib, /var/log (upper dirs in NODEDIR), with
#    /var/lib/containerd and /var/lib/kubelet bind-mounted from real directories in NODEDIR
#    (containerd's overlayfs snapshotter cannot live on overlayfs);
#  - a fresh sysfs (this netns's /sys/class/net) with the host's cgroup tree bound back, and a
#    private bpffs;
#  - the six sysctls kubelet's protectKernelDefaults checks are shadowed by bind-mounted files
#    holding the values it expects, so kubelet neither writes nor refuses the host's global ones
#    (they are not per network namespace: writing them would change the machine);
#  - then every mount of the node made shared, as on a systemd host (volumes with mount propagation).
# Then it starts containerd and kubelet (their configs are in NODEDIR) and waits; the harness
# kills everything by cgroup and namespace at teardown.
set -euo pipefail
D="$1"
mkdir -p "$D"/{etc-up,etc-work,lib-up,lib-work,log-up,log-work,containerd,kubelet,cg,sysctl}

mount -t tmpfs -o mode=0755 tmpfs /run
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$D/etc-up,workdir=$D/etc-work" /etc
mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$D/lib-up,workdir=$D/lib-work" /var/lib
mount -t overlay overlay -o "lowerdir=/var/log,upperdir=$D/log-up,workdir=$D/log-work" /var/log
mkdir -p /var/lib/containerd /var/lib/kubelet /var/lib/sealnet /var/log/pods /etc/cni/net.d /run/wireguard /run/netns
mount --bind "$D/containerd" /var/lib/containerd
mount --bind "$D/kubelet" /var/lib/kubelet

mount --rbind /sys/fs/cgroup "$D/cg"
mount -t sysfs sysfs /sys
mount --rbind "$D/cg" /sys/fs/cgroup
umount -l "$D/cg"
mount -t bpf bpf /sys/fs/bpf

for kv in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 \
  kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
  k="${kv%%=*}"
  f="$D/sysctl/${k//\//_}"
  echo "${kv#*=}" >"$f"
  mount --bind "$f" "/proc/sys/$k"
done
cp "$D/cni.conflist" /etc/cni/net.d/10-sealnet-test.conflist
# A real node's mounts are shared (systemd makes / rshared at boot): containerd refuses a
# HostToContainer or Bidirectional volume whose source is on a private mount ("path /sys/fs/bpf
# is mounted on /sys/fs/bpf but it is not a shared or slave mount" -> CreateContainerError).
# This namespace was unshared with private propagation, so sharing here makes new peer groups
# inside the node only: nothing propagates to or from the host.
mount --make-rshared /

export PATH="$BIN_PATH:$PATH"
"$CONTAINERD_BIN" --config "$D/containerd.toml" >"$D/containerd.log" 2>&1 &
for _ in $(seq 100); do [[ -S /run/containerd/containerd.sock ]] && break; sleep 0.1; done
[[ -S /run/containerd/containerd.sock ]] || { echo "containerd did not start" >&2; exit 1; }
for img in "$D"/images/*.tar; do
  # The agent archive names only its tag (org.opencontainers.image.ref.name): --base-name gives
  # it the repository the chart's default values point at.
  base=()
  [[ "$(basename "$img")" == extra* && -n "${EXTRA_IMAGE_BASE:-}" ]] && base=(--base-name "$EXTRA_IMAGE_BASE")
  "$CTR_BIN" -n k8s.io images import "${base[@]}" --platform linux/amd64 "$img" >>"$D/import.log" 2>&1
done
echo "images imported"
"$KUBELET_BIN" --config="$D/kubelet.yaml" --kubeconfig="$D/kubelet.kubeconfig" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --volume-plugin-dir="$D/volume-plugins" \
  --v=1 >"$D/kubelet.log" 2>&1 &
echo "kubelet started"
wait
