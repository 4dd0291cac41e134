"""The client shared by the CLI commands, opened on first use."""

from __future__ import annotations

import functools
import os

import click

from ..client import Client, address
from ..store import open_store


class Context:
    """Holds the store URL; opens the store and its :class:`Client` on first
    use, or a :class:`RemoteClient` when the URL (or ``$PIPECTL_ADDRESS``)
    names a pipectl server (``http(s)://``; token from ``$PIPECTL_TOKEN``)."""

    def __init__(self, store_url: str | None):
        self.store_url = store_url

    @functools.cached_property
    def client(self) -> Client:
        server = address(self.store_url)
        if server:  # imported only then: requests costs every other CLI call 0.14 s
            from ..client.remote import RemoteClient
            return RemoteClient(server, os.environ.get("PIPECTL_TOKEN"))  # type: ignore[return-value]
        return Client(open_store(self.store_url))


def current() -> Context:
    """The running command's :class:`Context`."""
    return click.get_current_context().obj
