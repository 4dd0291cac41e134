"""Egress: a job's output commit copied out of pipectl (Pachyderm's ``egress``).

A spec's ``"egress": {"URL": "s3://bucket/prefix"}`` (Pachyderm 1.x/2.x)
or ``"egress": {"object_storage": {"url": ...}}`` (2.x) names where each
output commit goes once its job has landed it; the job is ``egressing``
meanwhile and fails, naming the target and the reason, when the copy does.
Targets:

- ``s3://bucket[/prefix]``: any S3-compatible endpoint, reached with boto3
  and the standard AWS variables (``AWS_ENDPOINT_URL`` and friends), as the
  store is; each file is uploaded to ``prefix/<path>`` (boto3's managed
  transfer: multipart for large files);
- ``file:///dir``: a directory of the controller's machine (the embedded
  default's counterpart of a bucket); each file is written to a temporary
  name beside ``dir/<path>`` and renamed into place, so a reader never sees
  half a file.

As in Pachyderm, the files of the commit are copied over what is there;
objects the target holds beyond them are left alone. A copy is idempotent:
a controller that restarts mid-egress copies the commit again.

Anyone who may create a pipeline chooses its egress target, and the
controller copies with its own rights, so targets are limited
(:func:`check_target`): no target may overlap the store (its bucket and
prefix, or its directory), and a directory must lie under one the
operator opened with ``pipectl controller --egress-dir`` (none by default).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from ..errors import InvalidArgument
from ..pfs import PFS

SPOOL_BYTES = 8 << 20
"""Files up to this size are held in memory on their way to S3; larger ones in a temporary file."""


def egress_url(spec: dict[str, Any]) -> str | None:
    """The egress target of a (normalized) spec, or None. Raises
    InvalidArgument for a target pipectl cannot write (SQL databases, a
    scheme other than ``s3://`` and ``file://``, a relative path)."""
    egress = spec.get("egress")
    if egress is None:
        return None
    if not isinstance(egress, dict):
        raise InvalidArgument("egress: must be an object, e.g. {\"URL\": \"s3://bucket/dir\"}")
    if "sql_database" in egress:
        raise InvalidArgument("egress.sql_database: egress to SQL databases is not supported by pipectl")
    storage = egress.get("object_storage")
    url = storage.get("url") if isinstance(storage, dict) else egress.get("URL", egress.get("url"))
    if not isinstance(url, str) or not url:
        raise InvalidArgument("egress: give URL, e.g. {\"URL\": \"s3://bucket/dir\"}")
    parsed = urlparse(url)
    if parsed.scheme == "s3" and parsed.netloc:
        return url
    if parsed.scheme == "file" and not parsed.netloc and parsed.path.startswith("/"):
        return url
    raise InvalidArgument(f"egress.URL {url!r}: use s3://bucket[/prefix] or file:///absolute/dir")


@dataclasses.dataclass
class Egressed:
    """What one egress copied: ``files`` and ``bytes``."""

    files: int = 0
    bytes: int = 0


def check_target(url: str, store_url: str, egress_dirs: list[str]) -> None:
    """Refuse an egress target that overlaps the store at ``store_url``,
    or a directory outside every one of ``egress_dirs``. Raises
    InvalidArgument saying why."""
    target, store = urlparse(url), urlparse(store_url)
    if target.scheme == "file":
        path = os.path.realpath(target.path)
        if store.scheme == "file" and _overlap(path, os.path.realpath(store.path)):
            raise InvalidArgument(f"egress target {url} overlaps the store's directory")
        if not any(_within(path, os.path.realpath(d)) for d in egress_dirs):
            raise InvalidArgument(f"egress to {url} needs pipectl controller --egress-dir covering it "
                                  "(directories are closed to egress unless the operator opens one)")
    elif store.scheme == "s3" and target.netloc == store.netloc and \
            _overlap("/" + target.path.strip("/"), "/" + store.path.strip("/")):
        raise InvalidArgument(f"egress target {url} overlaps the store (s3://{store.netloc}{store.path})")


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _overlap(a: str, b: str) -> bool:
    return _within(a, b) or _within(b, a)


def egress(pfs: PFS, repo: str, commit: str, url: str, each: Callable[[], None] = lambda: None) -> Egressed:
    """Copy every file of ``repo@commit`` to ``url`` (see the module doc;
    check it with :func:`check_target` first), calling ``each()`` after
    each file (the controller renews its leases there, so a copy of many
    files does not lose them; one file that takes longer than a lease
    still can). Raises OSError (a local target) or botocore's errors
    (S3) when a copy fails, and what ``each`` raises; the caller names the
    target."""
    parsed = urlparse(url)
    local = parsed.scheme == "file"
    write = _to_directory(parsed.path) if local else _to_s3(parsed.netloc, parsed.path.strip("/"))
    done = Egressed()
    for path, entry in pfs.iter_files(repo, commit):
        write(path.lstrip("/"), lambda out, p=path: pfs.get_file(repo, commit, p, out))
        done.files += 1
        done.bytes += entry.size
        each()
    return done


def _to_directory(root: str):
    def write(path: str, fill) -> None:
        target = os.path.join(root, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".egress-")
        try:
            with os.fdopen(fd, "wb") as out:
                fill(out)
            os.replace(temporary, target)
        except BaseException:
            os.unlink(temporary)
            raise
    return write


def _to_s3(bucket: str, prefix: str):
    import boto3
    client = boto3.client("s3")

    def write(path: str, fill) -> None:
        with tempfile.SpooledTemporaryFile(SPOOL_BYTES) as spool:
            fill(spool)
            spool.seek(0)
            client.upload_fileobj(spool, bucket, f"{prefix}/{path}" if prefix else path)
    return write

