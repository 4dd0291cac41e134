"""Pachyderm's S3 sidecar: ``pfs.s3: true`` inputs and ``s3_out: true``.

User code that only speaks S3 (boto3 at ``$S3_ENDPOINT``, as Kubeflow- and
Spark-style code does) reads its input bucket, which is not copied into
``/pfs``, and writes bucket ``out``, multipart upload included; what it
wrote is the output commit. Real CLI, real controller and worker processes."""

from __future__ import annotations

import json
import textwrap

import pytest
from helpers import assert_clean_error, file_bytes, ok, put

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
