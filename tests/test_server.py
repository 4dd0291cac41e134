"""The pipectl server (``pipectl server``) as a real process on a loopback
port, spoken to over HTTP by requests, curl-like clients and schemathesis:
tokens, the data and pipeline resources, streaming files, errors in the
CLI's words, the watch streams, and the OpenAPI document fuzzed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest
import requests
from helpers import READ, WRITE, api_server, assert_clean_error, run_cli, run_ok

LOCAL = pytest.mark.parametrize("store_url", ["local"], indirect=True)
def ok(response: requests.Response, status: int = 200):
    assert response.status_code == status, (response.status_code, response.text)
    return response.json() if response.content and "json" in response.headers.get("content-type", "") else response


def put(server, repo: str, ref: str, files: dict[str, bytes], token: str | None = WRITE, **params):
    """``POST .../files``: one multipart/form-data part per file, named by
    its path (requests' own encoding, as any HTTP client would send it)."""
    parts = {path: (path.rsplit("/", 1)[-1], data) for path, data in files.items()}
    return server.call("POST", f"/repos/{repo}/commits/{ref}/files", token=token, params=params, files=parts)


@LOCAL
def test_tokens_guard_every_route(server):
    """No token: 401 (JSON, WWW-Authenticate); a read token may GET but not
    change anything (403); the write token may."""
    r = server.call("GET", "/repos", token=None)
    assert r.status_code == 401 and r.json() == {"error": "a bearer token is required"}
    assert r.headers["www-authenticate"] == "Bearer"
    assert server.call("GET", "/repos", token="w" * 8 + "-write-token-0002").status_code == 401
    assert ok(server.call("GET", "/repos", token=READ)) == []
    r = server.call("POST", "/repos", token=READ, json={"name": "images"})
    assert r.status_code == 403 and r.json() == {"error": "this token may only read"}
    ok(server.call("POST", "/repos", json={"name": "images"}), 201)
    assert [r["name"] for r in ok(server.call("GET", "/repos", token=READ))] == ["images"]
    assert requests.get(server.root + "/openapi.json", timeout=10).json()["info"]["title"] == "pipectl"


@LOCAL
def test_data_round_trip_with_streamed_files(server, cli, tmp_path):
    """Repos, branches and commits as the CLI sees them; a 24 MiB file
    streamed up and down intact; an open commit filled by two uploads;
    errors carry the CLI's own message."""
    ok(server.call("POST", "/repos", json={"name": "data", "description": "raw"}), 201)
    big = os.urandom(24 << 20)
    commit = ok(put(server, "data", "master", {"big/blob.bin": big}))
    assert commit["branch"] == "master" and commit["size_bytes"] == len(big)
    with server.call("GET", "/repos/data/commits/master/files/big/blob.bin", stream=True) as r:
        assert r.status_code == 200 and int(r.headers["content-length"]) == len(big)
        got = hashlib.sha256()
        for chunk in r.iter_content(1 << 20):
            got.update(chunk)
    assert got.hexdigest() == hashlib.sha256(big).hexdigest()
    assert run_cli("get-file", "data", "master", "/big/blob.bin").stdout_bytes == big  # the same store

    open_commit = ok(server.call("POST", "/repos/data/commits", json={"branch": "master"}), 201)
    for name in ("a.csv", "b.csv"):
        ok(put(server, "data", open_commit["id"], {name: b"x,y\n1,2\n"}))
    ok(server.call("POST", f"/repos/data/commits/{open_commit['id']}/finish", json={}))
    listed = ok(server.call("GET", "/repos/data/commits/master/files", token=READ))
    assert [(n["path"], n["type"]) for n in listed] == [("/a.csv", "file"), ("/b.csv", "file"), ("/big", "dir")]
    assert ok(server.call("GET", "/repos/data/commits/master/files", params={"glob": "/*.csv"}))[1]["path"] == "/b.csv"
    diff = ok(server.call("GET", "/repos/data/commits/master/diff"))
    assert [n["path"] for n in diff["added"]] == ["/a.csv", "/b.csv"] and diff["removed"] == []
    assert [c["id"] for c in ok(server.call("GET", "/repos/data/commits"))][0] == open_commit["id"]
    ok(server.call("PUT", "/repos/data/branches/staging", json={"head": "master^"}))
    assert {b["name"] for b in ok(server.call("GET", "/repos/data/branches"))} == {"master", "staging"}

    for r, status in [(server.call("GET", "/repos/nope"), 404), (server.call("POST", "/repos", json={"name": "data"}), 409),
                      (server.call("GET", "/repos/data/commits/master/files/none.txt"), 404),
                      (put(server, "data", "master", {"big/blob.bin/under": b"x"}), 409)]:
        assert r.status_code == status and set(r.json()) == {"error", "kind"}, (r.url, r.text)
    cli_error = run_cli("inspect-repo", "nope").err.strip().removeprefix("error: ")
    assert server.call("GET", "/repos/nope").json()["error"] == cli_error


@LOCAL
def test_put_files_lands_every_file_of_one_request_in_one_commit_or_none(server, pfs):
    """POST .../files: every part of the body (named by its path,
    percent-encoded) in one commit on a branch, appended to or, with
    ``overwrite``, replaced; into an open commit while the branch has one.
    Bad input gets a 400 in the API's error shape and lands nothing."""
    ok(server.call("POST", "/repos", json={"name": "data"}), 201)
    odd = urllib.parse.quote("/odd name %41 é.txt")
    first = ok(put(server, "data", "master", {"a.txt": b"1\n", "dir/b.txt": b"2\n", odd: b"3\n"}))
    assert first["finished"] and first["size_bytes"] == 6
    assert [c.id for c in pfs.list_commits("data", "master")] == [first["id"]]
    assert sorted(p for p, _ in pfs.iter_files("data", "master")) == ["/a.txt", "/dir/b.txt", "/odd name %41 é.txt"]
    ok(put(server, "data", "master", {"a.txt": b"more\n"}))
    assert ok(server.call("GET", "/repos/data/commits/master/files/a.txt")).content == b"1\nmore\n"
    ok(put(server, "data", "master", {"a.txt": b"new\n"}, overwrite=True))
    assert ok(server.call("GET", "/repos/data/commits/master/files/a.txt")).content == b"new\n"

    open_commit = ok(server.call("POST", "/repos/data/commits", json={"branch": "master"}), 201)
    into = ok(put(server, "data", "master", {"c.txt": b"c"}))
    assert into["id"] == open_commit["id"] and into["finished"] is None
    ok(server.call("POST", f"/repos/data/commits/{open_commit['id']}/finish", json={}))
    landed = len(pfs.list_commits("data"))

    multipart = {"Content-Type": "multipart/form-data; boundary=b"}
    url = "/repos/data/commits/master/files"
    for r, words in [
            (server.call("POST", url, data=b"x", headers={"Content-Type": "application/octet-stream"}),
             "multipart/form-data"),
            (server.call("POST", url, data=b"--b--\r\n", headers=multipart), "holds no file"),
            (put(server, "data", "master", {"ok.txt": b"x", "../up": b"x"}), "'..' is not allowed"),
            (server.call("POST", url, headers=multipart,
                         data=b'--b\r\nContent-Disposition: form-data; filename="x"\r\n\r\nx\r\n--b--\r\n'),
             "Content-Disposition name"),
            (server.call("POST", url, headers=multipart,  # whole as sent, but no closing boundary
                         data=b'--b\r\nContent-Disposition: form-data; name="cut"\r\n\r\nx'), "closing boundary"),
            (put(server, "nope", "master", {"x": b"x"}), "repo nope not found")]:
        assert 400 <= r.status_code < 500 and set(r.json()) == {"error", "kind"} and words in r.json()["error"], r.text
    r = put(server, "data", "master", {"x": b"x"}, token=READ)
    assert r.status_code == 403 and r.json() == {"error": "this token may only read"}
    assert len(pfs.list_commits("data")) == landed


class _FailsWhenTold:
    """A user's stream (stdin, say) that gives some bytes, then waits until
    told, then fails (the user pressed Ctrl-C, the pipe broke)."""

    def __init__(self):
        self.go, self.started, self.sent = threading.Event(), threading.Event(), False

    def read(self, n: int = -1) -> bytes:
        if not self.sent:
            self.sent = True
            return b"partial"
        self.started.set()
        self.go.wait(60)
        raise OSError("input broken")


@LOCAL
def test_a_failed_put_file_through_the_server_leaves_another_writers_files(server, pfs, tmp_path):
    """A put-file through the server whose input fails midway lands
    nothing, and another writer's put-file to the same branch meanwhile
    lands in a commit of its own, and stays. (The client used to start a
    commit on the branch for its upload: the other writer's files went into
    it, were reported landed, and the failed upload deleted them with it.)"""
    from pipectl.client.remote import RemoteClient

    pfs.create_repo("r")
    other = tmp_path / "other.txt"
    other.write_bytes(b"precious\n")
    stream, failure = _FailsWhenTold(), []

    def upload() -> None:
        try:
            RemoteClient(server.root, WRITE).put_files("r", "master", [("/a.txt", stream)])
        except BaseException as e:  # noqa: BLE001
            failure.append(e)
    t = threading.Thread(target=upload)
    t.start()
    assert stream.started.wait(60)
    commit, _ = pfs.put_files("r", "master", [("/other.txt", str(other))])  # told: landed in `commit`
    stream.go.set()
    t.join(60)
    assert failure  # the remote upload failed, as it should
    time.sleep(0.5)
    assert pfs.inspect_branch("r", "master").head == commit.id and pfs.inspect_commit("r", "master").finished
    assert [p for p, _ in pfs.iter_files("r", "master")] == ["/other.txt"]
    assert isinstance(failure[0], OSError), failure  # its input's error, not "cannot reach the server"


@LOCAL
def test_a_put_file_killed_midway_leaves_the_branch_as_it_was(server, pfs):
    """README: a put-file killed halfway leaves the branch as it was. The
    CLI through the server, killed (SIGKILL) while it sends stdin, leaves
    the branch with no commit (it used to leave the branch's head an open
    commit forever, which later put-files went into and pipelines never
    saw); the next put-file lands a finished commit."""
    remote = {"PIPECTL_STORE": server.root, "PIPECTL_TOKEN": WRITE}
    pfs.create_repo("r")
    proc = subprocess.Popen([sys.executable, "-m", "pipectl", "put-file", "r", "master", "/a", "-f", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, **remote))
    try:
        proc.stdin.write(b"x" * (8 << 20))  # returns once put-file has read all but a pipe's worth: it is sending
        proc.stdin.flush()
        time.sleep(0.5)
        assert proc.poll() is None  # its input has not ended: still sending
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    time.sleep(0.5)  # the server sees the connection close
    assert pfs.inspect_branch("r", "master").head is None, "the killed put-file changed the branch"
    run_ok("put-file", "r", "master", "/b", "-f", "-", input=b"b\n", env=remote)
    head = pfs.inspect_commit("r", "master")
    assert head.finished and head.parent is None and [p for p, _ in pfs.iter_files("r", "master")] == ["/b"]


@LOCAL
def test_pipelines_jobs_datums_and_logs(server, run_controller):
    ok(server.call("POST", "/repos", json={"name": "in"}), 201)
    ok(put(server, "in", "master", {f"f{i}": f"line {i}\n".encode() for i in range(3)}))
    spec = {"pipeline": {"name": "copy"}, "transform": {"image": "local", "cmd": ["sh", "-c", "echo copying; cp /pfs/in/* /pfs/out/"]},
            "input": {"pfs": {"repo": "in", "glob": "/*"}}}
    ok(server.call("POST", "/pipelines", json=spec), 201)
    r = server.call("POST", "/pipelines", json={"pipeline": {"name": "bad"}, "input": {}})
    assert r.status_code == 400 and "transform: required field is missing" in r.json()["error"]
    run_controller()
    jobs = ok(server.call("GET", "/jobs", params={"pipeline": "copy"}, token=READ))
    assert jobs[0]["state"] == "success" and jobs[0]["datums_processed"] == 3
    datums = ok(server.call("GET", f"/jobs/{jobs[0]['id']}/datums"))
    assert sorted(d["state"] for d in datums) == ["success"] * 3
    logs = ok(server.call("GET", "/logs", params={"job": jobs[0]["id"]}))
    assert len(logs) == 3 and all("copying" in entry["log"] for entry in logs)
    assert ok(server.call("GET", "/pipelines"))[0]["name"] == "copy"
    flushed = ok(server.call("POST", "/repos/in/commits/master/flush", params={"timeout": 30}))
    assert [c["repo"] for c in flushed] == ["copy"]
    ok(server.call("POST", "/pipelines/copy/stop"))
    assert ok(server.call("GET", "/pipelines/copy"))["state"] == "paused"


@LOCAL
def test_watch_streams_deliver_new_commits(server):
    """Server-sent events: a commit finished after the stream opened arrives
    as an ``event: commit``."""
    ok(server.call("POST", "/repos", json={"name": "feed"}), 201)
    old = ok(put(server, "feed", "master", {"old": b"1"}))
    events: dict[bool, list[dict]] = {False: [], True: []}

    def listen(all: bool) -> None:  # all: the finished commits first
        with server.call("GET", "/watch/commits", params={"repo": "feed", "all": all}, stream=True) as r:
            kind = None
            for line in r.iter_lines(decode_unicode=True):
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "commit":
                    events[all].append(json.loads(line[6:]))
                    if len(events[all]) == 1 + all:
                        return
    listeners = [threading.Thread(target=listen, args=(all,), daemon=True) for all in (False, True)]
    for t in listeners:
        t.start()
    time.sleep(1)
    commit = ok(put(server, "feed", "master", {"new": b"2"}))
    for t in listeners:
        t.join(30)
    assert [e["id"] for e in events[False]] == [commit["id"]]
    assert [e["id"] for e in events[True]] == [old["id"], commit["id"]]


@LOCAL
@pytest.mark.parametrize("target", ["//evil.example/x", "/\\evil.example/x", "https://evil.example/x"])
def test_the_login_page_sends_the_signed_in_user_only_within_the_console(server, target):
    """The login form goes on to ``next`` once signed in: only a path of
    this site, never one a browser reads as another site (``//host``,
    ``/\\host``): an open redirect after sign-in."""
    r = requests.get(server.root + "/login", params={"next": target}, timeout=30)
    assert r.status_code == 200 and "evil.example" not in r.text, r.text
    r = requests.get(server.root + "/login", params={"next": "/jobs/abc"}, timeout=30)
    assert 'data-next="/jobs/abc"' in r.text


@LOCAL
def test_model_routes_without_a_reachable_model_server(server, tmp_path):
    """No --model-server: 404 naming the option; one that cannot be reached:
    502, with no password of its URL in what a read token sees; a
    prediction body over the limit: 413 before anything is sent."""
    r = server.call("GET", "/serving/models", token=READ)
    assert r.status_code == 404 and "--model-server" in r.json()["error"], r.text
    # the discard port: nothing listens
    with api_server(tmp_path, "--model-server", "http://svc:Sup3rSecretPw@127.0.0.1:9") as gone:
        r = gone.call("GET", "/serving/models", token=READ)
        assert r.status_code == 502 and "model server http://127.0.0.1:9" in r.json()["error"], r.text
        assert "Sup3rSecretPw" not in r.text and "svc" not in r.text, r.text
        r = gone.call("POST", "/serving/predictions/iris", token=READ, data=b"1,2,3,4\n",
                      headers={"Content-Type": "text/csv"})
        assert r.status_code == 502, r.text  # a read token may ask; the model server is the problem
        assert "Sup3rSecretPw" not in r.text, r.text
        r = gone.call("POST", "/serving/predictions/iris", token=READ, data=b"0" * (65 << 20))
        assert r.status_code == 413, r.text
        assert requests.get(gone.root + "/model", cookies={"pipectl_token": READ}, timeout=30).status_code == 502


@LOCAL
def test_an_open_server_only_on_loopback(store_url):
    assert_clean_error(run_cli("server", "--host", "0.0.0.0"), "refusing to serve on 0.0.0.0 with no tokens")


@LOCAL
def test_openapi_fuzzed_by_schemathesis_finds_no_server_error(server):
    """schemathesis generates requests from the OpenAPI document (the watch
    streams, which never end, left out) and checks that none gets a 5xx."""
    beside = os.path.join(os.path.dirname(sys.executable), "schemathesis")  # where pip put it for this Python
    exe = beside if os.path.exists(beside) else shutil.which("schemathesis")
    if exe is None:
        pytest.fail("schemathesis is not installed (pip install -e '.[test]')")
    r = subprocess.run([exe, "run", server.root + "/openapi.json", "--checks", "not_a_server_error",
                        "--header", f"Authorization: Bearer {WRITE}", "--max-examples", "15",
                        "--exclude-path-regex", "/watch/", "--request-timeout", "30"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]


@LOCAL
def test_the_cli_over_a_server_prints_what_it_prints_on_the_store(server, spec_file, run_controller, tmp_path):
    """Every data and pipeline command, run once on the store and once
    through the server (PIPECTL_STORE=http://..., PIPECTL_TOKEN), prints the
    same; put-file of several files makes one commit either way; errors are
    the same line; commands that need the store itself say so."""
    remote = {"PIPECTL_STORE": server.root, "PIPECTL_TOKEN": WRITE}
    (tmp_path / "d").mkdir()
    for i in range(3):
        (tmp_path / "d" / f"f{i}.txt").write_text(f"line {i}\n")
    run_ok("create-repo", "in", "-d", "inputs", env=remote)
    run_ok("put-file", "in", "master", "/", "-r", "-f", str(tmp_path / "d"), env=remote)
    run_ok("put-file", "in", "master", "/stdin.txt", "-f", "-", input=b"from stdin\n", env=remote)
    spec = {"pipeline": {"name": "copy"}, "transform": {"image": "local", "cmd": ["sh", "-c", "cp /pfs/in/* /pfs/out/"]},
            "input": {"pfs": {"repo": "in", "glob": "/*"}}}
    run_ok("create-pipeline", "-f", spec_file(spec), env=remote)
    run_controller()
    job = json.loads(run_cli("list-job", "--raw").out)[0]["id"]
    commands = [("list-repo", "--raw"), ("inspect-repo", "in", "--raw"), ("list-commit", "in", "--raw"),
                ("inspect-commit", "copy", "master", "--raw"), ("list-branch", "in", "--raw"),
                ("list-file", "in", "master", "--raw"), ("glob-file", "in", "master", "/*.txt", "--raw"),
                ("inspect-file", "in", "master", "/f1.txt", "--raw"), ("get-file", "copy", "master", "/f2.txt"),
                ("diff-file", "in", "master", "--raw"), ("list-pipeline", "--raw"), ("inspect-pipeline", "copy", "--raw"),
                ("list-job", "--raw"), ("inspect-job", job, "--raw"), ("list-datum", job, "--raw"),
                ("get-logs", "--job", job, "--raw"), ("list-datum", "-f", spec_file(spec), "--raw"),
                ("flush-commit", "in", "master", "--raw"), ("inspect-repo", "nope"), ("get-file", "in", "master", "/x")]
    for args in commands:
        direct, over = run_cli(*args), run_cli(*args, env=remote)
        assert (over.code, over.out, over.err) == (direct.code, direct.out, direct.err), args
    assert len(json.loads(run_cli("list-commit", "in", "--raw").out)) == 2  # one commit per put-file
    assert_clean_error(run_cli("controller", "--exit-when-idle", env=remote), "needs the store itself")
    assert_clean_error(run_cli("list-repo", env={"PIPECTL_STORE": server.root}), "bearer token is required",
                       "PIPECTL_TOKEN")
