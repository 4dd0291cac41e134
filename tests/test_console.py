"""The web console in a real browser: Debian's chromium driven by
Playwright, clicking through the Iris demo's store served by a real
``pipectl server`` with tokens, while a real controller runs: sign-in, the
DAG shows the three pipelines, a job page lists its datums, a datum's log
opens, a CSV previews as a table, and an upload makes a commit that starts a
job, which the pipeline page shows without being reloaded.

``PIPECTL_SCREENSHOTS=DIR`` saves the screenshots the README shows."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from helpers import (
    READ,
    REPO_ROOT,
    STAGE_PYTHON,
    WRITE,
    ModelServer,
    api_server,
    make_iris_data,
    put_iris,
    run_ok,
    skip,
    wait_for,
)

LOCAL = pytest.mark.parametrize("store_url", ["local"], indirect=True)
CHROMIUM = os.environ.get("PIPECTL_CHROMIUM", "/usr/bin/chromium")
LOCAL_IMAGES = os.path.join(REPO_ROOT, "stages", "local-images.json")


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM) or shutil.which("dot") is None:
        skip("browser", "chromium or graphviz missing: apt-get install chromium graphviz")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip("browser", "playwright missing: pip install -e '.[test]'")
    with sync_playwright() as p:
        # Debian's chromium, never a downloaded one; no sandbox as root in a container
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def shot(page, name: str) -> None:
    folder = os.environ.get("PIPECTL_SCREENSHOTS")
    if folder:
        page.screenshot(path=os.path.join(folder, f"console-{name}.png"))


@LOCAL
def test_clicking_through_the_iris_demo(browser, server, tmp_path, background):
    data, new = make_iris_data(tmp_path)
    put_iris(data, new)
    background("controller", "--local-images", LOCAL_IMAGES, "--poll-interval", "0.1")
    run_ok("flush-commit", "iris-new", "master", "--timeout", "600", timeout=660)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)

    # Sign in: a page asks for a token first, then returns to where it was.
    page.goto(server.root + "/")
    assert "/login" in page.url
    page.fill("input[name=token]", "not-a-token-at-all")
    page.click("#login button")
    page.wait_for_selector("text=unknown token")
    page.fill("input[name=token]", WRITE)
    page.click("#login button")
    page.wait_for_selector("#dag svg")

    # The DAG: three pipelines, drawn and listed, each with its newest job.
    for name in ("preprocess", "train", "inference"):
        assert page.locator(f"#dag svg #pipeline-{name}").count() == 1
        assert page.locator(f"#pipelines tr[data-pipeline={name}]").inner_text().count("success") == 1
    assert page.locator("#dag svg #repo-iris").count() == 1
    shot(page, "dag")

    # A job's datums, then one datum's log.
    page.click("#pipelines tr[data-pipeline=preprocess] >> text=preprocess")
    page.wait_for_selector("h1:has-text('Pipeline preprocess')")
    page.click("#jobs tbody tr >> nth=0 >> a")
    page.wait_for_selector("#datums")
    assert page.locator("#datums tbody tr").count() >= 1
    shot(page, "job")
    page.click("#datums tbody tr >> nth=0 >> a")
    log = page.locator("#log").inner_text()
    assert "test" in log.lower() and "(no output)" not in log, log

    # A CSV previews as a table; the commit's provenance is listed.
    page.goto(server.root + "/repos/preprocess/commits/master/browse/train.csv")
    header = page.locator("#preview table.csv thead").inner_text()
    assert "species" in header, header
    assert page.locator("#preview table.csv tbody tr").count() > 10
    assert page.locator("#provenance").inner_text().count("iris@") == 1
    iris = json.loads(run_ok("inspect-commit", "iris", "master", "--raw").out)["id"]
    assert page.locator(f"#provenance-graph svg #commit-iris-{iris[:8]}").count() == 1  # drawn, with its edge
    assert page.locator("#provenance-graph svg g.edge").count() >= 1
    shot(page, "file")

    # Upload a CSV into iris-new: a new commit, and a new inference job that
    # the pipeline page (left open) shows without being reloaded.
    before = len(json.loads(run_ok("list-job", "-p", "inference", "--raw").out))
    page.goto(server.root + "/pipelines/inference")
    rows = page.locator("#jobs tbody tr").count()
    upload = context.new_page()  # signed in too
    upload.goto(server.root + "/repos/iris-new/commits/master/browse")
    csv = tmp_path / "more.csv"
    csv.write_text((new / "test1.csv").read_text())
    upload.set_input_files("#upload input[type=file]", str(csv))
    upload.click("#upload button")
    upload.wait_for_selector("h1:has-text('iris-new')")
    assert "/browse" in upload.url and upload.locator("#files").inner_text().count("/more.csv") == 1
    wait_for(lambda: len(json.loads(run_ok("list-job", "-p", "inference", "--raw").out)) > before, 300, 0.5,
             "the inference job the upload started")
    page.wait_for_function(f"document.querySelectorAll('#jobs tbody tr').length > {rows}", timeout=60_000)
    assert page.url.endswith("/pipelines/inference")  # the same page, refreshed from the watch stream

    # With a model server, the console shows the model commit it serves and
    # asks it for a prediction (through the pipectl server, with the token).
    model = ModelServer(STAGE_PYTHON, os.environ["PIPECTL_STORE"], tmp_path / "serve.log")
    try:
        model.wait_healthy()
        with api_server(tmp_path, "--model-server", model.url) as with_model:
            page = browser.new_page()
            page.goto(with_model.root + "/login?next=/model")
            page.fill("input[name=token]", READ)
            page.click("#login button")
            served = json.loads(run_ok("inspect-commit", "train", "master", "--raw").out)["id"]
            assert page.locator("[data-model=iris] a.version").inner_text() == f"train@{served[:12]}"
            page.fill("[data-model=iris] textarea", "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3")
            page.click("[data-model=iris] button")
            page.wait_for_selector("[data-model=iris] .answer:not([hidden])")
            answer = json.loads(page.locator("[data-model=iris] .answer").inner_text())
            assert answer["predictions"] == ["setosa", "virginica"] and answer["model_version"] == served, answer
            shot(page, "model")
    finally:
        model.stop()


@LOCAL
def test_rerun_failed_datums_from_the_job_page(browser, server, tmp_path):
    """A failed newest job offers "Rerun failed datums": a new job over the
    same input commits, in which only the failed datum runs."""
    fixed = tmp_path / "fixed"
    run_ok("create-repo", "in")
    for name in ("a", "b"):
        run_ok("put-file", "in", "master", f"/{name}", "-f", "-", input=name.encode())
    spec = {"pipeline": {"name": "half"}, "input": {"pfs": {"repo": "in", "glob": "/*"}}, "datum_tries": 1,
            "transform": {"image": "pipectl/test:1",  # the tests' local image: user code sees tmp_path
                          "cmd": ["sh", "-c", f"[ $(basename $in) = a ] || [ -e {fixed} ] && cp $in /pfs/out/"]}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run_ok("create-pipeline", "-f", str(tmp_path / "spec.json"))
    run_ok("controller", "--exit-when-idle", timeout=240)
    failed = json.loads(run_ok("list-job", "-p", "half", "--raw").out)[0]
    assert failed["state"] == "failure"
    page = browser.new_page()
    page.goto(server.root + f"/login?next=/jobs/{failed['id']}")
    page.fill("input[name=token]", WRITE)
    page.click("#login button")
    page.wait_for_selector("#rerun button")
    fixed.touch()
    page.click("#rerun button")
    page.wait_for_url(lambda url: "/jobs/" in url and failed["id"] not in url)
    rerun = page.url.rsplit("/", 1)[1]
    run_ok("controller", "--exit-when-idle", timeout=240)
    job = json.loads(run_ok("inspect-job", rerun, "--raw").out)
    assert (job["state"], job["datums_processed"], job["datums_skipped"]) == ("success", 1, 1), job
    page.wait_for_selector("#datums .state.reused")  # refreshed live: a reused datum and a processed one
    assert page.locator("#rerun").count() == 0


@LOCAL
def test_a_read_token_signs_in_but_cannot_upload(browser, server):
    run_ok("create-repo", "data")
    page = _upload(browser, server, READ, "", "x.txt", b"x")
    page.wait_for_selector("text=failed: this token may only read")
    assert json.loads(run_ok("list-commit", "data", "--raw").out) == []


@LOCAL
def test_an_upload_lands_one_commit_replacing_the_file(browser, server):
    """The upload form puts the file into the directory being browsed, in
    one new commit, replacing a file of that name; a name that needs
    escaping (a space, a ``%``) arrives as it was."""
    run_ok("create-repo", "data")
    run_ok("put-file", "data", "master", "/dir/a b%41.txt", "-f", "-", input=b"old\n")
    page = _upload(browser, server, WRITE, "/dir", "a b%41.txt", b"new\n")
    page.wait_for_url("**/browse")
    commits = json.loads(run_ok("list-commit", "data", "--raw").out)
    assert len(commits) == 2 and commits[0]["finished"] and page.url.endswith(f"/commits/{commits[0]['id']}/browse")
    assert run_ok("get-file", "data", "master", "/dir/a b%41.txt").stdout_bytes == b"new\n"


def _upload(browser, server, token: str, directory: str, name: str, data: bytes):
    """Sign in with ``token`` on the browse page of ``directory`` of repo
    ``data``'s master and upload ``data`` as file ``name``; the page."""
    page = browser.new_page()
    page.goto(server.root + f"/login?next=/repos/data/commits/master/browse{directory}")
    page.fill("input[name=token]", token)
    page.click("#login button")
    page.wait_for_selector("#upload")
    page.set_input_files("#upload input[type=file]", {"name": name, "mimeType": "text/plain", "buffer": data})
    page.click("#upload button")
    return page
