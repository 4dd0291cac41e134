"""Workload 9: the pipectl server's cost over the in-process call it wraps.

On one local store holding a repo, a pipeline and its jobs: the p50
latency of ``GET /api/v1/repos``, ``.../commits/master`` and ``/jobs``
through a real ``pipectl server`` process (one keep-alive HTTP connection),
beside the same operations-layer call in this process, measured in the same
run; how long a watch stream takes to deliver a new commit; and the
console's first paint on a store with a long job history.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time

import requests

from pipectl.parallel import parallel

from . import harness as h
from .report import Row

CALLS = [("list-repo", "/repos", lambda c: c.list_repos()),
         ("inspect-commit", "/repos/in/commits/master", lambda c: c.inspect_commit("in", "master")),
         ("list-job", "/jobs", lambda c: c.list_jobs())]
OVERHEAD_MS = 5.0
"""Target: the API adds less than this at p50 (ms)."""
WATCH_MS = 200.0
"""Target: a watch stream delivers a new commit within this (ms)."""


def _p50(samples: list[float]) -> float:
    return sorted(samples)[len(samples) // 2]


def bench_api(quick: bool, url: str, env: dict) -> list[Row]:
    """Rows for workload 9 on the (local) store ``url``."""
    from pipectl.client import Client
    n = 100 if quick else 500
    def run(*args: str, stdin: bytes | None = None) -> None:
        subprocess.run([sys.executable, "-m", "pipectl", *args], env=env, check=True, input=stdin,
                       capture_output=True, timeout=300)
    run("create-repo", "in")
    for i in range(3):
        run("put-file", "in", "master", f"/f{i}", "-f", "/etc/hostname")
    spec = {"pipeline": {"name": "copy"}, "input": {"pfs": {"repo": "in", "glob": "/*"}},
            "transform": {"image": "local", "cmd": ["sh", "-c", "cp /pfs/in/* /pfs/out/"]}}
    run("create-pipeline", "-f", "-", stdin=json.dumps(spec).encode())
    run("controller", "--exit-when-idle", "--poll-interval", "0.05")
    port = h.free_port()
    server = subprocess.Popen([sys.executable, "-m", "pipectl", "server", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/api/v1"
    session = requests.Session()
    try:
        _wait_up(base + "/repos")
        client = Client.open(url)
        rows = []
        for name, path, call in CALLS:
            call(client)
            session.get(base + path).raise_for_status()
            local, remote = [], []
            for _ in range(n):
                t = time.perf_counter()
                call(client)
                local.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                session.get(base + path).raise_for_status()
                remote.append((time.perf_counter() - t) * 1000)
            overhead = _p50(remote) - _p50(local)
            rows.append(Row("local", f"9 API {name} p50", round(_p50(remote), 2), "ms", f"p50 of {n}",
                            round(_p50(local), 2), "the same call in-process", compare=False,
                            target=f"adds < {OVERHEAD_MS:g} ms", target_met=overhead < OVERHEAD_MS,
                            notes=f"adds {overhead:.2f} ms", samples=remote, baseline_samples=local))
        rows.append(_watch(session, base, client))
        return rows
    finally:
        server.terminate()
        server.wait(15)


def _wait_up(url: str) -> None:
    """Wait (up to 60 s) until GET ``url`` answers 2xx. Raises RuntimeError."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.1)


def _watch(session: requests.Session, base: str, client) -> Row:
    """Time from a put-file's return to its commit's event on the stream (median of 3)."""
    samples = []
    for i in range(3):
        got = threading.Event()
        arrived: list[float] = []

        def listen(got: threading.Event = got, arrived: list[float] = arrived) -> None:
            with session.get(base + "/watch/commits", params={"repo": "in"}, stream=True, timeout=60) as r:
                for line in r.iter_lines(decode_unicode=True):
                    if line == ": watching":
                        got.set()
                    elif line.startswith("event: commit"):
                        arrived.append(time.perf_counter())
                        return
        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        got.wait(30)
        time.sleep(0.3)
        client.put_files("in", "master", [(f"/watch{i}", io.BytesIO(b"x"))])
        done = time.perf_counter()
        listener.join(30)
        if arrived:
            samples.append((arrived[0] - done) * 1000)
    value = h.median(samples) if samples else None
    return Row("local", "9 API watch: a new commit arrives", round(value, 1) if value is not None else None, "ms",
               f"median of {len(samples)}", target=f"< {WATCH_MS:g} ms",
               target_met=value is not None and value < WATCH_MS, compare=False, samples=samples,
               notes="the stream polls the store every 100 ms")


PAINT_MS = 1000.0
"""Target: the console's DAG page paints within this (ms) on a large store."""


def bench_console(url: str, env: dict, pipelines: int = 100, jobs: int = 10_000) -> Row:
    """The console's first paint of its DAG page (``/``), in Debian's
    chromium (Playwright), on a store with ``pipelines`` pipelines and
    ``jobs`` job records (written as records: a history, not run), beside
    the same page on the same pipelines before any job existed. Without
    chromium or Playwright the time to the page's full HTML is reported."""
    import datetime as dt

    from pipectl.client import Client
    from pipectl.pps.jobs import job_id, output_commit_id
    from pipectl.pps.model import JobInfo
    client = Client.open(url)
    client.create_repo("in")
    client.put_files("in", "master", [("/x", io.BytesIO(b"x"))])
    head = client.inspect_commit("in", "master").id
    for i in range(pipelines):
        source = "in" if i < 10 else f"p{i - 10:03d}"  # ten chains of ten
        client.create_pipeline({"pipeline": {"name": f"p{i:03d}"}, "input": {"pfs": {"repo": source, "glob": "/*"}},
                                "transform": {"image": "local", "cmd": ["true"]}})
    infos = client.pps.list_pipelines()
    port = h.free_port()
    server = subprocess.Popen([sys.executable, "-m", "pipectl", "server", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = f"http://127.0.0.1:{port}"
    try:
        _wait_up(root + "/healthz")
        before = _paint(root)
        start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

        def write(n: int) -> None:
            p = infos[n % pipelines]
            inputs = [{"name": "in", "repo": "in", "branch": "master", "commit": head, "n": n}]
            jid = job_id(p, inputs)
            stamp = (start + dt.timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            client.pps.create_job(JobInfo(jid, p.name, 1, p.salt, p.transform_hash, inputs, output_commit_id(jid),
                                          state="success", created=stamp, started=stamp, finished=stamp))
        parallel(write, range(jobs))
        after = _paint(root)
    finally:
        server.terminate()
        server.wait(15)
    value, how = after
    return Row("local", f"9 console first paint: {pipelines} pipelines, {jobs:,} jobs", round(value, 1), "ms",
               f"median of 3, {how}", round(before[0], 1), "the same page before any job", compare=False,
               target=f"< {PAINT_MS:g} ms", target_met=value < PAINT_MS,
               notes=f"{after[0] / before[0]:.2f}x the page without history")


FIRST_PAINT = """new Promise((done) => new PerformanceObserver((list) => {
  const fcp = list.getEntriesByName("first-contentful-paint")[0];
  if (fcp) done(fcp.startTime);
}).observe({type: "paint", buffered: true}))"""
"""The page's first contentful paint (ms from navigation start), once it has happened."""


def _paint(root: str) -> tuple[float, str]:
    """Median of 3 first paints of ``root + '/'`` (ms; after one to warm
    up) and how it was timed."""
    try:
        from playwright.sync_api import sync_playwright
        chromium = "/usr/bin/chromium"
        if not os.path.exists(chromium):
            raise ImportError(chromium)
    except ImportError:
        samples = []
        for i in range(4):
            t = time.perf_counter()
            requests.get(root + "/", timeout=120).raise_for_status()
            if i:
                samples.append((time.perf_counter() - t) * 1000)
        return h.median(samples), "the page's HTML (no chromium)"
    samples = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            for i in range(4):  # the first warms the server and the browser up
                page = browser.new_page()
                page.goto(root + "/", wait_until="load", timeout=120_000)
                if i:
                    samples.append(page.evaluate(FIRST_PAINT))
                page.close()
        finally:
            browser.close()
    return h.median(samples), "first contentful paint in chromium"
