"""The Docker executor: each worker is a pair of containers.

As on Kubernetes (see :mod:`pipectl.pps.runner`), a worker is a ``storage``
container of pipectl's own image (``worker_image``) running the same worker
as every executor (``python3 -m pipectl.pps.worker --root /pfs --usercode
...``) and a ``user`` container of ``transform.image`` running the user-code
runner, sharing two volumes of their own (``/pfs`` and ``/pipectl``); a
third is the user container's ``/tmp``, which the runner empties before each
datum. User code sees ``/pfs`` exactly as in Pachyderm, with no path
rewriting. Only the
storage container reaches the store, the way the controller does: an S3
store through the same endpoint and credentials (containers use the host
network, so a loopback endpoint works), a local store by bind-mounting its
directory at the same path. The user container gets neither, and shares no
process namespace with the worker.

``transform.secrets`` come from the secrets directory (see
:mod:`pipectl.pps.secrets`) into the user container alone: variables in its
environment, directories bound read-only at their ``mount_path``.

``resource_limits`` map to the user container's limits: ``memory`` (``512Mi``, ``1G``...)
to ``mem_limit`` and ``cpu`` (cores) to ``nano_cpus``. Every container is
labelled with its pipeline, job and worker index, and every container and
volume of a controller is removed when the job ends or the controller stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import urllib.parse

from ...errors import InvalidArgument
from .. import secrets
from ..model import JobInfo, PipelineInfo
from ..runner import SOCKET
from . import (
    RUNNER_COMMAND,
    WORKER_IMAGE,
    ExecutorError,
    HandleExecutor,
    WorkerHandle,
    spout_environment,
    worker_command,
)

log = logging.getLogger("pipectl.docker")

LABEL = "io.pipectl.worker"
WORKER = "io.pipectl.worker-name"  # the containers and volumes of one worker
ROLE = "io.pipectl.container"  # storage or user
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
    """One worker: its storage container (whose exit status is the
    worker's), its user container and their volumes."""

    def __init__(self, client, name: str):
        self.client, self.name = client, name
        self.status: int | None = None

    def _containers(self) -> list:
        return self.client.containers.list(all=True, sparse=True, filters={"label": f"{WORKER}={self.name}"})

    def _exit_code(self, role: str) -> int | None:
        """The exit status of this worker's ``role`` container once it ended
        (137 if it is gone), else None."""
        import docker.errors
        try:
            container = self.client.containers.get(f"{self.name}-{role}")
        except docker.errors.NotFound:
            return 137
        if container.status not in ("exited", "dead"):
            return None
        code = int(container.attrs["State"].get("ExitCode", 1))
        if code != 0:
            tail = container.logs(tail=20).decode(errors="replace").strip()
            log.warning("worker %s: %s container exited %s: %s", self.name, role, code, tail)
        return code

    def poll(self) -> int | None:
        """The storage container's exit status once it ended; a user
        container that ended first (it may die before the worker has a
        connection to notice it by) ends the worker with its status."""
        if self.status is None:
            self.status = self._exit_code("storage")
            if self.status is None:
                self.status = self._exit_code("user") or None
            if self.status is not None:
                self.kill()
        return self.status

    def kill(self) -> None:
        import docker.errors
        for container in self._containers():
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:
                if "already in progress" not in str(e):
                    raise
        for volume in self.client.volumes.list(filters={"label": f"{WORKER}={self.name}"}):
            with contextlib.suppress(docker.errors.NotFound):
                volume.remove(force=True)


class DockerSpout(DockerHandle):
    """A spout's one container (``<name>-user``), removed once it ended."""

    def poll(self) -> int | None:
        if self.status is None:
            self.status = self._exit_code("user")
            if self.status is not None:
                self.kill()
        return self.status


class DockerExecutor(HandleExecutor):
    """Starts workers as container pairs through the Docker SDK
    (``DOCKER_HOST`` or the local socket); ``worker_image`` is pipectl's own
    image, which runs the worker. Raises ExecutorError if the engine is
    unreachable."""

    name = "docker"

    def __init__(self, store_url: str, worker_image: str = WORKER_IMAGE, secrets_dir: str | None = None):
        import docker.errors

        import docker
        try:
            self.client = docker.from_env()  # type: ignore[attr-defined]  # docker's __init__ re-exports it
            self.client.ping()
        except docker.errors.DockerException as e:
            raise ExecutorError(f"cannot reach the Docker engine: {e}") from None
        self.store_url, self.worker_image, self.secrets_dir = store_url, worker_image, secrets_dir
        self.controller_id = f"{os.uname().nodename}-{os.getpid()}"
        self.remove_stale()

    def _store_mounts(self) -> dict:
        parsed = urllib.parse.urlparse(self.store_url)
        if parsed.scheme == "file":
            return {parsed.path: {"bind": parsed.path, "mode": "rw"}}
        return {}

    def _image(self, image: str) -> None:
        import docker.errors
        try:
            self.client.images.get(image)  # never pull: images are built locally
        except docker.errors.ImageNotFound:
            raise ExecutorError(f"image {image} not found in the Docker engine (build it with `make images`)") from None

    def start(self, job: JobInfo, spec: dict, index: int, count: int, service: bool = False) -> DockerHandle:
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
        secret_env, secret_mounts = secrets.local(spec, self.secrets_dir)  # the user container's alone
        self._image(image)
        self._image(self.worker_image)
        name = f"pipectl-{job.pipeline.replace('/', '.')}-{job.id[:8]}-{index}-{os.urandom(2).hex()}"
        labels = {LABEL: "1", WORKER: name, "io.pipectl.controller": self.controller_id,
                  "io.pipectl.pipeline": job.pipeline, "io.pipectl.job": job.id, "io.pipectl.worker-index": str(index)}
        handle = DockerHandle(self.client, name)
        try:
            shared = {self.client.volumes.create(f"{name}-{v}", labels=labels).name: {"bind": path, "mode": "rw"}
                      for v, path in (("pfs", "/pfs"), ("pipectl", os.path.dirname(SOCKET)))}
            scratch = self.client.volumes.create(f"{name}-tmp", labels=labels).name  # the runner empties it per datum
            self.client.containers.run(
                image, RUNNER_COMMAND, detach=True, network_mode="host", environment=secret_env,
                volumes=shared | {scratch: {"bind": "/tmp", "mode": "rw"}} |
                {host: {"bind": inside, "mode": "ro"} for inside, host in secret_mounts.items()}, name=f"{name}-user",
                labels=labels | {ROLE: "user"}, **options)
            self.client.containers.run(
                self.worker_image, worker_command(job, count, index, service), detach=True, environment=env,
                network_mode="host", volumes=shared | self._store_mounts(), name=f"{name}-storage",
                labels=labels | {ROLE: "storage"})
        except docker.errors.APIError as e:
            handle.kill()
            raise ExecutorError(f"cannot start a worker from image {image}: {e.explanation or e}") from None
        return handle

    def start_spout(self, pipeline: PipelineInfo) -> DockerSpout:
        """The spout's ``cmd`` in one container of its image (host network),
        with the store in its environment (and a local store's directory
        bound at its path) so that the pipectl CLI and client inside commit
        to the output repo; the controller starts it again when it ends
        (see :mod:`pipectl.pps.longlived`). Raises ExecutorError."""
        import docker.errors
        transform = pipeline.spec["transform"]
        self._image(transform["image"])
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ} | spout_environment(pipeline, self.store_url)
        secret_env, secret_mounts = secrets.local(pipeline.spec, self.secrets_dir)
        name = f"pipectl-spout-{pipeline.name.replace('/', '.')}-{os.urandom(2).hex()}"
        labels = {LABEL: "1", WORKER: name, "io.pipectl.controller": self.controller_id,
                  "io.pipectl.pipeline": pipeline.name, ROLE: "user"}
        handle = DockerSpout(self.client, name)
        try:
            self.client.containers.run(
                transform["image"], list(transform["cmd"]), detach=True, network_mode="host",
                environment=env | secret_env, name=f"{name}-user", labels=labels,
                volumes=self._store_mounts() | {host: {"bind": inside, "mode": "ro"}
                                                for inside, host in secret_mounts.items()})
        except docker.errors.APIError as e:
            handle.kill()
            raise ExecutorError(f"cannot start spout {pipeline.name} from image {transform['image']}: "
                                f"{e.explanation or e}") from None
        return handle

    def _remove(self, filters: dict) -> None:
        listed = self.client.containers.list(all=True, sparse=True, filters=filters) + \
            self.client.volumes.list(filters=filters)
        for name in {(o.attrs.get("Labels") or {}).get(WORKER, "") for o in listed} - {""}:
            DockerHandle(self.client, name).kill()

    def remove_stale(self) -> None:
        """Remove the worker containers and volumes left by any earlier controller."""
        self._remove({"label": LABEL})

    def close(self) -> None:
        self._remove({"label": f"io.pipectl.controller={self.controller_id}"})
