"""Pachyderm glob patterns, matched against paths inside a commit.

Semantics follow Pachyderm's (which uses Go's ``filepath.Match`` extended
with ``**``): ``*`` matches any run of characters except ``/``, ``?`` one
character except ``/``, ``[...]`` a character class, and ``**`` any run of
characters including ``/``. Patterns are anchored at the root; a leading
``/`` is optional. ``/`` alone matches the root directory (one datum holding
everything).
"""

from __future__ import annotations

import functools
import re

from .errors import InvalidArgument


@functools.lru_cache(maxsize=256)
def compile_glob(pattern: str) -> re.Pattern:
    """Compile ``pattern`` to a regular expression over ``/a/b`` paths.
    Raises InvalidArgument for an unterminated ``[``."""
    body = pattern.strip()
    if not body.startswith("/"):
        body = "/" + body
    if body != "/":
        body = body.rstrip("/")
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if body.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = body.find("]", i + 1)
            if end < 0:
                raise InvalidArgument(f"invalid glob {pattern!r}: unterminated '['")
            cls = body[i + 1:end]
            if cls in ("", "!"):
                raise InvalidArgument(f"invalid glob {pattern!r}: empty character class '[{cls}]'")
            if cls.startswith("!"):
                cls = "^" + cls[1:]
            out.append("[" + cls.replace("\\", "\\\\").replace("[", "\\[") + "]")  # a literal [ (no nested set)
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error as e:  # an empty or reversed class: [] or [z-a]
        raise InvalidArgument(f"invalid glob {pattern!r}: {e.msg}") from None


def match(pattern: str, path: str) -> bool:
    """Whether the commit path ``path`` (``/a/b``) matches ``pattern``. The
    root ``/`` matches only the pattern ``/`` (as in Pachyderm, ``/*`` means
    each top-level entry, never the root itself)."""
    if path == "/":
        return pattern.strip() in ("/", "")
    return compile_glob(pattern).match(path) is not None
