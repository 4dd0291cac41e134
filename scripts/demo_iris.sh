#!/usr/bin/env bash
# The Iris demo: real data into versioned repos, preprocess -> train (MXNet)
# -> inference, on the embedded default (local store, process executor).
# Uses its own store (build/demo-store, or $PIPECTL_STORE) so it can be rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE_PYTHON=${PIPECTL_STAGE_PYTHON:-.venv-stages/bin/python}
export PIPECTL_STORE=${PIPECTL_STORE:-file://$PWD/build/demo-store}
export PIPECTL_LOCAL_IMAGES=$PWD/stages/local-images.json
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [[ $PIPECTL_STORE == file://$PWD/build/demo-store ]]; then rm -rf build/demo-store; fi
rm -rf build/iris-data build/iris-new

step "Writing the Iris data set (from scikit-learn) as CSV"
"$STAGE_PYTHON" scripts/iris_data.py build/iris-data --new-dir build/iris-new

step "Putting the data into versioned repos"
pipectl create-repo iris -d "The Iris data set (scikit-learn)"
pipectl put-file iris master / -r -f build/iris-data
pipectl create-repo iris-new -d "Unlabelled measurements to classify"
pipectl put-file iris-new master / -r -f build/iris-new
pipectl list-repo

step "Creating the pipelines"
for spec in preprocess train inference; do pipectl create-pipeline -f "specs/iris/$spec.json"; done
pipectl list-pipeline

step "Running the controller until every job is done"
pipectl controller --exit-when-idle
pipectl list-job

step "Provenance of the model commit"
pipectl inspect-commit train master

step "Held-out accuracy"
pipectl get-file train master /metrics.json | python3 -c '
import json, sys
m = json.load(sys.stdin)
a, n = m["accuracy"], m["n_test"]
print(f"accuracy on the held-out split: {a:.3f} ({n} rows)")'

step "Predictions: iris-new@master:/test1.csv beside inference@master:/test1.csv"
paste -d, <(pipectl get-file iris-new master /test1.csv) \
          <(echo predicted_species; pipectl get-file inference master /test1.csv) | tr , '\t'

step "See it in the web console"
echo "PIPECTL_STORE=$PIPECTL_STORE pipectl server    # then open http://127.0.0.1:8000/"
