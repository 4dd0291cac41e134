"""Content-addressed file storage.

File bytes are cut into chunks of at most :data:`CHUNK_SIZE` bytes; each chunk
is stored once at ``objects/<first two hex digits>/<hash>``, named by its
content hash (:mod:`.hashing`). Putting bytes the store already holds uploads
nothing: hashes already known to be present (e.g. from the target commit's
tree) are skipped without a request, large chunks are probed with an
existence check first, and small ones are written with a create-only
conditional write.

Memory: a file streams through at most ``CHUNK_SIZE * (1 + CHUNK_UPLOADS)``
bytes in flight (80 MiB with the defaults), whatever its size.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import mmap
import os
import stat
import threading
from typing import BinaryIO, Callable, Iterator

from ..store import ObjectStore
from .hashing import content_hash
from .tree import FileEntry

CHUNK_SIZE = 16 * 1024 * 1024
CHUNK_UPLOADS = 4
_SMALL = 1024 * 1024


def object_key(sha: str) -> str:
    """Store key of the object whose content hash is ``sha``."""
    return f"objects/{sha[:2]}/{sha}"


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

    ``known``: hashes already present in the store (skipped without a
    request). ``progress``: called with a byte count as bytes are consumed.
    """

    def __init__(self, store: ObjectStore, known: set[str] | None = None,
                 progress: Callable[[int], None] | None = None):
        self.store = store
        self.known = set(known or ())
        self.progress = progress
        self.stats = TransferStats()
        self._chunk_pool = cf.ThreadPoolExecutor(CHUNK_UPLOADS, thread_name_prefix="pipectl-chunk")
        self._known_lock = threading.Lock()

    def close(self) -> None:
        self._chunk_pool.shutdown(wait=True)

    def __enter__(self) -> "ObjectWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _store_chunk(self, sha: str, size: int, write: Callable[[str], bool]) -> str:
        """Record chunk ``sha``, calling ``write(key)`` (True if it wrote)
        unless the chunk is known to be stored already."""
        with self._known_lock:
            if sha in self.known:
                self.stats.add(dedup=1)
                return sha
        if write(object_key(sha)):
            self.stats.add(uploaded=size, new=1)
        else:
            self.stats.add(dedup=1)
        with self._known_lock:
            self.known.add(sha)
        return sha

    def put_bytes(self, data: bytes) -> str:
        """Store one chunk; return its content hash."""
        def write(key: str) -> bool:
            return (len(data) <= _SMALL or not self.store.exists(key)) and self.store.put_content(key, data)
        return self._store_chunk(content_hash(data), len(data), write)

    def put_stream(self, stream: BinaryIO) -> FileEntry:
        """Store everything ``stream`` yields; return the file's entry.
        Chunks after the first are uploaded concurrently, at most
        ``CHUNK_UPLOADS`` at a time; a regular file of more than one chunk
        takes :meth:`_put_file_chunks` instead."""
        regular = _regular_size(stream)
        if regular is not None and regular > CHUNK_SIZE:
            return self._put_file_chunks(stream.fileno(), regular)
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

    def _put_file_chunks(self, fd: int, size: int) -> FileEntry:
        """A large regular file, ``CHUNK_UPLOADS`` chunks at a time, each on
        its own thread: hashed in place through a read-only mmap (no copy;
        the hash releases the GIL), then stored with the store's
        :meth:`~pipectl.store.ObjectStore.put_content_range` (on local disk a
        kernel-side copy_file_range). Mapped pages are dropped after hashing,
        so resident memory stays near ``CHUNK_UPLOADS * CHUNK_SIZE``."""
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mm:
            def one(offset: int) -> str:
                n = min(CHUNK_SIZE, size - offset)
                whole = memoryview(mm)
                try:
                    with whole[offset:offset + n] as view:
                        sha = content_hash(view)
                finally:
                    whole.release()
                mm.madvise(mmap.MADV_DONTNEED, offset, n)
                self.stats.add(read=n)
                if self.progress:
                    self.progress(n)

                def write(key: str) -> bool:
                    return not self.store.exists(key) and self.store.put_content_range(key, fd, offset, n)
                return self._store_chunk(sha, n, write)
            objects = tuple(self._chunk_pool.map(one, range(0, size, CHUNK_SIZE)))
        return FileEntry(size, objects)


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


def read_objects(store: ObjectStore, objects: tuple[str, ...], out: BinaryIO,
                 block: int = 1024 * 1024) -> int:
    """Write the concatenated bytes of ``objects`` to ``out``, streaming;
    return the byte count. Raises NotFound if an object is missing."""
    total = 0
    for sha in objects:
        with store.open(object_key(sha)) as f:
            while True:
                piece = f.read(block)
                if not piece:
                    break
                out.write(piece)
                total += len(piece)
    return total
