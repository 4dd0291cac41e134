"""Workload 11: an idle controller step on a long job history.

A controller polls its store every ``--poll-interval`` even when there is
nothing to do; with job pointers (``pipectl/pps/pointers.py``) that step
reads a few records a pipeline, whatever the history. Measured in-process
(``Controller.step()``, the body of the controller's loop: no CLI start),
on a store with 3 pipelines and N job records, beside the same step on the
same pipelines with one job each, in the same run.
"""

from __future__ import annotations

import datetime as dt
import io
import time

from . import harness as h
from .report import Row

PIPELINES = 3
STEP_MS = 50.0
"""Target: an idle step on the local store with the full history (ms)."""


def _store_with_history(url: str, jobs: int):
    """``PIPELINES`` pipelines over repo ``in`` (one commit) and ``jobs``
    finished job records among them, written directly, as a pipectl from
    before job pointers wrote them (so the first step also does the
    one-time upgrade); the newest job of each pipeline is over ``in``'s
    head, so there is nothing to do. Returns the store."""
    from pipectl.client import Client
    from pipectl.parallel import parallel
    from pipectl.pps import keys
    from pipectl.pps.jobs import job_id, output_commit_id
    from pipectl.pps.model import JobInfo
    client = Client.open(url)
    client.create_repo("in")
    head = client.put_files("in", "master", [("/x", io.BytesIO(b"x"))])[0].id
    for i in range(PIPELINES):
        client.create_pipeline({"pipeline": {"name": f"p{i}"}, "input": {"pfs": {"repo": "in", "glob": "/*"}},
                                "transform": {"image": "local", "cmd": ["true"]}})
    infos = client.pps.list_pipelines()
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def record(n: int) -> tuple[str, bytes]:
        p = infos[n % PIPELINES]
        commit = head if n >= jobs - PIPELINES else f"{n:032x}"
        inputs = [{"name": "in", "repo": "in", "branch": "master", "commit": commit}]
        jid, stamp = job_id(p, inputs), (start + dt.timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return keys.job(p.name, jid), JobInfo(jid, p.name, 1, p.salt, p.transform_hash, inputs,
                                              output_commit_id(jid), state="success", created=stamp).to_json()
    store = client.pps.store
    parallel(lambda n: store.write(*record(n)), range(jobs))
    return store


def _timed_step(controller) -> float:
    """Milliseconds of one ``controller.step()``, which must find nothing to do."""
    t = time.perf_counter()
    if controller.step():
        raise h.BenchError("the controller found work on a finished history")
    return (time.perf_counter() - t) * 1000


def _steps(urls: list[str], jobs: list[int], repeats: int) -> tuple[list[list[float]], list[float]]:
    """For each store ``urls[k]`` given ``jobs[k]`` job records: the
    milliseconds of ``repeats`` idle steps of one controller, and of its
    first step (the upgrade). The controllers take turns, step by step, so
    that the machine's load falls on each alike."""
    from pipectl.pps.controller import Controller
    from pipectl.pps.executors.process import ProcessExecutor
    controllers = [Controller(_store_with_history(url, n), ProcessExecutor(url)) for url, n in zip(urls, jobs)]
    try:
        firsts = [_timed_step(c) for c in controllers]
        samples: list[list[float]] = [[] for _ in controllers]
        for _ in range(repeats):
            for c, out in zip(controllers, samples):
                out.append(_timed_step(c))
    finally:
        for c in controllers:
            c.executor.close()
    return samples, firsts


def bench_controller_idle(quick: bool, url: str, baseline_url: str) -> Row:
    """11. Median ms of an idle ``Controller.step()`` on ``url`` with
    3 pipelines and 10,000 job records (2,000 quick), against the same step
    on ``baseline_url`` with one job a pipeline. Target < 50 ms."""
    jobs, repeats = (2_000, 20) if quick else (10_000, 50)
    h.log(f"local: 11 idle controller step, {jobs:,} jobs vs {PIPELINES}")
    h.settle()
    (big, small), (upgrade, _) = _steps([url, baseline_url], [jobs, PIPELINES], repeats)
    value, base = h.median(big), h.median(small)
    return Row("local", f"11 idle controller step, {jobs:,} jobs", round(value, 2), "ms", f"median of {repeats}",
               round(base, 2), f"same step, {PIPELINES} jobs", target=f"< {STEP_MS:g} ms",
               target_met=value < STEP_MS, samples=big, baseline_samples=small,
               notes=f"{PIPELINES} pipelines, in-process; first step on the store as written before job "
                     f"pointers (builds them from the {jobs:,} records, once): {upgrade:,.0f} ms",
               extra={"first_step_ms": upgrade, "jobs": jobs, "pipelines": PIPELINES})
