"""The versioned file system: repos, branches, commits and files.

All state lives in an :class:`~pipectl.store.ObjectStore` (see ``model.py``
for the layout). Consistency rules:

- File bytes and trees are written first; they are content addressed and
  invisible until a commit names them.
- A branch head moves only by compare-and-swap on the branch record, so
  concurrent writers to one branch each land a commit and history stays
  linear (a writer that loses the race rebases its change onto the new head
  and tries again).
- A commit becomes visible when a branch head reaches it. A writer killed
  before its compare-and-swap leaves only unreferenced objects behind.
- A finished commit is never rewritten. An open commit (``start-commit``) is
  updated by compare-and-swap on its record.
"""

from __future__ import annotations

import os
import random
import re
import time
from typing import BinaryIO, Callable, Iterator, Union

from ..errors import AlreadyExists, Conflict, InvalidArgument, NotFound, PreconditionFailed
from ..parallel import parallel
from ..store import ObjectStore
from . import names
from .hashing import HASH_HEX, write_addressed
from .model import Branch, Commit, RepoInfo, now
from .objects import ObjectWriter, TransferStats, read_objects
from .tree import FileEntry, Node, Tree, diff, file_above

Source = Union[str, BinaryIO]
"""What put-file reads: a local file path, or an open binary stream."""

_ANCESTRY = re.compile(r"^(?P<base>[^~^]+)(?P<ops>(\^|~\d*)*)$")


def _backoff(attempt: int) -> None:
    time.sleep(min(0.5, 0.005 * 2 ** min(attempt, 7)) * random.random())


class PFS:
    """Repos, branches, commits and files on one object store."""

    def __init__(self, store: ObjectStore, put_threads: int | None = None):
        self.store = store
        self.put_threads = put_threads or int(os.environ.get("PIPECTL_PUT_THREADS", "0")) or store.io_threads
        """Files uploaded at once by put-file (default: the store's ``io_threads``)."""
        self._trees: dict[str, Tree] = {}

    # keys ----------------------------------------------------------------
    @staticmethod
    def _repo_key(repo: str) -> str:
        return f"repos/{repo}/info.json"

    @staticmethod
    def _branch_key(repo: str, branch: str) -> str:
        return f"repos/{repo}/branches/{branch}.json"

    @staticmethod
    def _commit_key(repo: str, commit: str) -> str:
        return f"repos/{repo}/commits/{commit}.json"

    # repos ---------------------------------------------------------------
    def create_repo(self, repo: str, description: str = "", exist_ok: bool = False) -> RepoInfo:
        """Create an empty repo with a ``master`` branch. Raises AlreadyExists
        (unless ``exist_ok``) or InvalidArgument."""
        names.check_name("repo", repo)
        info = RepoInfo(repo, now(), description)
        try:
            self.store.write(self._repo_key(repo), info.to_json(), if_absent=True)
        except PreconditionFailed:
            if exist_ok:
                return self.inspect_repo(repo)
            raise AlreadyExists(f"repo {repo} already exists") from None
        self._create_branch_record(repo, "master")
        return info

    def inspect_repo(self, repo: str) -> RepoInfo:
        """Raises NotFound."""
        try:
            return RepoInfo.from_json(self.store.read(self._repo_key(repo)))
        except NotFound:
            raise NotFound(f"repo {repo} not found") from None

    def list_repos(self) -> list[RepoInfo]:
        """Every repo, newest first."""
        keys = [k for k in self.store.list("repos/") if k.endswith("/info.json") and k.count("/") == 2]
        infos = parallel(lambda k: RepoInfo.from_json(self.store.read(k)), keys)
        return sorted(infos, key=lambda r: r.created, reverse=True)

    def repo_size(self, repo: str, branch: str = "master") -> int:
        """Bytes in the head commit of ``branch`` (0 when it has none)."""
        try:
            return self.inspect_commit(repo, branch).size_bytes
        except NotFound:
            return 0

    def delete_repo(self, repo: str) -> None:
        """Delete a repo's records (content objects are shared and kept).
        Raises NotFound. Callers check that no pipeline uses it."""
        self.inspect_repo(repo)
        keys = [k for k in self.store.list(f"repos/{repo}/") if k != self._repo_key(repo)]
        parallel(self.store.delete, keys)
        self.store.delete(self._repo_key(repo))

    # branches ------------------------------------------------------------
    def _create_branch_record(self, repo: str, branch: str, head: str | None = None) -> Branch:
        record = Branch(repo, branch, head)
        try:
            self.store.write(self._branch_key(repo, branch), record.to_json(), if_absent=True)
        except PreconditionFailed:
            raise AlreadyExists(f"branch {branch} already exists in repo {repo}") from None
        return record

    def create_branch(self, repo: str, branch: str, head: str | None = None) -> Branch:
        """Create ``branch`` pointing at commit-or-branch ``head`` (or at no
        commit); if it exists, move it there. Raises NotFound, InvalidArgument."""
        self.inspect_repo(repo)
        names.check_name("branch", branch)
        head_id = self.inspect_commit(repo, head).id if head else None
        try:
            return self._create_branch_record(repo, branch, head_id)
        except AlreadyExists:
            _, version = self._read_branch(repo, branch)
            record = Branch(repo, branch, head_id)
            self.store.write(self._branch_key(repo, branch), record.to_json(), if_match=version)
            return record

    def _read_branch(self, repo: str, branch: str) -> tuple[Branch, str]:
        try:
            data, version = self.store.read_versioned(self._branch_key(repo, branch))
        except NotFound:
            self.inspect_repo(repo)
            raise NotFound(f"branch {branch} not found in repo {repo}") from None
        return Branch.from_json(data), version

    def inspect_branch(self, repo: str, branch: str) -> Branch:
        """Raises NotFound."""
        return self._read_branch(repo, branch)[0]

    def list_branches(self, repo: str) -> list[Branch]:
        """Every branch of ``repo``, by name. Raises NotFound."""
        self.inspect_repo(repo)
        keys = list(self.store.list(f"repos/{repo}/branches/"))
        return sorted(parallel(lambda k: Branch.from_json(self.store.read(k)), keys),
                      key=lambda b: b.name)

    def delete_branch(self, repo: str, branch: str) -> None:
        """Remove a branch (its commits stay reachable only from other branches)."""
        self.inspect_branch(repo, branch)
        self.store.delete(self._branch_key(repo, branch))

    def move_branch(self, repo: str, branch: str, new_head: str, expected_head: str | None) -> None:
        """Compare-and-swap ``branch`` from ``expected_head`` to ``new_head``.
        Creates the branch when ``expected_head`` is None and it is missing.
        Raises PreconditionFailed if the head is no longer ``expected_head``."""
        try:
            current, version = self._read_branch(repo, branch)
        except NotFound:
            if expected_head is not None:
                raise
            try:
                self._create_branch_record(repo, branch, new_head)
                return
            except AlreadyExists:
                raise PreconditionFailed(f"branch {branch} moved concurrently") from None
        if current.head != expected_head:
            raise PreconditionFailed(f"branch {branch} of {repo} moved concurrently")
        self.store.write(self._branch_key(repo, branch),
                         Branch(repo, branch, new_head).to_json(), if_match=version)

    # commits -------------------------------------------------------------
    def _read_commit(self, repo: str, commit_id: str) -> tuple[Commit, str]:
        try:
            data, version = self.store.read_versioned(self._commit_key(repo, commit_id))
        except NotFound:
            self.inspect_repo(repo)
            raise NotFound(f"commit {commit_id} not found in repo {repo}") from None
        return Commit.from_json(data), version

    def inspect_commit(self, repo: str, ref: str) -> Commit:
        """Resolve ``ref`` (a commit id, a branch name, either followed by
        ``^``/``~N`` ancestry) to its commit. Raises NotFound."""
        m = _ANCESTRY.match(ref or "")
        if not m:
            raise InvalidArgument(f"invalid commit or branch {ref!r}")
        base, ops = m.group("base"), m.group("ops")
        if names.is_commit_id(base):
            commit = self._read_commit(repo, base)[0]
        else:
            branch = self.inspect_branch(repo, base)
            if branch.head is None:
                raise NotFound(f"branch {base} of repo {repo} has no commits")
            commit = self._read_commit(repo, branch.head)[0]
        steps = sum(int(op[1:] or 1) if op.startswith("~") else 1 for op in re.findall(r"\^|~\d*", ops))
        for _ in range(steps):
            if commit.parent is None:
                raise NotFound(f"{ref} goes past the first commit of repo {repo}")
            commit = self._read_commit(repo, commit.parent)[0]
        return commit

    def list_commits(self, repo: str, branch: str | None = None, limit: int | None = None) -> list[Commit]:
        """Commits of ``repo`` newest first: those reachable from ``branch``, or
        from any branch. Unreferenced (never landed) commits are not listed."""
        branches = [self.inspect_branch(repo, branch)] if branch else self.list_branches(repo)
        keys = list(self.store.list(f"repos/{repo}/commits/"))
        commits = {c.id: c for c in parallel(lambda k: Commit.from_json(self.store.read(k)), keys)}
        seen: dict[str, Commit] = {}
        for b in branches:
            cid = b.head
            while cid and cid not in seen and cid in commits:
                seen[cid] = commits[cid]
                cid = commits[cid].parent
        depth: dict[str, int] = {}

        def generation(cid: str) -> int:  # distance from the first commit
            chain = []
            while cid in seen and cid not in depth:
                chain.append(cid)
                cid = seen[cid].parent
            base = depth.get(cid, -1)
            for c in reversed(chain):
                base += 1
                depth[c] = base
            return depth[chain[0]] if chain else base

        ordered = sorted(seen.values(), key=lambda c: (generation(c.id), c.started), reverse=True)
        return ordered[:limit] if limit else ordered

    def start_commit(self, repo: str, branch: str, description: str = "", parent: str | None = None,
                     origin: str = "user") -> Commit:
        """Open a new commit on ``branch`` (created if missing) and move the
        branch to it. Raises Conflict if the branch head is still open."""
        self.inspect_repo(repo)
        names.check_name("branch", branch)
        for attempt in range(1000):
            try:
                head = self.inspect_branch(repo, branch).head
            except NotFound:
                head = None
            base = parent or head
            if head:
                head_commit = self._read_commit(repo, head)[0]
                if head_commit.is_open:
                    raise Conflict(f"branch {branch} of {repo} already has open commit {head}; finish it first")
            tree_hash = self.inspect_commit(repo, base).tree if base else None
            commit = Commit(names.new_id(), repo, branch, base, origin, now(), tree=tree_hash,
                            description=description)
            commit.size_bytes = self.read_tree(commit).size
            self.store.write(self._commit_key(repo, commit.id), commit.to_json(), if_absent=True)
            try:
                self.move_branch(repo, branch, commit.id, head)
                return commit
            except PreconditionFailed:
                self.store.delete(self._commit_key(repo, commit.id))
                _backoff(attempt)
        raise Conflict(f"branch {branch} of {repo} is too busy")

    def finish_commit(self, repo: str, ref: str, description: str | None = None) -> Commit:
        """Finish an open commit. Raises NotFound, Conflict (already finished)."""
        commit = self.inspect_commit(repo, ref)
        while True:
            commit, version = self._read_commit(repo, commit.id)
            if not commit.is_open:
                raise Conflict(f"commit {commit.id} is already finished")
            commit.finished = now()
            if description is not None:
                commit.description = description
            try:
                self.store.write(self._commit_key(repo, commit.id), commit.to_json(), if_match=version)
                return commit
            except PreconditionFailed:
                continue

    def delete_commit(self, repo: str, ref: str) -> None:
        """Delete the head commit of its branch, moving the branch back to the
        parent. Raises Conflict when the commit is not a branch head."""
        commit = self.inspect_commit(repo, ref)
        heads = [b for b in self.list_branches(repo) if b.head == commit.id]
        if not heads:
            raise Conflict(f"commit {commit.id} is not the head of a branch; only head commits can be deleted")
        for b in heads:
            if commit.parent:
                self.move_branch(repo, b.name, commit.parent, commit.id)
            else:
                _, version = self._read_branch(repo, b.name)
                self.store.write(self._branch_key(repo, b.name), Branch(repo, b.name).to_json(),
                                 if_match=version)
        self.store.delete(self._commit_key(repo, commit.id))

    def land_commit(self, commit: Commit, tree: Tree, expected_head: str | None) -> Commit:
        """Write a finished commit holding ``tree`` and move its branch from
        ``expected_head`` to it in one compare-and-swap. Used by pipeline jobs.
        Raises PreconditionFailed if the branch moved meanwhile (the commit is
        then left unreferenced and invisible)."""
        commit.tree = self.write_tree(tree)
        commit.size_bytes = tree.size
        commit.finished = commit.finished or now()
        self.store.write(self._commit_key(commit.repo, commit.id), commit.to_json())
        self.move_branch(commit.repo, commit.branch, commit.id, expected_head)
        return commit

    # trees ---------------------------------------------------------------
    def read_tree(self, commit: Commit | None) -> Tree:
        """The file tree of ``commit`` (empty for None or an empty commit)."""
        if commit is None or commit.tree is None:
            return Tree()
        tree = self._trees.get(commit.tree)
        if tree is None:
            tree = Tree.parse(self.store.read(f"trees/{commit.tree}"))
            if len(self._trees) > 64:
                self._trees.clear()
            self._trees[commit.tree] = tree
        return tree

    def write_tree(self, tree: Tree) -> str | None:
        """Store ``tree``; return its hash (None for an empty tree)."""
        if not tree.files:
            return None
        sha = write_addressed(self.store, "trees", tree.serialize(), known=self._trees)
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
        commit_id, started = names.new_id(), now()
        for attempt in range(10_000):
            try:
                head = self.inspect_branch(repo, ref).head
            except NotFound:
                head = None
            parent = self._read_commit(repo, head)[0] if head else None
            if parent is not None and parent.is_open:
                return self._modify_open(repo, head, change)
            commit = Commit(commit_id, repo, ref, head, "user", started)
            try:
                return self.land_commit(commit, change(self.read_tree(parent)), head)
            except PreconditionFailed:
                _backoff(attempt)
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
                self.store.write(self._commit_key(repo, commit_id), commit.to_json(), if_match=version)
                return commit
            except PreconditionFailed:
                _backoff(attempt)
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
        files = [i for i, (_, source) in enumerate(sources) if isinstance(source, str)]
        streams = [i for i, (_, source) in enumerate(sources) if not isinstance(source, str)]
        entries: list[FileEntry | None] = [None] * len(sources)
        with ObjectWriter(self.store, self._known_objects(repo, ref), progress) as writer:
            for i, entry in zip(files, writer.put_files([sources[i][1] for i in files], self.put_threads)):
                entries[i] = entry
            for i, entry in zip(streams, parallel(lambda i: writer.put_stream(sources[i][1]), streams,
                                                  self.put_threads)):
                entries[i] = entry
        return [(path, entry) for (path, _), entry in zip(sources, entries)], writer.stats

    def put_files(self, repo: str, ref: str, sources: list[tuple[str, Source]], overwrite: bool = False,
                  progress: Callable[[int], None] | None = None) -> tuple[Commit, TransferStats]:
        """Put files into ``ref`` (see :meth:`modify`). Existing files are
        appended to unless ``overwrite`` (pachctl 1.x semantics). Raises
        NotFound (repo, open commit, local file), Conflict, InvalidArgument."""
        self.inspect_repo(repo)
        if names.is_commit_id(ref):
            if not self._read_commit(repo, ref)[0].is_open:
                raise Conflict(f"commit {ref} of {repo} is finished; start a new commit to change files")
        else:
            names.check_name("branch", ref)
        sources = [(names.clean_path(p), s) for p, s in sources]
        for p, _ in sources:
            if p == "/":
                raise InvalidArgument("put-file needs a file path, not the root directory")
        entries, stats = self.upload(repo, ref, sources, progress)
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

        return self.modify(repo, ref, change), stats

    def delete_file(self, repo: str, ref: str, path: str) -> Commit:
        """Delete a file or directory. Raises NotFound if it does not exist."""
        path = names.clean_path(path)

        def change(tree: Tree) -> Tree:
            if path != "/" and path not in tree.files and not tree.is_dir(path):
                raise NotFound(f"file {path} not found in {repo}@{ref}")
            return tree.with_changes(deletes=[path])

        return self.modify(repo, ref, change)

    # reading files -------------------------------------------------------
    def get_file(self, repo: str, ref: str, path: str, out: BinaryIO) -> int:
        """Stream a file's bytes into ``out``; return the byte count.
        Raises NotFound, InvalidArgument (a directory)."""
        tree = self.read_tree(self.inspect_commit(repo, ref))
        path = names.clean_path(path)
        entry = tree.files.get(path)
        if entry is None:
            if tree.is_dir(path):
                raise InvalidArgument(f"{path} is a directory; use list-file, or get-file each file")
            raise NotFound(f"file {path} not found in {repo}@{ref}")
        return read_objects(self.store, entry.objects, out)

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
        return self.read_tree(self.inspect_commit(repo, ref)).node(names.clean_path(path))

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
