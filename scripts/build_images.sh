#!/usr/bin/env bash
# Build pipectl's images with no image registry and no network inside builds:
#   1. pipectl/rootfs:bookworm  debootstrap of Debian bookworm, `docker import`ed
#   2. pipectl/base:$TAG        + Python venv with the pipectl worker
#   3. one image per stage      FROM pipectl/base, its requirements from wheels
#      and pipectl/examples     (examples/: the example flows' programs)
#   4. pipectl/serving:$TAG     FROM pipectl/inference, + serving/requirements.txt
#   5. pipectl/versitygw:$TAG   the rootfs + the versitygw binary (scripts/versitygw/build.sh),
#                               the test cluster's S3 server
# Wheels are downloaded on the host with pip (PyPI) into build/wheels/ and
# copied into each build context, so `docker build` needs no network. Docker's
# layer cache makes a second run fast.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${TAG:-0.1.0}
PYTHON=${PYTHON:-python3}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BUILD=build/images
mkdir -p "$BUILD"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if ! docker image inspect pipectl/rootfs:bookworm >/dev/null 2>&1; then
    log "debootstrap Debian bookworm (minbase + python3)"
    rootfs=$(mktemp -d "$BUILD/rootfs.XXXX")
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,libgomp1,libquadmath0,libgfortran5,libsndfile1 \
        bookworm "$rootfs" "$MIRROR" >"$BUILD/debootstrap.log" 2>&1 \
        || { tail -20 "$BUILD/debootstrap.log"; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' - pipectl/rootfs:bookworm >/dev/null
    rm -rf "$rootfs"
fi

# context DIR: a build context holding the stage's files as app/ plus wheels/
context() {
    local name=$1 src=$2 req=$3 ctx="$BUILD/ctx-$1"
    rm -rf "$ctx" && mkdir -p "$ctx/wheels"
    if [ -n "$src" ]; then cp -r "$src" "$ctx/app"; fi
    if [ -n "$req" ]; then
        "$PYTHON" -m pip download -q --only-binary=:all: \
            -d build/wheels -r "$req" >/dev/null
        "$PYTHON" - "$req" "$ctx/wheels" <<'PY'
import os, re, shutil, sys
req, dest = sys.argv[1], sys.argv[2]
names = {re.split(r"[=<>\[ ]", l.strip())[0].lower().replace("-", "_")
         for l in open(req) if l.strip() and not l.startswith(("#", "-"))}
for w in os.listdir("build/wheels"):
    if w.split("-")[0].lower() in names:
        os.link(os.path.join("build/wheels", w), os.path.join(dest, w))
PY
    fi
    echo "$ctx"
}

log "pipectl/base:$TAG"
ctx="$BUILD/ctx-base"; rm -rf "$ctx"; mkdir -p "$ctx/wheels"
"$PYTHON" -m pip wheel -q --wheel-dir "$ctx/wheels" . >/dev/null
docker build -q -t "pipectl/base:$TAG" -f docker/base.Dockerfile "$ctx" >/dev/null

for stage in $(find stages -name Dockerfile -printf '%h\n' | sort) examples; do
    name=$(echo "${stage#stages/}" | tr / -)
    image="pipectl/$name:$TAG"
    log "$image"
    ctx=$(context "$name" "$stage" "$stage/requirements.txt")
    docker build -q -t "$image" -f "$stage/Dockerfile" "$ctx" >/dev/null
done

log "pipectl/serving:$TAG"   # FROM pipectl/inference, so after the stages
ctx=$(context serving serving serving/requirements.txt)
docker build -q -t "pipectl/serving:$TAG" -f serving/Dockerfile "$ctx" >/dev/null

log "pipectl/versitygw:$TAG"
bash scripts/versitygw/build.sh >/dev/null
ctx="$BUILD/ctx-versitygw"; rm -rf "$ctx"; mkdir -p "$ctx"
cp "${PIPECTL_VERSITYGW_CACHE:-$HOME/.cache/pipectl/versitygw}/bin/versitygw" "$ctx/"
docker build -q -t "pipectl/versitygw:$TAG" -f docker/versitygw.Dockerfile "$ctx" >/dev/null

docker images --filter reference='pipectl/*' --format 'table {{.Repository}}:{{.Tag}}\t{{.Size}}'
