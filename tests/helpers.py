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

import io
import os
import socket
import subprocess
import sys
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGE_PYTHON = os.environ.get("PIPECTL_STAGE_PYTHON", os.path.join(REPO_ROOT, ".venv-stages", "bin", "python"))
PARTS = ("docker", "kubernetes", "helm", "stages", "audio", "browser")
"""The parts of the suite that need something beyond Python: a Docker
engine with the images, a Kubernetes cluster (root, built binaries), helm,
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


class Server:
    """A running ``pipectl server``: ``root`` (its base URL), ``url`` (the
    API's, ``.../api/v1``), ``call(method, path, token=WRITE, **kw)``."""

    def __init__(self, root: str):
        self.root, self.url = root, root + "/api/v1"

    def call(self, method: str, path: str, token: str | None = WRITE, **kw):
        import requests
        headers = kw.pop("headers", {}) | ({"Authorization": f"Bearer {token}"} if token else {})
        return requests.request(method, self.url + path, headers=headers, timeout=60, **kw)
