"""``pipectl.Client``, the Python client, with the same test run on a store
directly and through a real pipectl server: repos and branches, the commit
context manager (finished at the end of the block, discarded when it
raises), streamed get_file, a pipeline with wait_commit and
inspect_job(wait=True), list_datum and logs, subscribe_commit."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest
from helpers import WRITE

import pipectl
from pipectl.errors import AlreadyExists, Conflict, InvalidArgument, NotFound

LOCAL = pytest.mark.parametrize("store_url", ["local"], indirect=True)


@pytest.fixture(params=["store", "server"])
def client(request, store_url):
    if request.param == "store":
        return pipectl.Client(store=store_url)
    server = request.getfixturevalue("server")
    return pipectl.Client(address=server.root, token=WRITE)


@LOCAL
def test_data_calls_and_the_commit_context_manager(client, tmp_path):
    client.pfs.create_repo(repo="images", description="photos")
    (tmp_path / "photos" / "2026").mkdir(parents=True)
    (tmp_path / "photos" / "2026" / "a.jpg").write_bytes(b"jpeg-a")
    (tmp_path / "photos" / "b.jpg").write_bytes(b"jpeg-b")
    big = os.urandom(5 << 20)
    with client.pfs.commit(repo="images", branch="master", description="first") as commit:
        commit.put_file_from_bytes(path="/hello.txt", data=b"hello")
        commit.put_file_from_bytes(path="/hello.txt", data=b", world", append=True)
        commit.put_file_from_file(path="/big.bin", file=__import__("io").BytesIO(big))
        commit.put_files(source=str(tmp_path / "photos"), path="/photos")
        commit.delete_file(path="/photos/b.jpg")
    head = client.pfs.inspect_commit(repo="images", commit="master")
    assert head.id == commit.id and head.finished and head.description == "first"
    assert [n.path for n in client.pfs.list_file(repo="images", commit="master")] == \
        ["/big.bin", "/hello.txt", "/photos"]
    assert [n.path for n in client.pfs.glob_file(repo="images", commit="master", pattern="/photos/*/*")] == \
        ["/photos/2026/a.jpg"]
    with client.pfs.get_file(repo="images", commit="master", path="/hello.txt") as f:
        assert f.read() == b"hello, world"
    with client.pfs.get_file(repo="images", commit="master", path="/big.bin") as f:
        digest = hashlib.sha256()
        while chunk := f.read(1 << 16):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(big).hexdigest()

    # A block that raises leaves nothing behind: the branch keeps its head.
    with pytest.raises(RuntimeError), client.pfs.commit(repo="images", branch="master") as doomed:
        doomed.put_file_from_bytes(path="/half.txt", data=b"half")
        raise RuntimeError("the upload's source failed")
    assert client.pfs.inspect_commit(repo="images", commit="master").id == head.id
    assert len(client.pfs.list_commit(repo="images")) == 1

    client.pfs.create_branch(repo="images", branch="staging", head="master")
    assert {b.name for b in client.pfs.list_branch(repo="images")} == {"master", "staging"}
    assert client.pfs.inspect_repo(repo="images").size_bytes == len(big) + 12 + 6
    with pytest.raises(NotFound, match="file /nope not found in images@master"):
        client.pfs.get_file(repo="images", commit="master", path="/nope")
    with pytest.raises(NotFound, match="repo ghost not found"):
        client.pfs.inspect_repo(repo="ghost")
    with pytest.raises(AlreadyExists):
        client.pfs.create_repo(repo="images")
    finished = client.pfs.commit(repo="images", branch="staging")
    finished.finish()
    with pytest.raises(Conflict, match="is finished"):
        finished.put_file_from_bytes(path="/late.txt", data=b"late")


@LOCAL
def test_pipelines_jobs_and_subscriptions(client, background, spec_file):
    client.pfs.create_repo(repo="in")
    with client.pfs.commit(repo="in", branch="master") as commit:
        for i in range(3):
            commit.put_file_from_bytes(path=f"/f{i}", data=f"{i}\n".encode())
    client.pps.create_pipeline({"pipeline": {"name": "copy"},
                                "transform": {"image": "local", "cmd": ["sh", "-c", "echo hi; cp /pfs/in/* /pfs/out/"]},
                                "input": {"pfs": {"repo": "in", "glob": "/*"}}})
    with pytest.raises(InvalidArgument, match="2 problems"):
        client.pps.create_pipeline(file=spec_file({"pipeline": {"name": "bad"}, "transform": {}, "input": {}}))
    arrived: list = []
    listener = threading.Thread(target=lambda: arrived.append(
        next(client.pfs.subscribe_commit(repo="copy"))), daemon=True)
    listener.start()
    background("controller", "--poll-interval", "0.05")
    done = client.pfs.wait_commit(repo="in", commit="master", timeout=120)
    assert [c.repo for c in done] == ["in", "copy"] and done[0].id == commit.id
    job = client.pps.inspect_job(job=client.pps.list_job(pipeline="copy")[0].id, wait=True, timeout=60)
    assert (job.state, job.datums_processed) == ("success", 3)
    assert sorted(d["state"] for d in client.pps.list_datum(job=job.id)) == ["success"] * 3
    assert all("hi" in r.log for r in client.pps.get_logs(job=job.id))
    listener.join(30)
    assert [c.id for c in arrived] == [done[1].id]
    assert [p.info.name for p in client.pps.list_pipeline()] == ["copy"]
