"""Executors: how worker processes are started.

Every executor runs the same worker (``pipectl.pps.worker``); they differ only
in where it runs: a local subprocess (``process``, the default), a Docker
container (``docker``) or a Kubernetes pod (``kubernetes``).
"""

from __future__ import annotations

import abc

from ...errors import PipectlError
from ..model import JobInfo


class ExecutorError(PipectlError):
    """A worker could not be started (e.g. its image does not exist); the
    job fails with this message."""


class WorkerHandle(abc.ABC):
    """A started worker."""

    @abc.abstractmethod
    def poll(self) -> int | None:
        """The exit status once the worker ended, else None."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Stop the worker now (idempotent) and release what it holds."""


class Executor(abc.ABC):
    """Starts workers for jobs."""

    name: str

    @abc.abstractmethod
    def start(self, job: JobInfo, spec: dict, index: int, count: int) -> WorkerHandle:
        """Start worker ``index`` of ``count`` for ``job`` (run with ``spec``)."""

    def close(self) -> None:
        """Release executor resources (called when the controller stops)."""


def make_executor(name: str, store_url: str, **options) -> Executor:
    """The executor called ``name``. Raises InvalidArgument for unknown names."""
    from ...errors import InvalidArgument
    if name == "process":
        from .process import ProcessExecutor
        return ProcessExecutor(store_url, **options)
    if name == "docker":
        from .docker import DockerExecutor
        return DockerExecutor(store_url)
    raise InvalidArgument(f"unknown executor {name!r}: choose process or docker")
