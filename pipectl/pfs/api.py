"""The versioned file system: repos, branches, commits and files.

All state lives in an :class:`~pipectl.store.ObjectStore` (see ``keys.py``
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

Files and trees are in ``files.py`` (the :class:`~.files.Files` part of PFS).
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Iterable, Mapping, Sequence

from ..errors import AlreadyExists, Conflict, InvalidArgument, NotFound, PreconditionFailed
from ..parallel import parallel
from ..store import ObjectStore
from . import keys, names
from .files import Files, backoff
from .model import Branch, Commit, RepoInfo, now, parse_time
from .tree import FileEntry, Tree, file_above

_ANCESTRY = re.compile(r"^(?P<base>[^~^]+)(?P<ops>(\^|~\d*)*)$")


class PFS(Files):
    """Repos, branches, commits and files on one object store."""

    def __init__(self, store: ObjectStore, put_threads: int | None = None):
        self.store = store
        self.put_threads = put_threads or int(os.environ.get("PIPECTL_PUT_THREADS", "0")) or store.io_threads
        """Files uploaded at once by put-file (default: the store's ``io_threads``)."""
        self._trees: dict[str, Tree] = {}
        self._stored_trees: set[str] = set()
        """Hashes of tree objects (whole trees and shards) known to be stored."""

    # repos ---------------------------------------------------------------
    def create_repo(self, repo: str, description: str = "", exist_ok: bool = False) -> RepoInfo:
        """Create an empty repo with a ``master`` branch. Raises AlreadyExists
        (unless ``exist_ok``) or InvalidArgument."""
        info = RepoInfo(repo, now(), description)
        try:
            self.store.write(keys.repo(repo), info.to_json(), if_absent=True)
        except PreconditionFailed:
            if exist_ok:
                return self.inspect_repo(repo)
            raise AlreadyExists(f"repo {repo} already exists") from None
        self._create_branch_record(repo, "master")
        return info

    def inspect_repo(self, repo: str) -> RepoInfo:
        """Raises NotFound, InvalidArgument (a bad name)."""
        try:
            return RepoInfo.from_json(self.store.read(keys.repo(repo)))
        except NotFound:
            raise NotFound(f"repo {repo} not found") from None

    def list_repos(self) -> list[RepoInfo]:
        """Every repo, newest first."""
        found = [k for k in self.store.list(keys.REPOS) if keys.is_repo_record(k)]
        infos = parallel(lambda k: RepoInfo.from_json(self.store.read(k)), found)
        return sorted(infos, key=lambda r: r.created, reverse=True)

    def repo_size(self, repo: str, branch: str = "master") -> int:
        """Bytes in the head commit of ``branch`` (0 when it has none)."""
        try:
            return self.inspect_commit(repo, branch).size_bytes
        except NotFound:
            return 0

    def delete_repo(self, repo: str) -> None:
        """Delete a repo's records (content objects are shared and kept).
        Raises NotFound. Whether a pipeline still reads it is the
        operations layer's rule (:meth:`pipectl.client.Client.delete_repo`)."""
        self.inspect_repo(repo)
        info = keys.repo(repo)
        parallel(self.store.delete, [k for k in self.store.list(keys.repo_prefix(repo)) if k != info])
        self.store.delete(info)

    # branches ------------------------------------------------------------
    def _create_branch_record(self, repo: str, branch: str, head: str | None = None,
                              trigger: dict | None = None) -> Branch:
        record = Branch(repo, branch, head, trigger)
        try:
            self.store.write(keys.branch(repo, branch), record.to_json(), if_absent=True)
        except PreconditionFailed:
            raise AlreadyExists(f"branch {branch} already exists in repo {repo}") from None
        return record

    def create_branch(self, repo: str, branch: str, head: str | None = None, trigger: dict | None = None) -> Branch:
        """Create ``branch`` pointing at commit-or-branch ``head`` (or at no
        commit), with ``trigger`` if given (see :mod:`.triggers`); if it
        exists, move it there (keeping its trigger unless a new one is
        given). Raises NotFound, InvalidArgument."""
        self.inspect_repo(repo)
        names.check_name("branch", branch)
        if trigger is not None:
            names.check_name("branch", trigger["branch"])
            if trigger["branch"] == branch:
                raise InvalidArgument(f"branch {branch} cannot trigger on itself")
        head_id = self.inspect_commit(repo, head).id if head else None
        try:
            return self._create_branch_record(repo, branch, head_id, trigger)
        except AlreadyExists:
            current, version = self._read_branch(repo, branch)
            record = Branch(repo, branch, head_id, trigger if trigger is not None else current.trigger)
            self.store.write(keys.branch(repo, branch), record.to_json(), if_match=version)
            return record

    def set_trigger(self, repo: str, branch: str, trigger: dict) -> Branch:
        """Give ``branch`` (created without a head if missing) ``trigger``,
        its head unchanged. Raises NotFound, InvalidArgument."""
        from . import triggers
        triggers.check(trigger)
        self.inspect_repo(repo)
        names.check_name("branch", branch)
        for attempt in range(10_000):
            try:
                current, version = self._read_branch(repo, branch)
            except NotFound:
                try:
                    return self._create_branch_record(repo, branch, None, trigger)
                except AlreadyExists:
                    continue  # made meanwhile: read it again
            record = Branch(repo, branch, current.head, trigger)
            try:
                self.store.write(keys.branch(repo, branch), record.to_json(), if_match=version)
                return record
            except PreconditionFailed:
                backoff(attempt)
        raise Conflict(f"branch {branch} of {repo} is too busy")

    def _read_branch(self, repo: str, branch: str) -> tuple[Branch, str]:
        try:
            data, version = self.store.read_versioned(keys.branch(repo, branch))
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
        found = list(self.store.list(keys.branches(repo)))
        return sorted(parallel(lambda k: Branch.from_json(self.store.read(k)), found), key=lambda b: b.name)

    def delete_branch(self, repo: str, branch: str) -> None:
        """Remove a branch (its commits stay reachable only from other branches)."""
        self.inspect_branch(repo, branch)
        self.store.delete(keys.branch(repo, branch))

    def move_branch(self, repo: str, branch: str, new_head: str | None, expected_head: str | None) -> None:
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
        moved = Branch(repo, branch, new_head, current.trigger)
        self.store.write(keys.branch(repo, branch), moved.to_json(), if_match=version)

    # commits -------------------------------------------------------------
    def _read_commit(self, repo: str, commit_id: str) -> tuple[Commit, str]:
        try:
            data, version = self.store.read_versioned(keys.commit(repo, commit_id))
        except NotFound:
            self.inspect_repo(repo)
            raise NotFound(f"commit {commit_id} not found in repo {repo}") from None
        return Commit.from_json(data), version

    def inspect_commit(self, repo: str, ref: str) -> Commit:
        """Resolve ``ref`` (a commit id, a branch name, either followed by
        ``^``/``~N`` ancestry) to its commit. Raises NotFound, InvalidArgument."""
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
        passed = {commit.id}
        for _ in range(steps):
            if commit.parent is None:
                raise NotFound(f"{ref} goes past the first commit of repo {repo}")
            if commit.parent in passed:
                raise Conflict(f"the history of repo {repo} loops at commit {commit.parent}; "
                               "its commit records are damaged")
            commit = self._read_commit(repo, commit.parent)[0]
            passed.add(commit.id)
        return commit

    def list_commits(self, repo: str, branch: str | None = None, limit: int | None = None) -> list[Commit]:
        """Commits of ``repo`` newest first: those reachable from ``branch``, or
        from any branch. Unreferenced (never landed) commits are not listed."""
        branches = [self.inspect_branch(repo, branch)] if branch else self.list_branches(repo)
        found = list(self.store.list(keys.commits(repo)))
        commits = {c.id: c for c in parallel(lambda k: Commit.from_json(self.store.read(k)), found)}
        seen: dict[str, Commit] = {}
        for b in branches:
            cid = b.head
            while cid and cid not in seen and cid in commits:
                seen[cid] = commits[cid]
                cid = commits[cid].parent
        depth: dict[str | None, int] = {}

        def generation(cid: str | None) -> int:  # distance from the first commit
            chain: list[str] = []
            on_chain: set[str] = set()
            while cid in seen and cid not in depth:
                if cid in on_chain:  # a store damaged by an earlier version: fail, do not loop forever
                    raise Conflict(f"the history of repo {repo} loops at commit {cid}; "
                                   "its commit records are damaged")
                chain.append(cid)  # type: ignore[arg-type]
                on_chain.add(cid)  # type: ignore[arg-type]
                cid = seen[cid].parent  # type: ignore[index]
            base = depth.get(cid, -1)
            for c in reversed(chain):
                base += 1
                depth[c] = base
            return depth[chain[0]] if chain else base

        ordered = sorted(seen.values(), key=lambda c: (generation(c.id), c.started), reverse=True)
        return ordered[:limit] if limit else ordered

    def finished_since(self, repo: str, since: str, heads: dict[str, str | None],
                       branch: str | None = None) -> list[Commit]:
        """The commits of ``repo`` reachable from ``branch`` (or any branch)
        that finished after ``since`` (ISO time, as :func:`now`), oldest
        first: what is new for a watcher that started then. ``heads``
        (branch -> head, kept by the caller between calls) makes a call
        read only the branches (and the new commits of those that moved):
        a walk back from a head stops at the head seen last time or at a
        commit finished before ``since`` (its ancestors did too: a commit
        starts only once its parent has finished). Raises NotFound."""
        found: dict[str, Commit] = {}
        for b in [self.inspect_branch(repo, branch)] if branch else self.list_branches(repo):
            cid, settled = b.head, True
            while cid and cid != heads.get(b.name) and cid not in found:
                c = self.inspect_commit(repo, cid)
                if c.finished is None:  # an open head: walk again next time
                    settled = False
                elif c.finished <= since:
                    break
                else:
                    found[cid] = c
                cid = c.parent
            if settled:
                heads[b.name] = b.head
        return sorted(found.values(), key=lambda c: c.finished or "")

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
            self.store.write(keys.commit(repo, commit.id), commit.to_json(), if_absent=True)
            try:
                self.move_branch(repo, branch, commit.id, head)
                return commit
            except PreconditionFailed:
                self.store.delete(keys.commit(repo, commit.id))
                backoff(attempt)
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
                self.store.write(keys.commit(repo, commit.id), commit.to_json(), if_match=version)
                return commit
            except PreconditionFailed:
                continue

    def delete_commit(self, repo: str, ref: str) -> None:
        """Delete the head commit of its branch (of each branch it heads),
        moving the branch back to the parent. Raises Conflict when the
        commit is not a branch head, or when it has children (another
        branch's commits build on it: deleting it would cut their
        history)."""
        commit = self.inspect_commit(repo, ref)
        branches = self.list_branches(repo)
        heads = [b for b in branches if b.head == commit.id]
        if not heads:
            raise Conflict(f"commit {commit.id} is not the head of a branch; only head commits can be deleted")
        for b in branches:
            if b.head and b.head != commit.id and self._descends(repo, b.head, commit):
                raise Conflict(f"commit {commit.id} has children: branch {b.name} builds on it")
        for b in heads:
            self.move_branch(repo, b.name, commit.parent, commit.id)
        self.store.delete(keys.commit(repo, commit.id))

    def _descends(self, repo: str, head: str, ancestor: Commit) -> bool:
        """Whether commit ``head`` has ``ancestor`` among its parents' line.
        The walk stops at the first commit started an hour or more before
        ``ancestor`` (a descendant starts after it; the hour covers clocks
        of different machines), so it reads the commits newer than
        ``ancestor``, not a branch's whole history."""
        cutoff = parse_time(ancestor.started) - datetime.timedelta(hours=1)
        cid: str | None = head
        while cid:
            if cid == ancestor.id:
                return True
            commit = self.inspect_commit(repo, cid)
            if parse_time(commit.started) < cutoff:
                return False
            cid = commit.parent
        return False

    def _land(self, commit: Commit, tree: Tree, expected_head: str | None) -> Commit:
        """Write a finished commit holding ``tree`` and move its branch from
        ``expected_head`` to it in one compare-and-swap. The commit record is
        created, never rewritten: if it exists already (a lander killed
        between the two writes), it is reused only when it holds the same
        parent and tree. Raises PreconditionFailed if the branch moved
        meanwhile (the commit is then left unreferenced and invisible),
        Conflict if the commit exists with other contents."""
        commit.tree = self.write_tree(tree)
        commit.size_bytes = tree.size
        commit.finished = commit.finished or now()
        try:
            self.store.write(keys.commit(commit.repo, commit.id), commit.to_json(), if_absent=True)
        except PreconditionFailed:
            existing = self._read_commit(commit.repo, commit.id)[0]
            if (existing.parent, existing.tree, existing.branch) != (commit.parent, commit.tree, commit.branch):
                raise Conflict(f"commit {commit.id} of {commit.repo} already exists with another parent or "
                               "files; a finished commit is never rewritten") from None
            commit = existing
        self.move_branch(commit.repo, commit.branch, commit.id, expected_head)
        return commit

    def land_output(self, commit: Commit, outputs: Iterable[tuple[str, Mapping[str, Sequence]]]) -> Commit:
        """Land a pipeline job's output commit: ``commit`` (its repo, branch,
        parent, provenance; the branch must still be at ``commit.parent``)
        holding the files of ``outputs``, ``(datum id, {path: [size,
        refs]})`` pairs, one per datum. Each path must come from one datum,
        and no file may lie below another (a path is a file or a directory).
        Raises Conflict naming the two datums that clash, PreconditionFailed
        if the branch moved meanwhile."""
        files: dict[str, FileEntry] = {}
        owner: dict[str, str] = {}
        for datum, paths in outputs:
            for path, (size, refs) in paths.items():
                if path in owner:
                    raise Conflict(f"datums {owner[path][:12]} and {datum[:12]} both wrote output "
                                   f"file {path}; each output path must come from one datum")
                owner[path] = datum
                files[path] = FileEntry(size, tuple(refs))
        for path in files:
            above = file_above(path, files)
            if above:
                raise Conflict(f"datums {owner[above][:12]} and {owner[path][:12]} wrote output file {above} "
                               f"and {path} below it; a path is a file or a directory, not both")
        return self._land(commit, Tree(files), commit.parent)
