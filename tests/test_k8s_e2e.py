"""End to end on a real single-node cluster: the Helm chart deploys the
controller, the model server and the pipectl server against an S3 server
(versitygw, deployed in the cluster, at its Service's cluster IP); the Iris pipeline runs as
Kubernetes Jobs of the stage images; the model server answers through its
Service (HTTP, its metrics, and KServe v2 gRPC), and so does the API (with a token; the CLI through it prints what
it prints on the store). Then a worker pod and the controller pod are
deleted mid-job, and the job still lands every datum's output exactly
once. A second deployment runs Pachyderm's long-lived and S3 pipelines: a
spout, a service and an ``s3_out`` pipeline."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import requests
import tritonclient.grpc as triton
from helpers import REPO_ROOT, http_text, make_iris_data, put_iris, run_ok, s3_uppercase_code, wait_for


def helm_install(env, *values: str) -> None:
    cluster = env["cluster"]
    proc = subprocess.run(
        [os.path.join(cluster.bin, "helm"), "--kubeconfig", cluster.kubeconfig, "-n", env["namespace"],
         "install", "pipectl", os.path.join(REPO_ROOT, "helm", "pipectl"),
         "--set", f"store.url={env['store']}", "--set", "store.existingSecret=pipectl-s3",
         "--set", f"store.s3.endpoint={env['endpoint']}",
         "--set", "controller.image.pullPolicy=Never", "--set", "serving.image.pullPolicy=Never",
         "--set", "worker.imagePullPolicy=Never", *values],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def pods(env, selector: str, phase: str | None = None) -> list[dict]:
    out = env["cluster"].kubectl("-n", env["namespace"], "get", "pods", "-l", selector, "-o", "json")
    return [p for p in json.loads(out)["items"]
            if (phase is None or p["status"].get("phase") == phase) and not p["metadata"].get("deletionTimestamp")]


def latest_job(pipeline: str) -> dict | None:
    jobs = json.loads(run_ok("list-job", "-p", pipeline, "--raw").out)
    return jobs[0] if jobs else None


def test_helm_deployment_runs_iris_serves_the_model_and_survives_pod_deletions(k8s_env, tmp_path):
    data, new = make_iris_data(tmp_path)
    ns, cluster = k8s_env["namespace"], k8s_env["cluster"]
    token = "e2e-" + os.urandom(16).hex()
    cluster.kubectl("-n", ns, "create", "secret", "generic", "api-tokens", f"--from-literal=tokens=read {token}\n")
    helm_install(k8s_env, "--set", "server.enabled=true", "--set", "server.tokens.existingSecret=api-tokens",
                 "--set", "server.image.pullPolicy=Never")
    cluster.kubectl("-n", ns, "rollout", "status", "deployment/pipectl-controller", "--timeout=180s", timeout=200)

    # The Iris pipeline, as a user would run it from a workstation.
    put_iris(data, new)
    iris = json.loads(run_ok("inspect-commit", "iris", "master", "--raw").out)
    run_ok("flush-commit", "iris", "master", "--timeout", "900", timeout=960)
    for pipeline in ("preprocess", "train", "inference"):
        job = latest_job(pipeline)
        assert job["state"] == "success" and job["executor"] == "kubernetes", job
    model = json.loads(run_ok("inspect-commit", "train", "master", "--raw").out)
    assert {"repo": "iris", "commit": iris["id"]}.items() <= \
        next(p for p in model["provenance"] if p["repo"] == "iris").items()
    assert json.loads(run_ok("get-file", "train", "master", "/metrics.json").out)["accuracy"] >= 0.9
    expected = run_ok("get-file", "inference", "master", "/test1.csv").out.split()  # one class name per row

    # The model server, through its Service's cluster IP.
    service = json.loads(cluster.kubectl("-n", ns, "get", "service", "pipectl-serving", "-o", "json"))
    base = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"

    def ready():
        try:
            return requests.get(f"{base}/ping", timeout=2).status_code == 200
        except requests.RequestException:
            return False
    wait_for(ready, 300, 1, "the model server to load the model")
    answer = requests.post(f"{base}/predictions/iris", data=(new / "test1.csv").read_text(),
                           headers={"Content-Type": "text/csv"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == model["id"]
    assert answer.json()["predictions"] == expected
    metrics = requests.get(f"{base}/metrics", timeout=10).text  # what Prometheus scrapes, through the Service
    assert f'pipectl_serving_requests_total{{model="iris",status="200",version="{model["id"]}"}}' in metrics, \
        metrics[:2000]
    # The KServe v2 gRPC port of the same Service, with tritonclient at its defaults.
    grpc_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    rows = np.array([[float(v) for v in line.split(",")] for line in (new / "test1.csv").read_text().split()
                     if line[0].isdigit()], dtype=np.float32)
    tensor = triton.InferInput("input-0", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    result = triton.InferenceServerClient(f"{service['spec']['clusterIP']}:{grpc_port}").infer("iris", [tensor])
    assert [b.decode() for b in result.as_numpy("predictions")] == expected

    # The API, through its Service, with the read token: the jobs it ran; the CLI through it.
    service = json.loads(cluster.kubectl("-n", ns, "get", "service", "pipectl-server", "-o", "json"))
    api = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    cluster.kubectl("-n", ns, "rollout", "status", "deployment/pipectl-server", "--timeout=120s", timeout=150)
    assert requests.get(f"{api}/api/v1/jobs", timeout=10).status_code == 401
    jobs = requests.get(f"{api}/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    assert {j["pipeline"] for j in jobs} == {"preprocess", "train", "inference"}
    assert all(j["state"] == "success" for j in jobs)
    models = requests.get(f"{api}/api/v1/serving/models", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert models.status_code == 200 and models.json()[0]["modelVersion"] == model["id"], models.text
    remote = {"PIPECTL_STORE": api, "PIPECTL_TOKEN": token, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    assert run_ok("list-job", "--raw", env=remote).out == run_ok("list-job", "--raw").out
    assert run_ok("get-file", "train", "master", "/metrics.json", env=remote).out == \
        run_ok("get-file", "train", "master", "/metrics.json").out

    # A slow pipeline; a worker pod and then the controller pod die mid-job.
    run_ok("create-repo", "in")
    run_ok("start-commit", "in", "master")
    for i in range(16):
        run_ok("put-file", "in", "master", f"/f{i:02d}", "-f", "-", input=f"line {i}\n".encode())
    run_ok("finish-commit", "in", "master")
    spec = {"pipeline": {"name": "slow"},
            "transform": {"image": "pipectl/base:0.1.0", "cmd": ["sh", "-c", "sleep 4; cp /pfs/in/* /pfs/out/"]},
            "input": {"pfs": {"repo": "in", "glob": "/*"}}, "parallelism_spec": {"constant": 2}}
    run_ok("create-pipeline", "-f", "-", input=json.dumps(spec).encode())
    workers = "pipectl.io/pipeline=slow"
    victim = wait_for(lambda: pods(k8s_env, workers, "Running"), 180, 0.5, "running worker pods")[0]
    wait_for(lambda: (latest_job("slow") or {}).get("datums_processed", 0) >= 1, 120, 0.5, "a first datum")
    cluster.kubectl("-n", ns, "delete", "pod", victim["metadata"]["name"], "--wait=false")
    wait_for(lambda: (latest_job("slow") or {}).get("restarts", 0) >= 1, 120, 0.5, "the lost worker noticed")
    controller = pods(k8s_env, "app.kubernetes.io/component=controller")[0]["metadata"]["name"]
    cluster.kubectl("-n", ns, "delete", "pod", controller, "--wait=false")
    wait_for(lambda: (latest_job("slow") or {}).get("state") in ("success", "failure"), 600, 1, "the slow job")
    job = latest_job("slow")
    assert job["state"] == "success", job
    assert job["datums_processed"] == 16 and job["datums_failed"] == 0, job
    new_controller = pods(k8s_env, "app.kubernetes.io/component=controller")[0]["metadata"]["name"]
    assert new_controller != controller
    listed = sorted(n["path"] for n in json.loads(run_ok("list-file", "slow", "master", "--raw").out))
    assert listed == [f"/f{i:02d}" for i in range(16)]
    for i in range(16):
        assert run_ok("get-file", "slow", "master", f"/f{i:02d}").out == f"line {i}\n"
    logs = cluster.kubectl("-n", ns, "logs", new_controller)
    assert "re-attached to Kubernetes Job" in logs, logs  # the new controller followed the same Job
    wait_for(lambda: not json.loads(cluster.kubectl("-n", ns, "get", "jobs", "-l", workers, "-o", "json"))["items"],
             60, 0.5, "the finished Job to be deleted")
    assert run_ok("get-logs", "--job", job["id"], "--workers").out  # its pods' logs were kept first



def test_helm_deployment_runs_a_spout_a_service_and_an_s3_out_pipeline(k8s_env):
    """Pachyderm's long-lived and S3 pipelines under the chart's controller
    (its Role must allow their Deployments and Services): a spout commits
    once a second and survives its pod's deletion; a service serves its
    input through a NodePort Service; an ``s3_out`` pipeline reads its
    input and writes its output through the worker's S3 sidecar."""
    import random
    ns, cluster = k8s_env["namespace"], k8s_env["cluster"]
    helm_install(k8s_env)
    cluster.kubectl("-n", ns, "rollout", "status", "deployment/pipectl-controller", "--timeout=180s", timeout=200)
    run_ok("create-repo", "site")
    run_ok("put-file", "site", "master", "/index.html", "-f", "-", input=b"hello\n")
    node_port = random.randrange(30000, 32768)
    tick = ("i=0; while true; do i=$((i+1)); "
            "echo $i | python3 -m pipectl put-file ticker master /tick-$i -f - >/dev/null || exit 3; sleep 1; done")
    for spec in (
            {"pipeline": {"name": "ticker"}, "spout": {},
             "transform": {"image": "pipectl/base:0.1.0", "cmd": ["sh", "-c", tick]}},
            {"pipeline": {"name": "web"}, "input": {"pfs": {"repo": "site", "glob": "/"}},
             "service": {"internal_port": 8080, "external_port": node_port},
             "transform": {"image": "pipectl/base:0.1.0",
                           "cmd": ["python3", "-m", "http.server", "8080", "--directory", "/pfs/site"]}},
            {"pipeline": {"name": "shout"}, "input": {"pfs": {"repo": "site", "glob": "/", "s3": True}},
             "s3_out": True, "transform": {"image": "pipectl/base:0.1.0", "cmd": ["python3", "-c", s3_uppercase_code("site")]}}):
        run_ok("create-pipeline", "-f", "-", input=json.dumps(spec).encode())

    def commits() -> int:
        return len(json.loads(run_ok("list-commit", "ticker", "--raw").out))
    wait_for(lambda: commits() >= 3, 240, 1, "3 commits from the spout")
    wait_for(lambda: (latest_job("shout") or {}).get("state") in ("success", "failure"), 300, 1, "the s3_out job")
    assert latest_job("shout")["state"] == "success", latest_job("shout")
    assert run_ok("get-file", "shout", "master", "/index.html").out == "HELLO\n"

    def page() -> str | None:
        return http_text(f"http://{cluster.node_ip}:{node_port}/index.html")
    wait_for(lambda: page() == "hello\n", 240, 1, "the service to answer through its node port")
    assert latest_job("web")["state"] == "running"

    [spout] = pods(k8s_env, "pipectl.io/pipeline=ticker", "Running")
    cluster.kubectl("-n", ns, "delete", "pod", spout["metadata"]["name"], "--wait=false")
    before = commits()
    wait_for(lambda: commits() >= before + 2, 240, 1, "commits from the spout's new pod")
    run_ok("stop-pipeline", "ticker")
    run_ok("stop-pipeline", "web")
    wait_for(lambda: not json.loads(cluster.kubectl("-n", ns, "get", "deployments,services", "-l",
                                                    "pipectl.io/long-lived", "-o", "json"))["items"],
             120, 1, "the stopped spout's and service's Deployments and Services to go")
