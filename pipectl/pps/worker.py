"""The worker: runs a job's datums, one user-command process per datum.

The same code runs under every executor; only how the worker process is
started differs (a subprocess, a container, a Kubernetes pod). Worker
``index`` of ``count`` takes every ``count``-th datum the job runs (its
todo list, round robin) that has no recorded result yet, so a restarted
worker resumes where its predecessor stopped.

For each datum the worker lays out the input files under ``<root>/<input
name>/<path in commit>``, runs ``transform.cmd`` (stdin from
``transform.stdin``) up to ``datum_tries`` times through its runner (a child
process, or a runner in the user container next to the worker's: see
:mod:`pipectl.pps.runner`), stores ``<root>/out`` as
content-addressed files and records a :class:`DatumResult`. Results are
written in batches (at most :data:`FLUSH_SECONDS` apart), so a killed worker
loses at most that much finished work, which its successor redoes.

Requests per datum: input files kept in packs are read ahead for the next
datums, a ranged read per run of nearby files
(:func:`~pipectl.pfs.reader.read_packed`); small output files wait in memory
and are packed with the rest of their batch just before its results are
written (large ones are stored at once). So on S3 a job over many small
files makes a few requests per batch, not two or more per datum, as
Pachyderm's workers batch datums' inputs and outputs.

Paths: user code sees its datum at ``/pfs`` as in Pachyderm: in a container
the root is ``/pfs``; under the process executor the root is a scratch
directory that the sandbox (:mod:`pipectl.pps.sandbox`) shows at ``/pfs``.
Only where no sandbox can be made is every ``/pfs`` path in ``cmd``,
``stdin`` and ``env`` values rewritten to the scratch directory (``$PFS_ROOT``
holds it), and a datum whose user code wrote to the host's ``/pfs`` fails.

Environment given to user code (Pachyderm's names): ``PACH_JOB_ID``,
``PACH_DATUM_ID``, ``PACH_OUTPUT_COMMIT_ID``, ``PPS_PIPELINE_NAME`` and
``PPS_PROJECT_NAME`` (the pipeline's name and project, apart), and for
each input ``<name>`` (the path of its datum files), ``<name>_COMMIT`` and,
for join and group inputs, ``PACH_DATUM_<name>_JOIN_ON`` /
``PACH_DATUM_<name>_GROUP_BY`` (the datum's key, when not empty).
"""

from __future__ import annotations

import argparse
import atexit
import functools
import gc
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from typing import BinaryIO

from ..errors import PipectlError
from ..parallel import concurrently
from ..pfs import names, objects, reader
from ..pfs.model import now
from ..store import ObjectStore, open_store
from . import sandbox
from .api import PPS
from .datums import Datum, shard
from .model import DatumResult, JobInfo
from .runner import SocketRunner
from .sandbox import Sandbox
from .spec import parse_duration, pfs_inputs
from .usercode import LocalRunner, Request, rewrite

log = logging.getLogger("pipectl.worker")

FLUSH_SECONDS = 1.0
FLUSH_COUNT = 500
LOG_TAIL = 64 * 1024


class Worker:
    """Runs the datums of worker ``index`` of ``count`` of one job."""

    def __init__(self, store: ObjectStore, pipeline: str, job: str, index: int, count: int,
                 root: str | None = None, runner: LocalRunner | SocketRunner | None = None):
        self.store = store
        self.pps = PPS(store)

        def job_and_spec() -> tuple[JobInfo, dict]:
            info = self.pps.inspect_job(job, pipeline)
            return info, self.pps.pipeline_version(pipeline, info.pipeline_version)
        # what run() reads too, at once: each is a request to the store
        (self.job, self.spec), self._done, self._todo = concurrently(
            job_and_spec, lambda: self.pps.datum_results(pipeline, job, skipped=False),
            lambda: self.pps.todo(pipeline, job))
        self.index, self.count = index, count
        self.scratch = None if root else tempfile.mkdtemp(prefix="pipectl-worker-")
        self.root = root or os.path.join(self.scratch or "", "pfs")
        self.name = f"{index:04d}-{uuid.uuid4().hex[:8]}"
        self.writer = objects.ObjectWriter(store)
        self.pending: list[tuple[DatumResult, list[tuple[str, bytes]]]] = []  # with their small outputs
        self.pending_bytes = 0
        self.batches = 0
        self.last_flush = time.monotonic()
        image = json.loads(os.environ.get("PIPECTL_IMAGE_ENV") or "{}")
        self.workdir = image.get("workdir")
        self.path_prefix = image.get("path", [])
        self.secret_env = image.get("secret_env", {})
        self._log: BinaryIO | None = None  # the running datum's log, open while it runs (see run_datum)
        self.serving = False  # see serve()
        sandboxed = self._sandbox(image) if self.scratch and not runner else None
        # /pfs as user code sees it: the root itself, unless the paths must be rewritten
        self.visible = "/pfs" if sandboxed or not self.scratch else self.root
        self._own_runner = runner is None  # a sandbox's, or user code as this process's children
        self.runner: LocalRunner | SocketRunner = runner or (sandboxed.runner() if sandboxed else LocalRunner())
        if self.spec["transform"].get("user") and self.scratch:
            os.chmod(self.scratch, 0o755)  # mkdtemp's 0700 would keep the user from its inputs
        self.s3_inputs = {p["name"] for p in pfs_inputs(self.spec["input"]) if p.get("s3")}
        self.sidecar = self._start_sidecar() if self.s3_inputs or self.spec.get("s3_out") else None

    def _start_sidecar(self):
        """The S3 sidecar of ``pfs.s3`` inputs and ``s3_out`` (see
        :mod:`pipectl.server.s3.sidecar`), listening."""
        from ..client import Client
        from ..server.s3.sidecar import Sidecar
        commits = {i["name"]: (i["repo"], i["commit"]) for i in self.job.inputs if i["name"] in self.s3_inputs}
        sidecar = Sidecar(Client(self.store), commits, out=bool(self.spec.get("s3_out")))
        sidecar.start()
        log.info("worker %s: S3 sidecar at %s (buckets %s)", self.name, sidecar.endpoint,
                 ", ".join(sorted(sidecar.gateway.buckets)))
        return sidecar

    def _sandbox(self, image: dict) -> Sandbox | None:
        """The sandbox user code runs in (see :mod:`pipectl.pps.sandbox`),
        with the image's ``files`` and ``writable`` directories; None where
        bubblewrap cannot be used (then ``/pfs`` paths are rewritten)."""
        why = sandbox.unavailable()
        if why:
            log.warning("running user code without a sandbox (/pfs paths rewritten): %s", why)
            return None
        assert self.scratch
        home, run = os.path.join(self.scratch, "home"), os.path.join(self.scratch, "run")
        os.mkdir(home)
        os.chmod(home, 0o1777)  # transform.user's too (mkdir's mode is masked by the umask)
        os.mkdir(run)
        os.makedirs(self.root, exist_ok=True)
        url = getattr(self.store, "url", "")
        hide = [url.removeprefix("file://")] if url.startswith("file://") else []
        hide += image.get("hide", [])  # the controller's Secrets folder (see the process executor)
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # pipectl, for the runner
        needed = [*self.path_prefix, *os.environ.get("PATH", "").split(os.pathsep), sys.prefix, sys.base_prefix,
                  package, self.workdir or os.getcwd()]
        files = {**image.get("files", {}), **image.get("secret_mounts", {})}
        return Sandbox(pfs=self.root, home=home, run=run, files=files,
                       writable=image.get("writable", []), hide=hide, needed=[p for p in needed if p])

    def run(self) -> int:
        """Process this worker's datums; return how many failed (0 or 1:
        the worker stops at the first datum that exhausts its tries)."""
        mine = [d for d in shard(self._todo, self.index, self.count) if d["id"] not in self._done]
        todo = [Datum.from_dict(d) for d in mine]
        keys = {d["id"]: d["cache_key"] for d in mine}
        log.info("worker %s (%d of %d) of job %s: %d datums to run", self.name, self.index + 1, self.count,
                 self.job.id, len(todo))
        failed = processed = 0
        inputs: dict[str, bytes] = {}
        fetched = 0  # todo[:fetched] have their packed inputs read
        try:
            for k, datum in enumerate(todo):
                if k == fetched:
                    inputs, fetched = self._prefetch(todo, k)
                result = self.run_datum(datum, keys[datum.id], inputs)
                processed += 1
                log.debug("datum %s: %s after %d attempt(s)", result.id[:12], result.state, result.attempts)
                if result.state == "failed":
                    failed = 1
                    log.warning("datum %s failed: %s", result.id[:12], result.error)
                    break
                if result.state == "recovered":
                    log.info("datum %s recovered by err_cmd after: %s", result.id[:12], result.error)
                if (len(self.pending) >= FLUSH_COUNT or self.pending_bytes >= objects.PACK_SIZE
                        or time.monotonic() - self.last_flush > FLUSH_SECONDS):
                    self.flush()
        finally:
            self.flush()
            self.writer.close()
            self._release()
        log.info("worker %s: %d datums run, %d failed", self.name, processed, failed)
        return failed

    def serve(self) -> int:
        """Serve the job's one datum (a service pipeline's job, see
        :mod:`pipectl.pps.longlived`): lay it out and run the transform's
        ``cmd`` on it, with no ``datum_timeout``, until it exits or the
        worker is stopped. Its output goes to this worker's stderr and
        ``/pfs/out`` is not stored. Returns its exit status as 0 or 1.
        Raises PipectlError when the job has not exactly one datum (as
        Pachyderm: "services must have a single datum")."""
        if len(self._todo) != 1:
            raise PipectlError(f"services must have a single datum; job {self.job.id} has {len(self._todo)}")
        datum = Datum.from_dict(self._todo[0])
        log.info("worker %s serves datum %s of job %s", self.name, datum.id[:12], self.job.id)
        self.serving = True
        self._log = os.fdopen(os.dup(sys.stderr.fileno()), "wb")
        try:
            self._layout(datum, {})
            transform = self.spec["transform"]
            error = self._run_once(self._environment(datum), transform["cmd"], transform.get("stdin") or [])
        finally:
            self._log.close()
            self._release()
        if error:
            log.warning("worker %s: the service ended: %s", self.name, error)
        return 1 if error else 0

    def _release(self) -> None:
        """Stop what the worker started (its runner, its S3 sidecar) and
        remove its scratch directory."""
        if self._own_runner:
            self.runner.close(0)
        if self.sidecar is not None:
            self.sidecar.stop()
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _prefetch(self, todo: list[Datum], start: int) -> tuple[dict[str, bytes], int]:
        """Read the packed input files of ``todo[start:end]`` with a few
        ranged reads (:func:`~pipectl.pfs.reader.read_packed`), taking
        datums until their packed bytes reach ``PACK_SIZE`` or ``FLUSH_COUNT``
        datums; return the bytes by ref and ``end``. On a remote store this
        replaces one request per input file with about one per pack."""
        refs, size, end = [], 0, start
        while end < len(todo) and end - start < FLUSH_COUNT and size < objects.PACK_SIZE:
            for i in todo[end].inputs:
                for entry in i.files.values():
                    packed = [r for r in entry.objects if reader.is_packed(r)]
                    refs.extend(packed)
                    size += entry.size if packed else 0
            end += 1
        try:
            return reader.read_packed(self.store, refs, threads=self.store.io_threads), end
        except (PipectlError, OSError) as e:  # each datum then reads (and fails on) its own inputs
            log.warning("reading ahead the inputs of %d datums failed: %s", end - start, e)
            return {}, end

    def flush(self) -> None:
        """Store the pending datums' small outputs in packs, then record the
        datums' results (one write), so a result never names a missing pack."""
        if not self.pending:
            return
        blobs = [data for _, small in self.pending for _, data in small]
        entries = iter(self.writer.put_blobs(blobs))
        for result, small in self.pending:
            for path, _ in small:
                entry = next(entries)
                result.outputs[path] = [entry.size, list(entry.objects)]
        self.pps.write_results(self.job.pipeline, self.job.id, f"{self.name}-{self.batches:06d}",
                               [result for result, _ in self.pending])
        self.batches += 1
        self.pending, self.pending_bytes = [], 0
        self.last_flush = time.monotonic()

    # one datum -----------------------------------------------------------
    def _layout(self, datum: Datum, cache: dict[str, bytes]) -> int:
        """Lay the datum's input files out under the root (packed ones from
        ``cache`` where there); return their bytes. What the previous datum
        left is removed first, but the directories of this datum's inputs and
        ``out`` are only emptied: on most file systems a directory costs more
        to remove and remake than the few files in it."""
        _empty_dir(self.root, {"out"} | {i.name for i in datum.inputs})
        made: set[str] = set()
        size = 0
        for i in datum.inputs:
            if i.name in self.s3_inputs:  # read through the sidecar's bucket, not copied in
                continue
            top = os.path.join(self.root, i.name)
            for path, entry in i.files.items():
                local = os.path.join(top, path.lstrip("/"))
                directory = os.path.dirname(local)
                if directory not in made:
                    os.makedirs(directory, exist_ok=True)
                    made.add(directory)
                size += reader.download(self.store, entry, local, cache)
            if top not in made:
                os.makedirs(top, exist_ok=True)  # an input with no files still has its directory
                made.add(top)
        return size

    @functools.cached_property
    def _job_environment(self) -> dict[str, str]:
        """What every datum's environment adds to the runner's own (see
        :func:`~pipectl.pps.usercode.user_environment`): the image's PATH,
        the spec's env (rewritten), its secrets (process executor) and the
        job's Pachyderm variables."""
        env = {}
        if self.path_prefix:
            env["PATH"] = os.pathsep.join(self.path_prefix + [os.environ.get("PATH", "")])
        for k, v in (self.spec["transform"].get("env") or {}).items():
            env[k] = rewrite(v, self.visible)
        env.update(self.secret_env)
        env.update(PACH_JOB_ID=self.job.id, PPS_PIPELINE_NAME=names.bare(self.job.pipeline),
                   PPS_PROJECT_NAME=names.project_of(self.job.pipeline),
                   PACH_OUTPUT_COMMIT_ID=self.job.output_commit, PFS_ROOT=self.visible)
        if self.sidecar is not None:
            env.update(self.sidecar.environment())
        return env

    def _environment(self, datum: Datum) -> dict[str, str]:
        env = dict(self._job_environment, PACH_DATUM_ID=datum.id)
        for i in datum.inputs:
            env[i.name] = os.path.join(self.visible, i.name, i.path.lstrip("/")).rstrip("/")
            env[f"{i.name}_COMMIT"] = i.commit
            if i.join_on:
                env[f"PACH_DATUM_{i.name}_JOIN_ON"] = i.join_on
            if i.group_by:
                env[f"PACH_DATUM_{i.name}_GROUP_BY"] = i.group_by
        return env

    def _note(self, line: str) -> None:
        """Append a line of pipectl's own to the datum's log."""
        assert self._log is not None  # a datum is running
        os.write(self._log.fileno(), (line + "\n").encode())

    def _run_once(self, env: dict, cmd: list[str], stdin_lines: list[str], batching: bool = False) -> str:
        """Run ``cmd`` (the transform's ``cmd`` or ``err_cmd``) once with
        ``stdin_lines``, its output appended to the datum's log, ``/pfs/out``
        emptied first (``batching``: hand the datum to the command started
        once, see :mod:`.batching`); return '' on success or an error line."""
        assert self._log is not None  # a datum is running
        out = os.path.join(self.root, "out")
        _empty_dir(out)
        if self.sidecar is not None:
            self.sidecar.take_outputs()  # bucket out starts empty too
        if isinstance(self.runner, SocketRunner):
            os.chmod(out, 0o777)  # the runner's user code may run as a user other than the worker's
        transform = self.spec["transform"]
        request = Request(cmd=[rewrite(a, self.visible) for a in cmd], env=env,
                          cwd=self.workdir or transform.get("working_dir") or None,
                          stdin=rewrite("\n".join(stdin_lines) + "\n", self.visible) if stdin_lines else None,
                          timeout=None if self.serving else parse_duration(self.spec.get("datum_timeout")),
                          out=os.path.join(self.visible, "out"),
                          user=transform.get("user"), accept_return_code=transform.get("accept_return_code") or [],
                          batching=batching)
        if self.visible == "/pfs":
            return self.runner.run(request, self._log.fileno())
        before = sandbox.host_pfs()
        error = self.runner.run(request, self._log.fileno())
        if sandbox.host_pfs() != before:
            error = ("user code wrote to /pfs on this host, outside its datum; install bubblewrap to give it "
                     "Pachyderm's /pfs")
            self._note(error)
        return error

    def run_datum(self, datum: Datum, cache_key: str, inputs: dict[str, bytes]) -> DatumResult:
        """Run one datum to completion (with retries) and add its result to
        the pending batch; never raises for user code failures, which become
        a ``failed`` result. A platform error (the store, the user-code
        runner gone) propagates and records nothing: the worker's successor
        runs the datum again. ``inputs``: packed input bytes by ref (see
        :meth:`_prefetch`)."""
        result = DatumResult(datum.id, cache_key, "failed", started=now(), worker=self.name)
        began = time.monotonic()
        # A new unlinked file per datum (one O_TMPFILE open, about 15 us): a
        # process the previous datum's command left running writes on into
        # that datum's file, never into this one's log.
        self._log = tempfile.TemporaryFile(prefix="pipectl-datum-log-")  # noqa: SIM115 (closed in finally)
        try:
            small = self._attempt(datum, inputs, result)
        finally:
            self._log.close()
        result.finished = now()
        result.seconds = round(time.monotonic() - began, 6)
        self.pending.append((result, small))
        self.pending_bytes += sum(len(data) for _, data in small)
        return result

    def _attempt(self, datum: Datum, inputs: dict[str, bytes], result: DatumResult) -> list[tuple[str, bytes]]:
        """Lay out, run (up to ``datum_tries`` times) and store the outputs
        of ``datum`` into ``result``; return its small outputs (see
        :meth:`_store_outputs`)."""
        try:
            result.bytes_downloaded = self._layout(datum, inputs)
        except (PipectlError, OSError) as e:
            result.error = f"cannot lay out inputs: {e}"
            return []
        env = self._environment(datum)
        transform = self.spec["transform"]
        tries = int(self.spec.get("datum_tries", 3))
        error = ""
        for attempt in range(1, tries + 1):
            result.attempts = attempt
            if attempt > 1:
                self._note(f"--- retry {attempt} of {tries} after: {error}")
            error = self._run_once(env, transform["cmd"], transform.get("stdin") or [],
                                   batching=bool(transform.get("datum_batching")))
            if not error:
                break
        if error:
            result.error = f"datum {datum.id} failed after {result.attempts} tries: {error}"
            if transform.get("err_cmd"):
                self._recover(env, result)
            result.log = self._log_tail()
            return []
        result.log = self._log_tail()
        result.outputs, small, result.bytes_uploaded = self._store_outputs()
        result.state = "success"
        return small

    def _recover(self, env: dict, result: DatumResult) -> None:
        """Pachyderm's ``err_cmd``: run it on a datum that failed every try;
        if it succeeds the datum is ``recovered`` (the job can still succeed,
        without this datum's outputs, and the next job runs it again)."""
        transform = self.spec["transform"]
        self._note(f"--- err_cmd after: {result.error}")
        error = self._run_once(env, transform["err_cmd"], transform.get("err_stdin") or [])
        _empty_dir(os.path.join(self.root, "out"))  # a recovered datum has no outputs
        if self.sidecar is not None:
            self.sidecar.take_outputs()
        if error:
            result.error += f"; err_cmd failed too: {error}"
        else:
            result.state = "recovered"

    def _log_tail(self) -> str:
        """The last :data:`LOG_TAIL` bytes of the datum's log."""
        assert self._log is not None  # a datum is running
        fd = self._log.fileno()
        size = os.fstat(fd).st_size
        return os.pread(fd, LOG_TAIL, max(0, size - LOG_TAIL)).decode(errors="replace")

    def _store_outputs(self) -> tuple[dict, list[tuple[str, bytes]], int]:
        """Store the datum's large output files now; return their ``[size,
        refs]`` by path, the small ones' ``(path, bytes)``, which
        :meth:`flush` packs with the other pending datums' outputs, and the
        bytes uploaded (small outputs counted by size)."""
        out = os.path.join(self.root, "out")
        small, large = [], []
        for directory, _, files in os.walk(out):
            for name in files:
                local = os.path.join(directory, name)
                path = "/" + os.path.relpath(local, out)
                data = objects.read_small(local)
                if data is None:
                    large.append((path, local))
                else:
                    small.append((path, data))
        before = self.writer.stats.bytes_uploaded
        entries = self.writer.put_files([local for _, local in large], self.store.io_threads)
        outputs = {path: [e.size, list(e.objects)] for (path, _), e in zip(large, entries)}
        uploaded = self.writer.stats.bytes_uploaded - before + sum(len(d) for _, d in small)
        if self.sidecar is not None:  # objects put in bucket out: stored already, as they arrived
            s3 = self.sidecar.take_outputs()
            small = [(path, data) for path, data in small if path not in s3]
            outputs.update({path: [e.size, list(e.objects)] for path, e in s3.items()})
            uploaded += sum(e.size for e in s3.values())
        return outputs, small, uploaded


def _empty_dir(path: str, keep: set[str] | frozenset = frozenset()) -> None:
    """Make ``path`` an empty directory, except that its subdirectories named
    in ``keep`` are emptied rather than removed (cheap when it is nearly
    empty already, as between datums)."""
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        os.makedirs(path)
        return
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            os.unlink(entry.path)
        elif entry.name in keep:
            _empty_dir(entry.path)
        else:
            shutil.rmtree(entry.path)


def main(argv: list[str] | None = None) -> int:
    """``python -m pipectl.pps.worker --store URL --pipeline P --job J
    --index I --count N [--root DIR] [--usercode SOCKET] [--service]``. Exit
    0 when its datums are recorded (even failed ones), 2 on a platform error;
    with ``--service``, 1 when the served command failed."""
    parser = argparse.ArgumentParser(prog="pipectl-worker", description=main.__doc__)
    parser.add_argument("--store", default=os.environ.get("PIPECTL_STORE"))
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--index", type=int, default=int(os.environ.get("JOB_COMPLETION_INDEX", "0")))
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--root", help="Where /pfs is laid out (default: a scratch directory).")
    parser.add_argument("--usercode", metavar="SOCKET",
                        help="Run user code through the runner listening on this Unix socket "
                             "(pipectl.pps.runner, in another container) instead of as a child.")
    parser.add_argument("--service", action="store_true",
                        help="Serve the job's one datum until stopped (a service pipeline's job).")
    args = parser.parse_args(argv)
    atexit.register(gc.freeze)  # no final collection at exit (see pipectl.cli.main)
    logging.basicConfig(level=os.environ.get("PIPECTL_LOG_LEVEL", "info").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    runner, code = None, 0
    try:
        runner = SocketRunner(args.usercode) if args.usercode else None
        store = open_store(args.store)
        gc.freeze()  # modules and the store's client outlive every datum (see Controller.run)
        worker = Worker(store, args.pipeline, args.job, args.index, args.count, args.root, runner)
        if args.service:
            code = worker.serve()
        else:
            worker.run()  # failed datums are recorded: the worker itself succeeded
    except PipectlError as e:
        print(f"worker error: {e}", file=sys.stderr)
        code = 2
    finally:
        if runner:
            runner.close(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
