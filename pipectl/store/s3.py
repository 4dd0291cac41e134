"""An S3 (or any S3-compatible endpoint) object store, through botocore.

botocore is the AWS SDK's engine: a boto3 client is a botocore client, and
this store makes its client with botocore directly, since it uses none of
what boto3 adds on top (resources, managed transfers), which cost every
command about 80 ms of imports and client set-up.

Configuration comes from the standard AWS variables (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``...) and
files, read by botocore itself. Conditional writes use ``If-None-Match: *`` and
``If-Match: <etag>`` (supported by AWS S3 since 2024, MinIO, moto, and
versitygw, whose posix backend makes them atomic under concurrent writers
only since v1.8.0: the store needs the atomic form).

Failures to reach the endpoint are retried a bounded number of times
(``PIPECTL_S3_MAX_ATTEMPTS``, default 3; connect timeout
``PIPECTL_S3_CONNECT_TIMEOUT`` seconds, default 3) and then raised as
:class:`~pipectl.errors.StoreUnavailable`.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

import botocore.config
import botocore.exceptions
import botocore.session

from ..errors import InvalidArgument, NotFound, PreconditionFailed, StoreUnavailable
from .base import Bytes, ObjectStore

_NETWORK_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
)


def _s3(fn):
    """Decorate an S3Store method: botocore errors become pipectl errors."""

    @functools.wraps(fn)
    def inner(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except _NETWORK_ERRORS as e:
            raise StoreUnavailable(f"cannot reach S3 endpoint {self.endpoint}: {e}") from None
        except botocore.exceptions.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            name = args[0] if args else "?"
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"object {name} not found") from None
            if code == "NoSuchBucket":
                raise StoreUnavailable(f"S3 bucket {self.bucket} does not exist") from None
            if code == "PreconditionFailed" or status == 412:
                raise PreconditionFailed(f"object {name} changed concurrently") from None
            raise StoreUnavailable(f"S3 error on {name}: {code or status}") from None
        except botocore.exceptions.BotoCoreError as e:  # anything else botocore refused or could not do
            raise StoreUnavailable(f"S3 error on {args[0] if args else '?'}: {e}") from None

    return inner


class _ViewBody:
    """A read-only, seekable file over a memoryview (a chunk in a mapped
    file or a cutting window): what botocore is given where it may have to
    read a body more than once, to compute a checksum (over HTTPS, or
    whenever it computes request checksums) or to send it again after a
    failed attempt (it rewinds files, and refuses to retry a body it
    cannot rewind), without copying it whole."""

    def __init__(self, data: memoryview):
        self._view = data
        self._pos = 0

    def __len__(self) -> int:
        return len(self._view)

    def read(self, n: int | None = -1) -> memoryview:
        end = len(self._view) if n is None or n < 0 else min(len(self._view), self._pos + n)
        piece = self._view[self._pos:max(self._pos, end)]  # no copy: botocore hashes and sends views
        self._pos = max(self._pos, end)
        return piece

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


CONFLICT_ATTEMPTS = 5
"""Tries of a conditional write S3 answers ``409 ConditionalRequestConflict``
(another conditional write of the key in flight), 50 ms apart, doubling."""

_client_lock = threading.Lock()


@functools.cache
def _loader():
    """The process's one botocore data loader: it keeps the service models it
    has parsed, so the first client costs about 0.2 s and the next ones (in
    this process, or in a worker forked from it) 0.04 s."""
    return botocore.session.get_session().get_component("data_loader")


def _client(config: botocore.config.Config):
    """An S3 client from a new session (credentials and settings read now)
    that shares :func:`_loader`."""
    with _client_lock:  # botocore sessions are not safe to share between threads while they make clients
        session = botocore.session.get_session()
        session.register_component("data_loader", _loader())
        return session.create_client("s3", config=config)


def _checksums() -> dict[str, str]:
    """botocore's checksum setting for an endpoint over plain HTTP given in
    the environment (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``), unless
    ``AWS_REQUEST_CHECKSUM_CALCULATION`` is set: checksums only where an
    operation requires one (DeleteObjects). Over plain HTTP botocore signs
    every body with its SHA-256, which the server checks; the CRC32 it adds
    by default is a second pass over every byte, here and at the server,
    that checks nothing more (an S3 store's chunk writes through the S3
    gateway: about 10% of the gateway's CPU on a PUT). Over HTTPS botocore
    sends the CRC32 instead of the SHA-256 (in a trailer), so the default
    is kept."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    if endpoint.startswith("http://") and "AWS_REQUEST_CHECKSUM_CALCULATION" not in os.environ:
        return {"request_checksum_calculation": "when_required"}
    return {}


class S3Store(ObjectStore):
    """An :class:`ObjectStore` in ``bucket`` under an optional key ``prefix``."""

    def __init__(self, bucket: str, prefix: str = ""):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        checksums = _checksums()
        self._views_whole = bool(checksums)  # the client computes no request checksum (see write)
        config = botocore.config.Config(
            retries={"max_attempts": int(os.environ.get("PIPECTL_S3_MAX_ATTEMPTS", "3")),
                     "mode": "standard"},
            connect_timeout=float(os.environ.get("PIPECTL_S3_CONNECT_TIMEOUT", "3")),
            read_timeout=60,
            max_pool_connections=64,
            # botocore's validation takes a body only as bytes or a file, and sends a file 16 KiB
            # a read (about 1 ms of interpreter work per chunk here) after an
            # "Expect: 100-continue" round trip; a memoryview, which it then accepts, is sent in
            # one call (see write). This store's own calls are the only ones made with this client.
            parameter_validation=False,
            **checksums,
        )
        try:
            self.client = _client(config)
        except botocore.exceptions.BotoCoreError as e:  # a bad region or endpoint, say: one line, no secret in it
            raise InvalidArgument(f"S3 store configuration: {e}") from None
        self.endpoint = self.client.meta.endpoint_url

    def _key(self, key: str) -> str:
        if not key:  # with no prefix, an empty key would address the bucket itself
            raise ValueError("an S3 store's object key cannot be empty")
        return self.prefix + key

    @_s3
    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    @_s3
    def read_versioned(self, key: str) -> tuple[bytes, str]:
        response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        return response["Body"].read(), response["ETag"]

    @_s3
    def write(self, key: str, data: Bytes, *, if_match: str | None = None,
              if_absent: bool = False) -> str:
        """As :meth:`ObjectStore.write`. A conditional write is exactly-once
        despite botocore's retries: when an attempt's answer is lost (a
        timeout, a dropped connection, a 5xx after the server stored it),
        the retry is refused with 412, and that refusal is then this
        writer's own success if the key now holds exactly ``data`` (read
        back; a condition another writer broke leaves other bytes: a
        commit, branch or job record names its writer's commit or time).
        A ``409 ConditionalRequestConflict`` (S3: another conditional
        write of the key is in flight) is tried again up to
        :data:`CONFLICT_ATTEMPTS` times, then raises StoreUnavailable for a
        create-only write (the other writer may die: the object may not
        exist) and PreconditionFailed for an ``if_match`` one."""
        extra = {}
        if if_absent:
            extra["IfNoneMatch"] = "*"
        elif if_match is not None:
            extra["IfMatch"] = if_match
        view = None
        if isinstance(data, memoryview):
            view = data.cast("B") if data.format != "B" or data.ndim != 1 else data

        def put(body) -> str:
            return self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body, **extra)["ETag"]

        def send() -> str:
            if view is None:
                return put(data)
            if not self._views_whole:  # botocore may read the body twice (a checksum, then the request)
                return put(_ViewBody(view))
            try:  # a view goes as it is: hashed for the signature and sent in one call, with no copy
                return put(view)
            except botocore.exceptions.UnseekableStreamError:  # an attempt failed, and botocore cannot rewind a view
                return put(_ViewBody(view))

        if not extra:
            return send()
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                return send()
            except botocore.exceptions.ClientError as e:
                metadata = e.response.get("ResponseMetadata", {})
                if metadata.get("HTTPStatusCode") == 412 and metadata.get("RetryAttempts"):
                    held = self._holding(key, data if view is None else view)
                    if held is not None:
                        return held
                if e.response.get("Error", {}).get("Code") != "ConditionalRequestConflict":
                    raise
                if attempt + 1 == CONFLICT_ATTEMPTS:
                    if if_absent:
                        raise StoreUnavailable(f"object {key}: another write of it stayed in flight") from None
                    raise PreconditionFailed(f"object {key} changed concurrently") from None
                time.sleep(0.05 * 2 ** attempt)
        raise AssertionError("unreachable")

    def _holding(self, key: str, data: Bytes) -> str | None:
        """The version of ``key`` if it holds exactly ``data``, else None."""
        try:
            stored, version = self.read_versioned(key)
        except NotFound:
            return None
        return version if stored == data else None

    @_s3
    def open(self, key: str) -> BinaryIO:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]

    @_s3
    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key),
                                      Range=f"bytes={offset}-{offset + length - 1}")["Body"].read()

    @_s3
    def size(self, key: str) -> int:
        return self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"]

    @_s3
    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except botocore.exceptions.ClientError as e:
            if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise

    @_s3
    def list(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        skip = len(self.prefix)
        keys: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            keys.extend(item["Key"][skip:] for item in page.get("Contents", ()))
        return iter(keys)

    @_s3
    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
