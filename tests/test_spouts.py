"""Spouts (Pachyderm's ``spout`` pipelines): a long-lived worker, kept alive
by the controller, commits into its output repo with the pipectl CLI inside;
a pipeline downstream runs on what it commits; the worker is started again
when it dies and stopped with its pipeline. Real CLI, real controller (in
the background), real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import pytest
from helpers import assert_clean_error, ok, wait_for

LOCAL = pytest.mark.parametrize("store_url", ["local"], indirect=True)


def ticker(marker: str) -> dict:
    """A spout committing ``/tick-<n>`` once a second, with the CLI (as
    ``pachctl put file`` in a Pachyderm 2.x spout); ``marker`` is in its
    command line, so that the test can find its process."""
    script = (f": {marker}; i=0; while true; do i=$((i+1)); "
              f"echo $i | {sys.executable} -m pipectl put-file ticker master /tick-$i -f - >/dev/null || exit 3; "
              "sleep 1; done")
    return {"pipeline": {"name": "ticker"}, "spout": {},
            "transform": {"image": "local", "cmd": ["sh", "-c", script]}}


def commits(cli, repo: str) -> list[dict]:
    return json.loads(ok(cli("list-commit", repo, "--raw")).out)


def spout_pids(marker: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False).stdout
    return [int(pid) for pid in found.split()]


@LOCAL
def test_a_spout_commits_until_stopped_and_survives_its_death(cli, store_url, spec_file, background):
    marker = "spout-" + uuid.uuid4().hex[:8]
    ok(cli("create-pipeline", "-f", spec_file(ticker(marker))))
    ok(cli("create-pipeline", "-f", spec_file(
        {"pipeline": {"name": "seen"}, "input": {"pfs": {"repo": "ticker", "glob": "/"}},
         "transform": {"image": "local", "cmd": ["sh", "-c", "ls /pfs/ticker | wc -l > /pfs/out/count"]}})))
    controller = background("controller", "--poll-interval", "0.1")
    wait_for(lambda: len(commits(cli, "ticker")) >= 3, 60, 0.2, "3 commits from the spout")
    wait_for(lambda: commits(cli, "seen"), 60, 0.2, "the downstream pipeline to run on the spout's data")

    [pid] = spout_pids(marker)
    before = len(commits(cli, "ticker"))
    os.killpg(pid, signal.SIGKILL)  # the spout dies: the controller starts it again (after 1 s)
    wait_for(lambda: spout_pids(marker) and spout_pids(marker) != [pid], 30, 0.1, "the spout to be restarted")
    wait_for(lambda: len(commits(cli, "ticker")) >= before + 2, 30, 0.2, "commits from the restarted spout")
    assert "spout ticker exited with status -9" in controller.err_path.read_text()

    ok(cli("stop-pipeline", "ticker"))
    wait_for(lambda: not spout_pids(marker), 30, 0.1, "the stopped spout's process to end")
    settled = len(commits(cli, "ticker"))
    ok(cli("start-pipeline", "ticker"))  # and back
    wait_for(lambda: len(commits(cli, "ticker")) > settled, 30, 0.2, "the restarted pipeline's spout to commit")
    controller.send_signal(signal.SIGTERM)
    controller.wait(30)
    assert not spout_pids(marker), "the spout outlived its controller"


@LOCAL
@pytest.mark.parametrize("change, needle", [
    ({"input": {"pfs": {"repo": "x", "glob": "/"}}}, "input: a spout takes no input"),
    ({"spout": {"service": {"external_port": 80}}}, "spout.service.internal_port: required field is missing"),
])
def test_bad_spout_specs_are_refused(cli, store_url, spec_file, change, needle):
    assert_clean_error(cli("create-pipeline", "-f", spec_file({**ticker("m"), **change})), needle)


@LOCAL
def test_a_pipeline_without_input_is_refused_unless_a_spout(cli, store_url, spec_file):
    spec = {"pipeline": {"name": "p"}, "transform": {"image": "local", "cmd": ["true"]}}
    assert_clean_error(cli("create-pipeline", "-f", spec_file(spec)), "input: required field is missing")
