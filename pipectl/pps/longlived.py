"""Long-lived workers: spouts and services (Pachyderm's ``spout`` and
``service`` pipelines), which run until stopped instead of once per datum.

- A **spout** has no input and no jobs: user code commits data from
  outside (a queue, a feed, a mailbox) into its output repo with the
  pipectl CLI (``pipectl put-file <pipeline> master /x -f -``) or the
  Python client (``pipectl.sdk``) inside, as ``pachctl`` and
  ``pachyderm_sdk`` do in Pachyderm 2.x spouts. Its worker is the
  transform's ``cmd`` with the store (``PIPECTL_STORE``) in its
  environment.
- A **service** serves what its input holds: each new set of input
  commits makes a job of exactly one datum, and its worker lays that datum
  out at ``/pfs`` and runs the ``cmd`` on it until a newer job replaces it
  (the replaced job then ends ``success``, as in Pachyderm). The job is
  ``running`` while its worker serves. ``service.internal_port`` is the
  port user code listens on.

The controller says each round which worker it wants per pipeline
(:class:`Wanted`, with a *generation*: the spout's version, the service's
job) and :class:`LongLived` keeps exactly those running: a worker of an
older generation is stopped before the new one starts, and a worker that
exits (or dies) is started again after a back-off that doubles from 1 s up
to 60 s and is reset once a worker has run for a minute. Stopping or
deleting the pipeline stops its worker.

On Kubernetes each worker is a Deployment of one replica (with a Service
for ``spout.service`` and ``service``): Kubernetes restarts its pod when it
dies, and it outlives a controller that stops (a starting controller
removes those of pipelines deleted meanwhile).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable

from .executors import Executor, WorkerHandle
from .model import PipelineInfo

log = logging.getLogger("pipectl.longlived")

BACKOFF_SECONDS = (1.0, 60.0)
"""The first and the longest wait before a worker that exited is started again."""
HEALTHY_SECONDS = 60.0
"""A worker that ran this long before exiting is restarted after the first back-off again."""


def is_spout(pipeline: PipelineInfo) -> bool:
    """Whether ``pipeline`` is a spout."""
    return "spout" in pipeline.spec


def is_service(pipeline: PipelineInfo) -> bool:
    """Whether ``pipeline`` is a service."""
    return "service" in pipeline.spec


def _nothing(why: str, replaced: bool) -> None:
    pass


@dataclasses.dataclass
class Wanted:
    """The worker the controller wants running for one pipeline now.

    ``kind``: ``spout`` or ``service`` (for the log). ``generation``: what
    the worker runs (a spout's version, a service's job id); a worker of
    another generation is replaced. ``start()`` starts it and returns its
    handle, or None when this generation is not to run at all (a service
    job that failed: its record says why); it raises (e.g.
    ExecutorError) when it cannot start now, and is called again after the
    back-off. ``ended(why, replaced)`` is called once when the generation's
    worker is stopped for good: ``replaced`` by another generation, or not
    (its pipeline stopped)."""

    kind: str
    generation: str
    start: Callable[[], WorkerHandle | None]
    ended: Callable[[str, bool], None] = _nothing


@dataclasses.dataclass
class _Running:
    wanted: Wanted
    handle: WorkerHandle | None
    started: float
    backoff: float = BACKOFF_SECONDS[0]
    next_start: float = 0.0
    restarts: int = 0


class LongLived:
    """The long-lived workers one controller keeps alive, by pipeline name."""

    def __init__(self, executor: Executor):
        self.executor = executor
        self.running: dict[str, _Running] = {}
        self._swept = False  # whether workers left by an earlier controller were checked

    def tend(self, wanted: dict[str, Wanted], keep: set[str]) -> None:
        """Make the pipelines of ``wanted`` (every one wanted now, by name)
        have one live worker each, of the wanted generation; stop the
        workers of the others. ``keep``: the running spouts and services
        (those wanted and more), whose workers an earlier controller left
        are not removed (a service waiting for an open input commit is not
        wanted yet, but its worker serves on)."""
        if not self._swept and self.executor.keeps_long_lived:
            try:
                self.executor.stop_other_long_lived(keep)
                self._swept = True
            except Exception as e:  # noqa: BLE001  (the API server: tried again next time)
                log.warning("cannot check for the workers of deleted pipelines: %s", e)
        for name in list(self.running):
            if name not in wanted:
                self.stop(name, "the pipeline is stopped or deleted")
        now = time.monotonic()
        for name, want in wanted.items():
            worker = self.running.get(name)
            if worker is not None and worker.wanted.generation != want.generation:
                # A Deployment is replaced in place (its Service keeps its address); a process or container
                # is stopped first (it holds the port).
                self.stop(name, f"replaced by {want.generation}", replaced=True,
                          kill=not self.executor.keeps_long_lived)
                worker = None
            if worker is not None and worker.handle is not None:
                code = worker.handle.poll()
                if code is None:
                    continue
                worker.handle.kill()  # what it left running in the background goes with it
                ran = now - worker.started
                wait = BACKOFF_SECONDS[0] if ran >= HEALTHY_SECONDS else worker.backoff
                worker.backoff = min(wait * 2, BACKOFF_SECONDS[1])
                worker.handle, worker.next_start = None, now + wait
                log.warning("%s %s exited with status %s after %.0f s; starting it again in %.0f s", want.kind, name,
                            code, ran, wait)
            if worker is None or now >= worker.next_start:
                self._start(name, want, worker)

    def _start(self, name: str, want: Wanted, worker: _Running | None) -> None:
        try:
            handle = want.start()
            refused = handle is None
        except Exception as e:  # noqa: BLE001  (one pipeline's spec or image must not stop the controller)
            log.error("%s %s cannot start: %s", want.kind, name, e)
            handle, refused = None, False
        if handle is None:  # nothing of it may serve on (a Deployment an earlier controller left, or half made)
            self._remove(want.kind, name)
        if worker is None:
            worker = self.running[name] = _Running(want, None, 0.0)
        else:
            worker.restarts += 1
        worker.handle, worker.started = handle, time.monotonic()
        if refused:  # not to run until another generation is wanted
            worker.next_start = math.inf
        elif handle is None:  # tried again after the back-off, which doubles
            worker.next_start = worker.started + worker.backoff
            worker.backoff = min(worker.backoff * 2, BACKOFF_SECONDS[1])
        else:
            log.info("%s %s (%s) started%s", want.kind, name, want.generation,
                     f", restart {worker.restarts}" if worker.restarts else "")

    def stop(self, name: str, why: str, replaced: bool = False, kill: bool = True) -> None:
        """Stop the worker of pipeline ``name`` for good (its generation
        ends: see :attr:`Wanted.ended`); the next :meth:`tend` that wants
        one starts it afresh. ``kill=False``: the generation ends but its
        worker is left for the next start to replace."""
        worker = self.running.pop(name, None)
        if worker is None:
            return
        if kill and worker.handle is None:
            self._remove(worker.wanted.kind, name)
        elif kill and worker.handle is not None:
            try:
                worker.handle.kill()
            except Exception as e:  # noqa: BLE001  (the engine or API server: logged, the controller goes on)
                log.error("%s %s: cannot stop it: %s", worker.wanted.kind, name, e)
                return
            log.info("%s %s stopped: %s", worker.wanted.kind, name, why)
        try:
            worker.wanted.ended(why, replaced)
        except Exception as e:  # noqa: BLE001  (the store: the next controller finds the job again)
            log.error("%s %s: %s", worker.wanted.kind, name, e)

    def _remove(self, kind: str, name: str) -> None:
        try:
            self.executor.stop_long_lived(kind, name)
        except Exception as e:  # noqa: BLE001  (the API server: the next start or sweep removes it)
            log.error("%s %s: cannot remove what is left of it: %s", kind, name, e)

    def close(self) -> None:
        """The controller is stopping: stop every worker, unless the executor
        keeps them (a Kubernetes Deployment goes on, for the next
        controller). Their generations do not end: the next controller
        takes them up."""
        if not self.executor.keeps_long_lived:
            for worker in self.running.values():
                if worker.handle is not None:
                    try:
                        worker.handle.kill()
                    except Exception as e:  # noqa: BLE001
                        log.error("cannot stop a worker: %s", e)
        self.running.clear()
