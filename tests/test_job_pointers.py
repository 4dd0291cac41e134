"""A controller whose cost does not grow with the job history (issue #23):
each pipeline's job pointers (pipectl/pps/pointers.py) name its recent and
unfinished jobs, so an idle step reads a few records a pipeline however many
jobs there are; a store written before the pointers gets them on first use;
and a creator or finisher killed between two writes leaves pointers that
readers repair, never a job lost.

Requests are counted on the real store by a wrapper that passes every call
through (helpers.Counted); a writer "killed between two writes" is the
same sequence of store calls stopped at that point."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from helpers import Counted, job_history, put

from pipectl.client import Client
from pipectl.pfs.model import now
from pipectl.pps import keys
from pipectl.pps import spec as specs
from pipectl.pps.controller import Controller
from pipectl.pps.executors.process import ProcessExecutor
from pipectl.pps.jobs import job_id, output_commit_id
from pipectl.pps.model import JobInfo
from pipectl.pps.pointers import RECENT, JobPointers

PIPELINES = 3


def _idle_step_requests(store, jobs: int) -> tuple[int, int, Counted]:
    """Requests of a fresh controller's first step and of its next (idle)
    step, on a store with ``jobs`` job records of PIPELINES pipelines whose
    pointers are already built."""
    job_history(Client(store), PIPELINES, jobs)
    Client(store).list_pipelines()  # builds the pointers (the one-time upgrade)
    counted = Counted(store)
    controller = Controller(counted, ProcessExecutor(store.url))
    controller._triggers_swept = float("inf")  # the trigger sweep (every 2 s) is no part of this count
    assert controller.step() is False  # nothing to do: every job is done
    first = counted.requests
    counted.calls.clear()
    assert controller.step() is False
    return first, counted.requests, counted


@pytest.mark.parametrize("store_url", ["local"], indirect=True)
def test_an_idle_controller_step_reads_per_pipeline_not_per_job(store, tmp_path):
    from pipectl.store import open_store
    first, idle, counted = _idle_step_requests(store, 10_000)
    # a pipeline listing; per pipeline its record, its job pointers, its
    # input's branch and head commit; no job record, no job listing
    assert counted.calls["list"] == 1 and idle <= 1 + 4 * PIPELINES, counted.calls
    assert first == idle  # a fresh controller reads no more
    small = open_store("file://" + str(tmp_path / "small"))
    assert _idle_step_requests(small, PIPELINES)[:2] == (first, idle)  # the same with one job a pipeline


def test_a_store_written_the_old_way_is_upgraded_on_first_use(store):
    newest = job_history(Client(store), 2, 40, unfinished=3)
    old = {k: store.read(k) for k in store.list(keys.jobs())}
    counted = Counted(store)
    controller = Controller(counted, ProcessExecutor(store.url))
    pointers = controller.job_pointers(controller.pps.list_pipelines())
    jobs = Client(store).pps.list_jobs()
    for name in ("p0", "p1"):
        mine = [j for j in jobs if j.pipeline == name]
        assert pointers[name].recent == [(j.id, j.created) for j in mine[:RECENT]]
        assert pointers[name].pending == [(j.id, j.created) for j in reversed(mine) if not j.done]
        indexed = next(j for j in mine if j.done)
        assert pointers[name].indexed == (indexed.id, indexed.created, indexed.datum_index)
        assert not store.exists(keys.legacy_newest_job(name))
    assert [j.id for j in controller.pps.unfinished_jobs(pointers)] == [j.id for j in jobs[:3][::-1]]
    assert {k: store.read(k) for k in store.list(keys.jobs())} == old  # records untouched
    counted.calls.clear()  # done once: the next reader writes nothing and lists nothing
    assert controller.job_pointers(controller.pps.list_pipelines()) == pointers
    assert counted.calls["write"] == 0 and counted.calls["list"] == 1, counted.calls
    assert Client(store).latest_job("p1").id == newest["p1"].id


@pytest.mark.parametrize("store_url", ["local"], indirect=True)
def test_damaged_pointers_are_built_again(store):
    """A job-pointers record that cannot be parsed (a damaged disk, a hand
    edit) is built again from the job records, as a missing one is, in
    place of the damaged one: no step fails on it."""
    client = Client(store)
    job_history(client, 1, 5, unfinished=1)
    intact = client.pps.job_pointers("p0")
    for damage in (b"{not json", b'{"recent": 3}', b"[]"):
        store.write(keys.job_pointers("p0"), damage)
        assert client.pps.job_pointers("p0") == intact
        assert JobPointers.from_json(store.read(keys.job_pointers("p0"))) == intact


def _job(client: Client, pipeline: str, commit: str, created: str | None = None) -> JobInfo:
    p = client.pps.inspect_pipeline(pipeline)
    inputs = [{"name": "in", "repo": "in", "branch": "master", "commit": commit}]
    jid = job_id(p, inputs)
    return JobInfo(jid, pipeline, p.version, p.salt, p.transform_hash, inputs, output_commit_id(jid),
                   created=created or now())


@pytest.mark.parametrize("store_url", ["local"], indirect=True)
def test_a_creator_killed_between_its_writes_loses_no_job(store):
    client = Client(store)
    job_history(client, 1, 3)
    pps = client.pps
    # killed after naming its job, before writing the record: the entry is
    # passed over (no record), and dropped once old
    early = _job(client, "p0", "a" * 32)
    pps.change_pointers("p0", lambda p: p.add_pending(early.id, early.created))
    assert pps.unfinished_jobs({"p0": pps.job_pointers("p0")}) == []
    assert pps.newest_job("p0").id != early.id
    assert pps.job_pointers("p0").pending == [(early.id, early.created)]  # a live creator may still write it
    stale = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    pps.change_pointers("p0", lambda p: p.drop(early.id) | p.add_pending(early.id, stale))
    assert pps.unfinished_jobs({"p0": pps.job_pointers("p0")}) == []
    assert pps.job_pointers("p0").pending == []

    # killed after writing the record, before naming it among the recent
    # jobs: still pending, so the newest job and a fresh controller find it
    late = _job(client, "p0", "b" * 32)
    pps.change_pointers("p0", lambda p: p.add_pending(late.id, late.created))
    store.write(keys.job("p0", late.id), late.to_json(), if_absent=True)
    assert pps.newest_job("p0").id == late.id
    assert pps.list_jobs("p0", limit=1)[0].id == late.id
    fresh = Controller(store, ProcessExecutor(store.url))
    assert fresh.next_job().id == late.id
    assert pps.create_job(late) is False  # the record exists: not made twice


@pytest.mark.parametrize("store_url", ["local"], indirect=True)
def test_a_finisher_killed_before_settling_is_settled_by_the_next_reader(store):
    client = Client(store)
    job_history(client, 1, 2, unfinished=1)
    pps = client.pps
    running = pps.unfinished_jobs({"p0": pps.job_pointers("p0")})[0]
    done = dataclasses.replace(running, state="success", finished=now(), datum_index="f" * 64)
    _, version = store.read_versioned(keys.job("p0", running.id))
    store.write(keys.job("p0", running.id), done.to_json(), if_match=version)  # then killed
    assert pps.job_pointers("p0").pending == [(running.id, running.created)]
    assert pps.unfinished_jobs({"p0": pps.job_pointers("p0")}) == []
    pointers = pps.job_pointers("p0")
    assert pointers.pending == [] and pointers.indexed == (done.id, done.created, done.datum_index)


def _copy_pipeline(store) -> Client:
    """A client of ``store`` with repo ``in`` holding /a and pipeline ``copy`` over it."""
    client = Client(store)
    client.create_repo("in")
    put(client.pfs, "in", {"/a": "1"})
    client.pps.create_pipeline(specs.validate({
        "pipeline": {"name": "copy"}, "input": {"pfs": {"repo": "in", "glob": "/*"}},
        "transform": {"image": "local", "cmd": ["sh", "-c", "cp /pfs/in/* /pfs/out/"]}}))
    return client


def test_a_controller_runs_a_job_whose_creator_was_killed(store, tmp_path):
    """A job named pending and written, its creator killed before the rest:
    a new controller runs it (a real worker process), and the pointers end
    with no pending job, the job the newest and the one indexed."""
    client = _copy_pipeline(store)
    head = client.pfs.inspect_commit("in", "master")
    job = _job(client, "copy", head.id)
    client.pps.change_pointers("copy", lambda p: p.add_pending(job.id, job.created))
    store.write(keys.job("copy", job.id), job.to_json(), if_absent=True)
    Controller(store, ProcessExecutor(store.url)).run(exit_when_idle=True)
    final = client.inspect_job(job.id, "copy")
    assert final.state == "success", final.reason
    pointers = client.pps.job_pointers("copy")
    assert pointers.pending == [] and pointers.recent == [(job.id, job.created)]
    assert pointers.indexed == (job.id, job.created, final.datum_index)
    assert client.pfs.inspect_commit("copy", "master").id == job.output_commit


def test_pointers_round_trip_and_stay_bounded():
    jobs = [JobInfo(f"{n:032x}", "p", 1, "", "", [], "", state="success" if n % 3 else "running",
                    created=f"2026-01-01T00:00:{n:02d}.000000Z", datum_index=f"{n:064x}") for n in range(50)]
    pointers = JobPointers.from_jobs(reversed(jobs))
    assert len(pointers.recent) == RECENT and pointers.recent[0] == (jobs[-1].id, jobs[-1].created)
    assert [i for i, _ in pointers.pending] == [j.id for j in jobs if not j.done]
    assert pointers.indexed[0] == jobs[-1].id
    assert JobPointers.from_json(pointers.to_json()) == pointers
    assert json.loads(pointers.to_json())["recent"][0] == [jobs[-1].id, jobs[-1].created]
    assert pointers.add_recent(jobs[0].id, jobs[0].created) is False  # older than every recent one


def test_racing_creators_are_all_named(store):
    """Creators on many threads change one pipeline's pointers by
    compare-and-swap: none is lost, each job is pending once."""
    from pipectl.parallel import parallel
    client = Client(store)
    job_history(client, 1, 1)
    jobs = [_job(client, "p0", f"{n:032x}", f"2026-02-01T00:00:{n:02d}.000000Z") for n in range(30)]
    assert all(parallel(client.pps.create_job, jobs, threads=8))
    pointers = client.pps.job_pointers("p0")
    assert pointers.pending == [(j.id, j.created) for j in jobs]
    assert pointers.recent == [(j.id, j.created) for j in jobs[::-1][:RECENT]]
    assert [j.id for j in client.pps.unfinished_jobs({"p0": pointers})] == [j.id for j in jobs]


def test_a_controller_killed_after_naming_its_job_does_not_hold_the_job_back(store, tmp_path):
    """A controller killed after naming a new job among its pipeline's
    pending jobs and before writing the job's record (create_job's first
    two writes): the next controller must create and run that job, not
    pass it over as existing (it is named) until the pending entry is
    dropped, ten minutes later, nor exit idle with the input unprocessed."""
    client = _copy_pipeline(store)
    controller = Controller(store, ProcessExecutor(store.url))
    pipeline = client.pps.inspect_pipeline("copy")
    jid = job_id(pipeline, controller.current_inputs(pipeline))
    # the killed controller's one write: the job named pending, no record
    client.pps.change_pointers("copy", lambda p: p.add_pending(jid, now()))
    Controller(store, ProcessExecutor(store.url)).run(exit_when_idle=True)
    job = client.inspect_job(jid, "copy")
    assert job.state == "success", job.reason
    assert client.pfs.inspect_commit("copy", "master").id == job.output_commit
    assert client.pps.job_pointers("copy").pending == []
