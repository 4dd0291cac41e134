"""The S3 gateway (``pipectl server --s3-gateway-port``), a real server
process on loopback ports, spoken to by clients no one here wrote: boto3,
the AWS CLI, pandas through s3fs; and, for aws-chunked bodies (which
botocore sends only over HTTPS), boto3 against the gateway app under a
real uvicorn with TLS. Buckets are Pachyderm's: ``branch.repo``,
``commit.branch.repo``."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import hmac
import http.client
import io
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.parse
import zlib

import blake3
import boto3
import botocore
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from helpers import READ, WRITE, api_server, free_port, run_ok, wait_for

from pipectl.pfs.objects import CHUNK_MAX, WINDOW, chunk_lengths

LOCAL = pytest.mark.parametrize("store_url", ["local"], indirect=True)
MiB = 1 << 20


class Gateway:
    """A running gateway: ``endpoint`` and ``client(key, secret)`` (boto3, path style)."""

    def __init__(self, endpoint: str, api: str):
        self.endpoint, self.api = endpoint, api

    def client(self, key: str = WRITE, secret: str | None = None, verify: bool = True, **config):
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=key,
                            aws_secret_access_key=secret or key, region_name="us-east-1", verify=verify,
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config))


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    return False


@pytest.fixture
def gateway(store_url, tmp_path):
    """``pipectl server`` with tokens (helpers.READ, WRITE) and its S3 gateway on another port."""
    port = free_port()
    with api_server(tmp_path, "--s3-gateway-port", str(port)) as server:
        wait_for(lambda: _listening(port), 30, 0.05, "the S3 gateway")
        yield Gateway(f"http://127.0.0.1:{port}", server.url)


@pytest.fixture
def s3(gateway):
    """A boto3 client of the gateway with the write token."""
    return gateway.client()


def error_of(call, *args, **kwargs) -> tuple[int, str]:
    """``(HTTP status, S3 error code)`` of a call that must fail."""
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call(*args, **kwargs)
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def commits(repo: str) -> list[dict]:
    return json.loads(run_ok("list-commit", repo, "--raw").out)


@LOCAL
def test_put_get_ranges_head_and_etag_is_the_content_hash(s3):
    s3.create_bucket(Bucket="master.data")
    body = os.urandom(CHUNK_MAX + 17)  # more than the largest chunk: ranges cross chunks
    put = s3.put_object(Bucket="master.data", Key="blobs/one.bin", Body=body)
    # the file's content hash: BLAKE3 of its chunks' hashes, newline-joined, for a file of several chunks
    cuts = list(itertools.accumulate(chunk_lengths(body), initial=0))
    chunks = [blake3.blake3(body[a:b]).hexdigest() for a, b in itertools.pairwise(cuts)]
    assert len(chunks) > 1
    expected = f'"{blake3.blake3(chr(10).join(chunks).encode()).hexdigest()}"'
    assert put["ETag"] == expected
    inspected = json.loads(run_ok("inspect-file", "data", "master", "/blobs/one.bin", "--raw").out)
    assert f'"{inspected["hash"]}"' == expected and put["VersionId"] == commits("data")[0]["id"]

    got = s3.get_object(Bucket="master.data", Key="blobs/one.bin")
    assert got["Body"].read() == body and got["ETag"] == expected and got["ContentLength"] == len(body)
    for header, start, end in [("bytes=0-9", 0, 9), ("bytes=100-", 100, len(body) - 1),
                               ("bytes=-5", len(body) - 5, len(body) - 1),
                               ("bytes=2097150-2097159", 2097150, 2097159),
                               (f"bytes=10-{10 * len(body)}", 10, len(body) - 1)]:
        part = s3.get_object(Bucket="master.data", Key="blobs/one.bin", Range=header)
        assert part["ResponseMetadata"]["HTTPStatusCode"] == 206, header
        assert part["ContentRange"] == f"bytes {start}-{end}/{len(body)}", header
        assert part["Body"].read() == body[start:end + 1], header
    assert error_of(s3.get_object, Bucket="master.data", Key="blobs/one.bin",
                    Range=f"bytes={len(body)}-") == (416, "InvalidRange")
    head = s3.head_object(Bucket="master.data", Key="blobs/one.bin")
    assert head["ContentLength"] == len(body) and head["ETag"] == expected and head["AcceptRanges"] == "bytes"
    assert error_of(s3.head_object, Bucket="master.data", Key="blobs/none")[0] == 404
    assert error_of(s3.get_object, Bucket="master.data", Key="blobs") == (404, "NoSuchKey")  # a directory
    s3.put_object(Bucket="master.data", Key="empty", Body=b"")
    assert s3.get_object(Bucket="master.data", Key="empty")["Body"].read() == b""


@LOCAL
def test_list_objects_v1_and_v2_prefix_delimiter_and_pagination(s3):
    s3.create_bucket(Bucket="master.tree")
    keys = ["a.txt", "b/1.txt", "b/2.txt", "b/c/3.txt", "b/c/4.txt", "d/5.txt", "e.txt", "f/g/h/6.txt"]
    for key in keys:
        s3.put_object(Bucket="master.tree", Key=key, Body=key.encode())
    for v2 in (False, True):
        paginator = s3.get_paginator("list_objects_v2" if v2 else "list_objects")
        pages = list(paginator.paginate(Bucket="master.tree", PaginationConfig={"PageSize": 3}))
        assert [len(p.get("Contents", [])) for p in pages] == [3, 3, 2]
        assert [o["Key"] for p in pages for o in p["Contents"]] == keys
        assert [p["IsTruncated"] for p in pages] == [True, True, False]
        top = list(paginator.paginate(Bucket="master.tree", Delimiter="/", PaginationConfig={"PageSize": 2}))
        assert [o["Key"] for p in top for o in p.get("Contents", [])] == ["a.txt", "e.txt"]
        assert [c["Prefix"] for p in top for c in p.get("CommonPrefixes", [])] == ["b/", "d/", "f/"]
        assert len(top) == 3
        under = list(paginator.paginate(Bucket="master.tree", Prefix="b/", Delimiter="/"))
        assert [o["Key"] for p in under for o in p.get("Contents", [])] == ["b/1.txt", "b/2.txt"]
        assert [c["Prefix"] for p in under for c in p.get("CommonPrefixes", [])] == ["b/c/"]
        partial = s3.list_objects_v2(Bucket="master.tree", Prefix="b/c/") if v2 else \
            s3.list_objects(Bucket="master.tree", Prefix="b/c/")
        assert [(o["Key"], o["Size"]) for o in partial["Contents"]] == [("b/c/3.txt", 9), ("b/c/4.txt", 9)]
        assert partial["Contents"][0]["ETag"] == f'"{blake3.blake3(b"b/c/3.txt").hexdigest()}"'
    after = s3.list_objects_v2(Bucket="master.tree", StartAfter="b/c/4.txt", MaxKeys=2)
    assert [o["Key"] for o in after["Contents"]] == ["d/5.txt", "e.txt"] and after["IsTruncated"]
    assert "Contents" not in s3.list_objects_v2(Bucket="master.tree", Prefix="zzz")
    assert s3.list_objects(Bucket="master.tree", Marker="e.txt")["Contents"][0]["Key"] == "f/g/h/6.txt"
    unicode_key = "naïve/ü b+c%.txt"
    s3.put_object(Bucket="master.tree", Key=unicode_key, Body=b"x")
    assert unicode_key in [o["Key"] for o in s3.list_objects_v2(Bucket="master.tree", Prefix="na")["Contents"]]
    assert s3.get_object(Bucket="master.tree", Key=unicode_key)["Body"].read() == b"x"


@LOCAL
def test_buckets_are_branches_and_commits(s3):
    """ListBuckets shows every branch (another project's with its name
    appended); a commit bucket reads that commit and refuses writes;
    versionId reads an older commit; CreateBucket/DeleteBucket as Pachyderm's."""
    s3.create_bucket(Bucket="master.images")
    s3.create_bucket(Bucket="dev.images")
    assert error_of(s3.create_bucket, Bucket="dev.images") == (409, "BucketAlreadyOwnedByYou")
    run_ok("create-repo", "staging/raw")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert names == ["dev.images", "master.images", "master.raw.staging"]
    first = s3.put_object(Bucket="master.images", Key="cat.txt", Body=b"v1")["VersionId"]
    s3.put_object(Bucket="master.images", Key="cat.txt", Body=b"v2")
    s3.put_object(Bucket="master.raw.staging", Key="r.txt", Body=b"staged")
    assert run_ok("get-file", "staging/raw", "master", "/r.txt").out == "staged"
    assert s3.get_object(Bucket="images", Key="cat.txt")["Body"].read() == b"v2"  # one part: master.images
    assert s3.get_object(Bucket="master.images.default", Key="cat.txt")["Body"].read() == b"v2"
    old = f"{first}.master.images"
    assert s3.get_object(Bucket=old, Key="cat.txt")["Body"].read() == b"v1"
    assert s3.get_object(Bucket="master.images", Key="cat.txt", VersionId=first)["Body"].read() == b"v1"
    assert error_of(s3.get_object, Bucket="master.images", Key="cat.txt", VersionId="0" * 32) == (404, "NoSuchVersion")
    assert error_of(s3.head_object, Bucket="master.images", Key="cat.txt", VersionId="v1")[0] == 400
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=old)["Contents"]] == ["cat.txt"]
    assert error_of(s3.put_object, Bucket=old, Key="x", Body=b"1") == (501, "NotImplemented")
    assert error_of(s3.delete_object, Bucket=old, Key="cat.txt") == (501, "NotImplemented")
    assert error_of(s3.create_multipart_upload, Bucket=old, Key="x") == (501, "NotImplemented")
    assert error_of(s3.get_object, Bucket="0123456789abcdef0123456789abcdef.master.images", Key="cat.txt") == \
        (404, "NoSuchBucket")
    assert error_of(s3.list_objects_v2, Bucket="master.nope") == (404, "NoSuchBucket")
    assert error_of(s3.put_object, Bucket="nobranch.images", Key="x", Body=b"1") == (404, "NoSuchBucket")
    assert error_of(s3.list_objects_v2, Bucket="a.b.c.d") == (400, "InvalidBucketName")
    assert error_of(s3.delete_bucket, Bucket="master.images") == (409, "BucketNotEmpty")
    s3.delete_bucket(Bucket="dev.images")
    assert "dev.images" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.get_bucket_versioning(Bucket="master.images")["Status"] == "Enabled"
    s3.head_bucket(Bucket="master.images")
    assert error_of(s3.get_bucket_policy, Bucket="master.images") == (501, "NotImplemented")
    assert error_of(s3.put_bucket_tagging, Bucket="master.images",
                    Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}) == (501, "NotImplemented")
    copied = s3.copy_object(Bucket="master.images", Key="copy/cat.txt", CopySource={"Bucket": old, "Key": "cat.txt"})
    assert copied["CopyObjectResult"]["ETag"] == f'"{blake3.blake3(b"v1").hexdigest()}"'
    assert s3.get_object(Bucket="master.images", Key="copy/cat.txt")["Body"].read() == b"v1"
    assert error_of(s3.put_object, Bucket="master.images", Key="cat.txt/under", Body=b"1")[0] == 409
    assert error_of(s3.put_object, Bucket="master.images", Key="../x", Body=b"1") == (400, "InvalidFilePath")
    assert error_of(s3.put_object, Bucket="master.images", Key="folder/", Body=b"") == (400, "InvalidFilePath")


@LOCAL
def test_deletes_make_one_commit_each(s3):
    s3.create_bucket(Bucket="master.docs")
    for key in ("a", "b", "c", "d/e"):
        s3.put_object(Bucket="master.docs", Key=key, Body=key.encode())
    before = len(commits("docs"))
    s3.delete_object(Bucket="master.docs", Key="a")
    assert len(commits("docs")) == before + 1
    s3.delete_object(Bucket="master.docs", Key="a")  # missing: 204, as S3, and no commit
    s3.delete_object(Bucket="master.docs", Key="d")  # a directory is no object: left alone
    assert len(commits("docs")) == before + 1
    result = s3.delete_objects(Bucket="master.docs", Delete={"Objects": [{"Key": "b"}, {"Key": "c"}, {"Key": "zz"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["b", "c", "zz"] and not result.get("Errors")
    assert len(commits("docs")) == before + 2
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="master.docs")["Contents"]] == ["d/e"]


@LOCAL
def test_multipart_upload_of_20_mib_in_5_mib_parts(s3):
    s3.create_bucket(Bucket="master.big")
    data = os.urandom(20 * MiB + 123)
    transfer = boto3.s3.transfer.TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_fileobj(io.BytesIO(data), "master.big", "models/weights.bin", Config=transfer)
    assert len(commits("big")) == 1  # the parts make no commit; completing makes one
    got = s3.get_object(Bucket="master.big", Key="models/weights.bin")
    assert hashlib.sha256(got["Body"].read()).hexdigest() == hashlib.sha256(data).hexdigest()
    inspected = json.loads(run_ok("inspect-file", "big", "master", "/models/weights.bin", "--raw").out)
    assert got["ETag"] == f'"{inspected["hash"]}"' and inspected["size_bytes"] == len(data)
    part = s3.get_object(Bucket="master.big", Key="models/weights.bin", Range=f"bytes={5 * MiB - 3}-{15 * MiB + 2}")
    assert part["Body"].read() == data[5 * MiB - 3:15 * MiB + 3]  # across three parts

    upload = s3.create_multipart_upload(Bucket="master.big", Key="small.bin")["UploadId"]
    etags = [s3.upload_part(Bucket="master.big", Key="small.bin", UploadId=upload, PartNumber=n,
                            Body=bytes([n]) * 1000)["ETag"] for n in (1, 2)]
    assert etags[0] == f'"{blake3.blake3(bytes([1]) * 1000).hexdigest()}"'
    listed = s3.list_parts(Bucket="master.big", Key="small.bin", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in listed] == [(1, 1000, etags[0]), (2, 1000, etags[1])]
    parts = {"Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags)]}
    assert error_of(s3.complete_multipart_upload, Bucket="master.big", Key="small.bin", UploadId=upload,
                    MultipartUpload=parts) == (400, "EntityTooSmall")
    assert error_of(s3.complete_multipart_upload, Bucket="master.big", Key="small.bin", UploadId=upload,
                    MultipartUpload={"Parts": [{"PartNumber": 3, "ETag": etags[0]}]}) == (400, "InvalidPart")
    assert error_of(s3.complete_multipart_upload, Bucket="master.big", Key="other.bin", UploadId=upload,
                    MultipartUpload=parts) == (404, "NoSuchUpload")
    done = s3.complete_multipart_upload(Bucket="master.big", Key="small.bin", UploadId=upload,
                                        MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": etags[1]}]})
    assert done["ETag"] == etags[1]
    assert s3.get_object(Bucket="master.big", Key="small.bin")["Body"].read() == bytes([2]) * 1000
    aborted = s3.create_multipart_upload(Bucket="master.big", Key="gone.bin")["UploadId"]
    s3.abort_multipart_upload(Bucket="master.big", Key="gone.bin", UploadId=aborted)
    assert error_of(s3.upload_part, Bucket="master.big", Key="gone.bin", UploadId=aborted, PartNumber=1,
                    Body=b"x") == (404, "NoSuchUpload")
    assert len(commits("big")) == 2


def _signed_put(endpoint: str, path: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    """PUT ``body`` with ``headers`` (kept as given, x-amz-content-sha256 too), signed with the write token."""
    request = AWSRequest("PUT", endpoint + path, data=body, headers=headers)
    SigV4Auth(Credentials(WRITE, WRITE), "s3", "us-east-1").add_auth(request)
    return requests.put(request.url, data=body, headers=dict(request.headers), timeout=60)


@LOCAL
def test_large_bodies_are_checked_whole_and_refused_if_altered(s3, gateway):
    """A body of several cutting windows (two and a half: each window's
    uncut rest moves to the next, and windows are used again) is stored as put-file
    stores it, after botocore's SHA-256 and CRC32 of the whole body pass.
    The same body with one byte of its last MiB changed, sent with the
    original's CRC32, Content-MD5 or x-amz-content-sha256, is refused, and
    no file or commit appears. The 9 MiB parts of a multipart upload sent
    4 at a time come back intact."""
    import base64
    import zlib
    s3.create_bucket(Bucket="master.large")
    body = os.urandom(5 * WINDOW // 2 + 12345)
    put = s3.put_object(Bucket="master.large", Key="big.bin", Body=body)
    cuts = list(itertools.accumulate(chunk_lengths(body), initial=0))
    chunks = [blake3.blake3(body[a:b]).hexdigest() for a, b in itertools.pairwise(cuts)]
    assert put["ETag"] == f'"{blake3.blake3(chr(10).join(chunks).encode()).hexdigest()}"'
    assert s3.get_object(Bucket="master.large", Key="big.bin")["Body"].read() == body
    made = len(commits("large"))

    altered = bytearray(body)
    altered[-MiB] ^= 1
    crc32 = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    for headers, code in [({"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "x-amz-checksum-crc32": crc32}, "BadDigest"),
                          ({"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Content-MD5": md5}, "BadDigest"),
                          ({"x-amz-content-sha256": hashlib.sha256(body).hexdigest()}, "XAmzContentSHA256Mismatch")]:
        refused = _signed_put(gateway.endpoint, "/master.large/altered.bin", bytes(altered), headers)
        assert refused.status_code == 400 and f"<Code>{code}</Code>".encode() in refused.content, headers
    assert len(commits("large")) == made
    assert error_of(s3.head_object, Bucket="master.large", Key="altered.bin")[0] == 404
    both = {"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "x-amz-checksum-crc32": crc32, "Content-MD5": md5}
    assert _signed_put(gateway.endpoint, "/master.large/same.bin", body, both).ok  # the checks pass on the original
    assert s3.head_object(Bucket="master.large", Key="same.bin")["ETag"] == put["ETag"]

    data = os.urandom(36 * MiB + 1)
    transfer = boto3.s3.transfer.TransferConfig(multipart_threshold=9 * MiB, multipart_chunksize=9 * MiB,
                                                max_concurrency=4)
    s3.upload_fileobj(io.BytesIO(data), "master.large", "parts.bin", Config=transfer)
    assert s3.get_object(Bucket="master.large", Key="parts.bin")["Body"].read() == data


@LOCAL
def test_tokens_are_access_keys(gateway):
    """Access key id = secret key = a token (Pachyderm's rule); a read
    token may only read; a wrong secret, an unknown key or no signature
    are refused with S3's codes; presigned URLs work and cannot be altered."""
    writer, reader = gateway.client(WRITE), gateway.client(READ)
    writer.create_bucket(Bucket="master.sec")
    writer.put_object(Bucket="master.sec", Key="k", Body=b"secret data")
    assert reader.get_object(Bucket="master.sec", Key="k")["Body"].read() == b"secret data"
    assert [b["Name"] for b in reader.list_buckets()["Buckets"]] == ["master.sec"]
    assert error_of(reader.put_object, Bucket="master.sec", Key="k2", Body=b"x") == (403, "AccessDenied")
    assert error_of(reader.delete_object, Bucket="master.sec", Key="k") == (403, "AccessDenied")
    assert error_of(gateway.client(WRITE, secret="w" * 24).get_object, Bucket="master.sec", Key="k") == \
        (403, "SignatureDoesNotMatch")
    assert error_of(gateway.client("x" * 24).list_buckets) == (403, "InvalidAccessKeyId")
    anonymous = boto3.client("s3", endpoint_url=gateway.endpoint, region_name="us-east-1",
                             config=Config(signature_version=botocore.UNSIGNED, s3={"addressing_style": "path"}))
    assert error_of(anonymous.get_object, Bucket="master.sec", Key="k") == (403, "AccessDenied")
    assert requests.get(gateway.endpoint + "/master.sec/k", timeout=10).status_code == 403
    v4 = gateway.client(READ, signature_version="s3v4")
    for signer in (reader, v4):  # botocore presigns S3 URLs with V2 unless told s3v4
        url = signer.generate_presigned_url("get_object", Params={"Bucket": "master.sec", "Key": "k"}, ExpiresIn=60)
        assert ("X-Amz-Signature=" in url) == (signer is v4)
        assert requests.get(url, timeout=10).content == b"secret data"
        tampered = requests.get(url.replace("/k?", "/k2?"), timeout=10)
        assert tampered.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in tampered.content
    put_v2 = gateway.client(READ, signature_version="s3").generate_presigned_url(
        "put_object", Params={"Bucket": "master.sec", "Key": "nope"})
    assert requests.put(put_v2, data=b"x", timeout=10).status_code == 403  # a read token, signed V2
    put_url = writer.generate_presigned_url("put_object", Params={"Bucket": "master.sec", "Key": "up"})
    assert requests.put(put_url, data=b"by url", timeout=10).status_code == 200
    assert reader.get_object(Bucket="master.sec", Key="up")["Body"].read() == b"by url"
    # a body that does not match the x-amz-content-sha256 it was signed with
    request = AWSRequest("PUT", gateway.endpoint + "/master.sec/forged", data=b"original",
                         headers={"x-amz-content-sha256": hashlib.sha256(b"original").hexdigest()})
    SigV4Auth(Credentials(WRITE, WRITE), "s3", "us-east-1").add_auth(request)
    forged = requests.put(request.url, data=b"0riginal", headers=dict(request.headers), timeout=10)
    assert forged.status_code == 400 and b"XAmzContentSHA256Mismatch" in forged.content


def _signed(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> AWSRequest:
    """A request signed in the header form (SigV4) by botocore's signer, with the write token."""
    request = AWSRequest(method, url, data=body, headers=headers or {})
    SigV4Auth(Credentials(WRITE, WRITE), "s3", "us-east-1").add_auth(request)
    return request


def _send_raw(endpoint: str, method: str, path: str, headers: list[tuple[str, str]],
              body: bytes = b"") -> tuple[int, bytes]:
    """Send a request with exactly ``headers`` (repeated names kept, in order); ``(status, body)``."""
    parsed = urllib.parse.urlsplit(endpoint)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers + [("Content-Length", str(len(body)))]:
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _secret_repo(s3) -> None:
    """Repo ``secret`` with one file no test below may get at, and an empty repo ``pub``."""
    s3.create_bucket(Bucket="master.secret")
    s3.put_object(Bucket="master.secret", Key="data.txt", Body=b"TOP SECRET")
    s3.create_bucket(Bucket="master.pub")


@LOCAL
def test_unsigned_amz_headers_are_refused(gateway, s3):
    """As S3: a V4 request (presigned or header-signed) carrying an
    ``x-amz-*`` header it did not sign is refused (403 AccessDenied).
    Otherwise a presigned PutObject URL would become, with an added
    ``x-amz-copy-source``, a CopyObject from any repo."""
    _secret_repo(s3)
    url = gateway.client(WRITE, signature_version="s3v4").generate_presigned_url(
        "put_object", Params={"Bucket": "master.pub", "Key": "upload.txt"}, ExpiresIn=300)
    copy = requests.put(url, data=b"", headers={"x-amz-copy-source": "master.secret/data.txt"}, timeout=10)
    assert copy.status_code == 403 and b"<Code>AccessDenied</Code>" in copy.content
    assert b"headers present in the request which were not signed" in copy.content
    assert error_of(s3.head_object, Bucket="master.pub", Key="upload.txt")[0] == 404
    signed = _signed("PUT", gateway.endpoint + "/master.pub/meta.txt", b"x",
                     {"x-amz-content-sha256": hashlib.sha256(b"x").hexdigest()})
    added = requests.put(signed.url, data=b"x", headers=dict(signed.headers, **{"x-amz-meta-added": "1"}), timeout=10)
    assert added.status_code == 403 and b"<Code>AccessDenied</Code>" in added.content
    assert requests.put(url, data=b"by url", timeout=10).status_code == 200  # the URL as meant still works
    assert s3.get_object(Bucket="master.pub", Key="upload.txt")["Body"].read() == b"by url"


@LOCAL
def test_content_encoding_does_not_turn_off_the_signed_payload_hash(gateway, s3):
    """Only the signed ``x-amz-content-sha256`` says whether a body is
    aws-chunked: a request signed for one body's SHA-256, replayed with
    another body framed aws-chunked and an added (unsigned)
    ``Content-Encoding: aws-chunked``, is refused, and nothing is written."""
    s3.create_bucket(Bucket="master.pub")
    request = _signed("PUT", gateway.endpoint + "/master.pub/k", b"original",
                      {"x-amz-content-sha256": hashlib.sha256(b"original").hexdigest()})
    assert "content-encoding" not in request.headers["Authorization"].lower()
    forged = requests.put(request.url, data=b"9\r\nmalicious\r\n0\r\n\r\n", timeout=10,
                          headers=dict(request.headers, **{"Content-Encoding": "aws-chunked"}))
    assert forged.status_code == 400 and b"<Code>XAmzContentSHA256Mismatch</Code>" in forged.content
    assert error_of(s3.head_object, Bucket="master.pub", Key="k")[0] == 404
    assert requests.put(request.url, data=b"original", headers=dict(request.headers), timeout=10).ok


@LOCAL
def test_header_signatures_need_x_amz_content_sha256(gateway, s3):
    """A header-signed V4 request must carry ``x-amz-content-sha256``, as
    S3 requires (400 InvalidRequest): without it the payload was signed as
    nothing and any body could be sent. A value that is neither a SHA-256
    nor one S3 knows is refused too (400 InvalidArgument)."""
    s3.create_bucket(Bucket="master.pub")
    request = _signed("PUT", gateway.endpoint + "/master.pub/empty")
    assert "x-amz-content-sha256" not in {k.lower() for k in request.headers}
    injected = requests.put(request.url, data=b"injected body", headers=dict(request.headers), timeout=10)
    assert injected.status_code == 400 and b"<Code>InvalidRequest</Code>" in injected.content
    assert b"Missing required header for this request: x-amz-content-sha256" in injected.content
    assert error_of(s3.head_object, Bucket="master.pub", Key="empty")[0] == 404
    odd = _signed("PUT", gateway.endpoint + "/master.pub/odd", b"x", {"x-amz-content-sha256": "SOMETHING"})
    refused = requests.put(odd.url, data=b"x", headers=dict(odd.headers), timeout=10)
    assert refused.status_code == 400 and b"<Code>InvalidArgument</Code>" in refused.content
    listing = _signed("GET", gateway.endpoint + "/master.pub")  # GET too: S3 asks every V4 request for it
    assert requests.get(listing.url, headers=dict(listing.headers), timeout=10).status_code == 400


@LOCAL
def test_repeated_amz_or_signed_headers_are_refused(gateway, s3):
    """A signature is checked against the headers as the operation reads
    them: a request that repeats an ``x-amz-*`` header or a signed header
    is refused (400 InvalidArgument). Here a signed CopyObject with a
    second ``x-amz-copy-source`` sent before the signed one."""
    _secret_repo(s3)
    s3.put_object(Bucket="master.pub", Key="a.txt", Body=b"public a")
    request = _signed("PUT", gateway.endpoint + "/master.pub/b.txt", b"",
                      {"x-amz-copy-source": "master.pub/a.txt", "Content-Type": "text/plain",
                       "x-amz-content-sha256": hashlib.sha256(b"").hexdigest()})
    assert "x-amz-copy-source" in request.headers["Authorization"]
    assert "content-type" in request.headers["Authorization"]
    host = [("Host", urllib.parse.urlsplit(gateway.endpoint).netloc)]
    signed = list(request.headers.items()) + host
    for added in ("x-amz-copy-source", "Content-Type"):
        extra = [(added, "master.secret/data.txt" if added.startswith("x-amz") else "text/html")]
        status, body = _send_raw(gateway.endpoint, "PUT", "/master.pub/b.txt", extra + signed)
        assert status == 400 and b"<Code>InvalidArgument</Code>" in body and b"more than once" in body, body
    assert error_of(s3.head_object, Bucket="master.pub", Key="b.txt")[0] == 404
    assert _send_raw(gateway.endpoint, "PUT", "/master.pub/b.txt", signed)[0] == 200  # sent once: copied
    assert s3.get_object(Bucket="master.pub", Key="b.txt")["Body"].read() == b"public a"


@LOCAL
def test_copy_source_is_split_at_its_query_before_it_is_decoded(s3):
    """``x-amz-copy-source`` is URL-encoded: the key ``report?v=2`` (sent
    ``report%3Fv%3D2``) is that key, not key ``report`` with a query;
    ``?versionId=`` after it names the source's version."""
    s3.create_bucket(Bucket="master.pub")
    old = s3.put_object(Bucket="master.pub", Key="report?v=2", Body=b"report v2, first")["VersionId"]
    s3.put_object(Bucket="master.pub", Key="report", Body=b"old report")
    s3.put_object(Bucket="master.pub", Key="report?v=2", Body=b"report v2")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="master.pub")["Contents"]] == ["report", "report?v=2"]
    s3.copy_object(Bucket="master.pub", Key="copy", CopySource={"Bucket": "master.pub", "Key": "report?v=2"})
    assert s3.get_object(Bucket="master.pub", Key="copy")["Body"].read() == b"report v2"
    s3.copy_object(Bucket="master.pub", Key="first", CopySource={"Bucket": "master.pub", "Key": "report?v=2",
                                                                 "VersionId": old})
    assert s3.get_object(Bucket="master.pub", Key="first")["Body"].read() == b"report v2, first"


def _chunk_signed(request: AWSRequest, data: bytes, trailer: list[str], sign_trailer: bool,
                  after: tuple[str, ...] = ()) -> bytes:
    """The body of a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`` request
    for ``data`` (one chunk), written out from the S3 API Reference
    ("Signature calculation: trailing headers"): chunk signatures chained
    from the request's, the ``trailer`` lines, then (``sign_trailer``) the
    trailer's signature, then the ``after`` lines."""
    auth = request.headers["Authorization"]
    date, scope = request.headers["X-Amz-Date"], auth.split("Credential=")[1].split(",")[0].split("/", 1)[1]
    key = ("AWS4" + WRITE).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()

    def sign(*lines: str) -> str:
        return hmac.new(key, "\n".join(lines).encode(), hashlib.sha256).hexdigest()
    previous, body = auth.rpartition("Signature=")[2], b""
    for chunk in (data, b""):
        previous = sign("AWS4-HMAC-SHA256-PAYLOAD", date, scope, previous, hashlib.sha256(b"").hexdigest(),
                        hashlib.sha256(chunk).hexdigest())
        body += b"%x;chunk-signature=%s\r\n%s" % (len(chunk), previous.encode(), chunk + b"\r\n" if chunk else b"")
    lines = list(trailer)
    if sign_trailer:
        canonical = "".join(line + "\n" for line in trailer).encode()
        lines.append("x-amz-trailer-signature:" + sign("AWS4-HMAC-SHA256-TRAILER", date, scope, previous,
                                                       hashlib.sha256(canonical).hexdigest()))
    return body + "".join(line + "\r\n" for line in lines + list(after)).encode() + b"\r\n"


@LOCAL
def test_a_signed_trailer_ends_with_its_signature(gateway, s3):
    """``STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER``: the trailer must end
    with exactly one ``x-amz-trailer-signature`` that matches (403
    otherwise: an unsigned checksum could be rewritten on the way), with
    nothing after it (400); chunk signatures are checked too."""
    s3.create_bucket(Bucket="master.pub")
    data = b"hello"
    request = _signed("PUT", gateway.endpoint + "/master.pub/t.txt", b"", {
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "Content-Encoding": "aws-chunked",
        "x-amz-trailer": "x-amz-checksum-crc32", "x-amz-decoded-content-length": str(len(data))})
    crc = "x-amz-checksum-crc32:" + base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()

    def put(body: bytes) -> requests.Response:
        return requests.put(request.url, data=body, headers=dict(request.headers), timeout=10)
    good = _chunk_signed(request, data, [crc], sign_trailer=True)
    assert put(good.replace(b"hello", b"hellO")).status_code == 403  # a chunk signature
    unsigned = put(_chunk_signed(request, data, [crc], sign_trailer=False))
    assert unsigned.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in unsigned.content
    rewritten = put(good.replace(crc.encode(), b"x-amz-checksum-crc32:AAAAAA=="))
    assert rewritten.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in rewritten.content
    extra = put(_chunk_signed(request, data, [crc], sign_trailer=True, after=("x-amz-checksum-crc32:AAAAAA==",)))
    assert extra.status_code == 400 and b"x-amz-trailer-signature" in extra.content
    assert error_of(s3.head_object, Bucket="master.pub", Key="t.txt")[0] == 404
    assert put(good).status_code == 200
    assert s3.get_object(Bucket="master.pub", Key="t.txt")["Body"].read() == b"hello"


@LOCAL
def test_aws_cli_cp_and_ls(gateway, tmp_path):
    """The AWS CLI (v1, from PyPI): ``s3 mb``, ``cp`` up (16 MiB: multipart)
    and down, ``ls``, ``rm``."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID=WRITE, AWS_SECRET_ACCESS_KEY=WRITE, AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    env.pop("AWS_ENDPOINT_URL", None)

    def aws(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "awscli", "--endpoint-url", gateway.endpoint, "s3", *args],
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout
    local = tmp_path / "data.bin"
    data = os.urandom(16 * MiB + 5)
    local.write_bytes(data)
    aws("mb", "s3://master.cli")
    aws("cp", str(local), "s3://master.cli/in/data.bin")
    (tmp_path / "small.txt").write_text("hello\n")
    aws("cp", str(tmp_path / "small.txt"), "s3://master.cli/small.txt")
    listing = aws("ls", "s3://master.cli/")
    assert "PRE in/" in listing and "small.txt" in listing
    assert str(len(data)) in aws("ls", "--recursive", "s3://master.cli/")
    assert "master.cli" in aws("ls")
    aws("cp", "s3://master.cli/in/data.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data
    aws("rm", "s3://master.cli/small.txt")
    assert "small.txt" not in aws("ls", "s3://master.cli/")
    assert run_ok("get-file", "cli", "master", "/in/data.bin").stdout_bytes == data


@LOCAL
def test_pandas_reads_a_csv_through_the_gateway(s3, gateway):
    pandas = pytest.importorskip("pandas")
    s3.create_bucket(Bucket="master.myrepo")
    s3.put_object(Bucket="master.myrepo", Key="x.csv", Body=b"sepal,species\n5.1,setosa\n6.2,virginica\n")
    options = {"key": READ, "secret": READ, "client_kwargs": {"endpoint_url": gateway.endpoint,
                                                               "region_name": "us-east-1"}}
    frame = pandas.read_csv("s3://master.myrepo/x.csv", storage_options=options)
    assert list(frame.columns) == ["sepal", "species"] and frame["species"].tolist() == ["setosa", "virginica"]
    assert frame["sepal"].sum() == pytest.approx(11.3)


@LOCAL
def test_a_put_starts_the_pipeline_downstream(s3, spec_file, run_controller):
    """A CSV put with boto3 is a commit like put-file's: the controller
    runs the pipeline reading the branch, and its output commit is a bucket."""
    s3.create_bucket(Bucket="master.raw")
    spec = {"pipeline": {"name": "upper"},
            "transform": {"image": "local", "cmd": ["sh", "-c", "tr a-z A-Z < /pfs/raw/x.csv > /pfs/out/x.csv"]},
            "input": {"pfs": {"repo": "raw", "glob": "/"}}}
    run_ok("create-pipeline", "-f", spec_file(spec))
    s3.put_object(Bucket="master.raw", Key="x.csv", Body=b"a,b\nsetosa,1\n")
    run_controller()
    jobs = json.loads(run_ok("list-job", "--raw").out)
    assert [j["state"] for j in jobs] == ["success"]
    assert s3.get_object(Bucket="master.upper", Key="x.csv")["Body"].read() == b"A,B\nSETOSA,1\n"
    output = commits("upper")[0]
    assert output["provenance"][0]["commit"] == commits("raw")[0]["id"]
    assert s3.get_object(Bucket=f"{output['id']}.master.upper", Key="x.csv")["Body"].read() == b"A,B\nSETOSA,1\n"


@pytest.mark.parametrize("store_url", ["s3"], indirect=True)
def test_round_trip_on_an_s3_store(s3):
    """The gateway over an S3 store (versitygw): ranged reads ask the store for
    chunk sizes and byte ranges; multipart parts live in the store."""
    s3.create_bucket(Bucket="master.remote")
    data = os.urandom(11 * MiB)
    transfer = boto3.s3.transfer.TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_fileobj(io.BytesIO(data), "master.remote", "d.bin", Config=transfer)
    assert s3.get_object(Bucket="master.remote", Key="d.bin")["Body"].read() == data
    part = s3.get_object(Bucket="master.remote", Key="d.bin", Range="bytes=5242000-10485900")
    assert part["Body"].read() == data[5242000:10485901]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="master.remote")["Contents"]] == ["d.bin"]


# aws-chunked bodies: botocore sends them over HTTPS -------------------------------
def _plain(headers: dict) -> dict[str, str]:
    """Headers as botocore holds them (values str or bytes), lowercase names and str values."""
    return {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in headers.items()}


@pytest.fixture
def tls_gateway(store_url, tmp_path):
    """The gateway app under a real uvicorn with TLS (a self-signed
    certificate), on a loopback port, with the tokens of ``gateway``."""
    import uvicorn
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from pipectl.client import Client
    from pipectl.server.s3 import create_s3_app
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1)).sign(key, hashes.SHA256()))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    port = free_port()
    app = create_s3_app(Client.open(store_url), {READ: "read", WRITE: "write"})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           ssl_keyfile=str(tmp_path / "key.pem"),
                                           ssl_certfile=str(tmp_path / "cert.pem")))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, 0.05, "the TLS gateway")
    yield Gateway(f"https://127.0.0.1:{port}", "")
    server.should_exit = True
    thread.join(10)


@LOCAL
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # the self-signed certificate
def test_aws_chunked_bodies_with_checksum_trailers(tls_gateway):
    """Over HTTPS botocore streams PutObject and UploadPart bodies as
    aws-chunked with a CRC32 trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER);
    they arrive intact; a trailer that does not match is refused."""
    s3 = tls_gateway.client(verify=False)
    s3.create_bucket(Bucket="master.chunked")
    seen: list[dict] = []
    s3.meta.events.register("before-send.s3.PutObject", lambda request, **_: seen.append(dict(request.headers)))
    s3.meta.events.register("before-send.s3.UploadPart", lambda request, **_: seen.append(dict(request.headers)))
    body = os.urandom(3 * MiB + 1)
    s3.put_object(Bucket="master.chunked", Key="one.bin", Body=body)
    sent = _plain(seen[0])
    assert sent["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert sent["content-encoding"] == "aws-chunked" and sent["x-amz-trailer"] == "x-amz-checksum-crc32"
    assert s3.get_object(Bucket="master.chunked", Key="one.bin")["Body"].read() == body
    data = os.urandom(11 * MiB)
    transfer = boto3.s3.transfer.TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_fileobj(io.BytesIO(data), "master.chunked", "multi.bin", Config=transfer)
    assert any(_plain(h).get("content-encoding") == "aws-chunked" for h in seen[1:])
    assert s3.get_object(Bucket="master.chunked", Key="multi.bin")["Body"].read() == data

    # the same framing, sent by hand with a CRC32 that does not match (signed by botocore's signer)
    framed = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    request = AWSRequest("PUT", tls_gateway.endpoint + "/master.chunked/bad.txt", data=framed, headers={
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "Content-Encoding": "aws-chunked",
        "x-amz-trailer": "x-amz-checksum-crc32", "x-amz-decoded-content-length": "5"})
    SigV4Auth(Credentials(WRITE, WRITE), "s3", "us-east-1").add_auth(request)
    bad = requests.put(request.url, data=framed, headers=dict(request.headers), verify=False, timeout=10)
    assert bad.status_code == 400 and b"<Code>BadDigest</Code>" in bad.content
    good = framed.replace(b"AAAAAA==", b"NhCmhg==")  # CRC32 of b"hello", base64
    request = AWSRequest("PUT", tls_gateway.endpoint + "/master.chunked/good.txt", data=good,
                         headers=dict(request.headers, **{"x-amz-date": ""}))
    del request.headers["Authorization"], request.headers["x-amz-date"]
    SigV4Auth(Credentials(WRITE, WRITE), "s3", "us-east-1").add_auth(request)
    assert requests.put(request.url, data=good, headers=dict(request.headers), verify=False, timeout=10).ok
    assert s3.get_object(Bucket="master.chunked", Key="good.txt")["Body"].read() == b"hello"


def test_server_flags_fail_in_one_line(cli, tmp_path):
    from helpers import assert_clean_error
    assert_clean_error(cli("server", "--port", "18123", "--s3-gateway-port", "18123"), "--s3-gateway-port")
    usage = cli("server", "--s3-gateway-port", "0")  # a usage error: exit 2, one line
    assert usage.code == 2 and usage.err.strip().count("\n") == 0 and "--s3-gateway-port" in usage.err, usage
    busy = socket.create_server(("127.0.0.1", 0))
    try:
        port = busy.getsockname()[1]
        assert_clean_error(cli("server", "--port", str(free_port()), "--s3-gateway-port", str(port)),
                           f"port {port}")
    finally:
        busy.close()


def test_signed_chunks_follow_the_published_example():
    """The S3 API Reference's worked example of a chunked upload signed with
    STREAMING-AWS4-HMAC-SHA256-PAYLOAD (66,560 bytes of 'a' in chunks of
    65,536 and 1,024, with its example keys and signatures): the seed
    signature verifies, the body decodes, and an altered chunk is refused."""
    from pipectl.server.s3 import sigv4
    from pipectl.server.s3.chunked import ChunkedDecoder
    from pipectl.server.s3.errors import S3Error
    signed_headers = ("content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                      "x-amz-decoded-content-length;x-amz-storage-class")
    headers = {"content-encoding": "aws-chunked", "content-length": "66824", "host": "s3.amazonaws.com",
               "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "x-amz-date": "20130524T000000Z",
               "x-amz-decoded-content-length": "66560", "x-amz-storage-class": "REDUCED_REDUNDANCY",
               "authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                                f"SignedHeaders={signed_headers},Signature="
                                "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"}
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    when = datetime.datetime(2013, 5, 24, 0, 0, 30, tzinfo=datetime.UTC)
    signed = sigv4.verify("PUT", "/examplebucket/chunkObject.txt", "", headers, lambda key: secret, when)
    chunks = [(65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
              (1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
              (0, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9")]
    body = b"".join(b"%x;chunk-signature=%s\r\n%s\r\n" % (n, sig.encode(), b"a" * n) for n, sig in chunks)
    assert len(body) == 66824
    decoder = ChunkedDecoder(signed)
    out = b"".join(piece for i in range(0, len(body), 1000) for piece in decoder.feed(body[i:i + 1000]))
    decoder.finish()
    assert out == b"a" * 66560
    with pytest.raises(S3Error, match="chunk signature"):
        list(ChunkedDecoder(signed).feed(body.replace(b"a" * 10, b"b" * 10, 1)))
    with pytest.raises(S3Error) as caught:
        sigv4.verify("PUT", "/examplebucket/chunkObject.txt", "", dict(headers, **{"x-amz-storage-class": "STANDARD"}),
                     lambda key: secret, when)
    assert caught.value.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error) as caught:
        sigv4.verify("PUT", "/examplebucket/chunkObject.txt", "", headers, lambda key: secret,
                     when + datetime.timedelta(hours=1))
    assert caught.value.code == "RequestTimeTooSkewed"


@LOCAL
def test_an_open_server_takes_any_credentials_or_none(store_url, background):
    """Without tokens (loopback only) the gateway accepts any credentials
    and unsigned requests, as Pachyderm's does with auth off."""
    api, port = free_port(), free_port()
    proc = background("server", "--port", str(api), "--s3-gateway-port", str(port))
    wait_for(lambda: proc.poll() is None and _listening(port), 60, 0.1, "the open S3 gateway")
    gateway = Gateway(f"http://127.0.0.1:{port}", "")
    gateway.client("anything", secret="goes").create_bucket(Bucket="master.open")
    anonymous = boto3.client("s3", endpoint_url=gateway.endpoint, region_name="us-east-1",
                             config=Config(signature_version=botocore.UNSIGNED, s3={"addressing_style": "path"}))
    anonymous.put_object(Bucket="master.open", Key="k", Body=b"open")
    assert requests.get(gateway.endpoint + "/master.open/k", timeout=10).content == b"open"
    assert [b["Name"] for b in gateway.client("someone").list_buckets()["Buckets"]] == ["master.open"]
