"""A long job history costs the readers that only need the newest jobs
nothing: list-pipeline and the console's DAG read each pipeline's job
pointers (two requests a pipeline), a watch stream reads each finished job
once, and a store from before the pointers gets them on first use (see
test_job_pointers.py for the controller).

Requests are counted on the real store (local directory and S3 over HTTP)
by a wrapper that passes every call through."""

from __future__ import annotations

import io

import pytest
from helpers import Counted, job_history

from pipectl.client import Client
from pipectl.pps import keys

JOBS = 1000


def test_list_pipeline_reads_two_records_a_pipeline_whatever_the_history(store):
    newest = job_history(Client(store), 3, JOBS)
    Client(store).list_pipelines()  # builds the pointers of a store from before them, once
    counted = Counted(store)
    summaries = Client(counted).list_pipelines()
    assert {s.info.name: s.last_job.id for s in summaries} == {n: j.id for n, j in newest.items()}
    reads = counted.calls["read"] + counted.calls["read_versioned"]
    assert counted.calls["list"] == 1 and reads <= 3 * 3, counted.calls  # info, pointer, job per pipeline
    assert Client(counted).latest_job("p1").id == newest["p1"].id
    counted.calls.clear()  # the newest few jobs (flush-commit reads 5): no listing
    assert [j.id for j in Client(counted).pps.list_jobs("p1", limit=5)] == \
        [j.id for j in Client(store).pps.list_jobs("p1")[:5]]
    assert counted.calls["list"] == 0, counted.calls


def test_a_store_from_before_the_pointer_gets_it_on_first_use(store):
    newest = job_history(Client(store), 2, 40)
    client = Client(store)
    assert [s.last_job.id for s in client.list_pipelines()] == [newest["p0"].id, newest["p1"].id]
    assert all(store.exists(keys.job_pointers(name)) for name in newest)
    assert not any(store.exists(keys.legacy_newest_job(name)) for name in newest)
    for name in newest:  # deleted pointers are rebuilt the same way
        store.delete(keys.job_pointers(name))
    assert Client(store).latest_job("p1").id == newest["p1"].id


def test_the_pointer_never_moves_back_to_an_older_job(store):
    client = Client(store)
    newest = job_history(client, 1, 3)["p0"]
    older = client.pps.list_jobs("p0")[-1]
    client.pps.change_pointers("p0", lambda p: p.add_recent(older.id, older.created))  # a late writer
    assert client.pps.newest_job("p0").id == newest.id


@pytest.mark.parametrize("store_url", ["local"], indirect=True)
def test_a_poll_with_a_cache_reads_only_unfinished_jobs(store):
    job_history(Client(store), 2, 300, unfinished=4)
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
