"""Every store key of the pipeline system, built in one place.

Layout (beside the versioned file system's, see ``pipectl/pfs/keys.py``)::

    pipelines/<name>/info.json                   PipelineInfo: current spec, version, state
                                                 (compare-and-swap)
    pipelines/<name>/versions/<n>.json           each spec version, created once
    pipelines/<name>/job-pointers.json           its newest jobs, its unfinished jobs and the newest
                                                 finished job with a datum index (compare-and-swap; a
                                                 cache of the job records, rebuilt from them when
                                                 missing: see pointers.py), so that a controller step
                                                 and the newest jobs cost reads a pipeline, however
                                                 long the history
    pipelines/<name>/newest-job.json             written by versions before job-pointers.json; removed
                                                 when that is built
    jobs/<pipeline>/<job>.json                   JobInfo (compare-and-swap; never changed once finished)
    job-data/<pipeline>/<job>/plan.json          the job's datums (inputs, cache key; file lists only for
                                                 those it runs); complete once the job record counts them
    job-data/<pipeline>/<job>/todo.json          the datums it runs, with their file lists: what the
                                                 workers share out
    job-data/<pipeline>/<job>/results/<b>.json   batches of DatumResult written by workers, each once
    job-data/<pipeline>/<job>/results/controller-skipped.json
                                                 the datums the job skips, by reference (SkippedDatums:
                                                 the previous job's datum index, whose outputs they reuse)
    job-data/<pipeline>/<job>/worker-logs/<w>.log
                                                 logs of worker processes that vanish with them (pods)
    datum-index/<hash>                           a finished job's successful datums, cache key ->
                                                 outputs; content addressed, stored once
    leases/controller.json                       the controller lease: holder, fencing token
                                                 (compare-and-swap; see lease.py)

A job's id (32 hex digits) is derived from its pipeline, spec version,
reprocess salt and input commits, so a controller creating the same job
twice (say after a crash) creates it once.

As in ``pfs/keys.py``, every name that goes into a key is checked here;
raises InvalidArgument for a bad one.
"""

from __future__ import annotations

import re

from ..errors import InvalidArgument
from ..pfs import names
from ..pfs.keys import check_hash, checked

PIPELINES = "pipelines/"
JOBS = "jobs/"
SKIPPED_BATCH = "controller-skipped"
"""Name of the result batch in which the controller records the datums a job
skips (processed by an earlier job)."""

_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # batch and worker names


def check_job_id(job: str) -> str:
    """Validate a job id (32 lowercase hex digits); return it. Raises InvalidArgument."""
    return checked(names.ID, "job id", job)


def _part(kind: str, name: str) -> str:
    return checked(_PART, f"{kind} name", name)


def pipeline_prefix(name: str) -> str:
    """Prefix of every record of pipeline ``name``."""
    return f"{PIPELINES}{names.key_part('pipeline', name)}/"


def pipeline(name: str) -> str:
    """The PipelineInfo record of ``name``."""
    return pipeline_prefix(name) + "info.json"


def pipeline_version(name: str, version: int) -> str:
    """Spec version ``version`` (a positive int) of pipeline ``name``."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidArgument(f"invalid pipeline version {version!r}")
    return f"{pipeline_prefix(name)}versions/{version}.json"


def job_pointers(name: str) -> str:
    """Pipeline ``name``'s job pointers (see :mod:`.pointers`)."""
    return pipeline_prefix(name) + "job-pointers.json"


def legacy_newest_job(name: str) -> str:
    """The newest-job pointer of versions before :func:`job_pointers`
    (``{id, created}``), removed when those are built."""
    return pipeline_prefix(name) + "newest-job.json"


def is_pipeline_record(key: str) -> bool:
    """Whether a key listed under :data:`PIPELINES` is a PipelineInfo."""
    return key.endswith("/info.json") and key.count("/") == 2


def jobs(pipeline: str | None = None) -> str:
    """Prefix of the job records of ``pipeline`` (of every pipeline if None)."""
    return f"{JOBS}{names.key_part('pipeline', pipeline)}/" if pipeline else JOBS


def job(pipeline: str, job_id: str) -> str:
    """The JobInfo record of ``job_id``."""
    return f"{jobs(pipeline)}{check_job_id(job_id)}.json"


def is_job_record(key: str) -> bool:
    """Whether a key listed under :func:`jobs` is a JobInfo."""
    return key.endswith(".json") and key.count("/") == 2


def job_data_prefix(pipeline: str) -> str:
    """Prefix of the data of every job of ``pipeline``."""
    return f"job-data/{names.key_part('pipeline', pipeline)}/"


def job_data(pipeline: str, job_id: str) -> str:
    """Prefix of the data of one job (plan, todo, results, worker logs)."""
    return f"{job_data_prefix(pipeline)}{check_job_id(job_id)}/"


def plan(pipeline: str, job_id: str) -> str:
    """A job's plan: every datum, in order."""
    return job_data(pipeline, job_id) + "plan.json"


def todo(pipeline: str, job_id: str) -> str:
    """The datums a job runs, with their file lists."""
    return job_data(pipeline, job_id) + "todo.json"


def results(pipeline: str, job_id: str) -> str:
    """Prefix of a job's result batches."""
    return job_data(pipeline, job_id) + "results/"


def result_batch(pipeline: str, job_id: str, batch: str) -> str:
    """Result batch ``batch`` (letters, digits, ``_.-``) of a job."""
    return f"{results(pipeline, job_id)}{_part('result batch', batch)}.json"


def skipped(pipeline: str, job_id: str) -> str:
    """The batch that records a job's skipped datums by reference."""
    return result_batch(pipeline, job_id, SKIPPED_BATCH)


def worker_logs(pipeline: str, job_id: str) -> str:
    """Prefix of a job's kept worker logs."""
    return job_data(pipeline, job_id) + "worker-logs/"


def worker_log(pipeline: str, job_id: str, worker: str) -> str:
    """The kept log of worker ``worker`` (e.g. a pod name)."""
    return f"{worker_logs(pipeline, job_id)}{_part('worker', worker)}.log"


def controller_lease() -> str:
    """The lease the one active controller of a store holds."""
    return "leases/controller.json"


def datum_index(digest: str) -> str:
    """The datum index stored under content hash ``digest``."""
    return f"datum-index/{check_hash(digest)}"
