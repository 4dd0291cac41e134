"""Cron inputs (Pachyderm's ``input.cron``): ticks committed on a schedule
while a controller runs, each an empty file named by its time (RFC 3339),
accumulating or (``overwrite``) alone; ``run-cron`` ticks now. Real
controller, real workers."""

from __future__ import annotations

import json
import re
import signal

import pytest
from helpers import assert_clean_error, files_of, ok, wait_for

LOCAL = pytest.mark.parametrize("store_url", ["local"], indirect=True)
TICK = re.compile(r"^/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def cron_pipeline(name: str, spec: str, **extra) -> dict:
    """A pipeline copying each tick file it is given into its output."""
    return {"pipeline": {"name": name},
            "transform": {"image": "local", "cmd": ["sh", "-c", "cp /pfs/tick/* /pfs/out/"]},
            "input": {"cron": {"name": "tick", "spec": spec, **extra}}}


def jobs(cli, pipeline: str) -> list[dict]:
    return json.loads(ok(cli("list-job", "-p", pipeline, "--raw")).out)


@LOCAL
def test_a_cron_pipeline_fires_on_its_schedule(cli, pfs, spec_file, background):
    """``@every 1s``: while the controller runs, each tick is a commit to
    ``<pipeline>_tick`` and a job; each job processes the new tick and
    skips the older ones."""
    ok(cli("create-pipeline", "-f", spec_file(cron_pipeline("clock", "@every 1s"))))
    assert "clock_tick" in ok(cli("list-repo")).out
    controller = background("controller", "--poll-interval", "0.1")
    wait_for(lambda: len([j for j in jobs(cli, "clock") if j["state"] == "success"]) >= 3, 60,
             what="three cron jobs")
    controller.send_signal(signal.SIGTERM)
    controller.wait(30)
    ticks = sorted(files_of(pfs, "clock_tick"))
    assert len(ticks) >= 3 and all(TICK.match(t) for t in ticks), ticks
    done = [j for j in jobs(cli, "clock") if j["state"] == "success"]
    assert all(j["datums_processed"] == 1 for j in done), done
    assert max(j["datums_skipped"] for j in done) >= 2
    assert set(files_of(pfs, "clock")) <= set(ticks)


@LOCAL
def test_run_cron_ticks_now_and_overwrite_keeps_one_tick(cli, pfs, spec_file, run_controller):
    """``@never`` with ``overwrite``: only ``run-cron`` ticks, and the cron
    repo holds the newest tick alone (one datum per job)."""
    ok(cli("create-pipeline", "-f", spec_file(cron_pipeline("manual", "@never", overwrite=True))))
    run_controller()
    assert jobs(cli, "manual") == []
    assert ok(cli("run-cron", "manual")).out == "ticked manual_tick\n"
    run_controller()
    first = files_of(pfs, "manual_tick")
    assert len(first) == 1 and TICK.match(next(iter(first)))
    assert files_of(pfs, "manual") == first
    assert_clean_error(cli("run-cron", "nope"), "nope", "not found")


@LOCAL
def test_bad_cron_specs_are_refused(store_url, cli, spec_file):
    assert_clean_error(cli("create-pipeline", "-f", spec_file(cron_pipeline("bad", "every minute"))),
                       "cron input tick", "does not parse")
    assert_clean_error(cli("create-pipeline", "-f", spec_file(cron_pipeline("bad", "@every soon"))),
                       "cron input tick", "@every needs a duration")
    assert_clean_error(cli("create-pipeline", "-f", spec_file(cron_pipeline("bad", "@hourly", start="yesterday"))),
                       "cron input tick", "RFC 3339")
