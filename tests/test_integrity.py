"""Integrity and hostile input (issue: integrity and security): commits are
created once and never move backwards or loop, names never reach outside
the store, racing creators get what they were told, bad specs and globs get
one line, user code does not see the store's credentials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
from helpers import assert_clean_error, file_bytes, files_of, ok, put, wait_for

from pipectl.pfs import keys
from pipectl.pfs.model import Commit
from pipectl.pps import spec as specs
from pipectl.pps.controller import Controller, RunningJob, Superseded
from pipectl.pps.executors.process import ProcessExecutor


def copy_pipeline(name: str = "copy", repo: str = "in", **extra) -> dict:
    return dict({"pipeline": {"name": name},
                 "transform": {"image": "local", "cmd": ["sh", "-c", "cp -r /pfs/in/. /pfs/out/"]},
                 "input": {"pfs": {"repo": repo, "glob": "/"}}}, **extra)


def test_a_stalled_controller_never_lands_a_stale_output(store, pfs, pps):
    """Controller A plans and runs a job, then stalls before landing it;
    meanwhile controller B runs the same job and the next one. When A goes
    on, its landing is refused: the branch keeps B's newer head, the commit
    records are as B wrote them, and history has no loop. (Before commit
    records were create-only and landing fenced, A rewrote the first
    output commit with the newer one as parent: a loop.)"""
    pfs.create_repo("in")
    put(pfs, "in", {"/a": "1"})
    pps.create_pipeline(specs.validate(copy_pipeline()))
    a = Controller(store, ProcessExecutor(store.url))
    a.create_jobs()
    job = a.next_job()
    run = RunningJob(a.pps.update_job("copy", job.id, state="running"), pps.pipeline_version("copy", 1))
    a._plan(run)
    results = a._execute(run)  # A stalls here, its datums done

    b = Controller(store, ProcessExecutor(store.url))
    assert b.step()  # B runs the same job to the end
    first = pfs.inspect_commit("copy", "master")
    put(pfs, "in", {"/b": "2"})
    while b.step():
        pass
    second = pfs.inspect_commit("copy", "master")
    assert second.parent == first.id

    with pytest.raises(Superseded, match="moved"):
        a._finish(run, results)
    assert pfs.inspect_commit("copy", "master").id == second.id
    assert pfs.inspect_commit("copy", first.id).parent is None
    assert [c.id for c in pfs.list_commits("copy")] == [second.id, first.id]
    assert files_of(pfs, "copy") == {"/a": "1", "/b": "2"}


def test_a_looping_history_fails_with_one_line(store, pfs, cli):
    """A store whose commit records loop (as an earlier version could leave
    one) makes list-commit and ~N fail with one line, not hang."""
    pfs.create_repo("r")
    c1 = put(pfs, "r", {"/a": "1"})
    c2 = put(pfs, "r", {"/a": "2"})
    damaged = Commit.from_json(store.read(f"repos/r/commits/{c1.id}.json"))
    damaged.parent = c2.id
    store.write(f"repos/r/commits/{c1.id}.json", damaged.to_json())
    assert_clean_error(cli("list-commit", "r", timeout=30), "loops")
    assert_clean_error(cli("inspect-commit", "r", "master~5", timeout=30), "loops")


def test_an_object_cut_short_is_an_error_and_putting_its_bytes_again_repairs_it(store_url, store, pfs, cli):
    """An object cut short under its name (outside pipectl: a crash of the
    machine can leave a file written without fsync so) is never served as
    the file: get-file fails with one line. On the local store, putting
    the same bytes again where they are not known (another repo) replaces
    it (an S3 object is written whole or not at all, so the S3 store never
    makes one)."""
    data = os.urandom(3 << 20)
    pfs.create_repo("r")
    put(pfs, "r", {"/f": data})
    ref = pfs.file_entry("r", "master", "/f").objects[0]
    key = keys.object_key(ref)
    store.write(key, store.read(key)[:1000])
    assert_clean_error(cli("get-file", "r", "master", "/f", timeout=60), "damaged")
    if store_url.startswith("s3://"):
        return
    pfs.create_repo("r2")
    put(pfs, "r2", {"/g": data})
    assert file_bytes(pfs, "r")["/f"] == data


@pytest.mark.parametrize("args", [
    ("delete-repo", "../../victim"),
    ("inspect-repo", "../../victim"),
    ("delete-branch", "r", "../../../../victim"),
    ("inspect-commit", "../../victim", "master"),
    ("list-commit", "r", "../../victim"),
    ("list-job", "-p", "../victim"),
    ("inspect-job", "../../victim"),
])
def test_names_with_dot_dot_never_reach_outside_the_store(tmp_path, monkeypatch, cli, args):
    """On the local store, where a key is a path (S3 has no outside to reach)."""
    monkeypatch.setenv("PIPECTL_STORE", f"file://{tmp_path}/store")
    ok(cli("create-repo", "r"))
    victim = tmp_path / "victim.json"
    victim.write_text("keep me")
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "info.json").write_text("keep me too")
    assert_clean_error(cli(*args), "invalid")
    assert victim.read_text() == "keep me"
    assert (tmp_path / "victim" / "info.json").read_text() == "keep me too"


def test_output_branch_is_checked_as_a_branch_name(store_url, cli, spec_file):
    ok(cli("create-repo", "in"))
    result = cli("create-pipeline", "-f", spec_file(copy_pipeline(output_branch="../../../../outside/evil")))
    assert_clean_error(result, "output_branch", "invalid branch name")


def test_racing_create_pipeline_runs_the_spec_of_the_caller_told_created(store_url, store, cli, spec_file):
    """Six racing create-pipeline calls, each with its own command: exactly
    one is told it created the pipeline, and version 1 (what jobs run) is
    its spec."""
    ok(cli("create-repo", "in"))
    for trial in range(3):
        name = f"race{trial}"
        specs = [spec_file(copy_pipeline(name) | {"description": f"caller {n}"}) for n in range(6)]
        procs = [subprocess.Popen([sys.executable, "-m", "pipectl", "create-pipeline", "-f", s],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for s in specs]
        codes = [p.wait(120) for p in procs]
        assert codes.count(0) == 1, codes
        winner = f"caller {codes.index(0)}"
        version1 = json.loads(store.read(f"pipelines/{name}/versions/1.json"))
        info = json.loads(store.read(f"pipelines/{name}/info.json"))
        assert (version1["description"], info["spec"]["description"]) == (winner, winner)


def test_racing_updates_keep_every_version_as_swapped(store_url, store, pps, cli, spec_file):
    ok(cli("create-repo", "in"))
    ok(cli("create-pipeline", "-f", spec_file(copy_pipeline())))

    def update(n: int) -> None:
        pps.__class__(store).create_pipeline(specs.validate(copy_pipeline() | {"description": str(n)}), update=True)

    threads = [threading.Thread(target=update, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    info = pps.inspect_pipeline("copy")
    assert info.version == 7
    seen = {pps.pipeline_version("copy", v)["description"] for v in range(2, 8)}
    assert seen == {str(n) for n in range(6)}  # each update is one version; none overwrote another


@pytest.mark.parametrize("glob", ["[]", "/[z-a]", "/[!]"])
def test_bad_globs_get_one_line(store_url, cli, spec_file, glob):
    ok(cli("create-repo", "in"))
    result = cli("create-pipeline", "-f", spec_file(copy_pipeline() | {"input": {"pfs": {"repo": "in", "glob": glob}}}))
    assert_clean_error(result, "invalid glob")


def test_hostile_spec_files_get_one_line(store_url, cli, tmp_path, spec_file):
    ok(cli("create-repo", "in"))
    binary = tmp_path / "spec.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    assert_clean_error(cli("create-pipeline", "-f", str(binary)), "not")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert_clean_error(cli("create-pipeline", "-f", str(deep)), "nested")
    assert_clean_error(cli("create-pipeline", "-f", spec_file(copy_pipeline(datum_timeout="0s"))),
                       "datum_timeout", "longer than 0s")


def test_a_cycle_of_pipelines_is_refused(store_url, cli, spec_file):
    ok(cli("create-repo", "in"))
    ok(cli("create-pipeline", "-f", spec_file(copy_pipeline("p1"))))
    ok(cli("create-pipeline", "-f", spec_file(copy_pipeline("p2", repo="p1"))))
    result = cli("update-pipeline", "-f", spec_file(copy_pipeline("p1", repo="p2")))
    assert_clean_error(result, "cycle")


@pytest.mark.parametrize("name", ["a" * 256, "tab\there", "bell\x07"])
def test_names_a_worker_cannot_lay_out_are_refused_at_put_file(store_url, cli, name):
    ok(cli("create-repo", "r"))
    assert_clean_error(cli("put-file", "r", "master", "/" + name, "-f", "-", input=b"x"), "invalid path")


def test_get_file_writes_into_a_fifo_in_place(store_url, cli, tmp_path):
    ok(cli("create-repo", "r"))
    ok(cli("put-file", "r", "master", "/f", "-f", "-", input=b"through the pipe\n"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    ok(cli("get-file", "r", "master", "/f", "-o", str(fifo)))
    reader.join(30)
    assert got == [b"through the pipe\n"]
    assert fifo.is_fifo()
    target = tmp_path / "target"
    target.write_text("old")
    link = tmp_path / "link"
    link.symlink_to(target)
    ok(cli("get-file", "r", "master", "/f", "-o", str(link)))
    assert link.is_symlink() and target.read_text() == "through the pipe\n"


def test_store_urls_with_credentials_are_refused_without_echo(cli):
    result = cli("--store", "s3://AKIAEXAMPLE:s3cr3tKEY@bucket/x", "list-repo")
    assert_clean_error(result, "must not hold credentials")
    assert "s3cr3tKEY" not in result.err


def test_user_code_does_not_see_the_store_credentials(store_url, cli, spec_file, run_controller, monkeypatch):
    """``env > /pfs/out/env`` on S3 (and locally) shows neither the store's
    credentials nor pipectl's settings, while the spec's env and
    Pachyderm's variables are there."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"))
    ok(cli("create-repo", "in"))
    ok(cli("put-file", "in", "master", "/x", "-f", "-", input=b"x"))
    spec = copy_pipeline("envdump") | {"transform": {"image": "local", "cmd": ["sh", "-c", "env > /pfs/out/env"],
                                                     "env": {"MINE": "yes"}}}
    ok(cli("create-pipeline", "-f", spec_file(spec)))
    run_controller()
    env = ok(cli("get-file", "envdump", "master", "/env")).out
    assert "MINE=yes" in env and "PACH_JOB_ID=" in env
    assert "AWS_SECRET_ACCESS_KEY" not in env and "AWS_ACCESS_KEY_ID" not in env and "PIPECTL_STORE" not in env


def test_one_controller_per_store(store_url, cli, spec_file, background, tmp_path):
    """Two controllers on one store: the second waits for the store's
    controller lease while the first runs every job; when the first stalls
    (SIGSTOP), the second takes over after the lease expires and the first,
    resumed, stops on its own. Every datum runs once."""
    runs = tmp_path / "runs.log"
    ok(cli("create-repo", "in"))
    spec = copy_pipeline() | {"transform": {"image": "local", "cmd": [
        "sh", "-c", f"echo $(basename $in) >> {runs}; cp $in /pfs/out/"]},
        "input": {"pfs": {"repo": "in", "glob": "/*"}}}
    ok(cli("create-pipeline", "-f", spec_file(spec)))
    args = ("controller", "--poll-interval", "0.05", "--lease-seconds", "3")
    first = background(*args)
    wait_for(lambda: "leading" in first.err_path.read_text(), 60, what="the first controller to lead")
    second = background(*args)
    wait_for(lambda: "waiting for lease" in second.err_path.read_text(), 60,
             what="the second to wait")
    ok(cli("put-file", "in", "master", "/a", "-f", "-", input=b"a"))
    ok(cli("flush-commit", "in", "master", "--timeout", "60"))
    first.send_signal(signal.SIGSTOP)
    try:
        ok(cli("put-file", "in", "master", "/b", "-f", "-", input=b"b"))
        wait_for(lambda: "leading" in second.err_path.read_text(), 60, what="the second to take over")
        ok(cli("flush-commit", "in", "master", "--timeout", "60"))
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(30) == 1
    assert "lost the leader lease" in first.err_path.read_text()
    assert sorted(runs.read_text().split()) == ["a", "b"]
    assert ok(cli("get-file", "copy", "master", "/b")).out == "b"


def test_put_file_recursive_symlink_policy(store_url, cli, tmp_path):
    """Links that stay inside the directory put are stored as what they
    point to (files and directories alike); one leading outside is refused
    naming it, unless --follow-symlinks; a dangling one is refused."""
    top = tmp_path / "top"
    (top / "sub").mkdir(parents=True)
    (top / "sub" / "f").write_text("inside")
    (top / "file-link").symlink_to(top / "sub" / "f")
    (top / "dir-link").symlink_to(top / "sub")
    (tmp_path / "secret").write_text("outside")
    ok(cli("create-repo", "r"))
    ok(cli("put-file", "r", "master", "/", "-r", "-f", str(top)))
    listed = ok(cli("glob-file", "r", "master", "/**", "--raw")).out
    assert {"/dir-link/f", "/file-link", "/sub/f"} <= {n["path"] for n in json.loads(listed)}
    (top / "escape").symlink_to(tmp_path / "secret")
    before = ok(cli("list-commit", "r", "--raw")).out
    assert_clean_error(cli("put-file", "r", "master", "/", "-r", "-o", "-f", str(top)), "escape", "outside")
    assert ok(cli("list-commit", "r", "--raw")).out == before
    ok(cli("put-file", "r", "master", "/", "-r", "-o", "--follow-symlinks", "-f", str(top)))
    assert ok(cli("get-file", "r", "master", "/escape")).out == "outside"
    (top / "escape").unlink()
    (top / "dangling").symlink_to(tmp_path / "nowhere")
    assert_clean_error(cli("put-file", "r", "master", "/", "-r", "-o", "-f", str(top)), "dangling", "does not exist")


@pytest.mark.skipif(os.geteuid() != 0, reason="transform.user needs a worker running as root")
def test_transform_user_keeps_the_worker_environment_from_user_code(store_url, cli, spec_file, run_controller):
    """With Pachyderm's ``transform.user``, user code runs as that user: it
    writes its outputs, but cannot read the worker's environment (which
    holds the store's credentials) through /proc."""
    ok(cli("create-repo", "in"))
    ok(cli("put-file", "in", "master", "/x", "-f", "-", input=b"x"))
    script = ("id -un > /pfs/out/who; cat /pfs/in/x > /pfs/out/copy; "
              "cat /proc/$PPID/environ > /dev/null 2>&1 && echo readable > /pfs/out/environ "
              "|| echo denied > /pfs/out/environ")
    spec = copy_pipeline("asuser") | {"transform": {"image": "local", "cmd": ["sh", "-c", script], "user": "nobody"}}
    ok(cli("create-pipeline", "-f", spec_file(spec)))
    run_controller()
    assert ok(cli("get-file", "asuser", "master", "/who")).out == "nobody\n"
    assert ok(cli("get-file", "asuser", "master", "/copy")).out == "x"
    assert ok(cli("get-file", "asuser", "master", "/environ")).out == "denied\n"
