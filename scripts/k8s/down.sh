#!/usr/bin/env bash
# Stops the test cluster started by up.sh and removes its state (etcd data,
# kubelet dir, our containerd's images/containers, CNI leases, iptables
# chains), keeping the binary cache and the generated certificates.
#   down.sh --purge   also removes the certificates, logs and the whole state dir.
# Leaves Docker (and its own containerd) alone. Idempotent. Must run as root.
set -euo pipefail
T0=$(date +%s)
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
PURGE=0
[ "${1:-}" != "--purge" ] || PURGE=1

# 1. kubelet first, so it does not restart what we remove next.
stop_component kubelet 20

# 2. Pods: stop/remove every sandbox through CRI (tears down CNI and mounts).
if pid_of containerd >/dev/null && [ -x "$BIN/kube" ]; then
    timeout 150 "$BIN/kube" cri-cleanup --runtime-endpoint "unix://$CONTAINERD_SOCK" \
        | sed 's/^/  /' || log "cri-cleanup reported errors (continuing)"
fi

# 3. containerd, then any shim of our instance still around.
stop_component containerd 20
for p in $(pgrep -f "containerd-shim.*-address $CONTAINERD_SOCK" 2>/dev/null || true); do
    kill -KILL "$p" 2>/dev/null || true
done
# Processes still in our pods' cgroups (when the shims were killed).
if [ -d /sys/fs/cgroup/pids/kubepods ] || [ -d /sys/fs/cgroup/memory/kubepods ]; then
    find /sys/fs/cgroup/*/kubepods -name cgroup.procs 2>/dev/null | while read -r f; do
        for p in $(cat "$f" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    done
    sleep 0.5
    find /sys/fs/cgroup/*/kubepods -depth -type d -exec rmdir {} + 2>/dev/null || true
fi

# 4. The control plane.
for c in kube-proxy kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop_component "$c" 20
done

# 5. Mounts under our directories (deepest first), then our netns leftovers.
unmount_under() {
    local dir="$1" m
    [ -n "$dir" ] || return 0
    for m in $(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
    done
}
for d in "$KUBELET_ROOT" "$CONTAINERD_STATE" "$CONTAINERD_ROOT" "$RUNDIR"; do
    unmount_under "$d"
done

# 6. Network: the CNI bridge and the iptables chains of kube-proxy and CNI.
if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
    ip link delete "$CNI_BRIDGE" && log "deleted bridge $CNI_BRIDGE"
fi
flush_chains() { # IPTABLES
    local ipt="$1" t rule chain
    command -v "$ipt" >/dev/null 2>&1 || return 0
    for t in filter nat mangle; do
        "$ipt" -t "$t" -S >/dev/null 2>&1 || continue
        # Jumps from the built-in chains into ours.
        "$ipt" -t "$t" -S | { grep -E '^-A [A-Z]+ .*-j (KUBE|CNI)-' || true; } \
            | { grep -vE '^-A (KUBE|CNI)-' || true; } | while read -r rule; do
            eval "$ipt -t $t -D ${rule#-A }" 2>/dev/null || true
        done
        for chain in $("$ipt" -t "$t" -S | awk '/^-N (KUBE|CNI)-/ {print $2}'); do
            "$ipt" -t "$t" -F "$chain" 2>/dev/null || true
        done
        for chain in $("$ipt" -t "$t" -S | awk '/^-N (KUBE|CNI)-/ {print $2}'); do
            "$ipt" -t "$t" -X "$chain" 2>/dev/null || true
        done
    done
}
flush_chains iptables
flush_chains ip6tables
log "flushed KUBE-*/CNI-* iptables chains"

# 7. State.
rm -rf "$STATE/etcd" "$KUBELET_ROOT" "$CONTAINERD_ROOT" "$STATE/cni/networks" \
    "$STATE/pod-logs" "$PIDDIR" "$STATE/node-ip" "$RUNDIR"
if [ "$PURGE" = 1 ]; then
    rm -rf "$STATE"
    log "removed $STATE"
else
    log "removed cluster state (kept $PKI, $LOGDIR and the binaries in $BIN)"
fi
docker info >/dev/null 2>&1 && log "docker still OK" || true
log "down"
