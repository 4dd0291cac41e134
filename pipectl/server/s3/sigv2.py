"""AWS Signature Version 2, the older scheme some S3 clients still use,
and the one botocore's ``generate_presigned_url`` uses for S3 unless told
``signature_version="s3v4"``: ``Authorization: AWS <key>:<signature>``,
or the query form ``?AWSAccessKeyId=&Expires=&Signature=``.

The algorithm is the Amazon S3 Developer Guide's "Signing and
authenticating REST requests": HMAC-SHA1 (base64) over the method,
Content-MD5, Content-Type, Date (or Expires), the ``x-amz-*`` headers and
the resource (path and the sub-resources that name an operation).
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import hashlib
import hmac
import time
from collections.abc import Callable, Collection, Mapping
from urllib.parse import unquote

from .errors import S3Error, access_denied
from .sigv4 import MAX_SKEW

SIGNED_SUBRESOURCES = {"acl", "delete", "lifecycle", "location", "logging", "notification", "partNumber", "policy",
                       "requestPayment", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning",
                       "versions", "website", "response-content-type", "response-content-language",
                       "response-expires", "response-cache-control", "response-content-disposition",
                       "response-content-encoding"}
"""The query parameters that are part of the signed resource."""
SIGNED_HEADERS = ("content-md5", "content-type", "date")
"""The headers a V2 signature covers besides the ``x-amz-*`` ones."""


def string_to_sign(method: str, raw_path: str, query: Mapping[str, str], headers: Mapping[str, str],
                   date: str) -> str:
    """The string a V2 signature covers (``headers``: lowercase names;
    ``date``: the Date header, or Expires for the query form)."""
    amz = sorted((k, " ".join(v.split())) for k, v in headers.items() if k.startswith("x-amz-"))
    resource = raw_path or "/"
    sub = sorted((k, v) for k, v in query.items() if k in SIGNED_SUBRESOURCES)
    if sub:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in sub)
    lines = [method, headers.get("content-md5", ""), headers.get("content-type", ""), date]
    return "\n".join(lines + [f"{k}:{v}" for k, v in amz] + [resource])


def _check_time(stamp: str) -> None:
    """Refuse a header-signed request whose date (RFC 7231, as the V2 form
    sends it) is missing or further than V4's 15 minutes from now, so that
    a captured request cannot be replayed later. Raises S3Error."""
    try:
        when = email.utils.parsedate_to_datetime(stamp)
    except (TypeError, ValueError):
        raise access_denied(f"invalid Date {stamp!r}: a signed request needs its date") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    if abs(datetime.datetime.now(datetime.UTC) - when) > MAX_SKEW:
        raise S3Error("RequestTimeTooSkewed", 403, "The difference between the request time and the server's "
                      "time is too large.")


def verify(method: str, raw_path: str, raw_query: str, headers: Mapping[str, str],
           secret_of: Callable[[str], str | None], repeated: Collection[str] = ()) -> str | None:
    """Check a V2 signature (header or query form); return the access
    key id, or None when the request has no V2 signature. ``repeated``:
    the names of the headers sent more than once (none of them may be
    signed). Raises S3Error InvalidAccessKeyId, SignatureDoesNotMatch,
    AccessDenied (expired), InvalidArgument (a repeated signed header)."""
    query = {unquote(k): unquote(v) for k, _, v in (p.partition("=") for p in raw_query.split("&") if p)}
    authorization = headers.get("authorization", "")
    if authorization.startswith("AWS "):
        access_key, _, signature = authorization[4:].strip().rpartition(":")
        date = "" if "x-amz-date" in headers else headers.get("date", "")
        _check_time(headers.get("x-amz-date") or headers.get("date", ""))
    elif "AWSAccessKeyId" in query and "Signature" in query:
        access_key, signature, date = query["AWSAccessKeyId"], query["Signature"], query.get("Expires", "")
        if not date.isdigit() or int(date) < time.time():
            raise access_denied("Request has expired")
    else:
        return None
    twice = sorted(name for name in repeated if name in SIGNED_HEADERS or name.startswith("x-amz-"))
    if twice:
        raise S3Error("InvalidArgument", 400, f"the signed header {twice[0]} was sent more than once")
    secret = secret_of(access_key)
    if secret is None:
        raise S3Error("InvalidAccessKeyId", 403, "The AWS Access Key Id you provided does not exist in our records.")
    to_sign = string_to_sign(method, raw_path, query, headers, date)
    expected = base64.b64encode(hmac.new(secret.encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(expected.encode(), signature.encode()):  # bytes: a non-ASCII str would raise
        raise S3Error("SignatureDoesNotMatch", 403, "The request signature we calculated does not match the "
                      "signature you provided. Check your key and signing method.")
    return access_key
