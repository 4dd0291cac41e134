"""Files in commits: reading and changing commit trees, putting and getting
file bytes. Part of :class:`~.api.PFS` (a mixin: it uses the commit and
branch methods defined there)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, BinaryIO

from .. import glob as globs
from ..errors import Conflict, InvalidArgument, NotFound, PreconditionFailed
from ..parallel import parallel
from ..store import ObjectStore
from . import keys, names
from .hashing import HASH_HEX, write_addressed
from .model import Branch, Commit, now
from .objects import ObjectWriter, TransferStats
from .reader import read_objects
from .tree import FileEntry, Node, Shard, Tree, diff, file_above, join, parse_shards, serialize_shards, split

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
    _stored_trees: set[str]

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
            tree = self._read_tree_object(commit.tree, "/")
            self._cache_tree(commit.tree, tree)
        return tree

    def _tree_within(self, commit: Commit, path: str, skip: Callable[[Shard], bool] | None = None) -> Tree:
        """A tree holding every file of ``commit`` at or below ``path`` (a
        clean path), and perhaps others: of a sharded tree (see
        :func:`~.tree.split`), only the shards that can hold such files are
        read, less those for which ``skip(shard)`` is true. Ask it about
        ``path`` and below only."""
        if commit.tree is None:
            return Tree()
        return self._trees.get(commit.tree) or self._read_tree_object(commit.tree, path, skip)

    def _read_tree_object(self, digest: str, path: str, skip: Callable[[Shard], bool] | None = None) -> Tree:
        """The tree stored at ``trees/<digest>``: the whole of it if it is
        one object (and then cached), else the join of its shards that can
        hold ``path`` or files below it (each cached), less those ``skip``
        picks."""
        data = self.store.read(keys.tree(digest))
        shards = parse_shards(data)
        if shards is None:
            tree = Tree.parse(data)
            self._cache_tree(digest, tree)
            return tree
        self._remember_stored(s.hash for s in shards)

        def one(shard: Shard) -> Tree:
            part = self._trees.get(shard.hash)
            if part is None:
                part = Tree.parse(self.store.read(keys.tree(shard.hash)))
                if path != "/":  # whole trees are cached whole by read_tree
                    self._cache_tree(shard.hash, part)
            return part
        wanted = [s for s in shards if s.overlaps(path) and not (skip and skip(s))]
        return join(parallel(one, wanted, self.store.io_threads))

    def _cache_tree(self, digest: str, tree: Tree) -> None:
        if len(self._trees) > 64:
            self._trees.clear()
        self._trees[digest] = tree
        self._remember_stored([digest])

    def _remember_stored(self, digests: Iterable[str]) -> None:
        """Note tree objects known to be stored (forgotten by the 100,000)."""
        if len(self._stored_trees) > 100_000:
            self._stored_trees.clear()
        self._stored_trees.update(digests)

    def write_tree(self, tree: Tree) -> str | None:
        """Store ``tree`` (in shards when it is big, see
        :func:`~.tree.split`); return its hash (None for an empty tree).
        Shards known to be stored already are not written again."""
        if not tree.files:
            return None
        parts = split(tree)
        if len(parts) == 1:
            sha = write_addressed(self.store, keys.tree, tree.serialize(), known=self._stored_trees)
        else:
            def one(part: Tree) -> Shard:
                digest = write_addressed(self.store, keys.tree, part.serialize(), known=self._stored_trees)
                return Shard(part._paths[0], part._paths[-1], len(part.files), part.size, digest)
            shards = parallel(one, parts, self.store.io_threads)
            self._remember_stored(s.hash for s in shards)
            sha = write_addressed(self.store, keys.tree, serialize_shards(shards), known=self._stored_trees)
        self._cache_tree(sha, tree)
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

    def put_streams(self, repo: str, ref: str, sources: Iterable[tuple[str, BinaryIO]],
                    overwrite: bool = False) -> tuple[Commit, TransferStats]:
        """As :meth:`put_files`, for ``(path in commit, stream)`` pairs
        handed over one after another, each stream read to its end before
        the next pair is taken (the parts of one HTTP request, as the
        pipectl server receives them): stored one at a time (small ones
        packed, see :meth:`~.objects.ObjectWriter.put_streams`), then put
        into ``ref`` together, one commit on a branch, as :meth:`put_files`
        does. Nothing becomes visible unless every stream was read whole.
        A bad path is refused (InvalidArgument) before its bytes are read.
        Raises NotFound, Conflict, InvalidArgument."""
        self._check_target(repo, ref)
        paths: list[str] = []

        def streams() -> Iterator[BinaryIO]:
            for path, stream in sources:
                paths.append(self._new_path(path))
                yield stream
        with ObjectWriter(self.store, self._known_objects(repo, ref)) as writer:
            entries = writer.put_streams(streams())
        return self._put_entries(repo, ref, list(zip(paths, entries)), overwrite), writer.stats

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
        Raises NotFound, InvalidArgument (a directory), StoreUnavailable
        (its objects hold other than its size)."""
        return read_objects(self.store, self.file_entry(repo, ref, path), out)

    def file_entry(self, repo: str, ref: str, path: str) -> FileEntry:
        """The entry (size, objects) of the file at ``path``. Raises
        NotFound, InvalidArgument (a directory)."""
        path = names.clean_path(path)
        tree = self._tree_within(self.inspect_commit(repo, ref), path)
        entry = tree.files.get(path)
        if entry is None:
            if tree.is_dir(path):
                raise InvalidArgument(f"{path} is a directory; use list-file, or get-file each file")
            raise NotFound(f"file {path} not found in {repo}@{ref}")
        return entry

    def iter_files(self, repo: str, ref: str, path: str = "/") -> Iterator[tuple[str, FileEntry]]:
        """Every file at or below ``path``."""
        path = names.clean_path(path)
        return iter(self._tree_within(self.inspect_commit(repo, ref), path).subtree(path).items())

    def list_files(self, repo: str, ref: str, path: str = "/") -> list[Node]:
        """Direct children of directory ``path`` (or the file), in path
        order. Raises NotFound. Of a sharded tree, a shard whose files all
        lie in one child directory is not read: its size, from the list of
        shards, is added to that directory's."""
        path = names.clean_path(path)
        below = "/" if path == "/" else path + "/"
        inside: dict[str, int] = {}  # child directory -> bytes of the shards wholly inside it

        def in_one_child(shard: Shard) -> bool:
            slash = shard.first.find("/", len(below)) if shard.first.startswith(below) else -1
            if slash < 0 or not shard.last.startswith(shard.first[:slash + 1]):
                return False
            child = shard.first[:slash]
            inside[child] = inside.get(child, 0) + shard.size
            return True

        tree = self._tree_within(self.inspect_commit(repo, ref), path, in_one_child)
        try:
            listed = tree.list_dir(path)
        except NotFound:
            if not inside:  # else path is a directory whose every file is in a skipped shard
                raise
            listed = []
        if not inside:
            return listed
        nodes = {n.path: n for n in listed}
        for child, size in inside.items():
            nodes[child] = Node(child, "dir", size + (nodes[child].size if child in nodes else 0))
        return sorted(nodes.values(), key=lambda n: n.path + "/" if n.type == "dir" else n.path)

    def inspect_file(self, repo: str, ref: str, path: str) -> Node:
        """Raises NotFound."""
        path = names.clean_path(path)
        try:
            return self._tree_within(self.inspect_commit(repo, ref), path).node(path)
        except NotFound:
            raise NotFound(f"file {path} not found in {repo}@{ref}") from None

    def glob_files(self, repo: str, ref: str, pattern: str) -> list[Node]:
        """Files and directories matching a Pachyderm glob."""
        tree = self._tree_within(self.inspect_commit(repo, ref), globs.literal_prefix(pattern))
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
        path = names.clean_path(path)
        return diff(self._tree_within(new, path), self._tree_within(old, path) if old else Tree(), path)
