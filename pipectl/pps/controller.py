"""The controller: turns new input commits into jobs and runs them.

Each step it (1) creates a job for every running pipeline whose input branch
heads form a set it has no job for yet (and agree on their common upstream
commits), and (2) runs the oldest unfinished job to completion: plan its
datums, skip those processed before, start ``parallelism_spec.constant``
workers through the executor (which replaces workers that die), then commit
the outputs with provenance. With leader election (``leader``), it works
only while it holds the lease.

All its state lives in the store, so it is restartable: job ids are derived
from their inputs (creating one twice is a no-op), a job's plan is complete
once its record counts the datums, finished datums are recorded by workers,
and landing the output commit is a compare-and-swap checked on restart. A
controller killed mid-job resumes the job: recorded datums are not rerun and
each datum's output lands once.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import logging
import time

import orjson

from ..errors import NotFound, PipectlError, PreconditionFailed
from ..gcpause import gc_paused
from ..parallel import concurrently
from ..pfs import PFS
from ..pfs.hashing import write_addressed
from ..pfs.model import Commit, Provenance, now
from ..pfs.tree import FileEntry, Tree, file_above
from ..store import ObjectStore
from . import datums as datum_mod
from .api import PPS, job_id
from .executors import Executor, ExecutorError, WorkerGroup
from .model import DatumResult, JobInfo, PipelineInfo, SkippedDatums
from .spec import parse_duration

log = logging.getLogger("pipectl.controller")

MAX_WORKER_RESTARTS = 5
PROGRESS_SECONDS = 1.0  # how often a running job's counts are refreshed
STOP_CHECK_SECONDS = 0.25  # how often a running job's record is read for stop-job


class JobFailed(Exception):
    """Internal: ends a job run with state ``failure`` and this reason."""


class LostLeadership(PipectlError):
    """This controller no longer holds the leader lease; it must stop at once
    (another replica takes over its jobs)."""


class Controller:
    """Watches input branches and runs jobs. ``poll_interval`` in seconds."""

    def __init__(self, store: ObjectStore, executor: Executor, poll_interval: float = 0.2, leader=None):
        self.store = store
        self.leader = leader  # a LeaseElector when replicas elect a leader, else None
        self.pfs = PFS(store)
        self.pps = PPS(store, self.pfs)
        self.executor = executor
        self.poll_interval = poll_interval
        self._finished: dict[str, JobInfo] = {}  # by store key: a finished job's record never changes

    def run(self, exit_when_idle: bool = False) -> None:
        """Loop until interrupted (or, with ``exit_when_idle``, until no work
        is left)."""
        # What is alive now (modules, an S3 client's parsed service models:
        # 70,000+ objects) lives as long as the controller. Frozen, it is not
        # walked by every full garbage collection (each took 30 ms; planning
        # 10,000 datums ran two or more). Garbage among it would never be
        # freed; a collection first (the usual recipe) found none here, in 47 ms.
        gc.freeze()
        try:
            while True:
                self._check_leadership()
                busy = self.step()
                if not busy:
                    if exit_when_idle:
                        return
                    time.sleep(self.poll_interval)
        finally:
            self.executor.close()

    def _check_leadership(self) -> None:
        if self.leader is not None and not self.leader.held:
            raise LostLeadership("lost the leader lease; stopping so that another replica takes over")

    def step(self) -> bool:
        """One round: create due jobs, run the next one. True if anything ran."""
        created = self.create_jobs()
        job = self.next_job()
        if job is not None:
            self.run_job(job)
        return bool(created or job)

    # creating jobs -------------------------------------------------------
    def current_inputs(self, pipeline: PipelineInfo) -> list[dict] | None:
        """The input commits a job would run on now, or None while some input
        has no finished head commit yet, or while the heads disagree about a
        common upstream branch (as in Pachyderm, a pipeline reading ``a``
        directly and through pipeline ``p`` waits until ``p`` has processed
        ``a``'s newest commit, so it gets one job per commit of ``a``, never
        one on new data beside stale upstream output)."""
        inputs, upstream = [], {}
        for i in pipeline.inputs:
            try:
                commit = self.pfs.inspect_commit(i["repo"], i["branch"])
            except NotFound:
                return None
            if commit.is_open:
                return None
            inputs.append({"name": i["name"], "repo": i["repo"], "branch": i["branch"], "commit": commit.id})
            for p in [inputs[-1]] + commit.provenance:
                if upstream.setdefault((p["repo"], p["branch"]), p["commit"]) != p["commit"]:
                    return None
        return inputs

    def create_jobs(self) -> int:
        created = 0
        for pipeline in self.pps.list_pipelines():
            if pipeline.state != "running":
                continue
            inputs = self.current_inputs(pipeline)
            if inputs is None:
                continue
            jid = job_id(pipeline, inputs)
            if self.pps.job_key(pipeline.name, jid) in self._finished:
                continue
            job = JobInfo(jid, pipeline.name, pipeline.version, pipeline.salt, pipeline.transform_hash,
                          inputs, output_commit=hashlib.sha256(f"output:{jid}".encode()).hexdigest()[:32],
                          created=now(), executor=self.executor.name)
            if self.pps.create_job(job):
                log.info("job %s created for pipeline %s on %s", jid, pipeline.name,
                         ", ".join(f"{i['repo']}@{i['commit'][:8]}" for i in inputs))
                created += 1
        return created

    def next_job(self) -> JobInfo | None:
        """The oldest unfinished job (jobs of one pipeline run in order).
        Finished jobs are read once; those whose records are gone (deleted
        with their pipeline) are forgotten."""
        keys = self.pps.job_keys()
        live = set(keys)
        for key in [k for k in self._finished if k not in live]:
            del self._finished[key]
        pending = []
        for job in self.pps.read_jobs([k for k in keys if k not in self._finished]):
            if job.done:
                self._finished[self.pps.job_key(job.pipeline, job.id)] = job
            else:
                pending.append(job)
        return min(pending, key=lambda j: j.created) if pending else None

    # running a job -------------------------------------------------------
    def run_job(self, job: JobInfo) -> JobInfo:
        """Run ``job`` to a final state; return its final record."""
        spec, job = concurrently(
            lambda: self.pps.pipeline_version(job.pipeline, job.pipeline_version),
            lambda: self.pps.update_job(job.pipeline, job.id, state="running", started=now())
            if job.state == "created" else job)
        batches: dict[str, list[DatumResult]] = {}  # result batches read or written (never rewritten)
        try:
            plan = self._plan(job, spec, batches)
            results = self._execute(job, spec, plan, batches)
            final = self._finish(job, spec, plan, results)
        except (JobFailed, ExecutorError) as e:
            log.warning("job %s of %s failed: %s", job.id, job.pipeline, e)
            final = self.pps.update_job(job.pipeline, job.id, state="failure", reason=str(e))
        if final.done:  # so that the next step need not read the record again
            self._finished[self.pps.job_key(final.pipeline, final.id)] = final
        return final

    def _previous_index(self, job: JobInfo) -> tuple[str | None, dict]:
        """The datum index of the latest earlier job of this pipeline (its
        hash, and cache key -> outputs of the datums it completed; None and
        empty if there is none). The earlier jobs are finished, so their
        records were read by :meth:`next_job` already (once per controller,
        not once per job)."""
        earlier = [j for j in self._finished.values() if j.pipeline == job.pipeline
                   and j.id != job.id and j.datum_index and j.created <= job.created]
        if not earlier:
            return None, {}
        latest = max(earlier, key=lambda j: j.created)
        try:
            return latest.datum_index, self.pps.datum_index(latest.datum_index)
        except NotFound:
            return None, {}

    def _plan(self, job: JobInfo, spec: dict, batches: dict[str, list[DatumResult]]) -> list[dict]:
        if job.datums_total:  # planned before (see PPS.write_plan)
            plan = self.pps.plan(job.pipeline, job.id)
            if plan:
                return plan

        def read_input(i: dict) -> tuple[str, tuple[str, Tree]]:
            commit = self.pfs.inspect_commit(i["repo"], i["commit"])
            return i["name"], (commit.id, self.pfs.read_tree(commit))

        with gc_paused():  # a container or more per datum, and no cycles
            (index_hash, previous), *trees = concurrently(lambda: self._previous_index(job),
                                                          *[functools.partial(read_input, i) for i in job.inputs])
            found = datum_mod.compute(spec["input"], dict(trees))
            plan, todo, seen = [], [], set()
            for d in found:
                if d.id in seen:
                    continue
                seen.add(d.id)
                key = datum_mod.cache_key(job.transform_hash, job.salt, d.id)
                reuse = key in previous
                entry = d.to_dict(files=not reuse)
                entry["cache_key"] = key
                plan.append(entry)
                if not reuse:
                    todo.append(entry)
            skipped = len(plan) - len(todo)
            self.pps.write_plan(job.pipeline, job.id, plan, todo,
                                SkippedDatums(index_hash, now()) if skipped else None, previous, batches)
        self.pps.update_job(job.pipeline, job.id, datums_total=len(plan), datums_skipped=skipped)
        log.info("job %s: %d datums, %d skipped (processed before)", job.id, len(plan), skipped)
        return plan

    def _execute(self, job: JobInfo, spec: dict, plan: list[dict],
                 batches: dict[str, list[DatumResult]]) -> dict[str, DatumResult]:
        """Run workers until every datum has a result; return the results.
        ``batches``: the job's result batches read so far (see
        :meth:`PPS.datum_results`)."""
        deadline = parse_duration(spec.get("job_timeout"))
        started = time.monotonic()
        recorded = None  # how many results there were when the last worker group started
        while True:
            results = self.pps.datum_results(job.pipeline, job.id, batches)
            remaining = [d for d in plan if d["id"] not in results]
            if not remaining or any(r.state == "failed" for r in results.values()):
                self._keep_logs(job, self.executor.job_done(job))
                return results
            if recorded == len(results):  # workers that ran to the end recorded nothing
                raise JobFailed(f"the workers ended without recording any of the {len(remaining)} datums "
                                "left; is the pipectl in the image older than the controller's?")
            recorded = len(results)
            count = max(1, min(int(spec.get("parallelism_spec", {}).get("constant", 1)), len(remaining)))
            # Shards are taken over the whole todo list (written once), so a
            # datum keeps its worker index while the worker count does.
            group = self.executor.start_workers(job, spec, count, MAX_WORKER_RESTARTS * count)
            try:
                job = self._follow(job, spec, group, batches, started + deadline if deadline else None)
            except (KeyboardInterrupt, LostLeadership):
                group.detach()  # the next controller adopts workers that outlive this one
                raise
            except BaseException:
                self._keep_logs(job, group.kill())
                raise
            self._keep_logs(job, group.kill())

    def _keep_logs(self, job: JobInfo, logs: dict[str, str]) -> None:
        """Store the worker logs an executor handed back as its workers went."""
        if logs:
            self.pps.write_worker_logs(job.pipeline, job.id, logs)

    def _follow(self, job: JobInfo, spec: dict, group: WorkerGroup, batches: dict[str, list[DatumResult]],
                deadline: float | None) -> JobInfo:
        """Wait for ``group`` to finish, keeping the job record current
        (progress, restarts). Raises JobFailed on worker errors, timeout
        (``deadline``, monotonic seconds) or stop-job."""
        reported = checked = time.monotonic()
        failures = 0
        while True:
            time.sleep(0.05)
            if time.monotonic() - reported > PROGRESS_SECONDS:
                self._report_progress(job, batches)
                reported = time.monotonic()
            status = group.poll()
            if status.failures > failures:
                job = self.pps.update_job(job.pipeline, job.id, restarts=job.restarts + status.failures - failures)
                failures = status.failures
            if status.error:
                raise JobFailed(status.error)
            if status.done:
                return job
            if deadline and time.monotonic() > deadline:
                raise JobFailed(f"job timed out after {spec['job_timeout']}")
            if time.monotonic() - checked > STOP_CHECK_SECONDS:
                checked = time.monotonic()
                if self._stopped(job):
                    raise JobFailed("killed")
            self._check_leadership()

    def _report_progress(self, job: JobInfo, batches: dict[str, list[DatumResult]]) -> None:
        """Copy the counts of the datum results recorded so far into the job
        record, so list-job's PROGRESS, DL and UL move while the job runs."""
        self.pps.update_job(job.pipeline, job.id, **_counts(self.pps.datum_results(job.pipeline, job.id, batches)))

    def _stopped(self, job: JobInfo) -> bool:
        try:
            return self.pps.inspect_job(job.id, job.pipeline).state == "killed"
        except NotFound:
            return True

    def _finish(self, job: JobInfo, spec: dict, plan: list[dict],
                results: dict[str, DatumResult]) -> JobInfo:
        ok = {d: r for d, r in results.items() if r.state in ("success", "skipped")}
        failed = [r for r in results.values() if r.state == "failed"]

        def land() -> Commit | JobFailed:
            if failed:
                r = failed[0]
                tail = "\n".join(r.log.rstrip().splitlines()[-15:])
                return JobFailed(f"{r.error}\n{tail}".rstrip())
            try:
                return self._land(job, spec, self._output_tree(plan, ok))
            except JobFailed as e:  # two datums wrote one path, or the branch kept moving
                return e

        # The datum index (kept for the next job even when this one fails) is
        # written beside the landing; the job record names it after both.
        index_hash, commit = concurrently(lambda: self._write_index({r.cache_key: r.outputs for r in ok.values()}),
                                          land)
        counts = dict(_counts(results), datums_total=len(plan), datum_index=index_hash)
        if isinstance(commit, JobFailed):
            self.pps.update_job(job.pipeline, job.id, **counts)  # a failed job shows its counts too
            raise commit
        log.info("job %s of %s succeeded: %d processed, %d skipped; output %s@%s", job.id, job.pipeline,
                 counts["datums_processed"], counts["datums_skipped"], job.pipeline, commit.id)
        return self.pps.update_job(job.pipeline, job.id, state="success", finished=now(), **counts)

    def _write_index(self, index: dict) -> str:
        return write_addressed(self.store, "datum-index", orjson.dumps(index, option=orjson.OPT_SORT_KEYS))

    @staticmethod
    def _output_tree(plan: list[dict], ok: dict[str, DatumResult]) -> Tree:
        files: dict[str, FileEntry] = {}
        owner: dict[str, str] = {}
        for d in plan:
            for path, (size, objects) in ok[d["id"]].outputs.items():
                if path in owner:
                    raise JobFailed(f"datums {owner[path][:12]} and {d['id'][:12]} both wrote output "
                                    f"file {path}; each output path must come from one datum")
                owner[path] = d["id"]
                files[path] = FileEntry(size, tuple(objects))
        for path in files:
            above = file_above(path, files)
            if above:
                raise JobFailed(f"datums {owner[above][:12]} and {owner[path][:12]} wrote output file {above} "
                                f"and {path} below it; a path is a file or a directory, not both")
        return Tree(files)

    def _provenance(self, job: JobInfo) -> list[dict]:
        seen: dict[tuple, dict] = {}
        for i in job.inputs:
            commit = self.pfs.inspect_commit(i["repo"], i["commit"])
            entries = [Provenance(i["repo"], i["branch"], commit.id, commit.pipeline_version).to_dict()]
            for p in entries + commit.provenance:
                seen.setdefault((p["repo"], p["commit"]), p)
        return list(seen.values())

    def _land(self, job: JobInfo, spec: dict, tree: Tree) -> Commit:
        branch = spec.get("output_branch", "master")
        for _ in range(100):
            try:
                head = self.pfs.inspect_branch(job.pipeline, branch).head
            except NotFound:
                head = None
            if head == job.output_commit:  # landed before a restart
                return self.pfs.inspect_commit(job.pipeline, head)
            commit = Commit(job.output_commit, job.pipeline, branch, head, "auto", job.started or now(),
                            provenance=self._provenance(job), pipeline=job.pipeline,
                            pipeline_version=job.pipeline_version, job=job.id)
            try:
                return self.pfs.land_commit(commit, tree, head)
            except PreconditionFailed:
                continue
        raise JobFailed(f"output branch {branch} of {job.pipeline} keeps moving; cannot commit")


def _counts(results: dict[str, DatumResult]) -> dict[str, int]:
    """Datum counts and bytes moved, as JobInfo fields, from a job's results."""
    rs = list(results.values())
    return {
        "datums_processed": sum(r.state == "success" for r in rs),
        "datums_skipped": sum(r.state == "skipped" for r in rs),
        "datums_failed": sum(r.state == "failed" for r in rs),
        "datums_recovered": sum(r.state == "success" and r.attempts > 1 for r in rs),
        "bytes_downloaded": sum(r.bytes_downloaded for r in rs),
        "bytes_uploaded": sum(r.bytes_uploaded for r in rs),
    }
