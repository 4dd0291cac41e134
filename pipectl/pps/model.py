"""Records kept for pipelines, jobs and datums.

Where each is stored: ``keys.py``.
"""

from __future__ import annotations

import dataclasses

from ..pfs.model import Record

JOB_STATES = ("created", "running", "egressing", "success", "failure", "killed")
DONE = ("success", "failure", "killed")


@dataclasses.dataclass
class PipelineInfo(Record):
    """A pipeline: its current ``spec`` (version ``version``), ``state``
    (``running`` or ``paused``) and reprocess ``salt``."""

    name: str
    version: int
    spec: dict
    state: str
    created: str
    updated: str
    salt: str = ""
    transform_hash: str = ""

    @property
    def inputs(self) -> list[dict]:
        from .spec import pfs_inputs
        return list(pfs_inputs(self.spec["input"]))

    @property
    def output_branch(self) -> str:
        return self.spec.get("output_branch", "master")


@dataclasses.dataclass
class JobInfo(Record):
    """One run of a pipeline over one set of input commits.

    ``inputs``: ``[{name, repo, branch, commit}]``. Counts are datums, as
    Pachyderm counts them: ``datums_recovered`` failed but were rescued by
    the spec's ``err_cmd`` (Pachyderm's meaning), while ``datums_retried`` succeeded after more than one of
    their ``datum_tries``. ``bytes_downloaded``/``bytes_uploaded`` are
    bytes moved by workers.
    """

    id: str
    pipeline: str
    pipeline_version: int
    salt: str
    transform_hash: str
    inputs: list[dict]
    output_commit: str
    state: str = "created"
    created: str = ""
    started: str | None = None
    finished: str | None = None
    restarts: int = 0
    datums_total: int = 0
    datums_processed: int = 0
    datums_skipped: int = 0
    datums_failed: int = 0
    datums_recovered: int = 0
    datums_retried: int = 0
    bytes_downloaded: int = 0
    bytes_uploaded: int = 0
    reason: str = ""
    datum_index: str | None = None
    executor: str = ""
    output_parent: str | None = None
    output_parent_set: bool = False
    """``output_parent``: the head of the output branch when the job was
    planned (None: no commit yet), set once with ``output_parent_set``. The
    output commit lands only on that head (fenced), so a controller that
    stalled and lost the job to another never moves the branch backwards.
    Records from before this field have ``output_parent_set`` False."""
    claim: int = 0
    """The fencing token (see ``lease.py``) of the controller running the
    job; a controller lands the output only while the job carries its own."""
    egress: dict | None = None
    """With the spec's ``egress``: ``{"url", "files", "bytes"}`` copied there
    (see :mod:`.egress`)."""
    service: bool = False
    """A service pipeline's job: ``running`` while its worker serves its one
    datum (see :mod:`.longlived`), never run to an end by the controller."""

    @property
    def done(self) -> bool:
        return self.state in DONE


@dataclasses.dataclass
class DatumResult(Record):
    """What happened to one datum in one job.

    ``state``: ``success``, ``skipped`` (outputs reused from an earlier job),
    ``failed``, or ``recovered`` (failed, then ``err_cmd`` succeeded: no
    outputs, not reused by later jobs). ``outputs`` maps paths under /pfs/out to ``[size,
    [objects]]``. ``log`` holds the tail of the user code's output.
    """

    id: str
    cache_key: str
    state: str
    attempts: int = 0
    outputs: dict = dataclasses.field(default_factory=dict)
    started: str | None = None
    finished: str | None = None
    seconds: float = 0.0
    bytes_downloaded: int = 0
    bytes_uploaded: int = 0
    log: str = ""
    worker: str = ""
    error: str = ""


@dataclasses.dataclass
class SkippedDatums(Record):
    """The datums a job skips, recorded by reference instead of one result
    each: every entry of the job's plan whose cache key is in datum index
    ``datum_index`` (the previous job's) reuses that index's outputs, as of
    ``at`` (ISO time). A few hundred bytes, where results copied out of the
    index took 540 bytes a datum (5.4 MB for 10,000, written again by every
    incremental job)."""

    datum_index: str
    at: str

    def results(self, plan: list[dict], index: dict) -> list[DatumResult]:
        """The skipped datums' results: ``plan`` as :meth:`PPS.plan` gives it,
        ``index`` the parsed datum index (cache key -> outputs)."""
        return [DatumResult(d["id"], d["cache_key"], "skipped", outputs=index[d["cache_key"]], started=self.at,
                            finished=self.at, worker="controller") for d in plan if d["cache_key"] in index]
