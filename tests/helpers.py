"""Helpers shared by the tests: the real ``pipectl`` command line in a
subprocess, waiting, store snapshots, the Iris data, and the skip policy.

Skip policy: a test that cannot run here (no Docker engine, no cluster, no
stage environment) skips with a reason tagged by the part it needs,
``[docker] no Docker engine``, through :func:`skip` or :func:`needs`. The
environment variable ``PIPECTL_REQUIRE`` (comma-separated parts, or ``all``)
turns those skips into failures (see ``conftest.py``); CI sets it, so a
part of the suite that silently stopped running fails the build.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pipectl.testing import stop_process

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGE_PYTHON = os.environ.get("PIPECTL_STAGE_PYTHON", os.path.join(REPO_ROOT, ".venv-stages", "bin", "python"))
PARTS = ("s3", "docker", "kubernetes", "helm", "stages", "audio", "browser")
"""The parts of the suite that need something beyond Python: the S3
server (versitygw, ``make versitygw``), a Docker engine with the images, a Kubernetes cluster (root, built binaries), helm,
the stage environment (MXNet), the speech tools (espeak-ng, sox, librosa),
a browser for the console (Debian's chromium, graphviz, playwright)."""


def skip(part: str, reason: str):
    """Skip the running test because ``part`` (one of :data:`PARTS`) is missing."""
    assert part in PARTS, part
    pytest.skip(f"[{part}] {reason}")


def needs(part: str, available: bool, reason: str):
    """A ``skipif`` mark for tests that need ``part``."""
    assert part in PARTS, part
    return pytest.mark.skipif(not available, reason=f"[{part}] {reason}")


def required_parts() -> set[str]:
    """The parts ``PIPECTL_REQUIRE`` names (``all``: every part, and untagged skips too)."""
    return {p.strip() for p in os.environ.get("PIPECTL_REQUIRE", "").split(",") if p.strip()}


def stage_env_has(*modules: str) -> bool:
    """Whether the stage environment exists and imports ``modules``."""
    if not os.path.exists(STAGE_PYTHON):
        return False
    code = "import " + ", ".join(modules)
    return subprocess.run([STAGE_PYTHON, "-c", code], capture_output=True).returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CLIResult:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.code = proc.returncode
        self.out = proc.stdout.decode(errors="replace") if isinstance(proc.stdout, bytes) else proc.stdout
        self.err = proc.stderr.decode(errors="replace") if isinstance(proc.stderr, bytes) else proc.stderr
        self.stdout_bytes = proc.stdout

    def __repr__(self):
        return f"<exit {self.code}\nstdout: {self.out}\nstderr: {self.err}>"


def run_cli(*args: str, input: bytes | None = None, cwd: str | None = None, timeout: float = 300,
            env: dict | None = None) -> CLIResult:
    """Run ``pipectl ARGS...`` as a real process (store from $PIPECTL_STORE)."""
    proc = subprocess.run([sys.executable, "-m", "pipectl", *args], input=input, capture_output=True,
                          cwd=cwd, timeout=timeout, env=dict(os.environ, **(env or {})))
    return CLIResult(proc)


def ok(result: CLIResult) -> CLIResult:
    """Assert a command exited 0; return its result."""
    assert result.code == 0, result
    return result


def run_ok(*args: str, **kw) -> CLIResult:
    """Run ``pipectl ARGS...`` (see :func:`run_cli`) and assert it exited 0."""
    return ok(run_cli(*args, **kw))


def assert_clean_error(result: CLIResult, *needles: str) -> None:
    """A one-line ``error: ...`` message, exit status 1, no traceback."""
    assert result.code == 1, result
    assert "Traceback" not in result.err, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result
    for needle in needles:
        assert needle in lines[0], result


def wait_for(predicate, timeout: float = 90, interval: float = 0.02, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy (returned), or
    fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}")


def put(pfs, repo: str, files: dict, branch: str = "master"):
    """One commit putting (overwriting) ``files`` {path: text or bytes}; returns it."""
    sources = [(p, io.BytesIO(d if isinstance(d, bytes) else d.encode())) for p, d in files.items()]
    return pfs.put_files(repo, branch, sources, overwrite=True)[0]


def file_bytes(pfs, repo: str, ref: str = "master") -> dict[str, bytes]:
    """Every file of ``repo@ref`` with its bytes."""
    out = {}
    for path, _ in pfs.iter_files(repo, ref):
        buf = io.BytesIO()
        pfs.get_file(repo, ref, path, buf)
        out[path] = buf.getvalue()
    return out


def files_of(pfs, repo: str, ref: str = "master") -> dict[str, str]:
    """Every file of ``repo@ref`` with its text."""
    return {path: data.decode() for path, data in file_bytes(pfs, repo, ref).items()}


class Counted:
    """An object store whose calls are counted (by method name, in
    ``calls``, a Counter) and passed on: counting at the store interface,
    nothing replaced."""

    def __init__(self, store):
        self._store, self.calls = store, collections.Counter()

    def __getattr__(self, name):
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args, **kw):
            self.calls[name] += 1
            return attr(*args, **kw)
        return call

    @property
    def requests(self) -> int:
        """Every call counted so far (each is one store request)."""
        return sum(self.calls.values())


def job_history(client, pipelines: int, jobs: int, unfinished: int = 0) -> dict:
    """Pipelines ``p0``... over repo ``in`` (one commit) and ``jobs`` job
    records among them, written directly as versions before job pointers
    wrote them (each record, and each pipeline's ``newest-job.json``), at
    once: one a second from 2026-01-01, the last ``unfinished`` running,
    the finished ones with a datum index (a made-up hash). Each pipeline's
    newest job is over ``in``'s head, the job a controller would make now.
    Returns each pipeline's newest job (a JobInfo)."""
    import datetime as dt

    from pipectl.parallel import parallel
    from pipectl.pps import keys
    from pipectl.pps.jobs import job_id, output_commit_id
    from pipectl.pps.model import JobInfo

    client.create_repo("in")
    head = put(client.pfs, "in", {"/a": "1"})
    for i in range(pipelines):
        client.create_pipeline({"pipeline": {"name": f"p{i}"}, "input": {"pfs": {"repo": "in", "glob": "/*"}},
                                "transform": {"image": "local", "cmd": ["true"]}})
    infos = client.pps.list_pipelines()
    start, records, newest = dt.datetime(2026, 1, 1, tzinfo=dt.UTC), [], {}
    for n in range(jobs):
        p = infos[n % pipelines]
        commit = head.id if n >= jobs - pipelines else f"{n:032x}"
        inputs = [{"name": "in", "repo": "in", "branch": "master", "commit": commit}]
        jid, stamp = job_id(p, inputs), (start + dt.timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        done = n < jobs - unfinished
        newest[p.name] = JobInfo(jid, p.name, 1, p.salt, p.transform_hash, inputs, output_commit_id(jid),
                                 state="success" if done else "running", created=stamp,
                                 datum_index=f"{n:064x}" if done else None)
        records.append((keys.job(p.name, jid), newest[p.name].to_json()))
    records += [(keys.legacy_newest_job(name), json.dumps({"id": j.id, "created": j.created}).encode())
                for name, j in newest.items()]
    parallel(lambda r: client.pps.store.write(*r), records)
    return newest


def snapshot(store) -> dict:
    """Every key of a store with its bytes (to prove a failed command changed nothing)."""
    return {k: store.read(k) for k in sorted(store.list(""))}


# --- the Iris data and pipelines (tests/test_ml_pipelines.py, test_docker.py, test_k8s_e2e.py) ---

def make_iris_data(root) -> tuple:
    """Write the Iris CSVs (scripts/iris_data.py, in the stage environment)
    to ``root/iris`` and the new rows to ``root/iris-new``; return both paths.
    Skips the test without the stage environment."""
    if not os.path.exists(STAGE_PYTHON):
        skip("stages", "stage environment missing: run `make stage-env`")
    data, new = root / "iris", root / "iris-new"
    subprocess.run([STAGE_PYTHON, os.path.join(REPO_ROOT, "scripts", "iris_data.py"), str(data),
                    "--new-dir", str(new)], check=True, capture_output=True)
    return data, new


def put_iris(data, new) -> None:
    """Repos ``iris`` and ``iris-new`` holding the data, and the Iris
    pipelines of specs/iris (preprocess, train, inference)."""
    commands = [("create-repo", "iris"), ("put-file", "iris", "master", "/", "-r", "-f", str(data)),
                ("create-repo", "iris-new"), ("put-file", "iris-new", "master", "/", "-r", "-f", str(new))]
    commands += [("create-pipeline", "-f", os.path.join(REPO_ROOT, "specs", "iris", f"{name}.json"))
                 for name in ("preprocess", "train", "inference")]
    for args in commands:
        result = run_cli(*args)
        assert result.code == 0, result


# --- the pipectl server (tests/test_server.py, tests/test_sdk.py) ---

READ, WRITE = "r" * 8 + "-read-token-0001", "w" * 8 + "-write-token-0001"
"""The tokens of the ``server`` fixture (conftest.py)."""


@contextlib.contextmanager
def api_server(tmp_path, *extra: str) -> Iterator[Server]:
    """Run ``pipectl server`` (a real process on a loopback port, with
    ``extra`` arguments) on the store of ``$PIPECTL_STORE``, with a read and
    a write token (:data:`READ`, :data:`WRITE`) in a file under
    ``tmp_path``; yields a :class:`Server`."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# role token\nread {READ}\nwrite {WRITE}\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipectl", "server", "--port", str(port), "--tokens", str(tokens),
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, f"pipectl server exited {proc.returncode}"
        try:
            return requests.get(root + "/healthz", timeout=1).ok
        except (requests.ConnectionError, requests.Timeout):  # a loaded machine answers late
            return False
    try:
        wait_for(up, 60, 0.1, "the server")
        yield Server(root)
    finally:
        proc.terminate()
        proc.wait(10)


class Server:
    """A running ``pipectl server``: ``root`` (its base URL), ``url`` (the
    API's, ``.../api/v1``), ``call(method, path, token=WRITE, **kw)``."""

    def __init__(self, root: str):
        self.root, self.url = root, root + "/api/v1"

    def call(self, method: str, path: str, token: str | None = WRITE, **kw):
        import requests
        headers = kw.pop("headers", {}) | ({"Authorization": f"Bearer {token}"} if token else {})
        return requests.request(method, self.url + path, headers=headers, timeout=60, **kw)


HANDLER = os.path.join(REPO_ROOT, "stages", "inference", "iris_model.py")
"""The Iris model's serving handler."""


class ModelServer:
    """A ``pipectl serve`` process (stage interpreter) on a free loopback port."""

    def __init__(self, python: Path, store_url: str, log_path: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(python), "-m", "pipectl", "--store", store_url, "serve", "--repo", "train",
                 "--model", "iris", "--handler", str(HANDLER), "--host", "127.0.0.1",
                 "--port", str(self.port), "--poll-interval", "0.2", *extra],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.session = requests.Session()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def up(self) -> bool:
        assert self.proc.poll() is None, f"server exited {self.proc.returncode}:\n{self.log()}"
        try:
            self.session.get(self.url + "/ping", timeout=5)
            return True
        except requests.ConnectionError:
            return False

    def wait_up(self) -> ModelServer:
        wait_for(self.up, 120, what="the server to listen")
        return self

    def wait_healthy(self) -> ModelServer:
        self.wait_up()
        wait_for(lambda: self.get("/ping").status_code == 200, 120, what=f"a model to load:\n{self.log()}")
        return self

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.url + path, timeout=30)

    def post(self, path: str, body, content_type: str = "application/json") -> requests.Response:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.session.post(self.url + path, data=data, headers={"Content-Type": content_type},
                                 timeout=30)

    def version(self) -> str | None:
        return self.get("/models/iris").json()[0]["modelVersion"]

    def stop(self) -> None:
        stop_process(self.proc, 30)


def use_s3(server, monkeypatch, prefix: str = "t-") -> str:
    """Point this process's AWS variables (hence the CLI, workers and boto3)
    at ``server`` and create a fresh bucket there; returns its name."""
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    bucket = prefix + os.urandom(6).hex()
    import boto3
    boto3.session.Session().client("s3").create_bucket(Bucket=bucket)  # a new session reads the keys set now
    return bucket


def s3_uppercase_code(bucket: str) -> str:
    """User code (Python, botocore only) that copies every object of
    ``bucket`` into bucket ``out``, upper-cased, through the worker's S3
    sidecar (``$S3_ENDPOINT``): a ``pfs.s3`` input and ``s3_out``."""
    return f"""
import os, botocore.session
s3 = botocore.session.get_session().create_client("s3", endpoint_url=os.environ["S3_ENDPOINT"])
for item in s3.list_objects_v2(Bucket="{bucket}")["Contents"]:
    body = s3.get_object(Bucket="{bucket}", Key=item["Key"])["Body"].read()
    s3.put_object(Bucket="out", Key=item["Key"], Body=body.upper())
"""


def http_text(url: str) -> str | None:
    """The body at ``url``, or None while nothing answers there (or not with 200)."""
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode()
    except OSError:  # URLError and HTTPError are OSErrors too
        return None
