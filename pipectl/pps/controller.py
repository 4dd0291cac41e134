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

import contextlib
import dataclasses
import datetime as dt
import functools
import gc
import hashlib
import logging
import time
from collections.abc import Sequence

from ..errors import Conflict, NotFound, PipectlError, PreconditionFailed
from ..gcpause import gc_paused
from ..parallel import concurrently, parallel
from ..pfs import PFS, triggers
from ..pfs import keys as pfs_keys
from ..pfs.model import Commit, now
from ..pfs.tree import Tree
from ..store import ObjectStore
from . import cron, keys
from . import datums as datum_mod
from . import spec as specs
from .api import PPS
from .egress import check_target, egress, egress_url
from .executors import Executor, ExecutorError, WorkerGroup
from .jobdata import result_counts
from .jobs import job_id, output_commit_id
from .longlived import LongLived, Wanted, is_service, is_spout
from .model import DatumResult, JobInfo, PipelineInfo, SkippedDatums
from .pointers import JobPointers
from .spec import parse_duration

log = logging.getLogger("pipectl.controller")

TRIGGER_SECONDS = 2.0
"""How often the triggers of every branch that pipelines read are evaluated
(those named in specs: every round)."""

MAX_WORKER_RESTARTS = 5
PROGRESS_SECONDS = 1.0  # how often a running job's counts are refreshed
STOP_CHECK_SECONDS = 0.25  # how often a running job's record is read for stop-job
LONG_LIVED_SECONDS = 1.0  # how often spout and service workers are checked while a job runs
PIPELINE_STOPPED = "the pipeline was stopped"
"""The reason of a service job whose worker stop-pipeline (or delete-pipeline) stopped."""


@dataclasses.dataclass
class RunningJob:
    """A job while this controller runs it: its latest record (``job``),
    the spec version it runs, its plan once made (see :meth:`PPS.plan`)
    and the result batches read or written so far (by key; a batch is never
    rewritten, so it is read once; see :meth:`PPS.datum_results`)."""

    job: JobInfo
    spec: dict
    plan: list[dict] = dataclasses.field(default_factory=list)
    batches: dict[str, list[DatumResult]] = dataclasses.field(default_factory=dict)


class JobFailed(Exception):
    """Internal: ends a job run with state ``failure`` and this reason."""


class Superseded(JobFailed):
    """Internal: the output branch moved past the head the job was planned
    on (another controller ran it, or later jobs landed): the job ends
    ``killed`` with this reason and lands nothing."""


class LostLeadership(PipectlError):
    """This controller no longer holds the leader lease; it must stop at once
    (another replica takes over its jobs)."""


class Controller:
    """Watches input branches and runs jobs. ``poll_interval`` in seconds;
    ``egress_dirs``: directories ``file://`` egress targets may lie under."""

    def __init__(self, store: ObjectStore, executor: Executor, poll_interval: float = 0.2,
                 leases: tuple = (), egress_dirs: tuple[str, ...] = ()):
        self.store = store
        self.leases = leases
        """What this controller must hold to run jobs: the store's
        controller lease (a StoreLease, whose ``token`` fences its writes)
        and, with --leader-elect, a Kubernetes Lease (LeaseElector); each
        has ``held`` and ``renew()``. Empty: no election (tests)."""
        self.token = next((lease.token for lease in leases if hasattr(lease, "token")), 0)
        self.pfs = PFS(store)
        self.pps = PPS(store, self.pfs)
        self.executor = executor
        self.poll_interval = poll_interval
        self._existing: set[str] = set()  # keys of job records known to exist (not created again)
        self._triggers_swept = 0.0
        self.egress_dirs = list(egress_dirs)
        """Directories ``file://`` egress may write under (see :func:`.egress.check_target`)."""
        self.long_lived = LongLived(executor)
        self._long_lived_tended = 0.0
        self._service_jobs: dict[str, str] = {}  # the job each service's worker serves, by pipeline

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
            self.long_lived.close()
            self.executor.close()

    def _check_leadership(self) -> None:
        for lease in self.leases:
            lease.renew()
            if not lease.held:
                raise LostLeadership("lost the leader lease; stopping so that another replica takes over")

    def step(self) -> bool:
        """One round: commit due cron ticks, create due jobs, run the next
        one. True if a job was created or ran. Its reads grow with the
        pipelines (their records and job pointers, their inputs' heads) and
        the unfinished jobs, not with the job history (see :mod:`.pointers`)."""
        everything = self.pps.list_pipelines()
        pointers = self.job_pointers(everything)
        unfinished = self.pps.unfinished_jobs(pointers)
        pipelines = [p for p in everything if p.state == "running"]
        self._tend_long_lived(pipelines, {j.id for j in unfinished})
        self.tick_crons(pipelines)
        created = self.create_jobs(pipelines, pointers)
        job = self.next_job(unfinished, created)
        if job is not None:
            self.run_job(job)
        return bool(created or job)

    def _tend_long_lived(self, pipelines: list[PipelineInfo] | None = None,
                         unfinished: set[str] | None = None) -> None:
        """Keep the workers of the running spouts and services alive, each
        of its current version and (services) newest job (see
        :mod:`.longlived`): at each step, and every LONG_LIVED_SECONDS while
        a job runs (reading the pipelines then only when such workers run).
        ``unfinished``: the ids of the unfinished jobs, read by the step; a
        service whose job is no longer among them was stopped (stop-job)."""
        if pipelines is None:
            if not self.long_lived.running or time.monotonic() - self._long_lived_tended < LONG_LIVED_SECONDS:
                return
            pipelines = [p for p in self.pps.list_pipelines() if p.state == "running"]
        self._long_lived_tended = time.monotonic()
        wanted: dict[str, Wanted] = {}
        keep = {p.name for p in pipelines if is_spout(p) or is_service(p)}
        for pipeline in pipelines:
            if is_spout(pipeline):
                wanted[pipeline.name] = Wanted("spout", f"version {pipeline.version}",
                                               functools.partial(self.executor.start_spout, pipeline))
            elif is_service(pipeline):
                service = self._service_wanted(pipeline, unfinished)
                if service is not None:
                    wanted[pipeline.name] = service
        self.long_lived.tend(wanted, keep)

    # services ------------------------------------------------------------
    def _service_wanted(self, pipeline: PipelineInfo, unfinished: set[str] | None) -> Wanted | None:
        """The worker service ``pipeline`` should run now: the one serving
        the job of its current input commits (the one already running while
        an input's head commit is open; None before it has any). Its worker
        is stopped when its job finished (stop-job), as ``unfinished``
        (unfinished job ids; None: not checked) shows."""
        running = self.long_lived.running.get(pipeline.name)
        inputs = self.current_inputs(pipeline)
        if inputs is None:
            return running.wanted if running else None
        jid = job_id(pipeline, inputs)
        if running is not None and running.wanted.generation == f"job {jid}":
            serving = self._service_jobs.get(pipeline.name)
            if running.handle is not None and unfinished is not None and serving not in unfinished:
                self.long_lived.stop(pipeline.name, f"job {serving} was stopped")  # not started again for it
            return running.wanted
        return Wanted("service", f"job {jid}", functools.partial(self._start_service, pipeline, inputs, jid),
                      functools.partial(self._end_service, pipeline.name))

    def _start_service(self, pipeline: PipelineInfo, inputs: list[dict], jid: str):
        """Create (or take up) the service job of ``pipeline`` over
        ``inputs`` (id ``jid``, derived from them; a new id when that job
        was killed by stop-pipeline, so start-pipeline serves again), plan
        its one datum and start its worker; end the pipeline's other
        unfinished jobs (a controller that stopped, or was killed, did not
        see them replaced). Returns the worker's handle, or None when the job
        fails (not exactly one datum, the worker cannot start) or was
        stopped by stop-job."""
        job = JobInfo(jid, pipeline.name, pipeline.version, pipeline.salt, pipeline.transform_hash, inputs,
                      output_commit=output_commit_id(jid), created=now(), executor=self.executor.name, service=True)
        if not self.pps.create_job(job):
            job = self.pps.inspect_job(jid, pipeline.name)
            if job.state == "killed" and job.reason == PIPELINE_STOPPED:  # start-pipeline: serve afresh
                restart = hashlib.sha256(f"{jid}:restart:{now()}".encode()).hexdigest()[:32]
                job = dataclasses.replace(job, id=restart, output_commit=output_commit_id(restart), created=now(),
                                          state="created", reason="", started=None, finished=None,
                                          datums_total=0, output_parent=None, output_parent_set=False)
                self.pps.create_job(job)
        self._service_jobs[pipeline.name] = job.id
        pointers = self.pps.job_pointers(pipeline.name)
        for other, _ in pointers.pending:
            if other != job.id and self._is_service_job(pipeline.name, other):
                self._end_service(pipeline.name, f"replaced by job {job.id}", True, other)
        if job.done:
            return None
        run = RunningJob(job, pipeline.spec)
        try:
            self._plan(run)
            if len(run.plan) != 1:
                raise JobFailed(f"services must have a single datum; job {job.id} has {len(run.plan)} "
                                "(a service's inputs take glob \"/\")")
            if run.job.state == "created":
                self._update(run, state="running", started=now())
            handle = self.executor.start_service(run.job, pipeline.spec)
        except (JobFailed, ExecutorError) as e:
            log.warning("service job %s of %s failed: %s", job.id, pipeline.name, e)
            self._update(run, state="failure", reason=str(e))
            return None
        log.info("job %s of %s serves %s", job.id, pipeline.name,
                 ", ".join(f"{i['repo']}@{i['commit'][:8]}" for i in inputs))
        return handle

    def _is_service_job(self, pipeline: str, jid: str) -> bool:
        try:
            return self.pps.inspect_job(jid, pipeline).service
        except NotFound:
            return False

    def _end_service(self, pipeline: str, why: str, replaced: bool, jid: str | None = None) -> None:
        """The worker of service job ``jid`` (default: the one this
        controller last started for ``pipeline``) stopped for good: the job
        ends ``success`` when a newer job replaced it (as Pachyderm finishes
        a service's job then), else ``killed`` (the pipeline stopped or
        deleted: ``why`` is then the job's reason)."""
        jid = jid or self._service_jobs.get(pipeline)
        if jid is None:
            return
        with contextlib.suppress(NotFound):  # deleted with its pipeline
            self.pps.update_job(pipeline, jid, state="success" if replaced else "killed",
                                reason=why if replaced else PIPELINE_STOPPED)

    def tick_crons(self, pipelines: list[PipelineInfo]) -> None:
        """Commit the due ticks of the (running) ``pipelines``' cron inputs
        (at most one per input per round, so missed ones are made up a round
        each), then move the triggered branches they read whose triggers
        hold."""
        now = dt.datetime.now(dt.UTC)
        triggered: set[str] = set()
        # Triggers in specs, each round; those of other branches pipelines
        # read (made by create-branch --trigger), every TRIGGER_SECONDS.
        sweep = time.monotonic() - self._triggers_swept > TRIGGER_SECONDS
        if sweep:
            self._triggers_swept = time.monotonic()
        for pipeline in pipelines:
            for c in cron.cron_inputs(pipeline.spec["input"]):
                try:
                    cron.tick_due(self.pfs, c, now)
                except PipectlError as e:  # the next round tries again
                    log.warning("pipeline %s: cron input %s: %s", pipeline.name, c["name"], e)
            triggered |= {p["repo"] for p in specs.pfs_inputs(pipeline.spec["input"]) if sweep or p.get("trigger")}
        for repo in sorted(triggered):
            try:
                for branch in triggers.fire(self.pfs, repo, now):
                    log.info("trigger: branch %s of %s moved to its source's head", branch, repo)
            except PipectlError as e:
                log.warning("triggers of repo %s: %s", repo, e)

    # creating jobs -------------------------------------------------------
    def current_inputs(self, pipeline: PipelineInfo) -> list[dict] | None:
        """The input commits a job would run on now, or None while some input
        has no finished head commit yet, or while the heads disagree about a
        common upstream branch (as in Pachyderm, a pipeline reading ``a``
        directly and through pipeline ``p`` waits until ``p`` has processed
        ``a``'s newest commit, so it gets one job per commit of ``a``, never
        one on new data beside stale upstream output)."""
        inputs: list[dict] = []
        upstream: dict[tuple[str, str], str] = {}
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

    def create_jobs(self, pipelines: list[PipelineInfo] | None = None,
                    pointers: dict[str, JobPointers] | None = None) -> list[JobInfo]:
        """Create the due job of each running pipeline (of ``pipelines``, or
        of every one); return those created. A due job that ``pointers``
        (pipeline name -> its job pointers, read if not given) name among
        the recent jobs exists already: no request is made for it."""
        created = []
        pipelines = self.pps.list_pipelines() if pipelines is None else pipelines
        if pointers is None:
            pointers = self.job_pointers(pipelines)
        for pipeline in pipelines:
            if pipeline.state != "running" or is_spout(pipeline) or is_service(pipeline):
                continue
            inputs = self.current_inputs(pipeline)
            if inputs is None:
                continue
            jid = job_id(pipeline, inputs)
            # Named among the recent jobs, its record exists (a job is named there only once written). Named
            # only pending, it may have no record yet (its creator was killed between the two writes):
            # create_job writes it then, and otherwise finds it (once: then it is in _existing).
            known = pointers.get(pipeline.name)
            if (known is not None and any(i == jid for i, _ in known.recent)) \
                    or keys.job(pipeline.name, jid) in self._existing:
                continue
            job = JobInfo(jid, pipeline.name, pipeline.version, pipeline.salt, pipeline.transform_hash,
                          inputs, output_commit=output_commit_id(jid),
                          created=now(), executor=self.executor.name)
            if self.pps.create_job(job):
                log.info("job %s created for pipeline %s on %s", jid, pipeline.name,
                         ", ".join(f"{i['repo']}@{i['commit'][:8]}" for i in inputs))
                created.append(job)
            else:
                self._existing.add(keys.job(pipeline.name, jid))
        return created

    def job_pointers(self, pipelines: list[PipelineInfo]) -> dict[str, JobPointers]:
        """Pipeline name -> its job pointers, for each of ``pipelines``
        (read at once)."""
        return dict(zip([p.name for p in pipelines], parallel(lambda p: self.pps.job_pointers(p.name), pipelines)))

    def next_job(self, unfinished: Sequence[JobInfo] | None = None,
                 created: Sequence[JobInfo] = ()) -> JobInfo | None:
        """The oldest unfinished job (jobs of one pipeline run in order)
        among ``unfinished`` (those pending in the job pointers of every
        pipeline, paused ones too, see :meth:`PPS.unfinished_jobs`: a read
        a pending job, none for the history; read if not given) and the
        jobs just ``created``."""
        if unfinished is None:
            unfinished = self.pps.unfinished_jobs(self.job_pointers(self.pps.list_pipelines()))
        # a service job runs as long as its worker serves (see _tend_long_lived)
        pending = {j.id: j for j in unfinished if not j.service}
        pending.update({j.id: j for j in created if j.id not in pending})
        return min(pending.values(), key=lambda j: j.created) if pending else None

    # running a job -------------------------------------------------------
    def run_job(self, job: JobInfo) -> JobInfo:
        """Run ``job`` to a final state; return its final record."""
        claim = {"claim": self.token} if self.token and job.claim != self.token else {}
        start = {"state": "running", "started": now(), "executor": self.executor.name} \
            if job.state == "created" else {}
        spec, job = concurrently(
            lambda: self.pps.pipeline_version(job.pipeline, job.pipeline_version),
            lambda: self.pps.update_job(job.pipeline, job.id, **start, **claim) if start or claim else job)
        run = RunningJob(job, spec)
        try:
            self._plan(run)
            self._finish(run, self._execute(run))
        except Superseded as e:
            log.warning("job %s of %s superseded: %s", job.id, job.pipeline, e)
            self._update(run, state="killed", reason=f"superseded: {e}")
        except (JobFailed, ExecutorError) as e:
            log.warning("job %s of %s failed: %s", job.id, job.pipeline, e)
            self._update(run, state="failure", reason=str(e))
        return run.job

    def _update(self, run: RunningJob, **changes) -> None:
        """Compare-and-swap ``changes`` into the running job's record."""
        run.job = self.pps.update_job(run.job.pipeline, run.job.id, **changes)

    def _previous_index(self, job: JobInfo) -> tuple[str | None, dict]:
        """The datum index of the latest earlier finished job of this
        pipeline (its hash, and cache key -> outputs of the datums it
        completed; None and empty if there is none), as the pipeline's job
        pointers name it (``indexed``: no job record is read). A named job
        created after this one (run out of order) is not used: then every
        datum runs."""
        indexed = self.pps.job_pointers(job.pipeline).indexed
        if indexed is None or indexed[0] == job.id or indexed[1] > job.created:
            return None, {}
        index = indexed[2]
        try:
            return index, self.pps.datum_index(index)
        except NotFound:
            return None, {}

    def _plan(self, run: RunningJob) -> None:
        """Fill in ``run.plan``: the job's datums, those processed before
        marked as skipped (reusing the previous job's datum index)."""
        job = run.job
        if job.datums_total:  # planned before (see PPS.write_plan)
            run.plan = self.pps.plan(job.pipeline, job.id)
            if run.plan:
                return

        def read_input(i: dict) -> tuple[tuple[str, str], tuple[str, Tree]]:
            commit = self.pfs.inspect_commit(i["repo"], i["commit"])
            return (i["repo"], i["branch"]), (commit.id, self.pfs.read_tree(commit))

        with gc_paused():  # a container or more per datum, and no cycles
            (index_hash, previous), parent, *trees = concurrently(
                lambda: self._previous_index(job), lambda: self._output_head(run),
                *[functools.partial(read_input, i) for i in job.inputs])
            found = datum_mod.compute(run.spec["input"], dict(trees))
            plan, todo, seen = [], [], set()
            for d in found:
                if d.id in seen:
                    continue
                seen.add(d.id)
                key = datum_mod.cache_key(job.transform_hash, job.salt, d.id)
                reuse = key in previous and not job.service  # a service serves its datum, processed or not
                entry = d.to_dict(files=not reuse)
                entry["cache_key"] = key
                plan.append(entry)
                if not reuse:
                    todo.append(entry)
            skipped = len(plan) - len(todo)
            self.pps.write_plan(job.pipeline, job.id, plan, todo,
                                SkippedDatums(index_hash, now()) if skipped else None, previous, run.batches)
        run.plan = plan
        fence = {} if job.output_parent_set else {"output_parent": parent, "output_parent_set": True}
        self._update(run, datums_total=len(plan), datums_skipped=skipped, **fence)
        log.info("job %s: %d datums, %d skipped (processed before)", job.id, len(plan), skipped)

    def _execute(self, run: RunningJob) -> dict[str, DatumResult]:
        """Run workers until every datum has a result; return the results."""
        deadline = parse_duration(run.spec.get("job_timeout"))
        started = time.monotonic()
        recorded = None  # how many results there were when the last worker group started
        while True:
            results = self.pps.datum_results(run.job.pipeline, run.job.id, run.batches)
            remaining = [d for d in run.plan if d["id"] not in results]
            if not remaining or any(r.state == "failed" for r in results.values()):
                self._keep_logs(run.job, self.executor.job_done(run.job))
                return results
            if recorded == len(results):  # workers that ran to the end recorded nothing
                raise JobFailed(f"the workers ended without recording any of the {len(remaining)} datums "
                                "left; is the pipectl in the image older than the controller's?")
            recorded = len(results)
            count = max(1, min(int(run.spec.get("parallelism_spec", {}).get("constant", 1)), len(remaining)))
            # Shards are taken over the whole todo list (written once), so a
            # datum keeps its worker index while the worker count does.
            group = self.executor.start_workers(run.job, run.spec, count, MAX_WORKER_RESTARTS * count)
            try:
                self._follow(run, group, started + deadline if deadline else None)
            except (KeyboardInterrupt, LostLeadership):
                group.detach()  # the next controller adopts workers that outlive this one
                raise
            except BaseException:
                self._keep_logs(run.job, group.kill())
                raise
            self._keep_logs(run.job, group.kill())

    def _keep_logs(self, job: JobInfo, logs: dict[str, str]) -> None:
        """Store the worker logs an executor handed back as its workers went."""
        if logs:
            self.pps.write_worker_logs(job.pipeline, job.id, logs)

    def _follow(self, run: RunningJob, group: WorkerGroup, deadline: float | None) -> None:
        """Wait for ``group`` to finish, keeping the job record current
        (progress, restarts). Raises JobFailed on worker errors, timeout
        (``deadline``, monotonic seconds) or stop-job."""
        reported = checked = time.monotonic()
        failures = 0
        while True:
            time.sleep(0.05)
            if time.monotonic() - reported > PROGRESS_SECONDS:
                self._update(run, **result_counts(self.pps.datum_results(run.job.pipeline, run.job.id, run.batches)))
                reported = time.monotonic()
            status = group.poll()
            if status.failures > failures:
                self._update(run, restarts=run.job.restarts + status.failures - failures)
                failures = status.failures
            if status.error:
                raise JobFailed(status.error)
            if status.done:
                return
            if deadline and time.monotonic() > deadline:
                raise JobFailed(f"job timed out after {run.spec['job_timeout']}")
            if time.monotonic() - checked > STOP_CHECK_SECONDS:
                checked = time.monotonic()
                if self._stopped(run.job):
                    raise JobFailed("killed")
            self._tend_long_lived()
            self._check_leadership()

    def _stopped(self, job: JobInfo) -> bool:
        try:
            return self.pps.inspect_job(job.id, job.pipeline).state == "killed"
        except NotFound:
            return True

    def _finish(self, run: RunningJob, results: dict[str, DatumResult]) -> None:
        """Land the output commit of a job whose datums all have results and
        record its final state. Raises JobFailed (a failed datum, clashing
        outputs, an output branch that keeps moving)."""
        job, plan = run.job, run.plan
        ok = {d: r for d, r in results.items() if r.state in ("success", "skipped")}
        failed = [r for r in results.values() if r.state == "failed"]

        def land() -> Commit | JobFailed:
            if failed:
                r = failed[0]
                tail = "\n".join(r.log.rstrip().splitlines()[-15:])
                return JobFailed(f"{r.error}\n{tail}".rstrip())
            try:
                return self._land(run, [(d["id"], ok[d["id"]].outputs) for d in plan if d["id"] in ok])
            except JobFailed as e:  # two datums wrote one path, or the branch kept moving
                return e

        # The datum index (kept for the next job even when this one fails) is
        # written beside the landing; the job record names it after both.
        index_hash, commit = concurrently(
            lambda: self.pps.write_datum_index({r.cache_key: r.outputs for r in ok.values()}), land)
        counts = dict(result_counts(results), datums_total=len(plan), datum_index=index_hash)
        if isinstance(commit, JobFailed):
            self._update(run, **counts)  # a failed job shows its counts too
            raise commit
        url = egress_url(run.spec)
        if url:
            self._update(run, state="egressing", **counts)
            try:
                check_target(url, getattr(self.store, "url", ""), self.egress_dirs)
                copied = egress(self.pfs, job.pipeline, commit.id, url, each=self._check_leadership)
            except LostLeadership:
                raise
            except Exception as e:  # noqa: BLE001  (a target outside pipectl: any failure fails the job, named)
                raise JobFailed(f"egress of {job.pipeline}@{commit.id} to {url} failed: {e}") from None
            counts["egress"] = {"url": url, "files": copied.files, "bytes": copied.bytes}
            log.info("job %s: egressed %d files (%d bytes) to %s", job.id, copied.files, copied.bytes, url)
        log.info("job %s of %s succeeded: %d processed, %d skipped; output %s@%s", job.id, job.pipeline,
                 counts["datums_processed"], counts["datums_skipped"], job.pipeline, commit.id)
        self._update(run, state="success", finished=now(), **counts)

    def _output_head(self, run: RunningJob) -> str | None:
        """The head commit of the job's output branch (None if it has none)."""
        try:
            return self.pfs.inspect_branch(run.job.pipeline, run.spec.get("output_branch", "master")).head
        except NotFound:
            return None

    def _land(self, run: RunningJob, outputs: list[tuple[str, dict]]) -> Commit:
        """Land the job's output commit holding ``outputs`` (datum id,
        {path: [size, refs]}) on its output branch (see
        :meth:`PFS.land_output`), fenced: only onto the head the job was
        planned on (``JobInfo.output_parent``). Raises Superseded when the
        branch has moved past it, JobFailed for clashing outputs."""
        job = run.job
        branch = run.spec.get("output_branch", "master")
        provenance = self.pps.input_provenance(job.inputs)  # the same whatever the head
        for _ in range(100):
            head = self._output_head(run)
            if head == job.output_commit:  # landed before a restart, or by another controller
                return self.pfs.inspect_commit(job.pipeline, head)
            if self.token and self.pps.inspect_job(job.id, job.pipeline).claim != self.token:
                raise Superseded(f"another controller took job {job.id} over; its output is not landed here")
            if job.output_parent_set and head != job.output_parent:
                raise Superseded(f"output branch {branch} of {job.pipeline} moved to {head} after the job was "
                                 f"planned on {job.output_parent}; its output is not landed")
            commit = Commit(job.output_commit, job.pipeline, branch, head, "auto", job.started or now(),
                            provenance=provenance, pipeline=job.pipeline,
                            pipeline_version=job.pipeline_version, job=job.id)
            try:
                return self.pfs.land_output(commit, outputs)
            except Conflict as e:
                if self.pfs.store.exists(pfs_keys.commit(job.pipeline, job.output_commit)):
                    raise Superseded(str(e)) from None  # landed elsewhere, on another parent
                raise JobFailed(str(e)) from None
            except PreconditionFailed:
                continue
        raise JobFailed(f"output branch {branch} of {job.pipeline} keeps moving; cannot commit")
