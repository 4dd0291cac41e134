"""The JSON API: every call of the operations layer
(:class:`pipectl.client.Client`) over HTTP, built with FastAPI, which
publishes its OpenAPI document at ``/openapi.json``.

Resources, under ``/api/v1``:

- ``repos``, ``repos/{repo}/branches``, ``repos/{repo}/commits`` (``{repo}``
  and a pipeline's ``{name}`` are one segment: ``staging%2Fimages`` for
  repo ``images`` of project ``staging``, see :mod:`.paths`; ``{ref}``
  is a commit id or a branch, with ``^``/``~N``), and
  ``repos/{repo}/commits/{ref}/files/{path}``: GET streams a file's bytes,
  DELETE removes it; ``.../files``: GET lists a directory (``?path=``,
  ``?glob=``), POST puts the files of a ``multipart/form-data`` body (one
  part per file, named by its path: one new commit on a branch, or into an
  open commit; nothing lands unless the whole body arrived, see
  :mod:`.formdata`); ``.../diff`` compares with the parent commit,
  ``.../flush`` waits for the commits downstream;
- ``pipelines`` (POST a spec as JSON to create; PUT ``pipelines/{name}``
  to update; ``pipelines/plan`` lists the datums a spec would make;
  ``pipelines/{name}/run`` reruns the newest job),
  ``jobs``, ``jobs/{job}/datums``, ``logs`` (``?job=`` or ``?pipeline=``),
  ``logs/workers``;
- ``watch/commits`` and ``watch/jobs``: server-sent events, one per new
  finished commit or job state change (Pachyderm's subscribe-commit);
- ``serving/models`` and ``serving/predictions/{name}``: the models of the
  model server given with ``--model-server`` and a prediction from one,
  passed through (a read token may ask for predictions).

Errors are JSON, ``{"error": "<the CLI's message>", "kind": "NotFound"}``
(``kind``: the :mod:`pipectl.errors` class), with the status its kind
implies (:data:`pipectl.errors.HTTP_STATUS`: 400 bad input, 404 not found,
409 exists or conflicts, 412 a lost race, 503 store unreachable; 401/403
for tokens).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from .. import __version__, streams
from ..client import Client
from ..errors import InvalidArgument, PipectlError, http_status
from ..pfs.model import now
from .auth import COOKIE, request_role
from .console import add_console
from .formdata import receive_files
from .models import ModelServer, require
from .paths import EncodedSlashes

CHUNK = 1 << 20
PREDICTION_BYTES = 64 << 20
"""The largest prediction request passed on to the model server (which has its own limit)."""
WATCH_INTERVAL = 0.1
"""Seconds between the store reads of a watch stream."""


class CommitRef(BaseModel):
    """A commit of a repo: ``commit`` is a commit id or a branch."""

    repo: str
    commit: str


def create_app(client: Client, tokens: dict[str, str] | None = None, model_server: str | None = None) -> FastAPI:
    """The ASGI app serving ``client``. ``tokens``: ``{token: role}`` (see
    :mod:`.auth`); None or empty leaves the API open. ``model_server``: the
    URL of a model server (``pipectl serve``) whose models the console
    shows and tries (see :mod:`.models`)."""
    models = ModelServer(model_server) if model_server else None
    app = FastAPI(title="pipectl", version=__version__, docs_url=None, redoc_url=None,
                  description="Versioned data repositories and pipelines (Pachyderm's model) over HTTP.")
    app.add_middleware(EncodedSlashes)  # project/name as one path segment

    def authorize(request: Request, posts_write: bool) -> None:
        """Refuse a request without a known token; ``posts_write``: a
        request other than GET/HEAD changes something, and needs a write token."""
        if not tokens:
            return
        role, by_cookie = request_role(tokens, request.headers.get("authorization"), request.cookies.get(COOKIE))
        posting = request.method not in ("GET", "HEAD")
        if by_cookie and posting and request.headers.get("x-pipectl-console") != "1":  # the console's sign-in
            raise HTTPException(403, "a write through the console's cookie needs its X-Pipectl-Console header")
        if role is None:
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        if role != "write" and posting and posts_write:
            raise HTTPException(403, "this token may only read")

    def store_access(request: Request) -> None:
        authorize(request, posts_write=True)

    def serving_access(request: Request) -> None:  # a prediction reads, whatever its method
        authorize(request, posts_write=False)

    @app.exception_handler(PipectlError)
    def pipectl_error(request: Request, e: PipectlError) -> JSONResponse:
        return JSONResponse({"error": str(e), "kind": type(e).__name__}, status_code=http_status(e))

    @app.exception_handler(HTTPException)
    def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse({"error": e.detail}, status_code=e.status_code, headers=e.headers)

    router = APIRouter(prefix="/api/v1", dependencies=[Depends(store_access)])
    _routes(router, client)
    app.include_router(router)
    serving = APIRouter(prefix="/api/v1/serving", dependencies=[Depends(serving_access)], tags=["serving"])
    _model_routes(serving, models)
    app.include_router(serving)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"status": "ok"}

    add_console(app, client, tokens, models)
    return app


def _model_routes(api: APIRouter, models: ModelServer | None) -> None:
    """The model server's models and predictions, through this server."""

    @api.get("/models")
    def list_models() -> list[dict]:
        """Each model of the configured model server: name, served version
        (the model commit), source, provenance. 404 when none is configured,
        502 when it cannot be reached."""
        return require(models).models()

    body = {"application/json": {"schema": {}}, "text/csv": {"schema": {"type": "string"}}}

    @api.post("/predictions/{name:name}", openapi_extra={"requestBody": {"required": True, "content": body}})
    async def predict(name: str, request: Request) -> Response:
        """A prediction from the model server, its answer passed on as it
        is (a read token is enough). 413 for a body over PREDICTION_BYTES."""
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > PREDICTION_BYTES:
                raise HTTPException(413, f"a prediction request is limited to {PREDICTION_BYTES >> 20} MiB here")
            chunks.append(chunk)
        body = b"".join(chunks)
        status, content, headers = await run_in_threadpool(
            require(models).predict, name, body, request.headers.get("content-type", "application/json"))
        return Response(content, status_code=status, headers=headers)


def _routes(api: APIRouter, client: Client) -> None:
    """Add one route per operation of ``client`` to ``api``."""

    # repos ------------------------------------------------------------------
    @api.get("/repos", tags=["repos"])
    def list_repos() -> list[dict]:
        """Every repo, newest first, with its master head's size."""
        return [r.to_dict() for r in client.list_repos()]

    @api.post("/repos", status_code=201, tags=["repos"])
    def create_repo(name: str = Body(..., embed=True), description: str = Body("", embed=True)) -> dict:
        """Create a repo (with a master branch)."""
        return client.create_repo(name, description).to_dict()

    @api.get("/repos/{repo:name}", tags=["repos"])
    def inspect_repo(repo: str) -> dict:
        return client.inspect_repo(repo).to_dict()

    @api.delete("/repos/{repo:name}", status_code=204, tags=["repos"])
    def delete_repo(repo: str, force: bool = False) -> None:
        """Delete a repo and its history (refused while a pipeline reads it, unless ``force``)."""
        client.delete_repo(repo, force)

    # branches ---------------------------------------------------------------
    @api.get("/repos/{repo:name}/branches", tags=["branches"])
    def list_branches(repo: str) -> list[dict]:
        return [b.to_dict() for b in client.list_branches(repo)]

    @api.put("/repos/{repo:name}/branches/{branch}", tags=["branches"])
    def create_branch(repo: str, branch: str, head: str | None = Body(None, embed=True),
                      trigger: dict | None = Body(None, embed=True)) -> dict:
        """Create a branch, or move it to ``head`` (a commit or branch), with an optional trigger."""
        return client.create_branch(repo, branch, head, trigger).to_dict()

    @api.delete("/repos/{repo:name}/branches/{branch}", status_code=204, tags=["branches"])
    def delete_branch(repo: str, branch: str) -> None:
        client.delete_branch(repo, branch)

    # commits ----------------------------------------------------------------
    @api.get("/repos/{repo:name}/commits", tags=["commits"])
    def list_commits(repo: str, branch: str | None = None, limit: int | None = Query(None, ge=1)) -> list[dict]:
        """The commits of a repo (or of one branch), newest first."""
        return [c.to_dict() for c in client.list_commits(repo, branch, limit)]

    @api.post("/repos/{repo:name}/commits", status_code=201, tags=["commits"])
    def start_commit(repo: str, branch: str = Body(..., embed=True), description: str = Body("", embed=True),
                     parent: str | None = Body(None, embed=True)) -> dict:
        """Start a commit on a branch (files then go into it until it is finished)."""
        return client.start_commit(repo, branch, description, parent).to_dict()

    @api.get("/repos/{repo:name}/commits/{ref}", tags=["commits"])
    def inspect_commit(repo: str, ref: str) -> dict:
        return client.inspect_commit(repo, ref).to_dict()

    @api.post("/repos/{repo:name}/commits/{ref}/finish", tags=["commits"])
    def finish_commit(repo: str, ref: str, description: str | None = Body(None, embed=True)) -> dict:
        return client.finish_commit(repo, ref, description).to_dict()

    @api.delete("/repos/{repo:name}/commits/{ref}", status_code=204, tags=["commits"])
    def delete_commit(repo: str, ref: str) -> None:
        """Delete a branch's head commit (the branch moves back to its parent)."""
        client.delete_commit(repo, ref)

    @api.post("/repos/{repo:name}/commits/{ref}/flush", tags=["commits"])
    def flush_commit(repo: str, ref: str, timeout: float | None = Query(None, gt=0)) -> list[dict]:
        """Wait for every output commit downstream of this commit; return them."""
        return [c.to_dict() for c in client.flush_commit(repo, ref, timeout)]

    # files ------------------------------------------------------------------
    @api.get("/repos/{repo:name}/commits/{ref}/files", tags=["files"])
    def list_files(repo: str, ref: str, path: str = "/", glob: str | None = None) -> list[dict]:
        """The direct children of ``path``, or the paths matching ``glob``."""
        nodes = client.glob_files(repo, ref, glob) if glob else client.list_files(repo, ref, path)
        return [n.to_dict() for n in nodes]

    @api.get("/repos/{repo:name}/commits/{ref}/files/{path:file}", tags=["files"],
             responses={200: {"content": {"application/octet-stream": {}}}})
    def get_file(repo: str, ref: str, path: str, inspect: bool = False) -> Any:
        """The file's bytes, streamed; with ``inspect``, its type, size and hash."""
        if inspect:
            return client.inspect_file(repo, ref, "/" + path).to_dict()
        entry = client.file_entry(repo, ref, "/" + path)  # get-file's errors, before the body starts
        return StreamingResponse(_stream(client, repo, ref, "/" + path), media_type="application/octet-stream",
                                 headers={"Content-Length": str(entry.size), "ETag": f'"{entry.hash}"'})

    @api.post("/repos/{repo:name}/commits/{ref}/files", tags=["files"],
              openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                  "type": "object", "minProperties": 1,
                  "additionalProperties": {"type": "string", "format": "binary"},
                  "description": "One part per file: its name the file's path in the commit (percent-encoded), "
                                 "its body the file's bytes."}}}}})
    async def put_files(repo: str, ref: str, request: Request, overwrite: bool = False) -> dict:
        """Put every file of the multipart/form-data body (one part per
        file, named by its path) into a branch, in one new commit, or into
        an open commit; existing files are appended to unless ``overwrite``.
        The bytes are stored as they arrive; the files land only once the
        whole body did, so an upload cut short changes nothing. Returns the commit."""
        commit, _ = await receive_files(
            request.headers.get("content-type", ""), request.stream(),
            lambda parts: client.put_streams(repo, ref, parts, overwrite))
        return commit.to_dict()

    @api.delete("/repos/{repo:name}/commits/{ref}/files/{path:file}", tags=["files"])
    def delete_file(repo: str, ref: str, path: str) -> dict:
        """Delete a file or directory (in a new commit on a branch, or in an open commit)."""
        return client.delete_file(repo, ref, "/" + path).to_dict()

    @api.get("/repos/{repo:name}/commits/{ref}/diff", tags=["files"])
    def diff_files(repo: str, ref: str, path: str = "/", old_repo: str | None = None,
                   old_ref: str | None = None) -> dict:
        """Files added and removed since ``old_repo@old_ref`` (default: the parent commit)."""
        added, removed = client.diff_files(repo, ref, path, old_repo, old_ref)
        return {"added": [n.to_dict() for n in added], "removed": [n.to_dict() for n in removed]}

    # pipelines --------------------------------------------------------------
    @api.get("/pipelines", tags=["pipelines"])
    def list_pipelines() -> list[dict]:
        return [p.to_dict() for p in client.list_pipelines()]

    @api.post("/pipelines", status_code=201, tags=["pipelines"])
    def create_pipeline(spec: dict = Body(..., description="A pipeline spec in Pachyderm's format"),
                        source: str = "spec") -> dict:
        """Create a pipeline (``source`` names the spec in error messages)."""
        return client.create_pipeline(spec, source).to_dict()

    @api.post("/pipelines/plan", tags=["pipelines"])
    def plan_datums(spec: dict = Body(...), source: str = "spec") -> list[dict]:
        """The datums the spec would make over its inputs' heads now; creates nothing."""
        return client.plan_datums(spec, source)

    @api.put("/pipelines/{name:name}", tags=["pipelines"])
    def update_pipeline(name: str, spec: dict = Body(...), reprocess: bool = False, source: str = "spec") -> dict:
        """Replace the pipeline's spec with a new version (its name must match)."""
        if (spec.get("pipeline") or {}).get("name") != name:
            raise InvalidArgument(f"{source}: pipeline.name must be {name!r} (the pipeline updated)")
        return client.update_pipeline(spec, reprocess, source).to_dict()

    @api.get("/pipelines/{name:name}", tags=["pipelines"])
    def inspect_pipeline(name: str) -> dict:
        return client.inspect_pipeline(name).to_dict()

    @api.delete("/pipelines/{name:name}", status_code=204, tags=["pipelines"])
    def delete_pipeline(name: str, keep_repo: bool = False) -> None:
        client.delete_pipeline(name, keep_repo)

    @api.post("/pipelines/{name:name}/stop", tags=["pipelines"])
    def stop_pipeline(name: str) -> dict:
        return client.stop_pipeline(name).to_dict()

    @api.post("/pipelines/{name:name}/start", tags=["pipelines"])
    def start_pipeline(name: str) -> dict:
        return client.start_pipeline(name).to_dict()

    @api.post("/pipelines/{name:name}/cron", tags=["pipelines"])
    def run_cron(name: str) -> dict:
        """Commit a tick to each cron input of the pipeline now."""
        return {"ticked": client.run_cron(name)}

    @api.post("/pipelines/{name:name}/run", status_code=201, tags=["pipelines"])
    def run_pipeline(name: str, commits: list[CommitRef] = Body([], embed=True),
                     reprocess: bool = Body(False, embed=True)) -> dict:
        """Start a new job over the newest job's inputs (``commits`` in
        their place): the datums that failed run again, or all of them with
        ``reprocess``. Pachyderm's ``run pipeline``."""
        return client.run_pipeline(name, [(c.repo, c.commit) for c in commits], reprocess).to_dict()

    # jobs, datums, logs -----------------------------------------------------
    @api.get("/jobs", tags=["jobs"])
    def list_jobs(pipeline: str | None = None) -> list[dict]:
        """Jobs, newest first (of one pipeline if given)."""
        return [j.to_dict() for j in client.list_jobs(pipeline)]

    @api.get("/jobs/{job}", tags=["jobs"])
    def inspect_job(job: str) -> dict:
        return client.inspect_job(job).to_dict()

    @api.post("/jobs/{job}/stop", tags=["jobs"])
    def stop_job(job: str) -> dict:
        return client.stop_job(job).to_dict()

    @api.get("/jobs/{job}/datums", tags=["jobs"])
    def list_datums(job: str) -> list[dict]:
        """Every datum of the job: id, files, state, seconds, attempts, worker."""
        return client.list_datums(job)

    @api.get("/jobs/{job}/datums/{datum}", tags=["jobs"])
    def inspect_datum(job: str, datum: str) -> dict:
        return client.inspect_datum(job, datum).to_dict()

    @api.get("/logs", tags=["jobs"])
    def datum_logs(pipeline: str | None = None, job: str | None = None, datum: str | None = None) -> list[dict]:
        """The datum results, with the tail of the user code's log, of ``job``
        or of ``pipeline``'s newest job (only datums whose id starts with ``datum``)."""
        return [r.to_dict() for r in client.datum_logs(pipeline, job, datum)]

    @api.get("/logs/workers", tags=["jobs"])
    def worker_logs(pipeline: str | None = None, job: str | None = None) -> dict[str, str]:
        """Worker name -> the log kept of each worker of the job (Kubernetes pods)."""
        return client.worker_logs(pipeline, job)

    # watch streams ----------------------------------------------------------
    @api.get("/watch/commits", tags=["watch"], responses={200: {"content": {"text/event-stream": {}}}})
    def watch_commits(repo: str, branch: str | None = None, all: bool = False) -> StreamingResponse:
        """Server-sent events: ``event: commit`` with each commit of ``repo``
        finished from now on (``all``: the existing ones first), oldest first."""
        client.inspect_repo(repo)
        since, heads = now(), {}
        existing = [c.to_dict() for c in reversed(client.list_commits(repo, branch)) if c.finished] if all else []

        def snapshot() -> list[dict]:  # reads the branches, and only the commits new since the last look
            return existing + [c.to_dict() for c in client.pfs.finished_since(repo, since, heads, branch)]
        return _events(snapshot, "commit", key=lambda c: c["id"], skip_existing=False)

    @api.get("/watch/jobs", tags=["watch"], responses={200: {"content": {"text/event-stream": {}}}})
    def watch_jobs(pipeline: str | None = None) -> StreamingResponse:
        """Server-sent events: ``event: job`` each time a job appears or changes state."""
        if pipeline:
            client.inspect_pipeline(pipeline)
        finished: dict = {}  # this stream's finished records, each read once

        def snapshot() -> list[dict]:
            jobs = sorted(client.pps.current_jobs(finished, pipeline), key=lambda j: j.created)
            return [j.to_dict() for j in jobs]
        return _events(snapshot, "job", key=lambda j: (j["id"], j["state"]), skip_existing=True)


def _stream(client: Client, repo: str, ref: str, path: str) -> Iterator[bytes]:
    """A file's bytes in chunks, as ``get_file`` writes them (see
    :func:`pipectl.streams.reader`); a client gone early stops the read."""
    with streams.reader(lambda out: client.get_file(repo, ref, path, out)) as f:
        try:
            while chunk := f.read(CHUNK):
                yield chunk
        except (PipectlError, OSError):
            return  # the body ends short of Content-Length: the client sees a truncated transfer


def _events(snapshot, event: str, key, skip_existing: bool) -> StreamingResponse:
    """A server-sent event stream of the new items of ``snapshot()`` (a
    list, oldest first), by ``key``, polled every WATCH_INTERVAL seconds;
    a comment every 15 s keeps proxies from closing it."""
    async def generate() -> AsyncIterator[str]:  # async: cancelled at once when the client goes
        seen = {key(item) for item in await run_in_threadpool(snapshot)} if skip_existing else set()
        last = time.monotonic()
        yield ": watching\n\n"
        while True:
            with contextlib.suppress(PipectlError):
                for item in await run_in_threadpool(snapshot):
                    if key(item) not in seen:
                        seen.add(key(item))
                        last = time.monotonic()
                        yield f"event: {event}\ndata: {json.dumps(item)}\n\n"
            if time.monotonic() - last > 15:
                last = time.monotonic()
                yield ": keep-alive\n\n"
            await asyncio.sleep(WATCH_INTERVAL)

    return StreamingResponse(generate(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
