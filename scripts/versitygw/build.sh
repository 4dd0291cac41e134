#!/usr/bin/env bash
# Builds versitygw, the S3 server of the tests, the benchmarks and the test
# cluster, at a pinned version from the Go module proxy into
#   $PIPECTL_VERSITYGW_CACHE/bin/versitygw   (default ~/.cache/pipectl/versitygw)
# with Go's module and build caches beside it. Skipped when the cached binary
# already reports the pinned version, so a warm run takes a second.
set -euo pipefail

VERSION="${PIPECTL_VERSITYGW_VERSION:-v1.8.0}"
CACHE="${PIPECTL_VERSITYGW_CACHE:-$HOME/.cache/pipectl/versitygw}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

if [ -x "$BIN/versitygw" ] && [ "$(cat "$CACHE/version" 2>/dev/null)" = "$VERSION" ]; then
    echo "versitygw $VERSION: up to date ($BIN/versitygw)"; exit 0
fi
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    export PATH="$PATH:/usr/local/go/bin"
fi
command -v go >/dev/null 2>&1 || { echo "versitygw build: Go is needed (go not found)" >&2; exit 1; }

# A static binary (no cgo), so it also runs in the project's base image.
export GOPATH="$CACHE/gopath" GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gocache"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
s=$(date +%s)
echo "versitygw $VERSION: building (log: $CACHE/build.log; about 3 minutes)"
if ! GOBIN="$CACHE/new" go install -trimpath -ldflags='-s -w' \
        "github.com/versity/versitygw/cmd/versitygw@$VERSION" >"$CACHE/build.log" 2>&1; then
    tail -30 "$CACHE/build.log" >&2; echo "versitygw build: FAILED" >&2; exit 1
fi
mv -f "$CACHE/new/versitygw" "$BIN/versitygw"
rmdir "$CACHE/new"
echo "$VERSION" >"$CACHE/version"
echo "versitygw $VERSION: built in $(( $(date +%s) - s ))s ($BIN/versitygw)"
