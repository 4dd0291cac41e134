"""Pipelines, jobs and datums: the records the CLI and the controller share."""

from __future__ import annotations

import hashlib
import json
import time

import orjson

from ..errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    PreconditionFailed,
)
from ..parallel import concurrently, parallel
from ..pfs import PFS
from ..pfs.model import now
from ..store import ObjectStore
from . import spec as specs
from .model import DatumResult, JobInfo, PipelineInfo, SkippedDatums

SKIPPED_BATCH = "controller-skipped"
"""Name of the result batch in which the controller records the datums a job
skips (processed by an earlier job)."""


def job_id(pipeline: PipelineInfo, inputs: list[dict]) -> str:
    """The deterministic id of the job running ``pipeline`` (at its current
    version and salt) over ``inputs`` (``[{name, commit}]``)."""
    key = json.dumps([pipeline.name, pipeline.version, pipeline.salt,
                      sorted((i["name"], i["commit"]) for i in inputs)])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class PPS:
    """Pipeline, job and datum records on one store."""

    def __init__(self, store: ObjectStore, pfs: PFS | None = None):
        self.store = store
        self.pfs = pfs or PFS(store)
        self._written_jobs: dict[str, tuple[str, bytes]] = {}
        """Job record key -> (version, bytes) as this object last wrote it:
        :meth:`update_job` tries its compare-and-swap on that first, saving
        a read per update while no one else changes the record."""

    # pipelines -----------------------------------------------------------
    @staticmethod
    def _info_key(name: str) -> str:
        return f"pipelines/{name}/info.json"

    def _read_pipeline(self, name: str) -> tuple[PipelineInfo, str]:
        try:
            data, version = self.store.read_versioned(self._info_key(name))
        except NotFound:
            raise NotFound(f"pipeline {name} not found") from None
        return PipelineInfo.from_json(data), version

    def inspect_pipeline(self, name: str) -> PipelineInfo:
        """Raises NotFound."""
        return self._read_pipeline(name)[0]

    def list_pipelines(self) -> list[PipelineInfo]:
        """Every pipeline, by name."""
        keys = [k for k in self.store.list("pipelines/") if k.endswith("/info.json") and k.count("/") == 2]
        return sorted(parallel(lambda k: PipelineInfo.from_json(self.store.read(k)), keys),
                      key=lambda p: p.name)

    def pipeline_version(self, name: str, version: int) -> dict:
        """The spec of ``name`` at ``version``. Raises NotFound."""
        try:
            return json.loads(self.store.read(f"pipelines/{name}/versions/{version}.json"))
        except NotFound:
            raise NotFound(f"pipeline {name} has no version {version}") from None

    def pipelines_using(self, repo: str) -> list[str]:
        """Names of pipelines that read ``repo``."""
        return [p.name for p in self.list_pipelines() if any(i["repo"] == repo for i in p.inputs)]

    def _check_inputs(self, spec: dict) -> None:
        for pfs in specs.pfs_inputs(spec["input"]):
            self.pfs.inspect_repo(pfs["repo"])
            try:
                commit = self.pfs.inspect_commit(pfs["repo"], pfs["branch"])
            except NotFound:
                continue  # no data yet: the pipeline waits for it
            if commit.tree is not None and not commit.is_open and not self.pfs.read_tree(commit).glob(pfs["glob"]):
                raise InvalidArgument(f"glob {pfs['glob']!r} matches nothing in {pfs['repo']}@{pfs['branch']}")

    def create_pipeline(self, spec: dict, update: bool = False, reprocess: bool = False) -> PipelineInfo:
        """Create (or with ``update``, replace) a pipeline from a validated spec,
        creating its output repo. Checks input repos exist first, so a bad
        spec creates nothing. Raises AlreadyExists, NotFound, InvalidArgument."""
        name = spec["pipeline"]["name"]
        self._check_inputs(spec)
        stamp = now()
        if not update:
            if self._pipeline_exists(name):
                raise AlreadyExists(f"pipeline {name} already exists; use update-pipeline")
            try:
                self.pfs.inspect_repo(name)
                raise AlreadyExists(f"repo {name} already exists; a pipeline's output repo takes its name")
            except NotFound:
                pass
            info = PipelineInfo(name, 1, spec, "running", stamp, stamp, "", specs.transform_hash(spec))
            self.store.write(f"pipelines/{name}/versions/1.json", json.dumps(spec).encode())
            try:
                self.store.write(self._info_key(name), info.to_json(), if_absent=True)
            except PreconditionFailed:
                raise AlreadyExists(f"pipeline {name} already exists; use update-pipeline") from None
            self.pfs.create_repo(name, f"Output repo for pipeline {name}.", exist_ok=True)
            return info
        self.pfs.create_repo(name, f"Output repo for pipeline {name}.", exist_ok=True)
        while True:
            info, version = self._read_pipeline(name)
            info.version += 1
            info.spec, info.updated = spec, stamp
            info.transform_hash = specs.transform_hash(spec)
            if reprocess:
                info.salt = hashlib.sha256(f"{info.salt}{stamp}".encode()).hexdigest()[:16]
            self.store.write(f"pipelines/{name}/versions/{info.version}.json", json.dumps(spec).encode())
            try:
                self.store.write(self._info_key(name), info.to_json(), if_match=version)
                return info
            except PreconditionFailed:
                continue

    def _pipeline_exists(self, name: str) -> bool:
        return self.store.exists(self._info_key(name))

    def set_pipeline_state(self, name: str, state: str) -> PipelineInfo:
        """``running`` (start-pipeline) or ``paused`` (stop-pipeline)."""
        while True:
            info, version = self._read_pipeline(name)
            info.state, info.updated = state, now()
            try:
                self.store.write(self._info_key(name), info.to_json(), if_match=version)
                return info
            except PreconditionFailed:
                continue

    def delete_pipeline(self, name: str, keep_repo: bool = False) -> None:
        """Delete a pipeline, its jobs and (unless ``keep_repo``) its output
        repo. Refuses while another pipeline reads its output. Raises NotFound, Conflict."""
        self.inspect_pipeline(name)
        users = [p for p in self.pipelines_using(name) if p != name]
        if users and not keep_repo:
            raise Conflict(f"pipeline(s) {', '.join(users)} read the output of {name}; delete them first")
        for job in self.list_jobs(name):
            if not job.done:
                self.update_job(job.pipeline, job.id, state="killed", reason="pipeline deleted")
        self.store.delete(self._info_key(name))
        parallel(self.store.delete, list(self.store.list(f"pipelines/{name}/")))
        parallel(self.store.delete, list(self.store.list(f"jobs/{name}/")))
        parallel(self.store.delete, list(self.store.list(f"job-data/{name}/")))
        if not keep_repo:
            try:
                self.pfs.delete_repo(name)
            except NotFound:
                pass

    # jobs ----------------------------------------------------------------
    @staticmethod
    def job_key(pipeline: str, job: str) -> str:
        return f"jobs/{pipeline}/{job}.json"

    def create_job(self, job: JobInfo) -> bool:
        """Write a new job record (create-only); False if that job already exists."""
        key, data = self.job_key(job.pipeline, job.id), job.to_json()
        try:
            self._written_jobs[key] = (self.store.write(key, data, if_absent=True), data)
            return True
        except PreconditionFailed:
            return False

    def job_exists(self, pipeline: str, job: str) -> bool:
        return self.store.exists(self.job_key(pipeline, job))

    def _find_job(self, job: str, pipeline: str | None = None) -> str:
        if pipeline:
            return pipeline
        for p in self.list_pipelines():
            if self.job_exists(p.name, job):
                return p.name
        raise NotFound(f"job {job} not found")

    def inspect_job(self, job: str, pipeline: str | None = None) -> JobInfo:
        """Raises NotFound."""
        pipeline = self._find_job(job, pipeline)
        try:
            return JobInfo.from_json(self.store.read(self.job_key(pipeline, job)))
        except NotFound:
            raise NotFound(f"job {job} not found") from None

    def job_keys(self, pipeline: str | None = None) -> list[str]:
        """Store keys of the job records (of one pipeline, or of all)."""
        prefix = f"jobs/{pipeline}/" if pipeline else "jobs/"
        return [k for k in self.store.list(prefix) if k.endswith(".json") and k.count("/") == 2]

    def list_jobs(self, pipeline: str | None = None) -> list[JobInfo]:
        """Jobs newest first (of one pipeline, or of all)."""
        if pipeline:
            self.inspect_pipeline(pipeline)
        return sorted(self.read_jobs(self.job_keys(pipeline)), key=lambda j: j.created, reverse=True)

    def read_jobs(self, keys: list[str]) -> list[JobInfo]:
        """The job records at store ``keys`` (see :meth:`job_keys`), in order."""
        return parallel(lambda k: JobInfo.from_json(self.store.read(k)), keys)

    def update_job(self, pipeline: str, job: str, **changes) -> JobInfo:
        """Compare-and-swap ``changes`` into a job record. A finished job is
        never changed again. The swap is tried first on the record as this
        object last wrote it (one request instead of two while no one else
        changed it; if someone did, the version differs, the write is
        refused and the record is read afresh). Raises NotFound."""
        key = self.job_key(pipeline, job)
        written = self._written_jobs.pop(key, None)
        while True:
            if written:
                version, data = written
            else:
                try:
                    data, version = self.store.read_versioned(key)
                except NotFound:
                    raise NotFound(f"job {job} not found") from None
            info = JobInfo.from_json(data)
            if info.done:
                return info
            for k, v in changes.items():
                setattr(info, k, v)
            if info.done and not info.finished:
                info.finished = now()
            data = info.to_json()
            try:
                version = self.store.write(key, data, if_match=version)
            except (PreconditionFailed, NotFound):  # changed (or deleted) since: read it afresh
                written = None
                continue
            if not info.done:  # a finished record is never written again
                self._written_jobs[key] = (version, data)
            return info

    def stop_job(self, job: str) -> JobInfo:
        """Mark a job killed; the controller stops its workers."""
        info = self.inspect_job(job)
        if info.done:
            raise Conflict(f"job {job} already finished ({info.state})")
        return self.update_job(info.pipeline, job, state="killed", reason="stopped by user")

    # datums --------------------------------------------------------------
    def plan(self, pipeline: str, job: str) -> list[dict]:
        """Every datum of the job, in order (``Datum.to_dict`` form plus
        ``cache_key``; empty until the job is planned). Those the job skips,
        processed before, have no file lists."""
        try:
            return orjson.loads(self.store.read(f"job-data/{pipeline}/{job}/plan.json"))
        except NotFound:
            return []

    def todo(self, pipeline: str, job: str) -> list[dict]:
        """The datums the job runs (the plan's entries with file lists), on
        their own: what the workers share out, so that a worker does not read
        a plan of 10,000s of skipped datums to find the few it runs. For a
        job planned before ``todo.json`` existed, taken from the plan."""
        try:
            return orjson.loads(self.store.read(f"job-data/{pipeline}/{job}/todo.json"))
        except NotFound:
            return [d for d in self.plan(pipeline, job) if "files" in d["inputs"][0]]

    @staticmethod
    def _skipped_key(pipeline: str, job: str) -> str:
        return f"job-data/{pipeline}/{job}/results/{SKIPPED_BATCH}.json"

    def write_plan(self, pipeline: str, job: str, plan: list[dict], todo: list[dict],
                   skipped: SkippedDatums | None = None, index: dict | None = None,
                   batches: dict[str, list[DatumResult]] | None = None) -> None:
        """Record a job's datums: those it ``skipped`` (by reference, as the
        batch :data:`SKIPPED_BATCH`; their results, taken from ``index``, the
        parsed datum index it names, go into ``batches``, see
        :meth:`datum_results`), its :meth:`todo` list and its :meth:`plan`,
        all at once. Planning is done once the job record counts the datums
        (``datums_total``, set after this returns); a job planned only in part
        (its controller killed meanwhile) is planned again, to the same
        datums, and these are overwritten."""
        key, skip_key = f"job-data/{pipeline}/{job}", self._skipped_key(pipeline, job)
        concurrently(lambda: skipped and self.store.write(skip_key, skipped.to_json()),
                     lambda: self.store.write(f"{key}/todo.json", orjson.dumps(todo)),
                     lambda: self.store.write(f"{key}/plan.json", orjson.dumps(plan)))
        if skipped and batches is not None:
            batches[skip_key] = skipped.results(plan, index or {})

    def datum_index(self, index: str) -> dict:
        """Datum index ``index`` (a content hash): cache key -> outputs of the
        datums one job completed. Raises NotFound."""
        return orjson.loads(self.store.read(f"datum-index/{index}"))

    def datum_results(self, pipeline: str, job: str, batches: dict[str, list[DatumResult]] | None = None,
                      skipped: bool = True, plan: list[dict] | None = None) -> dict[str, DatumResult]:
        """Every recorded datum result of a job, by datum id (a datum recorded
        twice, e.g. by a restarted worker, counts once; success wins).
        ``batches`` caches result batches by key across calls: a batch is
        never rewritten, so only batches not seen before are read.
        ``skipped=False`` leaves out the datums the controller skipped (the
        one batch :data:`SKIPPED_BATCH`; a worker never runs those), whose
        results are rebuilt from the job's :meth:`plan` (pass ``plan`` if
        it is at hand) and the datum index they reuse."""
        batches = {} if batches is None else batches
        prefix = f"job-data/{pipeline}/{job}/results/"
        skip_key = self._skipped_key(pipeline, job)
        keys = list(self.store.list(prefix))
        if not skipped:
            keys = [k for k in keys if k != skip_key]

        def read(key: str) -> list[DatumResult] | None:
            raw = orjson.loads(self.store.read(key))
            if key != skip_key or isinstance(raw, list):  # a list: the results themselves (earlier pipectl)
                return [DatumResult(**r) for r in raw]
            ref = SkippedDatums.from_dict(raw)
            job_plan, index = concurrently(lambda: plan or self.plan(pipeline, job),
                                           lambda: self.datum_index(ref.datum_index))
            return ref.results(job_plan, index) if job_plan else None  # None: planning not finished yet
        new = [k for k in keys if k not in batches]
        batches.update((k, b) for k, b in zip(new, parallel(read, new)) if b is not None)
        results: dict[str, DatumResult] = {}
        for key in keys:
            for r in batches.get(key, ()):
                if r.id not in results or results[r.id].state == "failed":
                    results[r.id] = r
        return results

    def write_results(self, pipeline: str, job: str, name: str, results: list[DatumResult],
                      batches: dict[str, list[DatumResult]] | None = None) -> None:
        """Record a batch of datum results under a unique batch ``name`` (and
        into ``batches``, a cache as for :meth:`datum_results`)."""
        key = f"job-data/{pipeline}/{job}/results/{name}.json"
        self.store.write(key, orjson.dumps(results))  # orjson writes dataclasses field by field
        if batches is not None:
            batches[key] = results

    def write_worker_logs(self, pipeline: str, job: str, logs: dict[str, str]) -> None:
        """Keep the logs of a job's worker processes (by worker name, e.g. a
        pod name): executors whose workers vanish with their logs (Kubernetes
        pods) copy them here first."""
        parallel(lambda item: self.store.write(f"job-data/{pipeline}/{job}/worker-logs/{item[0]}.log",
                                               item[1].encode()), list(logs.items()))

    def worker_logs(self, pipeline: str, job: str) -> dict[str, str]:
        """Worker name -> log kept by :meth:`write_worker_logs` (empty if none)."""
        prefix = f"job-data/{pipeline}/{job}/worker-logs/"
        keys = list(self.store.list(prefix))
        texts = parallel(lambda k: self.store.read(k).decode(errors="replace"), keys)
        return {k[len(prefix):-len(".log")]: t for k, t in zip(keys, texts)}

    def inspect_datum(self, job: str, datum: str) -> DatumResult:
        """Raises NotFound (a datum id prefix of 8+ characters is accepted)."""
        info = self.inspect_job(job)
        results = self.datum_results(info.pipeline, job)
        matches = [r for d, r in results.items() if d.startswith(datum)] if len(datum) >= 8 else []
        if len(matches) != 1:
            raise NotFound(f"datum {datum} not found in job {job}")
        return matches[0]

    # provenance ----------------------------------------------------------
    def downstream(self, repo: str) -> list[PipelineInfo]:
        """Pipelines fed, directly or transitively, by ``repo``, upstream first."""
        pipelines = self.list_pipelines()
        order, frontier = [], [repo]
        while frontier:
            current = frontier.pop(0)
            for p in pipelines:
                if p not in order and any(i["repo"] == current for i in p.inputs):
                    order.append(p)
                    frontier.append(p.name)
        return order

    def flush_commit(self, repo: str, commit: str, timeout: float | None = None,
                     interval: float = 0.2) -> list:
        """Wait until every downstream pipeline has an output commit whose
        provenance includes ``repo@commit``, or a later commit built on it
        (the controller runs jobs on the newest input heads, so a commit
        superseded before a job ran is processed by its successor's job);
        return those commits. Raises Conflict if a job on that data fails,
        NotFound, or TimeoutError.

        Polls cheaply (one read per pending output branch; its commits are
        read only when its head moves; failed jobs are looked for once a
        second), which matters on S3."""
        target = self.pfs.inspect_commit(repo, commit)
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = {p.name: p for p in self.downstream(repo)}
        found, covers, heads = [], {}, {}
        failures_checked = 0.0

        def covered(provenance: list[dict]) -> bool:
            return any(x["repo"] == repo and self._descends_from(repo, x["commit"], target, covers)
                       for x in provenance)

        while pending:
            for name, p in list(pending.items()):
                try:
                    head = self.pfs.inspect_branch(name, p.output_branch).head
                except NotFound:
                    head = None
                if head is None or heads.get(name) == head:
                    continue
                heads[name] = head
                # Output commits newer than the target, newest first.
                c = self.pfs.inspect_commit(name, head)
                for _ in range(100):
                    if covered(c.provenance):
                        found.append(c)
                        del pending[name]
                        break
                    if c.parent is None or c.started < target.started:
                        break
                    c = self.pfs.inspect_commit(name, c.parent)
            if pending and time.monotonic() - failures_checked >= 1.0:
                failures_checked = time.monotonic()
                for name in pending:
                    # The newest job on that data decides: failed or killed
                    # ends the wait (a later job, e.g. after update-pipeline,
                    # supersedes an earlier failure).
                    for job in self.list_jobs(name)[:5]:
                        if self._job_depends_on(job, covered):
                            if job.state in ("failure", "killed"):
                                reason = (job.reason or "").strip().splitlines()[:1] or ["no reason recorded"]
                                raise Conflict(f"job {job.id} of pipeline {name} ended in {job.state}: "
                                               f"{reason[0]} (see inspect-job {job.id})")
                            break
            if pending:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"flush-commit timed out waiting for {', '.join(pending)}")
                time.sleep(interval)
        return found

    def _descends_from(self, repo: str, commit_id: str, ancestor, cache: dict) -> bool:
        """Whether ``repo@commit_id`` is the commit ``ancestor`` or one built on
        it (found by walking parents back to ``ancestor``'s start time).
        ``cache`` remembers answers across calls (commits are immutable)."""
        if commit_id not in cache:
            found, cid = False, commit_id
            while cid:
                if cid == ancestor.id:
                    found = True
                    break
                try:
                    c = self.pfs.inspect_commit(repo, cid)
                except NotFound:
                    break
                if c.started < ancestor.started:
                    break
                cid = c.parent
            cache[commit_id] = found
        return cache[commit_id]

    def _job_depends_on(self, job: JobInfo, covered) -> bool:
        """Whether ``job`` ran on data ``covered(provenance)`` accepts."""
        for i in job.inputs:
            if covered([i]):
                return True
            try:
                c = self.pfs.inspect_commit(i["repo"], i["commit"])
            except NotFound:
                continue
            if covered(c.provenance):
                return True
        return False
