#!/usr/bin/env bash
# Copies images from the Docker engine into the test cluster's containerd
# (namespace k8s.io), so pods using them with imagePullPolicy IfNotPresent or
# Never start without a registry:
#   scripts/k8s/load-images.sh pipectl/base:0.1.0 pipectl/train:0.1.0
# An image whose Docker image ID was already imported is skipped.
set -euo pipefail
T0=$(date +%s)
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
[ $# -gt 0 ] || die "usage: $0 IMAGE..."
pid_of containerd >/dev/null || die "the cluster's containerd is not running (run up.sh)"

# Stamps live inside containerd's root, so down.sh removes them with the images.
STAMPS="$CONTAINERD_ROOT/pipectl-imported"
mkdir -p "$STAMPS"
todo=()
for img in "$@"; do
    id="$(docker image inspect --format '{{.Id}}' "$img")" || die "no image $img in Docker"
    stamp="$STAMPS/$(echo "$img" | tr '/:@' '___')"
    ref="$img"; [[ "$ref" == */* ]] || ref="library/$ref"; [[ "${ref%%/*}" == *.* || "${ref%%/*}" == *:* || "${ref%%/*}" == localhost ]] || ref="docker.io/$ref"
    if [ "$(cat "$stamp" 2>/dev/null)" = "$id" ] && ctr_k8s images ls -q | grep -xF "$ref" >/dev/null; then
        log "$img: already loaded"
    else
        todo+=("$img")
    fi
done
if [ ${#todo[@]} -gt 0 ]; then
    log "importing ${todo[*]}"
    docker save "${todo[@]}" | ctr_k8s images import - >/dev/null
    for img in "${todo[@]}"; do
        docker image inspect --format '{{.Id}}' "$img" >"$STAMPS/$(echo "$img" | tr '/:@' '___')"
    done
fi
log "done"
