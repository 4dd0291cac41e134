"""The Kubernetes executor and leader election on a real single-node cluster
(scripts/k8s/up.sh: kube-apiserver, scheduler, controller-manager, kubelet,
containerd) with versitygw deployed in it, which the pods and this host reach
at its Service's cluster IP. The
controller runs on this host against the cluster's API server; the Helm
deployment is tested in test_k8s_e2e.py."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
from helpers import http_text, run_ok, s3_uppercase_code, wait_for

from pipectl.pps.executors.kubernetes import load_client_config
from pipectl.pps.leader import LeaseElector

CONTROLLER = ("controller", "--executor", "kubernetes", "--store-secret", "pipectl-s3",
              "--image-pull-policy", "Never", "--poll-interval", "0.1")


def shell_pipeline(name: str, script: str, files: int, parallelism: int = 2, image: str = "pipectl/base:0.1.0",
                   **extra) -> None:
    """A repo ``in`` with ``files`` small files and pipeline ``name`` running
    ``script`` (sh) per file in ``image``."""
    run_ok("create-repo", "in")
    run_ok("start-commit", "in", "master")
    for i in range(files):
        run_ok("put-file", "in", "master", f"/f{i:02d}", "-f", "-", input=f"line {i}\n".encode())
    run_ok("finish-commit", "in", "master")
    spec = {"pipeline": {"name": name}, "transform": {"image": image, "cmd": ["sh", "-c", script]},
            "input": {"pfs": {"repo": "in", "glob": "/*"}}, "parallelism_spec": {"constant": parallelism}}
    spec.update(extra)
    run_ok("create-pipeline", "-f", "-", input=json.dumps(spec).encode())


def k8s_jobs(env) -> list[dict]:
    out = env["cluster"].kubectl("-n", env["namespace"], "get", "jobs", "-o", "json")
    return json.loads(out)["items"]


def worker_pods(env, phase: str | None = None) -> list[dict]:
    out = env["cluster"].kubectl("-n", env["namespace"], "get", "pods", "-l",
                                 "app.kubernetes.io/managed-by=pipectl", "-o", "json")
    return [p for p in json.loads(out)["items"] if phase is None or p["status"].get("phase") == phase]


def the_job(pipeline: str) -> dict:
    """The newest job of ``pipeline`` (``{}`` before it has one)."""
    jobs = json.loads(run_ok("list-job", "-p", pipeline, "--raw").out)
    return jobs[0] if jobs else {}


def assert_outputs(pipeline: str, files: int) -> None:
    """Every input file's copy is in the output commit, once, intact."""
    listed = sorted(n["path"] for n in json.loads(run_ok("list-file", pipeline, "master", "--raw").out))
    assert listed == [f"/f{i:02d}" for i in range(files)]
    for i in range(files):
        assert run_ok("get-file", pipeline, "master", f"/f{i:02d}").out == f"line {i}\n"


def test_job_runs_as_an_indexed_job_and_is_cleaned_up(k8s_env):
    """A pipeline of project ``team`` over a repo of the default project."""
    shell_pipeline("team/copy", "cp /pfs/in/* /pfs/out/; echo copied $PACH_DATUM_ID $PPS_PROJECT_NAME", files=6,
                   resource_requests={"cpu": "50m", "memory": "64Mi"}, resource_limits={"memory": "256Mi"},
                   job_timeout="10m", input={"pfs": {"repo": "in", "project": "default", "glob": "/*"}})
    r = run_ok(*CONTROLLER, "--exit-when-idle", timeout=300)
    assert "started Kubernetes Job" in r.err
    job = the_job("team/copy")
    assert job["state"] == "success" and job["executor"] == "kubernetes", job
    assert job["datums_processed"] == 6
    assert_outputs("team/copy", 6)
    assert k8s_jobs(k8s_env) == []  # deleted once the job ended...
    logs = json.loads(run_ok("get-logs", "--job", job["id"], "--workers", "--raw").out)
    assert len(logs) == 2  # ...after both pods' logs were kept
    assert all(entry["worker"].startswith("pipectl-team-copy-") for entry in logs)
    assert sum(int(e["log"].split(" datums to run")[0].rsplit(" ", 1)[1]) for e in logs) == 6, logs
    datum_logs = run_ok("get-logs", "--job", job["id"]).out
    assert datum_logs.count("copied") == 6 and datum_logs.count(" team") == 6


def test_job_manifest_is_accepted_and_carries_the_spec(k8s_env):
    """The Job as the API server stored it: Indexed, labels, resources,
    deadline, Secret, ServiceAccount, TTL, and Pachyderm's scheduling_spec,
    tolerations, metadata, image_pull_secrets, pod_spec (merged) and
    pod_patch (a JSON Patch, after pod_spec); a spec that would give user
    code the store's Secret, or change the storage container, is refused."""
    from pipectl.pps.executors import ExecutorError
    from pipectl.pps.executors.kubernetes import KubernetesExecutor
    from pipectl.pps.model import JobInfo
    ns = k8s_env["namespace"]
    k8s_env["cluster"].kubectl("-n", ns, "create", "serviceaccount", "workers")
    load_client_config()
    ex = KubernetesExecutor(k8s_env["store"], namespace=ns, service_account="workers", store_secret="pipectl-s3",
                            job_ttl=60, image_pull_policy="Never")
    try:
        job = JobInfo("a" * 32, "My_Pipeline", 1, "salt", "hash", [], output_commit="b" * 32)
        spec = {"transform": {"image": "pipectl/base:0.1.0", "cmd": ["true"], "image_pull_secrets": ["regcred"]},
                "job_timeout": "1h",
                "resource_requests": {"cpu": 0.5, "memory": "64Mi", "gpu": {"type": "example.com/gpu", "number": 1}},
                "resource_limits": {"memory": "1Gi", "disk": "1Gi"}, "sidecar_resource_limits": {"memory": "300Mi"},
                # Pachyderm's Kubernetes fields
                "scheduling_spec": {"node_selector": {"disktype": "ssd"}, "priority_class_name": "system-node-critical"},
                "tolerations": [{"key": "gpu", "operator": "EXISTS", "effect": "NO_SCHEDULE"},
                                {"key": "spot", "operator": "EQUAL", "value": "yes", "effect": "NO_EXECUTE",
                                 "toleration_seconds": 30}],
                "metadata": {"labels": {"team": "vision", "pipectl.io/job": "not-mine"},
                             "annotations": {"example.com/owner": "ana"}},
                "pod_spec": json.dumps({"terminationGracePeriodSeconds": 7, "hostname": "worker",
                                        "enableServiceLinks": None}),
                "pod_patch": json.dumps([{"op": "add", "path": "/containers/0/env/-",
                                          "value": {"name": "PATCHED", "value": "yes"}},
                                         {"op": "replace", "path": "/terminationGracePeriodSeconds", "value": 9}])}
        ex.batch.create_namespaced_job(ns, ex.manifest(job, spec, 3, 15))
        stored = json.loads(k8s_env["cluster"].kubectl("-n", ns, "get", "job", "pipectl-my-pipeline-aaaaaaaaaaaa",
                                                       "-o", "json"))
        # the store's credentials stay in the storage container, whatever a spec asks
        plain = {"image": "pipectl/base:0.1.0", "cmd": ["true"]}
        for bad in ({"transform": {**plain, "secrets": [{"name": "pipectl-s3", "env_var": "K",
                                                         "key": "AWS_SECRET_ACCESS_KEY"}]}},
                    {"transform": plain, "pod_patch": json.dumps([{"op": "add", "path": "/containers/0/envFrom",
                                                                   "value": [{"secretRef": {"name": "pipectl-s3"}}]}])},
                    {"transform": plain, "pod_spec": json.dumps({"volumes": [{"name": "s",
                                                                             "secret": {"secretName": "pipectl-s3"}}]})},
                    {"transform": plain, "pod_patch": json.dumps([{"op": "replace", "path": "/containers/1/command",
                                                                   "value": ["sh", "-c", "env > /pfs/out/env"]}])}):
            with pytest.raises(ExecutorError, match="store's|storage container"):
                ex.manifest(job, bad, 1, 1)
    finally:
        ex.close()
    s = stored["spec"]
    assert (s["completionMode"], s["completions"], s["parallelism"], s["backoffLimit"]) == ("Indexed", 3, 3, 15)
    assert s["activeDeadlineSeconds"] == 3600 and s["ttlSecondsAfterFinished"] == 60
    labels = stored["metadata"]["labels"]
    assert labels["pipectl.io/pipeline"] == "My_Pipeline" and labels["pipectl.io/job"] == "a" * 32
    assert labels["app.kubernetes.io/managed-by"] == "pipectl"
    pod = s["template"]["spec"]
    assert pod["serviceAccountName"] == "workers" and pod["automountServiceAccountToken"] is False
    containers = {c["name"]: c for c in pod["containers"]}
    user, storage = containers["user"], containers["storage"]
    assert user["image"] == "pipectl/base:0.1.0" and storage["image"] == "pipectl/base:0.1.0"
    assert user["resources"] == {"requests": {"cpu": "500m", "memory": "64Mi", "example.com/gpu": "1"},
                                 "limits": {"memory": "1Gi", "ephemeral-storage": "1Gi", "example.com/gpu": "1"}}
    assert storage["resources"] == {"limits": {"memory": "300Mi"}}
    # the store: the storage container's alone
    assert storage["envFrom"] == [{"secretRef": {"name": "pipectl-s3"}}] and "envFrom" not in user
    env = {e["name"]: e.get("value") for e in storage["env"]}
    assert env["PIPECTL_STORE"] == k8s_env["store"] and "AWS_SECRET_ACCESS_KEY" not in env
    assert not [e for e in user["env"] if e["name"].startswith(("AWS_", "PIPECTL_"))]
    for c in (user, storage):
        assert {"name": "pfs", "mountPath": "/pfs"} in c["volumeMounts"]
    assert not pod.get("shareProcessNamespace")
    assert pod["nodeSelector"] == {"disktype": "ssd"} and pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},
                                  {"key": "spot", "operator": "Equal", "value": "yes", "effect": "NoExecute",
                                   "tolerationSeconds": 30}]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    meta = s["template"]["metadata"]
    assert meta["labels"]["team"] == "vision" and meta["labels"]["pipectl.io/job"] == "a" * 32  # ours win
    assert meta["annotations"] == {"example.com/owner": "ana"}
    assert (pod["terminationGracePeriodSeconds"], pod["hostname"]) == (9, "worker")
    assert "enableServiceLinks" not in pod or pod["enableServiceLinks"] is True  # removed: the API's default
    assert {"name": "PATCHED", "value": "yes"} in user["env"]


def test_a_pod_patch_that_does_not_apply_fails_the_job_naming_it(k8s_env):
    shell_pipeline("unpatchable", "true", files=1, parallelism=1,
                   pod_patch=json.dumps([{"op": "remove", "path": "/containers/5"}]))
    run_ok(*CONTROLLER, "--exit-when-idle", timeout=300)
    job = the_job("unpatchable")
    assert job["state"] == "failure" and "pod_patch does not apply" in job["reason"], job


def test_user_code_gets_its_secrets_but_not_the_store_credentials(k8s_env):
    """The worker pod's user container has no credentials in its
    environment and sees no process of the storage container, whose
    environment holds them (from the Secret); as a numeric
    ``transform.user``, both containers run as that user. The Secrets
    ``transform.secrets`` names reach it, as a variable and as files."""
    k8s_env["cluster"].kubectl("-n", k8s_env["namespace"], "create", "secret", "generic", "db",
                               "--from-literal=password=pa55", "--from-literal=user=admin")
    script = ("env > /pfs/out/env; cat /proc/[0-9]*/environ | tr '\\0' '\\n' > /pfs/out/environs; "
              "cat /proc/[0-9]*/cmdline | tr '\\0' ' ' > /pfs/out/cmdlines; id -u > /pfs/out/uid; "
              "echo $DB_PASSWORD $(cat /etc/secrets/db/user) > /pfs/out/secrets")
    run_ok("create-repo", "in")
    run_ok("put-file", "in", "master", "/x", "-f", "-", input=b"x")
    spec = {"pipeline": {"name": "peek"}, "transform": {"image": "pipectl/base:0.1.0", "cmd": ["sh", "-c", script],
                                                        "user": "4242", "secrets": [
                                                            {"name": "db", "env_var": "DB_PASSWORD", "key": "password"},
                                                            {"name": "db", "mount_path": "/etc/secrets/db"}]},
            "input": {"pfs": {"repo": "in", "glob": "/"}}}
    run_ok("create-pipeline", "-f", "-", input=json.dumps(spec).encode())
    run_ok(*CONTROLLER, "--exit-when-idle", timeout=300)
    assert the_job("peek")["state"] == "success", the_job("peek")
    seen = {f: run_ok("get-file", "peek", "master", f"/{f}").out for f in ("env", "environs", "cmdlines", "uid")}
    assert "PACH_JOB_ID=" in seen["env"] and "PATH=" in seen["environs"]  # it read what it could see
    assert "AWS_" not in seen["env"] + seen["environs"] and k8s_env["s3"].secret_key not in seen["env"] + seen["environs"]
    assert "pipectl.pps.runner" in seen["cmdlines"] and "pipectl.pps.worker" not in seen["cmdlines"]
    assert seen["uid"] == "4242\n"
    assert run_ok("get-file", "peek", "master", "/secrets").out == "pa55 admin\n"


def test_missing_image_fails_the_job_clearly(k8s_env):
    shell_pipeline("ghost", "true", files=1, parallelism=1, image="pipectl/does-not-exist:0")
    run_ok(*CONTROLLER, "--exit-when-idle", timeout=300)
    job = the_job("ghost")
    assert job["state"] == "failure"
    assert "cannot start: ErrImageNeverPull" in job["reason"], job["reason"]
    assert k8s_jobs(k8s_env) == []


def test_deleted_worker_pod_is_replaced_and_the_job_succeeds(k8s_env, background):
    shell_pipeline("slow", "sleep 2; cp /pfs/in/* /pfs/out/", files=8)
    proc = background(*CONTROLLER, "--exit-when-idle")
    victim = wait_for(lambda: worker_pods(k8s_env, "Running"), 120, 0.2, "a running worker pod")[0]
    time.sleep(1)
    k8s_env["cluster"].kubectl("-n", k8s_env["namespace"], "delete", "pod", victim["metadata"]["name"],
                               "--grace-period=0", "--force")
    assert proc.wait(300) == 0, proc.err_path.read_text()
    job = the_job("slow")
    assert job["state"] == "success" and job["restarts"] >= 1, job
    assert_outputs("slow", 8)


def test_restarted_controller_reattaches_to_its_job(k8s_env, background):
    shell_pipeline("slow", "sleep 3; cp /pfs/in/* /pfs/out/", files=6)
    first = background(*CONTROLLER)
    wait_for(lambda: worker_pods(k8s_env, "Running"), 120, 0.2, "running worker pods")
    uid = k8s_jobs(k8s_env)[0]["metadata"]["uid"]
    first.send_signal(signal.SIGKILL)  # no clean-up at all
    first.wait(30)
    second = background(*CONTROLLER, "--exit-when-idle")
    assert second.wait(300) == 0, second.err_path.read_text()
    err = second.err_path.read_text()
    assert "re-attached to Kubernetes Job" in err and "started Kubernetes Job" not in err, err
    job = the_job("slow")
    assert job["state"] == "success", job
    assert_outputs("slow", 6)
    assert uid  # the one Job of the first controller finished the work


def test_leader_election_on_a_lease(k8s_env):
    load_client_config()
    ns = k8s_env["namespace"]
    fast = {"lease_seconds": 3, "renew_seconds": 2, "retry_seconds": 0.2}
    a = LeaseElector(ns, "ctl", "a", **fast)
    b = LeaseElector(ns, "ctl", "b", **fast)
    assert a.acquire(timeout=10) and a.held
    assert not b.acquire(timeout=4) and not b.held  # a keeps renewing
    a.release()
    assert not a.held
    started = time.monotonic()
    assert b.acquire(timeout=10) and b.held
    assert time.monotonic() - started < 2  # released, not expired
    # b stops renewing (as if hung): it stops leading before c can take over
    b._stop.set()
    c = LeaseElector(ns, "ctl", "c", **fast)
    assert c.acquire(timeout=10)
    assert not b.held
    lease = json.loads(k8s_env["cluster"].kubectl("-n", ns, "get", "lease", "ctl", "-o", "json"))
    assert lease["spec"]["holderIdentity"] == "c" and lease["spec"]["leaseTransitions"] >= 2
    c.release()


class _HeldRenewal:
    """The kubernetes client's Lease API, except that a renewal (a write
    from the elector's renewing thread) returns only once ``gate`` is set,
    after it reached the API server; ``entered`` is set when one is held."""

    def __init__(self, api):
        self._api, self.entered, self.gate = api, threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self._api, name)

    def replace_namespaced_lease(self, *args, **kwargs):
        result = self._api.replace_namespaced_lease(*args, **kwargs)
        if threading.current_thread().name == "lease-renew":
            self.entered.set()
            self.gate.wait(30)
        return result


def test_a_renewal_in_flight_does_not_outlive_release(k8s_env):
    """A renewal the API server accepted just before release() returns
    after it: the candidate must not lead again, and the Lease is left
    with no holder."""
    load_client_config()
    ns = k8s_env["namespace"]
    a = LeaseElector(ns, "race", "a", lease_seconds=3, renew_seconds=2, retry_seconds=0.2)
    a.api = held = _HeldRenewal(a.api)
    assert a.acquire(timeout=10)
    assert held.entered.wait(10)  # a renewal was written and has not returned yet
    releasing = threading.Thread(target=a.release)
    releasing.start()
    time.sleep(0.3)
    held.gate.set()  # the renewal returns while release() runs
    releasing.join(10)
    for thread in threading.enumerate():  # the renewal has returned into the elector
        if thread.name == "lease-renew":
            thread.join(10)
    assert not a.held
    lease = json.loads(k8s_env["cluster"].kubectl("-n", ns, "get", "lease", "race", "-o", "json"))
    assert not lease["spec"].get("holderIdentity"), lease["spec"]


def test_a_second_controller_waits_for_the_lease(k8s_env, background):
    shell_pipeline("copy", "cp /pfs/in/* /pfs/out/", files=2)
    first = background(*CONTROLLER, "--leader-elect")
    wait_for(lambda: "leading" in first.err_path.read_text(), 60, 0.2, "the first controller to lead")
    second = background(*CONTROLLER, "--leader-elect")
    wait_for(lambda: "waiting for lease" in second.err_path.read_text(), 60, 0.2, "the second to wait")
    wait_for(lambda: the_job("copy").get("state") == "success", 240, 0.5, "the job")
    assert "Kubernetes Job" not in second.err_path.read_text()  # only the leader ran it
    first.send_signal(signal.SIGTERM)  # releases the lease on the way out
    first.wait(60)
    wait_for(lambda: "leading" in second.err_path.read_text(), 30, 0.2, "the second to take over")
    second.send_signal(signal.SIGTERM)
    second.wait(60)


def test_a_spout_runs_as_a_deployment_and_survives_its_pod(k8s_env, background):
    """A spout on Kubernetes: one Deployment (and, with ``spout.service``, a
    Service) commits once a second with the pipectl CLI in the base image;
    its pod deleted, Kubernetes starts another and the commits go on; it
    outlives a stopping controller, and stop-pipeline removes it."""
    script = ("i=0; while true; do i=$((i+1)); "
              "echo $i | python3 -m pipectl put-file ticker master /tick-$i -f - >/dev/null || exit 3; sleep 1; done")
    spec = {"pipeline": {"name": "ticker"}, "spout": {"service": {"internal_port": 8080}},
            "transform": {"image": "pipectl/base:0.1.0", "cmd": ["sh", "-c", script]}}
    run_ok("create-pipeline", "-f", "-", input=json.dumps(spec).encode())
    controller = background(*CONTROLLER)
    cluster, ns = k8s_env["cluster"], k8s_env["namespace"]

    def commits() -> int:
        return len(json.loads(run_ok("list-commit", "ticker", "--raw").out))
    wait_for(lambda: commits() >= 3, 240, 1, "3 commits from the spout's pod")
    [deployment] = json.loads(cluster.kubectl("-n", ns, "get", "deployments", "-o", "json"))["items"]
    assert deployment["metadata"]["annotations"]["pipectl.io/pipeline-name"] == "ticker"
    [service] = json.loads(cluster.kubectl("-n", ns, "get", "services", "-l", "pipectl.io/pipeline=ticker",
                                           "-o", "json"))["items"]
    assert service["spec"]["ports"][0]["port"] == 8080
    [pod] = worker_pods(k8s_env, "Running")
    cluster.kubectl("-n", ns, "delete", "pod", pod["metadata"]["name"], "--wait=false")
    before = commits()
    wait_for(lambda: [p for p in worker_pods(k8s_env, "Running") if p["metadata"]["name"] != pod["metadata"]["name"]],
             240, 1, "a new spout pod")
    wait_for(lambda: commits() >= before + 2, 240, 1, "commits from the new pod")
    controller.send_signal(signal.SIGTERM)
    controller.wait(60)
    assert json.loads(cluster.kubectl("-n", ns, "get", "deployments", "-o", "json"))["items"], \
        "the spout stopped with its controller"
    run_ok("stop-pipeline", "ticker")
    background(*CONTROLLER)
    wait_for(lambda: not json.loads(cluster.kubectl("-n", ns, "get", "deployments", "-o", "json"))["items"], 120, 1,
             "the stopped spout's Deployment to go")


def test_a_service_serves_its_newest_datum_through_a_node_port(k8s_env, background):
    """A service on Kubernetes: a Deployment whose worker pod serves the job's
    datum and a NodePort Service (``external_port``) reached from the host;
    new input replaces the pod, a deleted pod comes back, and stop-pipeline
    removes both."""
    import random
    cluster, ns = k8s_env["cluster"], k8s_env["namespace"]
    node_port = random.randrange(30000, 32768)
    run_ok("create-repo", "site")
    run_ok("put-file", "site", "master", "/index.html", "-f", "-", input=b"one\n")
    spec = {"pipeline": {"name": "web"}, "input": {"pfs": {"repo": "site", "glob": "/"}},
            "service": {"internal_port": 8080, "external_port": node_port, "type": "NodePort"},
            "transform": {"image": "pipectl/base:0.1.0",
                          "cmd": ["python3", "-m", "http.server", "8080", "--directory", "/pfs/site"]}}
    run_ok("create-pipeline", "-f", "-", input=json.dumps(spec).encode())
    background(*CONTROLLER)

    def page() -> str | None:
        return http_text(f"http://{cluster.node_ip}:{node_port}/index.html")
    wait_for(lambda: page() == "one\n", 240, 1, "the service to answer through its node port")
    [service] = json.loads(cluster.kubectl("-n", ns, "get", "services", "-l", "pipectl.io/pipeline=web",
                                           "-o", "json"))["items"]
    assert service["spec"]["type"] == "NodePort" and service["spec"]["ports"][0]["nodePort"] == node_port
    run_ok("put-file", "site", "master", "/index.html", "-o", "-f", "-", input=b"two\n")
    wait_for(lambda: page() == "two\n", 240, 1, "the service to serve the new input")
    states = [j["state"] for j in json.loads(run_ok("list-job", "--raw").out)]
    assert states == ["running", "success"], states
    def serving() -> list[dict]:
        return [p for p in worker_pods(k8s_env, "Running") if not p["metadata"].get("deletionTimestamp")]
    [pod] = wait_for(lambda: len(serving()) == 1 and serving(), 120, 1, "one service pod")
    cluster.kubectl("-n", ns, "delete", "pod", pod["metadata"]["name"], "--wait=false")
    wait_for(lambda: [p for p in serving() if p["metadata"]["name"] != pod["metadata"]["name"]],
             240, 1, "a new service pod")
    wait_for(lambda: page() == "two\n", 240, 1, "the new pod to serve")
    run_ok("stop-pipeline", "web")
    wait_for(lambda: not json.loads(cluster.kubectl("-n", ns, "get", "deployments,services", "-o", "json"))["items"],
             120, 1, "the stopped service's Deployment and Service to go")



def test_s3_input_and_s3_out_through_the_workers_sidecar(k8s_env):
    """``pfs.s3`` and ``s3_out`` on Kubernetes: the user container reads
    and writes only through the S3 sidecar the storage container serves on
    the pod's loopback."""
    shell_pipeline("s3copy", "unused", files=3, parallelism=1, s3_out=True,
                   input={"pfs": {"repo": "in", "glob": "/", "s3": True}},
                   transform={"image": "pipectl/base:0.1.0", "cmd": ["python3", "-c", s3_uppercase_code("in")]})
    run_ok(*CONTROLLER, "--exit-when-idle", timeout=300)
    job = the_job("s3copy")
    assert job["state"] == "success", job
    for i in range(3):
        assert run_ok("get-file", "s3copy", "master", f"/f{i:02d}").out == f"LINE {i}\n"
