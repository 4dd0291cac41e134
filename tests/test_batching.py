"""The model server's dynamic batcher (pipectl.serving.batching) on the
event loop, with small models written here as a handler would write them
(the handler is user code): requests share passes and get their own rows'
answers, a model that answers the wrong number of rows fails each request
on its own, and a closing server answers every waiting request."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pipectl.pfs.model import Commit
from pipectl.serving.batching import Batcher
from pipectl.serving.errors import ModelUnavailable, ServingError
from pipectl.serving.model import ModelVersion


class Doubler:
    """A model whose label is twice the row's first value; ``passes`` records each pass's rows."""

    def __init__(self, gate: threading.Event | None = None, drop_one: bool = False):
        self.passes: list[int] = []
        self.gate, self.drop_one = gate, drop_one

    def predict(self, rows):
        if self.gate is not None:
            self.gate.wait(10)
        self.passes.append(len(rows))
        labels = [row[0] * 2 for row in rows]
        return labels[:-1] if self.drop_one and len(rows) > 1 else labels


def version(model) -> ModelVersion:
    return ModelVersion(Commit("a" * 32, "train", "master", None, "user", "now"), model, "/nowhere", "now", 0.0,
                        None, None)


def test_concurrent_requests_share_passes_and_get_their_own_answers():
    async def main():
        model = Doubler()
        v, batcher = version(model), Batcher(max_batch_size=8)
        answers = await asyncio.gather(*(batcher.predict(v, [[float(i)]]) for i in range(20)))
        await batcher.close()
        return model, answers
    model, answers = asyncio.run(main())
    assert [a.labels for a in answers] == [[i * 2.0] for i in range(20)]
    assert sum(model.passes) == 20 and len(model.passes) < 20 and max(model.passes) <= 8


def test_a_model_answering_another_number_of_rows_fails_each_request_alone():
    async def main():
        v, batcher = version(Doubler(drop_one=True)), Batcher()
        results = await asyncio.gather(*(batcher.predict(v, [[1.0], [2.0]]) for _ in range(3)),
                                       return_exceptions=True)
        await batcher.close()
        return results
    results = asyncio.run(main())
    assert all(isinstance(r, ServingError) and "1 predictions for 2 rows" in r.message for r in results), results


def test_closing_answers_every_waiting_request():
    gate = threading.Event()

    async def main():
        v, batcher = version(Doubler(gate)), Batcher(max_batch_size=1)
        # a pass over 100 rows runs in a thread (held by the gate); the others wait behind it
        waiting = [asyncio.ensure_future(batcher.predict(v, [[1.0]] * 100)) for _ in range(3)]
        await asyncio.sleep(0.2)
        await batcher.close()
        gate.set()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        with pytest.raises(ModelUnavailable):
            await batcher.predict(v, [[1.0]])
        return results
    results = asyncio.run(asyncio.wait_for(main(), 30))
    assert all(isinstance(r, ModelUnavailable) for r in results), results
