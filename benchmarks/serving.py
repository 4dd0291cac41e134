"""Serving benchmark: ``pipectl serve`` against the same model called in-process.

:func:`bench_serving` is self-contained: unless the store it is given
already holds a model, it trains one with the Iris demo
(``scripts/demo_iris.sh``: real data, the real controller, the train stage)
into it (by default a temporary local store). It starts ``pipectl serve``
with the stage interpreter on a loopback port and measures, for single-row
``POST /predictions/iris`` (JSON) over keep-alive connections at
concurrency 1 and 8:

- requests/s (all requests over the wall time of the run), and
- p50 / p99 latency in ms (per request, client side),

beside the *baseline*: the same model's forward pass
(``iris_model.load(dir).predict_proba([row])``) timed in one process with
the same interpreter in the same run (calls/s and per-call ms). The
overhead of serving is pipectl / baseline for latencies (how many times a
forward pass one request costs). Concurrency 8 runs with dynamic batching
(the default) and is judged against the single-row forward pass (target
>= 1.0x); the same load on a server started with ``--max-batch-size 1`` is
given in its notes. Concurrency 1's p99 may add at most 2 ms to the
forward pass's. Then a 1,000-row request with ``tritonclient`` at its
defaults, binary tensors over HTTP and over gRPC, against the same
request in JSON. Then the server under abuse (see
:func:`abuse`): ``/ping`` latency while clients send 52 MB bodies of 2.9
million rows (refused with a 413) and 10,000-row batches (the ``--max-rows``
limit, answered), beside ``/ping`` on the idle server, and the server's peak
memory beside its memory before. Last, the reload time: from a new model
commit landing on the branch to the server answering with it.

``ratio`` follows :mod:`benchmarks.report`: > 1 means pipectl did better
(pipectl rate / baseline rate; baseline time / pipectl time), so here it
is below 1 and its inverse is the overhead (also given as ``overhead``).

Run alone: ``python -m benchmarks.serving [--quick] [--store URL]``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from . import harness as h

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANDLER = os.path.join(REPO, "stages", "inference", "iris_model.py")
MODEL = "iris"
ROW = [6.1, 2.8, 4.7, 1.2]
"""The instance every request sends (cm; a versicolor)."""

_FORWARD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import iris_model
model = iris_model.load(sys.argv[2])
row, n = json.loads(sys.argv[3]), int(sys.argv[4])
for _ in range(100):
    model.predict_proba([row])
latencies = []
began = time.perf_counter()
for _ in range(n):
    t = time.perf_counter()
    model.predict_proba([row])
    latencies.append(time.perf_counter() - t)
print(json.dumps({"seconds": time.perf_counter() - began, "latencies": latencies}))
"""


BATCH = 32
"""``pipectl serve``'s default --max-batch-size."""
P99_OVERHEAD_MS = 2.0
"""The p99 latency a single-row request may add to the forward pass (issue target)."""


def stage_python() -> str:
    """The stage environment's interpreter ($PIPECTL_STAGE_PYTHON or .venv-stages)."""
    return os.environ.get("PIPECTL_STAGE_PYTHON") or os.path.join(REPO, ".venv-stages", "bin", "python")


def missing_requirements(python: str) -> str | None:
    """Why ``python`` cannot serve the Iris model (None when it can)."""
    if not os.path.exists(python):
        return f"stage interpreter {python} not found (make stage-env)"
    probe = subprocess.run([python, "-c", "import mxnet, numpy, starlette, uvicorn, pipectl"],
                           check=False, capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        return f"{python} lacks a serving requirement: {probe.stderr.strip().splitlines()[-1]}"
    return None


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of a non-empty list."""
    xs = sorted(values)
    return xs[max(0, math.ceil(q / 100 * len(xs)) - 1)]


class Server:
    """``pipectl serve`` (stage interpreter) on a free loopback port; ``extra``
    options are passed on (``--grpc-port N`` sets ``grpc_port``)."""

    def __init__(self, python: str, store_url: str, log_path: str, *extra: str):
        self.port = h.free_port()
        self.grpc_port = int(extra[extra.index("--grpc-port") + 1]) if "--grpc-port" in extra else None
        self.proc = h.Background.start(
            [python, "-m", "pipectl", "--store", store_url, "serve", "--repo", "train", "--model", MODEL,
             "--handler", HANDLER, "--host", "127.0.0.1", "--port", str(self.port), *extra], log_path=log_path)

    def get(self, path: str) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise h.BenchError(f"pipectl serve exited {self.proc.returncode}: "
                                   f"{h.log_tail(self.proc.log_path, 5)}")
            try:
                if self.get("/ping")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise h.BenchError("pipectl serve did not become ready")

    def version(self) -> str | None:
        return self.get(f"/models/{MODEL}")[1][0]["modelVersion"]

    def stop(self) -> None:
        h.Background.stop(self.proc)


def load(port: int, concurrency: int, seconds: float, warmup: int = 50) -> tuple[float, list[float]]:
    """Send single-row predictions from ``concurrency`` threads (one
    keep-alive connection each) for ``seconds``; return (requests/s,
    latencies in seconds). Raises BenchError on any non-200 answer."""
    body = json.dumps(ROW).encode()
    headers = {"Content-Type": "application/json"}
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    start = threading.Barrier(concurrency + 1)
    stop_at = [math.inf]  # set once every thread is past the barrier

    def client(mine: list[float]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            def one() -> None:
                conn.request("POST", f"/predictions/{MODEL}", body, headers)
                response = conn.getresponse()
                data = response.read()
                if response.status != 200:
                    raise h.BenchError(f"status {response.status}: {data[:200]!r}")
            for _ in range(warmup):
                one()
            start.wait()
            while time.perf_counter() < stop_at[0]:
                t = time.perf_counter()
                one()
                mine.append(time.perf_counter() - t)
        except Exception as e:  # noqa: BLE001  (reported below, after every thread ends)
            errors.append(f"{type(e).__name__}: {e}")
            start.abort()
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(latencies[i],)) for i in range(concurrency)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise h.BenchError(f"serving load at concurrency {concurrency}: {errors[0]}")
    merged = [x for mine in latencies for x in mine]
    return len(merged) / elapsed, merged


def _request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, float]:
    """One request on a new connection: (status, seconds)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        t = time.perf_counter()
        conn.request(method, path, body, {"Content-Type": "application/json"} if body else {})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - t
    finally:
        conn.close()


def _pings(port: int, seconds: float) -> list[float]:
    """``GET /ping`` every 20 ms for ``seconds``: latencies in seconds."""
    latencies = []
    stop_at = time.perf_counter() + seconds
    while time.perf_counter() < stop_at:
        status, took = _request(port, "GET", "/ping")
        if status != 200:
            raise h.BenchError(f"/ping answered {status}")
        latencies.append(took)
        time.sleep(0.02)
    return latencies


def _memory_kib(pid: int, field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak) of process ``pid``, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _abuser(port: int, rows: int, expected: int, seconds: float, results) -> None:
    """In a process of its own (so that its work does not slow the pinging
    process's threads): send ``rows``-row JSON bodies for ``seconds``, each
    expected to get ``expected``; put (seconds per request list, error or
    None) on ``results``."""
    body = json.dumps([ROW] * rows).encode()
    took: list[float] = []
    error = None
    stop_at = time.perf_counter() + seconds
    try:
        while time.perf_counter() < stop_at:
            status, t = _request(port, "POST", f"/predictions/{MODEL}", body)
            if status != expected:
                raise h.BenchError(f"a {len(body):,}-byte request got {status}, not {expected}")
            took.append(t)
    except Exception as e:  # noqa: BLE001  (reported by the parent)
        error = str(e)
    results.put((rows, took, error))


def abuse(server: Server, seconds: float) -> dict:
    """Two client processes sending 52 MB JSON bodies of 2.9 million rows
    (each must get a 413) and two sending 10,000-row batches (each must get
    a 200), for ``seconds``, while ``/ping`` is timed from this process; and
    ``/ping`` on the idle server before. Returns idle and loaded ping
    latencies, the seconds to each 413, and the server's RSS before and its
    peak (KiB). Raises BenchError on any other answer."""
    import multiprocessing
    idle = _pings(server.port, 2.0)
    rss_before = _memory_kib(server.proc.pid, "VmRSS")
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    clients = [spawn.Process(target=_abuser, args=(server.port, rows, expected, seconds, results))
               for rows, expected in ((2_900_000, 413),) * 2 + ((10_000, 200),) * 2]
    for c in clients:
        c.start()
    time.sleep(1.0)  # the clients' interpreters start and build their bodies
    loaded = _pings(server.port, seconds - 1.0)
    outcomes = [results.get(timeout=600) for _ in clients]
    for c in clients:
        c.join()
    errors = [e for _, _, e in outcomes if e]
    if errors:
        raise h.BenchError(f"serving under abuse: {errors[0]}")
    return {"idle": idle, "loaded": loaded, "refused": [t for rows, took, _ in outcomes if rows > 10_000 for t in took],
            "rss_before": rss_before, "rss_peak": _memory_kib(server.proc.pid, "VmHWM")}


def triton_rows(store: str, server: Server, seconds: float) -> list[dict]:
    """A 1,000-row infer request through ``tritonclient`` (the standard
    KServe v2 / Triton client, the test extra) at its defaults, binary
    tensors over HTTP and gRPC, beside the same request in JSON over
    HTTP: median ms per request over ``seconds`` each. Rows say why when
    tritonclient is missing."""
    try:
        import numpy as np
        import tritonclient.grpc as triton_grpc
        import tritonclient.http as triton_http
    except ImportError as e:
        return [row(store, "8 serving: tritonclient 1,000-row infer", None, None, "ms",
                    f"skipped: tritonclient[http,grpc] missing ({e})", False)]
    matrix = np.array([ROW] * 1000, dtype=np.float32)

    def timed(infer) -> list[float]:
        for _ in range(3):
            infer()
        took, stop_at = [], time.perf_counter() + seconds
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            infer()
            took.append(time.perf_counter() - t)
        return took

    def http_infer(binary: bool):
        client = triton_http.InferenceServerClient(f"127.0.0.1:{server.port}")
        tensor = triton_http.InferInput("input-0", list(matrix.shape), "FP32")
        tensor.set_data_from_numpy(matrix, binary_data=binary)
        outputs = [triton_http.InferRequestedOutput(name, binary_data=binary)
                   for name in ("predictions", "probabilities")]
        return lambda: client.infer(MODEL, [tensor], outputs=outputs).as_numpy("probabilities")

    grpc_client = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    grpc_tensor = triton_grpc.InferInput("input-0", list(matrix.shape), "FP32")
    grpc_tensor.set_data_from_numpy(matrix)
    h.log(f"serving: tritonclient 1,000-row requests, {seconds:g} s each for JSON, binary HTTP, gRPC")
    json_ms = percentile(timed(http_infer(False)), 50) * 1e3
    out = []
    for what, infer in (("binary tensors over HTTP", http_infer(True)),
                        ("gRPC", lambda: grpc_client.infer(MODEL, [grpc_tensor]).as_numpy("probabilities"))):
        ms = percentile(timed(infer), 50) * 1e3
        out.append(row(store, f"8 serving: tritonclient 1,000-row infer, {what}", ms, json_ms, "ms",
                       "median per request, the client's encoding and decoding included; baseline: the same "
                       "request with binary_data=False (JSON tensors) over HTTP", False, "JSON tensors"))
    return out


def forward_baseline(python: str, model_dir: str, calls: int) -> tuple[float, list[float]]:
    """In-process forward passes of one row: (calls/s, latencies in seconds)."""
    result = h.run([python, "-c", _FORWARD, os.path.dirname(HANDLER), model_dir, json.dumps(ROW), str(calls)],
                   timeout=600)
    out = json.loads(result.text().strip().splitlines()[-1])
    return calls / out["seconds"], out["latencies"]


def download_model(store_url: str, dest: str) -> list[tuple[str, str]]:
    """Copy every file of train@master into ``dest``; return (commit path, local path) pairs."""
    from pipectl.pfs import PFS
    from pipectl.store import open_store
    pfs = PFS(open_store(store_url))
    files = []
    for path, _ in pfs.iter_files("train", "master"):
        local = os.path.join(dest, path.lstrip("/"))
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "wb") as out:
            pfs.get_file("train", "master", path, out)
        files.append((path, local))
    return files


def reload_seconds(server: Server, store_url: str, files: list[tuple[str, str]], timeout: float = 60) -> float:
    """Land a new model commit on train@master (the same files again) and
    return the seconds until the server reports the new version."""
    from pipectl.pfs import PFS
    from pipectl.store import open_store
    pfs = PFS(open_store(store_url))
    sources = [(path, io.BytesIO(pathlib.Path(local).read_bytes())) for path, local in files]
    commit = pfs.put_files("train", "master", sources, overwrite=True)[0]
    landed = time.perf_counter()
    while time.perf_counter() - landed < timeout:
        if server.version() == commit.id:
            return time.perf_counter() - landed
        time.sleep(0.01)
    raise h.BenchError(f"the server did not load model commit {commit.id} within {timeout} s")


def row(store: str, workload: str, pipectl: float | None, baseline: float | None, unit: str,
        notes: str, higher_is_better: bool, baseline_name: str = "in-process forward pass",
        target: str = "", target_met: bool | None = None) -> dict:
    """One result row; ``ratio`` > 1 means pipectl did better (see the
    module doc). ``target`` states a goal, ``target_met`` whether it was reached."""
    ratio = overhead = None
    if pipectl and baseline:
        ratio = pipectl / baseline if higher_is_better else baseline / pipectl
        overhead = 1 / ratio
    return {"store": store, "workload": workload, "pipectl": pipectl, "baseline": baseline,
            "baseline_name": baseline_name if baseline is not None else "-",
            "ratio": ratio, "overhead": overhead, "unit": unit, "notes": notes,
            "target": target, "target_met": target_met}


def has_model(store_url: str) -> bool:
    """Whether ``train@master`` of the store has a commit."""
    from pipectl.errors import NotFound
    from pipectl.pfs import PFS
    from pipectl.store import open_store
    try:
        PFS(open_store(store_url)).inspect_commit("train", "master")
        return True
    except NotFound:
        return False


def bench_serving(quick: bool, store_url: str | None = None) -> list[dict]:
    """Measure ``pipectl serve`` (see the module doc) on the model in
    ``train@master`` of ``store_url`` (``file://`` or ``s3://``, e.g. the
    demo's ``file://…/build/demo-store``). When that store has no model
    yet, or none is given (then a temporary local store is used), the model
    is trained into it first with ``scripts/demo_iris.sh``. Returns result
    rows (dicts: store, workload, pipectl, baseline, baseline_name, ratio,
    overhead, unit, notes), or one row with the reason when the stage
    environment cannot serve. Raises BenchError when a step fails."""
    python = stage_python()
    reason = missing_requirements(python)
    if reason:
        return [row("local", "serving", None, None, "req/s", f"skipped: {reason}", True)]
    seconds, calls = (3.0, 3000) if quick else (10.0, 20000)
    scratch = tempfile.mkdtemp(prefix="pipectl-bench-serving-")
    server = None
    try:
        store_url = store_url or "file://" + os.path.join(scratch, "store")
        if not has_model(store_url):
            h.log("serving: training the Iris model (scripts/demo_iris.sh)")
            h.run(["bash", os.path.join(REPO, "scripts", "demo_iris.sh")],
                  env=dict(os.environ, PIPECTL_STORE=store_url, PIPECTL_STAGE_PYTHON=python), timeout=1200)
        store = store_url.split(":", 1)[0].replace("file", "local")
        files = download_model(store_url, os.path.join(scratch, "model"))
        h.log("serving: in-process forward pass baseline")
        base_rate, base_lat = forward_baseline(python, os.path.join(scratch, "model"), calls)
        unbatched = Server(python, store_url, os.path.join(scratch, "serve-unbatched.log"), "--max-batch-size", "1")
        unbatched.wait_ready()
        h.log(f"serving: {seconds:g} s of single-row predictions at concurrency 8, batching off")
        unbatched_rate, _ = load(unbatched.port, 8, seconds)
        unbatched.stop()
        server = Server(python, store_url, os.path.join(scratch, "serve.log"), "--grpc-port", str(h.free_port()))
        server.wait_ready()
        rows = []
        for concurrency in (1, 8):
            h.log(f"serving: {seconds:g} s of single-row predictions at concurrency {concurrency}")
            rate, lat = load(server.port, concurrency, seconds)
            what = f"8 serving: POST /predictions, 1 row, concurrency {concurrency}"
            common = (f"{len(lat)} requests over keep-alive HTTP/1.1 from {concurrency} client thread(s); "
                      f"baseline: {calls} in-process predict_proba calls, one thread")
            if concurrency == 8:
                common += (f"; dynamic batching on (default: up to {BATCH} rows, no added delay); "
                           f"with --max-batch-size 1: {unbatched_rate:,.0f} req/s")
                rows.append(row(store, f"{what}: throughput", rate, base_rate, "req/s", common, True,
                                target=">= 1.0x", target_met=rate >= base_rate))
            else:
                rows.append(row(store, f"{what}: throughput", rate, base_rate, "req/s", common, True))
            for q in (50, 99):
                ms, base_ms = percentile(lat, q) * 1e3, percentile(base_lat, q) * 1e3
                if concurrency == 1 and q == 99:
                    rows.append(row(store, f"{what}: p{q} latency", ms, base_ms, "ms", common, False,
                                    target=f"adds <= {P99_OVERHEAD_MS:g} ms",
                                    target_met=ms - base_ms <= P99_OVERHEAD_MS))
                else:
                    rows.append(row(store, f"{what}: p{q} latency", ms, base_ms, "ms", common, False))
        rows.extend(triton_rows(store, server, seconds))
        h.log(f"serving: {seconds * 2:g} s of 52 MB bodies and 10,000-row batches, /ping timed")
        seen = abuse(server, seconds * 2)
        notes = (f"{len(seen['loaded'])} pings while 2 client processes sent 52 MB bodies of 2.9M rows "
                 f"({len(seen['refused'])} answered 413) and 2 sent 10,000-row batches; "
                 "baseline: /ping on the idle server")
        for q in (50, 99):
            rows.append(row(store, f"8 serving: /ping p{q} under abuse", percentile(seen["loaded"], q) * 1e3,
                            percentile(seen["idle"], q) * 1e3, "ms", notes, False, "idle /ping"))
        rows.append(row(store, "8 serving: 52 MB body of 2.9M rows answered 413", percentile(seen["refused"], 50),
                        None, "s", "median, upload over loopback included", False))
        rows.append(row(store, "8 serving: peak memory under abuse", seen["rss_peak"] / 1024,
                        seen["rss_before"] / 1024, "MiB", "VmHWM of the server process; baseline: its RSS before",
                        False, "RSS before"))
        reload = reload_seconds(server, store_url, files)
        rows.append(row(store, "8 serving: reload after a new model commit", reload, None, "s",
                        "from the commit landing to the server answering with it; "
                        "poll interval 1 s, so about 0.5 s plus load time is expected", False))
        return rows
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s per concurrency level instead of 10 s.")
    parser.add_argument("--store", help="A store whose train@master holds (or will hold) the Iris model "
                                        "(default: a temporary one).")
    args = parser.parse_args(argv)
    try:
        rows = bench_serving(args.quick, args.store)
    finally:
        h.Background.stop_all()
    width = max(len(r["workload"]) for r in rows)

    def fmt(v):
        return "-" if v is None else f"{v:,.3f}"

    for r in rows:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.3f}x"
        print(f"{r['workload']:<{width}}  {fmt(r['pipectl']):>10} {r['unit']:<5}  "
              f"baseline {fmt(r['baseline']):>10}  ratio {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
