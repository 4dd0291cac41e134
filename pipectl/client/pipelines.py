"""Operations on pipelines, jobs, datums and logs. Part of
:class:`~pipectl.client.Client`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidArgument, NotFound
from ..parallel import parallel
from ..pfs import Commit
from ..pps import PPS
from ..pps import spec as specs
from ..pps.model import DatumResult, JobInfo, PipelineInfo


@dataclasses.dataclass
class PipelineSummary:
    """A pipeline with the state of its newest job (``-`` if it has none)
    and, from a store, that job itself (None through a server, or without one)."""

    info: PipelineInfo
    last_job_state: str
    last_job: JobInfo | None = None

    def to_dict(self) -> dict:
        """The JSON form ``--raw`` prints: the pipeline's fields plus this."""
        return dict(self.info.to_dict(), last_job_state=self.last_job_state)


class PipelineOps:
    """Pipelines, jobs, datums and logs (see :class:`~pipectl.client.Client`)."""

    pps: PPS

    # pipelines -----------------------------------------------------------
    def create_pipeline(self, spec: Any, source: str = "spec") -> PipelineInfo:
        """Validate ``spec`` (parsed JSON; ``source`` names it in errors) and
        create the pipeline and its output repo. Raises InvalidArgument,
        AlreadyExists, NotFound (an input repo)."""
        return self.pps.create_pipeline(specs.validate(spec, source))

    def update_pipeline(self, spec: Any, reprocess: bool = False, source: str = "spec") -> PipelineInfo:
        """Replace an existing pipeline's spec with a new version
        (``reprocess``: run every datum again). Raises NotFound,
        InvalidArgument."""
        spec = specs.validate(spec, source)
        self.pps.inspect_pipeline(spec["pipeline"]["name"])
        return self.pps.create_pipeline(spec, update=True, reprocess=reprocess)

    def list_pipelines(self) -> list[PipelineSummary]:
        """Every pipeline by name, with its newest job's state."""
        pipelines = self.pps.list_pipelines()
        newest = parallel(lambda p: self.pps.newest_job(p.name), pipelines)
        return [PipelineSummary(p, job.state if job else "-", job) for p, job in zip(pipelines, newest)]

    def inspect_pipeline(self, name: str) -> PipelineInfo:
        """Raises NotFound."""
        return self.pps.inspect_pipeline(name)

    def delete_pipeline(self, name: str, keep_repo: bool = False) -> None:
        """Delete a pipeline, its jobs and (unless ``keep_repo``) its output
        repo. Raises NotFound, Conflict (another pipeline reads its output)."""
        self.pps.delete_pipeline(name, keep_repo)

    def stop_pipeline(self, name: str) -> PipelineInfo:
        """Pause: no new jobs until :meth:`start_pipeline`. Raises NotFound."""
        return self.pps.set_pipeline_state(name, "paused")

    def start_pipeline(self, name: str) -> PipelineInfo:
        """Resume a paused pipeline. Raises NotFound."""
        return self.pps.set_pipeline_state(name, "running")

    def run_cron(self, name: str) -> list[str]:
        """Commit a tick now to every cron input of pipeline ``name``, as
        Pachyderm's ``run cron`` does; return the repos ticked. Raises
        NotFound, InvalidArgument (a pipeline with no cron input)."""
        import datetime as dt

        from ..pps import cron
        inputs = list(cron.cron_inputs(self.pps.inspect_pipeline(name).spec["input"]))
        if not inputs:
            raise InvalidArgument(f"pipeline {name} has no cron input")
        at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        for c in inputs:
            cron.commit_tick(self.pps.pfs, c, at)
        return [c["repo"] for c in inputs]

    def run_pipeline(self, name: str, commits: Sequence[tuple[str, str]] = (), reprocess: bool = False) -> JobInfo:
        """Start a new job of ``name`` over its newest job's inputs (with
        ``commits``, ``(repo, commit or branch)``, in their place): only the
        datums that did not succeed before run, or every one with
        ``reprocess`` (see :meth:`PPS.run_pipeline`). Raises NotFound,
        InvalidArgument, Conflict (the newest job is still running)."""
        return self.pps.run_pipeline(name, commits, reprocess)

    # jobs ----------------------------------------------------------------
    def list_jobs(self, pipeline: str | None = None) -> list[JobInfo]:
        """Newest first, of one pipeline or of all. Raises NotFound."""
        return self.pps.list_jobs(pipeline)

    def inspect_job(self, job: str, pipeline: str | None = None) -> JobInfo:
        """Raises NotFound, InvalidArgument."""
        return self.pps.inspect_job(job, pipeline)

    def stop_job(self, job: str) -> JobInfo:
        """Mark a running job killed. Raises NotFound, Conflict."""
        return self.pps.stop_job(job)

    def latest_job(self, pipeline: str) -> JobInfo:
        """The newest job of ``pipeline``. Raises NotFound (no such
        pipeline, or no job yet)."""
        self.pps.inspect_pipeline(pipeline)
        job = self.pps.newest_job(pipeline)
        if job is None:
            raise NotFound(f"pipeline {pipeline} has no jobs")
        return job

    def flush_commit(self, repo: str, commit: str, timeout: float | None = None) -> list[Commit]:
        """Wait for every downstream output commit of ``repo@commit`` (see
        :meth:`PPS.flush_commit`). Raises Conflict, NotFound, TimeoutError."""
        return self.pps.flush_commit(repo, commit, timeout)

    # datums and logs -----------------------------------------------------
    def list_datums(self, job: str) -> list[dict]:
        """Every datum of a job, in plan order: ``{id, files, state,
        seconds, attempts, worker}``, ``files`` as ``repo@commit8:path``
        joined by ``, ``, ``state`` ``pending`` until recorded, ``worker``
        the name of the worker that ran it (``controller`` for a datum
        skipped as processed before). Raises NotFound."""
        j = self.pps.inspect_job(job)
        plan = self.pps.plan(j.pipeline, j.id)
        results = self.pps.datum_results(j.pipeline, j.id, plan=plan)
        rows = []
        for d in plan:
            r = results.get(d["id"])
            files = _files_text(d["inputs"])
            rows.append({"id": d["id"], "files": files, "state": r.state if r else "pending",
                         "seconds": r.seconds if r else None, "attempts": r.attempts if r else 0,
                         "worker": r.worker if r else ""})
        return rows

    def plan_datums(self, spec: Any, source: str = "spec") -> list[dict]:
        """The datums ``spec`` would make over its inputs' branch heads now,
        creating nothing: ``{id, files}`` as :meth:`list_datums`. Raises
        InvalidArgument, NotFound (an input repo)."""
        from ..pps import datums
        spec = specs.validate(spec, source)
        commits = {}
        for p in specs.pfs_inputs(spec["input"]):
            self.pps.pfs.inspect_repo(p["repo"])
            try:
                commit = self.pps.pfs.inspect_commit(p["repo"], p["branch"])
            except NotFound:
                continue  # no data yet: no datums from it
            commits[p["repo"], p["branch"]] = (commit.id, self.pps.pfs.read_tree(commit))
        return [{"id": d.id, "files": _files_text(d.to_dict(files=False)["inputs"])}
                for d in datums.compute(spec["input"], commits)]

    def inspect_datum(self, job: str, datum: str) -> DatumResult:
        """One datum's result (an id prefix of 8+ characters will do). Raises NotFound."""
        return self.pps.inspect_datum(job, datum)

    def _log_job(self, pipeline: str | None, job: str | None) -> JobInfo:
        if not job:
            if not pipeline:
                raise InvalidArgument("get-logs needs --pipeline or --job")
            job = self.latest_job(pipeline).id
        return self.pps.inspect_job(job, pipeline)

    def datum_logs(self, pipeline: str | None = None, job: str | None = None,
                   datum: str | None = None) -> list[DatumResult]:
        """The results (with the user code's log tail) of the datums of
        ``job``, or of ``pipeline``'s newest job; only those whose id starts
        with ``datum`` if given. Raises InvalidArgument, NotFound."""
        j = self._log_job(pipeline, job)
        results = self.pps.datum_results(j.pipeline, j.id)
        chosen = [r for d, r in sorted(results.items()) if not datum or d.startswith(datum)]
        if datum and not chosen:
            raise NotFound(f"datum {datum} not found in job {j.id}")
        return chosen

    def worker_logs(self, pipeline: str | None = None, job: str | None = None) -> dict[str, str]:
        """Worker name -> log of the worker processes of a job (as for
        :meth:`datum_logs`) that were kept (Kubernetes pods)."""
        j = self._log_job(pipeline, job)
        return self.pps.worker_logs(j.pipeline, j.id)


def _files_text(inputs: list[dict]) -> str:
    """A datum's inputs as ``repo@commit8:path`` joined by ``, ``."""
    return ", ".join(f"{i['repo']}@{i['commit'][:8]}:{i['path']}" for i in inputs)
