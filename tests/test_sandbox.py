"""The process executor's sandbox (pipectl.pps.sandbox): user code written
the way Pachyderm's example code is (hardcoded /pfs paths, /tmp scratch,
scripts at absolute paths) runs unchanged, writes nowhere else on the host
and sees neither the store nor the worker; without bubblewrap, /pfs paths
are rewritten and a datum writing the host's /pfs fails. Real controller,
real workers, real bwrap."""

from __future__ import annotations

import json
import os
import shutil
import uuid

import pytest
from helpers import REPO_ROOT, files_of, ok, put

from pipectl.pps import sandbox

pytestmark = pytest.mark.skipif(bool(sandbox.unavailable()), reason=f"no sandbox here: {sandbox.unavailable()}")


def pipeline(name: str, cmd: list[str], repo: str = "in", glob: str = "/*", image: str = "local", **extra) -> dict:
    return {"pipeline": {"name": name}, "transform": {"image": image, "cmd": cmd},
            "input": {"pfs": {"repo": repo, "glob": glob}}, **extra}


WORD_MAP = """
import os
for name in os.listdir("/pfs/in"):
    words = open(os.path.join("/pfs/in", name)).read().split()
    # scratch in /tmp, as Pachyderm's word_count map does
    with open("/tmp/counts", "a") as scratch:
        for w in words:
            scratch.write(w + "\\n")
    counted = open("/tmp/counts").read().split()
    with open("/pfs/out/" + name, "w") as out:
        out.write(str(len(counted)))
"""


def test_hardcoded_pfs_paths_and_a_private_tmp(store_url, pfs, cli, spec_file, run_controller, tmp_path):
    """Code opening /pfs/in and writing /pfs/out runs unchanged; each datum
    gets an empty /tmp of its own (a count kept in /tmp is never the
    previous datum's), and nothing lands in the host's /tmp or /pfs.
    Emptying /tmp leaves alone the host directory under /tmp that the local
    images file makes writable (the test's, which holds a local store)."""
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("kept")
    pfs.create_repo("in")
    put(pfs, "in", {"/a": "one two three", "/b": "four five"})
    ok(cli("create-pipeline", "-f", spec_file(pipeline("count", ["python3", "-c", WORD_MAP]))))
    run_controller()
    assert files_of(pfs, "count") == {"/a": "3", "/b": "2"}
    assert not os.path.exists("/tmp/counts") and not os.path.exists("/pfs")
    assert sentinel.read_text() == "kept"


def test_user_code_writes_nowhere_else_and_sees_neither_store_nor_worker(store_url, pfs, cli, spec_file,
                                                                           run_controller, tmp_path):
    """The host is read-only to user code except /pfs, its /tmp and an empty
    $HOME of the worker's; the local store's directory is empty to it, and
    the Docker engine's socket is gone; its /proc shows its own processes,
    not the worker."""
    pfs.create_repo("in")
    put(pfs, "in", {"/x": "x"})
    outside = os.path.join(REPO_ROOT, f".sandbox-probe-{uuid.uuid4().hex}")  # not under /tmp, which is private
    secret = os.path.expanduser(f"~/.sandbox-probe-{uuid.uuid4().hex}")  # as ~/.aws would be
    open(secret, "w").close()
    store_dir = store_url.removeprefix("file://") if store_url.startswith("file://") else "/nonexistent"
    script = (f"touch {outside} 2>/dev/null && echo wrote > /pfs/out/outside; "
              "touch /usr/x 2>/dev/null && echo wrote > /pfs/out/usr; "
              "echo home > $HOME/h && ls -A $HOME > /pfs/out/home; "
              f"ls -A {store_dir} > /pfs/out/store 2>/dev/null; "
              "cat /proc/[0-9]*/cmdline | tr '\\0' ' ' > /pfs/out/cmdlines; "
              "for s in /run/docker.sock /var/run/docker.sock; do test -S $s && echo $s; done > /pfs/out/sockets; true")
    spec = pipeline("peek", ["sh", "-c", script], image="sealed")
    ok(cli("create-pipeline", "-f", spec_file(spec)))
    images = tmp_path / "sealed-images.json"
    images.write_text(json.dumps({"sealed": {}}))  # no writable directory
    try:
        run_controller("--local-images", str(images))
    finally:
        os.unlink(secret)
    out = files_of(pfs, "peek")
    assert "/outside" not in out and "/usr" not in out and not os.path.exists(outside)
    home = out["/home"].split()
    assert "h" in home and os.path.basename(secret) not in home and not os.path.exists(os.path.expanduser("~/h"))
    assert out["/store"] == ""  # a local store's directory is empty to user code
    assert "pipectl.pps.worker" not in out["/cmdlines"] and "cmdline" in out["/cmdlines"]
    if os.path.exists("/run/docker.sock"):
        assert out["/sockets"] == ""  # the Docker engine's socket is hidden


def test_local_images_place_files_at_absolute_paths(store_url, pfs, cli, spec_file, run_controller, tmp_path):
    """An opencv-style image runs ``python3 /edges.py``: the local images
    file places the script at /edges.py."""
    (tmp_path / "edges.py").write_text("import os\nfor f in os.listdir('/pfs/in'):\n"
                                       "    open('/pfs/out/' + f, 'w').write(open('/pfs/in/' + f).read()[::-1])\n")
    images = tmp_path / "opencv-images.json"
    images.write_text(json.dumps({"opencv": {"files": {"/edges.py": "edges.py"}}}))
    pfs.create_repo("in")
    put(pfs, "in", {"/img": "abc"})
    ok(cli("create-pipeline", "-f", spec_file(pipeline("edges", ["python3", "/edges.py"], image="opencv"))))
    run_controller("--local-images", str(images))
    assert files_of(pfs, "edges") == {"/img": "cba"}
    assert not os.path.exists("/edges.py")


@pytest.mark.skipif(os.geteuid() != 0, reason="writing the host's /pfs needs root")
def test_without_bubblewrap_paths_are_rewritten_and_writing_host_pfs_fails(store_url, pfs, cli, spec_file,
                                                                          run_controller, monkeypatch):
    """The fallback: /pfs in cmd is rewritten to the worker's scratch
    directory; user code that builds a /pfs path the rewriting cannot see
    and writes the host's /pfs fails its datum and the job, naming why."""
    monkeypatch.setenv("PIPECTL_BWRAP", "/nonexistent/bwrap")
    assert not os.path.exists("/pfs")
    pfs.create_repo("in")
    put(pfs, "in", {"/x": "x"})
    ok(cli("create-pipeline", "-f", spec_file(pipeline("copy", ["sh", "-c", "cp /pfs/in/* /pfs/out/"]))))
    sneaky = "d=/pf; mkdir -p ${d}s/out && echo x > ${d}s/out/x"
    ok(cli("create-pipeline", "-f", spec_file(pipeline("sneaky", ["sh", "-c", sneaky], datum_tries=1))))
    try:
        result = run_controller()
        assert "without a sandbox" in result.err
        assert files_of(pfs, "copy") == {"/x": "x"}
        job = json.loads(ok(cli("list-job", "-p", "sneaky", "--raw")).out)[0]
        assert job["state"] == "failure" and "wrote to /pfs on this host" in job["reason"], job
    finally:
        shutil.rmtree("/pfs", ignore_errors=True)
