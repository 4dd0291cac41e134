"""Services (Pachyderm's ``service`` pipelines): a long-lived worker serves
the one datum of its newest job on ``internal_port``, is started afresh on
new input (the replaced job ends ``success``), started again when it dies,
and stopped with its pipeline or by stop-job. Real CLI, real controller (in
the background), real worker processes, real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from helpers import assert_clean_error, free_port, http_text, ok, wait_for

LOCAL = pytest.mark.parametrize("store_url", ["local"], indirect=True)


def site_service(port: int, glob: str = "/") -> dict:
    """A service serving its ``site`` datum over HTTP on ``port`` (Python's
    http.server, as Pachyderm's examples serve a repo with a web server)."""
    return {"pipeline": {"name": "web"}, "input": {"pfs": {"repo": "site", "glob": glob}},
            "service": {"internal_port": port, "external_port": port},
            "transform": {"image": "local", "cmd": [
                "sh", "-c", f'exec {sys.executable} -m http.server {port} --bind 127.0.0.1 --directory "$site"']}}


def get(port: int, path: str) -> str | None:
    return http_text(f"http://127.0.0.1:{port}{path}")


def jobs(cli) -> list[dict]:
    return json.loads(ok(cli("list-job", "--raw")).out)


def pids(port: int) -> list[int]:
    """The processes of the server on ``port``."""
    found = subprocess.run(["pgrep", "-f", f"http.server {port} "], capture_output=True, text=True,
                           check=False).stdout
    return [int(pid) for pid in found.split()]


@LOCAL
def test_a_service_serves_its_newest_datum_until_stopped(cli, store_url, spec_file, background, tmp_path):
    port = free_port()
    ok(cli("create-repo", "site"))
    page = tmp_path / "index.html"
    page.write_text("version 1\n")
    ok(cli("put-file", "site", "master", "/index.html", "-o", "-f", str(page)))
    ok(cli("create-pipeline", "-f", spec_file(site_service(port))))
    controller = background("controller", "--poll-interval", "0.1")

    wait_for(lambda: get(port, "/index.html") == "version 1\n", 60, 0.2, "the service to serve version 1")
    [first] = jobs(cli)
    assert first["state"] == "running" and first["datums_total"] == 1, first

    page.write_text("version 2\n")  # new input: the service starts afresh on it
    ok(cli("put-file", "site", "master", "/index.html", "-o", "-f", str(page)))
    wait_for(lambda: get(port, "/index.html") == "version 2\n", 60, 0.2, "the service to serve version 2")
    newest, replaced = jobs(cli)
    assert newest["state"] == "running" and newest["id"] != first["id"], newest
    assert replaced["id"] == first["id"] and replaced["state"] == "success", replaced
    assert f"replaced by job {newest['id']}" in replaced["reason"]

    [pid] = pids(port)  # the server dies: the controller starts it again (after 1 s)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pids(port) and pids(port) != [pid], 30, 0.1, "the service to be restarted")
    wait_for(lambda: get(port, "/index.html") == "version 2\n", 30, 0.2, "the restarted service to serve")
    assert "service web exited with status" in controller.err_path.read_text()
    assert jobs(cli)[0]["id"] == newest["id"], "a restart is not a new job"

    ok(cli("stop-pipeline", "web"))
    wait_for(lambda: not pids(port), 30, 0.1, "the stopped service's process to end")
    assert get(port, "/index.html") is None
    assert jobs(cli)[0]["state"] == "killed"
    ok(cli("start-pipeline", "web"))  # serves again, in a job of its own
    wait_for(lambda: get(port, "/index.html") == "version 2\n", 60, 0.2, "the started service to serve")
    restarted = jobs(cli)[0]
    assert restarted["state"] == "running" and restarted["id"] != newest["id"], restarted
    controller.send_signal(signal.SIGTERM)
    controller.wait(30)


@LOCAL
def test_stop_job_stops_a_service_and_new_input_starts_it_again(cli, store_url, spec_file, background, tmp_path):
    port = free_port()
    ok(cli("create-repo", "site"))
    ok(cli("put-file", "site", "master", "/index.html", "-f", "-", input=b"a\n"))
    ok(cli("create-pipeline", "-f", spec_file(site_service(port))))
    background("controller", "--poll-interval", "0.1")
    wait_for(lambda: get(port, "/index.html") == "a\n", 60, 0.2, "the service to serve")
    [job] = jobs(cli)
    ok(cli("stop-job", job["id"]))
    wait_for(lambda: not pids(port), 30, 0.1, "the stopped job's service to end")
    assert jobs(cli)[0]["state"] == "killed"
    ok(cli("put-file", "site", "master", "/index.html", "-o", "-f", "-", input=b"b\n"))
    wait_for(lambda: get(port, "/index.html") == "b\n", 60, 0.2, "a new job to serve the new input")


@LOCAL
def test_a_service_of_more_than_one_datum_fails_its_job(cli, store_url, spec_file, run_controller, tmp_path):
    ok(cli("create-repo", "site"))
    for name in ("a", "b"):
        ok(cli("put-file", "site", "master", f"/{name}", "-f", "-", input=name.encode()))
    ok(cli("create-pipeline", "-f", spec_file(site_service(free_port(), glob="/*"))))
    run_controller()
    [job] = jobs(cli)
    assert job["state"] == "failure", job
    assert "services must have a single datum" in job["reason"] and "has 2" in job["reason"]


@LOCAL
def test_run_pipeline_refuses_a_service(cli, store_url, spec_file):
    ok(cli("create-repo", "site"))
    ok(cli("create-pipeline", "-f", spec_file(site_service(free_port()))))
    assert_clean_error(cli("run-pipeline", "web"), "pipeline web is a service")


@LOCAL
@pytest.mark.parametrize("change, needle", [
    ({"service": {"external_port": 80}}, "service.internal_port: required field is missing"),
    ({"service": {"internal_port": 8080, "type": "Ingress"}}, "service.type"),
    ({"service": {"internal_port": 0}}, "service.internal_port"),
    ({"spout": {}, "input": None}, "service: a spout serves with spout.service, not service"),
])
def test_bad_service_specs_are_refused(cli, store_url, spec_file, change, needle):
    spec = {**site_service(8080), **change}
    spec = {k: v for k, v in spec.items() if v is not None}
    assert_clean_error(cli("create-pipeline", "-f", spec_file(spec)), needle)


@LOCAL
def test_a_pipeline_made_a_service_serves_the_datum_it_processed(cli, store_url, spec_file, run_controller,
                                                                 background, tmp_path):
    """The same transform, first a pipeline, then (update-pipeline) a
    service: its one datum was processed, yet the service serves it."""
    port, flag = free_port(), tmp_path / "serve"
    script = (f'if [ -e {flag} ]; then exec {sys.executable} -m http.server {port} --bind 127.0.0.1 '
              '--directory "$site"; fi; cp "$site"/* /pfs/out/')
    spec = {"pipeline": {"name": "web"}, "input": {"pfs": {"repo": "site", "glob": "/"}},
            "transform": {"image": "local", "cmd": ["sh", "-c", script]}}
    ok(cli("create-repo", "site"))
    ok(cli("put-file", "site", "master", "/index.html", "-f", "-", input=b"page\n"))
    ok(cli("create-pipeline", "-f", spec_file(spec)))
    run_controller()
    assert ok(cli("get-file", "web", "master", "/index.html")).out == "page\n"
    flag.touch()
    ok(cli("update-pipeline", "-f", spec_file({**spec, "service": {"internal_port": port}})))
    background("controller", "--poll-interval", "0.1")
    wait_for(lambda: get(port, "/index.html") == "page\n", 60, 0.2, "the service to serve the datum")
