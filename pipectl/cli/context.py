"""Lazily opened store and APIs shared by the CLI commands."""

from __future__ import annotations

import functools

import click

from ..store import ObjectStore, open_store


class Context:
    """Holds the store URL; opens the store and APIs on first use."""

    def __init__(self, store_url: str | None):
        self.store_url = store_url

    @functools.cached_property
    def store(self) -> ObjectStore:
        return open_store(self.store_url)

    @functools.cached_property
    def pfs(self):
        from ..pfs import PFS
        return PFS(self.store)

    @functools.cached_property
    def pps(self):
        from ..pps import PPS
        return PPS(self.store)


def current() -> Context:
    """The running command's :class:`Context`."""
    return click.get_current_context().obj
