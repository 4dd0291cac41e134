"""The operations layer: every call a user makes, with every rule a user
relies on (refusing to delete a repo a pipeline reads, a pipeline's last job
state, existence checks), in one place that the CLI and, later, the HTTP API
both call.

:class:`Client` is assembled from one part per area (``data.py``,
``pipelines.py``), over a store opened directly (the embedded mode).
"""

from __future__ import annotations

import os

from ..pfs import PFS
from ..pps import PPS
from ..store import ObjectStore, open_store
from .data import DataOps, RepoSummary
from .pipelines import PipelineOps, PipelineSummary

__all__ = ["Client", "RepoSummary", "PipelineSummary", "address"]


def address(store_url: str | None) -> str | None:
    """The pipectl server to talk to (through
    :class:`~pipectl.client.remote.RemoteClient`) rather than a store:
    ``store_url`` if it is ``http(s)://``, else ``$PIPECTL_ADDRESS`` when no
    store is named; None for a store."""
    if store_url:
        return store_url if store_url.startswith(("http://", "https://")) else None
    return os.environ.get("PIPECTL_ADDRESS") or None


class Client(DataOps, PipelineOps):
    """Operations on one store. ``pfs`` and ``pps`` share one tree cache."""

    def __init__(self, store: ObjectStore):
        self.store = store
        self.pfs = PFS(store)
        self.pps = PPS(store, self.pfs)

    @classmethod
    def open(cls, url: str | None = None) -> Client:
        """A client on the store named by ``url`` (see :func:`pipectl.store.open_store`)."""
        return cls(open_store(url))
