"""Request bodies of PutObject and UploadPart: decoded (``aws-chunked``),
checked (``x-amz-content-sha256``, ``Content-MD5``, ``x-amz-checksum-*``
in a header or a trailer) and spooled, so memory stays bounded whatever
the object's size: up to :data:`SPOOL_BYTES` in memory, the rest in a
temporary file (the server's temporary directory, ``$TMPDIR``), removed
when the request ends."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import tempfile
import zlib
from collections.abc import AsyncIterator, Callable, Mapping

from starlette.concurrency import run_in_threadpool

from .chunked import ChunkedDecoder
from .errors import S3Error
from .sigv4 import Signed

SPOOL_BYTES = 8 << 20
"""A body is held in memory up to this size, then spooled to a temporary file."""
BLOCK = 1 << 20
"""Bytes received are written and hashed in blocks of this size, on a worker
thread, while the event loop receives the next block."""
UNSIGNED = ("UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
SIGNED_STREAMING = ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")


class _Crc:
    """A CRC as hashlib's interface: ``update``, ``digest`` (big endian)."""

    def __init__(self, function: Callable[[bytes, int], int], bits: int = 32):
        self.function, self.value, self.bits = function, 0, bits

    def update(self, data: bytes) -> None:
        self.value = self.function(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(self.bits // 8, "big")


def _crc32c() -> Callable[[bytes, int], int] | None:
    try:
        from awscrt import checksums  # botocore's optional CRT extra
    except ImportError:
        return None
    return checksums.crc32c


def checksum(algorithm: str):
    """An incremental checksum of S3's ``x-amz-checksum-<algorithm>``
    (crc32, crc32c, sha1, sha256), or None for one that cannot be
    computed here (crc32c without ``awscrt``, crc64nvme): it is then
    accepted unchecked."""
    if algorithm == "crc32":
        return _Crc(zlib.crc32)
    if algorithm == "crc32c":
        function = _crc32c()
        return _Crc(function) if function else None
    if algorithm in ("sha1", "sha256"):
        return hashlib.new(algorithm)
    return None


async def spool(chunks: AsyncIterator[bytes], headers: Mapping[str, str],
                signed: Signed | None) -> tempfile.SpooledTemporaryFile[bytes]:
    """The decoded body of a request whose raw body is ``chunks``, in a
    temporary file object positioned at 0 (the caller closes it).
    ``headers``: lowercase names. Raises S3Error: IncompleteBody,
    XAmzContentSHA256Mismatch, BadDigest, SignatureDoesNotMatch,
    InvalidRequest (a checksum that does not match)."""
    payload = headers.get("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
    streaming = payload.startswith("STREAMING-") or "aws-chunked" in headers.get("content-encoding", "")
    decoder = ChunkedDecoder(signed if payload in SIGNED_STREAMING and signed else None) if streaming else None
    declared = {name[len("x-amz-checksum-"):]: value for name, value in headers.items()
                if name.startswith("x-amz-checksum-") and name != "x-amz-checksum-type"}
    trailer = headers.get("x-amz-trailer", "").strip().lower()
    algorithms = set(declared)
    if trailer.startswith("x-amz-checksum-"):
        algorithms.add(trailer[len("x-amz-checksum-"):])
    sums = {a: c for a in algorithms if (c := checksum(a)) is not None}
    sums["content-sha256"] = hashlib.sha256() if len(payload) == 64 and not streaming else None
    sums["md5"] = hashlib.md5(usedforsecurity=False) if "content-md5" in headers else None
    active = [s for s in sums.values() if s is not None]
    out = tempfile.SpooledTemporaryFile(SPOOL_BYTES)  # noqa: SIM115 (returned open, closed by the caller)
    size = 0

    def consume(block: bytearray) -> None:  # on a worker thread: file writes and hashes release the GIL
        out.write(block)
        for s in active:
            s.update(block)
    buffer, pending = bytearray(), None
    try:
        async for raw in chunks:
            for piece in decoder.feed(raw) if decoder else (raw,):
                buffer += piece
                size += len(piece)
            if len(buffer) >= BLOCK:  # the previous block is written while this one was received
                if pending is not None:
                    await pending
                pending, buffer = asyncio.ensure_future(run_in_threadpool(consume, buffer)), bytearray()
        if pending is not None:
            await pending
            pending = None
        consume(buffer)
        if decoder:
            decoder.finish()
            declared.update({name[len("x-amz-checksum-"):]: value for name, value in decoder.trailers.items()
                             if name.startswith("x-amz-checksum-")})
        _check(headers, payload, declared, sums, size)
    except BaseException:
        if pending is not None:
            with contextlib.suppress(BaseException):
                await pending
        out.close()
        raise
    out.seek(0)
    return out


def _check(headers: Mapping[str, str], payload: str, declared: dict[str, str], sums: dict, size: int) -> None:
    decoded = headers.get("x-amz-decoded-content-length")
    if decoded is not None and decoded.isdigit() and int(decoded) != size:
        raise S3Error("IncompleteBody", 400, f"the body held {size} bytes, not x-amz-decoded-content-length "
                      f"{decoded}")
    if sums["content-sha256"] is not None and sums["content-sha256"].hexdigest() != payload:
        raise S3Error("XAmzContentSHA256Mismatch", 400, "The provided 'x-amz-content-sha256' header does not "
                      "match what was computed.")
    if sums["md5"] is not None and base64.b64encode(sums["md5"].digest()).decode() != headers["content-md5"]:
        raise S3Error("BadDigest", 400, "The Content-MD5 you specified did not match what we received.")
    for algorithm, value in declared.items():
        computed = sums.get(algorithm)
        if computed is not None and base64.b64encode(computed.digest()).decode() != value.strip():
            raise S3Error("BadDigest", 400, f"The {algorithm.upper()} you specified did not match the calculated "
                          "checksum.")
