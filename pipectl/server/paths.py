"""Names with a ``/`` in URL paths: a repo or pipeline of a project other
than ``default`` is named ``project/name`` (see :mod:`pipectl.pfs.names`),
which a client sends as one path segment, ``project%2Fname``.

ASGI servers hand the application the path already percent-decoded, where
``%2F`` can no longer be told from a ``/`` between segments. So
:class:`EncodedSlashes` re-decodes the raw path keeping ``%2F`` (and
``%25``, so that a literal ``%`` stays unambiguous) escaped, and the route
convertors registered here, ``{repo:name}`` for one segment and
``{path:file}`` for a file path, decode those two at the end. Registered on
import, as Starlette's convertors are.
"""

from __future__ import annotations

import re
import urllib.parse

from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send

_KEPT = re.compile(r"(%2[fF]|%25)")


class Escaped(Convertor):
    """A path parameter matching ``regex`` in which the escapes
    :class:`EncodedSlashes` kept are decoded; ``safe``: the characters a
    URL built for it leaves as they are."""

    def __init__(self, regex: str, safe: str):
        self.regex, self.safe = regex, safe

    def convert(self, value: str) -> str:
        return urllib.parse.unquote(value)

    def to_string(self, value: str) -> str:
        return urllib.parse.quote(value, safe=self.safe)


NAME = Escaped("[^/]+", safe="")
"""One segment, ``%2F`` in it meaning ``/`` (``project/name``)."""
FILE = Escaped(".*", safe="/")
"""The rest of the path: a file's path in a commit."""
register_url_convertor("name", NAME)
register_url_convertor("file", FILE)


class EncodedSlashes:
    """ASGI middleware: the request path decoded but for ``%2F`` and ``%25``
    (see the module doc)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path")
        if scope["type"] == "http" and raw and b"%2" in raw:
            path = raw.split(b"?", 1)[0].decode("latin-1")
            parts = _KEPT.split(path)  # odd items are the kept escapes
            decoded = "".join(p.upper() if i % 2 else urllib.parse.unquote(p) for i, p in enumerate(parts))
            scope = dict(scope, path=decoded)
        await self.app(scope, receive, send)
