"""How user code is started: its process (a new session that dies with
whoever started it, optionally as ``transform.user``), its environment
(without the store's credentials) and the ``/pfs`` paths rewritten for a
layout that is not at ``/pfs``.

The worker hands each run to a *runner*: :class:`LocalRunner` starts user
code as the worker's own child (the process executor);
:class:`pipectl.pps.runner.SocketRunner` hands it to a runner in another
container (Docker and Kubernetes), so that the process holding the store's
credentials and the user code share neither a process namespace nor an
environment. Both end in :func:`run`.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import os
import re
import select
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping

from ..errors import PipectlError
from .batching import BatchProcess

_PFS = re.compile(r"(?<![\w.-])/pfs(?![\w.-])")  # /pfs, /pfs/x, '/pfs', "/pfs"; not /pfsx, /a/pfs


def die_with_parent() -> None:
    """``preexec_fn``: ask Linux to SIGKILL this child when its parent dies,
    so no worker or user process outlives a killed controller or worker."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# Starting user code through util-linux's setpriv sets the parent-death signal
# without a Python preexec_fn, which would force a slow fork() per datum
# (about 10 ms instead of 2-5 ms with vfork); without setpriv, fall back.
SETPRIV = shutil.which("setpriv")


def spawn_options(cmd: list[str], user: tuple[int, int] | None = None) -> tuple[list[str], dict]:
    """The argv and Popen options that start ``cmd`` in a new session, dying
    with its worker, as ``user`` (uid, gid; needs setpriv and root) if given."""
    if SETPRIV:
        as_user = [f"--reuid={user[0]}", f"--regid={user[1]}", "--init-groups"] if user else []
        return [SETPRIV, "--pdeathsig", "KILL", *as_user, "--", *cmd], {"start_new_session": True}
    return cmd, {"start_new_session": True, "preexec_fn": die_with_parent}


def resolve_user(user: str) -> tuple[int, int]:
    """``(uid, gid)`` of ``transform.user``: a user name, or ``uid[:gid]``
    (Pachyderm's form). Raises PipectlError if there is no such user."""
    import pwd
    name, _, group = user.partition(":")
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        uid, gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        if not name.isdigit():
            raise PipectlError(f"transform.user: no user {name!r} here") from None
        uid = gid = int(name)
    return uid, int(group) if group.isdigit() else gid


PRIVATE_PREFIXES = ("AWS_", "PIPECTL_", "BOTO_", "KUBECONFIG")
"""Variables of the worker's environment that user code never sees: the
store's credentials and endpoint (botocore's ``AWS_*``, boto's), pipectl's
own settings (the store URL among them) and a kubeconfig."""


def user_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the variables :data:`PRIVATE_PREFIXES` names: the
    base of the environment user code runs in (the spec's ``transform.env``
    and Pachyderm's variables are added to it)."""
    return {k: v for k, v in environ.items() if not k.startswith(PRIVATE_PREFIXES)}


def rewrite(text: str, root: str) -> str:
    """Replace each ``/pfs`` path prefix in ``text`` with ``root``."""
    return text if root == "/pfs" else _PFS.sub(root, text)


@dataclasses.dataclass
class Request:
    """One run of user code: ``cmd`` (argv), ``env`` (added to the runner's
    own environment without :data:`PRIVATE_PREFIXES`), ``cwd`` (None: the
    runner's), ``stdin`` (text fed to it, or None for /dev/null),
    ``timeout`` (seconds, or None), ``out`` (the directory it writes its
    outputs to), ``user`` (``transform.user``, or None) and
    ``accept_return_code`` (exit statuses besides 0 that count as success,
    Pachyderm's ``transform.accept_return_code``); ``batching``
    (``transform.datum_batching``: hand this datum to the command started
    once, see :mod:`pipectl.pps.batching`)."""

    cmd: list[str]
    env: dict[str, str]
    cwd: str | None
    stdin: str | None
    timeout: float | None
    out: str
    user: str | None = None
    accept_return_code: list[int] = dataclasses.field(default_factory=list)
    batching: bool = False


@functools.lru_cache(maxsize=64)
def _found(program: str, path: str | None) -> bool:
    return os.sep in program or shutil.which(program, path=path) is not None


def run(request: Request, env: dict[str, str], log_fd: int, user: tuple[int, int] | None = None,
        hangup: Callable[[], bool] | None = None) -> str:
    """Run ``request.cmd`` once with environment ``env`` (complete), its
    stdout and stderr appended to ``log_fd``; return '' on success, else a
    one-line error that is also appended to the log. ``user``: (uid, gid) to
    run as (needs root and setpriv). ``hangup``: polled every second while
    the command runs; when it returns True the command's process group is
    killed (whoever asked for the run is gone). Processes the command leaves
    running in its process group are killed when it ends."""

    def fail(message: str) -> str:
        os.write(log_fd, (message + "\n").encode())
        return message

    program = request.cmd[0]
    if SETPRIV and not _found(program, env.get("PATH")):  # setpriv would report it in its own words
        return fail(f"cannot start {program}: command not found")
    argv, options = spawn_options(request.cmd, user)
    stdin = request.stdin.encode() if request.stdin is not None else None
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=log_fd,
                                stderr=subprocess.STDOUT, env=env, cwd=request.cwd, **options)
    except OSError as e:
        return fail(f"cannot start {program}: {e.strerror}")
    timeout = request.timeout
    step = 1.0 if hangup else None
    try:
        while True:
            try:
                _communicate(proc, stdin, min(filter(None, (step, timeout)), default=None))
                break
            except subprocess.TimeoutExpired:
                stdin = None  # fed already: communicate() goes on with it
                if timeout is not None:
                    timeout -= step or timeout
                    if timeout <= 0:
                        return fail(f"timed out after {request.timeout:g}s")
                if hangup and hangup():
                    return fail("the worker went away")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # it, or what it left running in its group
        if proc.returncode is None:
            proc.wait()
    if proc.returncode != 0 and proc.returncode not in request.accept_return_code:
        how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
        return f"{program} failed with {how}"
    return ""


def _communicate(proc: subprocess.Popen, stdin: bytes | None, timeout: float | None) -> None:
    """``proc.communicate(stdin, timeout)``, but a process given no input is
    waited for on a pidfd (Linux 5.3+), woken the moment it exits:
    ``Popen.wait`` with a timeout polls, sleeping 0.5 ms doubling to 50 ms,
    which added about 2 ms to each datum of a 3 ms command on the bench
    machine (5.2 to 5.8 ms against 2.8 to 3.6 ms, 300 runs each). Raises
    subprocess.TimeoutExpired as ``communicate`` does."""
    if stdin is not None or timeout is None or not hasattr(os, "pidfd_open"):
        proc.communicate(stdin, timeout=timeout)
        return
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # reaped already, or no pidfds here
        proc.communicate(None, timeout=timeout)
        return
    try:
        if not select.select([pidfd], [], [], timeout)[0]:
            raise subprocess.TimeoutExpired(proc.args, timeout)
    finally:
        os.close(pidfd)
    proc.wait()


class LocalRunner:
    """Runs user code as a child of this process: the runner's (see
    :mod:`pipectl.pps.runner`), or the worker's where the process executor
    has no sandbox. A ``transform.user`` other than this process's own needs
    root and setpriv."""

    def __init__(self) -> None:
        self.base = user_environment(os.environ)
        self._users: dict[str, tuple[int, int] | None] = {}
        self._batch: BatchProcess | None = None

    def _uid_gid(self, user: str) -> tuple[int, int] | None:
        """(uid, gid) to switch to for ``user``; None when this process runs
        as that user already. Raises PipectlError when it cannot switch."""
        if user not in self._users:
            uid_gid = resolve_user(user)
            if uid_gid[0] == os.geteuid() and uid_gid[1] == os.getegid():
                self._users[user] = None
            elif os.geteuid() != 0 or not SETPRIV:
                raise PipectlError("transform.user needs a worker running as root with setpriv (util-linux)")
            else:
                self._users[user] = uid_gid
        return self._users[user]

    def run(self, request: Request, log_fd: int, hangup: Callable[[], bool] | None = None) -> str:
        """Run ``request`` once (see :func:`run`)."""
        try:
            user = self._uid_gid(request.user) if request.user else None
        except PipectlError as e:
            os.write(log_fd, f"{e}\n".encode())
            return str(e)
        if user:
            os.chown(request.out, *user)  # the user code writes its outputs there
        if not request.batching:
            return run(request, {**self.base, **request.env}, log_fd, user, hangup)

        def start(env: dict[str, str]) -> subprocess.Popen:
            argv, options = spawn_options(request.cmd, user)
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE if request.stdin else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=request.cwd,
                                    **options)
            if request.stdin and proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.write(request.stdin.encode())
                proc.stdin.close()
            return proc
        if self._batch is None:
            self._batch = BatchProcess()
        try:
            return self._batch.run(start, {**self.base, **request.env}, request.env, log_fd, request.timeout, hangup)
        except OSError as e:
            return f"cannot start {request.cmd[0]}: {e.strerror}"

    def close(self, status: int) -> None:
        """The worker is done, with exit status ``status``: a
        ``datum_batching`` command is told so and stopped."""
        if self._batch is not None:
            self._batch.close()
            self._batch = None
