"""Files in commits: reading and changing commit trees, putting and getting
file bytes. Part of :class:`~.api.PFS` (a mixin: it uses the commit and
branch methods defined there)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO

from ..errors import Conflict, InvalidArgument, NotFound, PreconditionFailed
from ..parallel import parallel
from ..store import ObjectStore
from . import keys, names
from .hashing import HASH_HEX, write_addressed
from .model import Branch, Commit, now
from .objects import ObjectWriter, TransferStats
from .reader import read_objects
from .tree import FileEntry, Node, Tree, diff, file_above

Source = str | BinaryIO
"""What put-file reads: a local file path, or an open binary stream."""


def backoff(attempt: int) -> None:
    """Sleep a random, growing while (at most 0.5 s) before retry ``attempt``
    of a compare-and-swap that lost a race."""
    time.sleep(min(0.5, 0.005 * 2 ** min(attempt, 7)) * random.random())


class Files:
    """Trees and files of :class:`~.api.PFS` (see there for the store and caches)."""

    store: ObjectStore
    put_threads: int
    _trees: dict[str, Tree]

    if TYPE_CHECKING:  # defined by PFS
        def inspect_repo(self, repo: str) -> object: ...
        def inspect_branch(self, repo: str, branch: str) -> Branch: ...
        def inspect_commit(self, repo: str, ref: str) -> Commit: ...
        def _read_commit(self, repo: str, commit_id: str) -> tuple[Commit, str]: ...
        def _land(self, commit: Commit, tree: Tree, expected_head: str | None) -> Commit: ...

    # trees ---------------------------------------------------------------
    def read_tree(self, commit: Commit | None) -> Tree:
        """The file tree of ``commit`` (empty for None or an empty commit)."""
        if commit is None or commit.tree is None:
            return Tree()
        tree = self._trees.get(commit.tree)
        if tree is None:
            tree = Tree.parse(self.store.read(keys.tree(commit.tree)))
            if len(self._trees) > 64:
                self._trees.clear()
            self._trees[commit.tree] = tree
        return tree

    def write_tree(self, tree: Tree) -> str | None:
        """Store ``tree``; return its hash (None for an empty tree)."""
        if not tree.files:
            return None
        sha = write_addressed(self.store, keys.tree, tree.serialize(), known=self._trees)
        self._trees[sha] = tree
        return sha

    # writing files -------------------------------------------------------
    def modify(self, repo: str, ref: str, change: Callable[[Tree], Tree]) -> Commit:
        """Apply ``change`` to the files of ``ref``.

        ``ref`` is an open commit id, or a branch: if the branch head is open
        the change goes into it, otherwise a new finished commit is made on
        the branch (created if missing). Retries on concurrent updates.
        Raises NotFound, Conflict (finished commit)."""
        self.inspect_repo(repo)
        if names.is_commit_id(ref):
            return self._modify_open(repo, ref, change)
        names.check_name("branch", ref)
        started = now()
        for attempt in range(10_000):
            try:
                head = self.inspect_branch(repo, ref).head
            except NotFound:
                head = None
            parent = self._read_commit(repo, head)[0] if head else None
            if parent is not None and parent.is_open:
                return self._modify_open(repo, parent.id, change)
            commit = Commit(names.new_id(), repo, ref, head, "user", started)  # a new id per try: created once
            try:
                return self._land(commit, change(self.read_tree(parent)), head)
            except PreconditionFailed:
                backoff(attempt)
        raise Conflict(f"branch {ref} of {repo} is too busy")

    def _modify_open(self, repo: str, commit_id: str, change: Callable[[Tree], Tree]) -> Commit:
        for attempt in range(10_000):
            commit, version = self._read_commit(repo, commit_id)
            if not commit.is_open:
                raise Conflict(f"commit {commit_id} of {repo} is finished; start a new commit to change files")
            tree = change(self.read_tree(commit))
            commit.tree = self.write_tree(tree)
            commit.size_bytes = tree.size
            try:
                self.store.write(keys.commit(repo, commit_id), commit.to_json(), if_match=version)
                return commit
            except PreconditionFailed:
                backoff(attempt)
        raise Conflict(f"commit {commit_id} of {repo} is too busy")

    def _known_objects(self, repo: str, ref: str) -> dict[str, str]:
        """The refs of every chunk in ``ref``'s files, by content hash."""
        try:
            tree = self.read_tree(self.inspect_commit(repo, ref))
        except (NotFound, InvalidArgument):
            return {}
        return {o[:HASH_HEX]: o for e in tree.files.values() for o in e.objects}  # ref_hash, inlined

    def upload(self, repo: str, ref: str, sources: list[tuple[str, Source]],
               progress: Callable[[int], None] | None = None) -> tuple[list[tuple[str, FileEntry]], TransferStats]:
        """Store the content of ``sources`` (``(path in commit, local path or
        binary stream)`` pairs), many at once; return their entries and the
        transfer counters. Local files go through
        :meth:`~.objects.ObjectWriter.put_files` (small ones packed),
        streams through ``put_stream``. Nothing becomes visible until
        :meth:`modify`. Raises NotFound for a local file that cannot be read."""
        files = {i: s for i, (_, s) in enumerate(sources) if isinstance(s, str)}
        streams = {i: s for i, (_, s) in enumerate(sources) if not isinstance(s, str)}
        entries: dict[int, FileEntry] = {}
        with ObjectWriter(self.store, self._known_objects(repo, ref), progress) as writer:
            entries.update(zip(files, writer.put_files(list(files.values()), self.put_threads)))
            entries.update(zip(streams, parallel(writer.put_stream, list(streams.values()), self.put_threads)))
        return [(path, entries[i]) for i, (path, _) in enumerate(sources)], writer.stats

    def put_files(self, repo: str, ref: str, sources: list[tuple[str, Source]], overwrite: bool = False,
                  progress: Callable[[int], None] | None = None) -> tuple[Commit, TransferStats]:
        """Put files into ``ref`` (see :meth:`modify`). Existing files are
        appended to unless ``overwrite`` (pachctl 1.x semantics). Raises
        NotFound (repo, open commit, local file), Conflict, InvalidArgument."""
        self._check_target(repo, ref)
        sources = [(self._new_path(p), s) for p, s in sources]
        entries, stats = self.upload(repo, ref, sources, progress)
        return self._put_entries(repo, ref, entries, overwrite), stats

    def put_entries(self, repo: str, ref: str, entries: list[tuple[str, FileEntry]],
                    overwrite: bool = False) -> Commit:
        """Put files whose bytes are stored already (entries made by
        :meth:`upload` or :meth:`~.objects.ObjectWriter.put_stream`, such as
        the S3 gateway's multipart parts) into ``ref``, as :meth:`put_files`
        does. Raises NotFound, Conflict, InvalidArgument."""
        self._check_target(repo, ref)
        return self._put_entries(repo, ref, [(self._new_path(p), e) for p, e in entries], overwrite)

    def _check_target(self, repo: str, ref: str) -> None:
        """Refuse a put into a missing repo (NotFound), a finished commit
        (Conflict) or under a bad branch name (InvalidArgument)."""
        self.inspect_repo(repo)
        if names.is_commit_id(ref):
            if not self._read_commit(repo, ref)[0].is_open:
                raise Conflict(f"commit {ref} of {repo} is finished; start a new commit to change files")
        else:
            names.check_name("branch", ref)

    @staticmethod
    def _new_path(path: str) -> str:
        """A checked, clean path to put a file at (not the root)."""
        path = names.check_new_path(names.clean_path(path))
        if path == "/":
            raise InvalidArgument("put-file needs a file path, not the root directory")
        return path

    def _put_entries(self, repo: str, ref: str, entries: list[tuple[str, FileEntry]], overwrite: bool) -> Commit:
        targets = [p for p, _ in entries]

        def change(tree: Tree) -> Tree:
            new = set(targets)
            for p in targets:
                if tree.is_dir(p) and p not in tree.files:
                    raise Conflict(f"cannot put file {p}: a directory of that name exists")
                above = file_above(p, tree.files) or file_above(p, new)
                if above:
                    raise Conflict(f"cannot put file {p}: {above} is a file, not a directory")
            return tree.with_changes(entries, deletes=targets if overwrite else (), append=not overwrite)

        return self.modify(repo, ref, change)

    def delete_file(self, repo: str, ref: str, path: str) -> Commit:
        """Delete a file or directory. Raises NotFound if it does not exist."""
        return self.delete_files(repo, ref, [path])

    def delete_files(self, repo: str, ref: str, paths: list[str], files_only: bool = False) -> Commit:
        """Delete files or directories, in one commit (see :meth:`modify`).
        Raises NotFound if one does not exist; with ``files_only`` (S3's
        DeleteObject and DeleteObjects), only files are deleted, and a path
        that is missing or a directory is skipped."""
        paths = [names.clean_path(p) for p in paths]

        def change(tree: Tree) -> Tree:
            if files_only:
                return tree.with_changes(deletes=[p for p in paths if p in tree.files])
            for path in paths:
                if path != "/" and path not in tree.files and not tree.is_dir(path):
                    raise NotFound(f"file {path} not found in {repo}@{ref}")
            return tree.with_changes(deletes=paths)

        return self.modify(repo, ref, change)

    # reading files -------------------------------------------------------
    def get_file(self, repo: str, ref: str, path: str, out: BinaryIO) -> int:
        """Stream a file's bytes into ``out``; return the byte count.
        Raises NotFound, InvalidArgument (a directory)."""
        return read_objects(self.store, self.file_entry(repo, ref, path).objects, out)

    def file_entry(self, repo: str, ref: str, path: str) -> FileEntry:
        """The entry (size, objects) of the file at ``path``. Raises
        NotFound, InvalidArgument (a directory)."""
        tree = self.read_tree(self.inspect_commit(repo, ref))
        path = names.clean_path(path)
        entry = tree.files.get(path)
        if entry is None:
            if tree.is_dir(path):
                raise InvalidArgument(f"{path} is a directory; use list-file, or get-file each file")
            raise NotFound(f"file {path} not found in {repo}@{ref}")
        return entry

    def iter_files(self, repo: str, ref: str, path: str = "/") -> Iterator[tuple[str, FileEntry]]:
        """Every file at or below ``path``."""
        tree = self.read_tree(self.inspect_commit(repo, ref))
        return iter(tree.subtree(names.clean_path(path)).items())

    def list_files(self, repo: str, ref: str, path: str = "/") -> list[Node]:
        """Direct children of directory ``path`` (or the file). Raises NotFound."""
        commit = self.inspect_commit(repo, ref)
        return self.read_tree(commit).list_dir(names.clean_path(path))

    def inspect_file(self, repo: str, ref: str, path: str) -> Node:
        """Raises NotFound."""
        path = names.clean_path(path)
        try:
            return self.read_tree(self.inspect_commit(repo, ref)).node(path)
        except NotFound:
            raise NotFound(f"file {path} not found in {repo}@{ref}") from None

    def glob_files(self, repo: str, ref: str, pattern: str) -> list[Node]:
        """Files and directories matching a Pachyderm glob."""
        tree = self.read_tree(self.inspect_commit(repo, ref))
        return [tree.node(p) for p in tree.glob(pattern)]

    def diff_files(self, repo: str, ref: str, path: str = "/", old_repo: str | None = None,
                   old_ref: str | None = None) -> tuple[list[Node], list[Node]]:
        """``(added or changed, removed or changed)`` files under ``path``
        between ``ref`` and ``old_ref`` (default: its parent)."""
        new = self.inspect_commit(repo, ref)
        if old_ref is None:
            old = self.inspect_commit(repo, new.parent) if new.parent else None
        else:
            old = self.inspect_commit(old_repo or repo, old_ref)
        return diff(self.read_tree(new), self.read_tree(old), names.clean_path(path))
