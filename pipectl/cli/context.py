"""The client shared by the CLI commands, opened on first use."""

from __future__ import annotations

import functools

import click

from ..client import Client
from ..store import open_store


class Context:
    """Holds the store URL; opens the store and its :class:`Client` on first use."""

    def __init__(self, store_url: str | None):
        self.store_url = store_url

    @functools.cached_property
    def client(self) -> Client:
        return Client(open_store(self.store_url))


def current() -> Context:
    """The running command's :class:`Context`."""
    return click.get_current_context().obj
