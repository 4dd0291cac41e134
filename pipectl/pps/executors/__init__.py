"""Executors: how worker processes are started.

Every executor runs the same worker (``pipectl.pps.worker``); they differ only
in where it runs: a local subprocess (``process``, the default), a Docker
container (``docker``) or a Kubernetes pod (``kubernetes``).

The controller asks an executor for the ``count`` workers of a job at once
(:meth:`Executor.start_workers`) and follows them as one
:class:`WorkerGroup`. A worker that fails is replaced by a new one with the
same index, which resumes the datums its predecessor left: the process and
Docker executors restart it themselves (:class:`HandleGroup`); on Kubernetes
the Job controller does.
"""

from __future__ import annotations

import abc
import dataclasses
import logging

from ... import __version__
from ...errors import PipectlError
from ...pfs import names
from ..model import JobInfo, PipelineInfo
from ..runner import SOCKET

log = logging.getLogger("pipectl.executor")

WORKER_IMAGE = f"pipectl/base:{__version__}"
"""pipectl's own image, which runs the worker (the ``storage`` container)
next to user code under the Docker and Kubernetes executors."""
RUNNER_COMMAND = ["python3", "-m", "pipectl.pps.runner", SOCKET, "--empty-tmp"]
"""The ``user`` container's command: the user-code runner, emptying the
container's ``/tmp`` (a volume of the worker's own) before each datum, as the
process executor's sandbox does."""


def spout_environment(pipeline: PipelineInfo, store_url: str) -> dict[str, str]:
    """What a spout's environment adds, the same under every executor: the
    spec's ``transform.env``, then (not to be overridden by it) the store
    the pipectl CLI and client inside commit to and Pachyderm's
    ``PPS_PIPELINE_NAME``/``PPS_PROJECT_NAME``."""
    return {**{k: str(v) for k, v in (pipeline.spec["transform"].get("env") or {}).items()},
            "PIPECTL_STORE": store_url, "PPS_PIPELINE_NAME": names.bare(pipeline.name),
            "PPS_PROJECT_NAME": names.project_of(pipeline.name)}


def worker_command(job: JobInfo, count: int, index: int | None = None, service: bool = False) -> list[str]:
    """The ``storage`` container's command: worker ``index`` of ``count``
    (None: from ``JOB_COMPLETION_INDEX``) of ``job``, laying ``/pfs`` out for
    the runner of :data:`RUNNER_COMMAND`; with ``service``, the worker of a
    service job (see :mod:`pipectl.pps.longlived`)."""
    where = ["--index", str(index)] if index is not None else []
    return ["python3", "-m", "pipectl.pps.worker", "--pipeline", job.pipeline, "--job", job.id, *where,
            "--count", str(count), "--root", "/pfs", "--usercode", SOCKET, *(["--service"] if service else [])]


class ExecutorError(PipectlError):
    """A worker could not be started (e.g. its image does not exist); the
    job fails with this message."""


@dataclasses.dataclass
class GroupStatus:
    """What a :class:`WorkerGroup` reports on each poll.

    ``succeeded``: workers that finished with exit status 0; ``failures``:
    worker exits with another status (or lost workers) so far, each one
    replaced; ``error``: set when the group cannot go on (the job fails with
    it)."""

    count: int
    succeeded: int = 0
    failures: int = 0
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.succeeded >= self.count


class WorkerGroup(abc.ABC):
    """The running workers of one job."""

    @abc.abstractmethod
    def poll(self) -> GroupStatus:
        """The group's state now; replaces failed workers (up to the limit
        given to :meth:`Executor.start_workers`)."""

    @abc.abstractmethod
    def kill(self) -> dict[str, str]:
        """Stop every worker now (idempotent) and release what they hold.
        Returns the logs that would vanish with the workers (worker name ->
        text; Kubernetes pods), for the controller to keep; else ``{}``."""

    def detach(self) -> None:
        """The controller is stopping: workers that can outlive it (Kubernetes
        Jobs) are left running for the next controller to adopt; others are
        killed."""
        self.kill()


class Executor(abc.ABC):
    """Starts workers for jobs."""

    name: str

    @abc.abstractmethod
    def start_workers(self, job: JobInfo, spec: dict, count: int, max_failures: int) -> WorkerGroup:
        """Start workers ``0..count-1`` for ``job`` (run with ``spec``); a
        group that saw more than ``max_failures`` failures stops replacing
        workers. Raises ExecutorError if they cannot be started."""

    keeps_long_lived = False
    """Whether the workers of spouts and services outlive the controller
    (Kubernetes Deployments): then a stopping controller leaves them
    running, and a starting one removes those of pipelines gone meanwhile
    (:meth:`stop_other_long_lived`)."""

    def stop_other_long_lived(self, keep: set[str]) -> None:  # noqa: B027 (only executors that keep them act)
        """Stop the spout and service workers left running of pipelines not in ``keep``."""

    def stop_long_lived(self, kind: str, pipeline: str) -> None:  # noqa: B027 (only executors that keep them act)
        """Stop the ``kind`` (spout or service) worker of ``pipeline`` that
        this executor keeps without a handle (one an earlier controller
        started, or one half made)."""

    def start_spout(self, pipeline: PipelineInfo) -> WorkerHandle:
        """Start the long-lived worker of spout ``pipeline`` (see
        :mod:`pipectl.pps.longlived`). Raises ExecutorError when it cannot
        start, or this executor runs no spouts."""
        raise ExecutorError(f"the {self.name} executor does not run spouts")

    def start_service(self, job: JobInfo, spec: dict) -> WorkerHandle:
        """Start the long-lived worker serving ``job``, a job of service
        pipeline ``spec`` (see :mod:`pipectl.pps.longlived`), replacing the
        pipeline's earlier one where the executor keeps it. Raises
        ExecutorError when it cannot start, or this executor runs no services."""
        raise ExecutorError(f"the {self.name} executor does not run services")

    def job_done(self, job: JobInfo) -> dict[str, str]:
        """Every datum of ``job`` has a result: release whatever is still
        held for it (e.g. a Kubernetes Job that finished while no controller
        was following it). Returns worker logs as :meth:`WorkerGroup.kill`."""
        return {}

    def close(self) -> None:  # noqa: B027 (optional: most executors hold nothing)
        """Release executor resources (called when the controller stops)."""


class WorkerHandle(abc.ABC):
    """One started worker of a :class:`HandleGroup`."""

    @abc.abstractmethod
    def poll(self) -> int | None:
        """The exit status once the worker ended, else None."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Stop the worker now (idempotent) and release what it holds."""


class HandleExecutor(Executor):
    """An executor that starts workers one by one (process, Docker)."""

    @abc.abstractmethod
    def start(self, job: JobInfo, spec: dict, index: int, count: int, service: bool = False) -> WorkerHandle:
        """Start worker ``index`` of ``count`` for ``job`` (with
        ``service``: the worker serving service job ``job``)."""

    def start_workers(self, job: JobInfo, spec: dict, count: int, max_failures: int) -> WorkerGroup:
        return HandleGroup(self, job, spec, count, max_failures)

    def start_service(self, job: JobInfo, spec: dict) -> WorkerHandle:
        return self.start(job, spec, 0, 1, service=True)


class HandleGroup(WorkerGroup):
    """Workers started one by one; a worker that exits non-zero is started
    again with the same index."""

    def __init__(self, executor: HandleExecutor, job: JobInfo, spec: dict, count: int, max_failures: int):
        self.executor, self.job, self.spec = executor, job, spec
        self.status = GroupStatus(count)
        self.max_failures = max_failures
        self.handles: dict[int, WorkerHandle] = {}
        try:
            for i in range(count):
                self.handles[i] = executor.start(job, spec, i, count)
        except BaseException:
            self.kill()
            raise

    def poll(self) -> GroupStatus:
        for i, h in list(self.handles.items()):
            code = h.poll()
            if code is None:
                continue
            del self.handles[i]
            if code == 0:
                self.status.succeeded += 1
                continue
            self.status.failures += 1
            log.warning("job %s: worker %d exited with %s (%d failures)", self.job.id, i, code,
                        self.status.failures)
            if self.status.failures > self.max_failures:
                self.status.error = f"workers kept failing ({self.status.failures} failures); see controller log"
            else:
                self.handles[i] = self.executor.start(self.job, self.spec, i, self.status.count)
        return self.status

    def kill(self) -> dict[str, str]:
        for h in self.handles.values():
            h.kill()
        self.handles.clear()
        return {}


def make_executor(name: str, store_url: str, **options) -> Executor:
    """The executor called ``name``. Raises InvalidArgument for unknown names,
    ExecutorError if its engine cannot be reached."""
    from ...errors import InvalidArgument
    if name == "process":
        from .process import ProcessExecutor
        return ProcessExecutor(store_url, **options)
    if name == "docker":
        from .docker import DockerExecutor
        return DockerExecutor(store_url, **options)
    if name == "kubernetes":
        from .kubernetes import KubernetesExecutor
        return KubernetesExecutor(store_url, **options)
    raise InvalidArgument(f"unknown executor {name!r}: choose process, docker or kubernetes")
