"""Decoding ``Content-Encoding: aws-chunked`` request bodies.

The format is the Amazon S3 API Reference's "Signature Calculations for
the Authorization Header: Transferring Payload in Multiple Chunks
(Chunked Upload)" and "... with trailing headers"::

    <hex size>[;chunk-signature=<64 hex>]\\r\\n<size bytes>\\r\\n   (repeated)
    0[;chunk-signature=<64 hex>]\\r\\n
    [<trailer name>:<value>\\r\\n]...                        (checksum, trailer signature)
    \\r\\n

modern botocore sends it (``x-amz-content-sha256:
STREAMING-UNSIGNED-PAYLOAD-TRAILER`` with a CRC32 trailer) for PutObject
and UploadPart over HTTPS; ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]``
bodies carry a signature per chunk, checked here against the request's.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

from .errors import S3Error
from .sigv4 import Signed

MAX_LINE = 4096
"""The longest chunk header or trailer line accepted, in bytes."""


def _bad(message: str) -> S3Error:
    return S3Error("IncompleteBody", 400, f"malformed aws-chunked body: {message}")


class ChunkedDecoder:
    """Feed the raw body in pieces of any size (:meth:`feed`, which yields
    the decoded bytes as they come), then call :meth:`finish`; ``trailers``
    then holds the trailing headers (lowercase names). ``signed``: the
    request's verified signature when its chunks are signed (each chunk's
    signature is checked), else None. ``trailer``: the body has trailing
    headers (``...-TRAILER``); a signed one must end them with exactly one
    ``x-amz-trailer-signature`` line, which is checked, and a signed body
    without ``trailer`` may have no trailing header at all."""

    def __init__(self, signed: Signed | None = None, trailer: bool = False):
        self.signed, self.trailer = signed, trailer
        self._trailer_signed = False
        self.previous = signed.signature if signed else ""
        self.trailers: dict[str, str] = {}
        self._buffer = bytearray()
        self._state = "size"  # size | data | crlf | trailer | done
        self._remaining = 0
        self._chunk_signature: str | None = None
        self._chunk_hash = hashlib.sha256()
        self._trailer_bytes = bytearray()

    def _line(self) -> str | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_LINE:
                raise _bad("a chunk header is too long")
            return None
        line = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[:end + 2]
        return line

    def _chunk_done(self) -> None:
        if self.signed is None:
            return
        expected = self.signed.chunk_signature(self.previous, self._chunk_hash.hexdigest())
        if not hmac.compare_digest(expected.encode(), (self._chunk_signature or "").encode("latin-1")):
            raise S3Error("SignatureDoesNotMatch", 403, "a chunk signature does not match")
        self.previous = expected
        self._chunk_hash = hashlib.sha256()

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decode ``data``, the next bytes of the body; yield payload bytes.
        Raises S3Error (IncompleteBody, SignatureDoesNotMatch)."""
        self._buffer += data
        while self._buffer:
            if self._state == "size":
                line = self._line()
                if line is None:
                    return
                size, _, extension = line.partition(";")
                try:
                    self._remaining = int(size, 16)
                except ValueError:
                    raise _bad(f"bad chunk size {size[:20]!r}") from None
                name, _, value = extension.partition("=")
                self._chunk_signature = value.strip() if name.strip() == "chunk-signature" else None
                if self.signed is not None and self._chunk_signature is None:
                    raise _bad("a chunk of a signed body has no chunk-signature")
                if self._remaining == 0:
                    self._chunk_done()
                    self._state = "trailer"
                else:
                    self._state = "data"
            elif self._state == "data":
                piece = bytes(self._buffer[:self._remaining])
                del self._buffer[:len(piece)]
                self._remaining -= len(piece)
                if self.signed is not None:
                    self._chunk_hash.update(piece)
                if self._remaining == 0:
                    self._state = "crlf"
                yield piece
            elif self._state == "crlf":
                if len(self._buffer) < 2:
                    return
                if self._buffer[:2] != b"\r\n":
                    raise _bad("a chunk is longer than its size")
                del self._buffer[:2]
                self._chunk_done()
                self._state = "size"
            elif self._state == "trailer":
                line = self._line()
                if line is None:
                    return
                if not line:
                    self._end_trailer()
                    continue
                if self._trailer_signed:
                    raise _bad("a trailing header after x-amz-trailer-signature")
                if self.signed is not None and not self.trailer:
                    raise _bad("a trailing header in a body signed without trailer")
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "x-amz-trailer-signature":
                    self._check_trailer_signature(value.strip())
                    self._trailer_signed = True
                else:
                    self._trailer_bytes += f"{name}:{value.strip()}\n".encode("latin-1")
                    self.trailers[name] = value.strip()
            else:
                raise _bad("bytes after the end of the body")

    def _check_trailer_signature(self, signature: str) -> None:
        if self.signed is None:
            return
        expected = self.signed.trailer_signature(self.previous, bytes(self._trailer_bytes))
        if not hmac.compare_digest(expected.encode(), signature.encode("latin-1")):
            raise S3Error("SignatureDoesNotMatch", 403, "the trailer signature does not match")

    def _end_trailer(self) -> None:
        if self.signed is not None and self.trailer and not self._trailer_signed:
            raise S3Error("SignatureDoesNotMatch", 403, "the trailer of a signed body has no x-amz-trailer-signature")
        self._state = "done"

    def finish(self) -> None:
        """Check that the body ended where its format says. Raises S3Error
        IncompleteBody, SignatureDoesNotMatch (a signed trailer without its signature)."""
        if self._state == "trailer" and not self._buffer:
            self._end_trailer()  # some clients end the trailer without the blank line
        if self._state != "done":
            raise _bad("the body ended early")
