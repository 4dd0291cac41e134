"""Terminal output: aligned tables, ``--raw`` JSON, human units and times."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import click

from ..pfs.model import parse_time

raw_option = click.option("--raw", is_flag=True, help="Print JSON instead of a table.")
"""The ``--raw`` flag of every listing and inspecting command."""
all_projects_option = click.option("-A", "--all-projects", is_flag=True,
                                   help="List those of every project, not only --project's.")
"""The ``--all-projects`` flag of the listings of repos, pipelines and jobs."""


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print rows as columns aligned like pachctl's (tab-writer style)."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [list(headers)] + rows)
    click.echo("\n".join(lines))


def raw(value: Any) -> None:
    """Print ``value`` as indented JSON (the ``--raw`` form of every command)."""
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def size(n: int | None) -> str:
    """Bytes in pachctl's style: ``0B``, ``4.148KiB``, ``1.5GiB``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n}B" if unit == "B" else f"{value:.4g}{unit}"
        value /= 1024
    return f"{n}B"


def ago(timestamp: str | None) -> str:
    """``2 minutes ago`` for an ISO timestamp (``-`` for None)."""
    if not timestamp:
        return "-"
    seconds = (dt.datetime.now(dt.UTC) - parse_time(timestamp)).total_seconds()
    for unit, span in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= span:
            count = int(seconds // span)
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    if seconds < 1:
        return "Less than a second ago"
    return f"{int(seconds)} second{'s' if int(seconds) > 1 else ''} ago"


def duration(seconds: float | None) -> str:
    """``Less than a second``, ``3 seconds``, ``2 minutes``... (``-`` if None)."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return "Less than a second"
    for unit, span in (("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= span:
            count = int(seconds // span)
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return "-"


def is_terminal() -> bool:
    """Whether stdout is an interactive terminal (progress bars show only then)."""
    return sys.stdout.isatty()
