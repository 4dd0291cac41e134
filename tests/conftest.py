"""Shared fixtures: both stores (a local directory and a moto S3 server
started as a separate process, spoken to over HTTP), and a helper that runs
the real ``pipectl`` command line in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import boto3
import pytest

from pipectl.pfs import PFS
from pipectl.pps import PPS
from pipectl.store import open_store

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto S3 server in its own process on a loopback port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("moto server did not start")
    yield endpoint
    proc.terminate()
    proc.wait(10)


@pytest.fixture(params=["local", "s3"])
def store_url(request, tmp_path, monkeypatch):
    """A fresh, empty store URL of each kind; the environment is set so that
    subprocesses (the CLI, workers) reach the same store."""
    if request.param == "local":
        url = "file://" + str(tmp_path / "store")
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        for k, v in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                     "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(k, v)
        bucket = "t-" + uuid.uuid4().hex[:12]
        boto3.client("s3").create_bucket(Bucket=bucket)
        url = f"s3://{bucket}/pipectl"
    monkeypatch.setenv("PIPECTL_STORE", url)
    return url


@pytest.fixture
def store(store_url):
    return open_store(store_url)


@pytest.fixture
def pfs(store):
    return PFS(store)


@pytest.fixture
def pps(store, pfs):
    return PPS(store, pfs)


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


@pytest.fixture
def cli():
    """``cli(*args)`` runs pipectl and returns a result with code/out/err."""
    return run_cli


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


def snapshot(store) -> dict:
    """Every key of a store with its bytes (to prove a failed command changed nothing)."""
    return {k: store.read(k) for k in sorted(store.list(""))}


# --- pipeline helpers (tests/test_pipelines.py, tests/test_controller_faults.py) ---

@pytest.fixture
def spec_file(tmp_path):
    """``spec_file(spec)`` writes a spec (a dict as JSON, or text as given)
    to a new file and returns its path; ``suffix`` picks ``.json``/``.yaml``."""
    count = iter(range(1_000_000))

    def write(spec, suffix: str = ".json") -> str:
        path = tmp_path / f"spec-{next(count)}{suffix}"
        path.write_text(spec if isinstance(spec, str) else __import__("json").dumps(spec, indent=1))
        return str(path)

    return write


@pytest.fixture
def run_controller():
    """``run_controller()`` runs ``pipectl controller --exit-when-idle`` as a
    real process (workers are its real subprocesses), asserts it exited 0
    and returns the result."""
    def run(*args: str, timeout: float = 240) -> CLIResult:
        result = run_cli("controller", "--exit-when-idle", "--poll-interval", "0.05", *args, timeout=timeout)
        assert result.code == 0, result
        return result

    return run


@pytest.fixture
def background(tmp_path):
    """``background(*args)`` starts ``pipectl ARGS...`` without waiting and
    returns the Popen (stdout/stderr to files: ``.out_path``/``.err_path``).
    Every process it started and that is still running is killed (by its own
    pid) at teardown; workers die with their controller (parent-death signal)."""
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        n = len(procs)
        out_path, err_path = tmp_path / f"bg-{n}.out", tmp_path / f"bg-{n}.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "pipectl", *args], stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, env=dict(os.environ))
        proc.out_path, proc.err_path = out_path, err_path
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
