"""Uploads of files to the API: a ``multipart/form-data`` request body,
one part per file (the part's ``name`` is the file's path in the commit,
percent-encoded), parsed as it arrives (python-multipart's streaming
parser) and stored part by part, so that neither memory nor local disk
holds a whole upload.

The body's bytes are parsed on the event loop; each part's path and bytes
go, in blocks of at least :data:`BLOCK` bytes, through a queue of
:data:`QUEUED` items (:mod:`.handoff`) to a worker thread running the store-side put
(:meth:`~pipectl.client.Client.put_streams`): it stores each file's bytes
as they come (small files packed), and only once the body has ended with
its closing boundary does it put the files into the commit, in one
commit on a branch. A body that ends early (the client went away, was
killed, lost its network), is malformed or holds a bad path makes the
worker's reading fail, and nothing lands: the bytes already stored stay in
the store unreferenced, as a refused S3 upload's do (see :mod:`.s3.body`).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from typing import BinaryIO, TypeVar

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from ..errors import InvalidArgument
from .handoff import BlockReader, Handoff

BLOCK = 1 << 20
"""A part's bytes are handed to the storing thread in lists of pieces of at least this many bytes."""
QUEUED = 8
"""Items waiting for the storing thread at most (then receiving waits)."""
MAX_FILES = 1_000_000
"""The most parts (files) one upload may hold."""
MAX_HEADER_BYTES = 64 << 10
"""The most bytes of headers one part may have."""
T = TypeVar("T")
_END = object()
"""The end of a part's bytes."""


async def receive_files(content_type: str, chunks: AsyncIterator[bytes],
                        store: Callable[[Iterator[tuple[str, BinaryIO]]], T]) -> T:
    """Run ``store(parts)`` on a worker thread over the files of a
    ``multipart/form-data`` body (``chunks``, as it arrives; ``parts``
    yields ``(path, stream)``, each stream to be read to its end before
    the next part is asked for); return what it returns. Raises
    InvalidArgument (not multipart/form-data, malformed, no part, a part
    with no name, a body ended before its closing boundary), what
    ``store`` raises, and what reading ``chunks`` raises (Starlette's
    ClientDisconnect when the client went away); ``store`` then fails too."""
    parser = _Parser(_boundary(content_type))
    handoff = Handoff(lambda get: store(_parts(get)), QUEUED)
    block: list[bytes] = []
    held = 0
    try:
        async for raw in chunks:
            for event in parser.feed(raw):
                if isinstance(event, bytes):
                    block.append(event)
                    held += len(event)
                    if held < BLOCK:
                        continue
                if block:
                    await handoff.hand(block)
                    block, held = [], 0
                if not isinstance(event, bytes):  # a part's path, or _END
                    await handoff.hand(event)
        parser.finish()
        await handoff.hand(None)
        return await handoff.result()
    except BaseException as e:
        await handoff.abort()
        if isinstance(e, ClientDisconnect):  # answered to no one, but not logged as a server error
            raise InvalidArgument("the upload ended before its closing boundary: the client went away") from None
        raise


def _boundary(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise InvalidArgument("an upload is a multipart/form-data body with a boundary (one part per file, "
                              f"named by its path), not {content_type or 'a body with no Content-Type'!r}")
    return options[b"boundary"]


class _Parser:
    """python-multipart's parser, its callbacks turned into events: a
    part's path (str) when its headers end, its bytes, ``_END`` when it ends."""

    def __init__(self, boundary: bytes):
        self.events: list[object] = []
        self.name, self.value, self.disposition = b"", b"", b""
        self.header_bytes = self.parts = 0
        self.ended = False
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._begin, "on_header_field": self._field, "on_header_value": self._value,
            "on_header_end": self._header, "on_headers_finished": self._headers,
            "on_part_data": self._data, "on_part_end": lambda: self.events.append(_END),
            "on_end": self._end})

    def feed(self, raw: bytes) -> list[object]:
        """The events of the next bytes of the body."""
        self.events = []
        if self.ended:
            return []  # the epilogue, ignored
        try:
            self.parser.write(raw)
        except FormParserError as e:
            raise InvalidArgument(f"the upload is not valid multipart/form-data: {e}") from None
        return self.events

    def finish(self) -> None:
        """Raise InvalidArgument unless the body held a part and ended with its closing boundary."""
        if not self.ended:
            raise InvalidArgument("the upload ended before its closing boundary (multipart/form-data)")
        if not self.parts:
            raise InvalidArgument("the upload holds no file: send one multipart/form-data part per file, "
                                  "named by its path")

    def _begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_FILES:
            raise InvalidArgument(f"an upload holds at most {MAX_FILES:,} files")
        self.header_bytes, self.disposition = 0, b""

    def _field(self, data: bytes, start: int, end: int) -> None:
        self.name += data[start:end]
        self._count(end - start)

    def _value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]
        self._count(end - start)

    def _count(self, n: int) -> None:
        self.header_bytes += n
        if self.header_bytes > MAX_HEADER_BYTES:
            raise InvalidArgument(f"a part's headers are limited to {MAX_HEADER_BYTES >> 10} KiB")

    def _header(self) -> None:
        if self.name.lower() == b"content-disposition":
            self.disposition = self.value
        self.name, self.value = b"", b""

    def _headers(self) -> None:
        name = parse_options_header(self.disposition)[1].get(b"name")
        if not name:
            raise InvalidArgument("each part of an upload needs a Content-Disposition name: the file's path "
                                  "(percent-encoded)")
        try:
            path = urllib.parse.unquote(name.decode("utf-8"), errors="strict")
        except UnicodeDecodeError:
            raise InvalidArgument(f"the part name {name[:80]!r} is not a percent-encoded UTF-8 path") from None
        self.events.append(path)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self.events.append(data[start:end])

    def _end(self) -> None:
        self.ended = True


def _parts(get: Callable[[], object]) -> Iterator[tuple[str, BinaryIO]]:
    """On the storing thread: each part's path and bytes, as the event loop hands them."""
    while (path := get()) is not None:
        reader = BlockReader(get, end=_END)
        yield path, reader  # type: ignore[misc]  # a path: data comes only inside a part
        while reader.read(BLOCK):  # the rest of a part the caller left unread
            pass
