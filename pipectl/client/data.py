"""Operations on versioned data: repos, branches, commits and files.
Part of :class:`~pipectl.client.Client`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from ..errors import Conflict
from ..pfs import PFS, Branch, Commit, FileEntry, Node, RepoInfo
from ..pfs.files import Source
from ..pfs.model import now
from ..pfs.objects import ObjectWriter, TransferStats
from ..pfs.reader import iter_objects_range
from ..pps import PPS


@dataclasses.dataclass
class RepoSummary:
    """A repo with the size of its master head (bytes) and, when asked
    for, its branch names."""

    info: RepoInfo
    size_bytes: int
    branches: list[str] | None = None

    def to_dict(self) -> dict:
        """The JSON form ``--raw`` prints: the repo's fields plus these."""
        d = dict(self.info.to_dict(), size_bytes=self.size_bytes)
        if self.branches is not None:
            d["branches"] = self.branches
        return d


class DataOps:
    """Repos, branches, commits and files (see :class:`~pipectl.client.Client`)."""

    pfs: PFS
    pps: PPS

    # repos ---------------------------------------------------------------
    def create_repo(self, repo: str, description: str = "") -> RepoInfo:
        """Raises AlreadyExists, InvalidArgument."""
        return self.pfs.create_repo(repo, description)

    def list_repos(self) -> list[RepoSummary]:
        """Every repo, newest first, with its master head's size."""
        return [RepoSummary(r, self.pfs.repo_size(r.name)) for r in self.pfs.list_repos()]

    def inspect_repo(self, repo: str) -> RepoSummary:
        """A repo with its size and branches. Raises NotFound."""
        info = self.pfs.inspect_repo(repo)
        return RepoSummary(info, self.pfs.repo_size(repo), [b.name for b in self.pfs.list_branches(repo)])

    def delete_repo(self, repo: str, force: bool = False) -> None:
        """Delete a repo and its history. Refuses (Conflict) while a
        pipeline reads it, unless ``force``. Raises NotFound."""
        self.pfs.inspect_repo(repo)
        users = self.pps.pipelines_using(repo)
        if users and not force:
            raise Conflict(f"repo {repo} is used by pipeline(s) {', '.join(users)}; "
                           "delete them first or pass --force")
        self.pfs.delete_repo(repo)

    # commits -------------------------------------------------------------
    def start_commit(self, repo: str, branch: str, description: str = "", parent: str | None = None) -> Commit:
        """Open a commit on ``branch``. Raises NotFound, Conflict (one is open)."""
        return self.pfs.start_commit(repo, branch, description, parent)

    def finish_commit(self, repo: str, ref: str, description: str | None = None) -> Commit:
        """Raises NotFound, Conflict (already finished)."""
        return self.pfs.finish_commit(repo, ref, description)

    def list_commits(self, repo: str, branch: str | None = None, limit: int | None = None) -> list[Commit]:
        """Newest first. Raises NotFound."""
        return self.pfs.list_commits(repo, branch, limit)

    def inspect_commit(self, repo: str, ref: str) -> Commit:
        """``ref``: a commit id or branch, with ``^``/``~N``. Raises NotFound."""
        return self.pfs.inspect_commit(repo, ref)

    def subscribe_commits(self, repo: str, branch: str | None = None, all: bool = False,
                          interval: float = 0.2) -> Iterator[Commit]:
        """Each commit of ``repo`` (reachable from ``branch``, or any) that
        finishes from now on, oldest first (``all``: the finished ones
        first), polling every ``interval`` s; each look reads the branches
        and only the new commits (see :meth:`PFS.finished_since`). Endless.
        Raises NotFound."""
        since, heads, seen = now(), dict[str, str | None](), set[str]()
        self.pfs.inspect_repo(repo)
        old = [c for c in reversed(self.pfs.list_commits(repo, branch)) if c.finished] if all else []
        while True:
            for c in old + self.pfs.finished_since(repo, since, heads, branch):
                if c.id not in seen:
                    seen.add(c.id)
                    yield c
            old = []
            time.sleep(interval)

    def delete_commit(self, repo: str, ref: str) -> None:
        """Delete a branch head commit. Raises NotFound, Conflict."""
        self.pfs.delete_commit(repo, ref)

    # branches ------------------------------------------------------------
    def create_branch(self, repo: str, branch: str, head: str | None = None, trigger: dict | None = None) -> Branch:
        """Create or move ``branch`` to ``head``, with ``trigger`` if given
        (see :mod:`pipectl.pfs.triggers`). Raises NotFound, InvalidArgument."""
        if trigger is not None:
            from ..pfs import triggers
            triggers.check(trigger)
        return self.pfs.create_branch(repo, branch, head, trigger)

    def list_branches(self, repo: str) -> list[Branch]:
        """By name. Raises NotFound."""
        return self.pfs.list_branches(repo)

    def delete_branch(self, repo: str, branch: str) -> None:
        """Raises NotFound."""
        self.pfs.delete_branch(repo, branch)

    # files ---------------------------------------------------------------
    def put_files(self, repo: str, ref: str, sources: list[tuple[str, Source]], overwrite: bool = False,
                  progress: Callable[[int], None] | None = None,
                  parallelism: int | None = None) -> tuple[Commit, TransferStats]:
        """Put ``(path in commit, local path or stream)`` pairs into a branch
        or open commit (see :meth:`PFS.put_files`); ``parallelism`` files
        at once (default: the store's). Raises NotFound, Conflict, InvalidArgument."""
        pfs = PFS(self.pfs.store, parallelism) if parallelism else self.pfs
        return pfs.put_files(repo, ref, sources, overwrite=overwrite, progress=progress)

    def put_streams(self, repo: str, ref: str, sources: Iterable[tuple[str, BinaryIO]],
                    overwrite: bool = False) -> tuple[Commit, TransferStats]:
        """Put ``(path in commit, stream)`` pairs handed over one after
        another (each stream read to its end before the next pair is
        taken: the parts of one upload to the pipectl server) into a branch
        or open commit, as :meth:`put_files` does: one commit on a branch,
        landed once every stream was stored (see :meth:`PFS.put_streams`).
        Raises NotFound, Conflict, InvalidArgument."""
        return self.pfs.put_streams(repo, ref, sources, overwrite)

    def put_entries(self, repo: str, ref: str, entries: list[tuple[str, FileEntry]],
                    overwrite: bool = False) -> Commit:
        """Put files whose bytes :meth:`store_content` stored already into a
        branch or open commit, as put-file does (one commit on a branch).
        Raises NotFound, Conflict, InvalidArgument."""
        return self.pfs.put_entries(repo, ref, entries, overwrite)

    def store_content(self, stream: BinaryIO) -> FileEntry:
        """Store the bytes of ``stream`` (content addressed, in the store,
        so any server replica can use them) without putting them in any
        commit; return the entry :meth:`put_entries` takes. Bytes that no
        commit ever uses stay in the store as unreferenced objects."""
        with ObjectWriter(self.pfs.store) as writer:
            return writer.put_stream(stream)

    def get_file(self, repo: str, ref: str, path: str, out: BinaryIO) -> int:
        """Stream a file into ``out``; return its size. Raises NotFound, InvalidArgument."""
        return self.pfs.get_file(repo, ref, path, out)

    def iter_file(self, entry: FileEntry, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The bytes of a file (its entry, from :meth:`file_entry`:
        ``length`` bytes from byte ``offset``, or all), in pieces of a few
        MiB read as they are asked for: a server streams them with no
        thread or pipe between. Raises NotFound (a missing object)."""
        size = entry.size - offset if length is None else length
        return iter_objects_range(self.pfs.store, entry.objects, offset, size)

    def file_entry(self, repo: str, ref: str, path: str) -> FileEntry:
        """The size and content objects of a file, with get_file's errors
        (NotFound, InvalidArgument for a directory)."""
        return self.pfs.file_entry(repo, ref, path)

    def iter_files(self, repo: str, ref: str, path: str = "/") -> Iterator[tuple[str, FileEntry]]:
        """Every file at or below ``path``."""
        return self.pfs.iter_files(repo, ref, path)

    def list_files(self, repo: str, ref: str, path: str = "/") -> list[Node]:
        """Direct children of ``path``. Raises NotFound."""
        return self.pfs.list_files(repo, ref, path)

    def glob_files(self, repo: str, ref: str, pattern: str) -> list[Node]:
        """Paths matching a Pachyderm glob. Raises InvalidArgument for a bad glob."""
        return self.pfs.glob_files(repo, ref, pattern)

    def inspect_file(self, repo: str, ref: str, path: str) -> Node:
        """Raises NotFound."""
        return self.pfs.inspect_file(repo, ref, path)

    def diff_files(self, repo: str, ref: str, path: str = "/", old_repo: str | None = None,
                   old_ref: str | None = None) -> tuple[list[Node], list[Node]]:
        """``(added, removed)`` between ``ref`` and ``old_ref`` (default: its parent)."""
        return self.pfs.diff_files(repo, ref, path, old_repo, old_ref)

    def delete_file(self, repo: str, ref: str, path: str) -> Commit:
        """Raises NotFound."""
        return self.pfs.delete_file(repo, ref, path)

    def delete_files(self, repo: str, ref: str, paths: list[str], files_only: bool = False) -> Commit:
        """Delete several paths in one commit; ``files_only``: skip paths
        that are missing or directories (S3's semantics). Raises NotFound."""
        return self.pfs.delete_files(repo, ref, paths, files_only)
