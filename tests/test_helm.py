"""The Helm chart helm/pipectl, with the real ``helm`` binary (no cluster):
lint, the rendered objects, least-privilege RBAC, the values schema.

helm is found on PATH, else in ``$PIPECTL_K8S_CACHE/bin`` (default
``~/.cache/pipectl/k8s/bin``); without it the module is skipped."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from collections import Counter

import pytest
import yaml
from helpers import REPO_ROOT, needs

CHART = os.path.join(REPO_ROOT, "helm", "pipectl")
CUSTOM = os.path.join(CHART, "ci", "custom-values.yaml")
REQUIRED = ["--set", "store.url=s3://b/p", "--set", "store.existingSecret=s"]
RELEASE = "rel"
FULLNAME = "rel-pipectl"


def find_helm() -> str | None:
    found = shutil.which("helm")
    if found:
        return found
    cache = os.environ.get("PIPECTL_K8S_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pipectl", "k8s")
    path = os.path.join(cache, "bin", "helm")
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


HELM = find_helm()

pytestmark = needs(
    "helm", HELM is not None,
    "helm not found on PATH or in $PIPECTL_K8S_CACHE/bin (default ~/.cache/pipectl/k8s/bin); install it with "
           "`GOBIN=~/.cache/pipectl/k8s/bin go install helm.sh/helm/v3/cmd/helm@v3.17.3`")


@pytest.fixture(scope="module")
def helm_env(tmp_path_factory):
    """helm's own directories in a scratch place, and no cluster."""
    home = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(home / var.lower())
    env["KUBECONFIG"] = str(home / "no-kubeconfig")
    return env


@pytest.fixture(scope="module")
def helm(helm_env):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([HELM, *args], env=helm_env, capture_output=True, text=True, timeout=120)
    return run


@pytest.fixture(scope="module")
def render(helm):
    """``helm template`` -> the list of rendered objects (asserting success)."""
    def run(*args: str) -> list[dict]:
        r = helm("template", RELEASE, CHART, "--namespace", "ml", *args)
        assert r.returncode == 0, r.stderr
        return [d for d in yaml.safe_load_all(r.stdout) if d]
    return run


@pytest.fixture(scope="module")
def default_objs(render):
    return render(*REQUIRED)


@pytest.fixture(scope="module")
def custom_objs(render):
    return render("-f", CUSTOM)


def one(objs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in {[(o['kind'], o['metadata']['name']) for o in objs]}"
    return found[0]


def container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_value(c: dict, name: str):
    matches = [e for e in c.get("env", []) if e["name"] == name]
    assert len(matches) == 1, f"env {name}: {matches}"
    return matches[0]


def config_of(objs: list[dict], c: dict) -> tuple[dict, list[str]]:
    """The data of the ConfigMaps and the names of the Secrets ``c`` gets with envFrom."""
    data, secrets = {}, []
    for ref in c.get("envFrom", []):
        if "configMapRef" in ref:
            data.update(one(objs, "ConfigMap", ref["configMapRef"]["name"])["data"])
        if "secretRef" in ref:
            secrets.append(ref["secretRef"]["name"])
    return data, secrets


# --- lint -------------------------------------------------------------------------

@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_lint_with_required_values(helm, strict):
    r = helm("lint", CHART, *REQUIRED, *(["--strict"] if strict else []))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in r.stdout


@pytest.mark.parametrize("values", sorted(glob.glob(os.path.join(CHART, "ci", "*.yaml"))), ids=os.path.basename)
def test_lint_ci_values(helm, values):
    r = helm("lint", CHART, "--strict", "-f", values)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 chart(s) failed" in r.stdout


def test_custom_values_file_exists():
    assert os.path.isfile(CUSTOM)


def test_chart_metadata():
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    assert chart["apiVersion"] == "v2"
    assert (chart["name"], chart["version"], str(chart["appVersion"])) == ("pipectl", "0.1.0", "0.1.0")
    assert chart["description"]


def test_every_value_is_documented():
    """helm-docs style: each leaf value (or a map above it) has a ``# --`` comment."""
    with open(os.path.join(CHART, "values.yaml")) as f:
        lines = f.read().splitlines()
    documented, stack, comment = set(), [], []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_]+):", line)
        if m and not stripped.startswith("-"):
            indent = len(m.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, m.group(2)))
            if any(c.startswith("# --") for c in comment):
                documented.add(tuple(k for _, k in stack))
        comment = []

    with open(os.path.join(CHART, "values.yaml")) as f:
        values = yaml.safe_load(f)

    def leaves(node, path=()):
        if isinstance(node, dict) and node:
            for k, v in node.items():
                yield from leaves(v, path + (k,))
        else:
            yield path

    undocumented = [".".join(p) for p in leaves(values)
                    if not any(p[:i] in documented for i in range(1, len(p) + 1))]
    assert undocumented == []


# --- default rendering ------------------------------------------------------------

def test_default_kinds(default_objs):
    assert Counter(o["kind"] for o in default_objs) == {
        "ConfigMap": 1, "ServiceAccount": 2, "Role": 1, "RoleBinding": 1, "Deployment": 2, "Service": 1}
    # the chart never creates credentials
    assert not [o for o in default_objs if o["kind"] == "Secret"]


@pytest.mark.parametrize("args", [
    REQUIRED,
    ["-f", CUSTOM],
    REQUIRED + ["--set", "serving.enabled=false", "--set", "controller.leaderElection.enabled=false"],
], ids=["defaults", "custom", "no-serving"])
def test_nothing_cluster_wide(render, args):
    objs = render(*args)
    assert {o["kind"] for o in objs} & {"ClusterRole", "ClusterRoleBinding"} == set()
    for binding in (o for o in objs if o["kind"] == "RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role"
    for o in objs:
        assert o["metadata"].get("namespace") in (None, "ml")


EXPECTED_RULES = {
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete", "patch"},
    ("", "pods"): {"get", "list", "watch", "delete"},
    ("", "pods/log"): {"get"},
    ("apps", "deployments"): {"list", "create", "update", "delete"},  # spouts and services
    ("", "services"): {"get", "create", "update", "delete"},  # service, spout.service
    ("coordination.k8s.io", "leases"): {"get", "list", "watch", "create", "update"},
    ("", "events"): {"create", "patch"},
}


@pytest.mark.parametrize("which", ["default", "custom"])
def test_role_is_least_privilege(default_objs, custom_objs, which):
    objs = default_objs if which == "default" else custom_objs
    role = one(objs, "Role")
    granted, triples = {}, 0
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule  # no resourceNames / nonResourceURLs
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
                triples += len(rule["verbs"])
    assert granted == EXPECTED_RULES
    assert triples == sum(len(v) for v in EXPECTED_RULES.values())  # nothing granted twice
    # bound to the controller's ServiceAccount, which the controller runs as
    binding = one(objs, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    controller = one(objs, "Deployment", role["metadata"]["name"])
    sa = controller["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "ml"}]


def test_controller_configuration(default_objs):
    dep = one(default_objs, "Deployment", f"{FULLNAME}-controller")
    assert dep["spec"]["replicas"] == 1
    pod = dep["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == f"{FULLNAME}-controller"
    one(default_objs, "ServiceAccount", f"{FULLNAME}-controller")
    c = container(dep)
    assert c["image"] == "pipectl/base:0.1.0"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["command"] + c["args"] == ["pipectl", "controller", "--executor", "kubernetes"]
    assert "resources" not in c
    # the restricted Pod Security Standard by default
    assert pod["spec"]["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                                              "seccompProfile": {"type": "RuntimeDefault"}}
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}

    data, secrets = config_of(default_objs, c)
    assert secrets == ["s"]
    assert data == {
        "PIPECTL_STORE": "s3://b/p",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PIPECTL_LOG_LEVEL": "info",
        "PIPECTL_K8S_STORE_SECRET": "s",
        "PIPECTL_K8S_WORKER_SERVICE_ACCOUNT": f"{FULLNAME}-worker",
        "PIPECTL_K8S_JOB_TTL": "600",
        "PIPECTL_K8S_IMAGE_PULL_POLICY": "IfNotPresent",
        "PIPECTL_WORKER_IMAGE": "pipectl/base:0.1.0",
        "PIPECTL_LEADER_ELECT": "true",
        "PIPECTL_LEASE_NAME": f"{FULLNAME}-controller",
    }
    assert env_value(c, "PIPECTL_K8S_NAMESPACE")["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env_value(c, "PIPECTL_POD_NAME")["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # PIPECTL_STORE and the credentials come only through envFrom
    assert {e["name"] for e in c["env"]} == {"PIPECTL_K8S_NAMESPACE", "PIPECTL_POD_NAME"}
    assert re.fullmatch(r"[0-9a-f]{64}", pod["metadata"]["annotations"]["checksum/config"])


def test_config_change_rolls_the_deployments(render, default_objs):
    def checksums(objs):
        return {o["metadata"]["name"]: o["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
                for o in objs if o["kind"] == "Deployment"}
    before = checksums(default_objs)
    assert set(before) == {f"{FULLNAME}-controller", f"{FULLNAME}-serving"}
    assert checksums(render(*REQUIRED)) == before  # deterministic
    after = checksums(render(*REQUIRED, "--set", "logLevel=debug"))
    assert all(after[name] != before[name] for name in before)


def test_worker_service_account(default_objs):
    sa = one(default_objs, "ServiceAccount", f"{FULLNAME}-worker")
    assert sa["automountServiceAccountToken"] is False


def test_serving(default_objs):
    dep = one(default_objs, "Deployment", f"{FULLNAME}-serving")
    c = container(dep)
    assert c["image"] == "pipectl/serving:0.1.0"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert "command" not in c  # the image's ENTRYPOINT, pipectl serve
    assert c["args"] == ["--repo", "train", "--branch", "master", "--model", "iris",
                         "--handler", "/app/iris_model.py", "--host", "0.0.0.0", "--port", "8080",
                         "--grpc-port", "8001", "--max-batch-size", "32", "--max-batch-delay", "0"]
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                          {"name": "grpc", "containerPort": 8001, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/ping", "port": "http"}
    assert c["livenessProbe"]["tcpSocket"] == {"port": "http"}
    data, secrets = config_of(default_objs, c)
    assert data["PIPECTL_STORE"] == "s3://b/p" and data["AWS_DEFAULT_REGION"] == "us-east-1"
    assert secrets == ["s"]

    svc = one(default_objs, "Service", f"{FULLNAME}-serving")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"},
                                    {"name": "grpc", "port": 8001, "targetPort": "grpc", "protocol": "TCP"}]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert svc["spec"]["selector"] != one(default_objs, "Deployment", f"{FULLNAME}-controller")[
        "spec"]["selector"]["matchLabels"]


def test_standard_labels(default_objs):
    for o in default_objs:
        labels = o["metadata"]["labels"]
        assert labels["helm.sh/chart"] == "pipectl-0.1.0"
        assert labels["app.kubernetes.io/name"] == "pipectl"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        # not managed-by=pipectl: that selects the controller's worker Jobs
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


# --- custom values ----------------------------------------------------------------

def test_custom_values(custom_objs):
    assert Counter(o["kind"] for o in custom_objs)["Ingress"] == 1
    ctrl = one(custom_objs, "Deployment", f"{FULLNAME}-controller")
    assert ctrl["spec"]["replicas"] == 2
    c = container(ctrl)
    assert c["image"] == "registry.example.com/pipectl/base:0.2.0-rc1"
    assert c["resources"]["limits"]["memory"] == "1Gi"
    data, secrets = config_of(custom_objs, c)
    assert data["PIPECTL_LEADER_ELECT"] == "false"
    assert data["AWS_ENDPOINT_URL"] == "http://minio.storage.svc:9000"
    assert data["PIPECTL_K8S_WORKER_SERVICE_ACCOUNT"] == "pipectl-ci-worker"
    assert secrets == ["pipectl-ci-s3"]
    one(custom_objs, "ServiceAccount", "pipectl-ci-worker")

    svc = one(custom_objs, "Service", f"{FULLNAME}-serving")
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["ports"][0]["nodePort"] == 30080

    serving = container(one(custom_objs, "Deployment", f"{FULLNAME}-serving"))
    assert serving["image"] == "registry.example.com/pipectl/serving:0.2.0-rc1"
    assert serving["ports"][0]["containerPort"] == 9090
    assert serving["args"][serving["args"].index("--port") + 1] == "9090"
    assert serving["resources"]["requests"]["cpu"] == "250m"

    ing = one(custom_objs, "Ingress")
    assert ing["apiVersion"] == "networking.k8s.io/v1"
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"hosts": ["models.example.com"], "secretName": "models-example-tls"}]
    rule = ing["spec"]["rules"][0]
    assert rule["host"] == "models.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": svc["metadata"]["name"], "port": {"number": svc["spec"]["ports"][0]["port"]}}


def test_serving_autoscaling(render):
    """``serving.autoscaling.enabled``: a HorizontalPodAutoscaler (autoscaling/v2,
    CPU) owns the model server's replica count."""
    assert not [o for o in render(*REQUIRED) if o["kind"] == "HorizontalPodAutoscaler"]
    objs = render(*REQUIRED, "--set", "serving.autoscaling.enabled=true", "--set", "serving.autoscaling.maxReplicas=6")
    hpa = one(objs, "HorizontalPodAutoscaler", f"{FULLNAME}-serving")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{FULLNAME}-serving"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert "replicas" not in one(objs, "Deployment", f"{FULLNAME}-serving")["spec"]


def test_serving_models_batching_and_readiness(render):
    """``serving.models`` adds models, ``grpcPort: 0`` drops the gRPC port,
    the batching settings and ``unreadyWhileLoading`` become flags."""
    objs = render(*REQUIRED, "--set", "serving.models={candidate=train@candidate}", "--set", "serving.grpcPort=0",
                  "--set", "serving.maxBatchSize=8", "--set", "serving.maxBatchDelayMs=2",
                  "--set", "serving.unreadyWhileLoading=true")
    c = container(one(objs, "Deployment", f"{FULLNAME}-serving"))
    args = c["args"]
    assert args[args.index("--model", args.index("--port")) + 1] == "candidate=train@candidate"
    assert "--grpc-port" not in args and [p["name"] for p in c["ports"]] == ["http"]
    assert args[args.index("--max-batch-size") + 1] == "8" and args[args.index("--max-batch-delay") + 1] == "2"
    assert "--unready-while-loading" in args
    assert [p["name"] for p in one(objs, "Service", f"{FULLNAME}-serving")["spec"]["ports"]] == ["http"]


def test_serving_disabled(render):
    objs = render(*REQUIRED, "--set", "serving.enabled=false", "--set", "serving.ingress.enabled=true")
    assert Counter(o["kind"] for o in objs) == {
        "ConfigMap": 1, "ServiceAccount": 2, "Role": 1, "RoleBinding": 1, "Deployment": 1}


def test_server(render, helm):
    """``server.enabled``: a Deployment running ``pipectl server`` on all
    addresses with the tokens file from the named Secret (read-only), the
    store settings, a /healthz readiness probe, and a Service; without a
    tokens Secret the chart refuses to render."""
    objs = render(*REQUIRED, "--set", "server.enabled=true", "--set", "server.tokens.existingSecret=api-tokens")
    dep = one(objs, "Deployment", f"{FULLNAME}-server")
    c = container(dep)
    assert c["command"] == ["pipectl"] and c["image"] == "pipectl/base:0.1.0"
    assert c["args"] == ["server", "--host", "0.0.0.0", "--port", "8000", "--tokens", "/etc/pipectl/tokens/tokens",
                         "--model-server", "http://$(REL_PIPECTL_SERVING_SERVICE_HOST):$(REL_PIPECTL_SERVING_SERVICE_PORT)"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["volumeMounts"] == [{"name": "tokens", "mountPath": "/etc/pipectl/tokens", "readOnly": True}]
    assert dep["spec"]["template"]["spec"]["volumes"] == [{"name": "tokens", "secret": {"secretName": "api-tokens"}}]
    assert dep["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    data, secrets = config_of(objs, c)
    assert data["PIPECTL_STORE"] == "s3://b/p" and secrets == ["s"]
    svc = one(objs, "Service", f"{FULLNAME}-server")
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "server"
    r = helm("template", RELEASE, CHART, *REQUIRED, "--set", "server.enabled=true")
    assert r.returncode != 0 and "server.tokens.existingSecret is required" in r.stderr, r.stderr
    alone = render(*REQUIRED, "--set", "server.enabled=true", "--set", "server.tokens.existingSecret=api-tokens",
                   "--set", "serving.enabled=false")
    assert "--model-server" not in container(one(alone, "Deployment", f"{FULLNAME}-server"))["args"]


def test_server_s3_gateway(render):
    """``server.s3Gateway.enabled``: the server also runs the S3 gateway on
    its port, exposed as the ``s3`` port of the server's Service."""
    objs = render(*REQUIRED, "--set", "server.enabled=true", "--set", "server.tokens.existingSecret=api-tokens",
                  "--set", "server.s3Gateway.enabled=true", "--set", "server.service.type=NodePort",
                  "--set", "server.s3Gateway.nodePort=30600")
    c = container(one(objs, "Deployment", f"{FULLNAME}-server"))
    assert c["args"][7:9] == ["--s3-gateway-port", "1600"]
    assert {"name": "s3", "containerPort": 1600, "protocol": "TCP"} in c["ports"]
    ports = one(objs, "Service", f"{FULLNAME}-server")["spec"]["ports"]
    assert ports[1] == {"name": "s3", "port": 1600, "targetPort": "s3", "protocol": "TCP", "nodePort": 30600}
    off = render(*REQUIRED, "--set", "server.enabled=true", "--set", "server.tokens.existingSecret=api-tokens")
    assert "--s3-gateway-port" not in container(one(off, "Deployment", f"{FULLNAME}-server"))["args"]
    assert [p["name"] for p in one(off, "Service", f"{FULLNAME}-server")["spec"]["ports"]] == ["http"]


# --- values validation ------------------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--skip-schema-validation"]], ids=["schema", "required"])
def test_store_url_is_required(helm, extra):
    """Rejected by values.schema.json and, without the schema, by `required`;
    either message names the value (helm 3.19 names it as a JSON pointer,
    ``/store/url``, older ones as ``store.url``)."""
    r = helm("template", RELEASE, CHART, "--set", "store.existingSecret=s", *extra)
    assert r.returncode != 0
    assert "store.url" in r.stderr or "/store/url" in r.stderr, r.stderr


@pytest.mark.parametrize("bad", [
    ["--set", "store.url=file:///srv/pipectl"],   # pods cannot reach a local directory
    ["--set", "controller.replicas=two"],
    ["--set", "worker.imagePullPolicy=Sometimes"],
    ["--set", "serving.service.type=Headless"],
    ["--set", "serving.port=70000"],
    ["--set", "controller.leaderElection.enabled=maybe"],
    ["--set", "store.bucket=x"],                   # a misspelt key
], ids=lambda a: a[-1])
def test_schema_rejects_bad_values(helm, bad):
    r = helm("template", RELEASE, CHART, *REQUIRED, *bad)
    assert r.returncode != 0, r.stdout[:500]
    assert "schema" in r.stderr, r.stderr
