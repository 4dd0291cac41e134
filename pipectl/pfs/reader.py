"""Reading content-addressed file bytes back: whole objects, and ranges of
packs read with few requests (see :mod:`.objects` for how they are written
and :class:`~.tree.FileEntry` for the refs that name them)."""

from __future__ import annotations

import collections
import concurrent.futures as cf
import itertools
from collections.abc import Generator, Iterable, Iterator, Mapping
from typing import BinaryIO

from ..errors import InvalidArgument, NotFound, StoreUnavailable
from ..parallel import parallel
from ..store import ObjectStore
from .keys import check_hash, object_key
from .objects import SMALL
from .tree import FileEntry


def is_packed(ref: str) -> bool:
    """Whether ``ref`` names a range of a pack (see :class:`~.tree.FileEntry`)."""
    return "@" in ref


def packed_location(ref: str) -> tuple[str, int, int] | None:
    """``(pack hash, offset, length)`` of a packed ref, else None. Raises
    InvalidArgument for a malformed one."""
    _, packed, where = ref.partition("@")
    if not packed:
        return None
    try:
        pack, offset, length = where.split(":")
        return check_hash(pack), int(offset), int(length)
    except ValueError:
        raise InvalidArgument(f"invalid packed ref {ref!r}") from None


def _read_exact(store: ObjectStore, pack: str, offset: int, length: int) -> bytes:
    """``length`` bytes of object ``pack`` from ``offset``. Raises NotFound
    if the object is missing or ends early."""
    data = store.read_range(object_key(pack), offset, length)
    if len(data) != length:
        raise NotFound(f"object {pack} ends before byte {offset + length} (it holds {offset + len(data)})")
    return data


def read_packed(store: ObjectStore, refs: Iterable[str], gap: int = SMALL,
                threads: int = 4) -> dict[str, bytes]:
    """The bytes of every packed ref in ``refs`` (others are left out), read
    with few requests: the ranges of one pack that lie at most ``gap`` bytes
    apart are fetched by one ranged read (``threads`` at a time), as a
    worker does for the inputs of its next datums. Raises NotFound."""
    by_pack: dict[str, list[tuple[int, int, str]]] = {}
    for ref in set(refs):
        where = packed_location(ref)
        if where:
            by_pack.setdefault(where[0], []).append((where[1], where[2], ref))
    runs: list[tuple[str, list[tuple[int, int, str]]]] = []
    for pack, ranges in by_pack.items():
        ranges.sort()
        run: list[tuple[int, int, str]] = []
        end = 0
        for r in ranges:
            if run and r[0] - end > gap:
                runs.append((pack, run))
                run = []
            run.append(r)
            end = max(end, r[0] + r[1])
        runs.append((pack, run))
    found: dict[str, bytes] = {}

    def read_run(item: tuple[str, list[tuple[int, int, str]]]) -> None:
        pack, run = item
        start = run[0][0]
        data = _read_exact(store, pack, start, max(o + n for o, n, _ in run) - start)
        for offset, length, ref in run:
            found[ref] = data[offset - start:offset - start + length]
    parallel(read_run, runs, threads)
    return found


READ_AHEAD = 3
"""Objects of a file read at once, ahead of the one being sent: a remote
store's request waits on the network while the bytes before it go out."""


def _objects(store: ObjectStore, refs: tuple[str, ...], cache: Mapping[str, bytes] | None = None,
             ahead: int = READ_AHEAD) -> Generator[bytes, None, None]:
    """The bytes of each chunk ``refs`` names, in order, whole (a chunk
    object is at most 16 MiB), read ``ahead`` at a time on threads while
    the caller consumes the ones before: at most ``ahead + 1`` chunks in
    memory. Packed refs found in ``cache`` are not read again. Raises
    NotFound if an object is missing or a pack ends early."""
    def read(ref: str) -> bytes:
        where = packed_location(ref)
        if where:
            piece = cache.get(ref) if cache else None
            return piece if piece is not None else _read_exact(store, *where)
        return store.read(object_key(ref))
    if len(refs) <= 1:  # most files: no thread
        yield from map(read, refs)
        return
    rest = iter(refs)
    with cf.ThreadPoolExecutor(ahead, thread_name_prefix="pipectl-read") as pool:
        pending = collections.deque(pool.submit(read, ref) for ref in itertools.islice(rest, ahead))
        try:
            while pending:
                piece = pending.popleft().result()
                ref = next(rest, None)
                if ref is not None:
                    pending.append(pool.submit(read, ref))
                yield piece
        finally:  # a reader that stops early (a closed connection) waits for no more reads
            for future in pending:
                future.cancel()


def read_objects(store: ObjectStore, entry: FileEntry, out: BinaryIO,
                 cache: Mapping[str, bytes] | None = None) -> int:
    """Write the bytes of the file ``entry`` names (the concatenated chunks
    of its refs, see :class:`~.tree.FileEntry`) to ``out``, streaming, the
    next chunks read while one is written (:data:`READ_AHEAD`); return the
    byte count. Packed refs found in ``cache`` (from :func:`read_packed`)
    are not read again. Raises NotFound if an object is missing or a pack
    ends early, StoreUnavailable if the objects hold other than
    ``entry.size`` bytes (once they are written)."""
    total = 0
    for piece in _objects(store, entry.objects, cache):
        out.write(piece)
        total += len(piece)
    if total != entry.size:
        raise _damaged(entry.objects, total, entry.size)
    return total


def iter_objects_range(store: ObjectStore, refs: tuple[str, ...], offset: int, length: int,
                       block: int = 4 * 1024 * 1024) -> Iterator[bytes]:
    """Yield ``length`` bytes from byte ``offset`` of the file the chunks
    ``refs`` name (fewer if the file ends first), in ranged reads of at
    most ``block`` bytes; chunks wholly before ``offset`` are skipped by
    their size (a packed ref holds its length, a whole object's is asked
    of the store), never read. Raises NotFound if an object is missing or
    a pack ends early. More than ``block`` bytes from byte 0 are read a
    whole object per request, with no request for its size, the next
    objects read while one is sent, as :func:`read_objects` reads them."""
    if offset == 0 and length > block:
        yield from _iter_objects_head(store, refs, length)
        return
    end, pos = offset + length, 0
    for ref in refs:
        if pos >= end:
            break
        where = packed_location(ref)
        size = where[2] if where else store.size(object_key(ref))
        lo, hi = max(offset - pos, 0), min(end - pos, size)
        pos += size
        if lo >= hi:
            continue
        if where:
            yield _read_exact(store, where[0], where[1] + lo, hi - lo)
            continue
        for start in range(lo, hi, block):
            piece = store.read_range(object_key(ref), start, min(block, hi - start))
            if not piece:
                raise NotFound(f"object {ref} ends before byte {start}")
            yield piece


def _iter_objects_head(store: ObjectStore, refs: tuple[str, ...], length: int) -> Iterator[bytes]:
    """The first ``length`` bytes of the file ``refs`` name, a chunk at a
    time, read ahead (see :func:`iter_objects_range`)."""
    left = length
    pieces = _objects(store, refs)
    try:
        for piece in pieces:
            if left <= 0:
                break
            piece = piece[:left] if len(piece) > left else piece
            left -= len(piece)
            yield piece
    finally:
        pieces.close()
    if left > 0:
        raise _damaged(refs, length - left, length)


def download(store: ObjectStore, entry: FileEntry, path: str,
             cache: Mapping[str, bytes] | None = None) -> int:
    """Write the file ``entry`` names to local ``path``; return its size in
    bytes. ``cache``: as for :func:`read_objects`. Raises NotFound, and
    StoreUnavailable if its objects hold other than ``entry.size`` bytes."""
    refs = entry.objects
    if len(refs) == 1 and not is_packed(refs[0]):
        size = store.download(object_key(refs[0]), path)  # one whole object: the store's own copy
        if size != entry.size:
            raise _damaged(refs, size, entry.size)
        return size
    with open(path, "wb") as f:
        return read_objects(store, entry, f, cache=cache)


def _damaged(refs: tuple[str, ...], got: int, size: int) -> StoreUnavailable:
    """The error of a file whose objects hold ``got`` bytes, not its
    ``size``: an object was cut short or changed outside pipectl."""
    return StoreUnavailable(f"the store is damaged: a file's objects ({refs[0]}{' ...' if len(refs) > 1 else ''}) "
                            f"hold {got} bytes, not its {size}")
