"""``pipectl.Client``: the Python client, shaped after Pachyderm's
``pachyderm_sdk`` (keyword arguments, ``client.pfs`` and ``client.pps``),
with one API whether it opens a store directly (embedded, no server) or
talks to a pipectl server::

    import pipectl

    client = pipectl.Client()                                  # $PIPECTL_STORE, or $PIPECTL_ADDRESS
    client = pipectl.Client(store="s3://bucket/prefix")        # a store, directly
    client = pipectl.Client(address="http://host:8000", token="...")   # a server

    client.pfs.create_repo(repo="images")
    with client.pfs.commit(repo="images", branch="master") as commit:
        commit.put_file_from_bytes(path="/hello.txt", data=b"hello")
        commit.put_files(source="./photos", path="/photos")
    # finished here; had the block raised, the commit would have been
    # discarded (pachyderm_sdk finishes it anyway)
    for job in client.pps.list_job(pipeline="edges"): ...
    with client.pfs.get_file(repo="edges", commit="master", path="/cat.png") as f:
        data = f.read()                                        # streamed

Records are pipectl's own (:class:`~pipectl.pfs.Commit`,
:class:`~pipectl.pps.model.JobInfo`...), the same the CLI prints with
``--raw``. Errors are pipectl's (:class:`~pipectl.errors.NotFound`,
``InvalidArgument``...), with the CLI's messages.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

from . import streams
from .client import Client as Operations
from .client import PipelineSummary, RepoSummary, address
from .client.remote import RemoteClient
from .errors import PipectlError
from .pfs import Branch, Commit, Node, RepoInfo
from .pfs.files import Source
from .pps.model import DatumResult, JobInfo, PipelineInfo
from .store import open_store

TERMINAL = ("success", "failure", "killed")
"""Job states that do not change any more."""


class Client:
    """A client of one store (``store``: ``file://...``, ``s3://...``) or of
    one pipectl server (``address``: ``http(s)://host:port``, with
    ``token``). With neither, ``$PIPECTL_ADDRESS`` (and ``$PIPECTL_TOKEN``)
    or ``$PIPECTL_STORE`` decide, as for the CLI."""

    def __init__(self, store: str | None = None, address: str | None = None, token: str | None = None):
        if store and address:
            raise PipectlError("give store or address, not both")
        server = address or (None if store else _address_from_environment())
        self._ops: Operations | RemoteClient = (
            RemoteClient(server, token or os.environ.get("PIPECTL_TOKEN")) if server
            else Operations(open_store(store)))
        self.pfs = PfsApi(self._ops)
        self.pps = PpsApi(self._ops)


def _address_from_environment() -> str | None:
    return address(os.environ.get("PIPECTL_STORE"))


class PfsApi:
    """Repos, branches, commits and files (``client.pfs``)."""

    def __init__(self, ops: Operations | RemoteClient):
        self._ops = ops

    # repos
    def create_repo(self, *, repo: str, description: str = "") -> RepoInfo:
        """Raises AlreadyExists, InvalidArgument."""
        return self._ops.create_repo(repo, description)

    def list_repo(self) -> list[RepoSummary]:
        """Every repo, newest first, with its master head's size (``size_bytes``)."""
        return self._ops.list_repos()

    def inspect_repo(self, *, repo: str) -> RepoSummary:
        """Raises NotFound."""
        return self._ops.inspect_repo(repo)

    def delete_repo(self, *, repo: str, force: bool = False) -> None:
        """Raises NotFound, Conflict (a pipeline reads it, unless ``force``)."""
        self._ops.delete_repo(repo, force)

    # branches
    def create_branch(self, *, repo: str, branch: str, head: str | None = None,
                      trigger: dict | None = None) -> Branch:
        """Create ``branch`` (or move it to ``head``, a commit or branch),
        with an optional trigger (Pachyderm's ``pfs.trigger`` fields)."""
        return self._ops.create_branch(repo, branch, head, trigger)

    def list_branch(self, *, repo: str) -> list[Branch]:
        return self._ops.list_branches(repo)

    def delete_branch(self, *, repo: str, branch: str) -> None:
        self._ops.delete_branch(repo, branch)

    # commits
    def commit(self, *, repo: str, branch: str, description: str = "") -> OpenCommit:
        """A new open commit on ``branch``, as a context manager: finished
        when the block ends, discarded (deleted) if the block raises."""
        return OpenCommit(self._ops, self._ops.start_commit(repo, branch, description))

    def list_commit(self, *, repo: str, branch: str | None = None, number: int | None = None) -> list[Commit]:
        """Commits of ``repo`` (of ``branch``), newest first, at most ``number``."""
        return self._ops.list_commits(repo, branch, number)

    def inspect_commit(self, *, repo: str, commit: str) -> Commit:
        """``commit``: an id or a branch, with ``^``/``~N``. Raises NotFound."""
        return self._ops.inspect_commit(repo, commit)

    def wait_commit(self, *, repo: str, commit: str, timeout: float | None = None) -> list[Commit]:
        """Wait until every pipeline downstream of ``repo@commit`` has its
        output commit; return the commit and those (in that order). Raises
        Conflict if a job on it failed, TimeoutError after ``timeout`` s."""
        target = self._ops.inspect_commit(repo, commit)
        return [target, *self._ops.flush_commit(repo, target.id, timeout)]

    def subscribe_commit(self, *, repo: str, branch: str | None = None, all: bool = False,
                         interval: float = 0.2) -> Iterator[Commit]:
        """Each finished commit of ``repo`` (of ``branch``) from now on
        (``all``: the existing ones first), oldest first, as it appears;
        polls every ``interval`` seconds (through a server: its event
        stream). An endless iterator; each look reads the branches and the
        new commits only, however long the history. Raises NotFound."""
        return self._ops.subscribe_commits(repo, branch, all, interval)

    # files
    def get_file(self, *, repo: str, commit: str, path: str) -> BinaryIO:
        """The file's bytes as a readable file object that streams them
        (close it, or use ``with``). Raises NotFound, InvalidArgument (a
        directory); a failure mid-stream is raised by ``read``."""
        node = self._ops.inspect_file(repo, commit, path)
        if node.type != "file":
            raise PipectlError(f"{path} is a directory; use list_file")
        return streams.reader(lambda out: self._ops.get_file(repo, commit, path, out))

    def list_file(self, *, repo: str, commit: str, path: str = "/") -> list[Node]:
        """The direct children of ``path`` (``Node``: path, type, size, hash)."""
        return self._ops.list_files(repo, commit, path)

    def glob_file(self, *, repo: str, commit: str, pattern: str) -> list[Node]:
        return self._ops.glob_files(repo, commit, pattern)

    def inspect_file(self, *, repo: str, commit: str, path: str) -> Node:
        return self._ops.inspect_file(repo, commit, path)


class OpenCommit:
    """An open commit (from :meth:`PfsApi.commit`): ``id``, ``repo``,
    ``branch``, the put and delete calls, and the context manager."""

    def __init__(self, ops: Operations | RemoteClient, commit: Commit):
        self._ops, self.commit = ops, commit
        self.id, self.repo, self.branch = commit.id, commit.repo, commit.branch

    def put_file_from_bytes(self, *, path: str, data: bytes, append: bool = False) -> None:
        """Store ``data`` at ``path`` (replacing it, or after it with ``append``)."""
        self._ops.put_files(self.repo, self.id, [(path, io.BytesIO(data))], overwrite=not append)

    def put_file_from_file(self, *, path: str, file: BinaryIO, append: bool = False) -> None:
        """Store what the binary file object ``file`` reads at ``path``."""
        self._ops.put_files(self.repo, self.id, [(path, file)], overwrite=not append)

    def put_files(self, *, source: str, path: str = "/") -> None:
        """Store every file below the local directory ``source`` under ``path``."""
        sources: list[tuple[str, Source]] = []
        for directory, _, files in os.walk(source):
            for name in sorted(files):
                local = os.path.join(directory, name)
                sources.append((path.rstrip("/") + "/" + os.path.relpath(local, source), local))
        self._ops.put_files(self.repo, self.id, sources, overwrite=True)

    def delete_file(self, *, path: str) -> None:
        self._ops.delete_file(self.repo, self.id, path)

    def finish(self, description: str | None = None) -> Commit:
        self.commit = self._ops.finish_commit(self.repo, self.id, description)
        return self.commit

    def __enter__(self) -> OpenCommit:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.finish()
        else:
            self._ops.delete_commit(self.repo, self.id)  # discarded: nothing half-written lands


class PpsApi:
    """Pipelines, jobs, datums and logs (``client.pps``)."""

    def __init__(self, ops: Operations | RemoteClient):
        self._ops = ops

    def create_pipeline(self, spec: dict | str | None = None, *, file: str | None = None) -> PipelineInfo:
        """Create a pipeline from a spec (a dict, or JSON text) or a spec
        ``file`` (JSON or YAML). Raises InvalidArgument naming every problem."""
        parsed, source = _spec(spec, file)
        return self._ops.create_pipeline(parsed, source)

    def update_pipeline(self, spec: dict | str | None = None, *, file: str | None = None,
                        reprocess: bool = False) -> PipelineInfo:
        parsed, source = _spec(spec, file)
        return self._ops.update_pipeline(parsed, reprocess, source)

    def list_pipeline(self) -> list[PipelineSummary]:
        return self._ops.list_pipelines()

    def inspect_pipeline(self, *, pipeline: str) -> PipelineInfo:
        return self._ops.inspect_pipeline(pipeline)

    def delete_pipeline(self, *, pipeline: str, keep_repo: bool = False) -> None:
        self._ops.delete_pipeline(pipeline, keep_repo)

    def list_job(self, *, pipeline: str | None = None) -> list[JobInfo]:
        """Jobs, newest first."""
        return self._ops.list_jobs(pipeline)

    def inspect_job(self, *, job: str, wait: bool = False, timeout: float | None = None,
                    interval: float = 0.2) -> JobInfo:
        """A job; with ``wait``, once it has ended (success, failure or
        killed). Raises NotFound, TimeoutError after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = self._ops.inspect_job(job)
            if not wait or info.state in TERMINAL:
                return info
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job} still {info.state} after {timeout:g}s")
            time.sleep(interval)

    def run_pipeline(self, *, pipeline: str, commits: Sequence[tuple[str, str]] = (),
                     reprocess: bool = False) -> JobInfo:
        """Start a new job of ``pipeline`` over its newest job's inputs
        (``commits``, ``(repo, commit or branch)``, in their place); only the
        datums that did not succeed before run, unless ``reprocess``.
        Returns the job (``created``). Raises NotFound, InvalidArgument,
        Conflict (the newest job is still running)."""
        return self._ops.run_pipeline(pipeline, commits, reprocess)

    def stop_job(self, *, job: str) -> JobInfo:
        return self._ops.stop_job(job)

    def list_datum(self, *, job: str) -> list[dict]:
        """Every datum of the job: id, files, state, seconds, attempts, worker."""
        return self._ops.list_datums(job)

    def get_logs(self, *, job: str | None = None, pipeline: str | None = None,
                 datum: str | None = None) -> list[DatumResult]:
        """Datum results with the tail of the user code's log (``log``)."""
        return self._ops.datum_logs(pipeline, job, datum)


def _spec(spec: dict | str | None, file: str | None) -> tuple[Any, str]:
    from .pps import spec as specs
    if (spec is None) == (file is None):
        raise PipectlError("give a spec or a file, one of them")
    if file is not None:
        with open(file, encoding="utf-8") as f:
            return specs.parse(f.read(), file), file
    return (json.loads(spec) if isinstance(spec, str) else spec), "spec"
