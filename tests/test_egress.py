"""Egress (Pachyderm's ``egress``): each output commit is copied out after its
job, to a directory of the controller's machine (local store) or an S3
bucket (versitygw over HTTP); a copy that fails fails the job, naming
the target. Real CLI, real controller and workers."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from helpers import assert_clean_error, ok, put

SPEC = {"pipeline": {"name": "shout"},
        "transform": {"image": "local", "cmd": ["sh", "-c", "tr a-z A-Z < /pfs/in/words > /pfs/out/words; "
                                                "mkdir -p /pfs/out/sub; echo done > /pfs/out/sub/flag"]},
        "input": {"pfs": {"repo": "in", "glob": "/"}}}
OUTPUT = {"words": b"HELLO EGRESS\n", "sub/flag": b"done\n"}


def job(cli) -> dict:
    [record] = json.loads(ok(cli("list-job", "-p", "shout", "--raw")).out)
    return record


def test_each_output_commit_is_copied_to_the_egress_url(cli, pfs, spec_file, run_controller, store_url, tmp_path):
    """Local store: ``file:///dir``; S3 store: ``s3://bucket/prefix`` on the
    same S3 server. The files land under the target with their bytes, and
    the job record says what was copied."""
    if store_url.startswith("file://"):
        url = f"file://{tmp_path / 'egress'}"

        def copied() -> dict[str, bytes]:
            return {p: (tmp_path / "egress" / p).read_bytes() for p in OUTPUT}
    else:
        bucket = "egress-" + uuid.uuid4().hex[:8]
        s3 = boto3.session.Session().client("s3")  # the keys this test set, not a cached session's
        s3.create_bucket(Bucket=bucket)
        url = f"s3://{bucket}/results"

        def copied() -> dict[str, bytes]:
            return {p: s3.get_object(Bucket=bucket, Key=f"results/{p}")["Body"].read() for p in OUTPUT}
    pfs.create_repo("in")
    ok(cli("create-pipeline", "-f", spec_file(dict(SPEC, egress={"URL": url}))))
    put(pfs, "in", {"/words": "hello egress\n"})
    run_controller("--egress-dir", str(tmp_path))
    record = job(cli)
    assert record["state"] == "success", record
    assert record["egress"] == {"url": url, "files": 2, "bytes": sum(map(len, OUTPUT.values()))}
    assert copied() == OUTPUT


@pytest.mark.parametrize("store_url", ["s3"], indirect=True)
def test_a_failed_egress_fails_the_job_naming_it(cli, pfs, spec_file, run_controller):
    """Egress to a bucket that does not exist (Pachyderm 2.x's
    ``object_storage.url`` form): the output commit lands, the job fails
    and its reason names the target and S3's answer."""
    pfs.create_repo("in")
    url = "s3://no-such-bucket-" + uuid.uuid4().hex[:8]
    ok(cli("create-pipeline", "-f", spec_file(dict(SPEC, egress={"object_storage": {"url": url}}))))
    put(pfs, "in", {"/words": "x\n"})
    run_controller()
    record = job(cli)
    assert record["state"] == "failure" and f"to {url} failed" in record["reason"], record
    assert "NoSuchBucket" in record["reason"] or "does not exist" in record["reason"], record["reason"]
    assert pfs.inspect_commit("shout", "master").id == record["output_commit"]


@pytest.mark.parametrize("store_url", ["local"], indirect=True)
@pytest.mark.parametrize("egress, needle", [
    ({"URL": "ftp://host/dir"}, "egress.URL 'ftp://host/dir': use s3://bucket[/prefix] or file:///absolute/dir"),
    ({"URL": "file://relative/dir"}, "use s3://bucket[/prefix] or file:///absolute/dir"),
    ({"sql_database": {"url": "snowflake://x"}}, "egress.sql_database: egress to SQL databases is not supported"),
    ({}, "egress: give URL"),
])
def test_an_egress_pipectl_cannot_write_is_refused(cli, store_url, spec_file, egress, needle):
    assert_clean_error(cli("create-pipeline", "-f", spec_file(dict(SPEC, egress=egress))), needle)


@pytest.mark.parametrize("store_url", ["local"], indirect=True)
def test_egress_targets_the_operator_did_not_open_fail_the_job(cli, pfs, spec_file, run_controller, store_url,
                                                              tmp_path):
    """A spec names its target and the controller writes it: a directory
    needs ``--egress-dir`` covering it, and no target may be the store."""
    pfs.create_repo("in")
    put(pfs, "in", {"/words": "x\n"})
    store_dir = store_url.removeprefix("file://")
    cases = [("open", f"file://{tmp_path / 'elsewhere'}", "needs pipectl controller --egress-dir covering it"),
             ("store", f"file://{store_dir}/objects", "overlaps the store's directory")]
    for name, url, _ in cases:
        ok(cli("create-pipeline", "-f", spec_file(dict(SPEC, pipeline={"name": name}, egress={"URL": url}))))
    run_controller("--egress-dir", str(tmp_path / "opened"), "--egress-dir", store_dir)
    for name, _, needle in cases:
        [record] = json.loads(ok(cli("list-job", "-p", name, "--raw")).out)
        assert record["state"] == "failure" and needle in record["reason"], record
    assert not (tmp_path / "elsewhere").exists()
