"""The Docker executor against a real Docker engine and the images built by
`make images`: the Iris pipeline in containers, failures, cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import REPO_ROOT, make_iris_data, needs, put_iris, run_cli, run_ok, use_s3, wait_for

import docker


def _engine():
    try:
        client = docker.from_env()
        client.ping()
        return client
    except Exception:
        return None


CLIENT = _engine()
IMAGES = ["pipectl/base:0.1.0", "pipectl/preprocess:0.1.0", "pipectl/train:0.1.0", "pipectl/inference:0.1.0"]


def _have_images() -> bool:
    try:
        return all(CLIENT.images.get(i) for i in IMAGES)
    except Exception:
        return False


pytestmark = [
    needs("docker", CLIENT is not None, "no Docker engine (start dockerd)"),
    needs("docker", CLIENT is None or _have_images(), "images missing: run `make images`"),
]


def workers(role: str = "storage"):
    """The worker containers in ``role`` (storage: the worker's; user: the
    user code's; None: both)."""
    labels = ["io.pipectl.worker"] + ([f"io.pipectl.container={role}"] if role else [])
    # sparse: no per-container inspect, which races with containers being removed
    return CLIENT.containers.list(all=True, sparse=True, filters={"label": labels})


def leftovers() -> list:
    """Worker containers and volumes still present."""
    return workers(None) + CLIENT.volumes.list(filters={"label": "io.pipectl.worker"})


def controller(executor: str, timeout: float = 900, **kw):
    args = ["controller", "--exit-when-idle", "--executor", executor]
    if executor == "process":
        args += ["--local-images", os.path.join(REPO_ROOT, "stages", "local-images.json")]
    r = run_cli(*args, timeout=timeout, **kw)
    assert r.code == 0 and "Traceback" not in r.err, r
    assert leftovers() == []  # nothing left behind when a controller exits
    return r


def run_iris(executor: str, data, new) -> dict:
    put_iris(data, new)
    controller(executor)
    return {
        "metrics": run_ok("get-file", "train", "master", "/metrics.json").out,
        "params": run_ok("get-file", "train", "master", "/model-0000.params").stdout_bytes,
        "test1": run_ok("get-file", "inference", "master", "/test1.csv").out,
        "test2": run_ok("get-file", "inference", "master", "/test2.csv").out,
    }


def test_iris_in_containers_matches_process_executor(tmp_path, monkeypatch, request):
    data, new = make_iris_data(tmp_path)
    monkeypatch.setenv("PIPECTL_STORE", "file://" + str(tmp_path / "process-store"))
    local = run_iris("process", data, new)
    # containers talk to an S3 server (versitygw, on the host's loopback)
    server = request.getfixturevalue("s3_server")
    store = f"s3://{use_s3(server, monkeypatch, 'docker-iris-')}/p"
    monkeypatch.setenv("PIPECTL_STORE", store)
    contained = run_iris("docker", data, new)
    assert json.loads(contained["metrics"])["accuracy"] >= 0.9
    assert contained == local
    job = json.loads(run_ok("list-job", "-p", "train", "--raw").out)[0]
    assert job["executor"] == "docker"
    check_serving_image(server, store, new, contained["test1"])


def check_serving_image(server, store_url: str, new, expected: str) -> None:
    """The serving image, as a container, answers /ping and predicts what the
    inference stage predicted for the same rows."""
    import requests
    from helpers import free_port
    try:
        CLIENT.images.get("pipectl/serving:0.1.0")
    except docker.errors.ImageNotFound:
        pytest.fail("pipectl/serving:0.1.0 missing: run `make images`")
    port = free_port()
    container = CLIENT.containers.run(
        "pipectl/serving:0.1.0",
        ["--repo", "train", "--model", "iris", "--handler", "/app/iris_model.py",
         "--host", "127.0.0.1", "--port", str(port)],
        detach=True, network_mode="host",
        environment={"PIPECTL_STORE": store_url, **server.env()})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(base + "/ping", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("serving container never became ready:\n" + container.logs().decode()[-2000:])
        csv = (new / "test1.csv").read_bytes()
        r = requests.post(base + "/predictions/iris", data=csv, headers={"Content-Type": "text/csv"}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == expected.split()
    finally:
        container.remove(force=True)


SHELL_SPEC = {
    "pipeline": {"name": "shell"},
    "transform": {"image": "pipectl/base:0.1.0", "cmd": ["sh", "-c", ""]},
    "input": {"pfs": {"repo": "in", "glob": "/*"}},
    "parallelism_spec": {"constant": 2},
    "resource_limits": {"memory": "256Mi", "cpu": "500m"},
}


@pytest.fixture
def shell_pipeline(tmp_path, monkeypatch):
    """A local store (bind-mounted into containers) with an input repo of 4
    files; returns a function creating the 'shell' pipeline with a command."""
    monkeypatch.setenv("PIPECTL_STORE", "file://" + str(tmp_path / "store"))
    run_ok("create-repo", "in")
    for i in range(4):
        run_ok("put-file", "in", "master", f"/f{i}", "-f", "-", input=f"file {i}\n".encode())

    def create(script: str, **fields):
        spec = json.loads(json.dumps(SHELL_SPEC))
        spec["transform"]["cmd"][2] = script
        spec.update(fields)
        run_ok("create-pipeline", "-f", "-", input=json.dumps(spec).encode())
    return create


def test_failing_container_is_retried_then_fails_the_job(shell_pipeline, tmp_path):
    shell_pipeline("echo trying $PACH_DATUM_ID >&2; exit 3", datum_tries=2)
    controller("docker")
    job = json.loads(run_ok("list-job", "-p", "shell", "--raw").out)[0]
    assert job["state"] == "failure"
    assert "failed after 2 tries" in job["reason"] and "exit status 3" in job["reason"]
    assert "trying" in job["reason"]  # the tail of its stderr
    assert run_cli("inspect-commit", "shell", "master").code == 1  # output branch not moved


@pytest.mark.parametrize("role", ["storage", "user"])
def test_killed_container_is_replaced_and_the_job_succeeds(shell_pipeline, role):
    """Either container of a worker killed mid-datum: the pair is removed
    and replaced, and the new worker resumes."""
    shell_pipeline("sleep 1; cp /pfs/in/* /pfs/out/")
    proc = subprocess.Popen([sys.executable, "-m", "pipectl", "controller", "--exit-when-idle",
                             "--executor", "docker"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not [c for c in workers(role) if c.status == "running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    victim = [c for c in workers(role) if c.status == "running"][0]
    victim.kill()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    job = json.loads(run_ok("list-job", "-p", "shell", "--raw").out)[0]
    assert job["state"] == "success" and job["restarts"] >= 1
    assert sorted(n["path"] for n in json.loads(run_ok("list-file", "shell", "master", "--raw").out)) == \
        [f"/f{i}" for i in range(4)]
    assert leftovers() == []


def test_missing_image_fails_the_job_clearly(shell_pipeline):
    spec = json.loads(json.dumps(SHELL_SPEC))
    spec["pipeline"]["name"] = "ghost"
    spec["transform"]["image"] = "pipectl/does-not-exist:0"
    run_ok("create-pipeline", "-f", "-", input=json.dumps(spec).encode())
    controller("docker")
    job = json.loads(run_ok("list-job", "-p", "ghost", "--raw").out)[0]
    assert job["state"] == "failure"
    assert "image pipectl/does-not-exist:0 not found" in job["reason"]


def test_stopping_the_controller_removes_its_containers(shell_pipeline):
    shell_pipeline("sleep 30")
    proc = subprocess.Popen([sys.executable, "-m", "pipectl", "controller", "--executor", "docker"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len([c for c in workers() if c.status == "running"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(workers()) == 2
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert leftovers() == []


def test_user_code_cannot_reach_the_store_credentials(s3_server, monkeypatch):
    """On S3, the worker's credentials are in the storage container only:
    user code finds them neither in its environment nor in any process's
    environment it can see (the user container shares no PID namespace with
    the worker), yet the job stores its outputs."""
    secret = s3_server.secret_key  # random per server
    monkeypatch.setenv("PIPECTL_STORE", f"s3://{use_s3(s3_server, monkeypatch, 'creds-')}/p")
    run_ok("create-repo", "in")
    run_ok("put-file", "in", "master", "/x", "-f", "-", input=b"x")
    script = ("env > /pfs/out/env; cat /proc/[0-9]*/environ | tr '\\0' '\\n' > /pfs/out/environs; "
              "cat /proc/[0-9]*/cmdline | tr '\\0' ' ' > /pfs/out/cmdlines; cp /pfs/in/x /pfs/out/x")
    spec = json.loads(json.dumps(SHELL_SPEC)) | {"resource_limits": {}, "parallelism_spec": {"constant": 1}}
    spec["transform"]["cmd"][2] = script
    run_ok("create-pipeline", "-f", "-", input=json.dumps(spec).encode())
    controller("docker")
    job = json.loads(run_ok("list-job", "-p", "shell", "--raw").out)[0]
    assert job["state"] == "success", job
    assert run_ok("get-file", "shell", "master", "/x").out == "x"
    env = run_ok("get-file", "shell", "master", "/env").out
    environs = run_ok("get-file", "shell", "master", "/environs").out
    assert "PACH_JOB_ID=" in env and "PATH=" in environs  # it did read what it could see
    assert secret not in env + environs and "AWS_" not in env + environs
    cmdlines = run_ok("get-file", "shell", "master", "/cmdlines").out
    assert "pipectl.pps.runner" in cmdlines and "pipectl.pps.worker" not in cmdlines, cmdlines


def test_datum_batching_runs_one_process_per_worker_container(shell_pipeline):
    """transform.datum_batching in the user container: one process per
    worker serves every datum of that worker (pipectl.batch_all_datums), and
    /tmp keeps what it wrote across datums."""
    code = ("import os\n"
            "from pipectl import batch_all_datums\n"
            "open('/tmp/model', 'w').write(os.urandom(8).hex())  # loaded once per process\n"
            "@batch_all_datums\n"
            "def main():\n"
            "    name = os.path.basename(os.environ['in'])\n"
            "    open('/pfs/out/' + name, 'w').write(open('/tmp/model').read())\n"
            "main()\n")
    shell_pipeline("", transform={"image": "pipectl/base:0.1.0", "cmd": ["python3", "-c", code],
                                  "datum_batching": True})
    controller("docker")
    job = json.loads(run_ok("list-job", "-p", "shell", "--raw").out)[0]
    assert (job["state"], job["datums_processed"]) == ("success", 4), job
    loads = {run_ok("get-file", "shell", "master", f"/f{i}").out for i in range(4)}
    assert len(loads) == 2  # parallelism 2: one process in each worker's user container


def test_a_spout_runs_in_a_container_restarted_when_it_dies(tmp_path, monkeypatch):
    """A spout in the base image commits once a second with the pipectl CLI
    (the local store bound in); its container killed, the controller starts
    another; stopping the controller removes it."""
    monkeypatch.setenv("PIPECTL_STORE", "file://" + str(tmp_path / "store"))
    script = ("i=0; while true; do i=$((i+1)); "
              "echo $i | python3 -m pipectl put-file ticker master /tick-$i -f - >/dev/null || exit 3; sleep 1; done")
    spec = {"pipeline": {"name": "ticker"}, "spout": {},
            "transform": {"image": "pipectl/base:0.1.0", "cmd": ["sh", "-c", script]}}
    run_ok("create-pipeline", "-f", "-", input=json.dumps(spec).encode())
    proc = subprocess.Popen([sys.executable, "-m", "pipectl", "controller", "--executor", "docker",
                             "--poll-interval", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def commits() -> int:
        return len(json.loads(run_ok("list-commit", "ticker", "--raw").out))
    try:
        wait_for(lambda: commits() >= 3, 120, 0.2, "3 commits from the spout's container")
        [first] = workers("user")
        first.kill()
        before = commits()
        wait_for(lambda: [c for c in workers("user") if c.id != first.id and c.status == "running"], 60, 0.2,
                 "the spout's container to be started again")
        wait_for(lambda: commits() >= before + 2, 60, 0.2, "commits from the new container")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert "spout ticker exited with status 137" in err.decode(), err.decode()[-2000:]
    assert leftovers() == []


def test_a_service_runs_as_a_worker_pair_and_serves_its_newest_datum(tmp_path, monkeypatch):
    """A service in the base image: the worker pair of its job serves the
    datum over HTTP (host network); new input replaces the pair; stopping
    the pipeline removes it."""
    from helpers import free_port, http_text
    monkeypatch.setenv("PIPECTL_STORE", "file://" + str(tmp_path / "store"))
    port = free_port()
    run_ok("create-repo", "site")
    run_ok("put-file", "site", "master", "/index.html", "-f", "-", input=b"one\n")
    spec = {"pipeline": {"name": "web"}, "input": {"pfs": {"repo": "site", "glob": "/"}},
            "service": {"internal_port": port},
            "transform": {"image": "pipectl/base:0.1.0",
                          "cmd": ["python3", "-m", "http.server", str(port), "--directory", "/pfs/site"]}}
    run_ok("create-pipeline", "-f", "-", input=json.dumps(spec).encode())
    proc = subprocess.Popen([sys.executable, "-m", "pipectl", "controller", "--executor", "docker",
                             "--poll-interval", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def page() -> str | None:
        return http_text(f"http://127.0.0.1:{port}/index.html")
    try:
        wait_for(lambda: page() == "one\n", 120, 0.2, "the service's container to serve")
        [first] = workers("user")
        run_ok("put-file", "site", "master", "/index.html", "-o", "-f", "-", input=b"two\n")
        wait_for(lambda: page() == "two\n", 120, 0.2, "the service to serve the new input")
        assert [c.id for c in workers("user")] != [first.id]
        states = [j["state"] for j in json.loads(run_ok("list-job", "--raw").out)]
        assert states == ["running", "success"], states
        run_ok("stop-pipeline", "web")
        wait_for(lambda: not workers(None), 60, 0.2, "the stopped service's containers to go")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert leftovers() == []
