"""The S3 gateway a worker offers its user code: Pachyderm's S3 sidecar,
for ``pfs.s3: true`` inputs and ``s3_out: true``.

While a job with either runs, each worker serves an S3 endpoint on a
loopback port (``S3_ENDPOINT`` in user code's environment; workers and
their user code share the network namespace under every executor) with
these buckets, as Pachyderm names them:

- one per ``pfs.s3`` input, named by the input's ``name``: the input
  commit of the job, read-only (the input is not copied into ``/pfs``);
- ``out`` with ``s3_out``: the running datum's output. An object put there
  is stored in the store as it arrives (content addressed, as put-file
  stores) and becomes a file of the datum's output at its key, with what
  user code wrote to ``/pfs/out``; it can be listed, read and deleted again
  until the datum ends. A datum that is tried again starts from an empty
  ``out``. Each request belongs to the try running when it arrived: a
  write it has not made when that try ends (user code killed by
  ``datum_timeout`` while the sidecar still stored its body) is refused,
  409 OperationAborted, and never reaches a later try's output.

The operations are the S3 gateway's own (:class:`~.routes.Gateway`, the
same code as ``pipectl server --s3-gateway-port``), over a client that
keeps bucket ``out`` in memory (:class:`OutputClient`). Requests must be
signed with the worker's own random token as access key id and secret key
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` in user code's
environment, so boto3, the AWS CLI and s3fs find them by themselves): the
loopback port is reachable by other processes of the host under the
process and Docker executors, which must neither read the job's inputs nor
write into its outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import secrets
import socket
import threading
from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...client import Client
from ...errors import Conflict, InvalidArgument, NotFound
from ...pfs import names
from ...pfs.model import Commit, now
from ...pfs.tree import FileEntry
from . import xml
from .app import create_s3_app
from .buckets import Bucket
from .errors import S3Error, no_such_bucket
from .routes import OWNER, Gateway

OUT = "out"
"""The output bucket's name (Pachyderm's)."""
OUT_REPO = "-out"
"""The repo name standing for the output bucket inside the sidecar (no real repo is named so)."""
OUT_COMMIT = "0" * 32

_request_try: contextvars.ContextVar[int | None] = contextvars.ContextVar("sidecar_request_try", default=None)
"""The try (:attr:`OutputClient.generation`) current when the running
request arrived; None outside a request."""


class _Branch:
    head = OUT_COMMIT


class _RecordingStore:
    """The store, as the sidecar's multipart uploads write their records
    into it: each key written is remembered, so that :meth:`forget`
    deletes the records of the uploads a datum left unfinished (a later
    datum or try must not complete them). ``owner``'s lock guards the
    keys remembered, and a request of an ended try writes no record."""

    def __init__(self, store: Any, owner: OutputClient):
        self._store = store
        self._owner = owner
        self._written: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def write(self, key: str, data: bytes, **options: Any) -> Any:
        """As the store's write. Raises Conflict for a request of an ended try."""
        with self._owner._lock:
            self._owner._check_try()
            self._written.add(key)
        return self._store.write(key, data, **options)

    def forget(self) -> None:
        """Delete every record written so far that is still there."""
        with self._owner._lock:
            written, self._written = self._written, set()
        for key in written:
            with contextlib.suppress(Exception):  # gone already (a completed or aborted upload)
                self._store.delete(key)


class OutputClient:
    """The operations layer as the sidecar's gateway sees it: ``client``,
    except that repo :data:`OUT_REPO` is the datum's output held in memory
    (``outputs``: path -> entry, the bytes already in the store) of the
    try numbered ``generation`` (one more each :meth:`take`). A write by a
    request that arrived in an earlier try (see :meth:`tag`) raises
    Conflict (the gateway's 409 OperationAborted)."""

    def __init__(self, client: Client):
        self._client = client
        self.outputs: dict[str, FileEntry] = {}
        self.generation = 0
        self._lock = threading.Lock()
        self.pfs = self  # the gateway asks client.pfs.inspect_branch
        self.store = _RecordingStore(client.store, self)  # multipart uploads' records: removed with the datum

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def take(self) -> dict[str, FileEntry]:
        """The outputs so far (path -> entry), which start again empty for
        the next try; multipart uploads not completed meanwhile are dropped
        (their records deleted). Requests still under way are not waited
        for (a client may hold one open for ever): whatever they have not
        written yet is refused to them."""
        with self._lock:
            outputs, self.outputs = self.outputs, {}
            self.generation += 1
        self.store.forget()
        return outputs

    def tag(self, app: Any) -> Any:
        """``app`` (ASGI) with each request tagged with the try current when it arrived."""
        async def tagged(scope: Any, receive: Any, send: Any) -> None:
            token = _request_try.set(self.generation)
            try:
                await app(scope, receive, send)
            finally:
                _request_try.reset(token)
        return tagged

    def _check_try(self) -> None:
        """Raises Conflict if the running request arrived in a try that
        has ended. Call it holding the lock, in the same hold as the write."""
        if _request_try.get() not in (None, self.generation):
            raise Conflict("the datum try this request was sent in has ended: its write is not kept")

    def inspect_branch(self, repo: str, branch: str):
        return _Branch() if repo == OUT_REPO else self._client.pfs.inspect_branch(repo, branch)

    def inspect_commit(self, repo: str, ref: str) -> Commit:
        if repo == OUT_REPO:
            return Commit(OUT_COMMIT, OUT_REPO, "master", None, "user", now())
        return self._client.inspect_commit(repo, ref)

    def file_entry(self, repo: str, ref: str, path: str) -> FileEntry:
        if repo != OUT_REPO:
            return self._client.file_entry(repo, ref, path)
        entry = self.outputs.get(names.clean_path(path))
        if entry is None:
            raise NotFound(f"file {path} not found")
        return entry

    def iter_files(self, repo: str, ref: str, path: str = "/") -> Iterator[tuple[str, FileEntry]]:
        if repo != OUT_REPO:
            return self._client.iter_files(repo, ref, path)
        directory = names.clean_path(path).rstrip("/") + "/"
        with self._lock:
            return iter([(p, e) for p, e in sorted(self.outputs.items()) if p.startswith(directory)])

    def put_entries(self, repo: str, ref: str, entries: list[tuple[str, FileEntry]],
                    overwrite: bool = False) -> Commit:
        if repo != OUT_REPO:
            raise InvalidArgument("the sidecar's input buckets are read-only")
        with self._lock:
            self._check_try()
            for path, entry in entries:
                self.outputs[names.clean_path(path)] = entry
        return self.inspect_commit(repo, ref)

    def delete_files(self, repo: str, ref: str, paths: list[str], files_only: bool = False) -> Commit:
        if repo != OUT_REPO:
            raise InvalidArgument("the sidecar's input buckets are read-only")
        with self._lock:
            self._check_try()
            for path in paths:
                self.outputs.pop(names.clean_path(path), None)
        return self.inspect_commit(repo, ref)


class SidecarGateway(Gateway):
    """The gateway over an :class:`OutputClient`, with the sidecar's buckets."""

    def __init__(self, client: OutputClient, inputs: dict[str, tuple[str, str]], out: bool):
        super().__init__(client)  # type: ignore[arg-type]  # the Client calls the gateway makes
        self.buckets = {name: Bucket(name, repo, "master", commit) for name, (repo, commit) in inputs.items()}
        if out:
            self.buckets[OUT] = Bucket(OUT, OUT_REPO, "master")

    def _object(self, bucket: Bucket, key: str, version: str | None):
        """As the gateway's, but an input bucket shows its job's commit
        only: another ``versionId`` is no version of it."""
        if version and version != bucket.commit:
            raise S3Error("NoSuchVersion", 404, f"The specified version does not exist: {version}")
        return super()._object(bucket, key, None)

    def resolve(self, name: str) -> Bucket:
        """The bucket named ``name``. Raises S3Error NoSuchBucket."""
        bucket = self.buckets.get(name)
        if bucket is None:
            raise no_such_bucket(name)
        return bucket

    async def list_buckets(self, request: Request) -> Response:
        found = [{"Name": name, "CreationDate": now()} for name in sorted(self.buckets)]
        return xml.response("ListAllMyBucketsResult", {"Owner": OWNER, "Buckets": {"Bucket": found}})

    async def create_bucket(self, request: Request, bucket: Bucket) -> Response:
        raise S3Error("BucketAlreadyOwnedByYou", 409, f"bucket {bucket.name} already exists")

    async def delete_bucket(self, request: Request, bucket: Bucket) -> Response:
        raise S3Error("AccessDenied", 403, "the sidecar's buckets cannot be deleted")


class Sidecar:
    """The sidecar of one worker: ``inputs`` (input name -> (repo, commit
    id)) and, with ``out``, the output bucket, served on a loopback port by
    uvicorn on a thread of its own. ``endpoint`` is its URL once
    :meth:`start` returned; :meth:`take_outputs` hands the running datum's
    objects in ``out`` over."""

    def __init__(self, client: Client, inputs: dict[str, tuple[str, str]], out: bool):
        self.client = OutputClient(client)
        self.gateway = SidecarGateway(self.client, inputs, out)
        self.token = secrets.token_hex(16)
        self.endpoint = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def app(self) -> Any:
        """The ASGI app: the S3 gateway's, over this sidecar's buckets and
        token, each request tagged with the datum try it arrived in."""
        return self.client.tag(create_s3_app(None, {self.token: "write"}, gateway=self.gateway))

    def start(self) -> None:
        """Listen on a free loopback port and serve until :meth:`stop`."""
        import uvicorn
        sock = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # not the main thread: the worker's handlers stay

        def serve() -> None:
            asyncio.run(self._server.serve(sockets=[sock]))
        self._thread = threading.Thread(target=serve, name="s3-sidecar", daemon=True)
        self._thread.start()

    def environment(self) -> dict[str, str]:
        """What user code's environment gets: ``S3_ENDPOINT`` (Pachyderm's
        name) and the credentials to sign with."""
        return {"S3_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": self.token, "AWS_SECRET_ACCESS_KEY": self.token,
                "AWS_DEFAULT_REGION": "us-east-1"}

    def take_outputs(self) -> dict[str, FileEntry]:
        """The objects put in ``out`` since the last call (path -> entry)."""
        return self.client.take()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
