"""The operations layer over HTTP: :class:`RemoteClient` makes the calls of
:class:`~pipectl.client.Client` to a pipectl server (:mod:`pipectl.server`)
and returns the same records, so the CLI prints the same output whether it
opens a store or talks to a server (``--store http://host:8000``, or
``$PIPECTL_ADDRESS``), with a token (``$PIPECTL_TOKEN``) instead of the
store's credentials.

Errors come back as the exceptions the store-side call raises, with the
server's message (the answer names the kind, see :func:`pipectl.errors.from_http`).
"""

from __future__ import annotations

import contextlib
import io
import json
import posixpath
import secrets
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO

from ..errors import InvalidArgument, NotFound, PipectlError, StoreUnavailable, from_http
from ..pfs import Branch, Commit, Node, RepoInfo
from ..pfs.files import Source
from ..pfs.objects import TransferStats
from ..pps.model import DatumResult, JobInfo, PipelineInfo
from .data import RepoSummary
from .pipelines import PipelineSummary

CHUNK = 1 << 20


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _node(d: dict) -> Node:
    return Node(d["path"], d["type"], d["size_bytes"], d.get("hash", ""))


class RemoteClient:
    """The operations of :class:`~pipectl.client.Client` on a pipectl server
    at ``url`` (``http(s)://host:port``), authenticated with ``token``."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60):
        import requests  # here: importing it costs 0.14 s, which the store-side CLI does not pay
        self.url = url.rstrip("/")
        self.api = self.url + "/api/v1"
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    @property
    def store(self):
        raise InvalidArgument(f"this command needs the store itself, not the pipectl server at {self.url}: "
                              "give --store a file:// or s3:// URL")

    # transport -------------------------------------------------------------
    def _call(self, method: str, path: str, *, params: dict | None = None, json: Any = None,
              data: Any = None, headers: dict | None = None, stream: bool = False, timeout: float | None = None):
        """One request (a ``requests.Response``); raises the pipectl error its
        status and message name."""
        import requests
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            r = self.session.request(method, self.api + path, params=params, json=json, data=data, headers=headers,
                                     stream=stream, timeout=timeout or self.timeout)
        except requests.RequestException as e:
            raise StoreUnavailable(f"cannot reach the pipectl server at {self.url}: {type(e).__name__}") from None
        if r.status_code < 400:
            return r
        try:
            answer = r.json()
            message, kind = answer["error"], answer.get("kind")
        except (ValueError, KeyError, TypeError, AttributeError):
            message, kind = f"the pipectl server answered {r.status_code} {r.reason}", None
        if r.status_code in (401, 403):
            raise PipectlError(f"{message} (set PIPECTL_TOKEN)")
        raise from_http(kind, message)

    def _json(self, method: str, path: str, **kw) -> Any:
        r = self._call(method, path, **kw)
        return r.json() if r.content else None

    def _repo(self, repo: str) -> str:
        return f"/repos/{_quote(repo)}"

    def _ref(self, repo: str, ref: str) -> str:
        return f"{self._repo(repo)}/commits/{_quote(ref)}"

    # repos -----------------------------------------------------------------
    def create_repo(self, repo: str, description: str = "") -> RepoInfo:
        return RepoInfo.from_dict(self._json("POST", "/repos", json={"name": repo, "description": description}))

    def list_repos(self) -> list[RepoSummary]:
        return [self._summary(d) for d in self._json("GET", "/repos")]

    def inspect_repo(self, repo: str) -> RepoSummary:
        return self._summary(self._json("GET", self._repo(repo)))

    @staticmethod
    def _summary(d: dict) -> RepoSummary:
        return RepoSummary(RepoInfo.from_dict(d), d["size_bytes"], d.get("branches"))

    def delete_repo(self, repo: str, force: bool = False) -> None:
        self._call("DELETE", self._repo(repo), params={"force": force})

    # commits ---------------------------------------------------------------
    def start_commit(self, repo: str, branch: str, description: str = "", parent: str | None = None) -> Commit:
        body = {"branch": branch, "description": description, "parent": parent}
        return Commit.from_dict(self._json("POST", f"{self._repo(repo)}/commits", json=body))

    def finish_commit(self, repo: str, ref: str, description: str | None = None) -> Commit:
        return Commit.from_dict(self._json("POST", f"{self._ref(repo, ref)}/finish", json={"description": description}))

    def subscribe_commits(self, repo: str, branch: str | None = None, all: bool = False,
                          interval: float = 0.2) -> Iterator[Commit]:
        # the server's event stream (it polls the store every 0.1 s; ``interval`` is not needed)
        r = self._call("GET", "/watch/commits", params={"repo": repo, "branch": branch, "all": all}, stream=True,
                       timeout=24 * 3600)
        with contextlib.closing(r):
            for line in r.iter_lines(decode_unicode=True):
                if line.startswith("data: "):
                    yield Commit.from_dict(json.loads(line[len("data: "):]))

    def list_commits(self, repo: str, branch: str | None = None, limit: int | None = None) -> list[Commit]:
        found = self._json("GET", f"{self._repo(repo)}/commits", params={"branch": branch, "limit": limit})
        return [Commit.from_dict(d) for d in found]

    def inspect_commit(self, repo: str, ref: str) -> Commit:
        return Commit.from_dict(self._json("GET", self._ref(repo, ref)))

    def delete_commit(self, repo: str, ref: str) -> None:
        self._call("DELETE", self._ref(repo, ref))

    # branches --------------------------------------------------------------
    def create_branch(self, repo: str, branch: str, head: str | None = None, trigger: dict | None = None) -> Branch:
        body = {"head": head, "trigger": trigger}
        return Branch.from_dict(self._json("PUT", f"{self._repo(repo)}/branches/{_quote(branch)}", json=body))

    def list_branches(self, repo: str) -> list[Branch]:
        return [Branch.from_dict(d) for d in self._json("GET", f"{self._repo(repo)}/branches")]

    def delete_branch(self, repo: str, branch: str) -> None:
        self._call("DELETE", f"{self._repo(repo)}/branches/{_quote(branch)}")

    # files -----------------------------------------------------------------
    def put_files(self, repo: str, ref: str, sources: list[tuple[str, Source]], overwrite: bool = False,
                  progress: Callable[[int], None] | None = None,
                  parallelism: int | None = None) -> tuple[Commit, TransferStats]:
        """As the store-side call: every file in one commit on a branch, or
        into an open commit. The files go in one streamed request
        (``POST .../files``, multipart/form-data, see :class:`_Upload`), each
        read when its turn comes; the server stores their bytes as they
        arrive and puts them into the commit only once the whole request
        did, so an upload cut short (a file that cannot be read, the process
        killed, the connection lost) changes nothing. ``parallelism`` is the
        server's to choose here. Raises InvalidArgument for no file."""
        if not sources:
            raise InvalidArgument("put-file needs at least one file to put through a pipectl server")
        stats = TransferStats()
        upload = _Upload(sources, stats, progress)
        try:
            found = self._json("POST", f"{self._ref(repo, ref)}/files", params={"overwrite": overwrite},
                               data=iter(upload), headers={"Content-Type": upload.content_type}, timeout=3600)
        except PipectlError:
            if upload.error is not None:  # reading a file failed: that is the error to report
                raise upload.error from None
            raise
        return Commit.from_dict(found), stats

    def get_file(self, repo: str, ref: str, path: str, out: BinaryIO) -> int:
        r = self._call("GET", f"{self._ref(repo, ref)}/files/{_quote(path.lstrip('/'))}", stream=True, timeout=3600)
        size = 0
        with r:
            for chunk in r.iter_content(CHUNK):
                out.write(chunk)
                size += len(chunk)
        expected = int(r.headers.get("content-length", size))
        if size != expected:
            raise StoreUnavailable(f"the download of {path} ended after {size} of {expected} bytes")
        return size

    def list_files(self, repo: str, ref: str, path: str = "/") -> list[Node]:
        return [_node(d) for d in self._json("GET", f"{self._ref(repo, ref)}/files", params={"path": path})]

    def glob_files(self, repo: str, ref: str, pattern: str) -> list[Node]:
        return [_node(d) for d in self._json("GET", f"{self._ref(repo, ref)}/files", params={"glob": pattern})]

    def inspect_file(self, repo: str, ref: str, path: str) -> Node:
        return _node(self._json("GET", f"{self._ref(repo, ref)}/files/{_quote(path.lstrip('/'))}",
                                params={"inspect": True}))

    def diff_files(self, repo: str, ref: str, path: str = "/", old_repo: str | None = None,
                   old_ref: str | None = None) -> tuple[list[Node], list[Node]]:
        d = self._json("GET", f"{self._ref(repo, ref)}/diff", params={"path": path, "old_repo": old_repo,
                                                                     "old_ref": old_ref})
        return [_node(n) for n in d["added"]], [_node(n) for n in d["removed"]]

    def delete_file(self, repo: str, ref: str, path: str) -> Commit:
        return Commit.from_dict(self._json("DELETE", f"{self._ref(repo, ref)}/files/{_quote(path.lstrip('/'))}"))

    # pipelines -------------------------------------------------------------
    def create_pipeline(self, spec: Any, source: str = "spec") -> PipelineInfo:
        return PipelineInfo.from_dict(self._json("POST", "/pipelines", json=spec, params={"source": source}))

    def update_pipeline(self, spec: Any, reprocess: bool = False, source: str = "spec") -> PipelineInfo:
        name = spec.get("pipeline", {}).get("name", "") if isinstance(spec, dict) else ""
        if not name:
            raise InvalidArgument(f"{source}: pipeline.name: required field is missing")
        return PipelineInfo.from_dict(self._json("PUT", f"/pipelines/{_quote(name)}", json=spec,
                                                 params={"reprocess": reprocess, "source": source}))

    def list_pipelines(self) -> list[PipelineSummary]:
        found = self._json("GET", "/pipelines")
        return [PipelineSummary(PipelineInfo.from_dict(d), d["last_job_state"]) for d in found]

    def inspect_pipeline(self, name: str) -> PipelineInfo:
        return PipelineInfo.from_dict(self._json("GET", f"/pipelines/{_quote(name)}"))

    def delete_pipeline(self, name: str, keep_repo: bool = False) -> None:
        self._call("DELETE", f"/pipelines/{_quote(name)}", params={"keep_repo": keep_repo})

    def stop_pipeline(self, name: str) -> PipelineInfo:
        return PipelineInfo.from_dict(self._json("POST", f"/pipelines/{_quote(name)}/stop"))

    def start_pipeline(self, name: str) -> PipelineInfo:
        return PipelineInfo.from_dict(self._json("POST", f"/pipelines/{_quote(name)}/start"))

    def run_cron(self, name: str) -> list[str]:
        return self._json("POST", f"/pipelines/{_quote(name)}/cron")["ticked"]

    def run_pipeline(self, name: str, commits: Sequence[tuple[str, str]] = (), reprocess: bool = False) -> JobInfo:
        body = {"commits": [{"repo": r, "commit": c} for r, c in commits], "reprocess": reprocess}
        return JobInfo.from_dict(self._json("POST", f"/pipelines/{_quote(name)}/run", json=body))

    def plan_datums(self, spec: Any, source: str = "spec") -> list[dict]:
        return self._json("POST", "/pipelines/plan", json=spec, params={"source": source})

    # jobs, datums, logs ----------------------------------------------------
    def list_jobs(self, pipeline: str | None = None) -> list[JobInfo]:
        return [JobInfo.from_dict(d) for d in self._json("GET", "/jobs", params={"pipeline": pipeline})]

    def inspect_job(self, job: str, pipeline: str | None = None) -> JobInfo:
        return JobInfo.from_dict(self._json("GET", f"/jobs/{_quote(job)}"))

    def stop_job(self, job: str) -> JobInfo:
        return JobInfo.from_dict(self._json("POST", f"/jobs/{_quote(job)}/stop"))

    def flush_commit(self, repo: str, commit: str, timeout: float | None = None) -> list[Commit]:
        found = self._json("POST", f"{self._ref(repo, commit)}/flush", params={"timeout": timeout},
                           timeout=(timeout or 24 * 3600) + 30)
        return [Commit.from_dict(d) for d in found]

    def list_datums(self, job: str) -> list[dict]:
        return self._json("GET", f"/jobs/{_quote(job)}/datums")

    def inspect_datum(self, job: str, datum: str) -> DatumResult:
        return DatumResult.from_dict(self._json("GET", f"/jobs/{_quote(job)}/datums/{_quote(datum)}"))

    def datum_logs(self, pipeline: str | None = None, job: str | None = None,
                   datum: str | None = None) -> list[DatumResult]:
        found = self._json("GET", "/logs", params={"pipeline": pipeline, "job": job, "datum": datum})
        return [DatumResult.from_dict(d) for d in found]

    def worker_logs(self, pipeline: str | None = None, job: str | None = None) -> dict[str, str]:
        return self._json("GET", "/logs/workers", params={"pipeline": pipeline, "job": job})


class _Upload:
    """The body of :meth:`RemoteClient.put_files`: one multipart/form-data
    part per file, named by its path (percent-encoded), generated as
    requests sends it (chunked, from the iterator), each file opened when
    its turn comes and read in CHUNK pieces, so no file is held whole and
    a stream (stdin) goes on as it is read. ``error``: what opening or
    reading a file raised (the body, and the request, then end unfinished)."""

    def __init__(self, sources: list[tuple[str, Source]], stats: TransferStats,
                 progress: Callable[[int], None] | None):
        self.sources, self.stats, self.progress = sources, stats, progress
        self.boundary = "pipectl-" + secrets.token_hex(16)  # never met in a file, in practice
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            for path, source in self.sources:
                name = urllib.parse.quote(path, safe="/")
                filename = urllib.parse.quote(posixpath.basename(path.rstrip("/")), safe="")
                yield (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                       f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
                with _open(source) if isinstance(source, str) else _unclosed(source) as f:
                    yield from _counting(f, self.stats, self.progress)
                yield b"\r\n"
            yield f"--{self.boundary}--\r\n".encode()
        except BaseException as e:
            self.error = e
            raise


def _open(path: str) -> BinaryIO:
    """A local file to put, opened; NotFound (one line, as the store-side put-file says it) if it cannot be."""
    try:
        return open(path, "rb")
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise NotFound(f"cannot read {path}: {e.strerror}") from None


class _unclosed(io.RawIOBase):
    """A stream the caller owns (stdin), not closed by the ``with`` above."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


def _counting(f, stats: TransferStats, progress: Callable[[int], None] | None):
    """``f``'s bytes in chunks (a streamed request body), counted into ``stats`` and ``progress``."""
    while chunk := f.read(CHUNK):
        stats.add(read=len(chunk), uploaded=len(chunk))
        if progress:
            progress(len(chunk))
        yield chunk
