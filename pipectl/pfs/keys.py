"""Every store key of the versioned file system, built in one place.

Layout (one bucket, with an optional prefix, or one directory)::

    objects/<aa>/<hash>                  file content chunks and packs of small files, stored once
                                         (see objects.py); <aa> is the hash's first two hex digits
    trees/<hash>                         a commit's file tree (or, for a big one, its list of shards,
                                         each a tree at trees/<hash>), canonical JSON, stored once (see tree.py)
    repos/<repo>/info.json               RepoInfo
    repos/<repo>/branches/<branch>.json  Branch: the head commit, moved only by compare-and-swap
    repos/<repo>/commits/<id>.json       Commit: created once; an open commit is updated by
                                         compare-and-swap until finished, then never again

``<hash>`` is the content hash of the bytes stored (see hashing.py). Every
name that goes into a key is checked here, whether it comes from the user
(create, read, list, delete) or from a record read back: a key can only name
an object inside the store, never ``..`` or a path with a ``/`` of its own.
Raises InvalidArgument for a bad name.
"""

from __future__ import annotations

import re

from ..errors import InvalidArgument
from . import names

REPOS = "repos/"
TREES = "trees"
OBJECTS = "objects"

_HASH = re.compile(r"[0-9a-f]{64}")


def checked(pattern: re.Pattern, what: str, value: str) -> str:
    """``value`` if all of it matches ``pattern``; else raises
    InvalidArgument: ``invalid <what> '<value>'``."""
    if not pattern.fullmatch(value or ""):
        raise InvalidArgument(f"invalid {what} {value!r}")
    return value


def check_hash(digest: str) -> str:
    """Validate a content hash (64 lowercase hex digits); return it.
    Raises InvalidArgument."""
    return checked(_HASH, "content hash", digest)


def check_commit_id(commit: str) -> str:
    """Validate a commit id (32 lowercase hex digits); return it. Raises InvalidArgument."""
    return checked(names.ID, "commit id", commit)


def repo_prefix(repo: str) -> str:
    """Prefix of every record of ``repo``."""
    return f"repos/{names.key_part('repo', repo)}/"


def repo(repo: str) -> str:
    """The RepoInfo record of ``repo``."""
    return repo_prefix(repo) + "info.json"


def branches(repo: str) -> str:
    """Prefix of ``repo``'s branch records."""
    return repo_prefix(repo) + "branches/"


def branch(repo: str, branch: str) -> str:
    """The Branch record of ``repo``'s ``branch``."""
    return f"{branches(repo)}{names.check_name('branch', branch)}.json"


def commits(repo: str) -> str:
    """Prefix of ``repo``'s commit records."""
    return repo_prefix(repo) + "commits/"


def commit(repo: str, commit_id: str) -> str:
    """The Commit record ``commit_id`` (32 hex digits) of ``repo``."""
    return f"{commits(repo)}{check_commit_id(commit_id)}.json"


def tree(digest: str) -> str:
    """The file tree stored under content hash ``digest``."""
    return f"{TREES}/{check_hash(digest)}"


def object_key(digest: str) -> str:
    """The content object (chunk or pack) stored under hash ``digest``."""
    return f"{OBJECTS}/{digest[:2]}/{check_hash(digest)}"


def is_repo_record(key: str) -> bool:
    """Whether a key listed under :data:`REPOS` is a repo's RepoInfo."""
    return key.endswith("/info.json") and key.count("/") == 2
