"""The Kubernetes executor: each job runs as one Indexed ``batch/v1`` Job.

A job with ``count`` workers becomes a Job with ``completionMode: Indexed``,
``completions = parallelism = count``; pod ``i`` runs worker ``i`` (its index
comes from ``JOB_COMPLETION_INDEX``). As in Pachyderm, the pod has two
containers sharing ``/pfs`` (an emptyDir) and a socket (see
:mod:`pipectl.pps.runner`): ``storage``, pipectl's image (``worker_image``)
running the worker, the only one holding the store's credentials, and
``user``, ``transform.image`` running user code, with a ``/tmp`` the runner
empties before each datum and a ``$HOME`` kept for the pod (emptyDirs).
The Job carries:

- labels ``app.kubernetes.io/managed-by=pipectl``, ``pipectl.io/pipeline``,
  ``pipectl.io/job`` (on the Job and its pods);
- ``resource_requests`` / ``resource_limits`` of the spec as the user
  container's requests and limits (``cpu``, ``memory``, ``disk`` as ephemeral-storage,
  ``gpu: {type, number}`` as ``<type>: number``);
- ``activeDeadlineSeconds`` from ``job_timeout``; ``backoffLimit`` from the
  controller's worker-failure limit (a failed or deleted pod is replaced by
  the Job controller, and the new pod resumes the datums of its index);
- ``transform.secrets`` in the user container: ``secretKeyRef`` variables
  and read-only ``secret`` volumes at their ``mount_path``;
- store credentials through ``envFrom`` a Secret (``store_secret``), never
  in the Job spec, in the storage container only; the worker ServiceAccount (``service_account``) with no
  API token mounted;
- ``ttlSecondsAfterFinished`` (``job_ttl``), a backstop: as soon as the job
  ends, the Job's pod logs are read (the controller keeps them in the store,
  ``pipectl get-logs --workers``) and the Job is deleted.

Jobs and pods are followed with list+watch informers (no polling of the API
server). Job names derive from the job id, so a controller restarted
mid-job re-attaches to the Job its predecessor started.

The store must be S3 (``s3://...``): pods cannot reach a local directory.
Kubernetes API access comes from the in-cluster ServiceAccount, else from
``$KUBECONFIG`` / ``~/.kube/config``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from typing import Any

from ...errors import InvalidArgument
from .. import podspec, secrets
from ..model import JobInfo, PipelineInfo
from ..runner import SOCKET
from ..spec import parse_duration
from . import (
    RUNNER_COMMAND,
    WORKER_IMAGE,
    Executor,
    ExecutorError,
    GroupStatus,
    WorkerGroup,
    WorkerHandle,
    spout_environment,
    worker_command,
)

log = logging.getLogger("pipectl.kubernetes")

MANAGED_BY = "app.kubernetes.io/managed-by"
SELECTOR = f"{MANAGED_BY}=pipectl"
PIPELINE_LABEL = "pipectl.io/pipeline"
JOB_LABEL = "pipectl.io/job"
LONG_LIVED_LABEL = "pipectl.io/long-lived"  # spout or service
# Settings (not secrets) the workers need to reach the store as the controller does.
PASS_ENV = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION", "PIPECTL_S3_MAX_ATTEMPTS",
            "PIPECTL_S3_CONNECT_TIMEOUT", "PIPECTL_LOG_LEVEL")
CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# Container states after which a pod never starts by itself.
STUCK_REASONS = {"ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                 "CreateContainerConfigError", "CreateContainerError"}
IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
LOG_LIMIT_BYTES = 1 << 20  # per pod
HOME = "/home/pipectl"  # the user container's $HOME: an emptyDir kept for the pod's datums (caches)


def load_client_config() -> None:
    """Configure the kubernetes client: in-cluster when running in a pod,
    else from the kubeconfig. Raises ExecutorError when neither works."""
    from kubernetes import config
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
        else:
            config.load_kube_config()
    except (config.ConfigException, OSError) as e:
        raise ExecutorError(f"no Kubernetes configuration: {e}") from None


def default_namespace() -> str:
    """``$PIPECTL_K8S_NAMESPACE``, the pod's own namespace, the kubeconfig
    context's namespace, else ``default``."""
    if os.environ.get("PIPECTL_K8S_NAMESPACE"):
        return os.environ["PIPECTL_K8S_NAMESPACE"]
    try:
        with open(IN_CLUSTER_NAMESPACE) as f:
            return f.read().strip()
    except OSError:
        pass
    try:
        from kubernetes import config
        _, context = config.list_kube_config_contexts()
        return context["context"].get("namespace") or "default"
    except Exception:  # no kubeconfig: the default namespace
        return "default"


def api_error(e) -> str:
    """The message of a kubernetes ApiException, in one line."""
    import json
    try:
        return json.loads(e.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{e.status} {e.reason}"


def job_name(job: JobInfo) -> str:
    """The Kubernetes Job name of ``job``: a DNS-1123 label of at most 51
    characters, unique per job id."""
    slug = re.sub(r"[^a-z0-9-]+", "-", job.pipeline.lower()).strip("-")[:30].rstrip("-")
    return f"pipectl-{slug}-{job.id[:12]}" if slug else f"pipectl-{job.id[:12]}"


def label_value(text: str) -> str:
    """``text`` made a valid label value (63 characters of [A-Za-z0-9_.-],
    alphanumeric at both ends)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:63].strip("_.-") or "x"


def resources(spec: dict, prefix: str = "") -> dict:
    """The container ``resources`` for a pipeline spec's resource_requests
    and resource_limits (Pachyderm's field names), e.g. ``{"requests":
    {"cpu": "0.5", "memory": "64Mi"}, "limits": {"nvidia.com/gpu": "1"}}``;
    with ``prefix="sidecar_"``, the storage container's (Pachyderm's
    ``sidecar_resource_requests`` and ``sidecar_resource_limits``)."""
    out = {}
    for field, key in ((f"{prefix}resource_requests", "requests"), (f"{prefix}resource_limits", "limits")):
        given = spec.get(field) or {}
        quantities = {}
        if "cpu" in given:
            quantities["cpu"] = str(given["cpu"])
        if "memory" in given:
            quantities["memory"] = str(given["memory"])
        if "disk" in given:
            quantities["ephemeral-storage"] = str(given["disk"])
        gpu = given.get("gpu") or {}
        if gpu.get("number"):
            quantities[gpu.get("type") or "nvidia.com/gpu"] = str(gpu["number"])
        if quantities:
            out[key] = quantities
    # Extended resources (GPUs) cannot be overcommitted: Kubernetes requires
    # their limit, and a request equal to it.
    for name, number in out.get("requests", {}).items():
        if name not in ("cpu", "memory", "ephemeral-storage"):
            out.setdefault("limits", {}).setdefault(name, number)
    return out


POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534, "fsGroup": 65534,
                "seccompProfile": {"type": "RuntimeDefault"}}
"""Worker pods run as nobody (or as a numeric ``transform.user``) with the
RuntimeDefault seccomp profile, and their containers
(:data:`CONTAINER_SECURITY`) with no privilege escalation and no
capabilities: Kubernetes' restricted Pod Security Standard."""
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def pod_security(spec: dict) -> dict:
    """The pod securityContext: :data:`POD_SECURITY`, running both
    containers as ``transform.user`` when it is numeric (``uid[:gid]``; a
    user name is resolved in the user container, and must then be the
    image's own user). Raises ExecutorError for root, which the restricted
    standard forbids."""
    user = str(spec["transform"].get("user") or "")
    uid, _, gid = user.partition(":")
    if not uid.isdigit():
        return POD_SECURITY
    if int(uid) == 0 or gid == "0":
        raise ExecutorError("transform.user: worker pods run as a non-root user (restricted Pod Security Standard)")
    return POD_SECURITY | {"runAsUser": int(uid), "runAsGroup": int(gid or uid), "fsGroup": int(gid or uid)}


TOLERATION_OPERATORS = {"EXISTS": "Exists", "EQUAL": "Equal"}
TOLERATION_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule", "NO_EXECUTE": "NoExecute"}


def scheduling(spec: dict) -> dict:
    """Pod spec fields from Pachyderm's ``scheduling_spec`` (``node_selector``
    -> ``nodeSelector``, ``priority_class_name`` -> ``priorityClassName``),
    ``tolerations`` (Pachyderm's enum names, ``EXISTS``, ``NO_SCHEDULE``...,
    to Kubernetes') and ``transform.image_pull_secrets``."""
    out: dict[str, Any] = {}
    given = spec.get("scheduling_spec") or {}
    if given.get("node_selector"):
        out["nodeSelector"] = dict(given["node_selector"])
    if given.get("priority_class_name"):
        out["priorityClassName"] = given["priority_class_name"]
    tolerations = []
    for t in spec.get("tolerations") or []:
        k8s = {"key": t.get("key"), "value": t.get("value"),
               "operator": TOLERATION_OPERATORS.get(str(t.get("operator", "")).upper()),
               "effect": TOLERATION_EFFECTS.get(str(t.get("effect", "")).upper()),
               "tolerationSeconds": int(t["toleration_seconds"]) if t.get("toleration_seconds") is not None else None}
        tolerations.append({k: v for k, v in k8s.items() if v not in (None, "")})
    if tolerations:
        out["tolerations"] = tolerations
    pull_secrets = spec["transform"].get("image_pull_secrets") or []
    if pull_secrets:
        out["imagePullSecrets"] = [{"name": name} for name in pull_secrets]
    return out


def pod_metadata(spec: dict, labels: dict) -> dict:
    """The pods' metadata: Pachyderm's ``metadata.labels`` and
    ``annotations``, with pipectl's own labels (``labels``) winning."""
    given = spec.get("metadata") or {}
    out: dict[str, Any] = {"labels": {**(given.get("labels") or {}), **labels}}
    if given.get("annotations"):
        out["annotations"] = dict(given["annotations"])
    return out


class Informer:
    """A local cache of the objects one ``list_namespaced_*`` call returns
    (filtered by the pipectl label), kept current by a watch, as client-go's
    informers do: list, watch from the list's resourceVersion, list again
    when the watch ends or expires (410 Gone)."""

    def __init__(self, list_fn, namespace: str, kind: str):
        self.list_fn, self.namespace, self.kind = list_fn, namespace, kind
        self.objects: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.synced = threading.Event()
        self.stopped = threading.Event()
        threading.Thread(target=self._run, name=f"informer-{kind}", daemon=True).start()

    def get(self, name: str):
        with self.lock:
            return self.objects.get(name)

    def select(self, **labels) -> list:
        with self.lock:
            return [o for o in self.objects.values()
                    if all((o.metadata.labels or {}).get(k) == v for k, v in labels.items())]

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException
        while not self.stopped.is_set():
            try:
                listed = self.list_fn(self.namespace, label_selector=SELECTOR)
                with self.lock:
                    self.objects = {o.metadata.name: o for o in listed.items}
                self.synced.set()
                w = watch.Watch()
                for event in w.stream(self.list_fn, self.namespace, label_selector=SELECTOR,
                                      resource_version=listed.metadata.resource_version, timeout_seconds=300):
                    if self.stopped.is_set():
                        w.stop()
                        break
                    obj = event["object"]
                    if event["type"] == "ERROR" or not hasattr(obj, "metadata"):
                        break
                    with self.lock:
                        if event["type"] == "DELETED":
                            self.objects.pop(obj.metadata.name, None)
                        else:
                            self.objects[obj.metadata.name] = obj
            except ApiException as e:
                if e.status != 410:
                    log.warning("watching %s: %s", self.kind, api_error(e))
                    time.sleep(1)
            except Exception as e:  # connection trouble: list again after a pause
                log.warning("watching %s: %s", self.kind, e)
                time.sleep(1)

    def stop(self) -> None:
        self.stopped.set()


class KubernetesExecutor(Executor):
    """Runs each job as an Indexed Job in ``namespace``.

    ``service_account``: the worker pods' ServiceAccount (none: the
    namespace's default); ``store_secret``: a Secret whose keys (e.g.
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) become the workers' environment;
    without one, the controller's own credentials are put in the Job spec in
    clear text (development only). ``job_ttl``: seconds a finished Job is
    kept if the controller did not delete it. Raises ExecutorError if the API
    server cannot be reached or the store is not S3."""

    name = "kubernetes"

    def __init__(self, store_url: str, namespace: str | None = None, service_account: str | None = None,
                 store_secret: str | None = None, job_ttl: int = 600, image_pull_policy: str = "IfNotPresent",
                 worker_image: str = WORKER_IMAGE):
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        if not store_url.startswith("s3://"):
            raise ExecutorError(f"the kubernetes executor needs an S3 store that pods can reach, not {store_url}")
        load_client_config()
        self.store_url = store_url
        self.namespace = namespace or default_namespace()
        self.service_account, self.store_secret = service_account, store_secret
        self.job_ttl, self.image_pull_policy, self.worker_image = job_ttl, image_pull_policy, worker_image
        self.batch, self.core = client.BatchV1Api(), client.CoreV1Api()
        try:
            self.batch.list_namespaced_job(self.namespace, limit=1)
        except ApiException as e:
            raise ExecutorError(f"cannot list Jobs in namespace {self.namespace}: {api_error(e)}") from None
        except Exception as e:
            raise ExecutorError(f"cannot reach the Kubernetes API server: {e}") from None
        self.jobs = Informer(self.batch.list_namespaced_job, self.namespace, "jobs")
        self.pods = Informer(self.core.list_namespaced_pod, self.namespace, "pods")
        for informer in (self.jobs, self.pods):
            if not informer.synced.wait(30):
                raise ExecutorError(f"cannot watch {informer.kind} in namespace {self.namespace}")

    def _store_env(self, values: dict[str, str]) -> list[dict]:
        """``values`` as a container's ``env``, then the controller's store
        variables (its credentials too when no store Secret is given)."""
        passed = PASS_ENV if self.store_secret else PASS_ENV + CREDENTIAL_ENV
        return [{"name": k, "value": v} for k, v in values.items()] + \
            [{"name": k, "value": os.environ[k]} for k in passed if k in os.environ]

    def _store_secret(self) -> list[dict]:
        """The ``envFrom`` of a container holding the store Secret's keys."""
        return [{"secretRef": {"name": self.store_secret}}]

    def worker_pod(self, job: JobInfo, spec: dict, count: int, labels: dict, service: bool = False) -> dict:
        """The pod template (``metadata`` and ``spec``) of the workers of
        ``job``: a ``storage`` container running the worker
        (:func:`worker_command`, ``count`` of them; with ``service`` the one
        serving a service job) and a ``user`` container running the user-code
        runner in ``transform.image``; ``labels`` are pipectl's own."""
        env = self._store_env({"PIPECTL_STORE": self.store_url})
        mounts = [{"name": "pfs", "mountPath": "/pfs"}, {"name": "pipectl", "mountPath": os.path.dirname(SOCKET)}]
        storage = {
            "name": "storage",
            "image": self.worker_image,
            "imagePullPolicy": self.image_pull_policy,
            "command": worker_command(job, count, service=service),
            "env": env,
            "volumeMounts": mounts,
            "securityContext": CONTAINER_SECURITY,
            "resources": resources(spec, "sidecar_"),
        }
        if self.store_secret:
            storage["envFrom"] = self._store_secret()
        secret_env, secret_volumes, secret_mounts = secrets.kubernetes(spec)
        user = {
            "name": "user",
            "image": spec["transform"]["image"],
            "imagePullPolicy": self.image_pull_policy,
            "command": RUNNER_COMMAND,
            "env": [{"name": "HOME", "value": HOME}, *secret_env],  # nobody has no home; user code may want one
            "resources": resources(spec),
            "volumeMounts": mounts + [{"name": "tmp", "mountPath": "/tmp"}, {"name": "home", "mountPath": HOME},
                                      *secret_mounts],
            "securityContext": CONTAINER_SECURITY,
        }
        if service:
            user["ports"] = [{"name": "service", "containerPort": spec["service"]["internal_port"]}]
        pod = {"restartPolicy": "Always" if service else "Never", "automountServiceAccountToken": False,
               "enableServiceLinks": False,
               "securityContext": pod_security(spec), "containers": [user, storage],
               "volumes": [{"name": "pfs", "emptyDir": {}}, {"name": "pipectl", "emptyDir": {"medium": "Memory"}},
                           {"name": "tmp", "emptyDir": {}}, {"name": "home", "emptyDir": {}}, *secret_volumes]}
        pod.update(scheduling(spec))
        if self.service_account:
            pod["serviceAccountName"] = self.service_account
        try:
            pod = podspec.apply(pod, spec)
        except InvalidArgument as e:
            raise ExecutorError(str(e)) from None
        self._check_store_kept(pod, storage)
        return {"metadata": pod_metadata(spec, labels), "spec": pod}

    def _check_store_kept(self, pod: dict, storage: dict) -> None:
        """Raises ExecutorError unless the worker pod ``pod`` (after the
        spec's ``pod_spec``/``pod_patch``) keeps the store's credentials in
        ``storage``, the container built to hold them: that container's
        image, command, environment and mounts unchanged, and no other
        container referring to the store Secret (by ``transform.secrets``,
        ``envFrom``, ``secretKeyRef`` or a volume). Otherwise whoever may
        create pipelines could read the bucket's credentials, which the
        server gives to no token."""
        kept = ("image", "command", "args", "env", "envFrom", "volumeMounts")
        found = [c for c in pod.get("containers") or [] if c.get("name") == "storage"]
        if len(found) != 1 or any(found[0].get(k) != storage.get(k) for k in kept):
            raise ExecutorError("pod_spec and pod_patch may not change the storage container's image, command, "
                                "environment or mounts (it holds the store's credentials)")
        if not self.store_secret:
            return
        others = [c for key in ("containers", "initContainers", "ephemeralContainers")
                  for c in pod.get(key) or [] if c is not found[0]]
        refs = [e.get("secretRef", {}).get("name") for c in others for e in c.get("envFrom") or []]
        refs += [e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") for c in others for e in c.get("env") or []]
        refs += [v.get("secret", {}).get("secretName") for v in pod.get("volumes") or []]
        refs += [s.get("secret", {}).get("name") for v in pod.get("volumes") or []
                 for s in v.get("projected", {}).get("sources") or []]
        if self.store_secret in refs:
            raise ExecutorError(f"user code may not be given the store's Secret {self.store_secret} "
                                "(transform.secrets, pod_spec or pod_patch)")

    def manifest(self, job: JobInfo, spec: dict, count: int, max_failures: int) -> dict:
        """The batch/v1 Job for ``count`` workers of ``job`` (a dict in the
        API's JSON form)."""
        labels = {MANAGED_BY: "pipectl", PIPELINE_LABEL: label_value(job.pipeline), JOB_LABEL: job.id}
        body = {
            "completionMode": "Indexed", "completions": count, "parallelism": count,
            "backoffLimit": max_failures, "ttlSecondsAfterFinished": self.job_ttl,
            "template": self.worker_pod(job, spec, count, labels),
        }
        timeout = parse_duration(spec.get("job_timeout"))
        if timeout:
            body["activeDeadlineSeconds"] = max(1, int(timeout))
        return {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": job_name(job), "namespace": self.namespace, "labels": labels,
                             "annotations": {"pipectl.io/pipeline-name": job.pipeline}},
                "spec": body}

    def start_workers(self, job: JobInfo, spec: dict, count: int, max_failures: int) -> KubernetesGroup:
        from kubernetes.client.exceptions import ApiException
        name = job_name(job)
        existing = self._read_job(name)
        if existing is not None:
            if not _finished(existing):  # started by a controller before a restart: follow it
                log.info("job %s: re-attached to Kubernetes Job %s", job.id, name)
                return KubernetesGroup(self, job, name, existing.spec.completions,
                                       counted_failures=existing.status.failed or 0)
            self._delete_job(name, wait=True)  # a finished Job of an earlier attempt
        try:
            manifest: Any = self.manifest(job, spec, count, max_failures)  # the client takes a dict as well
            self.batch.create_namespaced_job(self.namespace, manifest)
        except ApiException as e:
            raise ExecutorError(f"cannot create Kubernetes Job {name}: {api_error(e)}") from None
        log.info("job %s: started Kubernetes Job %s (%d workers)", job.id, name, count)
        return KubernetesGroup(self, job, name, count)

    def job_done(self, job: JobInfo) -> dict[str, str]:
        name = job_name(job)
        existing = self._read_job(name)
        if existing is None:
            return {}
        return KubernetesGroup(self, job, name, existing.spec.completions).kill()

    def _read_job(self, name: str):
        from kubernetes.client.exceptions import ApiException
        try:
            return self.batch.read_namespaced_job(name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise ExecutorError(f"cannot read Kubernetes Job {name}: {api_error(e)}") from None

    def _delete_job(self, name: str, wait: bool = False) -> None:
        """Delete Job ``name`` and its pods; with ``wait``, until they are gone
        (so no pod of it still runs a datum)."""
        from kubernetes.client.exceptions import ApiException
        try:
            self.batch.delete_namespaced_job(name, self.namespace, propagation_policy="Foreground" if wait
                                             else "Background")
        except ApiException as e:
            if e.status != 404:
                raise ExecutorError(f"cannot delete Kubernetes Job {name}: {api_error(e)}") from None
        deadline = time.monotonic() + 120
        while wait and self._read_job(name) is not None and time.monotonic() < deadline:
            time.sleep(0.5)

    def pod_logs(self, name: str) -> dict[str, str]:
        """Pod name -> log of the storage container (the worker), for every pod of Job
        ``name`` still present (at most 1 MiB each)."""
        from kubernetes.client.exceptions import ApiException
        logs = {}
        for pod in self.pods.select(**{"batch.kubernetes.io/job-name": name}):
            try:
                logs[pod.metadata.name] = self.core.read_namespaced_pod_log(
                    pod.metadata.name, self.namespace, container="storage", limit_bytes=LOG_LIMIT_BYTES)
            except ApiException:  # never started (e.g. a bad image): nothing to keep
                continue
            except Exception as e:  # the API server unreachable: the job goes on without these logs
                log.warning("cannot read the log of pod %s: %s", pod.metadata.name, e)
        return logs

    # spouts and services ------------------------------------------------------
    keeps_long_lived = True

    def spout_pod(self, pipeline: PipelineInfo) -> dict:
        """The pod template running spout ``pipeline``'s ``cmd`` in its
        image, with the store in its environment (the store Secret's keys, or
        the controller's credentials in clear text, as the workers' storage
        container has them) and Pachyderm's
        ``PPS_PIPELINE_NAME``/``PPS_PROJECT_NAME``."""
        spec, transform = pipeline.spec, pipeline.spec["transform"]
        env = self._store_env({"HOME": HOME, **spout_environment(pipeline, self.store_url)})
        secret_env, secret_volumes, secret_mounts = secrets.kubernetes(spec)
        container = {"name": "user", "image": transform["image"], "imagePullPolicy": self.image_pull_policy,
                     "command": list(transform["cmd"]), "env": env + secret_env, "resources": resources(spec),
                     "securityContext": CONTAINER_SECURITY,
                     "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "home", "mountPath": HOME},
                                      *secret_mounts]}
        if self.store_secret:
            container["envFrom"] = self._store_secret()
        service = spec["spout"].get("service")
        if service:
            container["ports"] = [{"name": "service", "containerPort": service["internal_port"]}]
        pod = {"automountServiceAccountToken": False, "enableServiceLinks": False,
               "securityContext": pod_security(spec), "containers": [container],
               "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "home", "emptyDir": {}}, *secret_volumes]}
        pod.update(scheduling(spec))
        try:
            pod = podspec.apply(pod, spec)
        except InvalidArgument as e:
            raise ExecutorError(str(e)) from None
        return {"metadata": pod_metadata(spec, self._long_lived_labels("spout", pipeline.name)), "spec": pod}

    @staticmethod
    def _long_lived_labels(kind: str, pipeline: str) -> dict:
        return {MANAGED_BY: "pipectl", PIPELINE_LABEL: label_value(pipeline), LONG_LIVED_LABEL: kind}

    def long_lived_manifests(self, kind: str, pipeline: str, version: int, template: dict,
                             service: dict | None) -> list[dict]:
        """The apps/v1 Deployment of one replica of ``template`` (a pod
        template) for the ``kind`` (``spout`` or ``service``) of pipeline
        ``pipeline``, and the v1 Service of ``service`` (Pachyderm's
        ``service``/``spout.service`` object) if given. A new pod replaces
        the old one only once it is gone (``Recreate``): one worker per
        pipeline, as in Pachyderm. The Service (Pachyderm's ``<rc>-user``)
        has ``type`` (default NodePort, as Pachyderm's), port
        ``external_port`` (else ``internal_port``) to the pod's
        ``internal_port``, ``external_port`` as the node port of a NodePort
        Service, and ``annotations``."""
        name, labels = long_lived_name(kind, pipeline), self._long_lived_labels(kind, pipeline)
        selector = {PIPELINE_LABEL: labels[PIPELINE_LABEL], LONG_LIVED_LABEL: kind}
        annotations = {"pipectl.io/pipeline-name": pipeline, "pipectl.io/pipeline-version": str(version)}
        meta: dict[str, Any] = {"name": name, "namespace": self.namespace, "labels": labels, "annotations": annotations}
        manifests: list[dict[str, Any]] = [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                      "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                               "strategy": {"type": "Recreate"}, "template": template}}]
        if service:
            kind_ = service.get("type") or "NodePort"
            port = {"name": "service", "port": service.get("external_port") or service["internal_port"],
                    "targetPort": "service"}
            if kind_ == "NodePort" and service.get("external_port"):
                port["nodePort"] = service["external_port"]
            manifests.append({"apiVersion": "v1", "kind": "Service",
                              "metadata": dict(meta, annotations={**annotations,
                                                                  **(service.get("annotations") or {})}),
                              "spec": {"type": kind_, "ports": [port], "selector": selector}})
        return manifests

    def _apply(self, manifests: list[dict]) -> LongLivedDeployment:
        """Create each of ``manifests`` (a Deployment, maybe a Service), or
        replace the one there (a new version or job); return the Deployment's
        handle. A Service is replaced keeping its cluster IP (a create would
        be refused for its node port, still the old Service's); a Deployment
        whose selector (immutable) differs, from an older pipectl, is made
        afresh. Raises ExecutorError."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        apps: Any = client.AppsV1Api()  # the client takes the manifests as dicts
        core: Any = self.core
        for manifest in manifests:
            kind, name = manifest["kind"], manifest["metadata"]["name"]
            try:
                if kind == "Service":
                    try:
                        current = core.read_namespaced_service(name, self.namespace)
                    except ApiException as e:
                        if e.status != 404:
                            raise
                        core.create_namespaced_service(self.namespace, manifest)
                    else:
                        core.replace_namespaced_service(name, self.namespace, dict(
                            manifest, spec=dict(manifest["spec"], clusterIP=current.spec.cluster_ip)))
                    continue
                try:
                    apps.create_namespaced_deployment(self.namespace, manifest)
                except ApiException as e:
                    if e.status != 409:
                        raise
                    try:
                        apps.replace_namespaced_deployment(name, self.namespace, manifest)
                    except ApiException as e2:
                        if e2.status != 422:
                            raise
                        apps.delete_namespaced_deployment(name, self.namespace)
                        apps.create_namespaced_deployment(self.namespace, manifest)
            except ApiException as e:
                raise ExecutorError(f"cannot create or replace {kind} {name}: {api_error(e)}") from None
        return LongLivedDeployment(self, manifests[0]["metadata"]["name"])

    def start_spout(self, pipeline: PipelineInfo) -> WorkerHandle:
        """Create (or replace, for a new version) the spout's Deployment and
        its Service for ``spout.service``. Raises ExecutorError."""
        return self._apply(self.long_lived_manifests("spout", pipeline.name, pipeline.version,
                                                     self.spout_pod(pipeline), pipeline.spec["spout"].get("service")))

    def start_service(self, job: JobInfo, spec: dict) -> WorkerHandle:
        """Create (or replace, for a new job) the Deployment whose pod
        serves service job ``job`` (a worker pod, see :meth:`worker_pod`,
        restarted when it ends) and the pipeline's Service. Raises
        ExecutorError."""
        labels = {**self._long_lived_labels("service", job.pipeline), JOB_LABEL: job.id}
        return self._apply(self.long_lived_manifests(
            "service", job.pipeline, job.pipeline_version,
            self.worker_pod(job, spec, 1, labels, service=True), spec["service"]))

    def stop_long_lived(self, kind: str, pipeline: str) -> None:
        LongLivedDeployment(self, long_lived_name(kind, pipeline)).kill()

    def stop_other_long_lived(self, keep: set[str]) -> None:
        """Delete the spout and service Deployments and Services of
        pipelines not in ``keep`` (deleted or stopped while no controller
        ran)."""
        from kubernetes import client
        listed = client.AppsV1Api().list_namespaced_deployment(self.namespace, label_selector=LONG_LIVED_LABEL)
        for deployment in listed.items:
            meta: Any = deployment.metadata
            if (meta.annotations or {}).get("pipectl.io/pipeline-name") not in keep:
                LongLivedDeployment(self, meta.name).kill()

    def close(self) -> None:
        self.jobs.stop()
        self.pods.stop()


def long_lived_name(kind: str, pipeline: str) -> str:
    """The Deployment (and Service) name of the ``kind`` (``spout`` or
    ``service``) of ``pipeline``: a DNS-1035 label."""
    slug = re.sub(r"[^a-z0-9-]+", "-", pipeline.lower()).strip("-")[:40].rstrip("-")
    return f"pipectl-{kind}-{slug}-{hashlib.sha256(pipeline.encode()).hexdigest()[:6]}"


class LongLivedDeployment(WorkerHandle):
    """The Deployment of a spout or service: alive while it exists
    (Kubernetes restarts its pod); killing it deletes its Service too."""

    def __init__(self, executor: KubernetesExecutor, name: str):
        self.executor, self.name = executor, name

    def poll(self) -> int | None:
        return None

    def kill(self) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        for delete in (client.AppsV1Api().delete_namespaced_deployment, self.executor.core.delete_namespaced_service):
            try:
                delete(self.name, self.executor.namespace)
            except ApiException as e:
                if e.status != 404:
                    log.warning("cannot delete %s: %s", self.name, api_error(e))


def _finished(k8s_job) -> bool:
    return any(c.type in ("Complete", "Failed") and c.status == "True" for c in k8s_job.status.conditions or [])


class KubernetesGroup(WorkerGroup):
    """Follows one Indexed Job through the executor's informers."""

    def __init__(self, executor: KubernetesExecutor, job: JobInfo, name: str, count: int,
                 counted_failures: int = 0):
        self.executor, self.job, self.name = executor, job, name
        self.status = GroupStatus(count)
        # Pod failures an earlier controller already recorded in the job's restarts.
        self.counted_failures = counted_failures
        self.appeared = time.monotonic()
        self.released = False

    def poll(self) -> GroupStatus:
        k8s_job = self.executor.jobs.get(self.name)
        if k8s_job is None:
            # Not in the cache yet just after creation; gone later means deleted.
            if time.monotonic() - self.appeared > 30:
                self.status.error = f"Kubernetes Job {self.name} disappeared (deleted outside pipectl?)"
            return self.status
        status = k8s_job.status
        self.status.succeeded = status.succeeded or 0
        self.status.failures = max(0, (status.failed or 0) - self.counted_failures)
        for c in status.conditions or []:
            if c.type == "Failed" and c.status == "True":
                self.status.error = f"Kubernetes Job {self.name} failed: {c.reason}: {c.message}"
            if c.type == "Complete" and c.status == "True":
                self.status.succeeded = self.status.count
        if not self.status.error:
            self.status.error = self._stuck_pod()
        return self.status

    def _stuck_pod(self) -> str | None:
        """Why a pod of this Job can never start (bad image, missing Secret), if so."""
        for pod in self.executor.pods.select(**{"batch.kubernetes.io/job-name": self.name}):
            for cs in (pod.status.container_statuses or []) if pod.status else []:
                waiting = cs.state.waiting if cs.state else None
                if waiting and waiting.reason in STUCK_REASONS:
                    return (f"worker pod {pod.metadata.name} cannot start: {waiting.reason}: "
                            f"{waiting.message or cs.image}")
        return None

    def kill(self) -> dict[str, str]:
        """Read the pods' logs, then delete the Job and its pods; return the logs."""
        if self.released:
            return {}
        self.released = True
        try:
            return self.executor.pod_logs(self.name)
        finally:
            self.executor._delete_job(self.name)

    def detach(self) -> None:
        self.released = True
