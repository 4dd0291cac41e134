"""A request body received on the event loop and stored on a worker
thread: the one bridge between the two that the server's uploads use (the
S3 gateway's PutObject and UploadPart, :mod:`.s3.body`; the API's file
uploads, :mod:`.formdata`).

The event loop hands items (lists of the pieces of bytes received, or
markers of its own) through a bounded queue to the thread running the
store-side call; the thread reads them with :meth:`Handoff.get`, the bytes
through a :class:`BlockReader`, which copies each piece straight into the
reader's buffer (the store's cutting window): the one copy of a body's
bytes between the HTTP server and the store. When the request fails on
the event loop (the client went away, a check failed), the thread's next
read raises :class:`Aborted` and the error answered is the request's own.
"""

from __future__ import annotations

import asyncio
import collections
import io
from collections.abc import Callable
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

from ..errors import PipectlError

T = TypeVar("T")
_ABORT = object()


class Aborted(PipectlError):
    """Raised on the storing thread by a read after the request failed."""


class Handoff(Generic[T]):
    """Runs ``work(get)`` on a worker thread (``get``: :meth:`get`) while
    the event loop hands it items with :meth:`hand`, at most ``queued``
    waiting. Make it on the event loop; end with :meth:`result`, or
    :meth:`abort` when the request fails."""

    def __init__(self, work: Callable[[Callable[[], object]], T], queued: int):
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue(queued)
        self.task = asyncio.ensure_future(run_in_threadpool(work, self.get))

    def get(self) -> object:
        """On the worker thread: the next item handed. Raises Aborted."""
        item = asyncio.run_coroutine_threadsafe(self.queue.get(), self.loop).result()
        if item is _ABORT:
            raise Aborted("the request ended early")
        return item

    async def hand(self, item: object) -> None:
        """Queue ``item``, unless the worker thread failed first (its error is raised)."""
        put = asyncio.ensure_future(self.queue.put(item))
        await asyncio.wait({put, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            self.task.result()

    async def result(self) -> T:
        """What ``work`` returned, once it has. Raises what it raised."""
        return await self.task

    async def abort(self) -> None:
        """Make the worker thread's next read raise Aborted, and wait for it
        to end (its error is dropped: the request's own is the one to say)."""
        while not self.queue.empty():  # unblock the worker thread, then let it end
            self.queue.get_nowait()
        self.queue.put_nowait(_ABORT)
        await asyncio.wait({self.task})
        if not self.task.cancelled():
            self.task.exception()  # retrieved, so that it is not logged as never retrieved


class BlockReader(io.RawIOBase):
    """A binary file object, read on the worker thread, over the items
    ``get()`` returns: each a list of pieces of bytes, until ``end`` (an
    item that is not a list). Each piece is passed to ``feed`` (checksums)
    as it is taken, then copied straight into the reader's buffer."""

    def __init__(self, get: Callable[[], object], end: object = None,
                 feed: Callable[[bytes], None] | None = None):
        self.get, self.end, self.feed = get, end, feed
        self.pieces: collections.deque = collections.deque()
        self.current = memoryview(b"")
        self.ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        done, wanted = 0, len(buffer)
        while done < wanted:
            if not self.current:
                if not self.pieces:
                    if self.ended or done:
                        break
                    block = self.get()
                    if block is self.end:
                        self.ended = True
                        break
                    self.pieces.extend(block)  # type: ignore[arg-type]  # a list of bytes
                    continue
                piece = self.pieces.popleft()
                if self.feed is not None:
                    self.feed(piece)
                self.current = memoryview(piece)
                continue
            n = min(wanted - done, len(self.current))
            buffer[done:done + n] = self.current[:n]
            self.current = self.current[n:]
            done += n
        return done
