"""Each pipeline's job pointers: what the controller and the readers of
recent jobs need, in one small record a pipeline, so that their cost does
not grow with the job history.

``pipelines/<name>/job-pointers.json`` (see :func:`.keys.job_pointers`)::

    {"recent":  [[id, created], ...],   the RECENT newest jobs, newest first
     "pending": [[id, created], ...],   every unfinished job, oldest first
     "indexed": [id, created, datum_index] | null}
                                        the newest finished job with a datum index
                                        (the one the next job skips datums by)

It is changed only by compare-and-swap (see :meth:`.jobs.Jobs.change_pointers`)
and is a cache of the job records, which stay the truth: any entry may be
stale (a job finished, or a record deleted) and readers check the record;
the whole object may be deleted, and is rebuilt from the records (one
listing and a read of each) by the next reader, which is also how a store
from before this record is upgraded. The one thing a rebuild could not
find is a job whose record is not written yet; hence the order of writes
(see :meth:`.jobs.Jobs.create_job`): a job enters ``pending`` before its
record is written and leaves it after its record is final.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable

from ..pfs.model import parse_time
from .model import JobInfo

RECENT = 20
"""How many of a pipeline's newest jobs the pointers name (``list_jobs(limit=)``
up to this many reads no listing)."""

MISSING_GRACE = dt.timedelta(minutes=10)
"""A pending entry whose record is missing is dropped once it is older than
this: its creator died between naming it and writing it (a creator still
alive names it again after writing its record, see :meth:`.jobs.Jobs.create_job`)."""


@dataclasses.dataclass
class JobPointers:
    """One pipeline's job pointers (see the module docstring). Entries are
    ``(job id, created)`` with ``created`` as job records give it (RFC 3339
    UTC, so that string order is time order). The ``add_*``/``settle``/
    ``drop`` methods change it in place and return whether anything
    changed (so that an unchanged record is not written)."""

    recent: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    pending: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    indexed: tuple[str, str, str] | None = None

    @classmethod
    def from_json(cls, data: bytes) -> JobPointers:
        """Parse the stored form. Raises ValueError (JSON) or TypeError on a malformed one."""
        raw = json.loads(data)
        return cls([(i, c) for i, c in raw["recent"]], [(i, c) for i, c in raw["pending"]],
                   tuple(raw["indexed"]) if raw.get("indexed") else None)  # type: ignore[arg-type]

    def to_json(self) -> bytes:
        """The stored form (compact JSON)."""
        return json.dumps({"recent": self.recent, "pending": self.pending, "indexed": self.indexed},
                          separators=(",", ":")).encode()

    @classmethod
    def from_jobs(cls, jobs: Iterable[JobInfo]) -> JobPointers:
        """The pointers of a pipeline whose job records are ``jobs`` (any
        order): how they are rebuilt, and how an older store gets them."""
        ordered = sorted(jobs, key=lambda j: j.created, reverse=True)
        pointers = cls([(j.id, j.created) for j in ordered[:RECENT]],
                       [(j.id, j.created) for j in reversed(ordered) if not j.done])
        indexed = next((j for j in ordered if j.done and j.datum_index), None)
        if indexed is not None:
            pointers.indexed = (indexed.id, indexed.created, indexed.datum_index or "")
        return pointers

    def candidates(self) -> list[tuple[str, str]]:
        """Every job named (recent and pending), newest first, each once."""
        return sorted(dict(self.recent + self.pending).items(), key=lambda e: e[1], reverse=True)

    def names(self, job: str) -> bool:
        """Whether job id ``job`` is among the recent or pending jobs."""
        return any(i == job for i, _ in self.recent) or any(i == job for i, _ in self.pending)

    def add_pending(self, job: str, created: str) -> bool:
        """Name an unfinished job."""
        if any(i == job for i, _ in self.pending):
            return False
        self.pending = sorted(self.pending + [(job, created)], key=lambda e: e[1])
        return True

    def add_recent(self, job: str, created: str) -> bool:
        """Count a job among the newest (if it is one of the RECENT newest)."""
        if any(i == job for i, _ in self.recent):
            return False
        recent = sorted(self.recent + [(job, created)], key=lambda e: e[1], reverse=True)[:RECENT]
        changed, self.recent = recent != self.recent, recent
        return changed

    def drop(self, job: str) -> bool:
        """Forget a pending job (its record is gone)."""
        kept = [e for e in self.pending if e[0] != job]
        changed, self.pending = len(kept) != len(self.pending), kept
        return changed

    def settle(self, job: JobInfo) -> bool:
        """Record that ``job`` (a record in a final state) finished: it
        leaves ``pending``, is counted among the recent jobs, and becomes
        ``indexed`` if it has a datum index newer than the one named."""
        changed = self.drop(job.id)
        changed = self.add_recent(job.id, job.created) or changed
        if job.done and job.datum_index and (self.indexed is None or self.indexed[1] <= job.created) \
                and self.indexed != (job.id, job.created, job.datum_index):
            self.indexed = (job.id, job.created, job.datum_index)
            changed = True
        return changed

    @staticmethod
    def lost(created: str, now: dt.datetime) -> bool:
        """Whether a pending entry created at ``created`` whose record is
        missing is old enough to drop (see :data:`MISSING_GRACE`)."""
        try:
            return now - parse_time(created) > MISSING_GRACE
        except ValueError:
            return True
