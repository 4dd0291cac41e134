"""Request bodies of PutObject and UploadPart: decoded (``aws-chunked``),
checked (``x-amz-content-sha256``, ``Content-MD5``, ``x-amz-checksum-*``
in a header or a trailer) and stored as they arrive, so memory stays
bounded whatever the object's size and no local disk is used.

The path of a body's bytes: uvicorn (with httptools) receives them on the
event loop and hands them on as bytes objects of up to about 64 KiB plus
one socket read (its flow control's high-water mark); an ``aws-chunked``
body is decoded there (:mod:`.chunked`). The pieces are not joined: lists
of them, of at least :data:`BLOCK` bytes each, go through a queue of
:data:`QUEUED` lists to a worker thread (:mod:`..handoff`), which
feeds each piece to the checks (hashlib, ``zlib.crc32``: C code that
releases the interpreter lock, each byte hashed once per check) and copies
it straight into the store's cutting window, the one copy of the body in
pipectl (:meth:`~pipectl.client.Client.store_content`, then
:meth:`~pipectl.pfs.objects.ObjectWriter.put_stream`: chunks cut by
content, 1 to 16 MiB, each hashed with BLAKE3 and written from the window
with no copy, up to 4 at once (8 into S3), while the next bytes arrive). Windows come
from a small pool of the process, so a body is written to memory already
mapped. The store is the spool: a body takes at most about 104 MiB in
memory (the queue, 8 MiB; three cutting windows of 32 MiB), and nothing becomes visible
until the caller commits the entry returned, after every check passed;
the chunks of a body that failed a check stay in the store unreferenced.

Over plain HTTP botocore sends PutObject and UploadPart bodies whole, with
``x-amz-content-sha256`` (the body's SHA-256: it signs the payload) and an
``x-amz-checksum-crc32`` header, so both are computed here on every byte;
over HTTPS it sends them ``aws-chunked`` with an unsigned payload and a
CRC32 trailer, and only the CRC32 is computed.
"""
from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import BinaryIO, TypeVar, cast

from ..handoff import BlockReader, Handoff
from .chunked import ChunkedDecoder
from .errors import S3Error
from .sigv4 import Signed, check_payload

BLOCK = 1 << 20
"""Bytes received are handed to the storing thread in lists of pieces of at least this many bytes."""
QUEUED = 8
"""Lists waiting for the storing thread at most (then receiving waits)."""
SIGNED_STREAMING = ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
T = TypeVar("T")


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


async def receive(chunks: AsyncIterator[bytes], headers: Mapping[str, str], signed: Signed | None,
                  store: Callable[[BinaryIO], T]) -> T:
    """Run ``store(stream)`` on a worker thread over the decoded body of a
    request whose raw body is ``chunks``, as it arrives; return what it
    returns once the body passed every check. ``headers``: lowercase
    names; ``signed``: the request's V4 signature (its chunk signatures
    are checked when the body is signed chunk by chunk).

    ``x-amz-content-sha256`` alone (which a V4 signature covers) says
    what the body is: ``STREAMING-*``, ``aws-chunked`` (decoded); a
    SHA-256, the body's, compared with every byte received; absent (a
    presigned URL, V2, an open server) or ``UNSIGNED-PAYLOAD``, not
    hashed. ``Content-Encoding`` changes nothing. Raises S3Error:
    IncompleteBody, XAmzContentSHA256Mismatch, BadDigest,
    SignatureDoesNotMatch, InvalidArgument; and what ``store`` raises."""
    payload = check_payload(headers.get("x-amz-content-sha256", "UNSIGNED-PAYLOAD"))
    streaming = payload.startswith("STREAMING-")
    decoder = None
    if streaming:
        decoder = ChunkedDecoder(signed if payload in SIGNED_STREAMING else None,
                                 trailer=payload.endswith("-TRAILER"))
    declared = {name[len("x-amz-checksum-"):]: value for name, value in headers.items()
                if name.startswith("x-amz-checksum-") and name != "x-amz-checksum-type"}
    trailer = headers.get("x-amz-trailer", "").strip().lower()
    algorithms = set(declared)
    if trailer.startswith("x-amz-checksum-"):
        algorithms.add(trailer[len("x-amz-checksum-"):])
    sums = {a: c for a in algorithms if (c := checksum(a)) is not None}
    sums["content-sha256"] = hashlib.sha256() if len(payload) == 64 else None
    sums["md5"] = hashlib.md5(usedforsecurity=False) if "content-md5" in headers else None
    computed = [s for s in sums.values() if s is not None]

    def feed(piece: bytes) -> None:
        for s in computed:
            s.update(piece)
    handoff = Handoff(lambda get: store(cast(BinaryIO, BlockReader(get, feed=feed))), QUEUED)
    size = held = 0
    block: list = []
    try:
        async for raw in chunks:
            for piece in decoder.feed(raw) if decoder else (raw,):
                if piece:
                    block.append(piece)
                    held += len(piece)
            if held >= BLOCK:
                await handoff.hand(block)
                size, held, block = size + held, 0, []
        if block:
            await handoff.hand(block)
            size += held
        if decoder:
            decoder.finish()
        await handoff.hand(None)
        result = await handoff.result()
    except BaseException:
        await handoff.abort()
        raise
    if decoder:
        declared.update({name[len("x-amz-checksum-"):]: value for name, value in decoder.trailers.items()
                         if name.startswith("x-amz-checksum-")})
    _check(headers, payload, declared, sums, size)
    return result


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
