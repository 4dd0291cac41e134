#!/usr/bin/env bash
# Starts a real single-node Kubernetes cluster (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, a private containerd, kubelet,
# kube-proxy) from the binaries build.sh makes. Idempotent: a healthy cluster
# is left as it is; components that are not running are (re)started.
# Prints `export KUBECONFIG=...` at the end. Must run as root.
set -euo pipefail
T0=$(date +%s)
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root

ALL="etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy"

all_running() {
    local c
    for c in $ALL; do pid_of "$c" >/dev/null || return 1; done
}
node_ready() {
    [ "$(kubectl_admin get node "$NODE_NAME" \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
finish() {
    log "cluster is up: node $NODE_NAME ($NODE_IP) Ready"
    echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
}

# ---- already up? -------------------------------------------------------------
if [ -x "$BIN/kubectl" ] && all_running && [ -f "$STATE/node-ip" ] \
        && kubectl_admin get --raw=/readyz >/dev/null 2>&1 && node_ready; then
    NODE_IP="$(cat "$STATE/node-ip")"
    log "already running and healthy"
    finish
    exit 0
fi

# ---- host packages ----------------------------------------------------------
missing=()
for pair in containerd:containerd ctr:containerd runc:runc iptables:iptables \
        conntrack:conntrack socat:socat openssl:openssl curl:curl ip:iproute2 \
        nsenter:util-linux mount:mount; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
[ -x "$CNI_BIN_DIR/bridge" ] && [ -x "$CNI_BIN_DIR/firewall" ] || missing+=(containernetworking-plugins)
if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
    apt-get update -qq
    aptlog="$(mktemp)"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$aptlog" 2>&1 \
        || { cat "$aptlog" >&2; die "apt-get install failed"; }
    rm -f "$aptlog"
fi

# Kernel bits pods need (built in or already set on many hosts; best effort).
modprobe -q overlay 2>/dev/null || true
modprobe -q br_netfilter 2>/dev/null || true
for kv in net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1; do
    f="/proc/sys/$(echo "${kv%%=*}" | tr . /)"
    [ "$(cat "$f" 2>/dev/null)" = "${kv#*=}" ] || echo "${kv#*=}" >"$f" 2>/dev/null \
        || log "warning: could not set ${kv%%=*}=${kv#*=}"
done

# ---- binaries ---------------------------------------------------------------
s=$(date +%s)
bash "$K8S_DIR/build.sh" | sed 's/^/  /'
log "build.sh took $(( $(date +%s) - s ))s"

mkdir -p "$STATE" "$PKI" "$LOGDIR" "$PIDDIR" "$CONFDIR" "$KUBELET_ROOT" "$CNI_CONF_DIR" \
    "$CONTAINERD_ROOT" "$RUNDIR" "$STATE/pod-logs" "$STATE/cni/networks"

# ---- node address -----------------------------------------------------------
NODE_IP="${PIPECTL_K8S_NODE_IP:-}"
if [ -z "$NODE_IP" ]; then
    # The source address of the default route: the host's primary IPv4 (a
    # route lookup only, nothing is sent).
    NODE_IP="$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1)"
fi
if [ -z "$NODE_IP" ]; then
    NODE_IP="$(ip -4 -o addr show scope global | awk '{split($4, a, "/"); print a[1]; exit}')"
fi
[ -n "$NODE_IP" ] || die "could not find the node IP; set PIPECTL_K8S_NODE_IP"
log "node $NODE_NAME, IP $NODE_IP"

# ---- PKI (once; server certs again when the node IP changes) ---------------
b64() { base64 -w0 <"$1"; }
gen_key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; chmod 600 "$1"; }
# gen_cert NAME CN O EXTKEYUSAGE [SANS]
gen_cert() {
    local name="$1" cn="$2" o="$3" eku="$4" sans="${5:-}" subj ext
    subj="/CN=$cn"; [ -z "$o" ] || subj="/O=$o$subj"
    gen_key "$PKI/$name.key"
    ext="$(mktemp)"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        [ -z "$sans" ] || echo "subjectAltName=$sans"
    } >"$ext"
    openssl req -new -key "$PKI/$name.key" -subj "$subj" 2>/dev/null \
        | openssl x509 -req -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
            -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 \
            -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
    rm -f "$ext"
}
s=$(date +%s)
if [ ! -f "$PKI/ca.crt" ]; then
    log "generating CA and certificates in $PKI"
    gen_key "$PKI/ca.key"
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=pipectl-k8s-ca" -days 3650 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
        -out "$PKI/ca.crt" 2>/dev/null
    gen_key "$PKI/sa.key"
    openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    gen_cert admin kubernetes-admin system:masters clientAuth
    gen_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth
    gen_cert controller-manager system:kube-controller-manager "" clientAuth
    gen_cert scheduler system:kube-scheduler "" clientAuth
    gen_cert kube-proxy system:kube-proxy "" clientAuth
    rm -f "$PKI/node-ip"
fi
[ -f "$PKI/front-proxy-client.crt" ] || gen_cert front-proxy-client front-proxy-client "" clientAuth
if [ "$(cat "$PKI/node-ip" 2>/dev/null)" != "$NODE_IP/$NODE_NAME" ]; then
    gen_cert apiserver kube-apiserver "" serverAuth \
        "IP:127.0.0.1,IP:$NODE_IP,IP:$SERVICE_IP,DNS:localhost,DNS:$NODE_NAME,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    gen_cert kubelet "system:node:$NODE_NAME" system:nodes clientAuth
    gen_cert kubelet-server "system:node:$NODE_NAME" system:nodes serverAuth \
        "IP:127.0.0.1,IP:$NODE_IP,DNS:localhost,DNS:$NODE_NAME"
    echo "$NODE_IP/$NODE_NAME" >"$PKI/node-ip"
    log "certificates written ($(( $(date +%s) - s ))s)"
fi

# write_kubeconfig FILE CERTNAME
write_kubeconfig() {
    umask 077
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: pipectl
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$PKI/$2.crt")
    client-key-data: $(b64 "$PKI/$2.key")
contexts:
- name: pipectl
  context: {cluster: pipectl, user: $2}
current-context: pipectl
EOF
    umask 022
}
write_kubeconfig "$KUBECONFIG_ADMIN" admin
for n in controller-manager scheduler kube-proxy kubelet; do
    write_kubeconfig "$CONFDIR/$n.kubeconfig" "$n"
done

# ---- configuration files ----------------------------------------------------
# Pods get the host's resolvers minus loopback ones (no cluster DNS here).
grep -v -E '^\s*nameserver\s+(127\.|::1)' /etc/resolv.conf >"$CONFDIR/resolv.conf" 2>/dev/null || true

# Can we lower oom_score_adj (needs CAP_SYS_RESOURCE)? If not, tell
# containerd, kubelet and kube-proxy not to try.
RESTRICT_OOM=false OOM_ADJ_KUBELET=-999 OOM_ADJ_PROXY=-999
if ! (echo -999 >/proc/self/oom_score_adj) 2>/dev/null; then
    RESTRICT_OOM=true OOM_ADJ_KUBELET=0 OOM_ADJ_PROXY=0
    log "no CAP_SYS_RESOURCE: oom_score_adj stays >= 0 (restrict_oom_score_adj)"
fi

cat >"$CONFDIR/containerd.toml" <<EOF
# containerd of pipectl's test cluster: separate from Docker's containerd.
version = 2
root = "$CONTAINERD_ROOT"
state = "$CONTAINERD_STATE"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$CONTAINERD_ROOT/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Without CAP_SYS_RESOURCE (as in some sandboxes) runc cannot set a negative
  # oom_score_adj (pause uses -998); clamp to containerd's own instead.
  restrict_oom_score_adj = $RESTRICT_OOM
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$CNI_CONF_DIR"
    max_conf_num = 1
EOF

cat >"$CNI_CONF_DIR/10-pipectl.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "pipectl",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "dataDir": "$STATE/cni/networks"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall"}
  ]
}
EOF

cat >"$CONFDIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
oomScoreAdj: $OOM_ADJ_KUBELET
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: 0.0.0.0
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
tlsCertFile: $PKI/kubelet-server.crt
tlsPrivateKeyFile: $PKI/kubelet-server.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
clusterDomain: cluster.local
clusterDNS: []
resolvConf: $CONFDIR/resolv.conf
podCIDR: $POD_CIDR
podLogsDirectory: $STATE/pod-logs
serializeImagePulls: false
# Never evict or garbage-collect images because the disk is full-ish: the
# images loaded from Docker cannot be pulled again.
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
  imagefs.inodesFree: "0%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 87600h
EOF

cat >"$CONFDIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $CONFDIR/kube-proxy.kubeconfig
mode: iptables
oomScoreAdj: $OOM_ADJ_PROXY
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: $NODE_NAME
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables:
  localhostNodePorts: false
# 0 = leave the kernel's conntrack settings alone (no /proc/sys writes).
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF

# ---- processes --------------------------------------------------------------
# start NAME CMD...: run CMD detached (own session) unless NAME already runs.
start() {
    local name="$1"; shift
    if pid_of "$name" >/dev/null; then
        log "$name: already running (pid $(pid_of "$name"))"; return 0
    fi
    echo "=== $(date -u +%FT%TZ) starting: $*" >>"$LOGDIR/$name.log"
    setsid "$@" >>"$LOGDIR/$name.log" 2>&1 </dev/null &
    echo $! >"$PIDDIR/$name"
    log "$name: started (pid $!, log $LOGDIR/$name.log)"
}
# wait_for DESC TIMEOUT LOGNAME CMD...
wait_for() {
    local desc="$1" timeout="$2" logname="$3" i; shift 3
    for ((i = 0; i < timeout * 2; i++)); do
        if "$@" >/dev/null 2>&1; then log "$desc: ok"; return 0; fi
        if [ -n "$logname" ] && ! pid_of "$logname" >/dev/null; then
            tail -30 "$LOGDIR/$logname.log" >&2; die "$logname exited (log: $LOGDIR/$logname.log)"
        fi
        sleep 0.5
    done
    [ -z "$logname" ] || tail -30 "$LOGDIR/$logname.log" >&2
    die "timed out after ${timeout}s waiting for $desc"
}

start etcd "$BIN/etcd" --name default --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level warn

# containerd does not need the control plane: start it now, check it later.
start containerd containerd --config "$CONFDIR/containerd.toml"
wait_for "etcd" 30 etcd curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health"

start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address 0.0.0.0 --secure-port "$APISERVER_PORT" --advertise-address "$NODE_IP" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --requestheader-client-ca-file "$PKI/ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User \
    --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" \
    --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --allow-privileged=true \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --profiling=false

# The pause image, while the API server starts.
wait_for "containerd" 30 containerd ctr -a "$CONTAINERD_SOCK" version
if ! ctr_k8s images ls -q | grep -xF "$PAUSE_IMAGE" >/dev/null; then
    s=$(date +%s)
    tmp="$(mktemp -d)"
    mkdir -p "$tmp/rootfs"
    cp "$BIN/pause" "$tmp/rootfs/pause"
    tar -C "$tmp/rootfs" --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$tmp/layer.tar" pause
    diffid="$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)"
    case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch="$(uname -m)" ;; esac
    printf '{"architecture":"%s","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$arch" "$diffid" >"$tmp/config.json"
    cfg="$(sha256sum "$tmp/config.json" | cut -d' ' -f1)"
    mkdir -p "$tmp/img/$diffid"
    mv "$tmp/layer.tar" "$tmp/img/$diffid/layer.tar"
    mv "$tmp/config.json" "$tmp/img/$cfg.json"
    printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' \
        "$cfg" "${PAUSE_IMAGE#docker.io/}" "$diffid" >"$tmp/img/manifest.json"
    tar -C "$tmp/img" -cf - . | ctr_k8s images import - >/dev/null
    rm -rf "$tmp"
    ctr_k8s images ls -q | grep -xF "$PAUSE_IMAGE" >/dev/null || die "pause image import failed"
    log "pause image $PAUSE_IMAGE imported ($(( $(date +%s) - s ))s)"
fi

wait_for "kube-apiserver /readyz" 120 kube-apiserver kubectl_admin get --raw=/readyz

start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$CONFDIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$CONFDIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$CONFDIR/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false \
    --service-account-private-key-file "$PKI/sa.key" \
    --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --use-service-account-credentials=true \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --cluster-cidr "$CLUSTER_CIDR" --allocate-node-cidrs=false \
    --controllers '*' --profiling=false

start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$CONFDIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$CONFDIR/scheduler.kubeconfig" \
    --authorization-kubeconfig "$CONFDIR/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false

start kubelet "$BIN/kubelet" \
    --config "$CONFDIR/kubelet.yaml" \
    --kubeconfig "$CONFDIR/kubelet.kubeconfig" \
    --root-dir "$KUBELET_ROOT" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"

start kube-proxy "$BIN/kube-proxy" --config "$CONFDIR/kube-proxy.yaml"

wait_for "node $NODE_NAME Ready" 180 kubelet node_ready
wait_for "serviceaccount default/default" 60 kube-controller-manager \
    kubectl_admin -n default get serviceaccount default
echo "$NODE_IP" >"$STATE/node-ip"
finish
