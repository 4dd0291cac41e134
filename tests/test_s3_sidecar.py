"""Pachyderm's S3 sidecar: ``pfs.s3: true`` inputs and ``s3_out: true``.

User code that only speaks S3 (boto3 at ``$S3_ENDPOINT``, as Kubeflow- and
Spark-style code does) reads its input bucket, which is not copied into
``/pfs``, and writes bucket ``out``, multipart upload included; what it
wrote is the output commit. Real CLI, real controller and worker processes."""

from __future__ import annotations

import hashlib
import http.client
import json
import textwrap
import time
import urllib.parse

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from helpers import assert_clean_error, file_bytes, ok, put

from pipectl.client import Client
from pipectl.server.s3.sidecar import Sidecar

LOCAL = pytest.mark.parametrize("store_url", ["local"], indirect=True)

USER_CODE = textwrap.dedent("""
    import io, os, boto3
    from boto3.s3.transfer import TransferConfig
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import ClientError
    unsigned = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], config=Config(signature_version=UNSIGNED))
    try:  # the sidecar answers its own worker's user code only, which has its credentials
        unsigned.list_buckets()
        raise SystemExit("an unsigned request was answered")
    except ClientError as e:
        assert e.response["Error"]["Code"] == "AccessDenied", e.response
    s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"])  # credentials from the environment
    assert not os.path.exists("/pfs/images"), "an S3 input is not copied in"
    names = sorted(b["Name"] for b in s3.list_buckets()["Buckets"])
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="images")["Contents"]]
    for key in keys:
        body = s3.get_object(Bucket="images", Key=key)["Body"].read()
        s3.put_object(Bucket="out", Key="upper/" + key, Body=body.upper())
    s3.put_object(Bucket="out", Key="scratch", Body=b"deleted before the datum ends")
    s3.delete_object(Bucket="out", Key="scratch")
    big = bytes(range(256)) * (6 * 4096)  # 6 MiB: two parts of a multipart upload
    s3.upload_fileobj(io.BytesIO(big), "out", "big.bin",
                      Config=TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20))
    s3.put_object(Bucket="out", Key="buckets", Body=" ".join(names).encode())
    with open("/pfs/out/beside", "w") as f:  # /pfs/out still works beside bucket out
        f.write("written to /pfs/out")
""")


@LOCAL
def test_user_code_reads_and_writes_only_through_s3(cli, pfs, spec_file, run_controller):
    pfs.create_repo("images")
    put(pfs, "images", {"/a.txt": "alpha\n", "/sub/b.txt": "beta\n"})
    spec = {"pipeline": {"name": "upper"}, "s3_out": True,
            "input": {"pfs": {"repo": "images", "glob": "/", "s3": True}},
            "transform": {"image": "local", "cmd": ["python3", "-c", USER_CODE]}}
    ok(cli("create-pipeline", "-f", spec_file(spec)))
    run_controller()
    [job] = json.loads(ok(cli("list-job", "-p", "upper", "--raw")).out)
    assert job["state"] == "success", job
    out = file_bytes(pfs, "upper")
    assert out.pop("/big.bin") == bytes(range(256)) * (6 * 4096)
    assert out == {"/upper/a.txt": b"ALPHA\n", "/upper/sub/b.txt": b"BETA\n", "/buckets": b"images out",
                   "/beside": b"written to /pfs/out"}
    commit = json.loads(ok(cli("inspect-commit", "upper", "master", "--raw")).out)
    assert any(p["repo"] == "images" for p in commit["provenance"])  # provenance as for any input


@LOCAL
@pytest.mark.parametrize("spec_input, needle", [
    ({"pfs": {"repo": "images", "glob": "/*", "s3": True}},
     "input.pfs.glob: an S3 input's glob must be \"/\""),
    ({"union": [{"pfs": {"repo": "images", "glob": "/", "s3": True}}, {"pfs": {"repo": "other", "glob": "/*"}}]},
     "input.union.0.pfs.s3: S3 inputs in union expressions are not supported"),
])
def test_s3_inputs_pachyderm_refuses_are_refused(cli, store_url, spec_file, spec_input, needle):
    spec = {"pipeline": {"name": "p"}, "input": spec_input, "transform": {"image": "local", "cmd": ["true"]}}
    assert_clean_error(cli("create-pipeline", "-f", spec_file(spec)), needle)


@pytest.fixture
def sidecar(store):
    """A sidecar with bucket ``out`` only, listening (no worker: the test
    plays the worker, calling take_outputs() as each datum try starts)."""
    sidecar = Sidecar(Client(store), {}, out=True)
    sidecar.start()
    parsed = urllib.parse.urlsplit(sidecar.endpoint)
    for _ in range(100):
        try:
            http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=1).connect()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield sidecar
    finally:
        sidecar.stop()


def _held_back(sidecar, method: str, target: str, body: bytes) -> http.client.HTTPConnection:
    """A request signed as boto3 signs it, sent but for its body's last byte
    (user code still sending it when its try ends); finish it with
    ``conn.send(body[-1:])``."""
    parsed = urllib.parse.urlsplit(sidecar.endpoint)
    request = AWSRequest(method, sidecar.endpoint + target, data=body,
                         headers={"x-amz-content-sha256": hashlib.sha256(body).hexdigest()})
    SigV4Auth(Credentials(sidecar.token, sidecar.token), "s3", "us-east-1").add_auth(request)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", parsed.netloc)
    for name, value in request.headers.items():
        conn.putheader(name, value)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body[:-1])
    time.sleep(0.5)  # the sidecar has dispatched it and is reading the body
    return conn


@LOCAL
def test_a_write_of_an_ended_try_never_reaches_the_next(sidecar):
    """A PutObject or DeleteObjects into ``out`` still under way when the
    worker starts the next try (take_outputs(); e.g. user code killed by
    datum_timeout while the sidecar stored its large body) is refused,
    409, and neither adds to nor deletes from the next try's outputs."""
    s3 = boto3.client("s3", endpoint_url=sidecar.endpoint, aws_access_key_id=sidecar.token,
                      aws_secret_access_key=sidecar.token, region_name="us-east-1")
    body = b"written by try 1" * 1000
    put_ = _held_back(sidecar, "PUT", "/out/stale.txt", body)
    delete = _held_back(sidecar, "POST", "/out?delete",
                        b"<Delete><Object><Key>kept.txt</Key></Object></Delete>")
    assert sidecar.take_outputs() == {}  # try 1 ends; try 2 starts with an empty out ...
    s3.put_object(Bucket="out", Key="kept.txt", Body=b"written by try 2")  # ... and writes
    answers = []
    for conn, last in ((put_, body[-1:]), (delete, b">")):
        conn.send(last)  # the ended try's requests finish
        response = conn.getresponse()
        answers.append((response.status, response.read()))
        conn.close()
    try2 = sidecar.take_outputs()
    assert sorted(try2) == ["/kept.txt"], "a write of the previous try changed the next one's outputs"
    for status, answer in answers:  # the client is told its write was not kept
        assert status == 409 and b"<Code>OperationAborted</Code>" in answer, (status, answer)
    s3.put_object(Bucket="out", Key="again.txt", Body=b"try 3")  # the sidecar goes on as usual
    assert sorted(sidecar.take_outputs()) == ["/again.txt"]
