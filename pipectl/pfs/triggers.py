"""Branch triggers: Pachyderm's ``pfs.trigger``, a branch that follows
another only when a condition holds.

A branch with ``trigger = {"branch": "master", "commits": 2}`` moves to the
head of ``master`` once ``master`` has at least 2 commits the branch has not
seen; a pipeline reading the triggered branch then runs every second commit.
Conditions (Pachyderm's ``src/server/pfs/server/master_trigger.go``):

- ``commits``: at least N new commits between the branch's head and the
  source head;
- ``size``: the source head's size minus the branch head's is at least this
  many bytes (``"100MB"``: decimal units, as Docker's go-units reads them;
  ``KiB``, ``MiB``... binary);
- ``rate_limit_spec``: a cron spec; fires once its next time after the
  branch head was finished has passed;
- ``all``: every condition given must hold (default: any one). A trigger
  with no condition fires only with ``all``;
- ``cron_spec``: instead of the above, the branch follows its source on
  each tick of this schedule.

The controller evaluates the triggers of the branches its pipelines read,
each round (:func:`fire`), following chains (a triggered branch that is the
source of another).
"""

from __future__ import annotations

import datetime as dt
import re

from ..errors import InvalidArgument, PreconditionFailed
from .api import PFS
from .model import Branch, Commit, parse_time

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtTpP]?)(i?)[bB]?\s*$")
_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_size(text: str) -> int:
    """Bytes in a human size: ``1MB`` or ``1M`` = 10^6, ``1MiB`` = 2^20, a
    plain number is bytes. Raises InvalidArgument."""
    m = _SIZE.match(str(text))
    if not m:
        raise InvalidArgument(f"trigger size {text!r} is not a size such as 100MB or 1GiB")
    base = 1024 if m.group(3) else 1000
    return int(float(m.group(1)) * base ** _POWER[m.group(2).lower()])


def check(trigger: dict) -> None:
    """Raise InvalidArgument for a trigger whose fields do not parse."""
    from ..pps.cron import schedule
    if not trigger.get("branch"):
        raise InvalidArgument("trigger: branch is required")
    if trigger.get("size"):
        parse_size(trigger["size"])
    if int(trigger.get("commits") or 0) < 0:
        raise InvalidArgument("trigger: commits must be 0 or more")
    for field in ("rate_limit_spec", "cron_spec"):
        if trigger.get(field):
            schedule(trigger[field])


def _new_commits(pfs: PFS, repo: str, source: Commit, old_head: str | None) -> int:
    """Commits from ``source`` back to (not counting) ``old_head``."""
    count = 0
    at: Commit | None = source
    seen: set[str] = set()
    while at is not None and at.id != old_head and at.id not in seen:
        seen.add(at.id)
        count += 1
        at = pfs.inspect_commit(repo, at.parent) if at.parent else None
    return count


def fires(pfs: PFS, branch: Branch, source: Commit, now: dt.datetime) -> bool:
    """Whether ``branch``'s trigger moves it to ``source`` (the head of its
    trigger branch) at ``now``."""
    from ..pps.cron import schedule
    trigger = branch.trigger or {}
    old = pfs.inspect_commit(branch.repo, branch.head) if branch.head else None
    since = parse_time(old.finished) if old is not None and old.finished else None
    if trigger.get("cron_spec"):
        return since is None or schedule(trigger["cron_spec"])(since) <= now
    results = []
    if trigger.get("commits"):
        results.append(_new_commits(pfs, branch.repo, source, branch.head) >= int(trigger["commits"]))
    if trigger.get("size"):
        results.append(source.size_bytes - (old.size_bytes if old else 0) >= parse_size(trigger["size"]))
    if trigger.get("rate_limit_spec"):
        results.append(since is None or schedule(trigger["rate_limit_spec"])(since) <= now)
    if not results:
        return bool(trigger.get("all"))
    return all(results) if trigger.get("all") else any(results)


def fire(pfs: PFS, repo: str, now: dt.datetime | None = None) -> list[str]:
    """Move every triggered branch of ``repo`` whose trigger holds to its
    source's head, following chains; return the branches moved. Raises
    NotFound (no such repo)."""
    now = now or dt.datetime.now(dt.UTC)
    moved: list[str] = []
    for _ in range(16):  # a chain of triggered branches, one link per pass
        changed = False
        branches = {b.name: b for b in pfs.list_branches(repo)}  # the sources' heads too: no read each
        for branch in branches.values():
            source_branch = branches.get(branch.trigger["branch"]) if branch.trigger else None
            if source_branch is None or source_branch.head is None:
                continue  # not triggered, or no source commit yet
            source = pfs.inspect_commit(repo, source_branch.head)
            if source.id == branch.head or source.finished is None or not fires(pfs, branch, source, now):
                continue
            try:
                pfs.move_branch(repo, branch.name, source.id, branch.head)
            except PreconditionFailed:
                continue  # moved by someone else meanwhile: evaluated again next round
            moved.append(branch.name)
            changed = True
        if not changed:
            break
    return moved
