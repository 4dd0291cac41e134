"""The user-code runner: user code in its own container, next to the worker.

Under the Docker and Kubernetes executors a worker is two containers sharing
two volumes (``/pfs``, the datum's files, and ``/pipectl``, this socket):

- ``storage`` runs the worker (``pipectl.pps.worker --usercode SOCKET``) in
  pipectl's own image. It alone holds the store's credentials: it lays each
  datum's inputs out under ``/pfs`` and stores ``/pfs/out``.
- ``user`` runs this runner (``python3 -m pipectl.pps.runner SOCKET``) in
  ``transform.image``, with no credentials in its environment and no view of
  the worker's processes (containers do not share a PID namespace), so user
  code cannot read the credentials from the worker's environment either.

This is Pachyderm's split of a worker pod into a ``user`` and a ``storage``
container. The two talk over a Unix socket: the worker listens, the runner
connects once, and the worker sends one request per run of user code, a frame of a 4-byte big-endian length
and a JSON :class:`~pipectl.pps.usercode.Request`, with the datum's log file
descriptor attached (``SCM_RIGHTS``), so user code writes its output straight
into the worker's log; the runner answers ``{"error": ""}`` or the error
line. ``{"exit": N}`` ends the runner with status N. When the worker goes
away (its connection closes) the runner kills the user code and exits 1, so
the pod fails and is replaced; a runner that finds no worker listening
within ``--wait`` seconds exits 1 as well, and a worker that no runner
connects to within 300 seconds exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable

from ..errors import PipectlError
from .usercode import LocalRunner, Request

_HEAD = struct.Struct("!I")
SOCKET = "/pipectl/usercode.sock"
"""Where the Docker and Kubernetes executors put the socket (a volume shared
by the two containers of a worker)."""


def send(sock: socket.socket, message: dict, fds: tuple[int, ...] = ()) -> None:
    """Send one frame holding ``message`` (JSON), ``fds`` attached."""
    data = json.dumps(message).encode()
    frame = _HEAD.pack(len(data)) + data
    sent = socket.send_fds(sock, [frame], list(fds)) if fds else sock.send(frame)
    sock.sendall(frame[sent:])


def receive(sock: socket.socket) -> tuple[dict | None, list[int]]:
    """The next frame's message and attached descriptors; ``(None, [])`` at
    end of stream. Raises PipectlError on a truncated frame."""
    head, fds, _, _ = socket.recv_fds(sock, _HEAD.size, 4)
    if not head:
        return None, fds
    head += _exactly(sock, _HEAD.size - len(head))
    (size,) = _HEAD.unpack(head)
    return json.loads(_exactly(sock, size)), fds


def _exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise PipectlError("the user-code runner's connection closed mid-message")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class SocketRunner:
    """The worker's side: listens on the Unix socket ``path`` and waits up to
    ``wait`` seconds for the runner to connect (its container may start
    after the worker's). ``start``, if given, starts the runner once the
    socket listens (the process executor's sandbox); the wait ends early if
    that process exits. Raises PipectlError if no runner connects."""

    def __init__(self, path: str, wait: float = 300, start: Callable[[], subprocess.Popen] | None = None):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.process = None
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(path)
            os.chmod(path, 0o777)  # the user container may run as another user
            listener.listen(1)
            listener.settimeout(0.1)
            self.process = start() if start else None
            deadline = time.monotonic() + wait
            while True:
                try:
                    self.sock, _ = listener.accept()
                    break
                except TimeoutError:
                    if self.process is not None and self.process.poll() is not None:
                        raise PipectlError(f"the user-code runner exited with status {self.process.returncode} "
                                           "before it connected") from None
                    if time.monotonic() > deadline:
                        raise PipectlError(f"no user-code runner connected to {path} within {wait:g}s") from None
        self.sock.settimeout(None)

    def run(self, request: Request, log_fd: int) -> str:
        """Run ``request`` once in the runner's container; '' or an error
        line. Raises PipectlError if the runner is gone."""
        try:
            send(self.sock, request.__dict__, (log_fd,))
            reply, _ = receive(self.sock)
        except OSError as e:
            raise PipectlError(f"the user-code runner went away ({e.strerror or e})") from None
        if reply is None:
            raise PipectlError("the user-code runner went away")
        return reply["error"]

    def close(self, status: int) -> None:
        """Tell the runner to exit with ``status``, the worker's (and wait
        for it if this side started it)."""
        with contextlib.suppress(OSError):
            send(self.sock, {"exit": status})
            # Close only once the runner has closed its side: a socket closed
            # while the peer's data is unread can reach the runner as a reset
            # before the exit frame does.
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(10)
            while self.sock.recv(4096):
                pass
        self.sock.close()
        if self.process is not None:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _connect(path: str, wait: float) -> socket.socket | None:
    """A connection to the worker listening on ``path``, tried until ``wait``
    seconds have passed (None then)."""
    deadline = time.monotonic() + wait
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)


def serve(path: str, wait: float, empty_tmp: bool = False) -> int:
    """Serve the worker listening on the Unix socket ``path``; return the
    exit status it asks for, or 1 if it never came or went away without
    asking. ``empty_tmp``: empty ``/tmp`` before each run (every executor
    gives the runner a ``/tmp`` of its own: the sandbox's tmpfs, a volume)."""
    conn = _connect(path, wait)
    if conn is None:
        print(f"runner: no worker listening on {path} within {wait:g}s", file=sys.stderr)
        return 1
    runner = LocalRunner()
    # While user code runs the worker sends nothing, so anything readable is its end.
    gone = lambda: bool(select.select([conn], [], [], 0)[0])  # noqa: E731
    with conn:
        try:
            while True:
                message, fds = receive(conn)
                if message is None:
                    raise BrokenPipeError
                if "exit" in message:
                    return int(message["exit"])
                request = Request(**message)
                if empty_tmp and not request.batching:  # a batching command keeps its /tmp (its model...)
                    _empty("/tmp")
                try:
                    error = runner.run(request, fds[0], hangup=gone)
                finally:
                    for fd in fds:
                        os.close(fd)
                send(conn, {"error": error})
        except (BrokenPipeError, ConnectionResetError):
            print("runner: the worker went away", file=sys.stderr)
            return 1
        finally:
            runner.close(0)


def _empty(directory: str, device: int | None = None) -> bool:
    """Remove everything in ``directory`` that lies on its own file system
    (``device``): what is mounted inside it (a host directory bound into
    the sandbox's ``/tmp``) and the directories leading to such mounts are
    left alone. Returns whether ``directory`` ended empty."""
    device = os.stat(directory).st_dev if device is None else device
    empty = True
    for entry in os.scandir(directory):
        info = entry.stat(follow_symlinks=False)
        if info.st_dev != device:
            empty = False
        elif entry.is_dir(follow_symlinks=False):
            if _empty(entry.path, device):
                os.rmdir(entry.path)
            else:
                empty = False
        else:
            os.unlink(entry.path)
    return empty


def main(argv: list[str] | None = None) -> int:
    """``python3 -m pipectl.pps.runner SOCKET [--wait SECONDS] [--empty-tmp]``."""
    parser = argparse.ArgumentParser(prog="pipectl-runner", description=main.__doc__)
    parser.add_argument("socket", help="The worker's Unix socket (in a volume shared with the worker).")
    parser.add_argument("--wait", type=float, default=600, help="Seconds to wait for the worker to listen.")
    parser.add_argument("--empty-tmp", action="store_true", help="Empty /tmp before each run of user code.")
    args = parser.parse_args(argv)
    try:
        return serve(args.socket, args.wait, args.empty_tmp)
    except (PipectlError, OSError, ValueError) as e:
        print(f"runner error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
