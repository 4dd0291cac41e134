"""Branch triggers (Pachyderm's ``pfs.trigger``): a pipeline reading a
triggered branch runs only when its condition holds, here every second
commit; ``create-branch --trigger`` with a size condition. Real CLI, real
controller."""

from __future__ import annotations

import json

import pytest
from helpers import assert_clean_error, files_of, ok, put

from pipectl.errors import InvalidArgument
from pipectl.pfs.triggers import parse_size

LOCAL = pytest.mark.parametrize("store_url", ["local"], indirect=True)


def jobs(cli, pipeline: str) -> list[dict]:
    return json.loads(ok(cli("list-job", "-p", pipeline, "--raw")).out)


@LOCAL
def test_a_pipeline_on_a_triggered_branch_runs_every_second_commit(cli, pfs, spec_file, run_controller):
    """``trigger: {commits: 2}`` (camelCase and a string count, as a
    Pachyderm spec may have them): the pipeline reads branch
    ``every2-trigger-1``, which follows master once master has 2 new
    commits; 4 commits give 2 jobs, over the 2nd and 4th."""
    pfs.create_repo("in")
    spec = {"pipeline": {"name": "every2"},
            "transform": {"image": "local", "cmd": ["sh", "-c", "ls /pfs/in > /pfs/out/seen"]},
            "input": {"pfs": {"repo": "in", "glob": "/", "trigger": {"branch": "master", "commits": "2"}}}}
    ok(cli("create-pipeline", "-f", spec_file(spec)))
    stored = json.loads(ok(cli("inspect-pipeline", "every2", "--raw")).out)["spec"]["input"]["pfs"]
    assert stored["branch"] == "every2-trigger-1"
    for n in range(1, 5):
        put(pfs, "in", {f"/f{n}": str(n)})
        run_controller()
        assert len(jobs(cli, "every2")) == n // 2, n
    assert files_of(pfs, "every2") == {"/seen": "f1\nf2\nf3\nf4\n"}
    branches = {b["name"]: b for b in json.loads(ok(cli("list-branch", "in", "--raw")).out)}
    assert branches["every2-trigger-1"]["head"] == branches["master"]["head"]
    assert branches["every2-trigger-1"]["trigger"] == {"branch": "master", "commits": 2}


@LOCAL
def test_create_branch_with_a_size_trigger(cli, pfs, spec_file, run_controller):
    """A branch made with ``create-branch --trigger master --trigger-size
    10B`` moves once master holds 10 more bytes than it; a pipeline reading
    it runs then."""
    pfs.create_repo("in")
    ok(cli("create-branch", "in", "big", "--trigger", "master", "--trigger-size", "10B"))
    spec = {"pipeline": {"name": "sized"}, "transform": {"image": "local", "cmd": ["sh", "-c", "cat /pfs/in/* > /pfs/out/all"]},
            "input": {"pfs": {"repo": "in", "branch": "big", "glob": "/"}}}
    ok(cli("create-pipeline", "-f", spec_file(spec)))
    put(pfs, "in", {"/a": "12345"})
    run_controller()
    assert jobs(cli, "sized") == []
    put(pfs, "in", {"/b": "678901"})
    run_controller()
    assert len(jobs(cli, "sized")) == 1 and files_of(pfs, "sized") == {"/all": "12345678901"}
    listed = ok(cli("list-branch", "in")).out.splitlines()
    assert listed[0].split() == ["BRANCH", "HEAD", "TRIGGER"] and listed[1].split()[2:] == ["master", "on", "10B"]
    assert_clean_error(cli("create-branch", "in", "x", "--trigger-size", "1MB"), "need --trigger")
    assert_clean_error(cli("create-branch", "in", "x", "--trigger", "master", "--trigger-size", "lots"),
                       "not a size")
    assert_clean_error(cli("create-branch", "in", "x", "--trigger", "x"), "cannot trigger on itself")


def test_sizes_read_as_docker_reads_them():
    assert [parse_size(s) for s in ("10", "10B", "1kB", "1K", "1MB", "1MiB", "1.5GB")] == \
        [10, 10, 1000, 1000, 10**6, 2**20, 1_500_000_000]
    with pytest.raises(InvalidArgument):
        parse_size("1 parsec")
