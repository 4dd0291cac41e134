"""Run the model server: ``pipectl serve`` calls :func:`serve`."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import sys
from collections.abc import Sequence

from ..errors import InvalidArgument
from ..pfs import PFS
from ..pfs.names import check_name
from ..store import ObjectStore
from .batching import MAX_BATCH_DELAY, MAX_BATCH_SIZE
from .handler import load_handler
from .model import ModelSlot
from .predlog import PredictionLog

log = logging.getLogger("pipectl.serving")

SWITCH_INTERVAL = 0.0005
"""Seconds a thread holds the GIL before another may take it (Python's
default: 0.005); see :func:`serve`."""
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""The largest gRPC message taken or sent (the HTTP body limit's size)."""


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """A model to serve: ``name`` in URLs, the head of ``repo@branch``."""

    name: str
    repo: str
    branch: str = "master"

    @classmethod
    def parse(cls, text: str) -> ModelSource:
        """``name=repo@branch`` (``@branch`` optional: master; ``repo`` may
        be qualified, ``project/repo``). Raises InvalidArgument."""
        name, sep, source = text.partition("=")
        repo, _, branch = source.partition("@")
        if not sep or not name or not repo:
            raise InvalidArgument(f"--model {text!r}: expected NAME=REPO[@BRANCH], e.g. iris=train@master")
        return cls(name, repo, branch or "master")


def serve(store: ObjectStore, models: Sequence[ModelSource], handler: str, host: str, port: int, *,
          grpc_port: int | None = None, poll_interval: float = 1.0, access_log: bool = False,
          max_rows: int | None = None, max_batch_size: int = MAX_BATCH_SIZE,
          max_batch_delay: float = MAX_BATCH_DELAY, unready_while_loading: bool = False,
          log_repo: str | None = None, log_interval: float = 10.0) -> None:
    """Serve each of ``models`` (the head commit of its repo@branch, loaded
    by the ``handler`` file) over HTTP on ``host:port``, and over KServe v2
    gRPC on ``grpc_port`` when given, until SIGINT/SIGTERM, reloading a
    model when its branch moves (checked every ``poll_interval`` seconds).
    Concurrent requests run as batches of up to ``max_batch_size`` rows,
    the first waiting at most ``max_batch_delay`` seconds (see
    :mod:`.batching`). With ``log_repo``, each answered prediction is
    committed to that repo (every ``log_interval`` seconds, see
    :mod:`.predlog`).

    Imports the ``handler`` file first, so a bad handler (or a missing
    numpy/MXNet) fails here, before the ports are opened. Raises
    InvalidArgument for a bad or repeated name, handler, interval or
    batch setting, a port in use, or when Starlette, uvicorn or grpcio is
    not installed.
    """
    _check(models, log_repo, poll_interval, log_interval, max_batch_size, max_batch_delay)
    try:
        import uvicorn

        from .app import create_app
        from .metrics import Metrics
        from .runtime import MAX_ROWS, Runtime
    except ImportError as e:
        raise InvalidArgument(f"pipectl serve needs Starlette and uvicorn ({e}): "
                              "pip install -r serving/requirements.txt") from None
    sock = listen(host, port)
    load = load_handler(handler)
    pfs = PFS(store)
    slots = [ModelSlot(pfs, m.repo, m.branch, m.name, load) for m in models]
    metrics = Metrics(slots)
    runtime = Runtime(slots, metrics, max_rows=max_rows or MAX_ROWS, max_batch_size=max_batch_size,
                      max_batch_delay=max_batch_delay, unready_while_loading=unready_while_loading,
                      prediction_log=PredictionLog(pfs, log_repo, interval=log_interval) if log_repo else None)
    app = create_app(runtime, poll_interval)
    if grpc_port:
        _grpc_importable()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for m in models:
        log.info("serving model %s from %s@%s", m.name, m.repo, m.branch)
    log.info("listening on http://%s:%d%s (handler %s, polling every %g s, batches of up to %d rows)", host, port,
             f" and gRPC {host}:{grpc_port}" if grpc_port else "", handler, poll_interval, max_batch_size)
    # Parsing and rendering of large requests and the forward passes run in
    # threads; the event loop (health checks) then waits for the GIL at most
    # this long at each step instead of the default 5 ms, which under load
    # added up to 100 ms and more per /ping (measured in the serving bench).
    sys.setswitchinterval(SWITCH_INTERVAL)
    config = uvicorn.Config(app, access_log=access_log, log_level="info", lifespan="on",
                            timeout_graceful_shutdown=10)
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:  # uvloop when installed, as uvicorn
        runner.run(_run(uvicorn.Server(config), sock, runtime, host, grpc_port))


async def _run(http, sock: socket.socket, runtime, host: str, grpc_port: int | None) -> None:
    """Run the HTTP server, and the gRPC one on ``grpc_port`` (on this
    event loop, which the batchers share), until the HTTP one stops."""
    grpc_server = None
    if grpc_port:
        from .grpc_v2 import create_server
        try:
            grpc_server = create_server(runtime, host, grpc_port, MAX_MESSAGE_BYTES)
        except RuntimeError as e:
            raise InvalidArgument(f"cannot listen on {host}:{grpc_port} (--grpc-port): {e}") from None
        await grpc_server.start()
    try:
        await http.serve(sockets=[sock])
    finally:
        if grpc_server is not None:
            await grpc_server.stop(grace=5)


def _grpc_importable() -> None:
    """Raises InvalidArgument when grpcio or protobuf is missing."""
    try:
        from . import grpc_v2  # noqa: F401
    except ImportError as e:
        raise InvalidArgument(f"--grpc-port needs grpcio and protobuf ({e}): "
                              "pip install -r serving/requirements.txt") from None


def _check(models: Sequence[ModelSource], log_repo: str | None, poll_interval: float, log_interval: float,
           max_batch_size: int, max_batch_delay: float) -> None:
    """Raise InvalidArgument for a bad name or setting."""
    if not models:
        raise InvalidArgument("no model to serve: give --repo, or --model NAME=REPO[@BRANCH]")
    for m in models:
        check_name("model", m.name)
        check_name("repo", m.repo)
        check_name("branch", m.branch)
    repeated = sorted({m.name for m in models if sum(o.name == m.name for o in models) > 1})
    if repeated:
        raise InvalidArgument(f"model {repeated[0]} is given twice: each --model needs its own name")
    if log_repo is not None:
        check_name("repo", log_repo)
    for option, value in (("--poll-interval", poll_interval), ("--log-interval", log_interval)):
        if not value > 0:
            raise InvalidArgument(f"{option} must be > 0 seconds, got {value}")
    if max_batch_size < 1 or max_batch_delay < 0:
        raise InvalidArgument("--max-batch-size must be >= 1 and --max-batch-delay >= 0")


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (uvicorn listens on it). Raises
    InvalidArgument when the address cannot be used (e.g. already in use)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        raise InvalidArgument(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock
