"""Loaded model versions and the slot that holds the current one.

A :class:`ModelVersion` is one model commit, downloaded and loaded by the
handler. A :class:`ModelSlot` holds the version the server answers with;
:meth:`ModelSlot.refresh` (called by the server's poll task, never
concurrently with itself) reads the branch head and, when it moved to a new
finished commit, loads that commit and swaps it in with one reference
assignment. A request reads ``slot.current`` once and uses that version to
the end, so a swap never fails or mixes a request; the old version's files
are deleted after the swap (its loaded model stays in memory for requests
still holding it).

A commit the handler fails to load is remembered and not retried until the
branch moves again; one whose download fails (the store is unreachable) is
retried at the next poll. Either way the previous version, if any, keeps
serving.

Any other finished commit of the repo can be asked for by id
(:meth:`ModelSlot.pinned`, KServe's and TorchServe's model version): it is
loaded on first use and kept among the :data:`PINNED` most recently used.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..errors import NotFound, PipectlError
from ..pfs import PFS, Commit, names
from ..pfs.model import now
from .errors import BadRequest, ModelNotFound, ModelUnavailable
from .handler import LoadFunction

log = logging.getLogger("pipectl.serving")

PINNED = 4
"""How many versions asked for by id (besides the branch head) stay loaded."""


@dataclasses.dataclass
class Prediction:
    """What a model answered for n rows: ``labels`` (n labels) and, when the
    model gives them, ``probabilities`` (n lists of len(classes) floats)."""

    labels: list
    probabilities: list[list[float]] | None = None


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    """One model commit, loaded.

    ``commit`` is the model commit (its id is the version), ``model`` the
    handler's object, ``directory`` where its files were downloaded,
    ``loaded_at`` an ISO time and ``load_seconds`` the download plus load
    time. ``features``/``classes`` are the model's, or None when it does not
    declare them.
    """

    commit: Commit
    model: Any
    directory: str
    loaded_at: str
    load_seconds: float
    features: tuple[str, ...] | None
    classes: tuple[str, ...] | None

    @property
    def id(self) -> str:
        return self.commit.id

    def predict(self, rows: Sequence[Sequence[float]]) -> Prediction:
        """Run the model on ``rows`` (n lists of floats). With probabilities,
        each label is the most probable class (one forward pass). Raises
        BadRequest when the model rejects the rows (its ValueError)."""
        try:
            if self.classes is not None:
                probabilities = _as_list(self.model.predict_proba(rows))
                labels = [self.classes[max(range(len(p)), key=p.__getitem__)] for p in probabilities]
                return Prediction(labels, probabilities)
            return Prediction(_as_list(self.model.predict(rows)))
        except ValueError as e:
            raise BadRequest(str(e)) from None

    def provenance(self) -> dict:
        """Where this model came from: its commit, the pipeline and spec
        version that produced it (None for a commit put by a user), the job,
        every upstream commit (``inputs``) and among them the source data
        commits (``data``: those not made by a pipeline)."""
        c = self.commit
        return {
            "repo": c.repo, "branch": c.branch, "commit": c.id,
            "pipeline": c.pipeline, "pipeline_version": c.pipeline_version, "job": c.job,
            "started": c.started, "finished": c.finished, "description": c.description,
            "inputs": c.provenance,
            "data": [p for p in c.provenance if p.get("pipeline_version") is None],
        }


def _as_list(values) -> list:
    """An array-like (numpy array or list) as nested Python lists."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _names(model: Any, attribute: str) -> tuple[str, ...] | None:
    value = getattr(model, attribute, None)
    return tuple(str(v) for v in value) if value is not None else None


class ModelSlot:
    """The model version a server answers with, refreshed from ``repo@branch``.

    ``name`` is the model name in URLs; ``load`` the handler's load function.
    Model files are downloaded under a private temporary directory, removed
    by :meth:`close`.
    """

    def __init__(self, pfs: PFS, repo: str, branch: str, name: str, load: LoadFunction):
        self.pfs, self.repo, self.branch, self.name = pfs, repo, branch, name
        self._load = load
        self.current: ModelVersion | None = None
        self.reason = f"no model loaded yet from branch {branch} of repo {repo}"
        self.last_error: dict | None = None
        self.loading: str | None = None  # the id of the head commit being loaded, while it loads
        self._workdir = tempfile.mkdtemp(prefix="pipectl-serve-")
        self._lock = threading.Lock()  # held by refresh and close
        self._pinned: collections.OrderedDict[str, ModelVersion] = collections.OrderedDict()  # by commit id, LRU
        self._pin_lock = threading.Lock()  # held while a pinned version loads
        self._closed = False
        self._last_warning = ""

    @property
    def url(self) -> str:
        """Where the model comes from, as ``pfs://repo@branch``."""
        return f"pfs://{self.repo}@{self.branch}"

    def require(self) -> ModelVersion:
        """The current version; raises ModelUnavailable (503) saying why there is none."""
        version = self.current
        if version is None:
            raise ModelUnavailable(f"model {self.name} is not available: {self.reason}")
        return version

    def pinned(self, version: str) -> ModelVersion:
        """Model commit ``version`` (an id) of the repo, loaded on first use
        (blocking: call it off the event loop) and kept among the
        :data:`PINNED` most recently asked for; the served head needs no
        load. Raises ModelNotFound (no such finished commit),
        ModelUnavailable (it cannot be downloaded or loaded)."""
        current = self.current
        if current is not None and current.id == version:
            return current
        with self._pin_lock:
            if version in self._pinned:
                self._pinned.move_to_end(version)
                return self._pinned[version]
            commit = None
            if names.is_commit_id(version):  # a branch or ^ would name a moving target
                with contextlib.suppress(NotFound):
                    commit = self.pfs.inspect_commit(self.repo, version)
            if commit is None:
                raise ModelNotFound(f"model {self.name} has no version {version}: not a commit of repo {self.repo}")
            if commit.is_open:
                raise ModelNotFound(f"model {self.name} version {version} is an open commit")
            loaded = self._fetch(commit)
            self._pinned[version] = loaded
            while len(self._pinned) > PINNED:
                _, evicted = self._pinned.popitem(last=False)  # requests holding it keep its model
                shutil.rmtree(evicted.directory, ignore_errors=True)
            return loaded

    def pinned_versions(self) -> list[str]:
        """The ids of the versions loaded by :meth:`pinned`, least recently used first."""
        return list(self._pinned)

    def held(self) -> list[ModelVersion]:
        """Every version loaded now: the head's and the pinned ones."""
        return ([self.current] if self.current is not None else []) + list(self._pinned.values())

    def refresh(self) -> bool:
        """Load the branch head if it is a new finished commit, and swap it in.
        Returns True when a new version was swapped in. Store errors and
        handler failures are logged and recorded (``reason``/``last_error``),
        never raised. Does nothing once :meth:`close` has run."""
        with self._lock:
            return False if self._closed else self._refresh()

    def _refresh(self) -> bool:
        head = self._new_head()
        if head is None:
            return False
        self.loading = head.id
        try:
            version = self._load_commit(head)
        finally:
            self.loading = None
        if version is None:
            return False
        previous, self.current = self.current, version  # the swap: one reference assignment
        self.last_error = None
        log.info("model %s: serving version %s (%s, loaded in %.2f s)", self.name, version.id,
                 self._origin(version.commit), version.load_seconds)
        if previous is not None:
            shutil.rmtree(previous.directory, ignore_errors=True)
        return True

    def close(self) -> None:
        """Delete every downloaded model file (waiting for a refresh under
        way to end); later refreshes do nothing."""
        with self._lock:
            self._closed = True
            shutil.rmtree(self._workdir, ignore_errors=True)

    # internals -----------------------------------------------------------
    def _new_head(self) -> Commit | None:
        """The branch head when it is a finished commit other than the one
        served and the one that last failed to load; else None."""
        try:
            head = self._head()
        except PipectlError as e:
            self._no_head(str(e))
            return None
        if head is None or (self.current is not None and self.current.id == head.id):
            return None
        if self.last_error is not None and self.last_error["commit"] == head.id:
            return None
        return head

    def _load_commit(self, commit: Commit) -> ModelVersion | None:
        """Download and load the head ``commit``; None (logged and recorded) when that fails."""
        try:
            return self._fetch(commit)
        except _DownloadFailed as e:  # the store or the disk: try again at the next poll
            self._no_head(f"{e} (will retry)")
        except ModelUnavailable as e:  # handler code: remembered, not retried
            log.error("%s", e)
            self.last_error = {"commit": commit.id, "error": str(e), "at": now()}
            if self.current is None:
                self.reason = str(e)
        return None

    def _fetch(self, commit: Commit) -> ModelVersion:
        """Download and load ``commit``. Raises _DownloadFailed (store or
        disk), ModelUnavailable (the handler failed)."""
        started = time.perf_counter()
        directory = tempfile.mkdtemp(prefix=f"{commit.id}-", dir=self._workdir)
        try:
            self._download(commit, directory)
        except (PipectlError, OSError) as e:
            shutil.rmtree(directory, ignore_errors=True)
            raise _DownloadFailed(f"cannot download model commit {commit.id}: {e}") from None
        try:
            model = self._load(directory)
        except Exception as e:  # noqa: BLE001  (handler code)
            shutil.rmtree(directory, ignore_errors=True)
            raise ModelUnavailable(f"cannot load model commit {commit.id}: {type(e).__name__}: {e}") from None
        return ModelVersion(commit, model, directory, now(), time.perf_counter() - started,
                            _names(model, "features"),
                            _names(model, "classes") if hasattr(model, "predict_proba") else None)

    def _head(self) -> Commit | None:
        """The branch's head commit when it is finished, else None (with
        ``reason`` set when nothing is being served)."""
        try:
            branch = self.pfs.inspect_branch(self.repo, self.branch)
        except NotFound as e:
            self._no_head(f"{e}; waiting for it")
            return None
        if branch.head is None:
            self._no_head(f"branch {self.branch} of repo {self.repo} has no commits yet")
            return None
        commit = self.pfs.inspect_commit(self.repo, branch.head)
        if commit.is_open:
            self._no_head(f"head commit {commit.id} of {self.repo}@{self.branch} is still open")
            return None
        return commit

    def _no_head(self, reason: str) -> None:
        """Log ``reason`` (once) for not loading the head; it is the 503
        message while no version is served."""
        if reason != self._last_warning:
            log.warning("model %s: %s", self.name, reason)
            self._last_warning = reason
        if self.current is None:
            self.reason = reason

    def _download(self, commit: Commit, directory: str) -> None:
        """Write every file of ``commit`` under ``directory`` (same relative paths)."""
        for path, _ in self.pfs.iter_files(self.repo, commit.id):
            target = os.path.join(directory, path.lstrip("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as out:
                self.pfs.get_file(self.repo, commit.id, path, out)

    @staticmethod
    def _origin(commit: Commit) -> str:
        if commit.pipeline:
            return f"pipeline {commit.pipeline} v{commit.pipeline_version}, job {commit.job}"
        return f"{commit.origin} commit"


class _DownloadFailed(ModelUnavailable):
    """A model commit could not be downloaded (the store or the disk)."""
