"""Integrity review: data a put stores must match the names it is stored
under, and what crashes and races leave behind must read back correctly."""

from __future__ import annotations

import io
import os

import pytest

from pipectl.errors import Conflict
from pipectl.pfs import PFS, objects
from pipectl.pfs.hashing import content_hash
from pipectl.store import ObjectStore, open_store
from pipectl.store.base import FileRange


def _written_during_copy(store: ObjectStore, path: str) -> ObjectStore:
    """``store``, during whose copy of one chunk another process writes
    into the file being put (what a put racing an editor or a log writer
    meets); the write lands after the chunk was hashed and before its
    bytes are copied."""
    done = []

    class Racing(type(store)):  # type: ignore[misc]
        def put_content(self, key, data, *args, **kwargs):
            if isinstance(data, FileRange) and not done:
                done.append(key)
                with open(path, "r+b") as f:  # same size, other bytes
                    f.seek(data.offset)
                    f.write(b"\xff" * 4096)
            return super().put_content(key, data, *args, **kwargs)

    store.__class__ = Racing
    return store


def _mismatched(store: ObjectStore) -> list[str]:
    """The objects whose bytes do not hash to their name."""
    return [k for k in store.list("objects/") if content_hash(store.read(k)) != k.rsplit("/", 1)[1]]


def test_a_file_written_while_being_put_never_stores_an_object_under_a_wrong_name(store_url, tmp_path):
    """A big file overwritten in place during its put (bytes of a chunk
    changed after the chunk was hashed, before it was copied into the
    store) must not leave an object whose bytes differ from its content
    hash: every later put of the true bytes would be deduplicated against
    it and read back the other bytes, in any repo. The put fails, naming
    the file."""
    f = tmp_path / "big"
    original = os.urandom(3 * objects.CHUNK_MAX)
    f.write_bytes(original)
    racing = PFS(_written_during_copy(open_store(store_url), str(f)))
    racing.create_repo("a")
    with pytest.raises(Conflict, match=f"{f} changed while being stored"):
        racing.put_files("a", "master", [("/big", str(f))])
    store = open_store(store_url)
    assert _mismatched(store) == []
    # an innocent put of the original bytes, in another repo, reads back what it put
    pfs = PFS(store)
    pfs.create_repo("b")
    pfs.put_files("b", "master", [("/copy", io.BytesIO(original))])
    out = io.BytesIO()
    pfs.get_file("b", "master", "/copy", out)
    assert out.getvalue() == original


def test_a_controller_killed_after_naming_its_job_does_not_hold_the_job_back(store, tmp_path):
    """A controller killed after naming a new job among its pipeline's
    pending jobs and before writing the job's record (create_job's first
    two writes): the next controller must create and run that job, not
    pass it over as existing (it is named) until the pending entry is
    dropped, ten minutes later, nor exit idle with the input unprocessed."""
    from helpers import put

    from pipectl.client import Client
    from pipectl.pfs.model import now
    from pipectl.pps import spec as specs
    from pipectl.pps.controller import Controller
    from pipectl.pps.executors.process import ProcessExecutor
    from pipectl.pps.jobs import job_id

    client = Client(store)
    client.create_repo("in")
    put(client.pfs, "in", {"/a": "1"})
    client.pps.create_pipeline(specs.validate({
        "pipeline": {"name": "copy"}, "input": {"pfs": {"repo": "in", "glob": "/*"}},
        "transform": {"image": "local", "cmd": ["sh", "-c", "cp /pfs/in/* /pfs/out/"]}}))
    controller = Controller(store, ProcessExecutor(store.url))
    pipeline = client.pps.inspect_pipeline("copy")
    jid = job_id(pipeline, controller.current_inputs(pipeline))
    # the killed controller's one write: the job named pending, no record
    client.pps.change_pointers("copy", lambda p: p.add_pending(jid, now()))
    Controller(store, ProcessExecutor(store.url)).run(exit_when_idle=True)
    job = client.inspect_job(jid, "copy")
    assert job.state == "success", job.reason
    assert client.pfs.inspect_commit("copy", "master").id == job.output_commit
    assert client.pps.job_pointers("copy").pending == []
