"""Names of repos, branches and commits, and file paths inside a commit.

Projects (Pachyderm 2.x): repos and pipelines belong to one. Those of the
``default`` project are named as before (``images``); those of another are
named ``<project>/<name>`` (``staging/images``, Pachyderm's own text form of a
repo key) everywhere inside pipectl, so every operation that takes a repo or
pipeline takes either. In store keys the ``/`` is written ``~`` (see
:func:`key_part`), a character no name may hold, so one repo's keys are never
a prefix of another's.
"""

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
    shaped like a commit id; a repo or pipeline name may be qualified by its
    project (``project/name``, both parts such names). Returns ``name``;
    raises InvalidArgument."""
    parts = name.split("/") if kind in QUALIFIED and "/" in (name or "") else [name]
    if len(parts) > 2 or not all(_NAME.match(p or "") and not is_commit_id(p) for p in parts):
        form = "[PROJECT/]NAME, each " if kind in QUALIFIED else ""
        raise InvalidArgument(
            f"invalid {kind} name {name!r}: use {form}1-63 letters, digits, '_', '-' or '.', "
            "not starting with '-' or '.'")
    return name


DEFAULT_PROJECT = "default"
"""The project of a repo or pipeline whose name has none (Pachyderm 2.x's)."""
QUALIFIED = ("repo", "pipeline")
"""The kinds of names a project qualifies."""


def qualify(project: str | None, name: str) -> str:
    """``name`` in ``project``: ``project/name``, or ``name`` alone for the
    default project (or None); a name already qualified is kept."""
    if not project or project == DEFAULT_PROJECT or "/" in name:
        return name
    return f"{project}/{name}"


def project_of(name: str) -> str:
    """The project of a repo or pipeline name (``default`` when unqualified)."""
    return name.partition("/")[0] if "/" in name else DEFAULT_PROJECT


def bare(name: str) -> str:
    """A repo or pipeline name without its project."""
    return name.rpartition("/")[2]


def key_part(kind: str, name: str) -> str:
    """A checked repo or pipeline name as one component of a store key:
    ``staging/images`` is written ``staging~images``."""
    return check_name(kind, name).replace("/", "~")


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
    raises InvalidArgument. (One regex search and one length for a short
    path: put-file checks every path it puts, 100,000 at a time.)"""
    if len(path) * 4 > MAX_COMPONENT_BYTES:  # a UTF-8 character takes at most 4 bytes
        for part in path.split("/"):
            if len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
                raise InvalidArgument(f"invalid path {path[:80]!r}...: a name is longer than "
                                      f"{MAX_COMPONENT_BYTES} bytes")
    if _CONTROL.search(path):
        raise InvalidArgument(f"invalid path {path!r}: control characters are not allowed in file names")
    return path


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def join(directory: str, name: str) -> str:
    """Join two commit paths and normalise the result."""
    return clean_path(posixpath.join(directory, name))
