"""The benchmark harness: timed subprocesses, background processes, stores
(local directory; S3 on versitygw, and on moto for comparison) and test data.

Units used throughout: seconds for times (``time.perf_counter`` wall clock),
bytes for sizes and memory, unless a name says otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar

from pipectl.testing import s3servers


class BenchError(Exception):
    """A benchmark step failed (a command exited non-zero, a check failed)."""


def log(message: str) -> None:
    """Progress line on stderr (the table goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- commands -------------------------------------------------------------

def pipectl_command() -> list[str]:
    """How to start the real ``pipectl`` CLI: the console script installed
    beside this interpreter (not a pyenv shim, which adds its own start-up
    time), else ``python -m pipectl``."""
    script = os.path.join(os.path.dirname(sys.executable), "pipectl")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "pipectl"]


PIPECTL = pipectl_command()


def compile_bytecode() -> None:
    """Write the pipectl package's bytecode (``__pycache__``) now, as pip
    does when it installs a package. An editable install run with
    ``PYTHONDONTWRITEBYTECODE=1`` never writes it, so every CLI start would
    compile each module from source again (about 90 ms of a 210 ms start on
    the 2-core bench machine), which no user's install does. Python reads
    existing bytecode whatever that variable says, and ignores bytecode
    older than its source."""
    import compileall

    import pipectl

    compileall.compile_dir(os.path.dirname(pipectl.__file__), quiet=1)


@dataclasses.dataclass
class Result:
    """A finished subprocess: exit ``code``, wall ``seconds`` from spawn to
    reaping, ``maxrss_bytes`` (its peak resident set, when :func:`run` was
    asked to measure it, else None), captured ``stdout``/``stderr``, and
    ``ended`` (``time.time()`` when it was reaped)."""

    args: list[str]
    code: int
    seconds: float
    maxrss_bytes: int | None
    stdout: bytes
    stderr: bytes
    ended: float

    def text(self) -> str:
        return self.stdout.decode(errors="replace")


GNU_TIME = "/usr/bin/time"
"""GNU time (Debian package ``time``), the launcher that measures a command's
peak RSS (see :func:`run`)."""


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def run(args: Sequence[str], *, env: dict | None = None, cwd: str | None = None, timeout: float = 1800,
        check: bool = True, stdin: bytes | None = None, peak_rss: bool = False) -> Result:
    """Run ``args`` to completion, timing it (wall seconds). stdout/stderr go
    to temporary files (no pipe back-pressure). The process runs in its own
    session, and the whole group is killed after ``timeout`` seconds.
    Raises BenchError on a non-zero exit when ``check``.

    ``peak_rss``: measure the command's peak resident set, with GNU time
    (``%M``) as the launcher. ``os.wait4`` on a child of this process would
    not do: Linux starts an exec'd child's ``ru_maxrss`` at the high-water
    mark of the memory it was forked from (``exec_mmap``), so every child
    would report at least this harness's own peak (measured: 316 MB for
    ``/bin/true`` after the harness had held 300 MB once). GNU time's own
    footprint is about 1 MB; the wall time it adds is one fork."""
    args = [str(a) for a in args]
    if peak_rss and not os.access(GNU_TIME, os.X_OK):
        raise BenchError(f"measuring peak memory needs GNU time at {GNU_TIME} (Debian package time)")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.TemporaryFile() as inp, tempfile.NamedTemporaryFile("r") as rss:
        if stdin is not None:
            inp.write(stdin)
            inp.seek(0)
        launch = [GNU_TIME, "-q", "-f", "%M", "-o", rss.name] if peak_rss else []
        began = time.perf_counter()
        proc = subprocess.Popen(launch + args, stdin=inp if stdin is not None else subprocess.DEVNULL,
                                stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True)
        timer = threading.Timer(timeout, _kill_group, (proc.pid,))
        timer.daemon = True
        timer.start()
        try:
            proc.wait()
        finally:
            timer.cancel()
        seconds = time.perf_counter() - began
        ended = time.time()
        out.seek(0)
        err.seek(0)
        report = rss.read().split()  # GNU time's %M, in KiB; nothing if it was killed with the command
        maxrss = int(report[-1]) * 1024 if peak_rss and report else None
        result = Result(args, proc.returncode, seconds, maxrss, out.read(), err.read(), ended)
    if check and result.code != 0:
        tail = result.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise BenchError(f"{' '.join(args[:6])}{' ...' if len(args) > 6 else ''} exited {result.code}: "
                         + " | ".join(tail))
    return result


class Background:
    """Processes started without waiting (the long-running controller).
    Every one still running is stopped by :meth:`stop_all` (by its own pid /
    process group, never by name)."""

    procs: ClassVar[list[subprocess.Popen]] = []

    @classmethod
    def start(cls, args: Sequence[str], *, env: dict | None = None, log_path: str | None = None,
              cwd: str | None = None) -> subprocess.Popen:
        with open(log_path or os.devnull, "wb") as sink:
            proc = subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL, stdout=sink,
                                    stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
        proc.log_path = log_path
        cls.procs.append(proc)
        return proc

    @classmethod
    def stop(cls, proc: subprocess.Popen, grace: float = 10) -> None:
        """SIGTERM, then SIGKILL of its process group after ``grace`` seconds."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait(30)
        # workers die with the controller (parent-death signal); make sure of
        # anything left in its session
        _kill_group(proc.pid)
        if proc in cls.procs:
            cls.procs.remove(proc)

    @classmethod
    def stop_all(cls) -> None:
        for proc in list(cls.procs):
            cls.stop(proc, grace=5)


def log_tail(path: str | None, lines: int = 15) -> str:
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as f:
        return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])


# --- statistics -----------------------------------------------------------

def best(values: Iterable[float]) -> float:
    """The smallest value (best-of-N for times)."""
    return min(values)


def median(values: Iterable[float]) -> float:
    xs = sorted(values)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


# --- stores ---------------------------------------------------------------

free_port = s3servers.free_port


class StoreEnv:
    """One kind of store: makes fresh stores and runs pipectl against them.

    ``name``: ``local`` or ``s3``. ``workdir``: scratch directory for this
    store's data and copies (removed by the caller)."""

    name = ""

    def __init__(self, workdir: str):
        self.workdir = workdir

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        pass

    def new_store(self, label: str) -> str:
        """A fresh, empty store; returns its URL."""
        raise NotImplementedError

    def env(self, url: str) -> dict:
        """The environment for pipectl subprocesses using store ``url``."""
        return dict(os.environ, PIPECTL_STORE=url)

    def pipectl(self, url: str, *args: str, timeout: float = 1800, check: bool = True,
                peak_rss: bool = False) -> Result:
        """Run ``pipectl ARGS`` (the real CLI) on store ``url`` (see :func:`run`)."""
        return run(PIPECTL + list(args), env=self.env(url), timeout=timeout, check=check, peak_rss=peak_rss)

    def objects_bytes(self, url: str) -> int:
        """Total size in bytes of every object under ``objects/`` (file content)."""
        raise NotImplementedError


class LocalEnv(StoreEnv):
    """Local directory stores under ``workdir``."""

    name = "local"

    def new_store(self, label: str) -> str:
        root = tempfile.mkdtemp(prefix=f"store-{label}-", dir=self.workdir)
        return "file://" + root

    @staticmethod
    def root(url: str) -> str:
        return url[len("file://"):]

    def objects_bytes(self, url: str) -> int:
        total = 0
        for directory, _, files in os.walk(os.path.join(self.root(url), "objects")):
            for name in files:
                if not name.startswith("."):
                    total += os.path.getsize(os.path.join(directory, name))
        return total

    def drop(self, url: str) -> None:
        shutil.rmtree(self.root(url), ignore_errors=True)


_AWS_VARS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
             "AWS_REGION")


class S3Env(StoreEnv):
    """S3 stores on a server this harness starts on a loopback port (and
    stops on close): versitygw, its data under ``workdir``. One fresh bucket
    per store, prefix ``pipectl``. While open, the AWS variables in
    ``os.environ`` point at the server, so in-process boto3 clients and
    pipectl's Python API reach it too. Raises BenchError when the server
    does not start (versitygw not built: ``make versitygw``)."""

    name = "s3"
    server_name = "versitygw"
    prefix = "pipectl"

    def __init__(self, workdir: str):
        super().__init__(workdir)
        try:
            self.server = self.make_server().start()
        except s3servers.ServerError as e:
            raise BenchError(str(e)) from None
        self._saved = {k: os.environ.get(k) for k in _AWS_VARS}
        os.environ.update(self.server.env())
        import boto3
        import botocore.config
        self.client = boto3.client("s3", config=botocore.config.Config(max_pool_connections=32))

    def make_server(self) -> s3servers.S3Server:
        return s3servers.VersityGW(os.path.join(self.workdir, "versitygw"),
                                   log_path=os.path.join(self.workdir, "versitygw.log"))

    def close(self) -> None:
        self.server.stop()
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def new_bucket(self, label: str) -> str:
        bucket = f"b-{label}-{uuid.uuid4().hex[:10]}".lower().replace("_", "-")[:63]
        self.client.create_bucket(Bucket=bucket)
        return bucket

    def new_store(self, label: str) -> str:
        return f"s3://{self.new_bucket(label)}/{self.prefix}"

    @staticmethod
    def bucket(url: str) -> str:
        return url[len("s3://"):].split("/", 1)[0]

    def list_keys(self, bucket: str, prefix: str, limit: int | None = None) -> Iterable[dict]:
        """``list_objects_v2`` pages (1,000 keys each) until ``limit`` keys."""
        count = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                yield item
                count += 1
                if limit is not None and count >= limit:
                    return

    def objects_bytes(self, url: str) -> int:
        return sum(item["Size"] for item in self.list_keys(self.bucket(url), f"{self.prefix}/objects/"))


class MotoS3Env(S3Env):
    """The same S3 stores on moto's server (a Python process), beside the
    versitygw rows: the figures that differ between the two are the
    server's, not pipectl's."""

    name = "s3-moto"
    server_name = "moto"

    def make_server(self) -> s3servers.S3Server:
        return s3servers.MotoServer(log_path=os.path.join(self.workdir, "moto.log"))


# --- data -----------------------------------------------------------------

def make_files(directory: str, count: int, size: int, prefix: str = "f") -> str:
    """``count`` files of ``size`` random (hence distinct) bytes named
    ``<prefix>000000``... in ``directory`` (created); returns the directory."""
    os.makedirs(directory, exist_ok=True)
    width = max(6, len(str(count)))
    for i in range(count):
        with open(os.path.join(directory, f"{prefix}{i:0{width}d}"), "wb") as f:
            f.write(os.urandom(size))
    return directory


def make_big_file(path: str, size: int) -> str:
    """One file of ``size`` random bytes (written in 16 MiB pieces)."""
    piece = 16 * 1024 * 1024
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(piece, left)
            f.write(os.urandom(n))
            left -= n
    return path


def settle() -> None:
    """Flush written pages to disk (``sync``) before a timed run, so that no
    run pays for the write-back of the one before it."""
    os.sync()


B3SUM = "b3sum"
"""BLAKE3's own command-line tool (Debian package ``b3sum``: the reference
Rust implementation, which maps the file and hashes it on every core)."""


def copy_and_hash_seconds(path: str, dest: str) -> float:
    """Seconds for ``cp path dest`` and ``b3sum path`` to run side by side
    to the end (both started at once, timed from the first spawn to the
    last exit; no interpreter starts): the floor, on this machine, of any
    put into a content-addressed store on the same disk, which must both
    copy and hash every byte. ``dest`` is removed before and after."""
    exe = shutil.which(B3SUM)
    if exe is None:
        raise BenchError(f"the put floor needs {B3SUM} (Debian package b3sum)")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(dest)
    try:
        began = time.perf_counter()
        cp = subprocess.Popen(["cp", path, dest], stdin=subprocess.DEVNULL)
        b3 = subprocess.Popen([exe, "--no-names", path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        codes = b3.wait(), cp.wait()
        seconds = time.perf_counter() - began
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dest)
    if any(codes):
        raise BenchError(f"cp and b3sum side by side exited {codes}")
    return seconds


def edited_copy(src: str, dest: str, offset: int, data: bytes, insert: bool) -> str:
    """Write to ``dest`` a copy of ``src`` with ``data`` inserted at byte
    ``offset`` (``insert``) or written over the bytes there; returns
    ``dest``. The unchanged bytes are copied in the kernel."""
    size = os.path.getsize(src)
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        def copy(start: int, end: int) -> None:
            fin.seek(start)
            while start < end:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), end - start, start)
                if n <= 0:
                    raise BenchError(f"copying {src}: copy_file_range returned {n}")
                start += n
        copy(0, offset)
        fout.seek(offset)
        fout.write(data)
        fout.flush()
        copy(offset + (0 if insert else len(data)), size)
    return dest


def fixed_slice_hashes(path: str, piece: int = 16 * 1024 * 1024) -> list[tuple[str, int]]:
    """``(content hash, length)`` of each ``piece``-byte slice of the file:
    how pipectl stored a large file before content-defined chunking."""
    from pipectl.pfs.hashing import content_hash
    out = []
    with open(path, "rb") as f:
        while data := f.read(piece):
            out.append((content_hash(data), len(data)))
    return out


def wait_for(check: Callable[[], object], timeout: float, interval: float = 0.05,
             what: str = "condition", alive: subprocess.Popen | None = None) -> object:
    """Poll ``check()`` every ``interval`` seconds until it returns something
    truthy; return it. Raises BenchError after ``timeout`` seconds, or as soon
    as process ``alive`` has exited."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if alive is not None and alive.poll() is not None:
            raise BenchError(f"{what}: process exited with {alive.returncode}\n"
                             f"{log_tail(getattr(alive, 'log_path', None))}")
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
