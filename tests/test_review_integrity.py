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
