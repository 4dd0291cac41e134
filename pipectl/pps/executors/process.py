"""The process executor: workers as local subprocesses (the embedded default).

A container image has its own files and interpreter; a local process does
not. The *local images* file (``--local-images`` or ``$PIPECTL_LOCAL_IMAGES``,
JSON) stands in for images on this machine, mapping each image name to the
working directory, the directories to put first on ``PATH``, files or
directories to show at absolute paths in the sandbox (read-only) and host
directories user code may write (paths relative to the file)::

    {"pipectl/train:0.1.0": {"workdir": "stages/train", "path": [".venv-stages/bin"]},
     "pipectl/examples:0.1.0": {"files": {"/edges.py": "examples/code/edges.py"}, "writable": ["build/cache"]}}

User code runs in a sandbox that gives it Pachyderm's ``/pfs`` (see
:mod:`pipectl.pps.sandbox`).

An image missing from the file runs in the controller's working directory
with its ``PATH``.

Workers are forked from the controller, not executed afresh: the child has
pipectl (and, on S3, botocore's loaded service models) in memory already, so
a worker starts in a few milliseconds instead of the 0.15 s (local store) to
0.6 s (S3) of a new interpreter importing pipectl and botocore, which every job,
however small, would pay. The child starts its own session (its own process
group), is killed with the controller (Linux parent-death signal), makes its
own store client, and shows ``pipectl.pps.worker --pipeline P --job J
--index I --count N`` as its command line (``ps``), as an executed worker
would. The Docker and Kubernetes executors start a fresh interpreter in the
stage image; the worker code is the same. Forking needs no other thread to
hold a lock the child may take: the controller starts workers from its one
thread (``--leader-elect``, whose Lease renewal runs on a thread of its own,
is refused with this executor).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import traceback

import setproctitle

from ...errors import InvalidArgument
from .. import sandbox, secrets, usercode, worker
from ..model import JobInfo, PipelineInfo
from . import ExecutorError, HandleExecutor, WorkerHandle, spout_environment


def load_local_images(path: str | None) -> dict[str, dict]:
    """Parse a local images file into ``{image: {"workdir": abs, "path":
    [abs], "files": {in sandbox: abs}, "writable": [abs]}}`` (relative paths
    are relative to the file). Raises InvalidArgument for a missing or
    malformed file, or a ``files`` key that is not an absolute path."""
    if not path:
        return {}
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError as e:
        raise InvalidArgument(f"local images file {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"local images file {path}: invalid JSON ({e.msg})") from None
    base = os.path.dirname(os.path.abspath(path))
    images = {}
    for image, entry in raw.items():
        if not isinstance(entry, dict):
            raise InvalidArgument(f"local images file {path}: entry for {image} must be an object")
        files = entry.get("files", {})
        bad = [k for k in files if not k.startswith("/") or ".." in k.split("/")]
        if bad:
            raise InvalidArgument(f"local images file {path}: files of {image}: {bad[0]!r} is not an absolute path")
        images[image] = {
            "workdir": os.path.join(base, entry["workdir"]) if entry.get("workdir") else None,
            "path": [os.path.join(base, p) for p in entry.get("path", [])],
            "files": {inside: os.path.join(base, host) for inside, host in files.items()},
            "writable": [os.path.join(base, p) for p in entry.get("writable", [])],
        }
    return images


_DEFERRED = {signal.SIGINT, signal.SIGTERM}
"""Signals held back while a worker is forked."""


class ProcessHandle(WorkerHandle):
    """A worker forked by :class:`ProcessExecutor` (a child of this process,
    leader of its own process group)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.code: int | None = None

    def poll(self) -> int | None:
        if self.code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def kill(self) -> None:
        if self.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:  # just forked: not yet the leader of its own group
                os.kill(self.pid, signal.SIGKILL)
            self.code = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])


class ProcessExecutor(HandleExecutor):
    """Runs each worker as a process forked from the controller (see the
    module docs), in its own process group, killed with the controller."""

    name = "process"

    def __init__(self, store_url: str, local_images: str | None = None, secrets_dir: str | None = None):
        self.store_url = store_url
        self.images = load_local_images(local_images or os.environ.get("PIPECTL_LOCAL_IMAGES"))
        self.secrets_dir = secrets_dir
        sandbox.unavailable()  # probed once here, so that every forked worker knows

    def start(self, job: JobInfo, spec: dict, index: int, count: int, service: bool = False) -> ProcessHandle:
        env = dict(os.environ, PIPECTL_STORE=self.store_url)
        env.pop("PIPECTL_IMAGE_ENV", None)
        image = dict(self.images.get(spec["transform"]["image"]) or {})
        image["secret_env"], image["secret_mounts"] = secrets.local(spec, self.secrets_dir)
        if self.secrets_dir:  # the sandbox shows user code its own Secrets' files, not the folder of them all
            image["hide"] = [os.path.abspath(self.secrets_dir)]
        if image["secret_mounts"] and sandbox.unavailable():
            raise ExecutorError("transform.secrets with mount_path needs the sandbox: "
                                f"{sandbox.unavailable()}")
        env["PIPECTL_IMAGE_ENV"] = json.dumps(image)  # the worker's own: user code never sees PIPECTL_*
        argv = ["--store", self.store_url, "--pipeline", job.pipeline, "--job", job.id,
                "--index", str(index), "--count", str(count), *(["--service"] if service else [])]
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        # Until the child has its own handlers, signals wait (it would run the
        # controller's).
        signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)
        try:
            pid = os.fork()
            if pid == 0:
                _run_forked_worker(parent, env, argv)  # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _DEFERRED)
        return ProcessHandle(pid)


    def start_spout(self, pipeline: PipelineInfo) -> SpoutProcess:
        """The spout's ``cmd`` as a child process in a session of its own
        (dying with the controller), in its local image's working directory
        with its ``PATH`` first, the spec's ``env``, Pachyderm's
        ``PPS_PIPELINE_NAME``/``PPS_PROJECT_NAME`` and the controller's store
        (``PIPECTL_STORE`` and the AWS variables), so that the pipectl CLI and
        client inside commit to the output repo; ``stdin`` lines are fed to it.
        Its output goes to the controller's. Raises ExecutorError."""
        transform = pipeline.spec["transform"]
        image = self.images.get(transform["image"]) or {}
        env = {**os.environ, **spout_environment(pipeline, self.store_url)}
        env.pop("PIPECTL_LOCAL_IMAGES", None)
        if image.get("path"):
            env["PATH"] = os.pathsep.join([*image["path"], env.get("PATH", "")])
        argv, options = usercode.spawn_options(list(transform["cmd"]))
        stdin = transform.get("stdin") or []
        try:
            proc = subprocess.Popen(argv, env=env, cwd=image.get("workdir") or None,
                                    stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, **options)
        except OSError as e:
            raise ExecutorError(f"spout {pipeline.name}: cannot start {transform['cmd'][0]}: {e.strerror}") from None
        if stdin and proc.stdin is not None:  # fed from a thread: a spout that reads slowly holds no controller
            threading.Thread(target=_feed, args=(proc.stdin, "".join(line + "\n" for line in stdin).encode()),
                             daemon=True).start()
        return SpoutProcess(proc)


class SpoutProcess(WorkerHandle):
    """A spout's process (leader of its own process group)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        """Kill its whole process group, also when the spout itself has
        exited (children it started in the background go too)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def _feed(pipe, data: bytes) -> None:
    """Write ``data`` to a spout's stdin and close it (a spout that exits first ends it)."""
    with contextlib.suppress(OSError):
        pipe.write(data)
        pipe.close()


def _run_forked_worker(parent: int, env: dict[str, str], argv: list[str]) -> None:
    """In a child just forked from the controller: become a worker process
    and run ``pipectl.pps.worker`` with ``argv``; exit with its status (1 on
    an unexpected error, with the traceback on stderr). Never returns."""
    code = 1
    try:
        # First, the inherited heap is frozen, so that the child's garbage
        # collections do not write to, and so copy, every page it shares
        # with the controller.
        gc.freeze()
        os.setsid()
        usercode.die_with_parent()
        if os.getppid() != parent:  # the controller died before the signal was armed
            os._exit(1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as in a new interpreter (the controller unwinds on it)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _DEFERRED)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the controller's files and sockets are not the worker's
        # the title first: setproctitle finds the memory it may use from the
        # environment as the process started with it
        setproctitle.setproctitle(" ".join([sys.executable, "-m", "pipectl.pps.worker", *argv]))
        os.environ.clear()
        os.environ.update(env)
        code = worker.main(argv)
    except BaseException:  # noqa: BLE001  (the child must never return into the controller)
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
