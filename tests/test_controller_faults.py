"""Faults in the middle of a job (issue #3): the controller killed with
SIGKILL and restarted, a worker process killed with SIGKILL.

Everything is real: the controller is ``pipectl controller
--exit-when-idle`` in a subprocess, its workers are real
``pipectl.pps.worker`` processes (found by scanning /proc), user code is
``sh -c``. Each datum appends its name to a file outside /pfs, so the tests
count how often every datum really ran.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from helpers import assert_clean_error, files_of, put, run_cli, wait_for

LOCAL = pytest.mark.parametrize("store_url", ["local"], indirect=True)


def runs_of(path) -> list[list[str]]:
    """The lines user code appended to ``path``, split into words."""
    return [line.split() for line in open(path).read().splitlines()] if os.path.exists(path) else []


def worker_pids(job_id: str) -> list[int]:
    """Live ``pipectl.pps.worker`` processes of ``job_id`` (a /proc scan; a
    zombie has an empty cmdline and is not listed). Words are split on NUL
    and on spaces: a worker forked by the process executor sets its command
    line as one string."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().replace(b"\0", b" ").split()
        except OSError:
            continue
        if b"pipectl.pps.worker" in argv and job_id.encode() in argv:
            pids.append(int(entry))
    return pids


def datums_running_under(pid: int) -> set[str]:
    """The datum ids (``PACH_DATUM_ID``) in the environment of the processes
    descending from ``pid`` (its user code, inside its sandbox)."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), list(children.get(pid, []))
    while todo:
        child = todo.pop()
        todo += children.get(child, [])
        try:
            with open(f"/proc/{child}/environ", "rb") as f:
                env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        except OSError:
            continue
        if b"PACH_DATUM_ID" in env:
            found.add(env[b"PACH_DATUM_ID"].decode())
    return found


def slow_pipeline(spec_file, name: str, runs, n_workers: int, seconds: float) -> str:
    """A spec file: each datum logs ``<file> <datum id>`` to ``runs``,
    sleeps, then writes its output."""
    script = (f"echo \"$(basename $in) $PACH_DATUM_ID\" >> {runs}; sleep {seconds}; "
              "printf 'out of %s' \"$(cat $in)\" > /pfs/out/$(basename $in)")
    return spec_file({"pipeline": {"name": name}, "transform": {"image": "pipectl/test:1", "cmd": ["sh", "-c", script]},
                      "input": {"pfs": {"repo": "in", "glob": "/*"}}, "parallelism_spec": {"constant": n_workers}})


def test_controller_killed_mid_job_resumes_without_rerunning_recorded_datums(
        pfs, pps, store, spec_file, background, run_controller, tmp_path):
    """SIGKILL the controller after some datum results are recorded (its
    workers die with it), restart it: the same job completes, datums
    recorded before the kill are not run again, the output commit holds
    each datum's output exactly once and lands once."""
    runs, n = tmp_path / "runs.log", 24
    pfs.create_repo("in")
    put(pfs, "in", {f"/{i:02d}": f"v{i}" for i in range(n)})
    assert run_cli("create-pipeline", "-f", slow_pipeline(spec_file, "slow", runs, 2, 0.2)).code == 0

    controller = background("controller", "--exit-when-idle", "--poll-interval", "0.05")
    job = wait_for(lambda: next(iter(pps.list_jobs("slow")), None), what="the job")
    prefix = f"job-data/slow/{job.id}/results/"
    wait_for(lambda: [k for k in store.list(prefix) if "controller" not in k], what="recorded datum results")
    os.kill(controller.pid, signal.SIGKILL)
    controller.wait(30)
    wait_for(lambda: not worker_pids(job.id), timeout=30, what="workers to die with the controller")
    time.sleep(0.3)  # user processes die with their worker

    recorded = pps.datum_results("slow", job.id)
    assert 0 < len(recorded) < n, "kill came too late or too early"
    assert pps.inspect_job(job.id, "slow").state == "running"
    name_of = {d["id"]: d["inputs"][0]["path"].lstrip("/") for d in pps.plan("slow", job.id)}
    before = runs_of(runs)

    run_controller()
    jobs = pps.list_jobs("slow")
    assert [(j.id, j.state) for j in jobs] == [(job.id, "success")]
    assert (jobs[0].datums_total, jobs[0].datums_failed) == (n, 0)
    ran: dict[str, int] = {}
    for name, _ in runs_of(runs):
        ran[name] = ran.get(name, 0) + 1
    assert set(ran) == {f"{i:02d}" for i in range(n)}
    for datum_id in recorded:
        assert ran[name_of[datum_id]] == 1, f"recorded datum {name_of[datum_id]} ran again"
    assert len(runs_of(runs)) > len(before)  # the rest ran after the restart
    assert files_of(pfs, "slow") == {f"/{i:02d}": f"out of v{i}" for i in range(n)}
    commits = pfs.list_commits("slow", "master")
    assert [c.id for c in commits] == [job.output_commit]
    assert commits[0].job == job.id and len(pfs.read_tree(commits[0]).files) == n


@LOCAL
def test_killed_worker_is_restarted_and_its_datums_retried(cli, pfs, pps, store, spec_file, background, tmp_path):
    """SIGKILL one worker mid-datum: the controller starts a new worker,
    the datums the dead one had not recorded run again, the job succeeds
    with every output, and list-job's RESTART column shows the restart."""
    runs, n = tmp_path / "runs.log", 12
    pfs.create_repo("in")
    put(pfs, "in", {f"/{i:02d}": f"v{i}" for i in range(n)})
    assert cli("create-pipeline", "-f", slow_pipeline(spec_file, "slow", runs, 2, 0.3)).code == 0

    controller = background("controller", "--exit-when-idle", "--poll-interval", "0.05")
    job = wait_for(lambda: next(iter(pps.list_jobs("slow")), None), what="the job")
    pids = wait_for(lambda: len(worker_pids(job.id)) == 2 and worker_pids(job.id), what="two workers")
    victim, in_flight = wait_for(lambda: next(((p, d) for p in pids if (d := datums_running_under(p))), None),
                                 what="a running datum")
    os.kill(victim, signal.SIGKILL)
    recorded = set(pps.datum_results("slow", job.id))

    assert controller.wait(120) == 0, controller.err_path.read_text()
    final = pps.inspect_job(job.id, "slow")
    assert final.state == "success" and final.restarts >= 1
    assert files_of(pfs, "slow") == {f"/{i:02d}": f"out of v{i}" for i in range(n)}
    unrecorded = in_flight - recorded
    assert unrecorded, "the killed worker had no datum in flight"
    ran: dict[str, int] = {}
    for _, datum in runs_of(runs):
        ran[datum] = ran.get(datum, 0) + 1
    assert all(ran[datum] >= 2 for datum in unrecorded), (unrecorded, ran)

    lines = cli("list-job", "-p", "slow").out.splitlines()
    header = lines[0]
    restart_col = header.index("RESTART")
    assert int(lines[1][restart_col:].split()[0]) >= 1
    assert cli("inspect-job", job.id).out.count(f"Restarts: {final.restarts}") == 1


def test_worker_killed_right_after_fork_dies_at_once():
    """A forked worker killed before it has made itself the leader of its own
    process group (the first thing it does) is still killed at once, not
    waited for."""
    from pipectl.pps.executors.process import ProcessHandle

    pid = os.fork()
    if pid == 0:  # a worker slow to reach its setsid
        try:
            time.sleep(0.5)
            os.setsid()
            time.sleep(60)
        finally:
            os._exit(0)
    handle = ProcessHandle(pid)
    began = time.monotonic()
    handle.kill()
    assert handle.poll() == -signal.SIGKILL
    assert time.monotonic() - began < 0.4


@LOCAL
def test_leader_election_is_refused_with_the_process_executor(cli, store):
    """The process executor forks its workers, which a lease renewal thread
    would make unsafe: --leader-elect with it is a clean error."""
    assert_clean_error(cli("controller", "--leader-elect", "--exit-when-idle"), "--leader-elect", "process")
