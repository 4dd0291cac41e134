"""Workload 10: the S3 gateway's throughput against the store underneath.

A ``pipectl server --s3-gateway-port`` process (open, on loopback) receives
one big object of random bytes by boto3 ``put_object`` (one PUT request,
the body streamed from the file; over plain HTTP botocore also hashes it
with SHA-256 to sign it) and by ``upload_file`` (boto3's managed transfer:
8 MiB parts on 10 threads, as ``aws s3 cp`` uploads), and sends it back by
``get_object`` (the body read in 1 MiB pieces and dropped). Every put is of
bytes never stored before (a fresh random file each time), so nothing is
deduplicated.

The baseline is the backing store's own throughput over the same protocol,
with the same calls, measured in the same run and taking turns with the
gateway:

- on the S3 store, the versitygw server the store lives on, called directly
  (a bucket of its own): what the gateway adds to its backing store;
- on the local store, versitygw serving a directory on the same disk (its
  posix backend stores each object as a plain file): a local directory's
  raw throughput as an S3 server written in Go gives it.

Target: the gateway at 0.7x the baseline or better. The notes give two more
figures: the operations layer's put-file and get-file of the same kind of
file in the benchmark's process (no HTTP), with its ratio to the baseline
(on the S3 store the floor of any gateway over that layer: put-file maps
the file and stores it with no copy and no HTTP in front, get-file reads
the same versitygw with no HTTP behind, so a gateway that must also
receive or send every byte cannot beat them; a floor below 0.7x is said
so in the notes), and the HTTP ceiling, the same
boto3 calls against a bare uvicorn app in its own process that discards
what it is sent and sends bytes from memory (``python -m
benchmarks.s3gateway PORT SIZE``): what any gateway written this way could
reach here, whatever it did with the bytes. On the S3 store a GET has one
more: the relay, the same bare app passing on the object it reads from the
store's versitygw by the direct call, as one streamed request (botocore, 1
MiB pieces, ``python -m benchmarks.s3gateway PORT SIZE ENDPOINT/BUCKET``):
what the plainest gateway in front of that server reaches, one that keeps
nothing and reads nothing ahead. On the local store the
in-process figures are far above that ceiling (get-file reads the page
cache at memory speed), so no S3 server, pipectl's or versitygw, comes
near them.
"""

from __future__ import annotations

import os
import subprocess
import time

from . import harness as h
from .report import Row

MiB = 1024 * 1024
MB = 1e6
RATIO = 0.7
"""Target: the gateway's MB/s at least this fraction of its backing store's over S3."""


def _listening(url: str) -> bool:
    import requests
    try:
        requests.get(url, timeout=5)
        return True
    except (requests.ConnectionError, requests.Timeout):  # not yet listening, or too busy to answer yet
        return False


def _start(args: list[str], env: dict, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    h.wait_for(lambda: _listening(f"http://127.0.0.1:{port}"), 60, 0.1, "the server", alive=proc)
    return proc


def _s3(endpoint: str, key: str = "bench", secret: str = "bench"):
    """A boto3 S3 client of ``endpoint`` (path-style addressing: bucket names hold dots)."""
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))


def _put(s3, bucket: str, path: str, key: str, multipart: bool) -> float:
    import boto3
    began = time.perf_counter()
    if multipart:
        config = boto3.s3.transfer.TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)
        s3.upload_file(path, bucket, key, Config=config)
    else:
        with open(path, "rb") as body:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
    return time.perf_counter() - began


def _get(s3, bucket: str, key: str, size: int) -> float:
    began = time.perf_counter()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    got = sum(len(piece) for piece in body.iter_chunks(MiB))
    if got != size:
        raise h.BenchError(f"GET {key}: {got} bytes, expected {size}")
    return time.perf_counter() - began


def bench_s3_gateway(quick: bool, store: str, url: str, env: dict, workdir: str, raw, raw_what: str) -> list[Row]:
    """Rows for workload 10 on store ``url`` (of bench store ``store``);
    ``raw``: the baseline S3 server (an ``S3Endpoint``: ``raw_what`` names
    it), where a bucket ``bench`` is made; scratch files in ``workdir``."""
    import sys

    from pipectl.client import Client
    size = (64 if quick else 256) * MiB
    repeats = 3
    client = Client.open(url)
    client.create_repo("bench")
    path = os.path.join(workdir, "object.bin")
    names = ("ops put", "ops get", "relay get") + tuple(f"{who} {op}" for who in ("gateway", "raw", "ceiling")
                                                       for op in ("put", "multipart", "get"))
    times: dict[str, list[float]] = {k: [] for k in names}
    port, ceiling_port, relay_port = h.free_port(), h.free_port(), h.free_port()
    helpers: list[subprocess.Popen] = []
    try:
        helpers.append(_start(h.PIPECTL + ["server", "--port", str(h.free_port()), "--s3-gateway-port", str(port)],
                              env, port))
        helpers.append(_start([sys.executable, "-m", "benchmarks.s3gateway", str(ceiling_port), str(size)], env,
                              ceiling_port))
        direct = _s3(raw.endpoint, raw.access_key, raw.secret_key)
        direct.create_bucket(Bucket="bench")
        clients = {"gateway": (_s3(f"http://127.0.0.1:{port}"), "master.bench"), "raw": (direct, "bench"),
                   "ceiling": (_s3(f"http://127.0.0.1:{ceiling_port}"), "x")}
        readers = dict(clients)
        if store == "s3":  # the relay reads the objects the direct calls put
            helpers.append(_start([sys.executable, "-m", "benchmarks.s3gateway", str(relay_port), str(size),
                                   f"{raw.endpoint}/bench"], {**env, **raw.env()}, relay_port))
            readers["relay"] = (_s3(f"http://127.0.0.1:{relay_port}"), "x")
        for k in range(repeats):
            h.make_big_file(path, size)  # new bytes each time: nothing deduplicated
            h.settle()
            began = time.perf_counter()
            client.put_files("bench", "master", [(f"/ops{k}.bin", path)], overwrite=True)
            times["ops put"].append(time.perf_counter() - began)
            for op, multipart in (("put", False), ("multipart", True)):
                for who, (s3, bucket) in clients.items():
                    h.make_big_file(path, size)
                    h.settle()
                    times[f"{who} {op}"].append(_put(s3, bucket, path, f"{op}{k}.bin", multipart))
        for k in range(repeats):
            with open(os.devnull, "wb") as sink:
                began = time.perf_counter()
                if client.get_file("bench", "master", f"/ops{k}.bin", sink) != size:
                    raise h.BenchError("get-file returned a short file")
                times["ops get"].append(time.perf_counter() - began)
            for who, (s3, bucket) in readers.items():
                times[f"{who} get"].append(_get(s3, bucket, f"put{k}.bin", size))
        os.unlink(path)
    finally:
        for proc in helpers:
            proc.terminate()
            proc.wait(15)

    def rate(name: str) -> float:
        return size / MB / h.best(times[name])
    rows = []
    for label, op, ops in [("PUT (boto3 put_object)", "put", "ops put"),
                           ("PUT (boto3 upload_file, 8 MiB parts)", "multipart", "ops put"),
                           ("GET (boto3 get_object)", "get", "ops get")]:
        value, base, top, inproc = rate(f"gateway {op}"), rate(f"raw {op}"), rate(f"ceiling {op}"), rate(ops)
        verb = "put-file" if op != "get" else "get-file"
        floor, extra = "", {}
        if store == "s3" and inproc < RATIO * base:  # the operations layer alone is slower than the target
            floor = (f" (floor: {inproc / base:.2f}x of the direct calls, below {RATIO}x, so no gateway over "
                     f"this layer reaches the target)")
        if times.get(f"relay {op}"):
            relay = rate(f"relay {op}")
            extra = {"relay_mb_s": round(relay, 1), "relay_ratio": round(relay / base, 2)}
            floor += (f"; relay (a bare app passing on the direct GET): {relay:,.0f} MB/s, {relay / base:.2f}x the "
                      f"baseline, the gateway at {value / relay:.2f}x of it")
        rows.append(Row(store, f"10 S3 gateway {label} {size // MiB} MiB", round(value, 1), "MB/s",
                        f"best of {repeats}", round(base, 1), f"the same calls to {raw_what}",
                        target=f">= {RATIO}x the baseline", target_met=value >= RATIO * base,
                        samples=times[f"gateway {op}"], baseline_samples=times[f"raw {op}"],
                        extra={"http_ceiling_mb_s": round(top, 1), "in_process_mb_s": round(inproc, 1),
                               "in_process_ratio": round(inproc / base, 2), **extra},
                        notes=f"HTTP ceiling (the same calls to a bare app): {top:,.0f} MB/s, the gateway at "
                              f"{value / top:.2f}x of it; {verb} in-process: {inproc:,.0f} MB/s, "
                              f"{inproc / base:.2f}x the baseline{floor}"))
    return rows


def _ceiling_app(size: int, upstream: str | None = None):
    """A bare ASGI app: PUT (and the multipart calls) read the body and
    drop it; GET sends ``size`` bytes from memory in 4 MiB pieces, or with
    ``upstream`` (``ENDPOINT/BUCKET``; the key pair from the AWS variables)
    the object of the same key read from that S3 server, passed on in the
    1 MiB pieces botocore reads."""
    from starlette.applications import Starlette
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route
    piece = os.urandom(4 * MiB)
    source = None
    if upstream is not None:
        endpoint, bucket = upstream.rsplit("/", 1)
        source = _s3(endpoint, os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])

    async def handle(request):
        async for _ in request.stream():
            pass
        _, _, key = request.path_params["path"].partition("/")
        if request.method == "GET" and source is not None and key:
            got = source.get_object(Bucket=bucket, Key=key)
            return StreamingResponse(got["Body"].iter_chunks(MiB),
                                     headers={"Content-Length": str(got["ContentLength"]), "ETag": got["ETag"]})
        if request.method == "GET":
            def body():
                for _ in range(size // len(piece)):
                    yield piece
                yield piece[:size % len(piece)]
            return StreamingResponse(body(), headers={"Content-Length": str(size), "ETag": '"x"'})
        if "uploads" in request.query_params:
            return Response(b'<?xml version="1.0"?><InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>'
                            b"<UploadId>u</UploadId></InitiateMultipartUploadResult>", media_type="application/xml")
        if request.method == "POST":
            return Response(b'<?xml version="1.0"?><CompleteMultipartUploadResult><ETag>"x"</ETag>'
                            b"</CompleteMultipartUploadResult>", media_type="application/xml")
        return Response(headers={"ETag": '"x"'})
    return Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "PUT", "POST"])])


if __name__ == "__main__":  # the ceiling's server: python -m benchmarks.s3gateway PORT SIZE [ENDPOINT/BUCKET]
    import sys

    import uvicorn
    uvicorn.run(_ceiling_app(int(sys.argv[2]), *sys.argv[3:4]), host="127.0.0.1", port=int(sys.argv[1]),
                log_level="warning")
