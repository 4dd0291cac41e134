"""Shared fixtures: both stores (a local directory and an S3 server,
versitygw, started as a separate process and spoken to over HTTP; moto
for tests that need moto itself), the CLI, controllers,
a Kubernetes cluster; and the skip policy (see ``helpers.py``). Plain helper
functions live in ``helpers.py``."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid

import boto3
import pytest
from helpers import REPO_ROOT, CLIResult, api_server, required_parts, run_cli, skip, use_s3, wait_for

from pipectl.pfs import PFS
from pipectl.pps import PPS
from pipectl.store import open_store
from pipectl.testing import s3servers


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """The skip policy: a skip tagged with a part ``PIPECTL_REQUIRE`` names
    (``[docker] ...``; with ``all``, any skip) becomes a failure."""
    outcome = yield
    report = outcome.get_result()
    required = required_parts()
    if not (report.skipped and required) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    tag = reason[1:reason.index("]")] if reason.startswith("[") and "]" in reason else None
    if "all" in required or tag in required:
        report.outcome = "failed"
        report.longrepr = f"PIPECTL_REQUIRE={os.environ['PIPECTL_REQUIRE']}, but this test was skipped: {reason}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """The tests' S3 server: versitygw (a real, strict S3 storing plain files
    in a session temp dir) on a loopback port; an
    :class:`~pipectl.testing.s3servers.S3Server` (``endpoint``, ``env()``).
    Skips when versitygw is not built (`make versitygw`)."""
    if s3servers.versitygw_binary() is None:
        skip("s3", "versitygw not built: run `make versitygw`")
    root = tmp_path_factory.mktemp("versitygw")
    with _started(s3servers.VersityGW(str(root / "data"), log_path=str(root / "versitygw.log"))) as server:
        yield server


@contextlib.contextmanager
def _started(server: s3servers.S3Server):
    try:
        server.start()
    except s3servers.ServerError as e:
        pytest.fail(str(e))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["local", "s3"])
def store_url(request, tmp_path, monkeypatch):
    """A fresh, empty store URL of each kind (``s3``: a bucket on
    versitygw); the environment is set so that subprocesses (the CLI,
    workers) reach the same store."""
    if request.param == "local":
        url = "file://" + str(tmp_path / "store")
    else:
        url = f"s3://{use_s3(request.getfixturevalue('s3_server'), monkeypatch)}/pipectl"
    monkeypatch.setenv("PIPECTL_STORE", url)
    return url


@pytest.fixture(autouse=True)
def local_images(tmp_path, monkeypatch):
    """A local images file (``PIPECTL_LOCAL_IMAGES``) for the images the
    tests' specs name, letting user code write into the test's directory
    (``writable``; its sandbox has it read-only otherwise), where tests count
    runs; returns its path."""
    path = tmp_path / "local-images.json"
    entry = {"writable": [str(tmp_path)]}
    path.write_text(__import__("json").dumps({"local": entry, "pipectl/test:1": entry}))
    monkeypatch.setenv("PIPECTL_LOCAL_IMAGES", str(path))
    return str(path)


@pytest.fixture
def server(store_url, tmp_path):
    """``pipectl server`` (a real process on a loopback port) on the test's
    store, with a read and a write token (``helpers.READ``, ``WRITE``);
    returns a :class:`helpers.Server`."""
    with api_server(tmp_path) as s:
        yield s


@pytest.fixture
def store(store_url):
    return open_store(store_url)


@pytest.fixture
def pfs(store):
    return PFS(store)


@pytest.fixture
def pps(store, pfs):
    return PPS(store, pfs)


@pytest.fixture
def cli():
    """``cli(*args)`` runs pipectl and returns a result with code/out/err."""
    return run_cli


# --- pipeline helpers (tests/test_pipelines.py, tests/test_controller_faults.py) ---

@pytest.fixture
def spec_file(tmp_path):
    """``spec_file(spec)`` writes a spec (a dict as JSON, or text as given)
    to a new file and returns its path; ``suffix`` picks ``.json``/``.yaml``."""
    count = iter(range(1_000_000))

    def write(spec, suffix: str = ".json") -> str:
        path = tmp_path / f"spec-{next(count)}{suffix}"
        path.write_text(spec if isinstance(spec, str) else __import__("json").dumps(spec, indent=1))
        return str(path)

    return write


@pytest.fixture
def run_controller():
    """``run_controller()`` runs ``pipectl controller --exit-when-idle`` as a
    real process (workers are its real subprocesses), asserts it exited 0
    and returns the result."""
    def run(*args: str, timeout: float = 240) -> CLIResult:
        result = run_cli("controller", "--exit-when-idle", "--poll-interval", "0.05", *args, timeout=timeout)
        assert result.code == 0, result
        return result

    return run


@pytest.fixture
def background(tmp_path):
    """``background(*args)`` starts ``pipectl ARGS...`` without waiting and
    returns the Popen (stdout/stderr to files: ``.out_path``/``.err_path``).
    Every process it started and that is still running is killed (by its own
    pid) at teardown; workers die with their controller (parent-death signal)."""
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        n = len(procs)
        out_path, err_path = tmp_path / f"bg-{n}.out", tmp_path / f"bg-{n}.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "pipectl", *args], stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, env=dict(os.environ))
        proc.out_path, proc.err_path = out_path, err_path
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


# --- Kubernetes (tests/test_kubernetes.py, tests/test_k8s_e2e.py) ---

K8S_SCRIPTS = os.path.join(REPO_ROOT, "scripts", "k8s")
K8S_CACHE = os.environ.get("PIPECTL_K8S_CACHE", os.path.expanduser("~/.cache/pipectl/k8s"))
K8S_STATE = os.environ.get("PIPECTL_K8S_STATE", "/var/lib/pipectl-k8s")
K8S_IMAGES = ["pipectl/base:0.1.0", "pipectl/preprocess:0.1.0", "pipectl/train:0.1.0",
              "pipectl/inference:0.1.0", "pipectl/serving:0.1.0", "pipectl/examples:0.1.0",
              "pipectl/versitygw:0.1.0"]


class Cluster:
    """A running single-node cluster: ``kubeconfig`` path, ``node_ip`` (the
    address at which pods reach servers on this host), ``bin`` (kubectl, helm)."""

    def __init__(self, kubeconfig: str, node_ip: str):
        self.kubeconfig, self.node_ip = kubeconfig, node_ip
        self.bin = os.path.join(K8S_CACHE, "bin")

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        proc = subprocess.run([os.path.join(self.bin, "kubectl"), "--kubeconfig", self.kubeconfig, *args],
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout


def _k8s_script(name: str, *args: str, timeout: float = 3600) -> None:
    proc = subprocess.run(["bash", os.path.join(K8S_SCRIPTS, name), *args], capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"scripts/k8s/{name} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")


@pytest.fixture(scope="session")
def k8s_cluster():
    """A real single-node Kubernetes cluster (scripts/k8s/up.sh) with the
    project's images loaded into its containerd; stopped at the end of the
    session unless it was already running. Skips when the binaries are not
    built (`make k8s-build`) or not running as root."""
    if os.geteuid() != 0:
        skip("kubernetes", "the Kubernetes cluster needs root")
    if not os.path.exists(os.path.join(K8S_CACHE, "bin", "kube")):
        skip("kubernetes", "Kubernetes binaries not built: run `make k8s-build`")
    kubeconfig = os.path.join(K8S_STATE, "admin.kubeconfig")
    was_up = os.path.exists(kubeconfig) and subprocess.run(
        [os.path.join(K8S_CACHE, "bin", "kubectl"), "--kubeconfig", kubeconfig, "get", "--raw", "/readyz"],
        capture_output=True, timeout=30).returncode == 0
    _k8s_script("up.sh")
    _k8s_script("load-images.sh", *K8S_IMAGES)
    with open(os.path.join(K8S_STATE, "node-ip")) as f:
        cluster = Cluster(kubeconfig, f.read().strip())
    yield cluster
    if not was_up:
        _k8s_script("down.sh")


@pytest.fixture(scope="session")
def cluster_s3(k8s_cluster):
    """versitygw deployed in the cluster (scripts/k8s/versitygw.yaml: a
    Deployment with an emptyDir and a Service, in a namespace of its own);
    an :class:`~pipectl.testing.s3servers.S3Endpoint` whose ``endpoint`` is
    the Service's cluster IP, which pods and this host (the node) both reach,
    so the controller here and its workers there use the same URL."""
    namespace = "s3-" + uuid.uuid4().hex[:10]
    creds = {"ROOT_ACCESS_KEY_ID": "testing", "ROOT_SECRET_ACCESS_KEY": s3servers.random_secret()}
    k8s_cluster.kubectl("create", "namespace", namespace)
    try:
        k8s_cluster.kubectl("-n", namespace, "create", "secret", "generic", "versitygw-root",
                            *[f"--from-literal={k}={v}" for k, v in creds.items()])
        k8s_cluster.kubectl("-n", namespace, "apply", "-f", os.path.join(K8S_SCRIPTS, "versitygw.yaml"))
        k8s_cluster.kubectl("-n", namespace, "rollout", "status", "deployment/versitygw", "--timeout=120s",
                            timeout=150)
        ip = k8s_cluster.kubectl("-n", namespace, "get", "service", "versitygw", "-o",
                                 "jsonpath={.spec.clusterIP}").strip()
        endpoint = s3servers.S3Endpoint(f"http://{ip}:7070", creds["ROOT_ACCESS_KEY_ID"],
                                        creds["ROOT_SECRET_ACCESS_KEY"])
        # Signed with this session's keys: a cluster IP freed by an earlier session's Service can reach that
        # session's server (with its own keys) until the proxy's rules catch up.
        wait_for(lambda: _answers(endpoint), 60, 0.2, "versitygw's Service")
        yield endpoint
    finally:
        k8s_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _answers(endpoint: s3servers.S3Endpoint) -> bool:
    """Whether the S3 server at ``endpoint`` answers a request signed with its keys."""
    import botocore.exceptions
    client = boto3.client("s3", endpoint_url=endpoint.endpoint, aws_access_key_id=endpoint.access_key,
                          aws_secret_access_key=endpoint.secret_key, region_name=s3servers.REGION)
    try:
        client.list_buckets()
        return True
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        return False




@pytest.fixture
def k8s_env(k8s_cluster, cluster_s3, monkeypatch):
    """A fresh namespace holding a Secret ``pipectl-s3`` with the store
    credentials, and a fresh S3 store; this process's environment points the
    CLI and controllers at both. Returns a dict with ``namespace``,
    ``store``, ``endpoint``, ``s3`` (the ``cluster_s3`` endpoint and keys),
    ``cluster``."""
    namespace = "t-" + uuid.uuid4().hex[:10]
    creds = {"AWS_ACCESS_KEY_ID": cluster_s3.access_key, "AWS_SECRET_ACCESS_KEY": cluster_s3.secret_key}
    for k, v in dict(cluster_s3.env(), KUBECONFIG=k8s_cluster.kubeconfig, PIPECTL_K8S_NAMESPACE=namespace).items():
        monkeypatch.setenv(k, v)
    bucket = "k-" + uuid.uuid4().hex[:12]
    boto3.session.Session().client("s3").create_bucket(Bucket=bucket)  # a new session reads the keys set now
    store = f"s3://{bucket}/pipectl"
    monkeypatch.setenv("PIPECTL_STORE", store)
    k8s_cluster.kubectl("create", "namespace", namespace)
    # The API server itself proves every pod meets the restricted Pod Security Standard.
    k8s_cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    k8s_cluster.kubectl("-n", namespace, "create", "secret", "generic", "pipectl-s3",
                        *[f"--from-literal={k}={v}" for k, v in creds.items()])
    yield {"namespace": namespace, "store": store, "endpoint": cluster_s3.endpoint, "s3": cluster_s3,
           "cluster": k8s_cluster}
    k8s_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
