"""The pipeline system's records on one store, behind one façade.

:class:`PPS` is assembled from one part per concern (as DVC assembles its
``Repo`` from one module per verb): pipeline records and spec versions
(``pipelines.py``), job records (``jobs.py``), the data a job keeps beside
its record (``jobdata.py``) and provenance queries (``provenance.py``).
Every store key they use is built in ``keys.py``.
"""

from __future__ import annotations

from ..pfs import PFS
from ..store import ObjectStore
from .jobdata import JobData
from .jobs import Jobs
from .pipelines import Pipelines
from .provenance import Provenance


class PPS(Pipelines, Jobs, JobData, Provenance):
    """Pipeline, job and datum records on one store; ``pfs`` is the file
    system on the same store (made if not given)."""

    def __init__(self, store: ObjectStore, pfs: PFS | None = None):
        self.store = store
        self.pfs = pfs or PFS(store)
        self._written_jobs: dict[str, tuple[str, bytes]] = {}
        """Job record key -> (version, bytes) as this object last wrote it:
        :meth:`update_job` tries its compare-and-swap on that first, saving
        a read per update while no one else changes the record."""
