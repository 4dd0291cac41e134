"""The operations layer: every call a user makes, with every rule a user
relies on (refusing to delete a repo a pipeline reads, a pipeline's last job
state, existence checks), in one place that the CLI and, later, the HTTP API
both call.

:class:`Client` is assembled from one part per area (``data.py``,
``pipelines.py``), over a store opened directly (the embedded mode).
"""

from __future__ import annotations

from ..pfs import PFS
from ..pps import PPS
from ..store import ObjectStore, open_store
from .data import DataOps, RepoSummary
from .pipelines import PipelineOps, PipelineSummary

__all__ = ["Client", "RepoSummary", "PipelineSummary"]


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
