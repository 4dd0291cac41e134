"""The S3 gateway's requests, answered over the operations layer
(:class:`pipectl.client.Client`): every S3 request is one of the
operations below, told apart as the Amazon S3 API Reference does (method,
bucket and key in the path, path style, and sub-resource query
parameters); an operation not listed answers NotImplemented (501).

Service: ListBuckets. Bucket: ListObjects (v1), ListObjectsV2,
HeadBucket, GetBucketLocation, GetBucketVersioning, CreateBucket,
DeleteBucket, DeleteObjects. Object: GetObject (with Range), HeadObject,
PutObject, CopyObject, DeleteObject, CreateMultipartUpload, UploadPart,
ListParts, CompleteMultipartUpload, AbortMultipartUpload.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import mimetypes
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ...client import Client
from ...errors import AlreadyExists, Conflict, InvalidArgument, NotFound, PipectlError, StoreUnavailable
from ...pfs.model import Commit, parse_time
from ...pfs.names import is_commit_id
from ...pfs.tree import FileEntry
from . import buckets, listing, uploads, xml
from .body import receive
from .buckets import Bucket
from .errors import S3Error, invalid_argument, no_such_bucket, no_such_key, not_implemented, read_only
from .ranges import parse_range
from .sigv4 import check_payload

log = logging.getLogger(__name__)
OWNER = {"ID": "00000000000000000000000000000000", "DisplayName": "pipectl"}
"""The one owner every bucket and object is reported to have (Pachyderm's gateway does the same)."""
LOCATION = "us-east-1"
"""The region GetBucketLocation reports (S3's own default)."""
SUBRESOURCES = {"acl", "cors", "encryption", "lifecycle", "logging", "notification", "object-lock", "policy",
                 "replication", "retention", "legal-hold", "tagging", "website", "accelerate", "analytics",
                 "intelligent-tiering", "inventory", "metrics", "ownershipControls", "publicAccessBlock",
                 "requestPayment", "restore", "select", "torrent", "attributes", "uploads", "versions"}
"""Query parameters that name an S3 operation this gateway does not have (when not handled below)."""
_HEADERS = "pipectl.s3.headers"
"""The key of the request's scope under which :func:`headers_of` keeps what it read."""


class Gateway:
    """The operations, over ``client``. Each method takes the request and
    the parsed bucket (and key), runs the operations layer off the event
    loop, and returns a response; errors are raised as S3Error (see
    :func:`translate` for the operations layer's)."""

    def __init__(self, client: Client):
        self.client = client

    def resolve(self, name: str) -> Bucket:
        """The bucket named ``name`` (see :mod:`.buckets`). Raises S3Error InvalidBucketName."""
        return buckets.parse(name)

    async def call(self, function, *args) -> Any:
        """``function(*args)`` on a worker thread, its pipectl errors
        turned into S3 errors by :func:`translate`."""
        try:
            return await run_in_threadpool(function, *args)
        except PipectlError as e:
            raise translate(e) from None

    # lookups ----------------------------------------------------------------
    def _snapshot(self, bucket: Bucket) -> Commit | None:
        """The commit a bucket reads now (None: an empty branch). Raises
        S3Error NoSuchBucket."""
        pfs = self.client.pfs
        try:
            if bucket.commit:
                return self.client.inspect_commit(bucket.repo, bucket.commit)
            head = pfs.inspect_branch(bucket.repo, bucket.branch).head
            return self.client.inspect_commit(bucket.repo, head) if head else None
        except (NotFound, InvalidArgument):
            raise no_such_bucket(bucket.name) from None

    def _writable(self, bucket: Bucket) -> None:
        """Refuse a write to a commit bucket (read-only) or to a branch that does not exist."""
        if bucket.commit:
            raise read_only(bucket.name)
        try:
            self.client.pfs.inspect_branch(bucket.repo, bucket.branch)
        except (NotFound, InvalidArgument):
            raise no_such_bucket(bucket.name) from None

    def _object(self, bucket: Bucket, key: str, version: str | None) -> tuple[Commit, FileEntry]:
        """The commit and entry of object ``key`` (at commit ``version``
        when given: Pachyderm's versions are commit ids). Raises S3Error
        NoSuchBucket, NoSuchKey."""
        if version:
            if not is_commit_id(version):
                raise S3Error("InvalidArgument", 400, "Invalid version id specified: a version is a commit id")
            self._snapshot(bucket)  # NoSuchBucket first
            try:
                commit: Commit | None = self.client.inspect_commit(bucket.repo, version)
            except NotFound:
                raise S3Error("NoSuchVersion", 404, f"The specified version does not exist: {version}") from None
        else:
            commit = self._snapshot(bucket)
        path = _path(key)
        if commit is None or path == "/":
            raise no_such_key(key)
        try:
            return commit, self.client.file_entry(bucket.repo, commit.id, path)
        except (NotFound, InvalidArgument):  # InvalidArgument: a directory, which is no object
            raise no_such_key(key) from None

    # service ----------------------------------------------------------------
    async def list_buckets(self, request: Request) -> Response:
        """Every branch of every repo as ``branch.repo[.project]`` (see :mod:`.buckets`)."""
        def collect() -> list[dict]:
            found = []
            for summary in self.client.list_repos():
                repo = summary.info.name
                for branch in self.client.list_branches(repo):
                    name = buckets.name_of(repo, branch.name)
                    if name:
                        found.append({"Name": name, "CreationDate": _iso(summary.info.created)})
            return sorted(found, key=lambda b: b["Name"])
        found = await self.call(collect)
        return xml.response("ListAllMyBucketsResult", {"Owner": OWNER, "Buckets": {"Bucket": found}})

    # buckets ----------------------------------------------------------------
    async def head_bucket(self, request: Request, bucket: Bucket) -> Response:
        await self.call(self._snapshot, bucket)
        return Response(status_code=200, headers={"x-amz-bucket-region": LOCATION})

    async def get_location(self, request: Request, bucket: Bucket) -> Response:
        await self.call(self._snapshot, bucket)
        return xml.response("LocationConstraint", {})  # empty: us-east-1, as S3 writes it

    async def get_versioning(self, request: Request, bucket: Bucket) -> Response:
        """Enabled: every commit is a version (a GetObject ``versionId`` is a commit id)."""
        await self.call(self._snapshot, bucket)
        return xml.response("VersioningConfiguration", {"Status": "Enabled"})

    async def create_bucket(self, request: Request, bucket: Bucket) -> Response:
        """Pachyderm's CreateBucket: create the repo (with its master
        branch) if it does not exist, and the branch. Raises S3Error
        BucketAlreadyOwnedByYou (409) if the branch exists, InvalidBucketName
        for a commit bucket."""
        if bucket.commit:
            raise S3Error("InvalidBucketName", 400, "a commit bucket cannot be created; create its branch's bucket")

        def create() -> None:
            try:
                self.client.create_repo(bucket.repo)
            except AlreadyExists:
                pass
            else:
                if bucket.branch == "master":
                    return
            try:
                self.client.pfs.inspect_branch(bucket.repo, bucket.branch)
            except NotFound:
                self.client.create_branch(bucket.repo, bucket.branch)
                return
            raise S3Error("BucketAlreadyOwnedByYou", 409, f"bucket {bucket.name} already exists")
        await self.call(create)
        return Response(status_code=200, headers={"Location": "/" + bucket.name})

    async def delete_bucket(self, request: Request, bucket: Bucket) -> Response:
        """Pachyderm's DeleteBucket: delete the branch if it holds no file,
        and the repo with it when that was its last branch. Raises S3Error
        BucketNotEmpty (409), NoSuchBucket."""
        if bucket.commit:
            raise read_only(bucket.name)

        def delete() -> None:
            commit = self._snapshot(bucket)
            if commit is not None and next(iter(self.client.iter_files(bucket.repo, commit.id)), None):
                raise S3Error("BucketNotEmpty", 409, f"The bucket {bucket.name} you tried to delete is not empty")
            self.client.delete_branch(bucket.repo, bucket.branch)
            if not self.client.list_branches(bucket.repo):
                self.client.delete_repo(bucket.repo)
        await self.call(delete)
        return Response(status_code=204)

    async def list_objects(self, request: Request, bucket: Bucket, v2: bool) -> Response:
        """ListObjects (v1: ``marker``) and ListObjectsV2 (``continuation-token``,
        ``start-after``): keys in UTF-8 order, ``prefix``, any ``delimiter``
        (rolling keys up into CommonPrefixes), ``max-keys`` (at most 1000),
        ``encoding-type=url``."""
        q = request.query_params
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        max_keys = listing.max_keys(q.get("max-keys"))
        encode = q.get("encoding-type") == "url"
        if v2:
            token = q.get("continuation-token")
            marker = listing.decode_token(token) if token is not None else q.get("start-after", "")
        else:
            marker = q.get("marker", "")
        commit = await self.call(self._snapshot, bucket)
        files = await self.call(self._files_under, bucket, commit, prefix)
        contents, common, truncated, last = listing.page(files, prefix, delimiter, marker, max_keys)
        when = _iso(commit.finished or commit.started) if commit else None
        enc = (lambda s: quote(s, safe="/")) if encode else (lambda s: s)
        fields: dict[str, Any] = {"Name": bucket.name, "Prefix": enc(prefix)}
        if v2:
            fields.update({"ContinuationToken": q.get("continuation-token"), "StartAfter": q.get("start-after") and
                           enc(q.get("start-after", "")), "KeyCount": len(contents) + len(common)})
        else:
            fields["Marker"] = enc(marker)
        fields.update({"Delimiter": enc(delimiter) if delimiter else None, "MaxKeys": max_keys,
                       "EncodingType": "url" if encode else None, "IsTruncated": truncated})
        if truncated:
            fields["NextContinuationToken" if v2 else "NextMarker"] = (listing.encode_token(last) if v2 else enc(last))
        fields["Contents"] = [dict({"Key": enc(key), "LastModified": when, "ETag": f'"{entry.hash}"',
                                    "Size": entry.size, "StorageClass": "STANDARD"},
                                   **({} if v2 else {"Owner": OWNER})) for key, entry in contents]
        fields["CommonPrefixes"] = [{"Prefix": enc(p)} for p in common]
        return xml.response("ListBucketResult", fields)

    def _files_under(self, bucket: Bucket, commit: Commit | None, prefix: str) -> list[tuple[str, FileEntry]]:
        """The files whose key starts with ``prefix``, sorted by key
        (read from the deepest directory the prefix names)."""
        if commit is None:
            return []
        directory = "/" + prefix.rpartition("/")[0]
        try:
            found = self.client.iter_files(bucket.repo, commit.id, directory)
        except (NotFound, InvalidArgument):
            return []
        return sorted((path[1:], entry) for path, entry in found if path[1:].startswith(prefix))

    async def delete_objects(self, request: Request, bucket: Bucket) -> Response:
        """DeleteObjects: every listed key that is a file is deleted, in
        one commit (none if none of them exists); every key is reported
        deleted (S3: deleting a missing key succeeds), unless ``Quiet``."""
        await self.call(self._writable, bucket)
        document = xml.parse(await _small_body(request), "Delete")
        keys = [xml.text(o, "Key") or "" for o in xml.children(document, "Object")]
        if not keys or len(keys) > 1000:
            raise S3Error("MalformedXML", 400, "a Delete request lists 1 to 1000 objects")
        quiet = (xml.text(document, "Quiet") or "").lower() == "true"
        errors = [{"Key": k, "Code": "InvalidArgument", "Message": "invalid key"} for k in keys if _path(k) == "/"]
        good = [k for k in keys if _path(k) != "/"]
        await self.call(self._delete_keys, bucket, good)
        fields: dict[str, Any] = {"Deleted": [] if quiet else [{"Key": k} for k in good], "Error": errors}
        return xml.response("DeleteResult", fields)

    def _delete_keys(self, bucket: Bucket, keys: list[str]) -> None:
        """Delete the keys that are files, in one commit on the branch (no commit if none is)."""
        commit = self._snapshot(bucket)
        if commit is None:
            return
        existing = [k for k in keys if _is_file(self.client, bucket.repo, commit.id, _path(k))]
        if existing:
            self.client.delete_files(bucket.repo, bucket.branch, [_path(k) for k in existing], files_only=True)

    # objects ----------------------------------------------------------------
    async def get_object(self, request: Request, bucket: Bucket, key: str, head: bool) -> Response:
        """GetObject and HeadObject: the file's bytes, streamed, with
        ``Range: bytes=a-b | a- | -n`` (206 and Content-Range; 416
        InvalidRange past the end), ``If-Match``/``If-None-Match``, and
        ``versionId`` (a commit id)."""
        version = request.query_params.get("versionId")
        commit, entry = await self.call(self._object, bucket, key, version)
        etag = f'"{entry.hash}"'
        headers = {"ETag": etag, "Last-Modified": _http_date(commit.finished or commit.started),
                   "Accept-Ranges": "bytes", "x-amz-version-id": commit.id,
                   "Content-Type": mimetypes.guess_type(key)[0] or "application/octet-stream"}
        request_headers = headers_of(request)
        if_match, if_none = request_headers.get("if-match"), request_headers.get("if-none-match")
        if if_match and if_match.strip() not in (etag, "*", entry.hash):
            raise S3Error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold")
        if if_none and if_none.strip() in (etag, "*", entry.hash):
            return Response(status_code=304, headers={"ETag": etag})
        span = parse_range(request_headers.get("range"), entry.size)
        status, offset, length = 200, 0, entry.size
        if span is not None:
            offset, length = span
            status = 206
            headers["Content-Range"] = f"bytes {offset}-{offset + length - 1}/{entry.size}"
        headers["Content-Length"] = str(length)
        if head:
            return Response(status_code=status, headers=headers)
        return StreamingResponse(_guarded(self.client.iter_file(entry, offset, length)), status_code=status,
                                 headers=headers)

    async def put_object(self, request: Request, bucket: Bucket, key: str, signed) -> Response:
        """PutObject: the body (stored as it arrives, see :mod:`.body`) becomes the file
        ``key`` in one new commit on the branch (put-file with overwrite),
        so pipelines reading the branch start. ETag: the content hash."""
        await self.call(self._writable, bucket)
        path = _object_path(key)
        entry = await self._receive(request, signed)
        commit = await self.call(self.client.put_entries, bucket.repo, bucket.branch, [(path, entry)], True)
        return Response(status_code=200, headers={"ETag": f'"{entry.hash}"', "x-amz-version-id": commit.id})

    async def _receive(self, request: Request, signed) -> FileEntry:
        """The request's body, checked and stored (see :mod:`.body`), as an entry to commit."""
        try:
            return await receive(request.stream(), headers_of(request), signed, self.client.store_content)
        except PipectlError as e:
            raise translate(e) from None

    async def copy_object(self, request: Request, bucket: Bucket, key: str) -> Response:
        """CopyObject (``x-amz-copy-source: bucket/key[?versionId=commit]``):
        the source file's entry is put at ``key`` in one commit; no byte is copied."""
        await self.call(self._writable, bucket)
        source_bucket, source_key, version = parse_copy_source(headers_of(request)["x-amz-copy-source"])
        _, entry = await self.call(self._object, self.resolve(source_bucket), source_key, version)
        path = _object_path(key)
        commit = await self.call(self.client.put_entries, bucket.repo, bucket.branch, [(path, entry)], True)
        return xml.response("CopyObjectResult", {"LastModified": _iso(commit.finished or commit.started),
                                                 "ETag": f'"{entry.hash}"'}, headers={"x-amz-version-id": commit.id})

    async def delete_object(self, request: Request, bucket: Bucket, key: str) -> Response:
        """DeleteObject: 204 whether or not the key existed (S3's
        semantics); a commit is made only when it was a file."""
        await self.call(self._writable, bucket)
        if _path(key) != "/":
            await self.call(self._delete_keys, bucket, [key])
        return Response(status_code=204)

    # multipart uploads ---------------------------------------------------------
    async def create_upload(self, request: Request, bucket: Bucket, key: str) -> Response:
        await self.call(self._writable, bucket)
        upload = await self.call(uploads.create, self.client, bucket.repo, bucket.branch, _object_path(key))
        return xml.response("InitiateMultipartUploadResult", {"Bucket": bucket.name, "Key": key,
                                                              "UploadId": upload.id})

    async def upload_part(self, request: Request, bucket: Bucket, key: str, signed) -> Response:
        """UploadPart: the part's bytes are stored as chunks at once (see
        :mod:`.uploads`); its ETag is their content hash."""
        number = uploads.check_part_number(request.query_params.get("partNumber"))
        if "x-amz-copy-source" in headers_of(request):
            raise not_implemented("UploadPartCopy")
        upload = await self.call(uploads.get, self.client, request.query_params["uploadId"], bucket.repo,
                                 bucket.branch, _object_path(key))
        entry = await self._receive(request, signed)
        part = await self.call(uploads.put_part, self.client, upload, number, entry)
        return Response(status_code=200, headers={"ETag": f'"{part.etag}"'})

    async def list_parts(self, request: Request, bucket: Bucket, key: str) -> Response:
        q = request.query_params
        upload = await self.call(uploads.get, self.client, q["uploadId"], bucket.repo, bucket.branch, _object_path(key))
        marker = int(q.get("part-number-marker", "0") or 0) if (q.get("part-number-marker") or "0").isdigit() else 0
        max_parts = listing.max_keys(q.get("max-parts"))
        found = [p for p in await self.call(uploads.parts, self.client, upload) if p.number > marker]
        page, truncated = found[:max_parts], len(found) > max_parts
        return xml.response("ListPartsResult", {
            "Bucket": bucket.name, "Key": key, "UploadId": upload.id, "Initiator": OWNER, "Owner": OWNER,
            "StorageClass": "STANDARD", "PartNumberMarker": marker,
            "NextPartNumberMarker": page[-1].number if page else marker, "MaxParts": max_parts,
            "IsTruncated": truncated,
            "Part": [{"PartNumber": p.number, "LastModified": _iso(p.last_modified), "ETag": f'"{p.etag}"',
                      "Size": p.size} for p in page]})

    async def complete_upload(self, request: Request, bucket: Bucket, key: str) -> Response:
        """CompleteMultipartUpload: the listed parts, in order, become the
        file ``key`` in one commit on the branch (no byte copied)."""
        await self.call(self._writable, bucket)
        path = _object_path(key)
        upload = await self.call(uploads.get, self.client, request.query_params["uploadId"], bucket.repo,
                                 bucket.branch, path)
        document = xml.parse(await _small_body(request), "CompleteMultipartUpload")
        chosen = []
        for part in xml.children(document, "Part"):
            number = xml.text(part, "PartNumber") or ""
            chosen.append((uploads.check_part_number(number), xml.text(part, "ETag")))
        entry = await self.call(uploads.assemble, self.client, upload, chosen)
        commit = await self.call(self.client.put_entries, bucket.repo, bucket.branch, [(path, entry)], True)
        await self.call(uploads.remove, self.client, upload)
        return xml.response("CompleteMultipartUploadResult", {
            "Location": f"{request.base_url}{bucket.name}/{quote(key)}", "Bucket": bucket.name, "Key": key,
            "ETag": f'"{entry.hash}"'}, headers={"x-amz-version-id": commit.id})

    async def abort_upload(self, request: Request, bucket: Bucket, key: str) -> Response:
        upload = await self.call(uploads.get, self.client, request.query_params["uploadId"], bucket.repo,
                                 bucket.branch, _object_path(key))
        await self.call(uploads.remove, self.client, upload)
        return Response(status_code=204)


def translate(error: PipectlError) -> S3Error:
    """The S3 error for an error of the operations layer (NotFound is
    told apart by the callers, which know whether a bucket or a key is
    missing): InvalidArgument 400, Conflict 409 (a path under a file, a
    repo a pipeline reads), StoreUnavailable 503, else 500."""
    if isinstance(error, S3Error):
        return error
    if isinstance(error, InvalidArgument):
        return S3Error("InvalidArgument", 400, str(error))
    if isinstance(error, NotFound):
        return S3Error("NoSuchKey", 404, str(error))
    if isinstance(error, Conflict):
        return S3Error("InvalidFilePath" if "cannot put file" in str(error) else "OperationAborted", 409, str(error))
    if isinstance(error, StoreUnavailable):
        return S3Error("ServiceUnavailable", 503, str(error))
    return S3Error("InternalError", 500, str(error))


# helpers ----------------------------------------------------------------------
def _path(key: str) -> str:
    """The commit path of an object key (``a/b`` -> ``/a/b``); a key that
    cleans to the root or holds ``..`` is the root (no object)."""
    from ...pfs.names import clean_path
    try:
        return clean_path("/" + key)
    except InvalidArgument:
        return "/"


def _object_path(key: str) -> str:
    """The commit path a write to ``key`` puts. Raises S3Error
    InvalidFilePath (Pachyderm's code) for an empty key, ``..``, NUL."""
    path = _path(key)
    if path == "/" or key.endswith("/"):
        raise S3Error("InvalidFilePath", 400, f"invalid object key {key!r}: a file path is needed "
                      "(no '..', no trailing '/')")
    return path


def _is_file(client: Client, repo: str, ref: str, path: str) -> bool:
    try:
        client.file_entry(repo, ref, path)
        return True
    except (NotFound, InvalidArgument):
        return False


def _guarded(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """``pieces``, ending early (the client sees a body shorter than its
    Content-Length) if the store fails once the body has started."""
    try:
        yield from pieces
    except (PipectlError, OSError):
        log.exception("S3 gateway: a GetObject body ended early")


def headers_of(request: Request) -> dict[str, str]:
    """The request's headers (lowercase names), the one place the
    signature checks and every operation read them from: read once, and
    kept in the request's scope. A header sent more than once has its
    values joined with "," (as SigV4's canonical request joins them); a
    repeated ``x-amz-*`` header is refused here, and the signature checks
    refuse a repeated header they cover (see :func:`repeated_headers`).
    Raises S3Error InvalidArgument (400)."""
    found = request.scope.get(_HEADERS)
    if found is None:
        headers: dict[str, str] = {}
        seen_twice: set[str] = set()
        for raw_name, raw_value in request.scope.get("headers", ()):
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            if name in headers:
                seen_twice.add(name)
                headers[name] += "," + value
            else:
                headers[name] = value
        found = request.scope[_HEADERS] = (headers, frozenset(seen_twice))
    headers, repeated = found
    amz = sorted(name for name in repeated if name.startswith("x-amz-"))
    if amz:
        raise invalid_argument(f"the header {amz[0]} was sent more than once")
    return headers


def repeated_headers(request: Request) -> frozenset[str]:
    """The names of the headers the request sent more than once (lowercase)."""
    headers_of(request)
    return request.scope[_HEADERS][1]


def parse_copy_source(header: str) -> tuple[str, str, str | None]:
    """Bucket, key and version (None: the current one) of CopyObject's
    ``x-amz-copy-source: [/]<bucket>/<key>[?versionId=<version>]``, where
    bucket and key are URL-encoded: the header is split at its first
    ``?`` before anything is decoded, so an encoded ``?`` (``%3F``) stays
    in the key."""
    source, _, query = header.strip().partition("?")
    source_bucket, _, source_key = source.lstrip("/").partition("/")
    version = parse_qs(query).get("versionId", [None])[0] or None
    return unquote(source_bucket), unquote(source_key), version


async def _small_body(request: Request) -> bytes:
    """A request's XML body, at most :data:`xml.MAX_BODY` bytes, checked
    against the ``x-amz-content-sha256`` it was signed with (a V4 header
    signature always has one, see :mod:`.sigv4`; an ``aws-chunked`` XML
    body is refused). Raises S3Error MaxMessageLengthExceeded,
    XAmzContentSHA256Mismatch, InvalidRequest, InvalidArgument."""
    declared = check_payload(headers_of(request).get("x-amz-content-sha256", "UNSIGNED-PAYLOAD"))
    if declared.startswith("STREAMING-"):
        raise S3Error("InvalidRequest", 400, "an aws-chunked body is not accepted for this request")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > xml.MAX_BODY:
            raise S3Error("MaxMessageLengthExceeded", 400, "Your request was too big.")
        chunks.append(chunk)
    body = b"".join(chunks)
    if len(declared) == 64 and hashlib.sha256(body).hexdigest() != declared:
        raise S3Error("XAmzContentSHA256Mismatch", 400, "The provided 'x-amz-content-sha256' header does not "
                      "match what was computed.")
    return body


def _iso(stamp: str) -> str:
    """A pipectl time (ISO 8601 with microseconds) as S3 lists it (milliseconds)."""
    return parse_time(stamp).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _http_date(stamp: str) -> str:
    """A pipectl time as an HTTP date (``Last-Modified``)."""
    return email.utils.format_datetime(parse_time(stamp), usegmt=True)
