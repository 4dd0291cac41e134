"""Run the model server: ``pipectl serve`` calls :func:`serve`."""

from __future__ import annotations

import logging
import socket
import sys

from ..errors import InvalidArgument
from ..pfs import PFS
from ..pfs.names import check_name
from ..store import ObjectStore
from .handler import load_handler
from .model import ModelSlot
from .predlog import PredictionLog

log = logging.getLogger("pipectl.serving")

SWITCH_INTERVAL = 0.0005
"""Seconds a thread holds the GIL before another may take it (Python's
default: 0.005); see :func:`serve`."""


def serve(store: ObjectStore, repo: str, branch: str, model: str, handler: str, host: str, port: int,
          poll_interval: float = 1.0, access_log: bool = False, max_rows: int | None = None,
          log_repo: str | None = None, log_interval: float = 10.0) -> None:
    """Serve the head commit of ``repo@branch`` as model ``model`` on
    ``host:port`` until SIGINT/SIGTERM, reloading when the branch moves
    (checked every ``poll_interval`` seconds); with ``log_repo``, each
    answered prediction is committed to that repo (every ``log_interval``
    seconds, see :mod:`.predlog`).

    Imports the ``handler`` file first, so a bad handler (or a missing
    numpy/MXNet) fails here, before the port is opened. Raises
    InvalidArgument for a bad name, handler or interval, or when Starlette
    or uvicorn is not installed.
    """
    for kind, name in (("repo", repo), ("branch", branch), ("model", model), ("repo", log_repo)):
        if name is not None:
            check_name(kind, name)
    for option, value in (("--poll-interval", poll_interval), ("--log-interval", log_interval)):
        if not value > 0:
            raise InvalidArgument(f"{option} must be > 0 seconds, got {value}")
    try:
        import uvicorn

        from .app import create_app
    except ImportError as e:
        raise InvalidArgument(f"pipectl serve needs Starlette and uvicorn ({e}): "
                              "pip install -r serving/requirements.txt") from None
    sock = listen(host, port)
    load = load_handler(handler)
    pfs = PFS(store)
    slot = ModelSlot(pfs, repo, branch, model, load)
    plog = PredictionLog(pfs, log_repo, interval=log_interval) if log_repo else None
    app = create_app(slot, poll_interval, **({"max_rows": max_rows} if max_rows else {}), prediction_log=plog)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("serving model %s from %s@%s on http://%s:%d (handler %s, polling every %g s)",
             model, repo, branch, host, port, handler, poll_interval)
    # Forward passes, parsing and rendering of large requests run in threads;
    # the event loop (health checks) then waits for the GIL at most this long
    # at each step instead of the default 5 ms, which under load added up to
    # 100 ms and more per /ping (measured in the serving bench).
    sys.setswitchinterval(SWITCH_INTERVAL)
    config = uvicorn.Config(app, access_log=access_log, log_level="info", lifespan="on",
                            timeout_graceful_shutdown=10)
    uvicorn.Server(config).run(sockets=[sock])


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
