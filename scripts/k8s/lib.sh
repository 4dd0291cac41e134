# Shared settings and helpers for up.sh, down.sh and load-images.sh (sourced).
# shellcheck shell=bash disable=SC2034

K8S_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PIPECTL_K8S_CACHE="${PIPECTL_K8S_CACHE:-$HOME/.cache/pipectl/k8s}"
STATE="${PIPECTL_K8S_STATE:-/var/lib/pipectl-k8s}"
RUNDIR="${PIPECTL_K8S_RUN:-/run/pipectl-k8s}"
BIN="$PIPECTL_K8S_CACHE/bin"

PKI="$STATE/pki"
LOGDIR="$STATE/logs"
PIDDIR="$STATE/pids"
CONFDIR="$STATE/config"
KUBECONFIG_ADMIN="$STATE/admin.kubeconfig"
CONTAINERD_SOCK="$RUNDIR/containerd.sock"
CONTAINERD_ROOT="$STATE/containerd"
CONTAINERD_STATE="$RUNDIR/containerd"
KUBELET_ROOT="$STATE/kubelet"
CNI_CONF_DIR="$STATE/cni/net.d"
CNI_BIN_DIR="/usr/lib/cni"
CNI_BRIDGE="pipectl0"

APISERVER_PORT="${PIPECTL_K8S_APISERVER_PORT:-6443}"
ETCD_CLIENT_PORT="${PIPECTL_K8S_ETCD_PORT:-2379}"
ETCD_PEER_PORT="$((ETCD_CLIENT_PORT + 1))"
SERVICE_CIDR="10.96.0.0/16"
SERVICE_IP="10.96.0.1"
CLUSTER_CIDR="10.244.0.0/16"
POD_CIDR="10.244.0.0/24"
PAUSE_IMAGE="docker.io/pipectl/pause:3.10"

NODE_NAME="${PIPECTL_K8S_NODE_NAME:-$(hostname | tr '[:upper:]_' '[:lower:]-')}"

# runc, containerd-shim-runc-v2, iptables, ... live in the sbin dirs.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

T0=${T0:-$(date +%s)}
log() { echo "[$(basename "$0") $(( $(date +%s) - T0 ))s] $*"; }
die() { echo "$(basename "$0"): $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }

# running PID: the process exists and is not a zombie.
running() {
    [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
    [ "$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# pid_of NAME: the pid recorded for a component if that process still runs.
pid_of() {
    local f="$PIDDIR/$1" pid
    [ -f "$f" ] || return 1
    pid="$(cat "$f")"
    running "$pid" || return 1
    # Guard against pid reuse: the recorded process must be one of ours.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -F -- "$STATE" >/dev/null || return 1
    echo "$pid"
}

# stop_component NAME [TIMEOUT]: SIGTERM, then SIGKILL after TIMEOUT seconds.
stop_component() {
    local name="$1" timeout="${2:-20}" pid i
    if pid="$(pid_of "$name")"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < timeout * 10; i++)); do
            running "$pid" || break
            sleep 0.1
        done
        if running "$pid"; then
            log "$name: did not stop in ${timeout}s, killing"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
        log "$name: stopped (pid $pid)"
    fi
    rm -f "$PIDDIR/$name"
}

kubectl_admin() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

ctr_k8s() { ctr -a "$CONTAINERD_SOCK" -n k8s.io "$@"; }
