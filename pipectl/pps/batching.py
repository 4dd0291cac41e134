"""Pachyderm's datum batching (``transform.datum_batching: true``): user
code started once per worker that asks for each datum in turn, so an
expensive model or connection is set up once, not once per datum.

User code calls :func:`next_datum` in a loop, or wraps its per-datum
function in :func:`batch_all_datums` (as with pachyderm_sdk's decorator of
that name)::

    from pipectl import batch_all_datums

    model = load_model()          # once per worker

    @batch_all_datums
    def main():                   # once per datum; /pfs holds the datum
        predict(model, "/pfs/images", "/pfs/out")

    main()

Each call reports how the previous datum went (an error message, or None
for success) and returns when the next datum is laid out under ``/pfs``,
with its environment (``PACH_DATUM_ID``, the input variables...) set in
``os.environ``; it returns None when the worker has no datum left, and
then the code should exit. ``datum_timeout`` bounds each datum (between two
calls); user code that exits or crashes fails the datum it was on, and is
started again for the next one. What it prints goes to the log of the datum
it is on.

The runner (:class:`BatchProcess`) listens on a Unix socket named by
``$PIPECTL_NEXT_DATUM_SOCKET``; each call is one connection carrying one
JSON line ``{"error": null | "..."}``, answered by ``{"env": {...}}`` or
``{"done": true}``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

from ..errors import PipectlError

SOCKET_ENV = "PIPECTL_NEXT_DATUM_SOCKET"
"""The variable naming the runner's next-datum socket in user code's environment."""


def next_datum(error: str | None = None) -> dict[str, str] | None:
    """Finish the current datum (``error``: why it failed, None if it
    succeeded) and wait for the next one: return its environment variables
    (also set in ``os.environ``), or None when there is none left. Raises
    PipectlError outside a pipeline with ``datum_batching``."""
    path = os.environ.get(SOCKET_ENV)
    if not path:
        raise PipectlError(f"next_datum: not running under datum_batching (no ${SOCKET_ENV})")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(json.dumps({"error": error}).encode() + b"\n")
        reply = json.loads(sock.makefile("rb").readline() or b'{"done": true}')
    if reply.get("done"):
        return None
    os.environ.update(reply["env"])
    return reply["env"]


def batch_all_datums(user_code: Callable[..., Any]) -> Callable[..., None]:
    """Decorate a function to run once per datum of the worker (see the
    module docs): an exception it raises fails that datum (its message is
    reported) and the loop goes on to the next."""
    @functools.wraps(user_code)
    def loop(*args, **kwargs) -> None:
        error = None
        while next_datum(error) is not None:
            try:
                user_code(*args, **kwargs)
                error = None
            except Exception as e:  # the datum fails; the worker decides about retries
                error = f"{type(e).__name__}: {e}"
    return loop


class BatchProcess:
    """The runner's side: the one long-lived process of a
    ``datum_batching`` transform, fed one datum per :meth:`run`."""

    def __init__(self) -> None:
        from .runner import SOCKET
        shared = os.path.dirname(SOCKET)  # the runner's socket directory in a container or the sandbox
        folder = shared if os.access(shared, os.W_OK) else tempfile.mkdtemp(prefix="pipectl-batch-")
        self.path = os.path.join(folder, f"next-datum-{os.getpid()}.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        os.chmod(self.path, 0o777)  # transform.user may be another user
        self.listener.listen(4)
        self.proc: subprocess.Popen | None = None
        self.waiting: socket.socket | None = None  # user code's call, blocked until the next datum

    def run(self, start: Callable[[dict[str, str]], subprocess.Popen], env: dict[str, str],
            datum_env: dict[str, str], log_fd: int, timeout: float | None,
            hangup: Callable[[], bool] | None = None) -> str:
        """Give one datum (its variables ``datum_env``) to the user code,
        starting it (``start(env)``, stdout piped) if it is not running;
        return '' once it asks for the next datum having succeeded, else an
        error line (also appended to ``log_fd``)."""
        if self.proc is None or self.proc.poll() is not None:
            self._stop()
            self.proc = start(dict(env, **{SOCKET_ENV: self.path}))
            os.set_blocking(self.proc.stdout.fileno(), False)  # type: ignore[union-attr]
            first = self._await_call(log_fd, None, hangup)
            if isinstance(first, str):
                return first
            self.waiting = first[0]
        assert self.waiting is not None
        self._answer({"env": datum_env})
        call = self._await_call(log_fd, timeout, hangup)
        if isinstance(call, str):
            return call
        self.waiting, message = call
        if message.get("error"):
            os.write(log_fd, f"user code reported: {message['error']}\n".encode())
            return f"user code reported: {message['error']}"
        return ""

    def _answer(self, reply: dict) -> None:
        assert self.waiting is not None
        with contextlib.suppress(OSError):
            self.waiting.sendall(json.dumps(reply).encode() + b"\n")
        self.waiting.close()
        self.waiting = None

    def _await_call(self, log_fd: int, timeout: float | None,
                    hangup: Callable[[], bool] | None) -> tuple[socket.socket, dict] | str:
        """Copy the user code's output to ``log_fd`` until it calls
        :func:`next_datum`; return the call (its connection and message),
        or an error line once it exits, times out or the worker hangs up
        (then it is stopped)."""
        assert self.proc is not None and self.proc.stdout is not None
        out = self.proc.stdout.fileno()
        deadline = None if timeout is None else time.monotonic() + timeout
        open_out = True

        def fail(message: str) -> str:
            self._copy(out, log_fd)
            self._stop()
            os.write(log_fd, (message + "\n").encode())
            return message

        while True:
            ready, _, _ = select.select([self.listener] + ([out] if open_out else []), [], [], 1.0)
            if out in ready:
                open_out = self._copy(out, log_fd)
            if self.listener in ready:
                conn, _ = self.listener.accept()
                conn.settimeout(10)
                try:
                    message = json.loads(conn.makefile("rb").readline() or b"{}")
                except (OSError, ValueError):
                    conn.close()
                    continue
                self._copy(out, log_fd)  # what it printed before asking belongs to this datum
                return conn, message
            if not open_out and self.proc.poll() is not None:
                return fail(f"user code exited with status {self.proc.returncode} without asking for the next "
                            "datum (datum_batching: it should call next_datum)")
            if deadline is not None and time.monotonic() > deadline:
                return fail(f"timed out after {timeout:g}s")
            if hangup and hangup():
                return fail("the worker went away")

    @staticmethod
    def _copy(source: int, log_fd: int) -> bool:
        """Copy what is readable on ``source`` to ``log_fd``; False at end of file."""
        while True:
            try:
                data = os.read(source, 1 << 16)
            except BlockingIOError:
                return True
            if not data:
                return False
            os.write(log_fd, data)

    def _stop(self) -> None:
        """Stop the user code and everything in its process group."""
        if self.waiting is not None:
            self.waiting.close()
            self.waiting = None
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None

    def close(self) -> None:
        """No datum is left: tell the user code (its call returns None),
        give it 10 seconds to exit, then stop it."""
        if self.waiting is not None:
            self._answer({"done": True})
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self._stop()
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
