"""The S3 gateway's ASGI app: authentication, then one operation of
:class:`~.routes.Gateway` per request, chosen as the S3 API Reference
tells them apart (path-style addressing: ``/<bucket>/<key>``)."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...client import Client
from ..auth import role_of
from . import sigv2, sigv4, xml
from .errors import S3Error, access_denied, not_implemented
from .routes import SUBRESOURCES, Gateway, headers_of, repeated_headers
from .sigv4 import Signed

log = logging.getLogger(__name__)
READS = ("GET", "HEAD")


def authenticate(request: Request, tokens: dict[str, str] | None) -> Signed | None:
    """Check the request's AWS signature (V4, or V2 as older clients and
    botocore's default presigned S3 URLs sign) against the tokens (access
    key id = secret key = a token, Pachyderm's rule) and its token's role
    (a ``read`` token may only GET and HEAD). Without tokens every request
    passes (any credentials or none; a signature is not checked, as no
    secret is known). Raises S3Error AccessDenied, InvalidAccessKeyId,
    SignatureDoesNotMatch, RequestTimeTooSkewed; InvalidArgument for a
    repeated ``x-amz-*`` header or a repeated header the signature covers
    (the headers are read once, by :func:`~.routes.headers_of`, for the
    signature and the operation alike). Returns the V4 signature (what
    chunk signatures chain from), None otherwise."""
    headers = headers_of(request)
    if not tokens:
        return None
    repeated = repeated_headers(request)
    raw_path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
    query = request.scope.get("query_string", b"").decode("latin-1")

    def secret_of(key: str) -> str | None:
        return key if role_of(tokens, f"Bearer {key}") else None
    signed: Signed | None = None
    if headers.get("authorization", "").startswith("AWS ") or "AWSAccessKeyId=" in query:
        access_key = sigv2.verify(request.method, raw_path, query, headers, secret_of, repeated=repeated)
    else:
        signed = sigv4.verify(request.method, raw_path, query, headers, secret_of, repeated=repeated)
        access_key = signed.access_key if signed else None
    if access_key is None:
        raise access_denied("Access Denied: sign requests with a pipectl token as both the access key id "
                            "and the secret key")
    if role_of(tokens, f"Bearer {access_key}") != "write" and request.method not in READS:
        raise access_denied("Access Denied: this token may only read")
    return signed


async def dispatch(gateway: Gateway, request: Request, signed: Signed | None) -> Response:
    """Run the operation ``request`` asks for, on the bucket
    ``gateway.resolve`` finds by name. Raises S3Error."""
    method, q, headers = request.method, request.query_params, headers_of(request)
    # the decoded path as sent: request.url.path would give a key holding "?", "#" or a backslash as "%3F", ...
    bucket_name, _, key = request.scope["path"].lstrip("/").partition("/")
    if not bucket_name:
        if method == "GET":
            return await gateway.list_buckets(request)
        raise not_implemented(f"{method} on the service")
    bucket = gateway.resolve(bucket_name)
    unknown = sorted(SUBRESOURCES.intersection(q))
    if not key:
        if method == "GET":
            if "location" in q:
                return await gateway.get_location(request, bucket)
            if "versioning" in q:
                return await gateway.get_versioning(request, bucket)
            if unknown:
                raise not_implemented(f"the bucket operation ?{unknown[0]}")
            return await gateway.list_objects(request, bucket, v2=q.get("list-type") == "2")
        if method == "HEAD":
            return await gateway.head_bucket(request, bucket)
        if method == "POST" and "delete" in q:
            return await gateway.delete_objects(request, bucket)
        if method == "PUT" and not q:
            return await gateway.create_bucket(request, bucket)
        if method == "DELETE" and not q:
            return await gateway.delete_bucket(request, bucket)
        raise not_implemented(f"{method} on a bucket" + (f" (?{'&'.join(sorted(q))})" if q else ""))
    if "uploadId" in q:
        if method == "PUT":
            return await gateway.upload_part(request, bucket, key, signed)
        if method == "GET":
            return await gateway.list_parts(request, bucket, key)
        if method == "POST":
            return await gateway.complete_upload(request, bucket, key)
        if method == "DELETE":
            return await gateway.abort_upload(request, bucket, key)
    if method == "POST" and "uploads" in q:
        return await gateway.create_upload(request, bucket, key)
    if unknown:
        raise not_implemented(f"the object operation ?{unknown[0]}")
    if method in READS:
        return await gateway.get_object(request, bucket, key, head=method == "HEAD")
    if method == "PUT":
        if "x-amz-copy-source" in headers:
            return await gateway.copy_object(request, bucket, key)
        return await gateway.put_object(request, bucket, key, signed)
    if method == "DELETE":
        return await gateway.delete_object(request, bucket, key)
    raise not_implemented(f"{method} on an object")


def create_s3_app(client: Client | None, tokens: dict[str, str] | None = None,
                  gateway: Gateway | None = None) -> Starlette:
    """The S3 gateway over ``client``: an ASGI app answering S3 requests
    (path style) for the buckets of :mod:`.buckets`, or for those of
    ``gateway`` when given (the worker's sidecar). ``tokens``:
    ``{token: role}`` as the API server's (see :func:`authenticate`); None
    or empty leaves it open."""
    if gateway is None:
        assert client is not None
        gateway = Gateway(client)

    async def handle(request: Request) -> Response:
        try:
            signed = authenticate(request, tokens)
            return await dispatch(gateway, request, signed)
        except S3Error as e:
            error = e
        except Exception as e:  # noqa: BLE001 (an S3 client needs S3's error document; the cause is logged)
            log.exception("S3 gateway: %s %s failed", request.method, request.url.path)
            error = S3Error("InternalError", 500, f"internal error: {type(e).__name__}")
        response = xml.error_response(error, request.url.path, head=request.method == "HEAD")
        if request.method in ("PUT", "POST"):  # a body left unread would be taken for the next request
            response.headers["Connection"] = "close"
        return response

    methods = ["GET", "HEAD", "PUT", "POST", "DELETE"]
    return Starlette(routes=[Route("/", handle, methods=methods), Route("/{path:path}", handle, methods=methods)])
