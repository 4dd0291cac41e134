"""Predictions logged as versioned data: ``pipectl serve --log-repo REPO``.

Each answered prediction request becomes one JSON line::

    {"time": "<ISO>", "model": "iris", "model_version": "<model commit>",
     "rows": [[5.1, 3.5, 1.4, 0.2]], "predictions": ["setosa"],
     "probabilities": [[0.99, 0.01, 0.0]]}

Lines are buffered and committed together every ``interval`` seconds (or
sooner once ``batch`` lines wait), one new file per commit,
``/<model>/<YYYY-MM-DD>/<HHMMSS.ffffff>-<8 hex>.jsonl`` on the repo's
branch, so a pipeline can watch drift or retrain on feedback, and every
prediction leads through its ``model_version`` (``inspect-commit``) to the
data the model was trained on. A commit that fails (the store unreachable)
keeps its lines for the next flush; past :data:`MAX_PENDING` waiting lines
the oldest are dropped, and counted in the log.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import threading
import uuid
from typing import Any

from ..errors import PipectlError
from ..pfs import PFS

log = logging.getLogger("pipectl.serving")

MAX_PENDING = 100_000
"""The most lines held while commits fail."""


class PredictionLog:
    """The buffer of logged predictions and its commits into ``repo@branch``
    (created, with the repo, on first use)."""

    def __init__(self, pfs: PFS, repo: str, branch: str = "master", interval: float = 10.0, batch: int = 1000):
        self.pfs, self.repo, self.branch, self.interval, self.batch = pfs, repo, branch, interval, batch
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._dropped = 0
        self._ready = False

    def record(self, model: str, version: str, rows: list, predictions: list, probabilities: list | None) -> None:
        """Buffer one answered request (cheap: called on the event loop)."""
        line: dict[str, Any] = {"time": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
                                "model": model, "model_version": version, "rows": rows, "predictions": predictions}
        if probabilities is not None:
            line["probabilities"] = probabilities
        with self._lock:
            self._pending.append(line)
            if len(self._pending) > MAX_PENDING:
                del self._pending[0]
                self._dropped += 1

    def due(self) -> bool:
        """Whether enough lines wait to commit before the interval ends."""
        return len(self._pending) >= self.batch

    def flush(self) -> int:
        """Commit the waiting lines as one new file (blocking: call it off
        the event loop); returns how many were committed (0 when none
        waited or the commit failed, which is logged and retried next time)."""
        with self._lock:
            lines, self._pending = self._pending, []
            dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning("prediction log: %d lines dropped while commits to %s failed", dropped, self.repo)
        if not lines:
            return 0
        now = dt.datetime.now(dt.UTC)
        path = f"/{lines[0]['model']}/{now:%Y-%m-%d}/{now:%H%M%S.%f}-{uuid.uuid4().hex[:8]}.jsonl"
        data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
        try:
            if not self._ready:
                self.pfs.create_repo(self.repo, "Predictions of pipectl serve, one JSON line each.", exist_ok=True)
                self._ready = True
            self.pfs.put_files(self.repo, self.branch, [(path, io.BytesIO(data))])
        except (PipectlError, OSError) as e:
            log.warning("prediction log: cannot commit %d lines to %s (will retry): %s", len(lines), self.repo, e)
            with self._lock:
                self._pending[:0] = lines
            return 0
        return len(lines)
