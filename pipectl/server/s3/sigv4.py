"""AWS Signature Version 4, checked on the server side.

The published algorithm (AWS General Reference, "Signature Version 4
signing process", and the Amazon S3 API Reference, "Authenticating
Requests (AWS Signature Version 4)": header form, presigned query form,
and the chunk signatures of ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``),
written out here in a few small functions, since botocore only signs.

With pipectl's tokens, Pachyderm's rule holds: the access key id is a
token, and the secret key is the same token.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import re
from collections.abc import Callable, Collection, Mapping
from urllib.parse import quote, unquote

from .errors import S3Error, access_denied

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW = datetime.timedelta(minutes=15)
"""How far a request's X-Amz-Date may be from the server's clock (S3's own limit)."""
MAX_EXPIRES = 7 * 24 * 3600
"""The longest a presigned URL may live, in seconds (S3's limit)."""

PAYLOADS = ("UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
"""The values of ``x-amz-content-sha256`` other than a SHA-256 (64 hex digits) understood here."""

_AUTH = re.compile(r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})")


@dataclasses.dataclass
class Signed:
    """A verified request: ``access_key``, and what the chunk signatures of
    a streaming body chain from (``signature``, ``key``, ``date``, ``scope``)."""

    access_key: str
    signature: str
    key: bytes
    date: str
    scope: str

    def chunk_signature(self, previous: str, chunk_sha256: str) -> str:
        """The signature of one chunk of a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` body."""
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", self.date, self.scope, previous, EMPTY_SHA256, chunk_sha256])
        return hmac.new(self.key, to_sign.encode(), hashlib.sha256).hexdigest()

    def trailer_signature(self, previous: str, trailer: bytes) -> str:
        """The signature of the trailing headers of a ``...-PAYLOAD-TRAILER`` body."""
        to_sign = "\n".join(["AWS4-HMAC-SHA256-TRAILER", self.date, self.scope, previous,
                             hashlib.sha256(trailer).hexdigest()])
        return hmac.new(self.key, to_sign.encode(), hashlib.sha256).hexdigest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The derived key: HMAC-SHA256 over date, region, service and ``aws4_request``."""
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def canonical_query(raw_query: str, without: str | None = None) -> str:
    """The canonical query string: every parameter URI-encoded (RFC 3986
    unreserved characters kept), sorted by name then value; ``without``
    (``X-Amz-Signature``) left out."""
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        name, value = unquote(name.replace("+", " ")), unquote(value.replace("+", " "))
        if name != without:
            pairs.append((quote(name, safe="-_.~"), quote(value, safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def check_payload(value: str) -> str:
    """``value``, an ``x-amz-content-sha256``, if it is one of
    :data:`PAYLOADS` or a SHA-256 (64 hex digits, returned in lowercase).
    Raises S3Error InvalidArgument (400), as S3 does."""
    if value in PAYLOADS:
        return value
    if re.fullmatch(r"[0-9a-fA-F]{64}", value):
        return value.lower()
    raise S3Error("InvalidArgument", 400, f"x-amz-content-sha256 must be {', '.join(PAYLOADS)} or a valid sha256 "
                  "value.")


def canonical_request(method: str, raw_path: str, query: str, headers: Mapping[str, str],
                      signed_headers: list[str], payload_hash: str) -> str:
    """The canonical request. ``raw_path``: the path as sent (S3 signs it
    as it is, encoded once); ``headers``: lowercase names."""
    lines = [f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed_headers]
    return "\n".join([method, raw_path or "/", query, "".join(lines), ";".join(signed_headers), payload_hash])


def _check_time(amz_date: str, now: datetime.datetime, expires: int | None = None) -> None:
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        raise access_denied(f"invalid X-Amz-Date {amz_date!r}") from None
    if expires is not None:
        if not 0 < expires <= MAX_EXPIRES:
            raise S3Error("AuthorizationQueryParametersError", 400,
                          f"X-Amz-Expires must be between 1 and {MAX_EXPIRES} seconds")
        if now > when + datetime.timedelta(seconds=expires):
            raise access_denied("Request has expired")
        if when - now > MAX_SKEW:
            raise S3Error("RequestTimeTooSkewed", 403, "The difference between the request time and the "
                          "server's time is too large.")
    elif abs(now - when) > MAX_SKEW:
        raise S3Error("RequestTimeTooSkewed", 403, "The difference between the request time and the server's "
                      "time is too large.")


def verify(method: str, raw_path: str, raw_query: str, headers: Mapping[str, str],
           secret_of: Callable[[str], str | None], now: datetime.datetime | None = None,
           repeated: Collection[str] = ()) -> Signed | None:
    """Check a request's signature, in its header form (``Authorization``)
    or its presigned query form (``X-Amz-Signature``); return what was
    verified, or None for a request that carries neither.

    As S3 does: every ``x-amz-*`` header of the request must be signed;
    the header form must carry ``x-amz-content-sha256`` (what the
    payload was signed as, which :mod:`.body` then holds the body to);
    the presigned form signs ``UNSIGNED-PAYLOAD``.

    ``headers``: lowercase names; ``repeated``: the names of the headers
    sent more than once (none of them may be signed). ``secret_of(access
    key id)``: the secret key, or None for an unknown key. Raises S3Error
    InvalidAccessKeyId, SignatureDoesNotMatch, AccessDenied (malformed,
    expired, an unsigned ``x-amz-*`` header), RequestTimeTooSkewed,
    InvalidRequest (no ``x-amz-content-sha256``), InvalidArgument (a
    repeated signed header, a bad ``x-amz-content-sha256``)."""
    now = now or datetime.datetime.now(datetime.UTC)
    authorization = headers.get("authorization", "")
    if authorization:
        match = _AUTH.fullmatch(authorization.strip())
        if not match:
            raise access_denied("malformed Authorization header")
        credential, signed, signature = match.group(1), match.group(2).split(";"), match.group(3)
        amz_date = headers.get("x-amz-date", "")
        _check_time(amz_date, now)
        if "x-amz-content-sha256" not in headers:
            raise S3Error("InvalidRequest", 400, "Missing required header for this request: x-amz-content-sha256")
        payload = headers["x-amz-content-sha256"]
        check_payload(payload)
        query = canonical_query(raw_query)
    elif "X-Amz-Signature=" in raw_query:
        params = dict(item.partition("=")[::2] for item in raw_query.split("&"))
        params = {k: unquote(v) for k, v in params.items()}
        if params.get("X-Amz-Algorithm") != ALGORITHM:
            raise S3Error("AuthorizationQueryParametersError", 400, f"X-Amz-Algorithm must be {ALGORITHM}")
        credential, signature = params.get("X-Amz-Credential", ""), params.get("X-Amz-Signature", "")
        signed = params.get("X-Amz-SignedHeaders", "host").split(";")
        amz_date = params.get("X-Amz-Date", "")
        try:
            expires = int(params.get("X-Amz-Expires", ""))
        except ValueError:
            raise S3Error("AuthorizationQueryParametersError", 400, "X-Amz-Expires must be a number") from None
        _check_time(amz_date, now, expires)
        payload = "UNSIGNED-PAYLOAD"
        query = canonical_query(raw_query, without="X-Amz-Signature")
    else:
        return None
    access_key, _, scope = credential.partition("/")
    scope_parts = scope.split("/")
    if len(scope_parts) != 4 or scope_parts[3] != "aws4_request" or scope_parts[0] != amz_date[:8]:
        raise access_denied(f"malformed credential scope {scope!r}")
    secret = secret_of(unquote(access_key))
    if secret is None:
        raise S3Error("InvalidAccessKeyId", 403, "The AWS Access Key Id you provided does not exist in our records.")
    if "host" not in signed:
        raise access_denied("the host header must be signed")
    unsigned = sorted(name for name in headers if name.startswith("x-amz-") and name not in signed)
    if unsigned:
        raise access_denied(f"There were headers present in the request which were not signed: {', '.join(unsigned)}")
    twice = sorted(set(signed).intersection(repeated))
    if twice:
        raise S3Error("InvalidArgument", 400, f"the signed header {twice[0]} was sent more than once")
    request = canonical_request(method, raw_path, query, headers, signed, payload)
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])
    key = signing_key(secret, *scope_parts[:3])
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode()):  # bytes: a non-ASCII str would raise
        raise S3Error("SignatureDoesNotMatch", 403, "The request signature we calculated does not match the "
                      "signature you provided. Check your key and signing method.")
    return Signed(unquote(access_key), signature, key, amz_date, scope)
