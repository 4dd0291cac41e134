"""Spouts (Pachyderm's ``spout`` pipelines): long-lived user code that
commits data from outside (a queue, a feed, a mailbox) into its output repo.

A spout has no input and no jobs. While its pipeline is running, the
controller keeps one worker of it alive (:class:`Spouts`): the
transform's ``cmd`` with the ``PIPECTL_STORE`` of the controller (or the
address of a pipectl server) in its environment, so that the pipectl CLI
(``pipectl put-file <pipeline> master /x -f -``) or the Python client
(``pipectl.sdk``) inside commits to the output repo, as ``pachctl`` and
``pachyderm_sdk`` do in Pachyderm 2.x spouts. A worker that exits (or
dies) is started again after a back-off that doubles from 1 s up to 60 s
and is reset once a worker has run for a minute; a new pipeline version
replaces it; stopping or deleting the pipeline stops it.

On Kubernetes the worker is a Deployment of one replica (and, with
``spout.service``, a Service exposing its ``internal_port``): Kubernetes
restarts its pod when it dies, and it outlives a controller that stops (a
starting controller removes those of pipelines deleted meanwhile).
"""

from __future__ import annotations

import dataclasses
import logging
import time

from .executors import Executor, WorkerHandle
from .model import PipelineInfo

log = logging.getLogger("pipectl.spouts")

BACKOFF_SECONDS = (1.0, 60.0)
"""The first and the longest wait before a spout that exited is started again."""
HEALTHY_SECONDS = 60.0
"""A spout that ran this long before exiting is restarted after the first back-off again."""


def is_spout(pipeline: PipelineInfo) -> bool:
    """Whether ``pipeline`` is a spout."""
    return "spout" in pipeline.spec


@dataclasses.dataclass
class _Running:
    version: int
    handle: WorkerHandle | None
    started: float
    backoff: float = BACKOFF_SECONDS[0]
    next_start: float = 0.0
    restarts: int = 0


class Spouts:
    """The spout workers one controller keeps alive, by pipeline name."""

    def __init__(self, executor: Executor):
        self.executor = executor
        self.running: dict[str, _Running] = {}
        self._swept = False  # whether workers left by an earlier controller were checked

    def tend(self, pipelines: list[PipelineInfo]) -> None:
        """Make the running spouts of ``pipelines`` (every pipeline there
        is) have one live worker each, at their current version; stop the
        workers of the others."""
        wanted = {p.name: p for p in pipelines if is_spout(p) and p.state == "running"}
        if not self._swept and self.executor.keeps_spouts:
            try:
                self.executor.stop_other_spouts(set(wanted))
                self._swept = True
            except Exception as e:  # noqa: BLE001  (the API server: tried again next time)
                log.warning("cannot check for spouts of deleted pipelines: %s", e)
        for name in list(self.running):
            if name not in wanted:
                self._stop(name, "the pipeline is stopped or deleted")
        now = time.monotonic()
        for name, pipeline in wanted.items():
            spout = self.running.get(name)
            if spout is not None and spout.version != pipeline.version:
                self._stop(name, f"version {pipeline.version} replaces version {spout.version}")
                spout = None
            if spout is not None and spout.handle is not None:
                code = spout.handle.poll()
                if code is None:
                    continue
                spout.handle.kill()  # what it left running in the background goes with it
                ran = now - spout.started
                wait = BACKOFF_SECONDS[0] if ran >= HEALTHY_SECONDS else spout.backoff
                spout.backoff = min(wait * 2, BACKOFF_SECONDS[1])
                spout.handle, spout.next_start = None, now + wait
                log.warning("spout %s exited with status %s after %.0f s; starting it again in %.0f s", name, code,
                            ran, wait)
            if spout is None or now >= spout.next_start:
                self._start(pipeline, spout)

    def _start(self, pipeline: PipelineInfo, spout: _Running | None) -> None:
        try:
            handle = self.executor.start_spout(pipeline)
        except Exception as e:  # noqa: BLE001  (one spout's spec or image must not stop the controller)
            log.error("spout %s cannot start: %s", pipeline.name, e)
            handle = None
        if spout is None:
            spout = self.running[pipeline.name] = _Running(pipeline.version, None, 0.0)
        else:
            spout.restarts += 1
        spout.handle, spout.started = handle, time.monotonic()
        if handle is None:  # tried again after the back-off, which doubles
            spout.next_start = spout.started + spout.backoff
            spout.backoff = min(spout.backoff * 2, BACKOFF_SECONDS[1])
        else:
            log.info("spout %s (version %d) started%s", pipeline.name, pipeline.version,
                     f", restart {spout.restarts}" if spout.restarts else "")

    def _stop(self, name: str, why: str) -> None:
        spout = self.running.pop(name)
        if spout.handle is not None:
            try:
                spout.handle.kill()
            except Exception as e:  # noqa: BLE001  (the engine or API server: logged, the controller goes on)
                log.error("spout %s: cannot stop it: %s", name, e)
                return
            log.info("spout %s stopped: %s", name, why)

    def close(self) -> None:
        """The controller is stopping: stop every worker, unless the executor
        keeps them (a Kubernetes Deployment goes on, for the next controller)."""
        if self.executor.keeps_spouts:
            self.running.clear()
            return
        for name in list(self.running):
            self._stop(name, "the controller is stopping")
