"""Pipeline records and their spec versions. Part of :class:`~.api.PPS`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import TYPE_CHECKING

from ..errors import AlreadyExists, Conflict, InvalidArgument, NotFound, PreconditionFailed
from ..parallel import parallel
from ..pfs import PFS, triggers
from ..pfs.model import now
from ..store import ObjectStore
from . import cron, keys
from . import spec as specs
from .jobs import new_salt
from .model import JobInfo, PipelineInfo


class Pipelines:
    """Create, read, update and delete pipelines (see :class:`~.api.PPS`)."""

    store: ObjectStore
    pfs: PFS

    if TYPE_CHECKING:  # defined by the other parts of PPS
        def list_jobs(self, pipeline: str | None = None, limit: int | None = None) -> list[JobInfo]: ...
        def update_job(self, pipeline: str, job: str, **changes) -> JobInfo: ...
        def downstream(self, repo: str) -> list[PipelineInfo]: ...

    def _read_pipeline(self, name: str) -> tuple[PipelineInfo, str]:
        try:
            data, version = self.store.read_versioned(keys.pipeline(name))
        except NotFound:
            raise NotFound(f"pipeline {name} not found") from None
        return PipelineInfo.from_json(data), version

    def inspect_pipeline(self, name: str) -> PipelineInfo:
        """Raises NotFound, InvalidArgument (a bad name)."""
        return self._read_pipeline(name)[0]

    def list_pipelines(self) -> list[PipelineInfo]:
        """Every pipeline, by name."""
        found = [k for k in self.store.list(keys.PIPELINES) if keys.is_pipeline_record(k)]
        return sorted(parallel(lambda k: PipelineInfo.from_json(self.store.read(k)), found), key=lambda p: p.name)

    def pipeline_version(self, name: str, version: int) -> dict:
        """The spec of ``name`` at ``version``. Raises NotFound."""
        try:
            return json.loads(self.store.read(keys.pipeline_version(name, version)))
        except NotFound:
            pass
        info = self.inspect_pipeline(name)  # the current version's file may not be written yet
        if info.version != version:
            raise NotFound(f"pipeline {name} has no version {version}")
        return info.spec

    def _write_version(self, info: PipelineInfo) -> None:
        """Keep ``info``'s spec as its version's file (once; the record,
        swapped first, decides which spec a version is)."""
        with contextlib.suppress(PreconditionFailed):
            self.store.write(keys.pipeline_version(info.name, info.version), json.dumps(info.spec).encode(),
                             if_absent=True)

    def pipelines_using(self, repo: str) -> list[str]:
        """Names of pipelines that read ``repo``."""
        return [p.name for p in self.list_pipelines() if any(i["repo"] == repo for i in p.inputs)]

    def _check_inputs(self, spec: dict, update: bool) -> None:
        name = spec["pipeline"]["name"]
        # Only an update can close a cycle: a new pipeline's output repo does
        # not exist yet, so nothing reads it.
        fed = {name} | ({p.name for p in self.downstream(name)} if update else set())
        for pfs in specs.pfs_inputs(spec["input"]):
            if pfs["repo"] in fed:  # as Pachyderm refuses it: no job could ever start
                raise InvalidArgument(f"pipeline {name} cannot read {pfs['repo']}: {pfs['repo']} is computed from "
                                      f"{name}'s output, which would make a cycle")
            # A glob that matches nothing yet is no error: as in Pachyderm, the
            # pipeline's jobs have no datums until the data comes.
            self.pfs.inspect_repo(pfs["repo"])

    def create_pipeline(self, spec: dict, update: bool = False, reprocess: bool = False) -> PipelineInfo:
        """Create (or with ``update``, replace) a pipeline from a validated spec,
        creating its output repo. Checks input repos exist first, so a bad
        spec creates nothing. Raises AlreadyExists, NotFound, InvalidArgument."""
        name = spec["pipeline"]["name"]
        for c in cron.cron_inputs(spec["input"]):  # the repo its ticks are committed to
            self.pfs.create_repo(c["repo"], f"cron input {c['name']} of pipeline {name}", exist_ok=True)
        self._check_inputs(spec, update)
        for pfs in specs.pfs_inputs(spec["input"]):  # the branch a trigger moves
            if pfs.get("trigger"):
                self.pfs.set_trigger(pfs["repo"], pfs["branch"], pfs["trigger"])
                triggers.fire(self.pfs, pfs["repo"])
        stamp = now()
        if not update:
            if self.store.exists(keys.pipeline(name)):
                raise AlreadyExists(f"pipeline {name} already exists; use update-pipeline")
            try:
                self.pfs.inspect_repo(name)
                raise AlreadyExists(f"repo {name} already exists; a pipeline's output repo takes its name")
            except NotFound:
                pass
            info = PipelineInfo(name, 1, spec, "running", stamp, stamp, "", specs.transform_hash(spec))
            # Job pointers left by a pipeline of this name deleted halfway
            # would name its jobs (pointers are rebuilt from the records).
            self.store.delete(keys.job_pointers(name))
            # The create-only record decides which of racing creators made the
            # pipeline; only that one writes version 1's file.
            try:
                self.store.write(keys.pipeline(name), info.to_json(), if_absent=True)
            except PreconditionFailed:
                raise AlreadyExists(f"pipeline {name} already exists; use update-pipeline") from None
            self._write_version(info)
            self.pfs.create_repo(name, f"Output repo for pipeline {name}.", exist_ok=True)
            return info
        self.pfs.create_repo(name, f"Output repo for pipeline {name}.", exist_ok=True)
        while True:
            info, version = self._read_pipeline(name)
            self._write_version(info)  # in case its writer was killed before writing it
            info.version += 1
            info.spec, info.updated = spec, stamp
            info.transform_hash = specs.transform_hash(spec)
            if reprocess:
                info.salt = new_salt(info.salt)
            try:
                self.store.write(keys.pipeline(name), info.to_json(), if_match=version)
            except PreconditionFailed:
                continue
            self._write_version(info)
            return info

    def set_pipeline_state(self, name: str, state: str) -> PipelineInfo:
        """``running`` (start-pipeline) or ``paused`` (stop-pipeline)."""
        return self.change_pipeline(name, state=state)

    def change_pipeline(self, name: str, **changes) -> PipelineInfo:
        """Compare-and-swap ``changes`` (PipelineInfo fields other than the
        spec and its version) into pipeline ``name``'s record. Raises
        NotFound."""
        while True:
            info, version = self._read_pipeline(name)
            info = dataclasses.replace(info, updated=now(), **changes)
            try:
                self.store.write(keys.pipeline(name), info.to_json(), if_match=version)
                return info
            except PreconditionFailed:
                continue

    def delete_pipeline(self, name: str, keep_repo: bool = False) -> None:
        """Delete a pipeline, its jobs and (unless ``keep_repo``) its output
        repo. Refuses while another pipeline reads its output. Raises NotFound, Conflict."""
        self.inspect_pipeline(name)
        users = [p for p in self.pipelines_using(name) if p != name]
        if users and not keep_repo:
            raise Conflict(f"pipeline(s) {', '.join(users)} read the output of {name}; delete them first")
        for job in self.list_jobs(name):
            if not job.done:
                self.update_job(job.pipeline, job.id, state="killed", reason="pipeline deleted")
        self.store.delete(keys.pipeline(name))
        for prefix in (keys.pipeline_prefix(name), keys.jobs(name), keys.job_data_prefix(name)):
            parallel(self.store.delete, list(self.store.list(prefix)))
        if not keep_repo:
            with contextlib.suppress(NotFound):
                self.pfs.delete_repo(name)
