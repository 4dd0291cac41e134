"""The user-code runner (pipectl.pps.runner) as the Docker and Kubernetes
executors use it: a real runner process, started with an environment that
has no credentials, serving the worker's side (SocketRunner) in this process
over a Unix socket."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import pytest
from helpers import wait_for

from pipectl.errors import PipectlError
from pipectl.pps.runner import SocketRunner
from pipectl.pps.usercode import Request


@pytest.fixture
def pair(tmp_path):
    """A worker's side listening on a socket and a runner process connected
    to it; returns (SocketRunner, runner process, tmp dir with ``out``)."""
    path = str(tmp_path / "usercode.sock")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {"FROM_RUNNER": "yes"}
    proc = subprocess.Popen([sys.executable, "-m", "pipectl.pps.runner", path, "--wait", "30"], env=env,
                            stderr=subprocess.PIPE, text=True)
    runner = SocketRunner(path, wait=30)
    (tmp_path / "out").mkdir()
    yield runner, proc, tmp_path
    proc.kill()
    proc.wait()


def request(script: str, tmp_path, **kw) -> Request:
    return Request(cmd=["sh", "-c", script], env=kw.pop("env", {}), cwd=str(tmp_path), stdin=kw.pop("stdin", None),
                   timeout=kw.pop("timeout", None), out=str(tmp_path / "out"), **kw)


def run(runner: SocketRunner, req: Request) -> tuple[str, str]:
    """Run ``req``; return (error, what it wrote to the log)."""
    with tempfile.TemporaryFile() as log:
        error = runner.run(req, log.fileno())
        log.seek(0)
        return error, log.read().decode()


def test_user_code_runs_in_the_runner_with_its_environment_and_writes_the_log(pair, monkeypatch):
    runner, proc, tmp = pair
    error, out = run(runner, request('echo "$FROM_RUNNER $GIVEN $PWD"; cat; echo x > out/f', tmp,
                                     env={"GIVEN": "given"}, stdin="fed\n"))
    assert error == ""
    assert out == f"yes given {tmp}\nfed\n"
    assert (tmp / "out" / "f").read_text() == "x\n"
    error, out = run(runner, request("echo oops; exit 3", tmp))
    assert error == "sh failed with exit status 3" and out == "oops\n"
    error, out = run(runner, request("sleep 5", tmp, timeout=0.3))
    assert error == "timed out after 0.3s" and "timed out" in out
    runner.close(0)
    assert proc.wait(10) == 0


def test_the_runner_exits_with_the_status_the_worker_asks_for(pair):
    runner, proc, _ = pair
    runner.close(2)
    assert proc.wait(10) == 2


def test_user_code_dies_when_the_worker_goes_away(pair):
    """A worker that dies mid-datum (its socket closes) takes the user code
    with it: the runner kills the process group and exits 1, so the pod or
    container pair fails and is replaced."""
    runner, proc, tmp = pair
    pidfile = tmp / "pid"
    with tempfile.TemporaryFile() as log:
        from pipectl.pps.runner import send
        send(runner.sock, request(f"echo $$ > {pidfile}; exec sleep 60", tmp).__dict__, (log.fileno(),))
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, what="user code")
        pid = int(pidfile.read_text())
        runner.sock.close()
    assert proc.wait(10) == 1
    assert "the worker went away" in proc.stderr.read()
    wait_for(lambda: not _alive(pid), 5, what="user code killed")


def test_a_runner_with_no_worker_gives_up(tmp_path):
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pipectl.pps.runner", str(tmp_path / "none.sock"), "--wait", "0.5"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "no worker listening" in r.stderr
    assert time.monotonic() - start < 20


def test_a_worker_with_no_runner_gives_up(tmp_path):
    with pytest.raises(PipectlError, match="no user-code runner connected"):
        SocketRunner(str(tmp_path / "usercode.sock"), wait=0.3)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
