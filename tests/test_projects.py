"""Projects, as in Pachyderm 2.x: repos and pipelines of a project other
than ``default`` are named ``project/name``; the CLI's ``--project`` (or
``$PIPECTL_PROJECT``) puts the names it is given in a project; a spec's
``pipeline.project`` and ``pfs.project`` place a pipeline and its inputs.

The specs are shaped after Pachyderm's own examples (opencv's edges over a
union of two projects' ``images`` repos, the console's multi-project test
DAGs). Real CLI processes, a real controller with the process and Docker
executors, a real ``pipectl server`` for the API and console."""

from __future__ import annotations

import json

import pytest
import requests
from helpers import READ, WRITE, api_server, assert_clean_error, run_cli, run_ok
from test_docker import CLIENT, _have_images

from pipectl.pfs import keys

LOCAL = pytest.mark.parametrize("store_url", ["local"], indirect=True)

EDGES = {  # Pachyderm's opencv edges-union, its repos in two projects
    "pipeline": {"name": "edges", "project": {"name": "staging"}},
    "input": {"union": [{"pfs": {"project": "default", "repo": "images", "glob": "/*"}},
                        {"pfs": {"repo": "images", "glob": "/*"}}]},
    "transform": {"image": "pipectl/base:0.1.0",
                  "cmd": ["sh", "-c", "cp $images /pfs/out/$(basename $images); "
                                      "echo $PPS_PROJECT_NAME $PPS_PIPELINE_NAME > /pfs/out/who-$(basename $images)"]},
}


def jobs(*args: str) -> list[dict]:
    return json.loads(run_ok("list-job", "--raw", *args).out)


def names(*args: str) -> list[str]:
    """The names a listing command (``args``) prints, in order."""
    return [r["name"] for r in json.loads(run_ok(*args, "--raw").out)]


@pytest.fixture
def two_projects(store_url):
    """Repo ``images`` in the default project and in ``staging``, one file each."""
    run_ok("create-repo", "images")
    run_ok("--project", "staging", "create-repo", "images")
    run_ok("put-file", "images", "master", "/default.txt", "-f", "-", input=b"from default\n")
    run_ok("--project", "staging", "put-file", "images", "master", "/staging.txt", "-f", "-", input=b"staged\n")


def test_names_are_scoped_by_project(two_projects, store):
    assert names("list-repo") == ["images"]
    assert sorted(names("list-repo", "-A")) == ["images", "staging/images"]
    assert names("--project", "staging", "list-repo") == ["staging/images"]
    # the same file names, a commit each; PROJECT/NAME names a repo without --project
    assert run_ok("get-file", "staging/images", "master", "/staging.txt").out == "staged\n"
    assert_clean_error(run_cli("get-file", "images", "master", "/staging.txt"), "not found")
    assert run_ok("get-file", "images", "master", "/default.txt", env={"PIPECTL_PROJECT": "default"}).out
    # a default repo named like the project shares no key with the project's repos
    run_ok("create-repo", "staging")
    assert store.exists(keys.repo("staging/images")) and keys.repo("staging/images") == "repos/staging~images/info.json"
    run_ok("delete-repo", "staging")
    assert run_ok("get-file", "staging/images", "master", "/staging.txt").out == "staged\n"
    assert_clean_error(run_cli("--project", "bad/name", "list-repo"), "invalid project name")
    assert_clean_error(run_cli("create-repo", "a/b/c"), "invalid repo name")


@pytest.mark.parametrize("executor", ["process", "docker"])
@LOCAL
def test_a_pipeline_over_two_projects(two_projects, spec_file, executor):
    """Pachyderm's semantics: the pipeline and its output repo are in its
    project; an input without ``project`` reads the pipeline's project; two
    inputs of a union may share a name; user code sees /pfs/<repo> and
    PPS_PROJECT_NAME."""
    if executor == "docker" and (CLIENT is None or not _have_images()):
        pytest.skip("needs a Docker engine and the images (make images)")
    run_ok("create-pipeline", "-f", spec_file(EDGES))
    run_ok("controller", "--exit-when-idle", "--executor", executor, timeout=600)
    assert names("list-pipeline") == [] and names("list-pipeline", "-A") == ["staging/edges"]
    [job] = jobs("-p", "staging/edges")
    assert (job["state"], job["datums_processed"]) == ("success", 2), job
    assert jobs() == [] and jobs("-A") == [job]
    assert names("--project", "staging", "list-pipeline") == ["staging/edges"]
    out = {f["path"] for f in json.loads(run_ok("--project", "staging", "list-file", "edges", "master", "--raw").out)}
    assert out == {"/default.txt", "/staging.txt", "/who-default.txt", "/who-staging.txt"}
    assert run_ok("get-file", "staging/edges", "master", "/who-default.txt").out == "staging edges\n"
    provenance = json.loads(run_ok("inspect-commit", "staging/edges", "master", "--raw").out)["provenance"]
    assert {p["repo"] for p in provenance} == {"images", "staging/images"}


def test_create_pipeline_puts_a_spec_without_project_in_the_cli_project(two_projects, spec_file):
    spec = {"pipeline": {"name": "copy"}, "input": {"pfs": {"repo": "images", "glob": "/*"}},
            "transform": {"image": "local", "cmd": ["sh", "-c", "cp $images /pfs/out/"]}}
    run_ok("--project", "staging", "create-pipeline", "-f", spec_file(spec))
    info = json.loads(run_ok("inspect-pipeline", "staging/copy", "--raw").out)
    assert info["spec"]["input"]["pfs"]["repo"] == "staging/images" and info["spec"]["input"]["pfs"]["name"] == "images"
    datums = json.loads(run_ok("--project", "staging", "list-datum", "-f", spec_file(spec), "--raw").out)
    assert [d["files"].split("@")[0] for d in datums] == ["staging/images"]
    bad = dict(spec, pipeline={"name": "other/copy", "project": {"name": "staging"}})
    assert_clean_error(run_cli("create-pipeline", "-f", spec_file(bad)), "'other/copy' is not in project 'staging'")
    bad = dict(spec, pipeline={"name": "copy", "project": {"name": "no/pe"}})
    assert_clean_error(run_cli("create-pipeline", "-f", spec_file(bad)), "pipeline.project.name: invalid project name")


@LOCAL
def test_project_names_through_the_server_and_console(two_projects, server, tmp_path):
    """``staging/images`` is one path segment (``staging%2Fimages``) in the
    API and the console; the CLI through the server names it as on a store."""
    r = server.call("GET", "/repos/staging%2Fimages/commits/master/files/staging.txt")
    assert r.status_code == 200 and r.content == b"staged\n", r.text
    remote = {"PIPECTL_STORE": server.root, "PIPECTL_TOKEN": WRITE}
    assert run_ok("--project", "staging", "get-file", "images", "master", "/staging.txt", env=remote).out == "staged\n"
    run_ok("--project", "staging", "put-file", "images", "master", "/dir/a%b.txt", "-f", "-", input=b"x", env=remote)
    assert run_ok("get-file", "staging/images", "master", "/dir/a%b.txt").out == "x"
    assert names("list-repo", "-A") == [r["name"] for r in server.call("GET", "/repos").json()]
    cookie = {"pipectl_token": READ}
    page = requests.get(server.root + "/repos/staging%2Fimages", cookies=cookie, timeout=30)
    assert page.status_code == 200 and 'href="/repos/staging%2Fimages/commits/master/browse"' in page.text
    listing = requests.get(server.root + "/repos/staging%2Fimages/commits/master/browse/dir", cookies=cookie, timeout=30)
    link = "/browse/dir/a%25b.txt"  # a file name with % in it, escaped in the link that leads to it
    assert listing.status_code == 200 and link in listing.text, listing.text
    href = listing.text.split(link)[0].rsplit('href="', 1)[1] + link
    preview = requests.get(server.root + href, cookies=cookie, timeout=30)
    assert preview.status_code == 200 and "<pre>x</pre>" in preview.text, preview.text
    (tmp_path / "second").mkdir()
    with api_server(tmp_path / "second") as other:  # a second server on the same store sees the same
        assert other.call("GET", "/repos/staging%2Fimages").json()["name"] == "staging/images"
