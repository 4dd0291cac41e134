"""Dynamic batching: the rows of concurrent requests run as one forward pass.

Triton's dynamic batcher and TorchServe's batch aggregation, for one model:
requests queue their rows; one task per model takes the first waiting
request, adds every request already waiting (and, with a
``max_batch_delay``, those arriving within that many seconds) up to
``max_batch_size`` rows, runs the model once on all of their rows (in a
worker thread when they are many, see :data:`INLINE_ROWS`), and hands each
request its own slice of the answer.

With the default delay of 0 no request waits for company beyond one turn
of the event loop (:data:`YIELDS`): at low load each runs alone at once,
and under load the requests that arrive while a forward pass runs form the
next batch (Triton's default,
``max_queue_delay_microseconds: 0``). Requests for different model versions
never share a pass. A request with more rows than ``max_batch_size`` runs
alone (the server's ``--max-rows`` bounds it). When a batch of several
requests fails (a handler's ValueError, the 400 of one bad request), each
of its requests is run again alone, so only the bad one fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable

from .errors import ModelUnavailable, ServingError
from .model import ModelVersion, Prediction

MAX_BATCH_SIZE = 32
"""Rows per forward pass, at most (``pipectl serve --max-batch-size``)."""
MAX_BATCH_DELAY = 0.0
"""Seconds the first request of a batch waits for others (``--max-batch-delay``, given in ms)."""
YIELDS = 1
"""Turns of the event loop a batch waits for requests already read to
queue up (a request takes a few turns from its bytes to the queue)."""
STOPPING = "the model server is stopping"
INLINE_ROWS = 64
"""Passes of at most this many rows run on the event loop (a small forward
pass costs less than the hop to a worker thread, and requests arriving
meanwhile wait in their sockets to form the next batch); larger ones in a
thread, so that health checks answer while they run."""


@dataclasses.dataclass
class _Waiting:
    version: ModelVersion
    rows: list[list[float]]
    answer: asyncio.Future


class Batcher:
    """The forward passes of one model. ``observe(n)`` is called with the
    rows of each pass (the metrics' histogram). Create it on the event loop
    that calls :meth:`predict`; :meth:`close` ends its task."""

    def __init__(self, max_batch_size: int = MAX_BATCH_SIZE, max_batch_delay: float = MAX_BATCH_DELAY,
                 observe: Callable[[int], None] = lambda n: None):
        if max_batch_size < 1 or max_batch_delay < 0:
            raise ValueError("max_batch_size must be >= 1 and max_batch_delay >= 0")
        self.max_batch_size, self.max_batch_delay = max_batch_size, max_batch_delay
        self._observe = observe
        self._queue: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._carried: _Waiting | None = None  # taken from the queue but kept for the next batch
        self._batch: list[_Waiting] = []  # the batch being collected or run
        self._task: asyncio.Task | None = None
        self._closed = False

    async def predict(self, version: ModelVersion, rows: list[list[float]]) -> Prediction:
        """``version.predict(rows)``, run in a batch with other requests'
        rows. Raises what the model's pass raised for these rows alone
        (BadRequest for a ValueError; ServingError 500 for a model that
        answered another number of rows), ModelUnavailable once closed."""
        if self._closed:
            raise ModelUnavailable(STOPPING)
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        waiting = _Waiting(version, rows, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(waiting)
        return await waiting.answer

    async def close(self) -> None:
        """Stop the batching task; every request not answered yet (queued,
        or in the batch under way) gets ModelUnavailable, and so do later ones."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        left = self._batch + ([self._carried] if self._carried else [])
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        for w in left:
            _settle(w.answer, error=ModelUnavailable(STOPPING))

    async def _run(self) -> None:
        while True:
            await self._collect()
            await self._pass(self._batch)
            self._batch = []

    async def _collect(self) -> None:
        """The next batch (into ``_batch``): the first waiting request and those that may join it."""
        first = self._carried or await self._queue.get()
        self._carried = None
        self._batch = batch = [first]
        rows = len(first.rows)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_batch_delay
        yields = 0
        while rows < self.max_batch_size:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                if yields < YIELDS:  # requests read in the same turn of the loop queue up first
                    yields += 1
                    await asyncio.sleep(0)
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
            if item.version is not first.version or rows + len(item.rows) > self.max_batch_size:
                self._carried = item
                break
            batch.append(item)
            rows += len(item.rows)

    async def _pass(self, batch: list[_Waiting]) -> None:
        """One forward pass over the batch's rows; each request gets its
        slice, or, when the pass fails, its own pass's answer or error."""
        version = batch[0].version
        rows = [r for w in batch for r in w.rows]
        self._observe(len(rows))
        try:
            result = (version.predict(rows) if len(rows) <= INLINE_ROWS
                      else await asyncio.to_thread(version.predict, rows))
            answered = len(result.labels), None if result.probabilities is None else len(result.probabilities)
            if answered[0] != len(rows) or answered[1] not in (None, len(rows)):
                raise ServingError(f"model error: {answered[0]} predictions for {len(rows)} rows")
        except Exception as e:  # noqa: BLE001  (given to the request(s) it belongs to)
            if len(batch) == 1:
                _settle(batch[0].answer, error=e)
            else:
                for w in batch:
                    await self._pass([w])
            return
        at = 0
        for w in batch:
            n = len(w.rows)
            probabilities = None if result.probabilities is None else result.probabilities[at:at + n]
            _settle(w.answer, Prediction(result.labels[at:at + n], probabilities))
            at += n


def _settle(answer: asyncio.Future, result: Prediction | None = None, error: BaseException | None = None) -> None:
    """Give a waiting request its result or error, unless it went away (cancelled)."""
    if answer.done():
        return
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(result)
