"""Content-addressed file storage.

File bytes are cut into chunks of at most :data:`CHUNK_SIZE` bytes; each chunk
is stored once at ``objects/<first two hex digits>/<hash>``, named by its
content hash (:mod:`.hashing`). Putting bytes the store already holds uploads
nothing: hashes already known to be present (e.g. from the target commit's
tree) are skipped without a request, large chunks are probed with an
existence check first, and small ones are written with a create-only
conditional write.

Packs: many small files put at once (:meth:`ObjectWriter.put_files`) are not
stored one object each. Their bytes are concatenated into packs of about
:data:`PACK_SIZE` bytes, each stored as one object named by the content hash
of the pack, and each file's ref names its place in its pack
(``<hash>@<pack>:<offset>:<length>``, see :class:`~.tree.FileEntry`). One
write per pack instead of one per file: on local disk the per-file cost of
creating and renaming a file is gone, on S3 the per-file request. This is
how Pachyderm 2 stores small files (their bytes share chunks, and a file's
data refs name a range of a chunk). A packed file is deduplicated against
the files of the commit it is put into (by hash, without a request), and
the same files put again in the same order, into any repo, make the same
packs, which are then found by name and not stored again; but a small file
put among different neighbours is stored once more.

Memory: a file streams through at most ``CHUNK_SIZE * (1 + CHUNK_UPLOADS)``
bytes in flight (80 MiB with the defaults), whatever its size, and packs
take as much again.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import errno
import mmap
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from ..errors import Conflict, NotFound
from ..parallel import parallel
from ..store import ObjectStore
from .hashing import content_hash
from .keys import object_key
from .tree import EMPTY_FILE, FileEntry

CHUNK_SIZE = 16 * 1024 * 1024
CHUNK_UPLOADS = 4
SMALL = 1024 * 1024
"""Files of at most this many bytes are packed; chunks of at most this many
are written create-only without an existence probe first."""
PACK_SIZE = CHUNK_SIZE
MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)
"""madvise(2) advice that maps a range's pages in one call (Linux uapi
``asm-generic/mman-common.h``; Python 3.11's mmap module has no name for it)."""


@dataclasses.dataclass
class TransferStats:
    """Counters (bytes and object counts), safe to update from threads."""

    bytes_read: int = 0
    bytes_uploaded: int = 0
    objects_uploaded: int = 0
    objects_deduplicated: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def add(self, read: int = 0, uploaded: int = 0, new: int = 0, dedup: int = 0) -> None:
        with self.lock:
            self.bytes_read += read
            self.bytes_uploaded += uploaded
            self.objects_uploaded += new
            self.objects_deduplicated += dedup


class ObjectWriter:
    """Uploads byte streams as content-addressed chunks.

    ``known``: the refs of chunks already present in the store, by content
    hash (skipped without a request; a file whose hash is known gets the
    known ref). ``progress``: called with a byte count as bytes are consumed.
    """

    def __init__(self, store: ObjectStore, known: dict[str, str] | None = None,
                 progress: Callable[[int], None] | None = None):
        self.store = store
        self.known = dict(known or {})
        self.progress = progress
        self.stats = TransferStats()
        self._chunk_pool = cf.ThreadPoolExecutor(CHUNK_UPLOADS, thread_name_prefix="pipectl-chunk")
        self._known_lock = threading.Lock()

    def close(self) -> None:
        self._chunk_pool.shutdown(wait=True)

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _store_chunk(self, sha: str, size: int, write: Callable[[str], bool]) -> str:
        """Record chunk ``sha``, calling ``write(key)`` (True if it wrote)
        unless the chunk is known to be stored already; return its ref."""
        with self._known_lock:
            ref = self.known.get(sha)
        if ref is not None:
            self.stats.add(dedup=1)
            return ref
        if write(object_key(sha)):
            self.stats.add(uploaded=size, new=1)
        else:
            self.stats.add(dedup=1)
        with self._known_lock:
            self.known.setdefault(sha, sha)
        return sha

    def _put_object(self, key: str, data: bytes | mmap.mmap) -> bool:
        """Create-only write of ``data`` at ``key`` (large data probed with an
        existence check first, so it is not sent in vain); True if written."""
        return (len(data) <= SMALL or not self.store.exists(key)) and self.store.put_content(key, data)

    def put_bytes(self, data: bytes | mmap.mmap) -> str:
        """Store one chunk (bytes, or a file's range mapped read-only); return its ref."""
        return self._store_chunk(content_hash(data), len(data),  # type: ignore[arg-type]  # an mmap is bytes-like
                                 lambda key: self._put_object(key, data))

    def put_files(self, paths: list[str], threads: int = 16) -> list[FileEntry]:
        """Store local files; return their entries, in the order of ``paths``.

        Regular files of at most :data:`SMALL` bytes are read one after
        another and packed (:meth:`put_blobs`). The other files stream
        through :meth:`put_stream`, ``threads`` at a time. Raises NotFound
        for a path that cannot be read."""
        entries: list[FileEntry | None] = [None] * len(paths)
        large: list[int] = []

        def small() -> Iterator[tuple[int, bytes]]:
            for i, path in enumerate(paths):
                data = read_small(path)
                if data is None:
                    large.append(i)
                else:
                    yield i, data
        self._pack(small(), entries)

        def one(i: int) -> None:
            with _open(paths[i]) as f:
                entries[i] = self.put_stream(f)
        parallel(one, large, threads)
        return entries  # type: ignore[return-value]  # every entry is filled in by now

    def put_blobs(self, blobs: list[bytes]) -> list[FileEntry]:
        """Store files given as bytes (each at most :data:`SMALL`), packed
        (see the module docs); return their entries, in order."""
        entries: list[FileEntry | None] = [None] * len(blobs)
        self._pack(enumerate(blobs), entries)
        return entries  # type: ignore[return-value]  # every entry is filled in by now

    def _pack(self, items: Iterable[tuple[int, bytes]], entries: list) -> None:
        """Pack the ``(index, bytes)`` of ``items``, filling ``entries[index]``
        with each file's entry: a known file takes its known ref, an empty
        one :data:`~.tree.EMPTY_FILE`, the others go into packs. Each full
        pack is written on the chunk pool while ``items`` goes on; returns
        when all are written."""
        writes: list[cf.Future] = []
        gate = threading.Semaphore(CHUNK_UPLOADS)
        pack = _Pack()

        def write_pack(full: _Pack) -> None:
            gate.acquire()
            future = self._chunk_pool.submit(self._write_pack, full, entries)
            future.add_done_callback(lambda _: gate.release())
            writes.append(future)

        read = dedup = 0  # counted here, added to the stats once
        for i, data in items:
            read += len(data)
            if self.progress:
                self.progress(len(data))
            sha = content_hash(data) if data else ""
            with self._known_lock:
                ref = self.known.get(sha)
            if ref is not None or not data:
                entries[i] = FileEntry(len(data), (ref,)) if ref is not None else EMPTY_FILE
                dedup += bool(data)
                continue
            pack.add(i, sha, data)
            if pack.size >= PACK_SIZE:
                write_pack(pack)
                pack = _Pack()
        self.stats.add(read=read, dedup=dedup)
        if pack.members:
            write_pack(pack)
        for future in writes:
            future.result()

    def _write_pack(self, pack: _Pack, entries: list) -> None:
        """Store ``pack`` and fill in its members' ``entries``. A pack of
        one distinct file is stored as that file's own object."""
        data = b"".join(pack.parts)
        if len(pack.offsets) == 1:
            one = self.put_bytes(data)
            refs = {sha: one for sha in pack.offsets}
        else:
            name = content_hash(data)  # the same files in the same order make the same pack
            if self._put_object(object_key(name), data):
                self.stats.add(uploaded=len(data), new=1)
            else:
                self.stats.add(dedup=1)
            refs = {sha: f"{sha}@{name}:{offset}:{length}" for sha, (offset, length) in pack.offsets.items()}
        for i, sha in pack.members:
            entries[i] = FileEntry(pack.offsets[sha][1], (refs[sha],))
        with self._known_lock:
            for sha, ref in refs.items():
                self.known.setdefault(sha, ref)

    def put_stream(self, stream: BinaryIO) -> FileEntry:
        """Store everything ``stream`` yields; return the file's entry.
        Chunks after the first are uploaded concurrently, at most
        ``CHUNK_UPLOADS`` at a time; a regular file of more than one chunk
        takes :meth:`_put_file_chunks` instead."""
        regular = _regular_size(stream)
        if regular is not None and regular > CHUNK_SIZE:
            return self._put_file_chunks(stream.fileno(), regular, getattr(stream, "name", "the input"))
        futures: list[cf.Future | str] = []
        gate = threading.Semaphore(CHUNK_UPLOADS)
        size = 0
        for chunk in _chunks(stream, regular):
            size += len(chunk)
            self.stats.add(read=len(chunk))
            if self.progress:
                self.progress(len(chunk))
            if len(chunk) < CHUNK_SIZE and not futures:
                futures.append(self.put_bytes(chunk))  # the common small file
                continue
            gate.acquire()
            future = self._chunk_pool.submit(self.put_bytes, chunk)
            future.add_done_callback(lambda _: gate.release())
            futures.append(future)
        objects = tuple(f if isinstance(f, str) else f.result() for f in futures)
        return FileEntry(size, objects)

    def _put_file_chunks(self, fd: int, size: int, name: str) -> FileEntry:
        """A large regular file (``name`` for errors), ``CHUNK_UPLOADS``
        chunks at a time, each on its own thread through a read-only mmap of
        just that chunk: hashed there (the hash releases the GIL), then
        handed to the store as it is (on local disk one ``write`` from the
        mapped pages, 20% faster than a kernel-side ``copy_file_range``
        measured here; botocore streams it as a file, in 16 KiB reads, where
        a 16 MiB copy was made before, and asks ``Expect: 100-continue`` as
        it does for boto3's ``upload_file``). The chunk's pages are mapped in one
        call (``MADV_POPULATE_READ``, Linux 5.14+; a third less system time
        than faulting them in) and unmapped after it, so resident memory
        stays near ``CHUNK_UPLOADS * CHUNK_SIZE``. Raises Conflict if the
        file shrinks while it is stored (one truncated under the mapping
        between those checks still ends the process with SIGBUS, as any
        reader of a mapped file would)."""
        def one(offset: int) -> str:
            n = min(CHUNK_SIZE, size - offset)
            try:
                chunk = mmap.mmap(fd, n, offset=offset, access=mmap.ACCESS_READ)
            except ValueError:  # "mmap length is greater than file size"
                raise Conflict(f"{name} shrank while being stored") from None
            with chunk:
                try:
                    chunk.madvise(MADV_POPULATE_READ)
                except OSError as e:
                    if e.errno == errno.EFAULT:  # pages past the end of the file
                        raise Conflict(f"{name} shrank while being stored") from None
                    if e.errno != errno.EINVAL:  # EINVAL before Linux 5.14: pages fault in instead
                        raise
                ref = self.put_bytes(chunk)
            self.stats.add(read=n)
            if self.progress:
                self.progress(n)
            return ref
        return FileEntry(size, tuple(self._chunk_pool.map(one, range(0, size, CHUNK_SIZE))))


class _Pack:
    """Small files gathered for one pack: ``parts`` (their bytes, each
    distinct content once, joined when the pack is written: one copy),
    ``size`` (their total length), ``offsets`` (hash -> (offset, length) in
    the joined bytes) and ``members`` ((index in the put, hash) pairs)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.offsets: dict[str, tuple[int, int]] = {}
        self.members: list[tuple[int, str]] = []

    def add(self, index: int, sha: str, data: bytes) -> None:
        if sha not in self.offsets:
            self.offsets[sha] = (self.size, len(data))
            self.parts.append(data)
            self.size += len(data)
        self.members.append((index, sha))


def _open(path: str) -> BinaryIO:
    """``open(path, "rb")``; raises NotFound (one line) if it cannot be read."""
    try:
        return open(path, "rb")
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise NotFound(f"cannot read {path}: {e.strerror}") from None


def read_small(path: str) -> bytes | None:
    """The bytes of ``path`` if it is a regular file of at most
    :data:`SMALL` bytes, else None. Raises NotFound. (Plain file
    descriptors: a buffered file object would cost more than the read.)"""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise NotFound(f"cannot read {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > SMALL:
            return None
        data = os.read(fd, st.st_size + 1)  # whole: a regular file reads short only at its end
        return data if len(data) <= st.st_size else None  # None: it grew meanwhile
    finally:
        os.close(fd)


def _regular_size(stream: BinaryIO) -> int | None:
    """The size of ``stream`` if it is a regular file, else None."""
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _chunks(stream: BinaryIO, size: int | None) -> Iterator[bytes]:
    """Yield ``CHUNK_SIZE`` pieces of ``stream`` (the last may be shorter),
    reading into one buffer and copying each piece out once. ``size``: the
    stream's size if it is a regular file (the buffer is sized to it), else
    None."""
    buf = bytearray(CHUNK_SIZE if size is None else min(CHUNK_SIZE, size + 1))
    view = memoryview(buf)
    readinto = getattr(stream, "readinto", None)
    while True:
        filled = 0
        while filled < len(buf):
            if readinto is not None:
                n = readinto(view[filled:])
            else:
                piece = stream.read(len(buf) - filled)
                n = len(piece)
                view[filled:filled + n] = piece
            if not n:
                break
            filled += n
        if not filled:
            return
        yield bytes(view[:filled])
        if filled < len(buf):
            return
        if len(buf) < CHUNK_SIZE:  # the file grew past its size: read on in full chunks
            buf = bytearray(CHUNK_SIZE)
            view = memoryview(buf)
