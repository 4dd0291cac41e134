"""The ``Range`` header of GetObject and HeadObject (RFC 9110, as S3
reads it: one range per request)."""

from __future__ import annotations

from .errors import S3Error


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(offset, length)`` of a ``Range: bytes=...`` header of one range
    (RFC 9110 §14.1.2), or None to send the whole object (no header, a
    header of another unit or of several ranges, a malformed one). Raises
    S3Error InvalidRange (416) when no byte of the range exists."""
    if not header or not header.strip().startswith("bytes=") or "," in header:
        return None
    first, _, last = header.strip()[6:].partition("-")
    try:
        if not first:
            n = int(last)
            if n <= 0:
                raise ValueError
            start, end = max(size - n, 0), size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
            if int(last or start) < start:
                return None
    except ValueError:
        if not first and last.strip().isdigit():  # bytes=-0
            raise S3Error("InvalidRange", 416, "The requested range is not satisfiable",
                          {"Content-Range": f"bytes */{size}"}) from None
        return None
    if start >= size:
        raise S3Error("InvalidRange", 416, "The requested range is not satisfiable",
                      {"Content-Range": f"bytes */{size}"})
    return start, end - start + 1
