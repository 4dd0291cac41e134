"""Datums: how a pipeline's inputs are split into units of work.

Each ``pfs`` input's glob is matched against the paths (files and
directories) of its input commit; each match is one datum holding the matched
file, or every file below the matched directory. ``cross`` yields the
cartesian product of its children's datums, ``union`` their concatenation
(Pachyderm's semantics). ``join`` and ``group`` key each match of their
``pfs`` children by ``join_on`` / ``group_by`` (a template over the glob's
capture groups, ``$1``): a join makes, per key, the cartesian product of the
children's matches with that key (with ``outer_join``, a child's matches are
kept when other children lack the key); a group makes one datum per key
holding every child's matches with that key. These follow Pachyderm's
datum code (``src/server/worker/datum/worker.go``). A datum's files appear
to user code at ``/pfs/<input name>/<path in commit>``.

A datum's id is the SHA-256 of its inputs' names, matched paths, file paths
and file content hashes, so the same data gives the same id in every job; the
cache key adds the pipeline's transform hash, so a datum is reprocessed only
when its data or the code that processes it changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools

from .. import glob as globs
from ..pfs.tree import FileEntry, Tree
from . import cron


@dataclasses.dataclass
class DatumInput:
    """One input's share of a datum: the glob match ``path`` in ``repo@commit``
    and the ``files`` (commit path -> entry) at or below it."""

    name: str
    repo: str
    branch: str
    commit: str
    path: str
    files: dict[str, FileEntry]
    join_on: str = ""
    """The evaluated ``join_on`` key of this match (join inputs), else ''."""
    group_by: str = ""
    """The evaluated ``group_by`` key of this match (group inputs), else ''."""

    def to_dict(self, files: bool = True) -> dict:
        """JSON form; ``files=False`` leaves out the file list (for datums
        that will not run, whose files nobody needs to lay out)."""
        d: dict[str, object] = {"name": self.name, "repo": self.repo, "branch": self.branch, "commit": self.commit,
                                "path": self.path}
        for key in ("join_on", "group_by"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        if files:
            d["files"] = {p: [e.size, list(e.objects)] for p, e in self.files.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DatumInput:
        files = {p: FileEntry(s, tuple(o)) for p, (s, o) in d["files"].items()}
        return cls(d["name"], d["repo"], d["branch"], d["commit"], d["path"], files, d.get("join_on", ""),
                   d.get("group_by", ""))


@dataclasses.dataclass
class Datum:
    """A unit of work: one :class:`DatumInput` per pfs input taking part."""

    inputs: list[DatumInput]
    id: str = dataclasses.field(init=False, repr=False, compare=False)
    """SHA-256 hex of the inputs' names, matched paths, file paths and hashes
    (computed once, when the datum is made: every datum of a plan needs it)."""

    def __post_init__(self) -> None:
        # "<name>\0<path>\0" then "<file path>\0<file hash>\0" per file, for
        # each input, hashed in one call (a plan computes 10,000s of these;
        # a plain attribute, since functools.cached_property takes a lock
        # per first access in Python 3.11)
        parts = []
        for i in self.inputs:
            parts.append(f"{i.name}\0{i.path}\0")
            parts.extend([f"{p}\0{e.hash}\0" for p, e in i.files.items()])
        self.id = hashlib.sha256("".join(parts).encode()).hexdigest()

    @property
    def size(self) -> int:
        """Total input bytes."""
        return sum(e.size for i in self.inputs for e in i.files.values())

    def to_dict(self, files: bool = True) -> dict:
        """JSON form (see :meth:`DatumInput.to_dict`)."""
        return {"id": self.id, "inputs": [i.to_dict(files) for i in self.inputs]}

    @classmethod
    def from_dict(cls, d: dict) -> Datum:
        return cls([DatumInput.from_dict(i) for i in d["inputs"]])


def cache_key(transform_hash: str, salt: str, datum_id: str) -> str:
    """Identity of a datum's processing: same transform, same salt (changed by
    ``update-pipeline --reprocess``) and same data give the same key."""
    return hashlib.sha256(f"{transform_hash}\0{salt}\0{datum_id}".encode()).hexdigest()


def compute(input_spec: dict, commits: dict[tuple[str, str], tuple[str, Tree]]) -> list[Datum]:
    """The datums of an input tree. ``commits`` maps each pfs input's
    ``(repo, branch)`` to ``(commit id, tree)`` (by repo, not input name: the
    branches of a union may share a name); one missing there yields no
    datums."""

    def walk(node: dict) -> list[Datum]:
        if "pfs" in node or "cron" in node:
            return [Datum([i]) for i in matches(node["pfs"] if "pfs" in node else cron.as_pfs(node["cron"]))]
        if "cross" in node:
            parts = [walk(child) for child in node["cross"]]
            return [Datum([i for d in combo for i in d.inputs]) for combo in itertools.product(*parts)]
        if "join" in node:
            return _join([(child["pfs"], matches(child["pfs"])) for child in node["join"]])
        if "group" in node:
            return _group([i for child in node["group"] for i in matches(child["pfs"])])
        return [d for child in node["union"] for d in walk(child)]

    def matches(p: dict) -> list[DatumInput]:
        if (p["repo"], p["branch"]) not in commits:
            return []
        commit, tree = commits[p["repo"], p["branch"]]
        return [DatumInput(p["name"], p["repo"], p["branch"], commit, path, tree.subtree(path),
                           globs.expand(p["glob"], path, p["join_on"]) if p.get("join_on") else "",
                           globs.expand(p["glob"], path, p["group_by"]) if p.get("group_by") else "")
                for path in tree.glob(p["glob"])]

    return walk(input_spec)


def _join(children: list[tuple[dict, list[DatumInput]]]) -> list[Datum]:
    """Pachyderm's join: per ``join_on`` key (in sorted order), the product
    of the children's matches with that key; when some child lacks the key,
    the product over the children that have it, keeping only the inputs of
    ``outer_join`` children (nothing if none is left)."""
    keyed: list[dict[str, list[DatumInput]]] = []
    for _, found in children:
        by_key: dict[str, list[DatumInput]] = {}
        for i in found:
            by_key.setdefault(i.join_on, []).append(i)
        keyed.append(by_key)
    datums = []
    for key in sorted(set().union(*keyed)):
        having = [n for n, by_key in enumerate(keyed) if key in by_key]
        for combo in itertools.product(*(keyed[n][key] for n in having)):
            if len(having) == len(children):
                datums.append(Datum(list(combo)))
            else:
                kept = [i for n, i in zip(having, combo) if children[n][0].get("outer_join")]
                if kept:
                    datums.append(Datum(kept))
    return datums


def _group(found: list[DatumInput]) -> list[Datum]:
    """Pachyderm's group: one datum per ``group_by`` key (in sorted order)
    holding every match, of every child, with that key."""
    by_key: dict[str, list[DatumInput]] = {}
    for i in found:
        by_key.setdefault(i.group_by, []).append(i)
    return [Datum(by_key[key]) for key in sorted(by_key)]


def shard(datums: list, index: int, count: int) -> list:
    """The datums worker ``index`` of ``count`` runs (round robin)."""
    return datums[index::count]


