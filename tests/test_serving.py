"""Model serving (issue #5): ``pipectl serve`` over real HTTP.

Real parts only: the model is trained once per module by the train stage
under the real ``pipectl controller`` (process executor, the stage
environment) on the real Iris data; the server is a real ``python -m
pipectl serve`` process run by the stage interpreter (it needs MXNet) on an
ephemeral loopback port; requests go over HTTP with ``requests``. The
inference stage runs in the same pipeline, so the server's predictions are
checked against the stage's outputs for the same rows and the same model
commit.

Skipped, with the reason, when the stage interpreter
(``$PIPECTL_STAGE_PYTHON`` or ``.venv-stages/bin/python``) lacks MXNet,
Starlette, uvicorn or pipectl (``make stage-env``).
"""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import helpers
import pytest
import requests
from helpers import HANDLER, ModelServer, file_bytes, free_port, ok, run_cli, skip, wait_for

from pipectl.errors import NotFound
from pipectl.pfs import PFS
from pipectl.store import open_store

ROOT = Path(__file__).resolve().parents[1]
STAGE_PYTHON = Path(helpers.STAGE_PYTHON)
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSES = ["setosa", "versicolor", "virginica"]
SETOSA = [5.1, 3.5, 1.4, 0.2]


# --- helpers ------------------------------------------------------------------

# --- fixtures -----------------------------------------------------------------

@pytest.fixture(scope="module")
def stage_python() -> Path:
    """The stage interpreter, able to serve; skips the module otherwise."""
    if not STAGE_PYTHON.exists():
        skip("stages", f"stage interpreter {STAGE_PYTHON} not found (make stage-env, or set PIPECTL_STAGE_PYTHON)")
    probe = subprocess.run([str(STAGE_PYTHON), "-c", "import mxnet, numpy, sklearn, starlette, uvicorn, pipectl"],
                           check=False, capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        skip("stages", f"{STAGE_PYTHON} cannot serve the Iris model ({probe.stderr.strip().splitlines()[-1]}); "
                    "make stage-env installs MXNet, Starlette, uvicorn and pipectl into it")
    return STAGE_PYTHON


class Trained:
    """The module's store after the Iris pipelines ran: ``url``, ``pfs``,
    ``env`` (for CLI calls), ``data`` and ``new_data`` (the directories of
    CSV files put into the iris and iris-new repos)."""

    def __init__(self, url: str, data: Path, new_data: Path):
        self.url, self.data, self.new_data = url, data, new_data
        self.pfs = PFS(open_store(url))
        self.env = {"PIPECTL_STORE": url}

    def cli(self, *args: str, timeout: float = 600, **kw):
        return ok(run_cli(*args, env=self.env, timeout=timeout, **kw))

    def controller(self):
        return self.cli("controller", "--exit-when-idle", "--poll-interval", "0.05",
                        "--local-images", str(ROOT / "stages" / "local-images.json"))


@pytest.fixture(scope="module")
def trained(stage_python, tmp_path_factory) -> Trained:
    """Iris data -> preprocess -> train -> inference, by the real controller."""
    work = tmp_path_factory.mktemp("serving")
    data, new = work / "iris", work / "iris-new"
    subprocess.run([str(stage_python), str(ROOT / "scripts" / "iris_data.py"), str(data), "--new-dir", str(new)],
                   check=True, capture_output=True, timeout=300)
    t = Trained("file://" + str(work / "store"), data, new)
    t.cli("create-repo", "iris")
    t.cli("put-file", "iris", "master", "/", "-r", "-f", str(data))
    t.cli("create-repo", "iris-new")
    t.cli("put-file", "iris-new", "master", "/", "-r", "-f", str(new))
    for spec in ("preprocess", "train", "inference"):
        t.cli("create-pipeline", "-f", str(ROOT / "specs" / "iris" / f"{spec}.json"))
    t.controller()
    return t


@pytest.fixture(scope="module")
def server(stage_python, trained, tmp_path_factory):
    """A server on the trained store's train@master, with a model loaded,
    answering KServe v2 gRPC on ``server.grpc_port`` too."""
    grpc_port = free_port()
    s = ModelServer(stage_python, trained.url, tmp_path_factory.mktemp("serve") / "serve.log",
                    "--grpc-port", str(grpc_port))
    s.grpc_port = grpc_port
    try:
        yield s.wait_healthy()
    finally:
        s.stop()


@pytest.fixture
def new_server(stage_python, tmp_path):
    """``new_server(store_url)`` starts a server (stopped at teardown)."""
    started: list[ModelServer] = []

    def start(store_url: str, *extra: str) -> ModelServer:
        started.append(ModelServer(stage_python, store_url, tmp_path / f"serve-{len(started)}.log", *extra))
        return started[-1]

    yield start
    for s in started:
        s.stop()


# --- tests --------------------------------------------------------------------

def test_core_and_cli_import_no_numpy_or_mxnet(stage_python):
    code = ("import sys, pipectl.cli, pipectl.serving.app, pipectl.serving.server; "
            "bad = {'numpy', 'mxnet'} & set(sys.modules); assert not bad, bad")
    result = subprocess.run([str(stage_python), "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("args, needle", [
    ([], "no model to serve: give --repo, or --model NAME=REPO[@BRANCH]"),
    (["--model", "iris"], "--model iris: give --repo for a plain model name, or NAME=REPO[@BRANCH]"),
    (["--model", "=train"], "--model '=train': expected NAME=REPO[@BRANCH]"),
    (["--repo", "train", "--model", "a=train", "--model", "a=train@x"], "model a is given twice"),
    (["--model", "a=tra!n"], "invalid repo name 'tra!n'"),
])
def test_bad_model_options_are_one_line_errors(stage_python, tmp_path, args, needle):
    result = subprocess.run([str(stage_python), "-m", "pipectl", "--store", f"file://{tmp_path}/store", "serve",
                             "--handler", str(HANDLER), "--port", str(free_port()), *args],
                            check=False, capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and needle in lines[0], result.stderr


@pytest.mark.parametrize("handler, needle", [
    ("missing.py", "not found"),
    ("no_load.py", "defines no load(model_dir) function"),
    ("broken.py", "cannot import handler"),
    (str(HANDLER), "cannot listen on 127.0.0.1:{port}: Address already in use"),
])
def test_a_bad_start_is_a_one_line_error(stage_python, tmp_path, handler, needle):
    (tmp_path / "no_load.py").write_text("x = 1\n")
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1] if handler == str(HANDLER) else free_port()
        result = subprocess.run(
            [str(stage_python), "-m", "pipectl", "--store", f"file://{tmp_path}/store", "serve", "--repo", "train",
             "--handler", str(tmp_path / handler), "--port", str(port)],
            check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle.format(port=port) in lines[0], result.stderr


def test_503_until_a_model_appears_then_serves_it(trained, new_server, tmp_path):
    url = f"file://{tmp_path}/store"
    pfs = PFS(open_store(url))
    s = new_server(url).wait_up()

    def unavailable(needle: str) -> None:
        ping = s.get("/ping")
        assert ping.status_code == 503 and ping.json()["status"] == "Unhealthy", ping.text
        assert needle in ping.json()["message"], ping.text
        for r in (s.post("/predictions/iris", SETOSA),
                  s.post("/v2/models/iris/infer", {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                                               "data": SETOSA}]}),
                  s.get("/v2/health/ready"), s.get("/v2/models/iris")):
            assert r.status_code == 503, r.text
            assert needle in (r.json().get("message") or r.json().get("error")), r.text
        described = s.get("/models/iris").json()[0]
        assert described["status"] == "Unavailable" and described["modelVersion"] is None
        assert s.get("/v2/health/live").status_code == 200

    wait_for(lambda: "repo train not found" in s.get("/ping").json()["message"], 30, what="the missing-repo reason")
    unavailable("repo train not found")
    pfs.create_repo("train")
    wait_for(lambda: "no commits" in s.get("/ping").json()["message"], 30, what="the no-commit reason")
    unavailable("branch master of repo train has no commits yet")

    model = file_bytes(trained.pfs, "train")
    commit = pfs.put_files("train", "master", [(p, io.BytesIO(d)) for p, d in model.items()])[0]
    wait_for(lambda: s.get("/ping").status_code == 200, 60, what="the model to load")
    r = s.post("/predictions/iris", SETOSA)
    assert r.status_code == 200 and r.json()["predictions"] == ["setosa"], r.text
    assert r.json()["model_version"] == r.headers["X-Model-Version"] == commit.id
    provenance = s.get("/models/iris").json()[0]["provenance"]
    assert provenance["commit"] == commit.id and provenance["pipeline"] is None  # put by a user


def test_a_broken_model_commit_keeps_the_previous_version_serving(trained, new_server, tmp_path):
    url = f"file://{tmp_path}/store"
    pfs = PFS(open_store(url))
    pfs.create_repo("train")
    model = file_bytes(trained.pfs, "train")
    good = pfs.put_files("train", "master", [(p, io.BytesIO(d)) for p, d in model.items()])[0]
    s = new_server(url).wait_healthy()
    assert s.version() == good.id

    broken = pfs.delete_file("train", "master", "/model-0000.params")
    error = wait_for(lambda: s.get("/models/iris").json()[0].get("lastError"), 30, what="the load error")
    assert error["commit"] == broken.id and "model-0000.params" in error["error"]
    r = s.post("/predictions/iris", SETOSA)
    assert r.status_code == 200 and r.json()["model_version"] == good.id
    assert s.get("/ping").status_code == 200

    fixed = pfs.put_files("train", "master", [("/model-0000.params", io.BytesIO(model["/model-0000.params"]))])[0]
    wait_for(lambda: s.version() == fixed.id, 30, what="the fixed model")
    assert "lastError" not in s.get("/models/iris").json()[0]


def test_predictions_match_the_inference_stage(trained, server):
    model_commit = trained.pfs.inspect_commit("train", "master")
    inference = trained.pfs.inspect_commit("inference", "master")
    assert any(p["repo"] == "train" and p["commit"] == model_commit.id for p in inference.provenance)
    expected = {path: data.decode().split() for path, data in file_bytes(trained.pfs, "inference").items()}
    assert sorted(expected) == ["/test1.csv", "/test2.csv"]
    for path, labels in expected.items():
        csv_text = (trained.new_data / path.lstrip("/")).read_text()
        by_csv = server.post("/predictions/iris", csv_text, "text/csv")
        assert by_csv.status_code == 200, by_csv.text
        assert by_csv.json()["predictions"] == labels
        assert by_csv.json()["model_version"] == by_csv.headers["X-Model-Version"] == model_commit.id

        lines = csv_text.split()
        rows = [[float(v) for v in line.split(",")] for line in lines[1:]]
        assert server.post("/predictions/iris", rows).json()["predictions"] == labels
        objects = [dict(zip(FEATURES, r)) for r in rows]
        assert server.post("/predictions/iris", {"instances": objects}).json()["predictions"] == labels
        headerless = "\n".join(lines[1:]) + "\n"
        assert server.post("/predictions/iris", headerless, "text/csv").json()["predictions"] == labels
        for r, label in zip(rows, labels):
            one = server.post("/predictions/iris", r).json()
            assert one["predictions"] == [label]
            probabilities = one["probabilities"][0]
            assert sorted(probabilities) == CLASSES and abs(sum(probabilities.values()) - 1) < 1e-4
            assert max(probabilities, key=probabilities.get) == label


def test_a_large_batch_the_whole_data_set(server, trained):
    """150 rows (run off the event loop): labelled CSV, the species column ignored."""
    text = (trained.data / "iris.csv").read_text()
    r = server.post("/predictions/iris", text, "text/csv")
    assert r.status_code == 200, r.text
    truth = [line.rsplit(",", 1)[1] for line in text.split()[1:]]
    predicted = r.json()["predictions"]
    assert len(predicted) == len(truth) == 150
    assert sum(p == t for p, t in zip(predicted, truth)) / 150 > 0.9


@pytest.mark.parametrize("store_url", ["s3"], indirect=True)
def test_serves_a_model_from_s3(trained, new_server, store_url):
    """The model repo on S3 (versitygw over HTTP; the AWS variables are
    in the environment the server inherits)."""
    pfs = PFS(open_store(store_url))
    pfs.create_repo("train")
    model = file_bytes(trained.pfs, "train")
    commit = pfs.put_files("train", "master", [(p, io.BytesIO(d)) for p, d in model.items()])[0]
    s = new_server(store_url).wait_healthy()
    r = s.post("/predictions/iris", SETOSA)
    assert r.status_code == 200 and r.json()["predictions"] == ["setosa"]
    assert r.json()["model_version"] == commit.id


def test_one_instance_in_every_form(server):
    forms = [
        (SETOSA, "application/json"),
        (dict(zip(FEATURES, SETOSA)), "application/json"),
        ({"Sepal.Length": 5.1, "Sepal Width": 3.5, "PETAL-LENGTH": 1.4, "petal_width": 0.2}, "application/json"),
        ({"instances": [SETOSA]}, "application/json"),
        ([SETOSA], "application/json"),
        ("5.1,3.5,1.4,0.2\n", "text/csv"),
        ("species,petal_width,petal_length,sepal_width,sepal_length\nsetosa,0.2,1.4,3.5,5.1\n", "text/csv"),
    ]
    for body, media in forms:
        r = server.post("/predictions/iris", body, media)
        assert r.status_code == 200, (body, r.text)
        assert r.json()["predictions"] == ["setosa"], body


def test_models_endpoints_show_version_and_provenance(trained, server):
    commit = trained.pfs.inspect_commit("train", "master")
    assert server.get("/ping").json() == {"status": "Healthy"}
    models = server.get("/models").json()["models"]
    assert models == [{"modelName": "iris", "modelUrl": "pfs://train@master", "modelVersion": commit.id}]
    [described] = server.get("/models/iris").json()
    assert described["modelVersion"] == commit.id and described["status"] == "Ready"
    assert described["features"] == FEATURES and described["classes"] == CLASSES
    provenance = described["provenance"]
    assert provenance["pipeline"] == "train" and provenance["pipeline_version"] == commit.pipeline_version
    assert provenance["job"] == commit.job
    iris_head = trained.pfs.inspect_commit("iris", "master").id
    assert [(d["repo"], d["commit"]) for d in provenance["data"]] == [("iris", iris_head)]
    assert {p["repo"] for p in provenance["inputs"]} == {"iris", "preprocess"}


def test_kserve_v2_protocol(trained, server):
    commit = trained.pfs.inspect_commit("train", "master").id
    assert server.get("/v2/health/live").json() == {"live": True}
    assert server.get("/v2/health/ready").json() == {"ready": True}
    assert server.get("/v2/models/iris/ready").json() == {"name": "iris", "ready": True}
    meta = server.get("/v2/models/iris").json()
    assert meta["name"] == "iris" and meta["versions"] == [commit]
    assert meta["inputs"][0]["shape"] == [-1, 4]
    rows = [SETOSA, [6.7, 3.0, 5.2, 2.3], [6.1, 2.8, 4.7, 1.2]]
    labels = server.post("/predictions/iris", rows).json()["predictions"]

    matrix = {"id": "req-1", "inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP32",
                                         "data": [v for r in rows for v in r]}]}
    r = server.post("/v2/models/iris/infer", matrix)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "iris" and body["model_version"] == commit and body["id"] == "req-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["predictions"]["data"] == labels and outputs["predictions"]["shape"] == [3]
    assert outputs["probabilities"]["shape"] == [3, 3] and len(outputs["probabilities"]["data"]) == 9

    columns = {"inputs": [{"name": f, "shape": [3, 1], "datatype": "FP64", "data": [[r[i]] for r in rows]}
                          for i, f in enumerate(FEATURES)],
               "outputs": [{"name": "predictions"}]}
    body = server.post("/v2/models/iris/infer", columns).json()
    assert [o["name"] for o in body["outputs"]] == ["predictions"]
    assert body["outputs"][0]["data"] == labels


def test_tritonclient_at_its_defaults(trained, server):
    """The standard KServe v2 / Triton client, ``tritonclient[http]``, with
    its defaults: tensors sent and answered as binary data (the binary
    tensor data extension), FP32 rows and FP64 columns; its answers are the
    JSON protocol's."""
    try:
        import numpy as np
        import tritonclient.http as triton
    except ImportError:
        skip("stages", "tritonclient missing: pip install -e '.[test]'")
    rows = [SETOSA, [6.7, 3.0, 5.2, 2.3], [6.1, 2.8, 4.7, 1.2]]
    labels = server.post("/predictions/iris", rows).json()["predictions"]
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_model_ready("iris")
    matrix = triton.InferInput("input-0", [3, 4], "FP32")
    matrix.set_data_from_numpy(np.array(rows, dtype=np.float32))  # binary_data=True: the default
    result = client.infer("iris", [matrix])  # no outputs named: every output, in binary
    assert [b.decode() for b in result.as_numpy("predictions")] == labels
    assert result.as_numpy("probabilities").shape == (3, 3) and result.as_numpy("probabilities").dtype == np.float32
    assert result.get_response()["model_version"] == trained.pfs.inspect_commit("train", "master").id
    columns = []
    for i, f in enumerate(FEATURES):
        columns.append(triton.InferInput(f, [3, 1], "FP64"))
        columns[-1].set_data_from_numpy(np.array([[r[i]] for r in rows], dtype=np.float64))
    result = client.infer("iris", columns, outputs=[triton.InferRequestedOutput("predictions", binary_data=False)])
    assert result.get_output("predictions")["data"] == labels and result.as_numpy("probabilities") is None
    bad = triton.InferInput("input-0", [1, 4], "FP32")
    bad.set_data_from_numpy(np.array([SETOSA], dtype=np.float32))
    bad._raw_data = bad._raw_data[:-4]  # noqa: SLF001 (a body shorter than its tensor says: refused by name)
    bad._parameters["binary_data_size"] = 12  # noqa: SLF001
    with pytest.raises(Exception, match="needs 16 bytes, binary_data_size is 12"):
        client.infer("iris", [bad])


def test_tritonclient_grpc_at_its_defaults(trained, server):
    """The KServe v2 gRPC service with ``tritonclient.grpc`` at its
    defaults (tensors in raw_input_contents, answers read from
    raw_output_contents): health, metadata, inference (the HTTP answers),
    a version by id, and errors with their gRPC status codes."""
    try:
        import numpy as np
        import tritonclient.grpc as triton
        from tritonclient.utils import InferenceServerException
    except ImportError:
        skip("stages", "tritonclient[grpc] missing: pip install -e '.[test]'")
    head = trained.pfs.inspect_commit("train", "master").id
    rows = [SETOSA, [6.7, 3.0, 5.2, 2.3], [6.1, 2.8, 4.7, 1.2]]
    labels = server.post("/predictions/iris", rows).json()["predictions"]
    client = triton.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris")
    assert not client.is_model_ready("nope") and client.get_server_metadata().name == "pipectl"
    meta = client.get_model_metadata("iris", as_json=True)
    assert meta["versions"] == [head] and [o["name"] for o in meta["outputs"]] == ["predictions", "probabilities"]
    matrix = triton.InferInput("input-0", [3, 4], "FP32")
    matrix.set_data_from_numpy(np.array(rows, dtype=np.float32))
    result = client.infer("iris", [matrix], request_id="r1")
    assert [b.decode() for b in result.as_numpy("predictions")] == labels
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (3, 3) and probabilities.dtype == np.float32
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    response = result.get_response()
    assert response.model_version == head and response.id == "r1"
    only = client.infer("iris", [matrix], model_version=head, outputs=[triton.InferRequestedOutput("predictions")])
    assert [b.decode() for b in only.as_numpy("predictions")] == labels and only.as_numpy("probabilities") is None
    short = triton.InferInput("input-0", [1, 3], "FP64")
    short.set_data_from_numpy(np.array([SETOSA[:3]], dtype=np.float64))
    for model, inputs, code, needle in [("iris", [short], "INVALID_ARGUMENT", "the model expects 4 features"),
                                        ("nope", [matrix], "NOT_FOUND", "model nope not found"),
                                        ("iris", [matrix], "NOT_FOUND", "has no version")]:
        with pytest.raises(InferenceServerException) as raised:
            client.infer(model, inputs, model_version="0" * 32 if code == "NOT_FOUND" and model == "iris" else "")
        assert code in str(raised.value.status()) and needle in raised.value.message(), raised.value
    text = server.get("/metrics").text
    counted = _samples(text, "pipectl_serving_requests_total")
    assert counted[frozenset({("model", "iris"), ("version", head), ("status", "400")})] >= 1


def test_several_models_from_one_server(trained, new_server):
    """``--model NAME=REPO@BRANCH`` repeated: each model has its own
    version, URLs and readiness; an unknown name is a 404 naming them."""
    trained.cli("create-branch", "train", "candidate", "--head", "master")
    trained.cli("put-file", "train", "candidate", "/NOTE", "-f", "-", input=b"the candidate\n")
    candidate = trained.pfs.inspect_commit("train", "candidate").id
    head = trained.pfs.inspect_commit("train", "master").id
    server = new_server(trained.url, "--model", "candidate=train@candidate").wait_healthy()
    listed = {m["modelName"]: m for m in server.get("/models").json()["models"]}
    assert {n: (m["modelVersion"], m["modelUrl"]) for n, m in listed.items()} == {
        "iris": (head, "pfs://train@master"), "candidate": (candidate, "pfs://train@candidate")}
    for name, version in (("iris", head), ("candidate", candidate)):
        answer = server.post(f"/predictions/{name}", [SETOSA]).json()
        assert answer["model_version"] == version and answer["predictions"] == ["setosa"]
        assert server.get(f"/v2/models/{name}").json()["name"] == name
    r = server.post("/predictions/other", [SETOSA])
    assert r.status_code == 404 and "this server serves candidate, iris" in r.json()["message"]


def _passes(server: ModelServer) -> tuple[float, float]:
    """(forward passes, rows) of model iris so far, from ``/metrics``."""
    text = server.get("/metrics").text
    iris = frozenset({("model", "iris")})
    return (_samples(text, "pipectl_serving_batch_rows_count").get(iris, 0),
            _samples(text, "pipectl_serving_batch_rows_sum").get(iris, 0))


def _together(server: ModelServer, rows: list) -> list[dict]:
    """Each row as its own request, all sent at once (one thread each): the answers."""
    answers: list = [None] * len(rows)
    start = threading.Barrier(len(rows))

    def ask(i: int) -> None:
        start.wait()
        answers[i] = requests.post(f"{server.url}/predictions/iris", json=[rows[i]], timeout=30).json()
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(rows))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_concurrent_requests_share_a_forward_pass(trained, new_server):
    """Dynamic batching: 8 single-row requests sent together with
    ``--max-batch-delay 500`` run as fewer forward passes than requests
    (the rows-per-pass histogram says so), each answered its own
    prediction; with ``--max-batch-size 1`` every request has its own pass."""
    rows = [SETOSA, [6.7, 3.0, 5.2, 2.3], [6.1, 2.8, 4.7, 1.2], [5.0, 3.4, 1.5, 0.2]] * 2
    batched = new_server(trained.url, "--max-batch-delay", "500").wait_healthy()
    alone = new_server(trained.url, "--max-batch-size", "1").wait_healthy()
    expected = batched.post("/predictions/iris", rows).json()["predictions"]
    for server in (batched, alone):
        before = _passes(server)
        assert [a["predictions"][0] for a in _together(server, rows)] == expected
        count, total = (after - was for after, was in zip(_passes(server), before))
        assert total == len(rows), total
        assert count == len(rows) if server is alone else count <= 3, count


def test_readiness_fails_while_a_new_version_loads(trained, new_server, tmp_path):
    """``--unready-while-loading``: while a new model commit loads, /ping
    and /v2/health/ready answer 503 naming it, and the previous version
    keeps answering predictions; then the new one serves."""
    slow = tmp_path / "slow_model.py"
    slow.write_text(f"import os, sys, time\nsys.path.insert(0, {str(Path(HANDLER).parent)!r})\nimport iris_model\n\n\n"
                    "def load(model_dir):\n    if os.path.exists(os.path.join(model_dir, 'SLOW')):\n"
                    "        time.sleep(4)\n    return iris_model.load(model_dir)\n")
    trained.cli("create-branch", "train", "slow", "--head", "master")
    old = trained.pfs.inspect_commit("train", "slow").id
    server = new_server(trained.url, "--handler", str(slow), "--unready-while-loading",
                        "--model", "slow=train@slow").wait_healthy()
    trained.cli("put-file", "train", "slow", "/SLOW", "-f", "-", input=b"load me slowly\n")
    new = trained.pfs.inspect_commit("train", "slow").id
    wait_for(lambda: server.get("/ping").status_code == 503, 30, 0.05, "/ping to fail while the new version loads")
    ping, ready = server.get("/ping").json(), server.get("/v2/health/ready")
    assert ping["message"] == f"model slow: loading version {new}" and ready.status_code == 503, ping
    answer = server.post("/predictions/slow", [SETOSA]).json()
    assert answer["model_version"] == old and server.get("/models/slow").json()[0]["loadingVersion"] == new
    wait_for(lambda: server.get("/ping").status_code == 200, 30, 0.05, "the new version to load")
    assert server.post("/predictions/slow", [SETOSA]).json()["model_version"] == new


def test_any_model_commit_is_served_by_version_id(trained, server):
    """A model version is a commit: an earlier or other commit of the model
    repo is loaded on demand and answers by its id (TorchServe's
    /predictions/<model>/<version>, KServe's /versions/<version>/), while
    the branch head stays the default."""
    head = trained.pfs.inspect_commit("train", "master").id
    trained.cli("create-branch", "train", "exp", "--head", "master")
    trained.cli("put-file", "train", "exp", "/NOTE", "-f", "-", input=b"same model, another commit\n")
    other = trained.pfs.inspect_commit("train", "exp").id
    assert other != head
    answer = server.post(f"/predictions/iris/{other}", [SETOSA])
    assert answer.status_code == 200 and answer.json()["model_version"] == other, answer.text
    assert answer.headers["X-Model-Version"] == other and answer.json()["predictions"] == ["setosa"]
    assert server.post("/predictions/iris", [SETOSA]).json()["model_version"] == head  # the default: the head
    body = server.post(f"/v2/models/iris/versions/{other}/infer", {"inputs": [TENSOR]}).json()
    assert body["model_version"] == other and body["outputs"][0]["data"] == ["setosa"]
    assert server.get(f"/v2/models/iris/versions/{other}").json()["versions"] == [other]
    assert server.get(f"/v2/models/iris/versions/{head}/ready").json()["ready"] is True
    described = server.get("/models/iris").json()[0]
    assert described["modelVersion"] == head and described["pinnedVersions"] == [other]
    for missing in ("0" * 32, "master", "not-an-id"):
        r = server.post(f"/predictions/iris/{missing}", [SETOSA])
        assert r.status_code == 404 and f"model iris has no version {missing}" in r.json()["message"], r.text


def test_predictions_are_logged_as_versioned_data(trained, new_server):
    """``--log-repo``: each answered request becomes a JSON line in a commit
    of that repo (the last ones when the server stops); its model_version
    leads through the model commit's provenance to the Iris data."""
    server = new_server(trained.url, "--log-repo", "predictions", "--log-interval", "0.3").wait_healthy()
    head = trained.pfs.inspect_commit("train", "master")
    assert server.post("/predictions/iris", [SETOSA, [6.7, 3.0, 5.2, 2.3]]).status_code == 200
    assert server.post("/v2/models/iris/infer", {"inputs": [TENSOR]}).status_code == 200
    assert server.post("/predictions/iris", [1, 2]).status_code == 400  # not answered: not logged

    def logged() -> list[dict]:
        try:
            files = file_bytes(PFS(open_store(trained.url)), "predictions")
        except NotFound:
            return []
        return [json.loads(line) for _, content in sorted(files.items()) for line in content.decode().splitlines()]
    wait_for(lambda: len(logged()) == 2, 30, 0.2, "the prediction log's commit")
    first, second = logged()
    assert first["rows"] == [SETOSA, [6.7, 3.0, 5.2, 2.3]] and first["predictions"] == ["setosa", "virginica"]
    assert second["rows"] == [SETOSA] and len(second["probabilities"][0]) == 3
    assert {first["model_version"], second["model_version"]} == {head.id} and first["model"] == "iris"
    model = json.loads(trained.cli("inspect-commit", "train", first["model_version"], "--raw").out)
    assert any(p["repo"] == "iris" for p in model["provenance"])  # the data the model was trained on
    assert server.post("/predictions/iris", [SETOSA]).status_code == 200
    server.stop()  # the last line is committed as the server stops
    assert len(logged()) == 3


def _samples(text: str, name: str) -> dict[frozenset, float]:
    """The samples of metric ``name`` in Prometheus text: labels -> value."""
    found = {}
    for labels, value in re.findall(rf"^{name}{{(.*?)}} (\S+)$", text, re.M):
        found[frozenset(re.findall(r'(\w+)="([^"]*)"', labels))] = float(value)
    return found


def test_metrics_count_predictions_by_version_and_status(trained, server):
    """``/metrics`` (Prometheus text): requests and latency by model,
    version and status, rows per forward pass, each held version's load time."""
    head = trained.pfs.inspect_commit("train", "master").id

    def count(status: str, version: str = head) -> float:
        text = server.get("/metrics").text
        return _samples(text, "pipectl_serving_requests_total").get(
            frozenset({("model", "iris"), ("version", version), ("status", status)}), 0)
    ok_before, bad_before = count("200"), count("400")
    assert server.post("/predictions/iris", [SETOSA, SETOSA, SETOSA]).status_code == 200
    assert server.post("/v2/models/iris/infer", {"inputs": [TENSOR]}).status_code == 200
    assert server.post("/predictions/iris", [1, 2]).status_code == 400
    assert count("200") == ok_before + 2
    assert count("400", "none") + count("400") >= bad_before + 1
    text = server.get("/metrics").text
    assert server.get("/metrics").headers["content-type"].startswith("text/plain")
    seconds = _samples(text, "pipectl_serving_request_seconds_count")
    assert seconds[frozenset({("model", "iris"), ("version", head), ("status", "200")})] >= 2
    rows = _samples(text, "pipectl_serving_batch_rows_bucket")
    assert rows[frozenset({("model", "iris"), ("le", "2.0")})] < rows[frozenset({("model", "iris"), ("le", "4.0")})]
    assert _samples(text, "pipectl_serving_model_load_seconds")[frozenset({("model", "iris"), ("version", head)})] > 0


JSON, CSV = "application/json", "text/csv"
TENSOR = {"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": SETOSA}


@pytest.mark.parametrize("method, path, media, body, status, needle", [
    ("POST", "/predictions/iris", JSON, "[5.1, 3.5", 400, "malformed JSON"),
    ("POST", "/predictions/iris", JSON, "", 400, "empty request body"),
    ("POST", "/predictions/iris", JSON, "[5.1, 3.5, NaN, 0.2]", 400, "NaN is not a number"),
    ("POST", "/predictions/iris", JSON, [5.1, 3.5, 1.4], 400, "has 3 values; the model expects 4 features"),
    ("POST", "/predictions/iris", JSON, [SETOSA, [1, 2, 3, 4, 5]], 400, "instance 1 has 5 values"),
    ("POST", "/predictions/iris", JSON, {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
                                        "petal_widht": 0.2}, 400, "missing petal_width; unknown petal_widht"),
    ("POST", "/predictions/iris", JSON, [5.1, "x", 1.4, 0.2], 400, "value 1: \"x\" is not a number"),
    ("POST", "/predictions/iris", JSON, [True, 3.5, 1.4, 0.2], 400, "true is not a number"),
    ("POST", "/predictions/iris", JSON, [], 400, "no instances"),
    ("POST", "/predictions/iris", JSON, "\"setosa\"", 400, "send an instance"),
    ("POST", "/predictions/iris", CSV, "5.1,3.5,1.4\n", 400, "CSV line 1 has 3 values"),
    ("POST", "/predictions/iris", CSV, "5.1,3.5,1.4,0.2\n5.1,3.5,1.4\n", 400, "CSV line 2 has 3 fields"),
    ("POST", "/predictions/iris", CSV, "a,b,c,d\n1,2,3,4\n", 400, "lacks feature(s) sepal_length"),
    ("POST", "/predictions/iris", CSV, "5.1,3.5,x,0.2\n", 400, "CSV line 1, column 3: 'x' is not a number"),
    ("POST", "/predictions/iris", CSV, "\n", 400, "no data rows"),
    ("POST", "/predictions/iris", "image/png", "\x89PNG", 415, "image/png is not supported"),
    ("POST", "/predictions/iris", JSON, "[" * 100_000 + "]" * 100_000, 400, "nested too deeply"),
    ("POST", "/predictions/iris", CSV, "5.1,3.5,1.4,0.2\n" * 10_001, 413, "at most 10000 per request"),
    ("POST", "/predictions/iris", JSON, [SETOSA] * 10_001, 413, "at most 10000 per request"),
    ("POST", "/predictions/resnet", JSON, SETOSA, 404, "model resnet not found"),
    ("GET", "/models/resnet", None, None, 404, "model resnet not found"),
    ("GET", "/predictions/iris", None, None, 405, "method GET not allowed"),
    ("GET", "/nowhere", None, None, 404, "no such endpoint"),
    ("POST", "/v2/models/iris/infer", JSON, "{", 400, "malformed JSON"),
    ("POST", "/v2/models/iris/infer", JSON, {"inputs": []}, 400, "non-empty list"),
    ("POST", "/v2/models/iris/infer", JSON, {"inputs": [dict(TENSOR, shape=[1, 3], data=SETOSA[:3])]}, 400,
     "3 features per row; the model expects 4"),
    ("POST", "/v2/models/iris/infer", JSON, {"inputs": [dict(TENSOR, shape=[2, 4])]}, 400,
     "needs 8 values, data has 4"),
    ("POST", "/v2/models/iris/infer", JSON, {"inputs": [dict(TENSOR, datatype="BYTES")]}, 400, "not numeric"),
    ("POST", "/v2/models/iris/infer", JSON,
     {"inputs": [dict(TENSOR, name=n, shape=[1], data=[1.0]) for n in ("sepal_length", "petal_size")]}, 400,
     "wrong input names (missing sepal_width, petal_length, petal_width; unknown petal_size)"),
    ("POST", "/v2/models/iris/infer", JSON, {"inputs": [TENSOR], "outputs": [{"name": "logits"}]}, 400,
     "unknown output(s) logits"),
    ("POST", "/v2/models/resnet/infer", JSON, {"inputs": [TENSOR]}, 404, "model resnet not found"),
    ("GET", "/v2/models/resnet", None, None, 404, "model resnet not found"),
])
def test_bad_requests_get_their_status_and_a_json_error(server, method, path, media, body, status, needle):
    r = server.get(path) if method == "GET" else server.post(path, body, media)
    assert r.status_code == status, r.text
    error = r.json()
    message = error["error"] if path.startswith("/v2") else error["message"]
    if not path.startswith("/v2"):
        assert error["code"] == status
    assert needle in message, message


def test_health_checks_answer_while_a_large_request_is_served(server):
    """A request of 10,000 rows (about 160 KB of CSV) is parsed and run off
    the event loop: /ping answers while it is in flight."""
    body = "5.1,3.5,1.4,0.2\n" * 10_000
    done: list = []
    big = threading.Thread(target=lambda: done.append(server.post("/predictions/iris", body, CSV).status_code))
    big.start()
    pings = []
    while big.is_alive() and len(pings) < 50:
        started = time.monotonic()
        assert server.get("/ping").status_code == 200
        pings.append(time.monotonic() - started)
    big.join(120)
    assert done == [200]
    assert max(pings) < 1.0, pings


def test_reload_under_a_stream_of_requests_loses_none(trained, server, tmp_path):
    """Retraining (update-pipeline train with more epochs) lands a new model
    commit while two clients send requests without pause: every request
    succeeds, each client sees the old version, then only the new one."""
    old = trained.pfs.inspect_commit("train", "master")
    assert server.version() == old.id
    stop = threading.Event()
    seen: dict[str, list] = {"predictions": [], "v2": []}

    requests_of = {"predictions": ("/predictions/iris", SETOSA), "v2": ("/v2/models/iris/infer", {"inputs": [TENSOR]})}

    def client(kind: str) -> None:
        session, (path, body) = requests.Session(), requests_of[kind]
        while not stop.is_set():
            try:
                r = session.post(server.url + path, json=body, timeout=30)
                seen[kind].append((r.status_code, r.json().get("model_version"), r.headers.get("X-Model-Version")))
            except (requests.RequestException, ValueError) as e:  # counted as a lost request
                seen[kind].append((repr(e), None, None))

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in seen]
    for t in threads:
        t.start()
    try:
        spec = json.loads((ROOT / "specs" / "iris" / "train.json").read_text())
        spec["transform"]["env"]["EPOCHS"] = "60"
        path = tmp_path / "train.json"
        path.write_text(json.dumps(spec))
        trained.cli("update-pipeline", "-f", str(path))
        trained.controller()
        new = trained.pfs.inspect_commit("train", "master")
        assert new.id != old.id and new.pipeline_version == old.pipeline_version + 1
        wait_for(lambda: all(s and s[-1][1] == new.id for s in seen.values()), 60, what="clients to see the new model")
        count = {k: len(s) for k, s in seen.items()}
        wait_for(lambda: all(len(s) >= count[k] + 20 for k, s in seen.items()), 30, what="more requests")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    for kind, results in seen.items():
        assert all(status == 200 for status, _, _ in results), [r for r in results if r[0] != 200][:3]
        assert all(body == header for _, body, header in results)
        versions = [v for _, v, _ in results]
        switch = versions.index(new.id)
        assert switch > 0 and set(versions[:switch]) == {old.id} and set(versions[switch:]) == {new.id}, kind
    [described] = server.get("/models/iris").json()
    assert described["modelVersion"] == new.id
    assert described["provenance"]["pipeline_version"] == new.pipeline_version
