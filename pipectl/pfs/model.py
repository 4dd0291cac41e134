"""Records kept for repos, branches and commits, and their JSON forms.

Where each is stored: ``keys.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from typing import Any


def now() -> str:
    """The current UTC time as ISO 8601 with microseconds and a ``Z``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> dt.datetime:
    """Inverse of :func:`now`."""
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


@functools.cache
def _field_names(cls: Any) -> tuple[str, ...]:
    """The dataclass ``cls``'s field names, in order."""
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def _field_set(cls: Any) -> frozenset[str]:
    return frozenset(_field_names(cls))


class Record:
    """Mixin: JSON round trip for the dataclasses below."""

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1).encode()

    def to_dict(self) -> dict[str, Any]:
        """The fields by name. Shallow: lists and dicts in fields are shared,
        not copied (records hold no records), which makes it 14x as fast as
        ``dataclasses.asdict`` (3 against 42 µs a datum result; a job may write
        10,000)."""
        return {name: getattr(self, name) for name in _field_names(type(self))}  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, data: bytes):
        return cls.from_dict(json.loads(data))

    @classmethod
    def from_dict(cls, raw: dict):
        """The record from its fields by name; names it does not know (fields
        a later version added) are left out."""
        names = _field_set(cls)  # type: ignore[arg-type]
        return cls(**{k: v for k, v in raw.items() if k in names})


@dataclasses.dataclass
class RepoInfo(Record):
    """A repo: ``name``, ``created`` (ISO time), ``description``."""

    name: str
    created: str
    description: str = ""


@dataclasses.dataclass
class Branch(Record):
    """A branch: a movable ``head`` commit id (None before the first commit),
    and a ``trigger`` (Pachyderm's: ``{"branch", "commits", "size",
    "rate_limit_spec", "cron_spec", "all"}``, see :mod:`.triggers`) when
    the branch follows another one only when a condition holds."""

    repo: str
    name: str
    head: str | None = None
    trigger: dict | None = None


@dataclasses.dataclass
class Provenance(Record):
    """One commit an output commit was computed from. ``pipeline_version`` is
    the spec version that produced ``commit`` when its repo is a pipeline's
    output repo, else None."""

    repo: str
    branch: str
    commit: str
    pipeline_version: int | None = None


@dataclasses.dataclass
class Commit(Record):
    """An immutable snapshot of a repo.

    ``finished`` is None while the commit is open. ``tree`` is the content hash of
    its file tree (None when empty). ``provenance`` is transitive: every
    upstream commit, each as a :class:`Provenance` dict. ``pipeline`` and
    ``pipeline_version`` name the spec that produced an output commit.
    ``origin`` is ``user`` or ``auto`` (made by a pipeline job).
    """

    id: str
    repo: str
    branch: str
    parent: str | None
    origin: str
    started: str
    finished: str | None = None
    tree: str | None = None
    size_bytes: int = 0
    description: str = ""
    provenance: list[dict] = dataclasses.field(default_factory=list)
    pipeline: str | None = None
    pipeline_version: int | None = None
    job: str | None = None

    @property
    def is_open(self) -> bool:
        return self.finished is None

    def duration_seconds(self) -> float | None:
        if self.finished is None:
            return None
        return (parse_time(self.finished) - parse_time(self.started)).total_seconds()
