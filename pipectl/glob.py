"""Pachyderm glob patterns, matched against paths inside a commit.

Semantics follow Pachyderm's (its ohmyglob library, with ``/`` the
separator): ``*`` matches any run of characters except ``/``, ``?`` one
character except ``/``, ``[...]`` a character class, ``**`` any run of
characters including ``/``, and the extended glob groups ``(a|b)`` (also
``@(...)``), ``*(...)``, ``+(...)``, ``?(...)``, which capture what they
match for ``join_on`` and ``group_by`` (:func:`expand`). Patterns are anchored at the root; a leading
``/`` is optional. ``/`` alone matches the root directory (one datum holding
everything).
"""

from __future__ import annotations

import functools
import re

from .errors import InvalidArgument


@functools.lru_cache(maxsize=256)
def compile_glob(pattern: str) -> re.Pattern:
    """Compile ``pattern`` to a regular expression over ``/a/b`` paths, each
    capture group of the glob a group of the expression (numbered left to
    right, as ``$1``... in :func:`expand`). Raises InvalidArgument for an
    unterminated ``[`` or ``(``, an empty class, or ``!(...)``."""
    body = pattern.strip()
    if not body.startswith("/"):
        body = "/" + body
    if body != "/":
        body = body.rstrip("/")
    regex, end = _translate(body, 0, pattern, nested=False)
    if end < len(body):  # a ) or | outside any group
        raise InvalidArgument(f"invalid glob {pattern!r}: unexpected {body[end]!r} outside a group")
    try:
        return re.compile(regex + r"\Z")
    except re.error as e:  # an empty or reversed class: [] or [z-a]
        raise InvalidArgument(f"invalid glob {pattern!r}: {e.msg}") from None


_GROUPS = {"@": "", "*": "*", "+": "+", "?": "?"}
"""Extended glob groups (as Pachyderm's ohmyglob): ``@(a|b)`` or ``(a|b)``
one of the alternatives, ``*(...)`` any number of them, ``+(...)`` at least
one, ``?(...)`` at most one."""


MAX_GROUP_DEPTH = 16
"""Deepest nesting of ``(...)`` groups a glob may have."""


def _translate(body: str, i: int, pattern: str, nested: bool, depth: int = 0) -> tuple[str, int]:
    """The regex of ``body[i:]`` up to the end, or (``nested``) to the ``)``
    or ``|`` closing the current alternative; returns it and where it
    stopped."""
    if depth > MAX_GROUP_DEPTH:
        raise InvalidArgument(f"invalid glob {pattern!r}: groups nested deeper than {MAX_GROUP_DEPTH}")
    out: list[str] = []
    while i < len(body):
        c = body[i]
        if c in ")|":
            if not nested:
                return "".join(out), i
            break
        if c in _GROUPS and body.startswith("(", i + 1) or c == "(":
            quantifier = _GROUPS[c] if c != "(" else ""
            i += 1 if c == "(" else 2
            alternatives = []
            while True:
                alternative, i = _translate(body, i, pattern, nested=True, depth=depth + 1)
                alternatives.append(alternative)
                if i >= len(body):
                    raise InvalidArgument(f"invalid glob {pattern!r}: unterminated '('")
                i += 1
                if body[i - 1] == ")":
                    break
            out.append(f"((?:{'|'.join(alternatives)}){quantifier})")
        elif c == "!" and body.startswith("(", i + 1):
            raise InvalidArgument(f"invalid glob {pattern!r}: '!(...)' groups are not supported")
        elif body.startswith("**", i):
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
            cls = cls.replace("\\", "\\\\").replace("[", "\\[")  # a literal [ (no nested set)
            out.append("[" + re.sub(r"([-&~|])(?=\1)", r"\1\\", cls) + "]")  # no set operations (--, &&, ~~, ||)
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out), i


_TEMPLATE = re.compile(r"\$(?:\$|([0-9]+)|\{([0-9]+)\})")


def expand(pattern: str, path: str, template: str) -> str:
    """``template`` (Pachyderm's ``join_on``/``group_by``) with ``$n`` or
    ``${n}`` replaced by capture group n of ``pattern`` matched against
    ``path`` (``$0``: the whole path; a group out of range: empty), ``$$``
    by ``$``; other text is kept. '' when ``path`` does not match."""
    m = compile_glob(pattern).match(path)
    if m is None:
        return ""

    def group(t: re.Match) -> str:
        if t.group(0) == "$$":
            return "$"
        n = int(t.group(1) or t.group(2))
        return (path if n == 0 else m.group(n) if n <= (m.re.groups or 0) else "") or ""
    return _TEMPLATE.sub(group, template)


def match(pattern: str, path: str) -> bool:
    """Whether the commit path ``path`` (``/a/b``) matches ``pattern``. The
    root ``/`` matches only the pattern ``/`` (as in Pachyderm, ``/*`` means
    each top-level entry, never the root itself)."""
    if path == "/":
        return pattern.strip() in ("/", "")
    return compile_glob(pattern).match(path) is not None


_SYNTAX = frozenset("*?[(|)")
"""Characters that make a glob component more than literal text (``!``,
``@`` and ``+`` only do before a ``(``)."""


def literal_prefix(pattern: str) -> str:
    """The path that every match of ``pattern`` is at or below: its leading
    components free of glob syntax (``/a/b`` for ``/a/b/*.csv``; ``/`` when
    the first component has some, or for the pattern ``/``)."""
    parts = []
    for part in pattern.strip().strip("/").split("/"):
        if not part or _SYNTAX.intersection(part):
            break
        parts.append(part)
    return "/" + "/".join(parts)
