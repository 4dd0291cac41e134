"""The process executor: workers as local subprocesses (the embedded default).

A container image has its own files and interpreter; a local process does
not. The *local images* file (``--local-images`` or ``$PIPECTL_LOCAL_IMAGES``,
JSON) stands in for images on this machine, mapping each image name to the
working directory and the directories to put first on ``PATH`` (paths relative
to the file)::

    {"pipectl/train:0.1.0": {"workdir": "stages/train", "path": [".venv-stages/bin"]}}

An image missing from the file runs in the controller's working directory
with its ``PATH``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from ...errors import InvalidArgument
from ..model import JobInfo
from ..worker import die_with_parent
from . import HandleExecutor, WorkerHandle


def load_local_images(path: str | None) -> dict[str, dict]:
    """Parse a local images file into ``{image: {"workdir": abs, "path": [abs]}}``.
    Raises InvalidArgument for a missing or malformed file."""
    if not path:
        return {}
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError as e:
        raise InvalidArgument(f"local images file {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"local images file {path}: invalid JSON ({e.msg})") from None
    base = os.path.dirname(os.path.abspath(path))
    images = {}
    for image, entry in raw.items():
        if not isinstance(entry, dict):
            raise InvalidArgument(f"local images file {path}: entry for {image} must be an object")
        images[image] = {
            "workdir": os.path.join(base, entry["workdir"]) if entry.get("workdir") else None,
            "path": [os.path.join(base, p) for p in entry.get("path", [])],
        }
    return images


class ProcessHandle(WorkerHandle):
    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


class ProcessExecutor(HandleExecutor):
    """Runs each worker as ``python -m pipectl.pps.worker`` in its own
    process group, killed with the controller (Linux parent-death signal)."""

    name = "process"

    def __init__(self, store_url: str, local_images: str | None = None):
        self.store_url = store_url
        self.images = load_local_images(local_images or os.environ.get("PIPECTL_LOCAL_IMAGES"))

    def start(self, job: JobInfo, spec: dict, index: int, count: int) -> ProcessHandle:
        env = dict(os.environ, PIPECTL_STORE=self.store_url)
        image = self.images.get(spec["transform"]["image"])
        if image:
            env["PIPECTL_IMAGE_ENV"] = json.dumps(image)
        cmd = [sys.executable, "-m", "pipectl.pps.worker", "--pipeline", job.pipeline, "--job", job.id,
               "--index", str(index), "--count", str(count)]
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=die_with_parent)
        return ProcessHandle(proc)
