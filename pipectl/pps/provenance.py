"""Provenance queries: which pipelines a repo feeds, and waiting for the
output commits built on a commit (flush-commit). Part of :class:`~.api.PPS`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..errors import Conflict, NotFound
from ..pfs import PFS
from ..pfs.model import Provenance as ProvenanceRecord
from .model import JobInfo, PipelineInfo


class Provenance:
    """Downstream pipelines, output provenance and flush-commit (see :class:`~.api.PPS`)."""

    def input_provenance(self, inputs: list[dict]) -> list[dict]:
        """The provenance of an output computed from ``inputs`` (a job's
        ``[{name, repo, branch, commit}]``): each input commit, with the
        spec version that made it if a pipeline did, and its own
        provenance, transitively; each commit once (Provenance dicts)."""
        seen: dict[tuple, dict] = {}
        for i in inputs:
            commit = self.pfs.inspect_commit(i["repo"], i["commit"])
            entries = [ProvenanceRecord(i["repo"], i["branch"], commit.id, commit.pipeline_version).to_dict()]
            for p in entries + commit.provenance:
                seen.setdefault((p["repo"], p["commit"]), p)
        return list(seen.values())

    pfs: PFS

    if TYPE_CHECKING:  # defined by the other parts of PPS
        def list_pipelines(self) -> list[PipelineInfo]: ...
        def list_jobs(self, pipeline: str | None = None, limit: int | None = None) -> list[JobInfo]: ...

    def downstream(self, repo: str) -> list[PipelineInfo]:
        """Pipelines fed, directly or transitively, by ``repo``, upstream first."""
        pipelines = self.list_pipelines()
        order, frontier = [], [repo]
        while frontier:
            current = frontier.pop(0)
            for p in pipelines:
                if p not in order and any(i["repo"] == current for i in p.inputs):
                    order.append(p)
                    frontier.append(p.name)
        return order

    def flush_commit(self, repo: str, commit: str, timeout: float | None = None,
                     interval: float = 0.2) -> list:
        """Wait until every downstream pipeline has an output commit whose
        provenance includes ``repo@commit``, or a later commit built on it
        (the controller runs jobs on the newest input heads, so a commit
        superseded before a job ran is processed by its successor's job);
        return those commits. Raises Conflict if a job on that data fails,
        NotFound, or TimeoutError.

        Polls cheaply (one read per pending output branch; its commits are
        read only when its head moves; failed jobs are looked for once a
        second), which matters on S3."""
        target = self.pfs.inspect_commit(repo, commit)
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = {p.name: p for p in self.downstream(repo)}
        found: list = []
        covers: dict[str, bool] = {}
        heads: dict[str, str] = {}
        failures_checked = 0.0

        def covered(provenance: list[dict]) -> bool:
            return any(x["repo"] == repo and self._descends_from(repo, x["commit"], target, covers)
                       for x in provenance)

        while pending:
            for name, p in list(pending.items()):
                try:
                    head = self.pfs.inspect_branch(name, p.output_branch).head
                except NotFound:
                    head = None
                if head is None or heads.get(name) == head:
                    continue
                heads[name] = head
                # Output commits newer than the target, newest first.
                c = self.pfs.inspect_commit(name, head)
                for _ in range(100):
                    if covered(c.provenance):
                        found.append(c)
                        del pending[name]
                        break
                    if c.parent is None or c.started < target.started:
                        break
                    c = self.pfs.inspect_commit(name, c.parent)
            if pending and time.monotonic() - failures_checked >= 1.0:
                failures_checked = time.monotonic()
                for name in pending:
                    # The newest job on that data decides: failed or killed
                    # ends the wait (a later job, e.g. after update-pipeline,
                    # supersedes an earlier failure).
                    for job in self.list_jobs(name, limit=5):
                        if self._job_depends_on(job, covered):
                            if job.state in ("failure", "killed"):
                                reason = (job.reason or "").strip().splitlines()[:1] or ["no reason recorded"]
                                raise Conflict(f"job {job.id} of pipeline {name} ended in {job.state}: "
                                               f"{reason[0]} (see inspect-job {job.id})")
                            break
            if pending:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"flush-commit timed out waiting for {', '.join(pending)}")
                time.sleep(interval)
        return found

    def _descends_from(self, repo: str, commit_id: str, ancestor, cache: dict) -> bool:
        """Whether ``repo@commit_id`` is the commit ``ancestor`` or one built on
        it (found by walking parents back to ``ancestor``'s start time).
        ``cache`` remembers answers across calls (commits are immutable)."""
        if commit_id not in cache:
            found, cid = False, commit_id
            cid_: str | None = cid
            walked: set[str] = set()
            while cid_ and cid_ not in walked:  # a looping history (a damaged store) ends the walk
                cid = cid_
                walked.add(cid)
                if cid == ancestor.id:
                    found = True
                    break
                try:
                    c = self.pfs.inspect_commit(repo, cid)
                except NotFound:
                    break
                if c.started < ancestor.started:
                    break
                cid_ = c.parent
            cache[commit_id] = found
        return cache[commit_id]

    def _job_depends_on(self, job: JobInfo, covered) -> bool:
        """Whether ``job`` ran on data ``covered(provenance)`` accepts."""
        for i in job.inputs:
            if covered([i]):
                return True
            try:
                c = self.pfs.inspect_commit(i["repo"], i["commit"])
            except NotFound:
                continue
            if covered(c.provenance):
                return True
        return False
