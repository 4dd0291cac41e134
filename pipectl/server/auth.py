"""Bearer tokens for the pipectl server.

A tokens file (``pipectl server --tokens FILE``, ``$PIPECTL_SERVER_TOKENS``;
on Kubernetes a Secret mounted as a file) holds one token per line, after its
role::

    # role   token
    read     3f1c0d9e...     # GET requests only
    write    a94b77e2...     # every request

Blank lines and ``#`` comments are ignored. Requests carry ``Authorization:
Bearer <token>``. Without a tokens file the server is open, which it allows
only on a loopback address.
"""

from __future__ import annotations

import hmac
import ipaddress

from ..errors import InvalidArgument

ROLES = ("read", "write")


def load_tokens(path: str) -> dict[str, str]:
    """``{token: role}`` from a tokens file. Raises InvalidArgument for an
    unreadable file, a bad line (naming its number) or a file with no token."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise InvalidArgument(f"tokens file {path}: {e.strerror}") from None
    tokens: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or words[0] not in ROLES or len(words[1]) < 16:
            raise InvalidArgument(f"tokens file {path}, line {number}: expected '<read|write> <token of 16 "
                                  "characters or more>'")
        tokens[words[1]] = words[0]
    if not tokens:
        raise InvalidArgument(f"tokens file {path} holds no token")
    return tokens


def role_of(tokens: dict[str, str], header: str | None) -> str | None:
    """The role of the bearer token in an ``Authorization`` header value,
    or None (no header, another scheme, an unknown token). Compares in
    constant time."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return None
    found = None
    for token, role in tokens.items():
        if hmac.compare_digest(token.encode(), given.strip().encode()):
            found = role
    return found


COOKIE = "pipectl_token"
"""The console's sign-in cookie, holding a token (HttpOnly, SameSite=Strict)."""


def request_role(tokens: dict[str, str], authorization: str | None, cookie: str | None) -> tuple[str | None, bool]:
    """``(role, by_cookie)`` of a request: its ``Authorization`` header's
    token, else its sign-in cookie's; ``(None, False)`` without a known token."""
    role = role_of(tokens, authorization)
    if role is None and cookie:
        role = role_of(tokens, f"Bearer {cookie}")
        return role, role is not None
    return role, False


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
