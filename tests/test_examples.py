"""Pachyderm's example flows (``examples/``), run by ``examples/run.sh`` as a
user would, on each executor: the process executor (a local store), Docker
(real engine, images from `make images`) and Kubernetes (the real cluster,
an S3 store). The process run is checked against the documented results;
the other two must give the same output commits, file for file and byte for
byte.

The flows' programs are written the way Pachyderm's example code is:
hardcoded ``/pfs`` paths, scripts at absolute paths (``python3
/edges.py``), ``/tmp`` as scratch (word count's reduce counts twice if
``/tmp`` outlives a datum)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest
from helpers import REPO_ROOT, STAGE_PYTHON, file_bytes, run_ok, skip, stage_env_has

from pipectl.pfs import PFS
from pipectl.store import open_store

OUTPUTS = ["edges", "montage", "map", "reduce", "inner_join", "outer_join", "revenue", "report", "batch"]
IMAGES = ["pipectl/base:0.1.0", "pipectl/examples:0.1.0"]
K8S_CONTROLLER = ("--executor", "kubernetes", "--store-secret", "pipectl-s3", "--image-pull-policy", "Never",
                  "--poll-interval", "0.1")


def run_examples(*controller_args: str) -> dict[str, dict[str, str]]:
    """Run ``examples/run.sh`` against ``$PIPECTL_STORE`` with
    ``controller_args``; return each output repo's master as {path: SHA-256}."""
    if not stage_env_has("PIL", "sklearn"):
        skip("stages", "stage environment missing: run `make stage-env`")
    env = dict(os.environ, PIPECTL_STAGE_PYTHON=STAGE_PYTHON)
    proc = subprocess.run(["bash", os.path.join(REPO_ROOT, "examples", "run.sh"), *controller_args],
                          capture_output=True, text=True, timeout=1500, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-5000:]
    pfs = PFS(open_store(os.environ["PIPECTL_STORE"]))
    return {repo: {path: hashlib.sha256(data).hexdigest() for path, data in file_bytes(pfs, repo).items()}
            for repo in OUTPUTS}


def jobs(pipeline: str) -> list[dict]:
    return json.loads(run_ok("list-job", "-p", pipeline, "--raw").out)


def text(repo: str, path: str) -> str:
    return run_ok("get-file", repo, "master", path).out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The flows on the process executor and a local store: their outputs,
    and the store URL they are in."""
    url = "file://" + str(tmp_path_factory.mktemp("examples") / "store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIPECTL_STORE", url)
        return run_examples("--poll-interval", "0.1"), url


def test_process_executor_gives_the_documented_results(reference, monkeypatch):
    outputs, url = reference
    monkeypatch.setenv("PIPECTL_STORE", url)
    # opencv: an edge map per image, the second job ran only the new image; a montage of all four
    assert sorted(outputs["edges"]) == ["/china.png", "/flower.png"]
    assert [(j["datums_processed"], j["datums_skipped"]) for j in jobs("edges")] == [(1, 1), (1, 0)]
    assert list(outputs["montage"]) == ["/montage.png"]
    # word count: 9 after the first commit of pages, 11 after the second (20 if /tmp outlived a datum)
    assert text("reduce", "/data") == "11\n"
    assert run_ok("get-file", "reduce", "master^", "/data").out == "9\n"
    assert len({p.split("/")[1] for p in outputs["map"]}) == 3  # one directory per page (datum)
    # joins: each purchase with its store; the outer join also keeps the store with none
    inner = {p: text("inner_join", p) for p in outputs["inner_join"]}
    assert inner == {"/STOREID1/P01": "Bakery, Lyon: 12.50\n", "/STOREID1/P02": "Bakery, Lyon: 3.20\n",
                     "/STOREID1/P05": "Bakery, Lyon: 7.75\n", "/STOREID2/P03": "Bookshop, Porto: 48.00\n",
                     "/STOREID3/P04": "Hardware, Graz: 19.99\n"}
    assert outputs["outer_join"] == {**outputs["inner_join"], "/STOREID4/none": outputs["outer_join"]["/STOREID4/none"]}
    assert text("outer_join", "/STOREID4/none") == "Florist, Ghent: no purchases\n"
    # group: purchases and returns of each store in one datum
    assert text("revenue", "/STOREID1.txt") == "purchases 3 23.45\nreturns 1 5.00\nnet 18.45\n"
    assert text("revenue", "/STOREID2.txt") == "purchases 1 48.00\nreturns 0 0.00\nnet 48.00\n"
    assert text("revenue", "/STOREID3.txt") == "purchases 1 19.99\nreturns 1 19.99\nnet 0.00\n"
    # cron: fired at least twice, each tick alone in its commit (overwrite)
    assert len([j for j in jobs("report") if j["state"] == "success"]) >= 2
    assert text("report", "/report.txt") == "purchases 5\ntotal 91.44\n"
    # trigger: uploads has 4 commits; the pipeline ran on the 2nd and the 4th
    assert [j["state"] for j in jobs("batch")] == ["success", "success"]
    assert text("batch", "/lines") == "8\n"
    assert run_ok("get-file", "batch", "master^", "/lines").out == "4\n"


def _docker_ready() -> bool:
    try:
        import docker
        client = docker.from_env()
        return all(client.images.get(i) for i in IMAGES)
    except Exception:
        return False


def test_docker_executor_gives_the_same_output_commits(reference, tmp_path, monkeypatch):
    if not _docker_ready():
        skip("docker", "no Docker engine, or images missing: run `make images`")
    monkeypatch.setenv("PIPECTL_STORE", "file://" + str(tmp_path / "store"))
    assert run_examples("--executor", "docker", "--poll-interval", "0.1") == reference[0]
    assert [j["state"] for j in jobs("batch")] == ["success", "success"]


def test_kubernetes_executor_gives_the_same_output_commits(reference, k8s_env):
    assert run_examples(*K8S_CONTROLLER) == reference[0]
    assert [j["state"] for j in jobs("batch")] == ["success", "success"]
    assert {j["executor"] for j in jobs("reduce")} == {"kubernetes"}
