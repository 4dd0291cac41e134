"""The client shared by the CLI commands, opened on first use."""

from __future__ import annotations

import functools
import os

import click

from ..client import Client, address
from ..pfs import names
from ..store import open_store


class Context:
    """Holds the store URL; opens the store and its :class:`Client` on first
    use, or a :class:`RemoteClient` when the URL (or ``$PIPECTL_ADDRESS``)
    names a pipectl server (``http(s)://``; token from ``$PIPECTL_TOKEN``)."""

    def __init__(self, store_url: str | None, project: str = names.DEFAULT_PROJECT):
        self.store_url, self.project = store_url, project

    def qualify(self, name: str) -> str:
        """A repo or pipeline name given on the command line, in ``--project``."""
        return names.qualify(self.project, name)

    def owns(self, name: str) -> bool:
        """Whether repo or pipeline ``name`` is in ``--project``."""
        return names.project_of(name) == self.project

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


class QualifiedName(click.ParamType):
    """A repo or pipeline name, put in the ``--project`` given (unless it
    names its project itself, ``PROJECT/NAME``)."""

    name = "name"

    def convert(self, value, param, ctx):
        root = ctx.find_root() if ctx else None
        return root.obj.qualify(value) if root is not None and isinstance(root.obj, Context) else value


NAME = QualifiedName()
"""The click type of every repo and pipeline argument and option."""
