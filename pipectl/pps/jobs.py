"""Job records: created once, changed by compare-and-swap until finished.
Part of :class:`~.api.PPS`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import Conflict, InvalidArgument, NotFound, PreconditionFailed
from ..parallel import parallel
from ..pfs import PFS
from ..pfs.model import now
from ..store import ObjectStore
from . import keys
from .model import JobInfo, PipelineInfo
from .pointers import RECENT, JobPointers

log = logging.getLogger("pipectl.jobs")

JOB_FIELDS = frozenset(f.name for f in dataclasses.fields(JobInfo))


def job_id(pipeline: PipelineInfo, inputs: list[dict]) -> str:
    """The deterministic id (32 hex digits) of the job running ``pipeline``
    (at its current version and salt) over ``inputs`` (``[{name, commit}]``)."""
    key = json.dumps([pipeline.name, pipeline.version, pipeline.salt,
                      sorted((i["name"], i["commit"]) for i in inputs)])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def output_commit_id(job: str) -> str:
    """The id (32 hex digits) of the output commit of job ``job``, fixed
    when the job is created so that landing it twice lands it once."""
    return hashlib.sha256(f"output:{job}".encode()).hexdigest()[:32]


def new_salt(salt: str) -> str:
    """A pipeline's next reprocess salt (16 hex digits): a change of salt
    changes every datum's cache key, so every datum runs again."""
    return hashlib.sha256(f"{salt}{now()}".encode()).hexdigest()[:16]


class Jobs:
    """Job records (see :class:`~.api.PPS`)."""

    store: ObjectStore
    _written_jobs: dict[str, tuple[str, bytes]]

    pfs: PFS

    if TYPE_CHECKING:  # defined by the other parts of PPS
        def list_pipelines(self) -> list[PipelineInfo]: ...
        def inspect_pipeline(self, name: str) -> PipelineInfo: ...
        def change_pipeline(self, name: str, **changes) -> PipelineInfo: ...

    def create_job(self, job: JobInfo) -> bool:
        """Write a new job record (create-only); False if that job already
        exists. In three steps, each safe to be killed after: name the job
        among its pipeline's pending jobs (see :mod:`.pointers`), write the
        record, then name it again (in case a reader dropped the entry,
        finding no record, while this creator was stalled) and among the
        recent jobs. So an unfinished job is always pending, and a fresh
        controller finds it without listing every job."""
        key, data = keys.job(job.pipeline, job.id), job.to_json()
        if self.store.exists(key):
            return False
        self.change_pointers(job.pipeline, lambda p: p.add_pending(job.id, job.created))
        try:
            self._written_jobs[key] = (self.store.write(key, data, if_absent=True), data)
        except PreconditionFailed:  # another creator won; it finishes naming the job
            return False
        # Always written, even when it changes nothing: the new version fails the compare-and-swap of a
        # reader that found no record (before the write above) and is about to drop the entry.
        self.change_pointers(job.pipeline,
                             lambda p: p.add_pending(job.id, job.created) | p.add_recent(job.id, job.created) | True)
        return True

    def _find_job(self, job: str, pipeline: str | None = None) -> str:
        if pipeline:
            return pipeline
        keys.check_job_id(job)
        for p in self.list_pipelines():
            if self.store.exists(keys.job(p.name, job)):
                return p.name
        raise NotFound(f"job {job} not found")

    def inspect_job(self, job: str, pipeline: str | None = None) -> JobInfo:
        """Raises NotFound, InvalidArgument (a malformed id)."""
        pipeline = self._find_job(job, pipeline)
        try:
            return JobInfo.from_json(self.store.read(keys.job(pipeline, job)))
        except NotFound:
            raise NotFound(f"job {job} not found") from None

    def job_keys(self, pipeline: str | None = None) -> list[str]:
        """Store keys of the job records (of one pipeline, or of all)."""
        return [k for k in self.store.list(keys.jobs(pipeline)) if keys.is_job_record(k)]

    def list_jobs(self, pipeline: str | None = None, limit: int | None = None) -> list[JobInfo]:
        """Jobs newest first (of one pipeline, or of all); with ``limit``
        (and a pipeline), the newest ``limit`` only, read through the
        pipeline's job pointers when they name that many (``limit`` up to
        :data:`.pointers.RECENT`: no listing). Raises NotFound for an
        unknown pipeline."""
        if pipeline:
            self.inspect_pipeline(pipeline)
            if limit is not None:
                pointers = self.job_pointers(pipeline)
                found = [j for j in parallel(lambda e: self._read_job(pipeline, e[0]), pointers.candidates())
                         if j is not None]
                if len(found) >= limit or len(pointers.recent) < RECENT:  # else older jobs may be missing
                    return sorted(found, key=lambda j: j.created, reverse=True)[:limit]
        jobs = sorted(self.read_jobs(self.job_keys(pipeline)), key=lambda j: j.created, reverse=True)
        return jobs if limit is None else jobs[:limit]

    def _read_job(self, pipeline: str, job: str) -> JobInfo | None:
        """A job record, None if it is missing."""
        try:
            return JobInfo.from_json(self.store.read(keys.job(pipeline, job)))
        except NotFound:
            return None

    def read_jobs(self, found: list[str]) -> list[JobInfo]:
        """The job records at store keys ``found`` (see :meth:`job_keys`), in order."""
        return parallel(lambda k: JobInfo.from_json(self.store.read(k)), found)

    def current_jobs(self, finished: dict[str, JobInfo], pipeline: str | None = None) -> list[JobInfo]:
        """Every job record (of ``pipeline``, or of all), in store key order,
        reading only those not in ``finished``: a cache, by store key, of
        finished records (which never change), kept up to date here (records
        gone from the store, deleted with their pipeline, are dropped). A
        caller polling with one cache reads a listing plus the unfinished
        jobs each time, not every job."""
        records = self.job_keys(pipeline)
        live = set(records)
        for key in [k for k in finished if k not in live and (pipeline is None or finished[k].pipeline == pipeline)]:
            del finished[key]
        unread = [k for k in records if k not in finished]
        fresh = dict(zip(unread, self.read_jobs(unread)))
        finished.update({k: j for k, j in fresh.items() if j.done})
        return [finished.get(k) or fresh[k] for k in records]

    def newest_job(self, pipeline: str) -> JobInfo | None:
        """The newest job of ``pipeline`` (by creation), None if it has
        none: read through its job pointers (two requests, however many
        jobs there are; a named job whose record is gone is passed over)."""
        for job, _ in self.job_pointers(pipeline).candidates():
            info = self._read_job(pipeline, job)
            if info is not None:
                return info
        return None

    def job_pointers(self, pipeline: str) -> JobPointers:
        """Pipeline ``pipeline``'s job pointers (see :mod:`.pointers`); one
        request. Empty for a pipeline that does not exist."""
        return self._pointers(pipeline)[0]

    def _pointers(self, pipeline: str) -> tuple[JobPointers, str | None]:
        """The job pointers and their version (None: the pipeline does not
        exist, and nothing is written for it). Missing pointers are built
        from the job records, once (create-only: the upgrade of a store
        from before them, or a rebuild after they were deleted), and so are
        damaged ones (replaced by compare-and-swap); the pointer they
        replace is removed after."""
        key = keys.job_pointers(pipeline)
        while True:
            damaged = None  # the version of a record that cannot be parsed
            try:
                data, version = self.store.read_versioned(key)
                return JobPointers.from_json(data), version
            except NotFound:
                pass
            except (ValueError, TypeError, KeyError):
                log.warning("pipeline %s: its job pointers are damaged; building them again", pipeline)
                damaged = version
            if not self.store.exists(keys.pipeline(pipeline)):
                return JobPointers(), None
            jobs = self.read_jobs(self.job_keys(pipeline))
            built = JobPointers.from_jobs(jobs)
            try:
                version = self.store.write(key, built.to_json(), if_absent=damaged is None, if_match=damaged)
            except PreconditionFailed:  # built by another reader meanwhile: use theirs
                continue
            self.store.delete(keys.legacy_newest_job(pipeline))
            log.info("pipeline %s: job pointers built from its %d job record(s)", pipeline, len(jobs))
            return built, version

    def change_pointers(self, pipeline: str, change: Callable[[JobPointers], bool]) -> JobPointers:
        """Compare-and-swap ``change`` (which edits the pointers in place and
        returns whether it changed them) into ``pipeline``'s job pointers;
        returns them as written. Nothing is written for a pipeline that
        does not exist (deleted meanwhile)."""
        while True:
            pointers, version = self._pointers(pipeline)
            if version is None or not change(pointers):
                return pointers
            try:
                self.store.write(keys.job_pointers(pipeline), pointers.to_json(), if_match=version)
                return pointers
            except (PreconditionFailed, NotFound):
                continue

    def unfinished_jobs(self, pointers: dict[str, JobPointers]) -> list[JobInfo]:
        """The unfinished jobs the pending entries of ``pointers`` (pipeline
        name -> its pointers) name, oldest first: one read a pending job.
        Repairs what it finds stale: a job finished (its finisher was killed
        before settling it) is settled, one whose record is missing for
        longer than :data:`.pointers.MISSING_GRACE` is dropped."""
        entries = [(p, job, created) for p, ptr in pointers.items() for job, created in ptr.pending]
        records = parallel(lambda e: self._read_job(e[0], e[1]), entries)
        clock = dt.datetime.now(dt.UTC)
        found = []
        for (pipeline, job, created), info in zip(entries, records):
            if info is None:
                if JobPointers.lost(created, clock):
                    self.change_pointers(pipeline, functools.partial(self._drop_if_missing, pipeline, job))
            elif info.done:
                self.change_pointers(pipeline, functools.partial(JobPointers.settle, job=info))
            else:
                found.append(info)
        return sorted(found, key=lambda j: j.created)

    def _drop_if_missing(self, pipeline: str, job: str, pointers: JobPointers) -> bool:
        """Drop pending ``job`` from ``pointers`` unless its record exists:
        checked after the pointers were read, so a creator that wrote the
        record since has written the pointers since too (its second naming
        always writes), and the compare-and-swap of this drop fails."""
        return not self.store.exists(keys.job(pipeline, job)) and pointers.drop(job)

    def update_job(self, pipeline: str, job: str, **changes) -> JobInfo:
        """Compare-and-swap ``changes`` (JobInfo fields) into a job record. A
        finished job is never changed again. The swap is tried first on the
        record as this object last wrote it (one request instead of two
        while no one else changed it; if someone did, the version differs,
        the write is refused and the record is read afresh). Raises
        NotFound; TypeError for a name that is not a JobInfo field."""
        unknown = set(changes) - JOB_FIELDS
        if unknown:
            raise TypeError(f"JobInfo has no field(s) {', '.join(sorted(unknown))}")
        key = keys.job(pipeline, job)
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
            info = dataclasses.replace(info, **changes)
            if info.done and not info.finished:
                info.finished = now()
            data = info.to_json()
            try:
                version = self.store.write(key, data, if_match=version)
            except (PreconditionFailed, NotFound):  # changed (or deleted) since: read it afresh
                written = None
                continue
            if info.done:  # then it leaves the pending jobs
                self.change_pointers(pipeline, functools.partial(JobPointers.settle, job=info))
            else:  # a finished record is never written again
                self._written_jobs[key] = (version, data)
            return info

    def run_pipeline(self, name: str, commits: Sequence[tuple[str, str]] = (), reprocess: bool = False) -> JobInfo:
        """Start a new job of pipeline ``name`` over the input commits of
        its newest job, with ``commits`` (``(repo, commit or branch)``)
        put in place of those inputs' commits: Pachyderm's ``run
        pipeline``. Datums that succeeded before (in the newest job before
        this one, failed or not) are skipped, so only the failed ones run,
        unless ``reprocess``, which changes the pipeline's salt (as
        ``update-pipeline --reprocess`` does, keeping the spec version) so
        that every datum runs again, in this job and later ones. Returns the
        new job (state ``created``; the controller runs it). Raises NotFound
        (the pipeline, a commit, or no job yet), InvalidArgument (a repo
        that is not an input; a spout or service pipeline), Conflict (the newest job is not finished)."""
        pipeline = self.inspect_pipeline(name)
        if "service" in pipeline.spec or "spout" in pipeline.spec:
            raise InvalidArgument(f"pipeline {name} is a {'service' if 'service' in pipeline.spec else 'spout'}: "
                                  "its worker runs until stopped; use stop-pipeline and start-pipeline")
        newest = self.newest_job(name)
        if newest is None:
            raise NotFound(f"pipeline {name} has no jobs yet; it runs once its inputs have commits")
        if not newest.done:
            raise Conflict(f"job {newest.id} of pipeline {name} is still {newest.state}; "
                           "wait for it or stop-job it first")
        inputs = [dict(i) for i in newest.inputs]
        for repo, ref in commits:
            chosen = [i for i in inputs if i["repo"] == repo]
            if not chosen:
                raise InvalidArgument(f"repo {repo} is not an input of pipeline {name}")
            commit = self.pfs.inspect_commit(repo, ref)
            for i in chosen:
                i["commit"] = commit.id
        if reprocess:
            pipeline = self.change_pipeline(name, salt=new_salt(pipeline.salt))
        stamp = now()
        # A new salt makes the id the controller derives itself (so a
        # controller that sees the salt first makes the same job, once);
        # otherwise the run repeats an earlier job's inputs and needs an id
        # of its own.
        jid = job_id(pipeline, inputs)
        if not reprocess:
            jid = hashlib.sha256(f"{jid}:run:{stamp}".encode()).hexdigest()[:32]
        job = JobInfo(jid, name, pipeline.version, pipeline.salt, pipeline.transform_hash, inputs,
                      output_commit=output_commit_id(jid), created=stamp)
        return job if self.create_job(job) else self.inspect_job(jid, name)  # else a controller made it first

    def stop_job(self, job: str) -> JobInfo:
        """Mark a job killed; the controller stops its workers. Raises
        NotFound, Conflict (already finished)."""
        info = self.inspect_job(job)
        if info.done:
            raise Conflict(f"job {job} already finished ({info.state})")
        return self.update_job(info.pipeline, job, state="killed", reason="stopped by user")
