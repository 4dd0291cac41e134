"""The served models and what every protocol does with them.

:class:`Runtime` is shared by the HTTP application (:mod:`.app`) and the
gRPC service (:mod:`.grpc_v2`): it finds a model by name and a version by
id, checks the row limit, runs predictions through each model's
:class:`~.batching.Batcher`, logs them (``--log-repo``) and says whether
the server is ready.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool

from .batching import MAX_BATCH_DELAY, MAX_BATCH_SIZE, Batcher
from .errors import ModelNotFound, TooLarge
from .metrics import Metrics
from .model import ModelSlot, ModelVersion, Prediction
from .predlog import PredictionLog

MAX_ROWS = 10_000
"""Rows one request may hold (``pipectl serve --max-rows``): more get a 413
naming the limit, before the body is parsed where that can be told."""


class Runtime:
    """The models one server serves (``slots``, names unique), their
    batchers and metrics. ``max_rows``: rows per request; ``max_batch_size``
    and ``max_batch_delay`` (s): see :mod:`.batching`; with
    ``unready_while_loading`` the server reports not ready while any model
    loads a new version (the previous one still answers)."""

    def __init__(self, slots: Sequence[ModelSlot], metrics: Metrics, *, max_rows: int = MAX_ROWS,
                 max_batch_size: int = MAX_BATCH_SIZE, max_batch_delay: float = MAX_BATCH_DELAY,
                 prediction_log: PredictionLog | None = None, unready_while_loading: bool = False):
        self.slots = {slot.name: slot for slot in slots}
        self.metrics = metrics
        self.max_rows = max_rows
        self.max_batch_size, self.max_batch_delay = max_batch_size, max_batch_delay
        self.prediction_log = prediction_log
        self.unready_while_loading = unready_while_loading
        self._batchers: dict[str, Batcher] = {}  # made on the event loop, at first use

    def slot(self, name: str) -> ModelSlot:
        """The model named ``name``; raises ModelNotFound (404) naming those served."""
        slot = self.slots.get(name)
        if slot is None:
            raise ModelNotFound(f"model {name} not found: this server serves {', '.join(sorted(self.slots))}")
        return slot

    async def version(self, name: str, version: str | None = None) -> ModelVersion:
        """Model ``name`` at ``version`` (a model commit id, loaded on first
        use), else its branch head's. Raises ModelNotFound (404: no such
        model or version), ModelUnavailable (503: nothing loaded)."""
        slot = self.slot(name)
        return slot.require() if not version else await run_in_threadpool(slot.pinned, version)

    def check_rows(self, count: int) -> None:
        """Raises TooLarge (413) for more than ``max_rows`` rows."""
        if count > self.max_rows:
            raise TooLarge(f"too many rows: at most {self.max_rows} per request (pipectl serve --max-rows)")

    async def predict(self, name: str, version: ModelVersion, rows: list[list[float]]) -> Prediction:
        """``rows`` (n lists of floats) run by ``version`` of model ``name``,
        batched with concurrent requests, and logged. Raises BadRequest when
        the model rejects them."""
        batcher = self._batchers.get(name)
        if batcher is None:
            rows_histogram = self.metrics.rows.labels(name)
            batcher = self._batchers[name] = Batcher(self.max_batch_size, self.max_batch_delay,
                                                     rows_histogram.observe)
        result = await batcher.predict(version, rows)
        if self.prediction_log is not None:
            self.prediction_log.record(name, version.id, rows, result.labels, result.probabilities)
        return result

    def unready(self) -> str | None:
        """Why the server is not ready (None when it is): a model with no
        version loaded, or, with ``unready_while_loading``, one loading a
        new version."""
        for slot in self.slots.values():
            if slot.current is None:
                return f"model {slot.name}: {slot.reason}"
            if self.unready_while_loading and slot.loading is not None:
                return f"model {slot.name}: loading version {slot.loading}"
        return None

    async def close(self) -> None:
        """End the batching tasks."""
        for batcher in self._batchers.values():
            await batcher.close()
