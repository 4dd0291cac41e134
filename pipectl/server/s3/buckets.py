"""Bucket names: Pachyderm's mapping of S3 buckets onto branches and commits.

A bucket is ``[<commit id>.]<branch>.<repo>[.<project>]`` (the rule of
Pachyderm 2's ``bucketNameToCommit``, ``src/server/pfs/s3/driver.go``):

- ``master.images`` is the branch ``master`` of repo ``images`` in the
  default project; writes to it make commits on that branch;
- ``master.images.staging`` is the same in project ``staging``;
- ``images`` alone (one part) is ``master.images``;
- ``<commit id>.master.images`` is one commit (32 hex digits), read-only.

Three parts are always branch, repo and project, so a repo of another
project needs its branch written out. ListBuckets names every branch of
every repo ``branch.repo``, with ``.project`` appended for a project other
than the default (Pachyderm 2 appends ``.default`` too; both forms are
accepted here). Names holding a ``.`` (pipectl allows them in repo and
branch names, Pachyderm does not) cannot be told apart in a bucket name:
such branches are left out of ListBuckets and cannot be addressed.
"""

from __future__ import annotations

import dataclasses

from ...errors import InvalidArgument
from ...pfs import names
from .errors import S3Error


@dataclasses.dataclass(frozen=True)
class Bucket:
    """A bucket as pipectl sees it: ``repo`` (qualified, ``project/name``
    outside the default project), ``branch``, and ``commit`` (a commit id
    for a read-only commit bucket, else None)."""

    name: str
    repo: str
    branch: str
    commit: str | None = None

    @property
    def ref(self) -> str:
        """What the operations layer reads: the commit id, else the branch."""
        return self.commit or self.branch


def parse(name: str) -> Bucket:
    """The bucket named ``name``. Raises S3Error InvalidBucketName (400)
    for a name of no such shape (nothing is looked up here)."""
    parts = name.split(".")
    commit = parts.pop(0) if parts and names.is_commit_id(parts[0]) else None
    if len(parts) == 1:
        branch, repo, project = "master", parts[0], None
    elif len(parts) == 2:
        (branch, repo), project = parts, None
    elif len(parts) == 3:
        branch, repo, project = parts
    else:
        raise S3Error("InvalidBucketName", 400, f"invalid bucket name {name!r}: expected "
                      "[commit.]branch.repo[.project]")
    try:
        names.check_name("branch", branch)
        qualified = names.qualify(project, names.check_name("repo", repo))
        names.check_name("repo", qualified)
    except InvalidArgument as e:
        raise S3Error("InvalidBucketName", 400, f"invalid bucket name {name!r}: {e}") from None
    return Bucket(name, qualified, branch, commit)


def name_of(repo: str, branch: str, commit: str | None = None) -> str | None:
    """The bucket name of a branch (or of one of its commits) of ``repo``
    (qualified), as ListBuckets shows it; None if a name holds a ``.`` and
    so cannot be written as a bucket."""
    project, bare = names.project_of(repo), names.bare(repo)
    if "." in bare or "." in branch or "." in project:
        return None
    parts = ([commit] if commit else []) + [branch, bare] + ([project] if project != names.DEFAULT_PROJECT else [])
    return ".".join(parts)
