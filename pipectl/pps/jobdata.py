"""The data a job keeps beside its record: its plan and todo list, the
datum results its workers write in batches, the skipped datums by reference,
datum indexes and kept worker logs. Part of :class:`~.api.PPS`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from ..errors import NotFound
from ..parallel import concurrently, parallel
from ..pfs.hashing import write_addressed
from ..store import ObjectStore
from . import keys
from .model import DatumResult, JobInfo, SkippedDatums


class JobData:
    """Plans, results, datum indexes and worker logs (see :class:`~.api.PPS`)."""

    store: ObjectStore

    if TYPE_CHECKING:  # defined by the other parts of PPS
        def inspect_job(self, job: str, pipeline: str | None = None) -> JobInfo: ...

    def plan(self, pipeline: str, job: str) -> list[dict]:
        """Every datum of the job, in order (``Datum.to_dict`` form plus
        ``cache_key``; empty until the job is planned). Those the job skips,
        processed before, have no file lists."""
        try:
            return orjson.loads(self.store.read(keys.plan(pipeline, job)))
        except NotFound:
            return []

    def todo(self, pipeline: str, job: str) -> list[dict]:
        """The datums the job runs (the plan's entries with file lists), on
        their own: what the workers share out, so that a worker does not read
        a plan of 10,000s of skipped datums to find the few it runs. For a
        job planned before ``todo.json`` existed, taken from the plan."""
        try:
            return orjson.loads(self.store.read(keys.todo(pipeline, job)))
        except NotFound:
            return [d for d in self.plan(pipeline, job) if "files" in d["inputs"][0]]

    def write_plan(self, pipeline: str, job: str, plan: list[dict], todo: list[dict],
                   skipped: SkippedDatums | None = None, index: dict | None = None,
                   batches: dict[str, list[DatumResult]] | None = None) -> None:
        """Record a job's datums: those it ``skipped`` (by reference, as the
        batch :data:`~.keys.SKIPPED_BATCH`; their results, taken from ``index``, the
        parsed datum index it names, go into ``batches``, see
        :meth:`datum_results`), its :meth:`todo` list and its :meth:`plan`,
        all at once. Planning is done once the job record counts the datums
        (``datums_total``, set after this returns); a job planned only in part
        (its controller killed meanwhile) is planned again, to the same
        datums, and these are overwritten."""
        skip_key = keys.skipped(pipeline, job)
        concurrently(lambda: skipped and self.store.write(skip_key, skipped.to_json()),
                     lambda: self.store.write(keys.todo(pipeline, job), orjson.dumps(todo)),
                     lambda: self.store.write(keys.plan(pipeline, job), orjson.dumps(plan)))
        if skipped and batches is not None:
            batches[skip_key] = skipped.results(plan, index or {})

    def write_datum_index(self, index: dict) -> str:
        """Store a datum index (cache key -> outputs of the datums a job
        completed) once, content addressed; return its hash."""
        return write_addressed(self.store, keys.datum_index, orjson.dumps(index, option=orjson.OPT_SORT_KEYS))

    def datum_index(self, index: str) -> dict:
        """Datum index ``index`` (a content hash): cache key -> outputs of the
        datums one job completed. Raises NotFound."""
        return orjson.loads(self.store.read(keys.datum_index(index)))

    def datum_results(self, pipeline: str, job: str, batches: dict[str, list[DatumResult]] | None = None,
                      skipped: bool = True, plan: list[dict] | None = None) -> dict[str, DatumResult]:
        """Every recorded datum result of a job, by datum id (a datum recorded
        twice, e.g. by a restarted worker, counts once; success wins).
        ``batches`` caches result batches by key across calls: a batch is
        never rewritten, so only batches not seen before are read.
        ``skipped=False`` leaves out the datums the controller skipped (the
        one batch :data:`~.keys.SKIPPED_BATCH`; a worker never runs those), whose
        results are rebuilt from the job's :meth:`plan` (pass ``plan`` if
        it is at hand) and the datum index they reuse."""
        batches = {} if batches is None else batches
        skip_key = keys.skipped(pipeline, job)
        found = list(self.store.list(keys.results(pipeline, job)))
        if not skipped:
            found = [k for k in found if k != skip_key]

        def read(key: str) -> list[DatumResult] | None:
            raw = orjson.loads(self.store.read(key))
            if key != skip_key or isinstance(raw, list):  # a list: the results themselves (earlier pipectl)
                return [DatumResult(**r) for r in raw]
            ref = SkippedDatums.from_dict(raw)
            job_plan, index = concurrently(lambda: plan or self.plan(pipeline, job),
                                           lambda: self.datum_index(ref.datum_index))
            return ref.results(job_plan, index) if job_plan else None  # None: planning not finished yet
        new = [k for k in found if k not in batches]
        batches.update((k, b) for k, b in zip(new, parallel(read, new)) if b is not None)
        results: dict[str, DatumResult] = {}
        for key in found:
            for r in batches.get(key, ()):
                if r.id not in results or results[r.id].state == "failed":
                    results[r.id] = r
        return results

    def write_results(self, pipeline: str, job: str, name: str, results: list[DatumResult],
                      batches: dict[str, list[DatumResult]] | None = None) -> None:
        """Record a batch of datum results under a unique batch ``name`` (and
        into ``batches``, a cache as for :meth:`datum_results`)."""
        key = keys.result_batch(pipeline, job, name)
        self.store.write(key, orjson.dumps(results))  # orjson writes dataclasses field by field
        if batches is not None:
            batches[key] = results

    def write_worker_logs(self, pipeline: str, job: str, logs: dict[str, str]) -> None:
        """Keep the logs of a job's worker processes (by worker name, e.g. a
        pod name): executors whose workers vanish with their logs (Kubernetes
        pods) copy them here first."""
        parallel(lambda item: self.store.write(keys.worker_log(pipeline, job, item[0]), item[1].encode()),
                 list(logs.items()))

    def worker_logs(self, pipeline: str, job: str) -> dict[str, str]:
        """Worker name -> log kept by :meth:`write_worker_logs` (empty if none)."""
        prefix = keys.worker_logs(pipeline, job)
        found = list(self.store.list(prefix))
        texts = parallel(lambda k: self.store.read(k).decode(errors="replace"), found)
        return {k[len(prefix):-len(".log")]: t for k, t in zip(found, texts)}

    def inspect_datum(self, job: str, datum: str) -> DatumResult:
        """Raises NotFound (a datum id prefix of 8+ characters is accepted)."""
        info = self.inspect_job(job)
        results = self.datum_results(info.pipeline, job)
        matches = [r for d, r in results.items() if d.startswith(datum)] if len(datum) >= 8 else []
        if len(matches) != 1:
            raise NotFound(f"datum {datum} not found in job {job}")
        return matches[0]


def result_counts(results: dict[str, DatumResult]) -> dict[str, int]:
    """Datum counts and bytes moved, as JobInfo fields, from a job's results
    (see :meth:`JobData.datum_results`)."""
    rs = list(results.values())
    return {
        "datums_processed": sum(r.state == "success" for r in rs),
        "datums_skipped": sum(r.state == "skipped" for r in rs),
        "datums_failed": sum(r.state == "failed" for r in rs),
        "datums_recovered": sum(r.state == "recovered" for r in rs),
        "datums_retried": sum(r.state == "success" and r.attempts > 1 for r in rs),
        "bytes_downloaded": sum(r.bytes_downloaded for r in rs),
        "bytes_uploaded": sum(r.bytes_uploaded for r in rs),
    }
