"""S3 errors, answered as S3's error XML.

The codes, statuses and document shape are those of the Amazon S3 API
Reference, "Error responses" (``<Error><Code/><Message/><Resource/>
<RequestId/></Error>``); the ones Pachyderm's gateway adds
(``InvalidFilePath``, ``WriteToOutputBranch``) keep its names.
"""

from __future__ import annotations


class S3Error(Exception):
    """An error answered to an S3 client: ``code`` (S3's error code, such
    as ``NoSuchKey``), HTTP ``status``, a one-line ``message``, and extra
    headers (``Allow``, ``Content-Range``)."""

    def __init__(self, code: str, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code, self.status, self.message = code, status, message
        self.headers = headers or {}


def no_such_bucket(name: str) -> S3Error:
    return S3Error("NoSuchBucket", 404, f"The specified bucket does not exist: {name}")


def no_such_key(key: str) -> S3Error:
    return S3Error("NoSuchKey", 404, f"The specified key does not exist: {key}")


def no_such_upload(upload_id: str) -> S3Error:
    return S3Error("NoSuchUpload", 404, f"The specified multipart upload does not exist: {upload_id}")


def invalid_argument(message: str) -> S3Error:
    return S3Error("InvalidArgument", 400, message)


def access_denied(message: str = "Access Denied") -> S3Error:
    return S3Error("AccessDenied", 403, message)


def not_implemented(what: str) -> S3Error:
    return S3Error("NotImplemented", 501, f"{what} is not implemented by pipectl's S3 gateway")


def read_only(bucket: str) -> S3Error:
    """A write to a commit bucket (``commit.branch.repo``): Pachyderm's
    gateway answers NotImplemented for a bucket that is not writable."""
    return S3Error("NotImplemented", 501, f"bucket {bucket} names a commit, which is read-only; "
                                          "write to its branch's bucket (branch.repo)")
