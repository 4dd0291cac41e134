"""The Docker executor: each worker is a container of ``transform.image``.

The container runs the same worker as every executor
(``python3 -m pipectl.pps.worker --root /pfs``), so user code sees ``/pfs``
exactly as in Pachyderm, with no path rewriting. The container reaches the
store the way the controller does: an S3 store through the same endpoint and
credentials (containers use the host network, so a loopback endpoint works),
a local store by bind-mounting its directory at the same path.

``resource_limits`` map to Docker's limits: ``memory`` (``512Mi``, ``1G``...)
to ``mem_limit`` and ``cpu`` (cores) to ``nano_cpus``. Every container is
labelled with its pipeline, job and worker index, and every container of a
controller is removed when the job ends or the controller stops.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.parse

from ...errors import InvalidArgument
from ..model import JobInfo
from . import ExecutorError, HandleExecutor, WorkerHandle

log = logging.getLogger("pipectl.docker")

LABEL = "io.pipectl.worker"
_PASS_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
             "AWS_DEFAULT_REGION", "AWS_REGION", "PIPECTL_S3_MAX_ATTEMPTS", "PIPECTL_S3_CONNECT_TIMEOUT")
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def memory_bytes(value: str) -> int:
    """Kubernetes-style quantity (``512Mi``, ``1G``, ``1000``) to bytes."""
    m = re.fullmatch(r"([0-9.]+)([KMGT]i?)?", str(value).strip())
    if not m:
        raise InvalidArgument(f"invalid memory quantity {value!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2) or ""])


def cpu_cores(value) -> float:
    """Kubernetes-style CPU (``0.5``, ``500m``, ``2``) to cores."""
    text = str(value).strip()
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


class DockerHandle(WorkerHandle):
    def __init__(self, container):
        self.container = container
        self.status: int | None = None

    def poll(self) -> int | None:
        if self.status is None:
            import docker.errors
            try:
                self.container.reload()
            except docker.errors.NotFound:
                self.status = 137
                return self.status
            if self.container.status in ("exited", "dead"):
                self.status = int(self.container.attrs["State"].get("ExitCode", 1))
                if self.status != 0:
                    tail = self.container.logs(tail=20).decode(errors="replace").strip()
                    log.warning("worker container %s exited %s: %s", self.container.name, self.status, tail)
                self._remove()
        return self.status

    def kill(self) -> None:
        self._remove()

    def _remove(self) -> None:
        import docker.errors
        try:
            self.container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if "already in progress" not in str(e):
                raise


class DockerExecutor(HandleExecutor):
    """Starts workers as containers through the Docker SDK (``DOCKER_HOST``
    or the local socket). Raises ExecutorError if the engine is unreachable."""

    name = "docker"

    def __init__(self, store_url: str):
        import docker.errors

        import docker
        try:
            self.client = docker.from_env()  # type: ignore[attr-defined]  # docker's __init__ re-exports it
            self.client.ping()
        except docker.errors.DockerException as e:
            raise ExecutorError(f"cannot reach the Docker engine: {e}") from None
        self.store_url = store_url
        self.controller_id = f"{os.uname().nodename}-{os.getpid()}"
        self.remove_stale()

    def _store_mounts(self) -> dict:
        parsed = urllib.parse.urlparse(self.store_url)
        if parsed.scheme == "file":
            return {parsed.path: {"bind": parsed.path, "mode": "rw"}}
        return {}

    def start(self, job: JobInfo, spec: dict, index: int, count: int) -> DockerHandle:
        import docker.errors
        image = spec["transform"]["image"]
        limits = spec.get("resource_limits") or {}
        options = {}
        if limits.get("memory"):
            options["mem_limit"] = memory_bytes(limits["memory"])
        if limits.get("cpu"):
            options["nano_cpus"] = int(cpu_cores(limits["cpu"]) * 1e9)
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        env["PIPECTL_STORE"] = self.store_url
        command = ["python3", "-m", "pipectl.pps.worker", "--pipeline", job.pipeline, "--job", job.id,
                   "--index", str(index), "--count", str(count), "--root", "/pfs"]
        try:
            self.client.images.get(image)  # never pull: images are built locally
        except docker.errors.ImageNotFound:
            raise ExecutorError(f"image {image} not found in the Docker engine (build it with `make images`)") from None
        try:
            container = self.client.containers.run(
                image, command, detach=True, environment=env, network_mode="host",
                volumes=self._store_mounts(), name=f"pipectl-{job.pipeline}-{job.id[:8]}-{index}-{os.urandom(2).hex()}",
                labels={LABEL: "1", "io.pipectl.controller": self.controller_id,
                        "io.pipectl.pipeline": job.pipeline, "io.pipectl.job": job.id,
                        "io.pipectl.worker-index": str(index)},
                **options)
        except docker.errors.APIError as e:
            raise ExecutorError(f"cannot start a worker from image {image}: {e.explanation or e}") from None
        return DockerHandle(container)

    def remove_stale(self) -> None:
        """Remove worker containers left by any earlier controller."""
        for c in self.client.containers.list(all=True, sparse=True, filters={"label": LABEL}):
            DockerHandle(c).kill()

    def close(self) -> None:
        mine = {"label": f"io.pipectl.controller={self.controller_id}"}
        for c in self.client.containers.list(all=True, sparse=True, filters=mine):
            DockerHandle(c).kill()
