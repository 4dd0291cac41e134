"""Turning "write the bytes into this file object" into a file object to
read them from: :func:`reader` runs the writer on a thread, through a pipe,
so a reader downstream (an HTTP response, a user's ``f.read()``) streams
with no more than the pipe's buffer in flight.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from typing import BinaryIO


class _PipeReader(io.RawIOBase):
    """The read end; the writer's error is raised by ``read`` at the end of
    the bytes, and closing the read end early stops the writer (EPIPE)."""

    def __init__(self, produce: Callable[[BinaryIO], object]):
        read_fd, write_fd = os.pipe()
        self._reader = os.fdopen(read_fd, "rb", buffering=0)
        self._error: BaseException | None = None

        def run() -> None:
            with os.fdopen(write_fd, "wb") as out:
                try:
                    produce(out)
                except BaseException as e:  # noqa: BLE001 (raised in the reader's thread)
                    self._error = e
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._reader.readinto(buffer)
        if not n:
            self._thread.join()
            if self._error is not None and not isinstance(self._error, BrokenPipeError):
                raise self._error
        return n or 0

    def close(self) -> None:
        if not self.closed:
            self._reader.close()  # a writer still writing gets EPIPE and ends
        super().close()


def reader(produce: Callable[[BinaryIO], object], buffer: int = 1 << 20) -> io.BufferedReader:
    """A buffered binary file object reading what ``produce(out)`` writes
    into ``out`` (run on a thread). Raises ``produce``'s error from
    ``read`` once the bytes before it are read."""
    return io.BufferedReader(_PipeReader(produce), buffer)
