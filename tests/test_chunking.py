"""Content-defined chunking of large files (pipectl/pfs/objects.py): cuts
that survive an insertion, the same chunks from a file and from a pipe,
and files stored as fixed 16 MiB slices (stores written before) still
read, on both stores."""

from __future__ import annotations

import io
import os
import random
import threading

import blake3
import pytest
from helpers import Counted

from pipectl.pfs import objects, reader
from pipectl.pfs.objects import CHUNK_MAX, CHUNK_MIN, FIXED_CHUNK_SIZE, ObjectWriter
from pipectl.pfs.tree import FileEntry

KiB, MiB = 1024, 1024 * 1024


def _objects_bytes(store) -> int:
    """Bytes under ``objects/`` (chunks and packs)."""
    return sum(store.size(k) for k in store.list("objects/"))


def _entry(pfs, repo: str, path: str, ref: str = "master") -> FileEntry:
    return pfs.read_tree(pfs.inspect_commit(repo, ref)).files[path]


def _read(pfs, repo: str, path: str, ref: str = "master") -> bytes:
    out = io.BytesIO()
    pfs.get_file(repo, ref, path, out)
    return out.getvalue()


class Trickle:
    """A stream as a pipe gives it: reads of any size up to 64 KiB, some of
    one byte; ``readinto`` or only ``read`` (``readinto=False``)."""

    def __init__(self, data: bytes, seed: int = 0, readinto: bool = True):
        self.data, self.pos, self.rng = data, 0, random.Random(seed)
        if not readinto:
            self.readinto = None

    def _take(self, n: int) -> bytes:
        n = min(n, self.rng.choice([1, 4095, 65536, self.rng.randrange(1, 65536)]))
        piece = self.data[self.pos:self.pos + n]
        self.pos += len(piece)
        return piece

    def read(self, n: int = -1) -> bytes:
        return self._take(len(self.data) if n is None or n < 0 else n)

    def readinto(self, view) -> int:  # noqa: F811  (set to None per instance for read-only streams)
        piece = self._take(len(view))
        view[:len(piece)] = piece
        return len(piece)


def test_cuts_are_fastcdc_bounded_and_the_same_from_a_buffer_a_pipe_and_a_file(tmp_path):
    """Every chunk but the last is CHUNK_MIN..CHUNK_MAX bytes; the cuts of
    bytes in memory, of a stream read in uneven pieces (with readinto or
    only read) and of the same bytes as a mapped regular file are the
    same, for sizes around the cutter's window and buffer edges."""
    rng = random.Random(7)
    sizes = [0, 1, CHUNK_MIN, CHUNK_MIN + 1, CHUNK_MAX - 1, CHUNK_MAX, 2 * CHUNK_MAX, 2 * CHUNK_MAX + 1,
             5 * CHUNK_MAX + 12345]
    blob = os.urandom(max(sizes))
    store_dir = tmp_path / "store"
    from pipectl.store.local import LocalStore
    store = LocalStore(str(store_dir))
    for size in sizes:
        data = blob[:size]
        lengths = objects.chunk_lengths(data)
        assert sum(lengths) == size
        assert all(CHUNK_MIN <= n <= CHUNK_MAX for n in lengths[:-1])
        refs, offset = [], 0
        for n in lengths:
            refs.append(blake3.blake3(data[offset:offset + n]).hexdigest())
            offset += n
        path = tmp_path / f"f{size}"
        path.write_bytes(data)
        with ObjectWriter(store) as writer, open(path, "rb") as f:
            from_file = writer.put_stream(f)
            from_pipe = writer.put_stream(Trickle(data, seed=rng.random()))
            from_read = writer.put_stream(Trickle(data, seed=rng.random(), readinto=False))
        assert from_file == from_pipe == from_read == FileEntry(size, tuple(refs)), size


def test_insertion_stores_only_the_chunks_around_it(pfs, store, tmp_path):
    """A large file put, then put again with 4 KiB inserted in its middle:
    the store grows by the one or two chunks around the insertion (at most
    two of CHUNK_MAX bytes), not by everything after it as fixed slices
    would; every other chunk of the new file is a chunk of the old one.
    The same for 4 KiB changed in place; both read back byte-identical."""
    size = 40 * MiB
    data = os.urandom(size)
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    pfs.create_repo("r")
    _, first = pfs.put_files("r", "master", [("/big.bin", str(f))])
    assert first.bytes_uploaded == size
    old = _entry(pfs, "r", "/big.bin")
    assert len(old.objects) >= size // CHUNK_MAX

    for what, changed in (("insert", data[:size // 2] + os.urandom(4 * KiB) + data[size // 2:]),
                          ("in place", data[:size // 2] + os.urandom(4 * KiB) + data[size // 2 + 4 * KiB:])):
        f.write_bytes(changed)
        before = _objects_bytes(store)
        _, stats = pfs.put_files("r", "master", [("/big.bin", str(f))], overwrite=True)
        grown = _objects_bytes(store) - before
        new = _entry(pfs, "r", "/big.bin")
        fresh = [ref for ref in new.objects if ref not in old.objects]
        assert 1 <= len(fresh) <= 2, what
        assert grown == stats.bytes_uploaded <= 2 * CHUNK_MAX + 4 * KiB, what
        assert len(new.objects) - len(fresh) >= len(old.objects) - 3, what  # the rest: old chunks
        assert _read(pfs, "r", "/big.bin") == changed, what
        old = new


def test_fixed_slice_files_written_before_stay_readable(pfs, store, tmp_path, cli):
    """A file stored as pipectl stored large files before content-defined
    chunking (fixed FIXED_CHUNK_SIZE slices, each named by its BLAKE3 hash)
    reads back whole and by ranges across its slices, through the API and
    the CLI; the same bytes put again now are cut by content (new chunks)
    and read the same."""
    size = 2 * FIXED_CHUNK_SIZE + 12345
    data = os.urandom(size)
    with ObjectWriter(store) as writer:  # the old writer's layout: one object per 16 MiB slice
        refs = tuple(writer.put_bytes(data[i:i + FIXED_CHUNK_SIZE]) for i in range(0, size, FIXED_CHUNK_SIZE))
    assert refs == tuple(blake3.blake3(data[i:i + FIXED_CHUNK_SIZE]).hexdigest()
                         for i in range(0, size, FIXED_CHUNK_SIZE))
    pfs.create_repo("old")
    pfs.put_entries("old", "master", [("/sliced.bin", FileEntry(size, refs))])
    assert _read(pfs, "old", "/sliced.bin") == data
    out = tmp_path / "out.bin"
    r = cli("get-file", "old", "master", "/sliced.bin", "-o", str(out))
    assert r.code == 0, r
    assert out.read_bytes() == data
    start = FIXED_CHUNK_SIZE - 100  # a range across the first slice's end
    got = b"".join(reader.iter_objects_range(store, refs, start, 300))
    assert got == data[start:start + 300]

    f = tmp_path / "again.bin"
    f.write_bytes(data)
    pfs.put_files("old", "master", [("/again.bin", str(f))])
    again = _entry(pfs, "old", "/again.bin")
    assert again.objects != refs and len(again.objects) > len(refs)
    assert _read(pfs, "old", "/again.bin") == data == _read(pfs, "old", "/sliced.bin")


def test_stdin_and_a_file_give_identical_chunk_refs(pfs, tmp_path, cli):
    """The same bytes put through ``put-file -f -`` (a pipe) and ``-f FILE``
    (a mapped regular file) make the same chunk refs, so the second put
    stores nothing."""
    data = os.urandom(3 * CHUNK_MAX + 54321)
    f = tmp_path / "data.bin"
    f.write_bytes(data)
    pfs.create_repo("r")
    r = cli("put-file", "r", "master", "/from-file", "-f", str(f))
    assert r.code == 0, r
    r = cli("put-file", "r", "master", "/from-stdin", "-f", "-", input=data)
    assert r.code == 0, r
    tree = pfs.read_tree(pfs.inspect_commit("r", "master"))
    assert tree.files["/from-file"] == tree.files["/from-stdin"]
    assert len(tree.files["/from-file"].objects) > 1
    assert _read(pfs, "r", "/from-stdin") == data


@pytest.mark.parametrize("size", [CHUNK_MIN + 1, 3 * CHUNK_MAX])
def test_a_file_growing_while_it_is_read_as_a_stream(tmp_path, size):
    """A regular file read as a stream keeps its first size as a hint only:
    bytes past it are read and cut as any others."""
    from pipectl.store.local import LocalStore
    data = os.urandom(size + 3 * CHUNK_MAX)
    f = tmp_path / "grows"
    f.write_bytes(data[:size])

    class Growing(io.RawIOBase):
        def __init__(self):
            self.inner = open(f, "rb")  # noqa: SIM115  (closed with the stream)
            self.grown = False

        def fileno(self):
            raise OSError("not a file")  # read as a stream, sized by the hint below

        def close(self):
            self.inner.close()
            super().close()

        def readinto(self, view):
            n = self.inner.readinto(view)
            if not n and not self.grown:
                self.grown = True
                with open(f, "ab") as out:
                    out.write(data[size:])
                n = self.inner.readinto(view)
            return n

    from pipectl.pfs.objects import _stream_chunks
    with Growing() as stream:
        chunks = []
        for view, _window in _stream_chunks(stream, size):
            chunks.append(bytes(view))  # a view is valid only until its window is filled again
    assert b"".join(chunks) == data
    assert [len(c) for c in chunks] == objects.chunk_lengths(data)
    store = LocalStore(str(tmp_path / "store"))
    with ObjectWriter(store) as writer:
        assert writer.put_stream(io.BytesIO(data)).objects == tuple(
            blake3.blake3(c).hexdigest() for c in chunks)


def test_reading_a_many_chunk_file_ahead(pfs, store, tmp_path):
    """get-file and the streaming reader read the next chunks while one is
    sent: the bytes come out whole and in order; a reader that stops early
    leaves no read running; a chunk lost from the store fails the read
    with NotFound once the bytes before it are out."""
    from pipectl.errors import NotFound
    from pipectl.pfs.keys import object_key

    data = os.urandom(6 * CHUNK_MAX)
    f = tmp_path / "many"
    f.write_bytes(data)
    pfs.create_repo("r")
    pfs.put_files("r", "master", [("/many", str(f))])
    entry = _entry(pfs, "r", "/many")
    assert len(entry.objects) > objects.CHUNK_UPLOADS
    assert _read(pfs, "r", "/many") == data
    assert b"".join(reader.iter_objects_range(store, entry.objects, 0, len(data))) == data
    pieces = reader.iter_objects_range(store, entry.objects, 0, len(data))
    first = next(pieces)
    pieces.close()  # a client that hangs up
    assert data.startswith(first)
    assert not [t for t in threading.enumerate() if t.name.startswith("pipectl-read")]
    store.delete(object_key(entry.objects[3]))
    sent = []
    with pytest.raises(NotFound):
        for piece in reader.iter_objects_range(store, entry.objects, 0, len(data)):
            sent.append(piece)
    assert b"".join(sent) == data[:sum(len(store.read(object_key(r))) for r in entry.objects[:3])]


def test_existence_probes_stop_for_new_chunks_and_stored_chunks_are_not_sent(store):
    """A stream of new chunks is probed for (a check of its size before a
    chunk is sent) in doubling gaps, not chunk by chunk; the same bytes
    put again by a writer that knows nothing of them are all found by
    their probes, and none is sent."""
    data = random.Random(23).randbytes(200 * MiB)  # the same cuts every run
    cuts = objects.chunk_lengths(data)
    new = Counted(store)
    with ObjectWriter(new) as writer:
        first = writer.put_stream(io.BytesIO(data))
    assert len(first.objects) == len(cuts) >= 36
    assert writer.stats.objects_uploaded == len(cuts)
    assert new.calls["put_content"] == len(cuts)
    # chunks 1, 3, 6, 11, 20, 37 probed (gaps of 1, 2, 4, 8, 16); the chunk
    # threads may each ask before an answer is in
    assert new.calls["size"] <= len(cuts) // 2, new.calls

    again = Counted(store)
    with ObjectWriter(again) as writer:
        assert writer.put_stream(io.BytesIO(data)) == first
    large = sum(n > objects.SMALL for n in cuts)  # a last chunk of at most SMALL bytes goes create-only, unprobed
    assert again.calls["size"] == large, again.calls
    assert again.calls["put_content"] == len(cuts) - large, again.calls
    assert writer.stats.bytes_uploaded == 0 and writer.stats.objects_deduplicated == len(cuts)
