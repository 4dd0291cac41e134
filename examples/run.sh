#!/usr/bin/env bash
# The example flows, end to end, as a Pachyderm user would run them:
# opencv-style edges then montage, word count map then reduce, an inner and
# an outer join, a group, a cron pipeline and a branch trigger. Data goes in
# in two rounds; the controller runs in the background meanwhile.
#
#   examples/run.sh                           # process executor, local store
#   examples/run.sh --executor docker         # after `make images`
#   examples/run.sh --executor kubernetes --store-secret pipectl-s3
#
# Arguments are passed to `pipectl controller`. The store is $PIPECTL_STORE,
# else a fresh build/examples-store. The images come from sklearn's sample
# photos in the stage environment (`make stage-env`).
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE_PYTHON=${PIPECTL_STAGE_PYTHON:-.venv-stages/bin/python}
export PIPECTL_STORE=${PIPECTL_STORE:-file://$PWD/build/examples-store}
export PIPECTL_LOCAL_IMAGES=$PWD/examples/local-images.json
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
jobs_done() {  # jobs_done PIPELINE: how many of its jobs succeeded
    pipectl list-job -p "$1" --raw | python3 -c 'import json,sys; print(sum(j["state"] == "success" for j in json.load(sys.stdin)))'
}
flush() {  # flush REPO...: wait for every output downstream of each repo's head
    for repo in "$@"; do pipectl flush-commit "$repo" master --timeout 900 >/dev/null; done
}

if [[ $PIPECTL_STORE == file://$PWD/build/examples-store ]]; then rm -rf build/examples-store; fi
images=$("$STAGE_PYTHON" -c 'import os, sklearn.datasets as d; print(os.path.join(os.path.dirname(d.__file__), "images"))')

step "Round 1: repos, data and pipelines"
for repo in images pages stores purchases returns uploads; do pipectl create-repo "$repo"; done
pipectl put-file images master /china.jpg -f "$images/china.jpg"
pipectl put-file pages master / -r -f examples/word_count/pages/versioned-data.txt -f examples/word_count/pages/pipelines.txt
for repo in stores purchases returns; do pipectl put-file "$repo" master / -r -f "examples/data/$repo"; done
pipectl put-file uploads master /batch1.csv -f examples/data/uploads/batch1.csv
pipectl put-file uploads master /batch2.csv -f examples/data/uploads/batch2.csv   # the trigger fires: 2 commits
for spec in opencv/edges opencv/montage word_count/map word_count/reduce joins/inner joins/outer group/group \
            cron/report trigger/batch; do
    pipectl create-pipeline -f "examples/$spec.json"
done
pipectl list-pipeline

pipectl controller "$@" &
controller=$!
trap 'kill $controller 2>/dev/null || true' EXIT
flush images pages stores purchases returns uploads

step "Round 2: a second image, a third page, two more uploads"
pipectl put-file images master /flower.jpg -f "$images/flower.jpg"
pipectl put-file pages master /provenance.txt -f examples/word_count/pages/provenance.txt
pipectl put-file uploads master /batch3.csv -f examples/data/uploads/batch3.csv   # 1 commit: no trigger
pipectl put-file uploads master /batch4.csv -f examples/data/uploads/batch4.csv   # 2 commits: it fires
flush images pages uploads
while [ "$(jobs_done report)" -lt 2 ]; do sleep 1; done   # the cron pipeline has fired twice
kill -TERM $controller && wait $controller || true
trap - EXIT

step "Results"
pipectl list-job
printf 'the word "data": %s' "$(pipectl get-file reduce master /data)"
printf ', in %s lines of uploads\n' "$(pipectl get-file batch master /lines)"
pipectl list-file montage master
pipectl list-file outer_join master /STOREID4
pipectl get-file revenue master /STOREID1.txt
