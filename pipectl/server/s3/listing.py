"""ListObjects pages: S3's listing rules (the S3 API Reference,
ListObjects and ListObjectsV2) over a sorted list of keys."""

from __future__ import annotations

import base64

from ...pfs.tree import FileEntry
from .errors import S3Error

MAX_KEYS = 1000
"""The most keys one ListObjects page holds (S3's limit)."""


def max_keys(value: str | None) -> int:
    """A ``max-keys`` (or ``max-parts``) parameter: at most :data:`MAX_KEYS`,
    that many when absent. Raises S3Error InvalidArgument."""
    if value is None:
        return MAX_KEYS
    if not value.isdigit():
        raise S3Error("InvalidArgument", 400, "max-keys must be a non-negative integer")
    return min(int(value), MAX_KEYS)


def page(files: list[tuple[str, FileEntry]], prefix: str, delimiter: str, marker: str,
         limit: int) -> tuple[list[tuple[str, FileEntry]], list[str], bool, str]:
    """One page of a listing of ``files`` (sorted, all starting with
    ``prefix``): ``(contents, common prefixes, truncated, last key or
    prefix returned)``. A key whose rest after ``prefix`` holds
    ``delimiter`` rolls up into the common prefix ending there; a common
    prefix at or before ``marker`` was returned on an earlier page."""
    contents: list[tuple[str, FileEntry]] = []
    common: list[str] = []
    last = ""
    for key, entry in files:
        if key <= marker:
            continue
        rolled = None
        if delimiter:
            at = key.find(delimiter, len(prefix))
            if at >= 0:
                rolled = key[:at + len(delimiter)]
                if rolled <= marker or (common and common[-1] == rolled):
                    continue
        if len(contents) + len(common) >= limit:
            return contents, common, limit > 0, last
        if rolled is not None:
            common.append(rolled)
            last = rolled
        else:
            contents.append((key, entry))
            last = key
    return contents, common, False, last


def encode_token(key: str) -> str:
    """A ListObjectsV2 continuation token: the last key returned, base64url (opaque to clients)."""
    return base64.urlsafe_b64encode(key.encode()).decode()


def decode_token(token: str) -> str:
    """The key a continuation token stands for. Raises S3Error InvalidArgument."""
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise S3Error("InvalidArgument", 400, "The continuation token provided is incorrect") from None
