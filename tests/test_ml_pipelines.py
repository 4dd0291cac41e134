"""The shipped ML pipelines end to end through the real controller and the
process executor, on real data (Iris from scikit-learn; speech made with
espeak-ng): accuracy, incremental runs, provenance and bad input."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from helpers import REPO_ROOT, make_iris_data, needs, put_iris, run_cli, run_ok, stage_env_has

LOCAL_IMAGES = os.path.join(REPO_ROOT, "stages", "local-images.json")


needs_mxnet = needs("stages", stage_env_has("mxnet", "sklearn"),
                    "stage environment with MXNet missing: run `make stage-env`")
needs_audio = needs("audio", stage_env_has("librosa", "sklearn") and bool(shutil.which("espeak-ng")),
                    "needs `make stage-env` and espeak-ng (apt-get install espeak-ng sox)")


def controller():
    """Run the controller until idle; it must exit cleanly whatever the jobs did."""
    r = run_cli("controller", "--exit-when-idle", "--local-images", LOCAL_IMAGES, timeout=900)
    assert r.code == 0 and "Traceback" not in r.err, r
    return r


def jobs(pipeline: str) -> list[dict]:
    return json.loads(run_ok("list-job", "-p", pipeline, "--raw").out)


def read(repo: str, path: str, ref: str = "master") -> bytes:
    return run_ok("get-file", repo, ref, path).stdout_bytes


@pytest.fixture
def local_store(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPECTL_STORE", "file://" + str(tmp_path / "store"))
    return tmp_path


@pytest.fixture
def iris(local_store):
    """The Iris pipelines, run once: returns the data directories."""
    data, new = make_iris_data(local_store)
    put_iris(data, new)
    controller()
    return data, new


@needs_mxnet
def test_iris_trains_predicts_and_traces(iris, local_store):
    data, new = iris
    metrics = json.loads(read("train", "/metrics.json"))
    assert metrics["accuracy"] >= 0.9
    for name in ("test1.csv", "test2.csv"):
        rows = (new / name).read_text().strip().splitlines()[1:]
        predicted = read("inference", "/" + name).decode().split()
        assert len(predicted) == len(rows) and set(predicted) <= {"setosa", "versicolor", "virginica"}
    model = json.loads(run_ok("inspect-commit", "train", "master", "--raw").out)
    iris_head = json.loads(run_ok("inspect-commit", "iris", "master", "--raw").out)["id"]
    assert {p["repo"]: p["commit"] for p in model["provenance"]}["iris"] == iris_head
    assert model["pipeline_version"] == 1

    # A new CSV in iris-new runs only inference, for that file only.
    (local_store / "test3.csv").write_text((new / "test1.csv").read_text())
    run_ok("put-file", "iris-new", "master", "/test3.csv", "-f", str(local_store / "test3.csv"))
    controller()
    assert [len(jobs(p)) for p in ("preprocess", "train", "inference")] == [1, 1, 2]
    latest = jobs("inference")[0]
    assert (latest["state"], latest["datums_processed"], latest["datums_skipped"]) == ("success", 1, 2)
    assert read("inference", "/test3.csv") == read("inference", "/test1.csv")

    # Changed training data reruns preprocess and train; the new model names it.
    extra = (data / "iris.csv").read_text().splitlines()[1:11]
    (local_store / "more.csv").write_text("sepal_length,sepal_width,petal_length,petal_width,species\n"
                                          + "\n".join(extra) + "\n")
    run_ok("put-file", "iris", "master", "/more.csv", "-f", str(local_store / "more.csv"))
    new_data = json.loads(run_ok("inspect-commit", "iris", "master", "--raw").out)["id"]
    controller()
    assert [len(jobs(p)) for p in ("preprocess", "train")] == [2, 2]
    model = json.loads(run_ok("inspect-commit", "train", "master", "--raw").out)
    assert {p["repo"]: p["commit"] for p in model["provenance"]}["iris"] == new_data
    assert json.loads(read("train", "/metrics.json"))["accuracy"] >= 0.9


@needs_mxnet
def test_corrupt_csv_fails_the_datum_not_the_controller(iris, local_store):
    (local_store / "bad.csv").write_bytes(b"sepal_length,sepal_width\n\x00\xff\xfe garbage,,\n")
    run_ok("put-file", "iris-new", "master", "/bad.csv", "-f", str(local_store / "bad.csv"))
    before = json.loads(run_ok("inspect-commit", "inference", "master", "--raw").out)["id"]
    controller()
    job = jobs("inference")[0]
    assert job["state"] == "failure" and "bad.csv" in job["reason"]
    assert "Traceback" not in job["reason"]
    assert json.loads(run_ok("inspect-commit", "inference", "master", "--raw").out)["id"] == before
    logs = run_ok("get-logs", "--job", job["id"]).out
    assert "bad.csv" in logs and "error" in logs


@needs_audio
def test_speech_pipeline_learns_who_is_speaking(local_store):
    corpus = local_store / "www"
    corpus.mkdir()
    subprocess.run(["python3", os.path.join(REPO_ROOT, "scripts", "make_speech_corpus.py"),
                    str(corpus / "speech.zip")], check=True, capture_output=True, timeout=600)
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(corpus))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run_ok("create-repo", "audio-trigger")
        run_ok("put-file", "audio-trigger", "master", "/request.txt", "-f", "-", input=b"go\n")
        spec = json.loads(Path(REPO_ROOT, "specs", "audio", "fetch.json").read_text())
        spec["transform"]["env"]["SOURCE_URL"] = f"http://127.0.0.1:{server.server_port}/speech.zip"
        run_ok("create-pipeline", "-f", "-", input=json.dumps(spec).encode())
        for name in ("filter", "extract", "learn"):
            run_ok("create-pipeline", "-f", os.path.join(REPO_ROOT, "specs", "audio", f"{name}.json"))
        ran = controller()
    finally:
        server.shutdown()
    states = {p: [(j["state"], j["reason"][-300:]) for j in jobs(p)] for p in ("fetch", "filter", "extract", "learn")}
    assert all(s == [("success", "")] for s in states.values()), (states, ran.err[-3000:])
    metrics = json.loads(read("learn", "/metrics.json"))
    assert metrics["accuracy"] >= 3 * metrics["chance_accuracy"]
    assert metrics["accuracy"] >= 0.8
    kept = json.loads(run_ok("list-file", "filter", "master", "/", "--raw").out)
    fetched = json.loads(run_ok("list-file", "fetch", "master", "/", "--raw").out)
    assert sum(n["size_bytes"] for n in kept) < sum(n["size_bytes"] for n in fetched)  # long clips dropped
    model = json.loads(run_ok("inspect-commit", "learn", "master", "--raw").out)
    assert {p["repo"] for p in model["provenance"]} == {"extract", "filter", "fetch", "audio-trigger"}
