"""The object-store interface: the only place pipectl keeps state.

Every state change goes through :class:`ObjectStore`. Keys are ``/``-separated
strings relative to the store's root (``repos/iris/info.json``). Two primitives
give the atomicity pipectl needs without any other database:

- ``write(..., if_absent=True)`` creates a key only if it does not exist
  (S3 ``If-None-Match: *``; a hard link on local disk);
- ``write(..., if_match=version)`` replaces a key only if it still holds the
  version the caller read (S3 ``If-Match: <etag>``; a lock plus an atomic
  rename on local disk). This is the compare-and-swap that moves branch heads
  and updates job records.

Readers never see a partially written object on either store.
"""

from __future__ import annotations

import abc
import dataclasses
import mmap
from collections.abc import Callable, Iterator
from typing import BinaryIO

Bytes = bytes | bytearray | memoryview | mmap.mmap
"""What a store writes: bytes, or a read-only view of a mapped file's range."""
Check = Callable[[bytes | bytearray | memoryview], None]
"""A check of the bytes about to become visible under a key (see
:meth:`ObjectStore.put_content`): it raises to refuse them."""


@dataclasses.dataclass(frozen=True)
class FileRange:
    """A range of an open regular file, handed to
    :meth:`ObjectStore.put_content`: ``len(view)`` bytes of file descriptor
    ``fd`` from byte ``offset``, and ``view``, the same bytes mapped
    read-only. A store sends ``view``, or copies the range in the kernel
    (:class:`~.local.LocalStore`, as ``cp`` does). The file may change
    while it is stored (another process writes it): the writer passes
    ``put_content`` a ``check`` of the bytes that land."""

    fd: int
    offset: int
    view: memoryview

    def __len__(self) -> int:
        return len(self.view)


class ObjectStore(abc.ABC):
    """A flat key/value store of immutable-or-CAS-updated byte objects."""

    url: str
    io_threads: int = 16
    """How many requests are worth running at once (high for remote stores,
    where each waits on the network; low for local disk, where Python's
    interpreter lock is the limit)."""
    copies_file_ranges: bool = False
    """Whether :meth:`put_content` copies a :class:`FileRange` itself, with
    no pass of the writer's over its bytes (the local store: in the
    kernel). A store that must send the bytes is handed chunks the writer
    read into memory of its own instead (see
    :meth:`~pipectl.pfs.objects.ObjectWriter.put_stream`)."""

    @abc.abstractmethod
    def read(self, key: str) -> bytes:
        """Return the whole object. Raises NotFound."""

    @abc.abstractmethod
    def read_versioned(self, key: str) -> tuple[bytes, str]:
        """Return ``(data, version)``; pass ``version`` to ``write(if_match=)``.
        Raises NotFound."""

    @abc.abstractmethod
    def write(self, key: str, data: Bytes, *, if_match: str | None = None,
              if_absent: bool = False) -> str:
        """Store ``data`` under ``key``; return the new version tag.

        ``if_absent``: fail if the key exists. ``if_match``: fail unless the
        key currently holds that version. Raises PreconditionFailed when a
        condition does not hold (nothing is written then).
        """

    def put_content(self, key: str, data: Bytes | FileRange,
                    check: Check | None = None) -> bool:
        """Store immutable, content-addressed ``data`` (the key names its
        hash, so any two writers write the same bytes); ``data`` may be a
        file's range mapped read-only (an ``mmap``, or a ``memoryview`` of
        one: a chunk cut by content starts anywhere in a page), or a
        :class:`FileRange`. ``check``: called with the very bytes about to
        become visible at ``key``, before they do; it raises to refuse them
        (the bytes of a file can change while it is stored, after they were
        hashed: they must never be stored under the old bytes' name).
        Returns True if it was written, False if the key already existed."""
        from ..errors import PreconditionFailed
        body = data.view if isinstance(data, FileRange) else data
        if check is not None:
            body = bytes(body)  # a copy, which cannot change between the check and the write
            check(body)
        try:
            self.write(key, body, if_absent=True)
            return True
        except PreconditionFailed:
            return False

    @abc.abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A streaming reader over the object (``.read(n)``, ``.close()``).
        Raises NotFound."""

    @abc.abstractmethod
    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes of the object from byte ``offset`` (fewer only if
        the object ends first). Raises NotFound."""

    def size(self, key: str) -> int:
        """The object's size in bytes. Raises NotFound. (This fallback
        reads the object; the stores answer from its metadata.)"""
        with self.open(key) as f:
            size = 0
            while piece := f.read(1024 * 1024):
                size += len(piece)
            return size

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Every key starting with ``prefix``, in no particular order."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

    def download(self, key: str, path: str) -> int:
        """Copy an object into local file ``path``; return its size in bytes.
        Raises NotFound."""
        with self.open(key) as src, open(path, "wb") as dst:
            size = 0
            while True:
                piece = src.read(1024 * 1024)
                if not piece:
                    return size
                dst.write(piece)
                size += len(piece)

    def read_text(self, key: str) -> str:
        """``read`` decoded as UTF-8."""
        return self.read(key).decode()
