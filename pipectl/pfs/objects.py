"""Content-addressed file storage.

File bytes are cut into chunks by their content (content-defined chunking,
as Pachyderm 2, restic, borg and casync do): a rolling hash over the bytes
picks the cut points, so a cut depends only on the bytes just before it and
on the distance from the previous cut. Bytes inserted into or removed from a
file then change only the chunk or two around them; every later cut falls on
the same bytes as before, and the chunks after it are the same objects
(with fixed slices every later slice would move and be stored anew). Each
chunk is stored once at ``objects/<first two hex digits>/<hash>``, named by
its content hash (:mod:`.hashing`). Putting bytes the store already holds
uploads nothing: hashes already known to be present (e.g. from the target
commit's tree) are skipped without a request, and every write is
create-only (a conditional write), so a chunk already stored is never
stored twice. Large chunks are probed with an existence check first, so
that they are not sent in vain, while the file's chunks are being found in
the store: once a probe finds none, the next chunks go without one, in
gaps that double up to :data:`PROBE_GAP_MAX` (:class:`_Probes`). A new
file's chunks, all missing, then cost one request each instead of two
(into S3 each request costs botocore about 2 ms of CPU here, about as much
as the chunk's SHA-256 signature), and a file already stored still sends
none of its bytes.

The chunker is FastCDC (Xia et al., "The Design of Fast Content-Defined
Chunking for Data Deduplication Based Storage Systems", IEEE TPDS 2020), by
the ``pyfastcdc`` package: a Cython port of the ``fastcdc`` Rust crate's
2020 variant whose cut points are the crate's own, and whose cutting loop
runs without the interpreter lock, beside the hashing threads. Parameters
(:data:`CHUNK_MIN`, :data:`CHUNK_AVG`, :data:`CHUNK_MAX`): see
:data:`CHUNK_AVG` for why they were chosen. A chunk's cut never depends on
more than :data:`CHUNK_MAX` bytes from its start, so a file is cut the same
way whether it is read from a mapped regular file or from a pipe
(:func:`chunk_lengths` gives the cuts of bytes in memory).

Stores written before content-defined chunking hold large files as fixed
slices of :data:`FIXED_CHUNK_SIZE` bytes. A file's entry lists its chunks'
refs whatever their sizes (see :class:`~.tree.FileEntry`), so those files
read as before; their bytes put again are cut by content and stored once
more, as new chunks.

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

Memory: a file streams through at most about ``CHUNK_MAX * (2 +
CHUNK_UPLOADS)`` bytes in flight (96 MiB with the defaults), whatever its
size: a regular file's mapped pages from the oldest chunk still being
stored to the end of the chunker's window, or a stream's
:data:`STREAM_WINDOWS` windows of ``2 * CHUNK_MAX`` bytes, which its chunks
are stored from (see :meth:`ObjectWriter.put_stream`); the process keeps up
to :data:`IDLE_WINDOWS` free windows (128 MiB) for the next streams. Packs
take about ``PACK_SIZE * (1 + CHUNK_UPLOADS)`` more.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import errno
import functools
import io
import mmap
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, cast

import pyfastcdc

from ..errors import Conflict, NotFound
from ..parallel import parallel
from ..store import ObjectStore
from ..store.base import Check, FileRange
from .hashing import content_hash
from .keys import object_key
from .tree import EMPTY_FILE, FileEntry

MiB = 1024 * 1024
CHUNK_MIN = 1 * MiB
"""No cut closer than this to the previous one (only a file's last chunk is
shorter). FastCDC skips these bytes without hashing them."""
CHUNK_AVG = 4 * MiB
"""FastCDC's target average (``avg_size``: the cut condition's mask has
log2 of it bits); with :data:`CHUNK_MIN` skipped first, chunks of random
bytes average about ``CHUNK_MIN + CHUNK_AVG`` (4.6 MiB measured on 1 GiB;
99% at most 12 MiB).

Why these sizes (measured on the 2-core bench machine, 1 GiB of random
bytes; README, "Content-defined chunking"): every chunk stored costs a
request into S3, which costs botocore about 2 ms of CPU here and the
server about as much again, so a put into S3 is bounded by its request
count: 221 chunks per GiB here against 385 with a 2 MiB target (8 MiB
max) put 1 GiB into versitygw at 197 to 218 MB/s against 177 to 182, in
alternating runs, and a GET through the S3 gateway makes one request per
chunk. On the local store both put 1 GiB in the same time (1.51 to 1.62 s
against 1.53 to 1.81 s). The price: 4 KiB inserted in the middle of the
file, or changed in place, stores the chunk around it again, 4 to 12 MB
(2 to 6 MB with the 2 MiB target, 2.5 MB with restic's 1 MiB); pyfastcdc
allows no larger average (at most 4 MiB; minimum at most 1 MiB, maximum at
most 16 MiB), and Pachyderm's (about 8 MiB, buzhash) would store about
twice these bytes per small change. The largest minimum pyfastcdc allows,
1 MiB, is what makes cutting a file cost less than hashing it (FastCDC
skips :data:`CHUNK_MIN` bytes per chunk without looking at them)."""
CHUNK_MAX = 16 * MiB
"""No chunk is longer: a cut is forced here if the content gave none (the
largest pyfastcdc allows). Of random bytes, 6 chunks in 8 GiB (1,701) are
cut here, holding 1.2% of the bytes; 8 MiB would force 14 cuts in 1 GiB
(of 230). A forced cut moves with an insertion before it, as fixed slices
do, so an edit inside such a chunk stores the next chunk again too."""
FIXED_CHUNK_SIZE = 16 * MiB
"""The fixed slices large files were cut into before content-defined
chunking (stores written then hold them; they read as any other chunks)."""
CHUNK_UPLOADS = 4
REMOTE_CHUNK_UPLOADS = 8
"""Chunks of a stream stored at once into a store that is sent the bytes
(S3), whose requests wait on the network and on botocore's per-request
work: 1 GiB into versitygw on the 2-core bench machine, 187 to 196 MB/s
against 169 to 173 with :data:`CHUNK_UPLOADS`. Memory stays bounded by the
stream's windows (:data:`STREAM_WINDOWS`)."""
SMALL = 1024 * 1024
"""Files of at most this many bytes are packed; chunks of at most this many
are written create-only without an existence probe first."""
PROBE_GAP_MAX = 16
"""The most chunks of a stream sent without an existence probe between two
probes (see :class:`_Probes`): what a stream can send in vain (about 74
MiB at the average chunk) when, after a run of new chunks, it meets chunks
the store already holds; the store refuses them (create-only writes), so
nothing is stored twice."""
PACK_SIZE = 16 * MiB
MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)
"""madvise(2) advice that maps a range's pages in one call (Linux uapi
``asm-generic/mman-common.h``; Python 3.11's mmap module has no name for it)."""
_PAGE = mmap.PAGESIZE


def _chunker() -> pyfastcdc.FastCDC:
    """A FastCDC cutter with pipectl's parameters (one per file: a cutter
    is not meant to be shared between threads)."""
    return pyfastcdc.FastCDC(CHUNK_AVG, min_size=CHUNK_MIN, max_size=CHUNK_MAX)


def _cut(cdc: pyfastcdc.FastCDC, view: memoryview, final: bool) -> Iterator[int]:
    """The lengths of the chunks that ``view`` starts with, in order. Unless
    ``final`` (``view`` holds the rest of the file), a chunk is given only
    if it ends before the end of ``view``: a cut depends only on the bytes
    from its chunk's start to the cut and the byte at it, all inside
    ``view``, so such a cut is the one the whole file has, while a chunk
    that reaches the end of ``view`` may have been cut short by it. The
    cutting itself runs without the interpreter lock."""
    n = len(view)
    for chunk in cdc.cut_buf(view):  # lazy: a cut is made when asked for
        if not final and chunk.offset + chunk.length >= n:
            return
        yield chunk.length


def chunk_lengths(data: bytes | bytearray | memoryview) -> list[int]:
    """The lengths of the chunks ``data`` (a whole file) is cut into, in
    order (empty for no bytes)."""
    return list(_cut(_chunker(), memoryview(data), True))


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
        self.uploads = CHUNK_UPLOADS if store.copies_file_ranges else REMOTE_CHUNK_UPLOADS
        """Chunks of a stream stored at once."""
        self._chunk_pool = cf.ThreadPoolExecutor(self.uploads, thread_name_prefix="pipectl-chunk")
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

    def _put_object(self, key: str, data: bytes | memoryview | FileRange,
                    check: Check | None = None, probes: _Probes | None = None) -> bool:
        """Create-only write of ``data`` at ``key``; True if written. Data
        larger than :data:`SMALL` is probed with an existence check first
        (of its size: an object cut short under the name is written again),
        so it is not sent in vain: always, or when ``probes`` (the stream's)
        says so. ``check``: see :meth:`~pipectl.store.base.ObjectStore.put_content`."""
        if len(data) > SMALL and (probes is None or probes.wanted()):
            try:
                stored = self.store.size(key) == len(data)
            except NotFound:
                stored = False
            if probes is not None:
                probes.found(stored)
            if stored:
                return False
        written = self.store.put_content(key, data, check)
        if not written and probes is not None:
            probes.found(True)
        return written

    def put_bytes(self, data: bytes | memoryview | FileRange, probes: _Probes | None = None) -> str:
        """Store one chunk (bytes, a view of a file's range mapped
        read-only, or a file's range with its mapped view); return its ref.
        A file's range can change after it was hashed (another process
        writes the file): the bytes the store is about to make visible
        are hashed again, and the chunk is refused (FileChanged) unless
        they are the bytes its name says, so no object is ever stored
        under another content's hash. ``probes``: the existence probes of
        the stream the chunk is part of (see :class:`_Probes`); without
        it, a large chunk is always probed."""
        view = data.view if isinstance(data, FileRange) else data
        sha = content_hash(view)
        check = functools.partial(_check_hash, sha) if isinstance(data, FileRange) else None
        return self._store_chunk(sha, len(view), lambda key: self._put_object(key, data, check, probes))

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

    def put_streams(self, streams: Iterable[BinaryIO]) -> list[FileEntry]:
        """Store streams handed over one after another (the parts of one
        HTTP request: each is read to its end before the next is taken);
        return their entries, in order. As :meth:`put_files` does with
        local files, a stream of at most :data:`SMALL` bytes is packed
        (:meth:`_pack`, which writes each full pack as the streams go on),
        a longer one goes through :meth:`put_stream`."""
        entries: list[FileEntry | None] = []

        def small() -> Iterator[tuple[int, bytes]]:
            for i, stream in enumerate(streams):
                entries.append(None)
                head = _read_up_to(stream, SMALL + 1)
                if len(head) > SMALL:
                    entries[i] = self.put_stream(cast(BinaryIO, _Prefixed(head, stream)))
                else:
                    yield i, head
        self._pack(small(), entries)
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
        """Store everything ``stream`` yields, cut by content; return the
        file's entry. A regular file of more than :data:`CHUNK_MIN` bytes
        takes :meth:`_put_file_chunks` when the store copies file ranges
        itself (the local store); anything else (a pipe, a socket, an HTTP
        body, a small file, any file put into S3, whose bytes must be sent
        and are then read once into memory that is used again, hashed
        there and sent from there, so that what is sent is what was
        hashed however the file changes) is read into windows of ``2 * CHUNK_MAX``
        bytes (:func:`_stream_chunks`), cut there, and each chunk stored
        from the window, with no copy, on the chunk threads, at most
        ``self.uploads`` at a time (:data:`CHUNK_UPLOADS`,
        :data:`REMOTE_CHUNK_UPLOADS` into S3), while reading goes on. Both cut the
        same bytes into the same chunks."""
        regular = _regular_size(stream)
        if regular is not None and regular > CHUNK_MIN and self.store.copies_file_ranges:
            return self._put_file_chunks(stream.fileno(), regular, getattr(stream, "name", "the input"))
        futures: list[cf.Future | str] = []
        gate = threading.Semaphore(self.uploads)
        probes = _Probes()
        size = 0

        def done(window: _Window) -> Callable[[cf.Future], None]:
            def release(_: cf.Future) -> None:
                window.release()
                gate.release()
            return release
        try:
            for chunk, window in _stream_chunks(stream, regular):
                size += len(chunk)
                self.stats.add(read=len(chunk))
                if self.progress:
                    self.progress(len(chunk))
                if len(chunk) < CHUNK_MIN and not futures:  # shorter than a cut allows: the only chunk
                    futures.append(self.put_bytes(chunk))  # the common small file
                    continue
                gate.acquire()
                window.hold()
                future = self._chunk_pool.submit(self.put_bytes, chunk, probes)
                future.add_done_callback(done(window))
                futures.append(future)
        finally:
            cf.wait([f for f in futures if not isinstance(f, str)])
        objects = tuple(f if isinstance(f, str) else f.result() for f in futures)
        if regular is not None and size < regular:  # as _put_file_chunks refuses it
            raise _shrank(getattr(stream, "name", "the input"))
        return FileEntry(size, objects)

    def _put_file_chunks(self, fd: int, size: int, name: str) -> FileEntry:
        """A regular file (``name`` for errors) mapped read-only whole and
        cut on this thread, one cut at a time straight from the mapping
        (each byte is cut once; the pages ahead of a cut are mapped in
        ``2 * CHUNK_MAX`` bytes at a time, in one call each:
        ``MADV_POPULATE_READ``, Linux 5.14+, a third less system time than
        faulting them in); each
        chunk is stored on a chunk thread, at most ``CHUNK_UPLOADS`` at a
        time, straight from the mapped pages, with no copy: hashed there
        (the hash releases the interpreter lock, as the cutting does),
        then handed to the store as a :class:`~pipectl.store.base.FileRange`,
        which it copies in the kernel, as ``cp`` copies (see
        :func:`~pipectl.store.local._copy_range`), and hashes again where
        it landed before it becomes visible (the file may have changed
        since). A stored chunk's pages are unmapped again
        (``MADV_DONTNEED``; they stay in the page cache), so resident
        memory stays near ``(CHUNK_UPLOADS + 2) * CHUNK_MAX`` whatever the
        file's size. Raises Conflict if the file shrinks while it is stored
        (one truncated under pages already mapped still ends the process
        with SIGBUS, as any reader of a mapped file would)."""
        try:
            mapped = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        except ValueError:  # "mmap length is greater than file size"
            raise _shrank(name) from None
        view = memoryview(mapped)
        probes = _Probes()
        populated = 0  # pages of [0, populated) were mapped in

        def populate(end: int) -> None:
            nonlocal populated
            end = min(size, -(-end // _PAGE) * _PAGE)
            if end <= populated:
                return
            try:
                mapped.madvise(MADV_POPULATE_READ, populated, end - populated)
            except OSError as e:
                if e.errno == errno.EFAULT:  # pages past the end of the file
                    raise _shrank(name) from None
                if e.errno != errno.EINVAL:  # EINVAL before Linux 5.14: pages fault in instead
                    raise
            populated = end

        def one(view: memoryview, start: int, n: int) -> str:
            try:
                ref = self.put_bytes(FileRange(fd, start, view[start:start + n]), probes)
            except FileChanged:  # written to since the chunk was hashed
                raise Conflict(f"{name} changed while being stored") from None
            except Conflict:  # the store's copy of the range ended early
                raise _shrank(name) from None
            # unmap the pages wholly inside this chunk (a page shared with a neighbour stays)
            lo = -(-start // _PAGE) * _PAGE
            hi = size if start + n == size else (start + n) // _PAGE * _PAGE
            if hi > lo:
                mapped.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
            self.stats.add(read=n)
            if self.progress:
                self.progress(n)
            return ref

        cuts = _chunker().cut_buf(view)  # lazy: each cut is made when asked for
        gate = threading.Semaphore(CHUNK_UPLOADS)
        futures: list[cf.Future] = []
        failed: list[cf.Future] = []

        def done(future: cf.Future) -> None:
            if future.exception() is not None:
                failed.append(future)
            gate.release()
        try:
            pos = 0
            while pos < size and not failed:
                if pos + CHUNK_MAX > populated:  # the next cut reads at most CHUNK_MAX bytes
                    populate(pos + 2 * CHUNK_MAX)
                n = next(cuts).length
                gate.acquire()
                if failed:
                    break
                future = self._chunk_pool.submit(one, view, pos, n)
                future.add_done_callback(done)
                futures.append(future)
                pos += n
            refs = tuple(f.result() for f in futures)
        finally:
            cf.wait(futures)  # no chunk thread may read the pages once they are unmapped
            del cuts, view
            with contextlib.suppress(BufferError):  # else unmapped once the last view of it is gone
                mapped.close()
        return FileEntry(size, refs)


def _shrank(name: str) -> Conflict:
    """The error of a put whose file ``name`` shrank while it was stored."""
    return Conflict(f"{name} shrank while being stored")


class _Probes:
    """When a stream's next large chunk is probed for (an existence check
    before it is sent). Every chunk is probed while probes find chunks
    stored; after a probe that finds none, the next chunks are sent
    without one, 1, then 2, 4... up to :data:`PROBE_GAP_MAX` between two
    probes, while probes keep finding none. A chunk found stored, by a
    probe or by the store's refusal of a create-only write, starts
    probing every chunk again. Safe to use from the chunk threads."""

    def __init__(self) -> None:
        self._gap = 0  # chunks sent unprobed after the last probe that found none
        self._skip = 0  # of those, not sent yet
        self._lock = threading.Lock()

    def wanted(self) -> bool:
        """Whether to probe for the next chunk."""
        with self._lock:
            if self._skip:
                self._skip -= 1
                return False
            return True

    def found(self, stored: bool) -> None:
        """Record whether a chunk was found in the store."""
        with self._lock:
            if stored:
                self._gap = self._skip = 0
            else:
                self._gap = self._skip = min(max(1, 2 * self._gap), PROBE_GAP_MAX)


class FileChanged(Conflict):
    """A file's bytes changed while they were being stored."""


def _check_hash(sha: str, data: bytes | bytearray | memoryview) -> None:
    """Raise FileChanged unless ``data`` hashes to ``sha``."""
    if content_hash(data) != sha:
        raise FileChanged("a file changed while being stored")


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


def _read_up_to(stream: BinaryIO, n: int) -> bytes:
    """The first ``n`` bytes of ``stream`` (fewer at its end)."""
    pieces, got = [], 0
    while got < n and (piece := stream.read(n - got)):
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces)


class _Prefixed(io.RawIOBase):
    """The bytes ``head`` already read from ``stream``, then the rest of it."""

    def __init__(self, head: bytes, stream: BinaryIO):
        self.head, self.stream = memoryview(head), stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        readinto = getattr(self.stream, "readinto", None)
        if readinto is not None:
            return readinto(buffer) or 0
        data = self.stream.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _regular_size(stream: BinaryIO) -> int | None:
    """The size of ``stream`` if it is a regular file, else None."""
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


WINDOW = 2 * CHUNK_MAX
"""A stream is read into windows of this many bytes and cut there (see
:func:`_stream_chunks`)."""
STREAM_WINDOWS = 3
"""Windows one stream holds at most: the one being filled and those whose
chunks are still being stored."""
IDLE_WINDOWS = 4
"""Windows kept for the next streams once free (per process). A multipart
upload through the S3 gateway stores its parts side by side (boto3's
``upload_file`` sends 10 at once), each from a window: 256 MiB in 8 MiB
parts on the local store measured 1.22x and 1.31x of the direct upload to
versitygw with 4 kept, 0.93x and 0.97x with 2 (runs alternating); memory
the kernel gives anew costs more to write here than memory used again."""
_idle_windows: list[mmap.mmap] = []
_idle_lock = threading.Lock()


class _Window:
    """A buffer a stream is read into and cut in (a :data:`WINDOW`-byte
    one from the process's pool, or a smaller one of its own), with a count
    of its users: :func:`_stream_chunks` while filling it, and each chunk
    handed out of it until stored (:meth:`hold`, :meth:`release`). The last
    release gives a pooled buffer back for the next window, so a stream's
    bytes are written to memory already mapped: on the 2-core bench
    machine (a virtual machine) a first touch of new pages costs more per
    byte than hashing them with SHA-256. A new pooled buffer is an
    anonymous mapping, whose pages are touched only as bytes are written
    to them (a ``bytearray`` is zeroed whole when made: with 8 MiB written,
    18.3 ms for a new 32 MiB one here against 6.2 ms for a mapping), so a
    short stream, such as each 8 MiB part of a multipart upload, pays only
    for the pages it fills."""

    def __init__(self, gate: threading.Semaphore, size: int | None = None):
        gate.acquire()
        self.gate, self.users = gate, 1
        self.buf: mmap.mmap | bytearray  # a pool's window is a mapping, a window of its own a bytearray
        if size is not None:
            self.buf = bytearray(size)
        else:
            with _idle_lock:
                self.buf = _idle_windows.pop() if _idle_windows else mmap.mmap(-1, WINDOW)
        self.view = memoryview(self.buf)
        self._lock = threading.Lock()

    def hold(self) -> None:
        with self._lock:
            self.users += 1

    def release(self) -> None:
        with self._lock:
            self.users -= 1
            if self.users:
                return
        if isinstance(self.buf, mmap.mmap):  # pooled, and no chunk of it is in use: it may be filled again
            with _idle_lock:
                if len(_idle_windows) < IDLE_WINDOWS:
                    _idle_windows.append(self.buf)
        self.gate.release()


def _stream_chunks(stream: BinaryIO, size: int | None) -> Iterator[tuple[memoryview, _Window]]:
    """Yield the chunks of ``stream``, cut by content (:func:`_cut`), as
    views of the :class:`_Window` yielded with each: read straight into
    the window (``readinto``, else ``read`` and one copy) until it is full,
    every chunk that ends before its end is handed out, and the uncut rest
    (at most ``CHUNK_MAX`` bytes, half a chunk on average) is copied to the
    front of the next window. A view stays valid only while
    its window is held: call ``window.hold()`` before asking for the next
    chunk, and ``window.release()`` once done with the view. At most
    :data:`STREAM_WINDOWS` windows are in use (the stream waits for a
    release beyond). ``size``: the stream's size if it is a regular file
    (a window of that size is used first), else None."""
    cdc = _chunker()
    gate = threading.Semaphore(STREAM_WINDOWS)
    window = _Window(gate, size + 1 if size is not None and size + 1 < WINDOW else None)
    readinto = getattr(stream, "readinto", None)
    filled, eof = 0, False
    try:
        while True:
            view = window.view
            while not eof and filled < len(view):
                if readinto is not None:
                    n = readinto(view[filled:])
                else:
                    piece = stream.read(len(view) - filled)
                    n = len(piece)
                    view[filled:filled + n] = piece
                if not n:
                    eof = True
                else:
                    filled += n
            start = 0
            for n in _cut(cdc, view[:filled], eof):
                yield view[start:start + n], window
                start += n
            if eof:
                return
            full = window
            window = _Window(gate)  # the uncut rest (<= CHUNK_MAX bytes) to the front of the next
            window.view[:filled - start] = view[start:filled]
            filled -= start
            full.release()
    finally:
        window.release()
