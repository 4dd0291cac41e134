"""Cron inputs: Pachyderm's ``input.cron``, a repo that gets a commit on a
schedule.

A cron input ``{"cron": {"name": "tick", "spec": "@every 60s"}}`` reads the
repo ``<pipeline>_<name>`` (or ``repo``) like ``{"pfs": {"repo": ...,
"glob": "/*", "name": <name>}}``. While a controller runs, each tick of the
schedule commits one empty file to its ``master`` branch, named after the
tick's time in RFC 3339 (``2026-12-03T14:00:00Z``), as Pachyderm's does;
with ``overwrite`` the commit holds that file alone (one datum), otherwise
the files accumulate (one new datum per tick, the older ones skipped as
processed). Ticks missed while no controller ran are made up one commit at a
time from the newest tick file (or ``start``). ``pipectl run-cron`` makes a
tick now.

``spec``: five-field cron syntax (minute hour day month weekday, by
croniter), the descriptors ``@hourly`` ... ``@yearly``, ``@every
<duration>`` (whole seconds, at least 1) or ``@never``.
Source of the semantics: Pachyderm's ``src/server/pps/server/monitor.go``.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
from collections.abc import Callable, Iterator

from ..errors import InvalidArgument, NotFound
from ..pfs import PFS
from ..pfs.tree import Tree

log = logging.getLogger("pipectl.cron")

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def repo_of(pipeline: str, cron: dict) -> str:
    """The cron repo: ``cron.repo``, else ``<pipeline>_<name>`` (Pachyderm's default)."""
    return cron.get("repo") or f"{pipeline}_{cron['name']}"


def as_pfs(cron: dict) -> dict:
    """The pfs input a (validated) cron input reads as."""
    return {"repo": cron["repo"], "branch": "master", "glob": "/*", "name": cron["name"]}


def schedule(spec: str) -> Callable[[dt.datetime], dt.datetime]:
    """The function giving the tick after a time (UTC) for ``spec``.
    Raises InvalidArgument for a spec that does not parse."""
    from .spec import parse_duration
    text = spec.strip()
    if text == "@never":
        return lambda after: dt.datetime.max.replace(tzinfo=dt.UTC)
    if text.startswith("@every"):
        duration = text[len("@every"):].strip()
        if not re.fullmatch(r"([0-9]+(\.[0-9]+)?(ms|s|m|h))+", duration):
            raise InvalidArgument(f"cron spec {spec!r}: @every needs a duration such as 30s or 5m")
        seconds = max(1, int(parse_duration(duration) or 0))  # whole seconds, as Pachyderm
        return lambda after: after + dt.timedelta(seconds=seconds)
    from croniter import croniter
    if not croniter.is_valid(text):
        raise InvalidArgument(f"cron spec {spec!r} does not parse (five fields: minute hour day month weekday)")
    return lambda after: croniter(text, after).get_next(dt.datetime)


def parse_time(text: str) -> dt.datetime:
    """An RFC 3339 time (``Z`` or an offset) as an aware UTC datetime.
    Raises InvalidArgument."""
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError:
        raise InvalidArgument(f"cron start {text!r} is not an RFC 3339 time") from None


def cron_inputs(node: dict) -> Iterator[dict]:
    """Every cron input of an input tree."""
    if "cron" in node:
        yield node["cron"]
    for kind in ("cross", "union", "join", "group"):
        for child in node.get(kind, []):
            yield from cron_inputs(child)


def latest_tick(pfs: PFS, cron: dict) -> dt.datetime:
    """The newest tick committed to the cron repo, or ``start`` if later."""
    start = parse_time(cron["start"])
    try:
        names = [path.lstrip("/") for path, _ in pfs.iter_files(cron["repo"], "master")]
    except NotFound:
        return start
    ticks = []
    for name in names:
        try:
            ticks.append(parse_time(name))
        except InvalidArgument:
            continue
    return max([start, *ticks])


def commit_tick(pfs: PFS, cron: dict, at: dt.datetime) -> None:
    """Commit the tick file for time ``at`` to the cron repo's master (alone
    there with ``overwrite``)."""
    path = "/" + at.astimezone(dt.UTC).strftime(TIME_FORMAT)
    entries, _ = pfs.upload(cron["repo"], "master", [(path, io.BytesIO(b""))])
    pfs.modify(cron["repo"], "master", lambda tree: (Tree({}) if cron.get("overwrite") else tree).with_changes(entries))
    log.info("cron %s: tick %s committed to %s", cron["name"], path.lstrip("/"), cron["repo"])


def tick_due(pfs: PFS, cron: dict, now: dt.datetime) -> bool:
    """Commit the next tick of ``cron`` if it is due at ``now``; return
    whether one was committed (call again to make up further missed ones)."""
    due = schedule(cron["spec"])(latest_tick(pfs, cron))
    if due > now:
        return False
    commit_tick(pfs, cron, due)
    return True
