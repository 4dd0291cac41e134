#!/usr/bin/env bash
# Builds the test cluster's binaries from source into $PIPECTL_K8S_CACHE/bin:
#   kube   multi-call Kubernetes binary (+ symlinks kube-apiserver, kubelet, kubectl, ...)
#   etcd   etcd 3.5
#   pause  the pod sandbox process (packed into an image by up.sh)
#   helm   helm v3 (skipped when bin/helm already works)
# Go's module and build caches live under the same cache dir. A binary whose
# inputs (go.mod, go.sum, *.go, Go version, flags) are unchanged is skipped,
# so a warm run takes seconds.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${PIPECTL_K8S_CACHE:-$HOME/.cache/pipectl/k8s}"
HELM_VERSION="${PIPECTL_HELM_VERSION:-v3.19.5}"
# The Kubernetes version kube/go.mod requires, stamped into the binaries.
KUBE_VERSION="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$HERE/kube/go.mod")"
# Packages compiled at once: more than the 2 cores keeps them busy while a
# huge generated package compiles alone.
BUILD_P="${PIPECTL_K8S_BUILD_P:-4}"
BIN="$CACHE/bin"
LOGS="$CACHE/logs"
STAMPS="$CACHE/stamps"
mkdir -p "$BIN" "$LOGS" "$STAMPS"

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    export PATH="$PATH:/usr/local/go/bin"
fi
command -v go >/dev/null 2>&1 || { echo "build.sh: Go >= 1.26 is needed (go not found)" >&2; exit 1; }

export GOPATH="$CACHE/gopath" GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gocache"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
GOVERSION="$(go env GOVERSION)"

T0=$(date +%s)
log() { echo "[build $(( $(date +%s) - T0 ))s] $*"; }

# inputs_hash DIR EXTRA...: hash of a module's sources plus the build settings.
inputs_hash() {
    local dir="$1"; shift
    { cat "$dir"/go.mod "$dir"/*.go; cat "$dir"/go.sum 2>/dev/null || true
      echo "$GOVERSION $*"; } | sha256sum | cut -d' ' -f1
}
up_to_date() { # NAME HASH
    [ -x "$BIN/$1" ] && [ "$(cat "$STAMPS/$1" 2>/dev/null)" = "$2" ]
}

# build_mod NAME DIR LDFLAGS: go build one wrapper module into bin/NAME.
build_mod() {
    local name="$1" dir="$2" ldflags="$3" h s
    h="$(inputs_hash "$dir" "$ldflags")"
    if up_to_date "$name" "$h"; then log "$name: up to date"; return 0; fi
    s=$(date +%s)
    log "$name: building (log: $LOGS/$name.log)"
    if ! (cd "$dir" && go build -p "$BUILD_P" -trimpath -ldflags="$ldflags" -o "$BIN/$name.new" .) >"$LOGS/$name.log" 2>&1; then
        tail -30 "$LOGS/$name.log" >&2; log "$name: FAILED"; return 1
    fi
    mv -f "$BIN/$name.new" "$BIN/$name"
    echo "$h" >"$STAMPS/$name"
    log "$name: built in $(( $(date +%s) - s ))s"
}

build_helm() {
    if "$BIN/helm" version --short >/dev/null 2>&1; then
        log "helm: present ($("$BIN/helm" version --short 2>/dev/null))"; return 0
    fi
    local s; s=$(date +%s)
    log "helm: go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION (log: $LOGS/helm.log)"
    if ! GOBIN="$BIN" go install -p "$BUILD_P" -trimpath -ldflags='-s -w' \
            "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >"$LOGS/helm.log" 2>&1; then
        tail -30 "$LOGS/helm.log" >&2; log "helm: FAILED"; return 1
    fi
    log "helm: built in $(( $(date +%s) - s ))s"
}

V="k8s.io/component-base/version" C="k8s.io/client-go/pkg/version"
minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
KUBE_LDFLAGS="-s -w"
for p in "$V" "$C"; do
    KUBE_LDFLAGS+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    KUBE_LDFLAGS+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

# The big build (kube) runs in the foreground; the small ones run niced
# beside it so they use the CPU time left idle (e.g. during linking).
pids=()
(renice -n 10 "$BASHPID" >/dev/null 2>&1 || true
 build_mod pause "$HERE/pause" "-s -w"; build_mod etcd "$HERE/etcd" "-s -w"; build_helm) 2>&1 &
pids+=($!)
rc=0
build_mod kube "$HERE/kube" "$KUBE_LDFLAGS" || rc=1
for p in "${pids[@]}"; do wait "$p" || rc=1; done
[ "$rc" = 0 ] || { log "FAILED"; exit 1; }

for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    ln -sfn kube "$BIN/$c"
done
log "done: $BIN ($(ls "$BIN" | tr '\n' ' '))"
