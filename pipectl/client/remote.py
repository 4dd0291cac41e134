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
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO

from ..errors import Conflict, InvalidArgument, NotFound, PipectlError, StoreUnavailable, from_http
from ..pfs import Branch, Commit, Node, RepoInfo, names
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
              data: Any = None, stream: bool = False, timeout: float | None = None):
        """One request (a ``requests.Response``); raises the pipectl error its
        status and message name."""
        import requests
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            r = self.session.request(method, self.api + path, params=params, json=json, data=data, stream=stream,
                                     timeout=timeout or self.timeout)
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
        """As the store-side call: every file in one commit. Into a branch
        whose head is finished, a commit is started, filled and finished
        (and deleted if an upload fails); into an open commit, the files go
        into it."""
        is_branch = not names.is_commit_id(ref) and not any(c in ref for c in "^~")
        try:
            target: Commit | None = self.inspect_commit(repo, ref)
        except NotFound:
            if not is_branch:
                raise
            target = None  # a branch with no commit yet (or a new one): its first commit is made
        opened = None
        if target is None or target.finished:
            if not is_branch:
                raise Conflict(f"commit {ref} of {repo} is finished; start a new commit to change files")
            opened = self.start_commit(repo, ref)
        commit_id = (opened or target).id  # type: ignore[union-attr]
        stats = TransferStats()
        try:
            for path, source in sources:
                with (open(source, "rb") if isinstance(source, str) else _unclosed(source)) as f:
                    body = _counting(f, stats, progress)
                    self._call("PUT", f"{self._ref(repo, commit_id)}/files/{_quote(path.lstrip('/'))}",
                               params={"overwrite": overwrite}, data=body, timeout=3600)
        except BaseException:
            if opened is not None:
                with contextlib.suppress(PipectlError):  # the upload's own error is the one to report
                    self.delete_commit(repo, opened.id)
            raise
        return (self.finish_commit(repo, commit_id) if opened else self.inspect_commit(repo, commit_id)), stats

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
