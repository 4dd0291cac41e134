"""Pachyderm's ``transform.secrets``: Kubernetes Secrets given to user code,
as environment variables or as files.

Each entry names a Secret and either ``env_var`` plus ``key`` (the
variable ``env_var`` holds the value of ``key``) or ``mount_path`` (a
directory with one file per key, read-only), as in Pachyderm's spec
(``src/pps/pps.proto``, ``SecretMount``).

On Kubernetes the Secret is the cluster's, referenced from the worker pod
(``secretKeyRef``, a ``secret`` volume): its values never pass through
pipectl. The process and Docker executors read a *secrets directory*
(``pipectl controller --secrets-dir DIR``, ``$PIPECTL_SECRETS_DIR``) laid out
as Kubernetes mounts a Secret: ``DIR/<name>/<key>`` holds the value of
``key``. Values go to the user code's side only, never into the store, a
job record or the storage container.
"""

from __future__ import annotations

import os

from ..errors import InvalidArgument
from ..pfs import names


def check(secret: dict) -> None:
    """Raise InvalidArgument for an entry that is neither ``env_var`` with
    ``key`` nor ``mount_path`` (absolute), or names a Secret badly."""
    names.check_name("secret", secret["name"])
    if secret.get("mount_path"):
        if not secret["mount_path"].startswith("/") or ".." in secret["mount_path"].split("/"):
            raise InvalidArgument(f"mount_path {secret['mount_path']!r} is not an absolute path")
        if secret.get("env_var"):
            raise InvalidArgument("give mount_path or env_var, not both")
    elif not (secret.get("env_var") and secret.get("key")):
        raise InvalidArgument("needs mount_path, or env_var with key")


def local(spec: dict, directory: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """The spec's secrets from the secrets directory: ``(env, mounts)``,
    ``env`` the variables with their values, ``mounts`` each mount path with
    the host directory to show there. Raises ExecutorError naming a missing
    directory, Secret or key (the job fails with it)."""
    from .executors import ExecutorError
    secrets = spec["transform"].get("secrets") or []
    env: dict[str, str] = {}
    mounts: dict[str, str] = {}
    if not secrets:
        return env, mounts
    if not directory:
        raise ExecutorError(f"transform.secrets names Secret {secrets[0]['name']!r}, but this controller has no "
                            "secrets directory (--secrets-dir or PIPECTL_SECRETS_DIR)")
    for secret in secrets:
        folder = os.path.join(directory, secret["name"])
        if not os.path.isdir(folder):
            raise ExecutorError(f"secret {secret['name']!r} not found in the secrets directory {directory}")
        if secret.get("mount_path"):
            mounts[secret["mount_path"]] = os.path.abspath(folder)
            continue
        try:
            with open(os.path.join(folder, secret["key"]), encoding="utf-8") as f:
                env[secret["env_var"]] = f.read()
        except OSError:
            raise ExecutorError(f"secret {secret['name']!r} has no key {secret['key']!r} "
                                f"(no file {secret['key']} in {folder})") from None
    return env, mounts


def kubernetes(spec: dict) -> tuple[list[dict], list[dict], list[dict]]:
    """The spec's secrets for a pod: ``(env, volumes, volume_mounts)`` in the
    API's JSON form, for the user container."""
    env, volumes, mounts = [], [], []
    for n, secret in enumerate(spec["transform"].get("secrets") or []):
        if secret.get("mount_path"):
            volumes.append({"name": f"secret-{n}", "secret": {"secretName": secret["name"]}})
            mounts.append({"name": f"secret-{n}", "mountPath": secret["mount_path"], "readOnly": True})
        else:
            env.append({"name": secret["env_var"],
                        "valueFrom": {"secretKeyRef": {"name": secret["name"], "key": secret["key"]}}})
    return env, volumes, mounts
