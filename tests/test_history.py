"""A long job history costs the readers that only need the newest jobs
nothing: list-pipeline and the console's DAG read each pipeline's
newest-job pointer (two requests a pipeline), a watch stream reads each
finished job once, and a store from before the pointer gets it on first use.

Requests are counted on the real store (local directory and S3 over HTTP)
by a wrapper that passes every call through."""

from __future__ import annotations

import collections
import datetime as dt
import io

import pytest

from pipectl.client import Client
from pipectl.pps import keys
from pipectl.pps.jobs import job_id, output_commit_id
from pipectl.pps.model import JobInfo

JOBS = 1000


class Counted:
    """An object store whose calls are counted (by method name) and passed on."""

    def __init__(self, store):
        self._store, self.calls = store, collections.Counter()

    def __getattr__(self, name):
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args, **kw):
            self.calls[name] += 1
            return attr(*args, **kw)
        return call


def _history(client: Client, pipelines: int, jobs: int, unfinished: int = 0) -> dict[str, JobInfo]:
    """``pipelines`` pipelines over repo ``in`` and ``jobs`` job records
    among them, one a second, the last ``unfinished`` still running;
    returns each pipeline's newest job."""
    client.create_repo("in")
    for i in range(pipelines):
        client.create_pipeline({"pipeline": {"name": f"p{i}"}, "input": {"pfs": {"repo": "in", "glob": "/*"}},
                                "transform": {"image": "local", "cmd": ["true"]}})
    infos = client.pps.list_pipelines()
    start, newest = dt.datetime(2026, 1, 1, tzinfo=dt.UTC), {}
    for n in range(jobs):
        p = infos[n % pipelines]
        inputs = [{"name": "in", "repo": "in", "branch": "master", "commit": f"{n:032x}"}]
        jid, stamp = job_id(p, inputs), (start + dt.timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        state = "running" if n >= jobs - unfinished else "success"
        newest[p.name] = JobInfo(jid, p.name, 1, p.salt, p.transform_hash, inputs, output_commit_id(jid),
                                 state=state, created=stamp)
        client.pps.create_job(newest[p.name])
    return newest


def test_list_pipeline_reads_two_records_a_pipeline_whatever_the_history(store):
    newest = _history(Client(store), 3, JOBS)
    counted = Counted(store)
    summaries = Client(counted).list_pipelines()
    assert {s.info.name: s.last_job.id for s in summaries} == {n: j.id for n, j in newest.items()}
    reads = counted.calls["read"] + counted.calls["read_versioned"]
    assert counted.calls["list"] == 1 and reads <= 3 * 3, counted.calls  # info, pointer, job per pipeline
    assert Client(counted).latest_job("p1").id == newest["p1"].id


def test_a_store_from_before_the_pointer_gets_it_on_first_use(store):
    newest = _history(Client(store), 2, 40)
    for name in newest:
        store.delete(keys.newest_job(name))
    client = Client(store)
    assert [s.last_job.id for s in client.list_pipelines()] == [newest["p0"].id, newest["p1"].id]
    assert all(store.exists(keys.newest_job(name)) for name in newest)


def test_the_pointer_never_moves_back_to_an_older_job(store):
    client = Client(store)
    newest = _history(client, 1, 3)["p0"]
    older = client.pps.list_jobs("p0")[-1]
    client.pps.point_newest_job(older)  # a late writer with an older job
    assert client.pps.newest_job("p0").id == newest.id


@pytest.mark.parametrize("store_url", ["local"], indirect=True)
def test_a_poll_with_a_cache_reads_only_unfinished_jobs(store):
    _history(Client(store), 2, 300, unfinished=4)
    counted = Counted(store)
    client, finished = Client(counted), {}
    assert len(client.pps.current_jobs(finished)) == 300 and len(finished) == 296
    counted.calls.clear()
    jobs = client.pps.current_jobs(finished)
    assert len(jobs) == 300 and counted.calls["read"] == 4, counted.calls
    client.delete_pipeline("p1")  # its records go, and leave the cache
    assert len(client.pps.current_jobs(finished)) == 150 and len(finished) == 148


@pytest.mark.parametrize("store_url", ["local"], indirect=True)
def test_a_commit_watch_reads_the_branches_and_only_new_commits(store):
    """What subscribe-commit and the API's commit stream poll with."""
    from pipectl.pfs.model import now
    client = Client(store)
    client.create_repo("in")
    for i in range(200):
        client.put_files("in", "master", [(f"/f{i}", io.BytesIO(b"x"))])
    counted = Counted(store)
    pfs, since, heads = Client(counted).pfs, now(), {}
    assert pfs.finished_since("in", since, heads) == []  # a look: branches, and the head, once
    counted.calls.clear()
    assert pfs.finished_since("in", since, heads) == []
    assert counted.calls["read"] + counted.calls["read_versioned"] <= 2 and counted.calls["list"] <= 1, counted.calls
    client.put_files("in", "master", [("/a", io.BytesIO(b"a"))])
    client.put_files("in", "master", [("/b", io.BytesIO(b"b"))])
    client.create_branch("in", "dev", "master^")  # an older commit: not new
    new = pfs.finished_since("in", since, heads)
    assert [c.id for c in new] == [c.id for c in client.list_commits("in", "master", 2)][::-1]
    assert pfs.finished_since("in", since, heads) == []
