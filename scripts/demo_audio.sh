#!/usr/bin/env bash
# The speech-audio demo: a corpus made offline with espeak-ng is served over
# HTTP on loopback; FETCH -> FILTER_LONGER -> EXTRACT_MFCC -> LEARN run on the
# embedded default (local store, process executor) and report how well the
# speaker classifier does on held-out clips.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE_PYTHON=${PIPECTL_STAGE_PYTHON:-.venv-stages/bin/python}
export PIPECTL_STORE=${PIPECTL_STORE:-file://$PWD/build/demo-audio-store}
export PIPECTL_LOCAL_IMAGES=$PWD/stages/local-images.json
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [[ $PIPECTL_STORE == file://$PWD/build/demo-audio-store ]]; then rm -rf build/demo-audio-store; fi
mkdir -p build/speech

step "Synthesising the speech corpus with espeak-ng"
python3 scripts/make_speech_corpus.py build/speech/speech.zip

step "Serving it on loopback"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory build/speech >/dev/null 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT
URL="http://127.0.0.1:$PORT/speech.zip"
echo "$URL"

step "Creating the trigger repo and the pipelines"
pipectl create-repo audio-trigger -d "Put any file here to (re)fetch the corpus"
echo "fetch $(date -u +%FT%TZ)" | pipectl put-file audio-trigger master /request.txt -f -
python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); s["transform"]["env"]["SOURCE_URL"] = sys.argv[2]; print(json.dumps(s))' \
    specs/audio/fetch.json "$URL" | pipectl create-pipeline -f -
for spec in filter extract learn; do pipectl create-pipeline -f "specs/audio/$spec.json"; done
pipectl list-pipeline

step "Running the controller until every job is done"
pipectl controller --exit-when-idle
pipectl list-job

step "Provenance of the speaker model"
pipectl inspect-commit learn master

step "Held-out speaker accuracy"
pipectl get-file learn master /metrics.json | python3 -c '
import json, sys
m = json.load(sys.stdin)
a, n, k, c = m["accuracy"], m["n_test"], len(m["class_names"]), m["chance_accuracy"]
print(f"speaker accuracy on held-out clips: {a:.3f} ({n} clips, {k} speakers; chance {c:.3f})")'
