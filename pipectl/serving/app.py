"""The HTTP application (Starlette, ASGI): routes, errors, the poll task.

See the package doc for the routes. Errors are JSON: TorchServe's
``{"code", "type", "message"}`` and, under ``/v2``, KServe's ``{"error"}``,
with statuses 400 (malformed body, wrong feature count or names, bad
values), 404 (unknown model or route), 405, 413 (body over the limit), 415
(unsupported content type) and 503 (no model loaded yet: the message says
why).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import instances, v2
from .batching import INLINE_ROWS
from .errors import ServingError, UnsupportedMediaType
from .model import ModelSlot, ModelVersion, Prediction
from .predlog import PredictionLog
from .runtime import Runtime

log = logging.getLogger("pipectl.serving")

MAX_BODY_BYTES = 64 * 1024 * 1024
INLINE_BODY_BYTES = 64 * 1024
"""Bodies up to this size are parsed on the event loop; larger ones in a
thread, so that health checks answer while they are read."""

CSV_TYPES = {"text/csv", "application/csv"}
BINARY = "application/octet-stream"
JSON_TYPES = {"", "application/json", "text/json", "text/plain", "application/x-www-form-urlencoded"}


def create_app(runtime: Runtime, poll_interval: float = 1.0, max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """The application serving ``runtime``'s models. While it runs, a task
    per model calls ``slot.refresh()`` (in a worker thread) every
    ``poll_interval`` seconds, starting at once; requests over
    ``max_body_bytes`` or the runtime's row limit get 413. With the
    runtime's prediction log, another task commits the logged predictions
    (the last lines when the server stops)."""
    plog = runtime.prediction_log

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        tasks = [asyncio.create_task(_poll(slot, poll_interval)) for slot in runtime.slots.values()]
        if plog is not None:
            tasks.append(asyncio.create_task(_commit_log(plog)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await runtime.close()
            if plog is not None:
                await anyio.to_thread.run_sync(plog.flush)
            for slot in runtime.slots.values():
                await anyio.to_thread.run_sync(slot.close)

    endpoints = Endpoints(runtime)
    routes = [
        Route("/metrics", runtime.metrics.endpoint),
        Route("/ping", endpoints.ping),
        Route("/models", endpoints.list_models),
        Route("/models/{name}", endpoints.describe_model),
        Route("/predictions/{name}", endpoints.predictions, methods=["POST"]),
        Route("/predictions/{name}/{version}", endpoints.predictions, methods=["POST"]),
        Route("/v2", endpoints.v2_server),
        Route("/v2/health/live", endpoints.v2_live),
        Route("/v2/health/ready", endpoints.v2_ready),
        Route("/v2/models/{name}", endpoints.v2_model),
        Route("/v2/models/{name}/ready", endpoints.v2_model_ready),
        Route("/v2/models/{name}/infer", endpoints.v2_infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}", endpoints.v2_model),
        Route("/v2/models/{name}/versions/{version}/ready", endpoints.v2_model_ready),
        Route("/v2/models/{name}/versions/{version}/infer", endpoints.v2_infer, methods=["POST"]),
    ]
    handlers = {ServingError: _serving_error, HTTPException: _http_error, ClientDisconnect: _disconnected,
                Exception: _internal_error}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers, max_body_size=max_body_bytes)
    app.add_middleware(runtime.metrics.middleware)  # outermost: it sees every answer, errors included
    return app


async def _commit_log(plog: PredictionLog) -> None:
    """Commit the prediction log every ``plog.interval`` s, or sooner when a batch waits."""
    while True:
        waited = 0.0
        while waited < plog.interval and not plog.due():
            await asyncio.sleep(0.1)
            waited += 0.1
        try:
            await anyio.to_thread.run_sync(plog.flush)
        except Exception:  # a bug: log it, keep logging
            log.exception("prediction log: commit failed")


async def _poll(slot: ModelSlot, interval: float) -> None:
    while True:
        try:
            await anyio.to_thread.run_sync(slot.refresh)
        except Exception:  # a bug: log it, keep polling
            log.exception("model %s: refresh failed", slot.name)
        await asyncio.sleep(interval)


class Endpoints:
    """The route handlers, over a :class:`Runtime`."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    async def _off_loop(self, body: bytes, fn, *args):
        """``fn(*args)``: on the event loop for a small ``body``, else in a thread."""
        return fn(*args) if len(body) <= INLINE_BODY_BYTES else await run_in_threadpool(fn, *args)

    async def _body(self, request: Request, media: str, version: ModelVersion) -> bytes:
        """The request body, read chunk by chunk and refused (413) as soon as
        the bytes read show more rows than the limit: lines of CSV; for JSON,
        each row of n features holds n - 1 commas and is separated from the
        next by one (KServe v2's flat ``data`` likewise). So an oversized
        body costs the server only what it read up to the limit."""
        per_row = len(version.features) if version.features else 0
        if media == BINARY:  # the binary extension: counted once parsed (the body's size is capped)
            per_row = 0
        separator = b"\n" if media in CSV_TYPES else b","
        chunks, seen = [], 0
        async for chunk in request.stream():
            chunks.append(chunk)
            seen += chunk.count(separator)
            if separator == b"\n":
                self.runtime.check_rows(seen - 1)
            elif per_row:
                self.runtime.check_rows((seen + 1) // per_row)
        return b"".join(chunks)

    def _rows(self, body: bytes, media: str, version: ModelVersion) -> list[list[float]]:
        """The rows of a /predictions body (JSON or CSV), the row limit checked."""
        if media in CSV_TYPES:
            rows = instances.rows_from_csv(body, version.features)
        elif media in JSON_TYPES or media.endswith("+json"):
            rows = instances.rows_from_json(instances.parse_json(body), version.features)
        else:
            raise UnsupportedMediaType(f"content type {media} is not supported: "
                                       "send application/json or text/csv")
        self.runtime.check_rows(len(rows))
        return rows

    async def _version(self, request: Request) -> ModelVersion:
        """The version the URL asks for (see :meth:`Runtime.version`)."""
        return await self.runtime.version(request.path_params["name"], request.path_params.get("version"))

    async def _answer(self, name: str, version: ModelVersion, rows: list[list[float]],
                      answer: Callable[[Prediction], Response]) -> Response:
        """``answer`` for ``rows`` run by ``version``: built on the event loop
        for a few rows, else in a thread, so that building and rendering a
        large answer does not hold up other requests (health checks)."""
        result = await self.runtime.predict(name, version, rows)
        return answer(result) if len(rows) <= INLINE_ROWS else await run_in_threadpool(answer, result)

    # TorchServe / MMS ----------------------------------------------------
    async def ping(self, request: Request) -> JSONResponse:
        reason = self.runtime.unready()
        if reason is not None:
            return JSONResponse({"status": "Unhealthy", "message": reason}, 503)
        return JSONResponse({"status": "Healthy"})

    async def list_models(self, request: Request) -> JSONResponse:
        models = []
        for slot in self.runtime.slots.values():
            version = slot.current
            models.append({"modelName": slot.name, "modelUrl": slot.url,
                           "modelVersion": version.id if version else None})
        return JSONResponse({"models": models})

    async def describe_model(self, request: Request) -> JSONResponse:
        return JSONResponse([describe(self.runtime.slot(request.path_params["name"]))])

    async def predictions(self, request: Request) -> JSONResponse:
        name, version = request.path_params["name"], await self._version(request)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await self._body(request, media, version)
        rows = await self._off_loop(body, self._rows, body, media, version)

        def answer(result: Prediction) -> JSONResponse:
            out = {"model": name, "model_version": version.id, "predictions": result.labels}
            if result.probabilities is not None:
                out["probabilities"] = [dict(zip(version.classes or (), p)) for p in result.probabilities]
            return _versioned(out, version)
        return await self._answer(name, version, rows, answer)

    # KServe v2 -----------------------------------------------------------
    async def v2_server(self, request: Request) -> JSONResponse:
        return JSONResponse(v2.server_metadata())

    async def v2_live(self, request: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    async def v2_ready(self, request: Request) -> JSONResponse:
        reason = self.runtime.unready()
        return JSONResponse({"ready": True} if reason is None else {"ready": False, "error": reason},
                            200 if reason is None else 503)

    async def v2_model(self, request: Request) -> JSONResponse:
        version = await self._version(request)
        return _versioned(v2.metadata(request.path_params["name"], version), version)

    async def v2_model_ready(self, request: Request) -> JSONResponse:
        version = await self._version(request)
        return _versioned({"name": request.path_params["name"], "ready": True}, version)

    async def v2_infer(self, request: Request) -> Response:
        name, version = request.path_params["name"], await self._version(request)
        header_length = request.headers.get(v2.HEADER_LENGTH)
        body = await self._body(request, BINARY if header_length else "application/json", version)

        def parse() -> tuple[Any, list, Any]:
            head, binary = v2.split_body(body, header_length)
            payload = instances.parse_json(head)
            rows, outputs = v2.parse_request(payload, version.features, binary)
            self.runtime.check_rows(len(rows))
            return payload, rows, outputs
        payload, rows, outputs = await self._off_loop(body, parse)

        def answer(result: Prediction) -> Response:
            names = None if outputs is None else [output for output, _ in outputs]
            out = v2.response(name, version, result, payload.get("id"), names)
            data, length = v2.render(out, {output for output, binary in outputs or () if binary})
            headers = {"X-Model-Version": version.id} | ({v2.HEADER_LENGTH: str(length)} if length is not None
                                                          else {})
            return Response(data, media_type=BINARY if length is not None
                            else "application/json", headers=headers)
        return await self._answer(name, version, rows, answer)


def describe(slot: ModelSlot) -> dict[str, Any]:
    """The TorchServe-style description of a served model: name, version
    (the model commit id, None before one is loaded), source URL, status,
    and for a loaded version its features, classes, load time and
    provenance (see :meth:`ModelVersion.provenance`)."""
    version = slot.current
    out: dict[str, Any] = {"modelName": slot.name, "modelVersion": version.id if version else None,
                           "modelUrl": slot.url, "runtime": "python",
                           "status": "Ready" if version else "Unavailable"}
    if version is None:
        out["reason"] = slot.reason
    else:
        out.update(loadedAt=version.loaded_at, loadSeconds=round(version.load_seconds, 3),
                   features=version.features, classes=version.classes, provenance=version.provenance())
    if slot.loading is not None:
        out["loadingVersion"] = slot.loading
    out["pinnedVersions"] = slot.pinned_versions()
    if slot.last_error is not None:
        out["lastError"] = slot.last_error
    return out


def _versioned(body: Any, version: ModelVersion) -> JSONResponse:
    return JSONResponse(body, headers={"X-Model-Version": version.id})


def _error(request: Request, status: int, kind: str, message: str) -> JSONResponse:
    if request.url.path.startswith("/v2"):
        return JSONResponse({"error": message}, status)
    return JSONResponse({"code": status, "type": kind, "message": message}, status)


async def _serving_error(request: Request, exc: ServingError) -> JSONResponse:
    return _error(request, exc.status, exc.kind, exc.message)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    messages = {404: f"no such endpoint: {request.method} {request.url.path}",
                405: f"method {request.method} not allowed on {request.url.path}",
                413: "request body too large"}
    kind = {404: "NotFound", 405: "MethodNotAllowed", 413: "RequestEntityTooLarge"}.get(exc.status_code, "Error")
    return _error(request, exc.status_code, kind, messages.get(exc.status_code, str(exc.detail)))


async def _disconnected(request: Request, exc: ClientDisconnect) -> JSONResponse:
    log.info("client disconnected during %s %s; request dropped", request.method, request.url.path)
    return _error(request, 400, "ClientDisconnect", "client disconnected")


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(request, 500, "InternalServerError", f"internal error ({type(exc).__name__}: {exc})")
