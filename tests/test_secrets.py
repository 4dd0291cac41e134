"""Pachyderm's ``transform.secrets`` under the process and Docker executors:
values from a secrets directory laid out as Kubernetes mounts a Secret, as
an environment variable and as read-only files at ``mount_path``; never in
the store. (On Kubernetes: tests/test_kubernetes.py.)"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import tempfile

import pytest
from helpers import files_of, ok, put, skip, snapshot

SECRET = "s3cr3t-Pa55word"
SCRIPT = ('printf %s "$DB_PASSWORD" | sha256sum | cut -d" " -f1 > /pfs/out/env; '
          "cat /etc/secrets/db/user > /pfs/out/user; ls /etc/secrets/db > /pfs/out/keys; "
          "if echo x 2>/dev/null > /etc/secrets/db/new; then echo writable; else echo read-only; fi > /pfs/out/mode")
LOCAL = pytest.mark.parametrize("store_url", ["local"], indirect=True)


def secrets_dir(tmp_path):
    """A secrets directory with Secret ``db`` (keys ``password``, ``user``)."""
    root = tmp_path / "secrets"
    (root / "db").mkdir(parents=True)
    (root / "db" / "password").write_text(SECRET)
    (root / "db" / "user").write_text("admin\n")
    return str(root)


def secret_pipeline(image: str = "local") -> dict:
    return {"pipeline": {"name": "uses-secrets"},
            "transform": {"image": image, "cmd": ["sh", "-c", SCRIPT],
                          "secrets": [{"name": "db", "envVar": "DB_PASSWORD", "key": "password"},
                                      {"name": "db", "mount_path": "/etc/secrets/db"}]},
            "input": {"pfs": {"repo": "in", "glob": "/"}}}


def expected() -> dict[str, str]:
    return {"/env": hashlib.sha256(SECRET.encode()).hexdigest() + "\n", "/user": "admin\n",
            "/keys": "password\nuser\n", "/mode": "read-only\n"}


@LOCAL
def test_secrets_reach_user_code_as_variables_and_files_never_the_store(tmp_path, cli, pfs, store, spec_file,
                                                                        run_controller):
    pfs.create_repo("in")
    put(pfs, "in", {"/x": "1"})
    ok(cli("create-pipeline", "-f", spec_file(secret_pipeline())))
    run_controller("--secrets-dir", secrets_dir(tmp_path))
    assert files_of(pfs, "uses-secrets") == expected()
    assert not any(SECRET.encode() in data for data in snapshot(store).values())


@LOCAL
def test_a_pipeline_sees_only_the_secrets_it_names(cli, pfs, spec_file, run_controller):
    """Under the process executor the sandbox shows the host read-only, so
    a secrets directory outside ``/tmp`` and the home (emptied there) was
    readable by every pipeline's user code; the worker now hides it, and
    binds in only the Secrets the spec names."""
    root = tempfile.mkdtemp(prefix="pipectl-secrets-", dir="/var/tmp")  # neither /tmp nor a home
    try:
        shutil.copytree(secrets_dir(pathlib.Path(root)), os.path.join(root, "dir"))
        pfs.create_repo("in")
        put(pfs, "in", {"/x": "1"})
        reader = {"pipeline": {"name": "reader"},
                  "transform": {"image": "local", "cmd": ["sh", "-c", f"cat {root}/dir/db/* > /pfs/out/got; true"]},
                  "input": {"pfs": {"repo": "in", "glob": "/"}}}
        ok(cli("create-pipeline", "-f", spec_file(secret_pipeline())))
        ok(cli("create-pipeline", "-f", spec_file(reader)))
        run_controller("--secrets-dir", os.path.join(root, "dir"))
        assert files_of(pfs, "uses-secrets") == expected()
        assert files_of(pfs, "reader") == {"/got": ""}
    finally:
        shutil.rmtree(root)


@LOCAL
def test_a_missing_secret_fails_the_job_naming_it(tmp_path, cli, pfs, spec_file, run_controller):
    pfs.create_repo("in")
    put(pfs, "in", {"/x": "1"})
    ok(cli("create-pipeline", "-f", spec_file(secret_pipeline())))
    run_controller()  # no secrets directory
    job = json.loads(ok(cli("list-job", "--raw")).out)[0]
    assert job["state"] == "failure" and "no secrets directory" in job["reason"], job
    empty = tmp_path / "none"
    empty.mkdir()
    put(pfs, "in", {"/y": "2"})
    run_controller("--secrets-dir", str(empty))
    job = json.loads(ok(cli("list-job", "--raw")).out)[0]
    assert job["state"] == "failure" and "secret 'db' not found" in job["reason"], job


def test_secrets_in_docker_reach_the_user_container_alone(tmp_path, cli, pfs, store, spec_file, run_controller):
    try:
        import docker
        docker.from_env().images.get("pipectl/base:0.1.0")
    except Exception:
        skip("docker", "no Docker engine, or images missing: run `make images`")
    pfs.create_repo("in")
    put(pfs, "in", {"/x": "1"})
    ok(cli("create-pipeline", "-f", spec_file(secret_pipeline("pipectl/base:0.1.0"))))
    run_controller("--executor", "docker", "--secrets-dir", secrets_dir(tmp_path))
    assert files_of(pfs, "uses-secrets") == expected()
    assert not any(SECRET.encode() in data for data in snapshot(store).values())
