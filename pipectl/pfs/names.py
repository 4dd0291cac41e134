"""Names of repos, branches and commits, and file paths inside a commit."""

from __future__ import annotations

import posixpath
import re
import uuid

from ..errors import InvalidArgument

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
ID = re.compile(r"[0-9a-f]{32}")
"""Commit and job ids: 32 lowercase hex digits."""


def new_id() -> str:
    """A fresh 32-hex-digit id (Pachyderm 1.x commit and job ids look the same)."""
    return uuid.uuid4().hex


def is_commit_id(ref: str) -> bool:
    """Whether ``ref`` has the shape of a commit id (32 lowercase hex digits)."""
    return bool(ID.fullmatch(ref))


def check_name(kind: str, name: str) -> str:
    """Validate a repo, branch or pipeline name: 1-63 characters of letters,
    digits, ``_``, ``-`` and ``.``, not starting with ``-`` or ``.``, and not
    shaped like a commit id. Returns ``name``; raises InvalidArgument."""
    if not _NAME.match(name or "") or is_commit_id(name):
        raise InvalidArgument(
            f"invalid {kind} name {name!r}: use 1-63 letters, digits, '_', '-' or '.', "
            "not starting with '-' or '.'")
    return name


def clean_path(path: str) -> str:
    """Normalise a path inside a commit to ``/a/b`` form (``/`` is the root).
    Raises InvalidArgument for ``..`` components or NUL bytes."""
    if "\0" in path:
        raise InvalidArgument("file paths cannot contain NUL bytes")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"invalid path {path!r}: '..' is not allowed")
    return "/" + "/".join(parts)


MAX_COMPONENT_BYTES = 255
"""Longest file name (one path component, UTF-8 bytes) a worker can lay out:
NAME_MAX of Linux file systems."""


def check_new_path(path: str) -> str:
    """Validate a path being put into a commit (already clean): each
    component at most :data:`MAX_COMPONENT_BYTES` bytes and free of control
    characters, so every worker can lay it out as a file. Returns ``path``;
    raises InvalidArgument."""
    for part in path.split("/"):
        if len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
            raise InvalidArgument(f"invalid path {path[:80]!r}...: a name is longer than "
                                  f"{MAX_COMPONENT_BYTES} bytes")
        if any(ord(c) < 32 or ord(c) == 127 for c in part):
            raise InvalidArgument(f"invalid path {path!r}: control characters are not allowed in file names")
    return path


def join(directory: str, name: str) -> str:
    """Join two commit paths and normalise the result."""
    return clean_path(posixpath.join(directory, name))
