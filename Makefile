# pipectl: common tasks. `make demo` and `make test` are the quick start.
PYTHON ?= python3
STAGE_VENV ?= .venv-stages
STAGE_PYTHON := $(STAGE_VENV)/bin/python
export PIPECTL_STAGE_PYTHON := $(abspath $(STAGE_PYTHON))

.PHONY: proto help install stage-env serve audio-tools demo demo-audio test test-fast bench bench-full lint images \
	versitygw k8s-build k8s-up k8s-down k8s-images clean

help:  ## List targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install:  ## Install pipectl (editable) with its test and lint tools
	$(PYTHON) -m pip install -q -e '.[test,lint]'

$(STAGE_PYTHON): stages/requirements.txt serving/requirements.txt examples/requirements.txt pyproject.toml \
		$(wildcard stages/*/requirements.txt stages/audio/*/requirements.txt)
	$(PYTHON) -m venv $(STAGE_VENV)
	$(STAGE_PYTHON) -m pip install -q --upgrade pip
	$(STAGE_PYTHON) -m pip install -q -r stages/requirements.txt
	$(STAGE_PYTHON) -m pip install -q -e .
	touch $(STAGE_PYTHON)

stage-env: $(STAGE_PYTHON)  ## Build the environment the shipped stages and the model server run in (MXNet, librosa)

serve: stage-env  ## Serve the demo's model on http://127.0.0.1:8080 (after make demo)
	PIPECTL_STORE=file://$(CURDIR)/build/demo-store $(STAGE_VENV)/bin/pipectl serve --repo train --model iris \
		--handler stages/inference/iris_model.py

demo: install stage-env  ## Run the Iris pipeline end to end (local store, process executor)
	bash scripts/demo_iris.sh

audio-tools:  ## Install espeak-ng and sox (Debian packages) if missing
	@command -v espeak-ng >/dev/null && command -v sox >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq espeak-ng sox >/dev/null; \
		else echo "error: the speech demo needs espeak-ng and sox: sudo apt-get install espeak-ng sox" >&2; exit 1; fi; }

demo-audio: install stage-env audio-tools  ## Run the speech-audio MFCC pipeline end to end
	bash scripts/demo_audio.sh

versitygw:  ## Build versitygw (the S3 server of tests, benchmarks and the test cluster) into ~/.cache/pipectl/versitygw
	bash scripts/versitygw/build.sh

test: install stage-env versitygw  ## Run the whole test suite (PIPECTL_REQUIRE=docker,kubernetes,... makes those skips fail)
	$(PYTHON) -m pytest -q -rs

test-fast: install versitygw  ## Run the tests that need no stage environment
	$(PYTHON) -m pytest -q -rs --ignore=tests/stages

bench: install versitygw  ## Benchmarks, quick mode (figures as ratios to baselines)
	$(PYTHON) -m benchmarks.run --quick

bench-full: install versitygw  ## Benchmarks at full size
	$(PYTHON) -m benchmarks.run

images:  ## Build the base, stage, serving and versitygw images (Docker engine + debootstrap; no registry needed)
	bash scripts/build_images.sh

k8s-build:  ## Build Kubernetes, etcd and helm from source (Go module proxy) into ~/.cache/pipectl/k8s
	bash scripts/k8s/build.sh

k8s-up:  ## Start a single-node Kubernetes cluster on this machine (root; builds first if needed)
	bash scripts/k8s/up.sh

k8s-images:  ## Copy the images from Docker into the cluster's containerd
	bash scripts/k8s/load-images.sh $$(docker images --format '{{.Repository}}:{{.Tag}}' 'pipectl/*' | grep -v '<none>')

k8s-down:  ## Stop the cluster and remove its state (keeps the built binaries)
	bash scripts/k8s/down.sh

lint: install  ## Static checks: ruff (pinned in pyproject.toml) and mypy over pfs/, store/, pps/ and testing/
	$(PYTHON) -m ruff check pipectl tests benchmarks scripts stages examples
	$(PYTHON) -m mypy

proto:  ## Regenerate the KServe v2 gRPC messages (pipectl/serving/protocol) with grpcio-tools
	$(PYTHON) -m venv build/proto-venv && build/proto-venv/bin/pip install -q grpcio-tools==1.67.1
	cd pipectl/serving/protocol && ../../../build/proto-venv/bin/python -m grpc_tools.protoc -I. --python_out=. grpc_predict_v2.proto

clean:  ## Remove build outputs and the demo store
	rm -rf build .pytest_cache
