"""Prometheus metrics of the model server, served at ``GET /metrics`` in the
text exposition format (prometheus_client, the Prometheus project's own
Python client)::

    pipectl_serving_requests_total{model, version, status}     prediction requests answered
    pipectl_serving_request_seconds{model, version, status}    their latency (histogram), s
    pipectl_serving_batch_rows{model}                          rows per forward pass (histogram)
    pipectl_serving_model_load_seconds{model, version}         download + load time of each version held

Prediction requests are ``POST /predictions/<model>[/<version>]``,
``POST /v2/models/<model>[/versions/<version>]/infer`` and the gRPC
``ModelInfer`` (its ``status`` is the HTTP status of the same outcome);
``version`` is the model commit that answered (``X-Model-Version``;
``none`` when none did, e.g. a 503 before any model loaded).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .model import ModelSlot

PREDICTION = re.compile(r"^/(?:predictions/([^/]+)(?:/[^/]+)?|v2/models/([^/]+)(?:/versions/[^/]+)?/infer)$")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384, 65536)


class Metrics:
    """The server's metrics (a registry of its own) and the middleware that
    counts and times prediction requests."""

    def __init__(self, slots: Sequence[ModelSlot]):
        self.slots = slots
        self.registry = CollectorRegistry()
        labels = ["model", "version", "status"]
        self.requests = Counter("pipectl_serving_requests", "Prediction requests answered, by model, model "
                                "version and HTTP status.", labels, registry=self.registry)
        self.latency = Histogram("pipectl_serving_request_seconds", "Latency of prediction requests, s.", labels,
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.rows = Histogram("pipectl_serving_batch_rows", "Rows per forward pass.", ["model"],
                              buckets=ROW_BUCKETS, registry=self.registry)
        self.load = Gauge("pipectl_serving_model_load_seconds", "Download and load time of each model version "
                          "held, s.", ["model", "version"], registry=self.registry)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """``app`` with its prediction requests counted and timed."""
        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            match = PREDICTION.match(scope.get("path", "")) if scope["type"] == "http" else None
            if match is None:
                return await app(scope, receive, send)
            started, seen = time.perf_counter(), {"status": "500", "version": "none"}

            async def watch(message: Message) -> None:
                if message["type"] == "http.response.start":
                    seen["status"] = str(message["status"])
                    for key, value in message.get("headers", ()):
                        if key.lower() == b"x-model-version":
                            seen["version"] = value.decode("latin-1")
                await send(message)
            try:
                await app(scope, receive, watch)
            finally:
                self.count(match.group(1) or match.group(2), seen["version"], seen["status"],
                           time.perf_counter() - started)
        return counted

    def count(self, model: str, version: str, status: str, seconds: float) -> None:
        """Count one prediction request and its latency (``seconds``)."""
        self.requests.labels(model, version, status).inc()
        self.latency.labels(model, version, status).observe(seconds)

    async def endpoint(self, request: Request) -> Response:
        """``GET /metrics``."""
        self.load.clear()  # the versions held now, not every one ever held
        for slot in self.slots:
            for version in slot.held():
                self.load.labels(slot.name, version.id).set(version.load_seconds)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
