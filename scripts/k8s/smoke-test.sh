#!/usr/bin/env bash
# Checks a cluster started by up.sh end to end, with a local image (default
# pipectl/base:0.1.0, which must have python3): a Pod runs to Completed, an
# Indexed Job completes, a pod reaches a TCP server on the host at the node IP,
# a ClusterIP Service answers from the host and from a pod, a pod reaches the
# API server with its ServiceAccount token (TLS verified), kubectl logs and
# pod deletion work. Cleans up after itself. Prints "N passed, N failed".
#   scripts/k8s/smoke-test.sh [IMAGE]
set -uo pipefail
T0=$(date +%s)
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IMAGE="${1:-pipectl/base:0.1.0}"
NS="pipectl-smoke"
HOST_PORT="${PIPECTL_K8S_SMOKE_PORT:-18080}"
export KUBECONFIG="$KUBECONFIG_ADMIN"
k() { "$BIN/kubectl" "$@"; }
[ -f "$STATE/node-ip" ] || die "cluster not up (no $STATE/node-ip)"
NODE_IP="$(cat "$STATE/node-ip")"

passed=0 failed=0
check() { # NAME CMD...
    local name="$1"; shift
    if "$@"; then passed=$((passed + 1)); log "PASS $name"
    else failed=$((failed + 1)); log "FAIL $name"; fi
}

bash "$K8S_DIR/load-images.sh" "$IMAGE"
k delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
k create namespace "$NS" >/dev/null
k -n "$NS" wait --for=create serviceaccount/default --timeout=60s >/dev/null

tmp="$(mktemp -d)"
echo host-hello >"$tmp/index.html"
(cd "$tmp" && exec python3 -m http.server "$HOST_PORT" --bind 0.0.0.0) >/dev/null 2>&1 &
host_srv=$!
cleanup() {
    kill "$host_srv" 2>/dev/null
    rm -rf "$tmp"
    k delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1
}
trap cleanup EXIT

py_pod() { # NAME PYTHON-CODE
    cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1, labels: {app: $1}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: $IMAGE
    imagePullPolicy: Never
    command: ["python3", "-c", $(printf '%s' "$2" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')]
EOF
}
{
    py_pod hello 'print(1)'
    echo ---
    cat <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: indexed}
spec:
  completions: 2
  parallelism: 2
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: $IMAGE
        imagePullPolicy: Never
        command: ["sh", "-c", "echo index=\$JOB_COMPLETION_INDEX"]
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: $IMAGE
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /tmp/w && echo pod-web-hello >/tmp/w/index.html && cd /tmp/w && exec python3 -m http.server 8000"]
    readinessProbe: {tcpSocket: {port: 8000}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8000}]
---
EOF
    py_pod to-host "import urllib.request as u; print(u.urlopen('http://$NODE_IP:$HOST_PORT/', timeout=10).read().decode().strip())"
    echo ---
    py_pod to-api '
import os, ssl, urllib.request as u
d = "/var/run/secrets/kubernetes.io/serviceaccount/"
url = "https://%s:%s/version" % (os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
ctx = ssl.create_default_context(cafile=d + "ca.crt")
req = u.Request(url, headers={"Authorization": "Bearer " + open(d + "token").read()})
print(url, u.urlopen(req, context=ctx, timeout=10).status)
'
} | k -n "$NS" apply -f - >/dev/null

check "pod Completed, kubectl logs" \
    bash -c "'$BIN/kubectl' -n $NS wait --for=jsonpath='{.status.phase}'=Succeeded pod/hello --timeout=120s >/dev/null && [ \"\$('$BIN/kubectl' -n $NS logs hello)\" = 1 ]"
check "Indexed Job (2 completions) Complete" \
    k -n "$NS" wait --for=condition=complete job/indexed --timeout=120s
check "pod -> host server at node IP $NODE_IP:$HOST_PORT" \
    bash -c "'$BIN/kubectl' -n $NS wait --for=jsonpath='{.status.phase}'=Succeeded pod/to-host --timeout=120s >/dev/null && '$BIN/kubectl' -n $NS logs to-host | grep -x host-hello >/dev/null"
check "pod -> API server with SA token via 10.96.0.1:443, TLS verified" \
    bash -c "'$BIN/kubectl' -n $NS wait --for=jsonpath='{.status.phase}'=Succeeded pod/to-api --timeout=120s >/dev/null && '$BIN/kubectl' -n $NS logs to-api | grep '^https://$SERVICE_IP:443/version 200' >/dev/null"

k -n "$NS" wait --for=condition=ready pod/web --timeout=120s >/dev/null
CIP="$(k -n "$NS" get svc web -o jsonpath='{.spec.clusterIP}')"
check "host -> ClusterIP $CIP" \
    bash -c "for i in \$(seq 20); do [ \"\$(curl -s -m 3 http://$CIP/)\" = pod-web-hello ] && exit 0; sleep 0.5; done; exit 1"
py_pod to-svc "import os, urllib.request as u; print(u.urlopen('http://%s:%s/' % (os.environ['WEB_SERVICE_HOST'], os.environ['WEB_SERVICE_PORT']), timeout=10).read().decode().strip())" \
    | k -n "$NS" apply -f - >/dev/null
check "pod -> ClusterIP Service (env WEB_SERVICE_HOST)" \
    bash -c "'$BIN/kubectl' -n $NS wait --for=jsonpath='{.status.phase}'=Succeeded pod/to-svc --timeout=120s >/dev/null && '$BIN/kubectl' -n $NS logs to-svc | grep -x pod-web-hello >/dev/null"
check "delete pod" k -n "$NS" delete pod web --timeout=60s

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
