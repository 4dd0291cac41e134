"""The ObjectStore contract: every store implementation (the local directory
and S3 over HTTP, see the ``store`` fixture) passes these same tests, as
fsspec's abstract suite holds each of its file systems to one behaviour."""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
import threading

import pytest

from pipectl.errors import Conflict, NotFound, PreconditionFailed
from pipectl.store.base import FileRange
from pipectl.store.local import LocalStore


def test_write_then_read_returns_the_bytes(store):
    store.write("a/b/c.bin", b"\x00hello\xff")
    assert store.read("a/b/c.bin") == b"\x00hello\xff"
    store.write("t.txt", "héllo".encode())
    assert store.read_text("t.txt") == "héllo"


def test_missing_keys_raise_not_found(store):
    for call in (store.read, store.read_versioned, store.open):
        with pytest.raises(NotFound):
            call("no/such/key")
    with pytest.raises(NotFound):
        store.read_range("no/such/key", 0, 4)
    assert not store.exists("no/such/key")


def test_every_write_gives_a_new_version(store):
    v1 = store.write("k", b"one")
    data, version = store.read_versioned("k")
    assert (data, version) == (b"one", v1)
    v2 = store.write("k", b"two")
    assert v2 != v1
    assert store.read_versioned("k") == (b"two", v2)


def test_if_absent_creates_once(store):
    store.write("once", b"first", if_absent=True)
    with pytest.raises(PreconditionFailed):
        store.write("once", b"second", if_absent=True)
    assert store.read("once") == b"first"


def test_if_match_swaps_only_the_version_read(store):
    v1 = store.write("cas", b"1")
    v2 = store.write("cas", b"2", if_match=v1)
    with pytest.raises(PreconditionFailed):
        store.write("cas", b"stale", if_match=v1)
    assert store.read_versioned("cas") == (b"2", v2)


def test_a_version_read_before_two_writes_of_the_same_size_is_stale(tmp_path):
    """The local store's versions hash the bytes, as S3's ETags do: two
    writes later, a compare-and-swap with the version first read is
    refused even when the file comes back with the same inode, size and
    modification time (file systems reuse inodes at once, and many kernels
    stamp files with a clock of millisecond ticks)."""
    store = LocalStore(str(tmp_path / "store"))
    store.write("cas", b"one")
    _, first = store.read_versioned("cas")
    path = tmp_path / "store" / "cas"
    stat = path.stat()
    for _ in range(100):  # until the inode comes back, as it does at once on ext4
        store.write("cas", b"two")
        store.write("cas", b"six")
        if path.stat().st_ino == stat.st_ino:
            break
    else:
        pytest.skip("this file system gave the record no inode it had before")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # one tick of a coarse clock
    with pytest.raises(PreconditionFailed):
        store.write("cas", b"new", if_match=first)
    assert store.read("cas") == b"six"


def test_if_match_on_a_missing_key_is_refused(store):
    version = store.write("gone", b"x")
    store.delete("gone")
    with pytest.raises((PreconditionFailed, NotFound)):
        store.write("gone", b"y", if_match=version)
    assert not store.exists("gone")


def test_put_content_stores_once(store):
    assert store.put_content("objects/aa/x", b"same") is True
    assert store.put_content("objects/aa/x", b"same") is False
    assert store.read("objects/aa/x") == b"same"


def test_write_from_a_mapped_file(store, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"mapped bytes" * 1000)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        store.write("m", m)
    assert store.read("m") == b"mapped bytes" * 1000


def test_put_content_from_a_view_of_a_mapped_file(store, tmp_path):
    """A chunk cut by content is a view of a mapped file that starts and
    ends anywhere in a page: written as it is, read back the same."""
    data = bytes(range(256)) * 300
    path = tmp_path / "f"
    path.write_bytes(data)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        view = memoryview(m)
        assert store.put_content("objects/bb/v", view[1001:70001]) is True
        assert store.put_content("objects/bb/v", view[1001:70001]) is False
        store.write("w", view[5:9])
        view.release()
    assert store.read("objects/bb/v") == data[1001:70001]
    assert store.read("w") == data[5:9]


@pytest.mark.parametrize("where", ["same file system", "tmpfs"])
def test_put_content_of_a_file_range(store, tmp_path, where):
    """A chunk of a regular file handed over as a FileRange (copied in the
    kernel on local disk; from tmpfs into a store on another file system
    the kernel refuses, and the mapped view is written instead) is stored
    as those bytes exactly; a range past the file's end is refused with
    Conflict and leaves nothing behind."""
    if where == "tmpfs" and not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    data = os.urandom(3 * 1024 * 1024 + 777)
    folder = tmp_path if where == "same file system" else tempfile.mkdtemp(dir="/dev/shm")
    path = os.path.join(folder, "f")
    with open(path, "wb") as out:
        out.write(data)
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            view = memoryview(m)
            start, end = 4097, len(data) - 3
            assert store.put_content("objects/cc/r", FileRange(f.fileno(), start, view[start:end])) is True
            assert store.put_content("objects/cc/r", FileRange(f.fileno(), start, view[start:end])) is False
            assert store.read("objects/cc/r") == data[start:end]
            if isinstance(store, LocalStore) and where == "same file system":  # copied in the kernel
                os.truncate(path, 2 * 1024 * 1024)  # (the view is not read: its pages past the end are gone)
                with pytest.raises(Conflict, match="shrank"):
                    store.put_content("objects/cc/short", FileRange(f.fileno(), start, view[start:end]))
                assert not store.exists("objects/cc/short")
                assert not [n for n in os.listdir(os.path.join(store.root, "objects", "cc")) if n != "r"]
            view.release()
    finally:
        if folder != tmp_path:
            shutil.rmtree(folder)


def test_open_streams_and_read_range_slices(store):
    data = bytes(range(256)) * 40
    store.write("r", data)
    with store.open("r") as f:
        assert f.read(100) + f.read() == data
    assert store.read_range("r", 10, 20) == data[10:30]
    assert store.read_range("r", len(data) - 5, 100) == data[-5:]
    assert store.read_range("r", 3, 0) == b""


def test_size_is_the_object_length(store):
    store.write("sized", b"x" * 1234)
    store.write("empty", b"")
    assert store.size("sized") == 1234 and store.size("empty") == 0
    with pytest.raises(NotFound):
        store.size("no/such/key")


def test_list_by_prefix(store):
    for key in ("p/a", "p/b/c", "p/bc", "q/a", "pa"):
        store.write(key, b".")
    assert sorted(store.list("p/")) == ["p/a", "p/b/c", "p/bc"]
    assert sorted(store.list("p/b")) == ["p/b/c", "p/bc"]
    assert sorted(store.list("")) == ["p/a", "p/b/c", "p/bc", "pa", "q/a"]
    assert list(store.list("nothing/")) == []


def test_delete_is_idempotent(store):
    store.write("d", b".")
    store.delete("d")
    store.delete("d")
    assert not store.exists("d")
    assert list(store.list("d")) == []


def test_download_copies_to_a_local_file(store, tmp_path):
    store.write("dl", b"x" * 5000)
    assert store.download("dl", str(tmp_path / "out")) == 5000
    assert (tmp_path / "out").read_bytes() == b"x" * 5000
    with pytest.raises(NotFound):
        store.download("missing", str(tmp_path / "out2"))


def test_racing_creates_have_one_winner(store):
    winners, barrier = [], threading.Barrier(8)

    def create(n: int) -> None:
        barrier.wait()
        try:
            store.write("race", str(n).encode(), if_absent=True)
            winners.append(n)
        except PreconditionFailed:
            pass

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert store.read("race") == str(winners[0]).encode()


def test_racing_compare_and_swaps_lose_no_update(store):
    store.write("counter", b"0")

    def increment() -> None:
        for _ in range(5):
            while True:
                data, version = store.read_versioned("counter")
                try:
                    store.write("counter", str(int(data) + 1).encode(), if_match=version)
                    break
                except PreconditionFailed:
                    continue

    threads = [threading.Thread(target=increment) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.read("counter") == b"20"
