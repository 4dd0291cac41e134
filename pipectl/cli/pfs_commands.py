"""Repo, commit, branch and file commands (pachctl 1.8 argument forms)."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import urllib.parse

import click

from ..errors import InvalidArgument, NotFound, StoreUnavailable
from ..pfs import names
from . import output
from .context import NAME, current
from .output import all_projects_option, raw_option


def _commit_row(c):
    return [c.repo, c.branch, c.id, c.parent or "<none>", output.ago(c.started),
            output.duration(c.duration_seconds()) if c.finished else "open", output.size(c.size_bytes)]


def _commit_text(c) -> str:
    lines = [f"Commit: {c.repo}@{c.id}", f"Original Branch: {c.branch}",
             f"Parent: {c.parent or '<none>'}", f"Origin: {c.origin}",
             f"Started: {output.ago(c.started)} ({c.started})",
             f"Finished: {output.ago(c.finished)} ({c.finished})" if c.finished else "Finished: <open>",
             f"Size: {output.size(c.size_bytes)}"]
    if c.description:
        lines.append(f"Description: {c.description}")
    if c.pipeline:
        lines.append(f"Pipeline: {c.pipeline} (spec version {c.pipeline_version}, job {c.job})")
    if c.provenance:
        lines.append("Provenance:")
        for p in c.provenance:
            spec = f"  (pipeline spec version {p['pipeline_version']})" if p.get("pipeline_version") else ""
            lines.append(f"  {p['repo']}@{p['commit']} (branch {p['branch']}){spec}")
    return "\n".join(lines)



# repos ---------------------------------------------------------------
@click.command("create-repo")
@click.argument("repo", type=NAME)
@click.option("-d", "--description", default="", help="A description of the repo.")
def create_repo(repo, description):
    """Create a new repo (with a master branch)."""
    current().client.create_repo(repo, description)

@click.command("list-repo")
@all_projects_option
@raw_option
def list_repo(all_projects, raw):
    """List the repos of the project: NAME, CREATED, SIZE (MASTER)."""
    repos = [r for r in current().client.list_repos() if all_projects or current().owns(r.info.name)]
    if raw:
        return output.raw([r.to_dict() for r in repos])
    output.table(["NAME", "CREATED", "SIZE (MASTER)", "DESCRIPTION"],
                 [[r.info.name, output.ago(r.info.created), output.size(r.size_bytes), r.info.description]
                  for r in repos])

@click.command("inspect-repo")
@click.argument("repo", type=NAME)
@raw_option
def inspect_repo(repo, raw):
    """Show a repo's details."""
    r = current().client.inspect_repo(repo)
    if raw:
        return output.raw(r.to_dict())
    click.echo(f"Name: {r.info.name}\nDescription: {r.info.description}\n"
               f"Created: {output.ago(r.info.created)}\nSize of HEAD on master: {output.size(r.size_bytes)}\n"
               f"Branches: {', '.join(r.branches or [])}")

@click.command("delete-repo")
@click.argument("repo", type=NAME)
@click.option("-f", "--force", is_flag=True, help="Delete even if pipelines use the repo.")
def delete_repo(repo, force):
    """Delete a repo and its history (refuses while a pipeline uses it)."""
    current().client.delete_repo(repo, force)

# commits -------------------------------------------------------------
@click.command("start-commit")
@click.argument("repo", type=NAME)
@click.argument("branch")
@click.option("-p", "--parent", help="Parent commit (default: the branch head).")
@click.option("-m", "--message", "--description", "description", default="", help="Commit description.")
def start_commit(repo, branch, parent, description):
    """Start a new commit on BRANCH; prints its id."""
    click.echo(current().client.start_commit(repo, branch, description, parent).id)

@click.command("finish-commit")
@click.argument("repo", type=NAME)
@click.argument("commit")
@click.option("-m", "--message", "--description", "description", default=None, help="Commit description.")
def finish_commit(repo, commit, description):
    """Finish an open commit (a branch name means its open head commit)."""
    current().client.finish_commit(repo, commit, description)

@click.command("list-commit")
@click.argument("repo", type=NAME)
@click.argument("branch", required=False)
@click.option("-n", "--number", type=int, default=0, help="Show at most this many commits.")
@raw_option
def list_commit(repo, branch, number, raw):
    """List the commits of a repo (or of one branch), newest first."""
    commits = current().client.list_commits(repo, branch, number or None)
    if raw:
        return output.raw([c.to_dict() for c in commits])
    output.table(["REPO", "BRANCH", "COMMIT", "PARENT", "STARTED", "DURATION", "SIZE"],
                 [_commit_row(c) for c in commits])

@click.command("inspect-commit")
@click.argument("repo", type=NAME)
@click.argument("commit")
@raw_option
def inspect_commit(repo, commit, raw):
    """Show a commit: parent, times, size and full provenance."""
    c = current().client.inspect_commit(repo, commit)
    if raw:
        return output.raw(c.to_dict())
    click.echo(_commit_text(c))

@click.command("delete-commit")
@click.argument("repo", type=NAME)
@click.argument("commit")
def delete_commit(repo, commit):
    """Delete a branch's head commit (the branch moves back to its parent)."""
    current().client.delete_commit(repo, commit)

# branches ------------------------------------------------------------
@click.command("create-branch")
@click.argument("repo", type=NAME)
@click.argument("branch")
@click.option("--head", help="Commit or branch for the new branch to point at.")
@click.option("--trigger", "trigger_branch", metavar="BRANCH",
              help="Follow BRANCH, moving to its head when the conditions below hold (evaluated by the controller).")
@click.option("--trigger-commits", type=click.IntRange(0), help="...once it has this many new commits.")
@click.option("--trigger-size", help="...once its head is this much larger (100MB, 1GiB).")
@click.option("--trigger-rate-limit", help="...at most once per tick of this cron spec.")
@click.option("--trigger-cron", help="Follow it on each tick of this cron spec instead.")
@click.option("--trigger-all", is_flag=True, help="Every condition must hold (default: any one).")
def create_branch(repo, branch, head, trigger_branch, trigger_commits, trigger_size, trigger_rate_limit,
                  trigger_cron, trigger_all):
    """Create a branch (or move an existing one to --head), optionally
    triggered by another branch (Pachyderm's branch triggers)."""
    trigger = None
    if trigger_branch:
        given = {"branch": trigger_branch, "commits": trigger_commits, "size": trigger_size,
                 "rate_limit_spec": trigger_rate_limit, "cron_spec": trigger_cron, "all": trigger_all or None}
        trigger = {k: v for k, v in given.items() if v is not None}
    elif any(v is not None for v in (trigger_commits, trigger_size, trigger_rate_limit, trigger_cron)) or trigger_all:
        raise InvalidArgument("the --trigger-* options need --trigger BRANCH")
    current().client.create_branch(repo, branch, head, trigger)

@click.command("list-branch")
@click.argument("repo", type=NAME)
@raw_option
def list_branch(repo, raw):
    """List a repo's branches: BRANCH, HEAD, TRIGGER."""
    branches = current().client.list_branches(repo)
    if raw:
        return output.raw([b.to_dict() for b in branches])
    output.table(["BRANCH", "HEAD", "TRIGGER"], [[b.name, b.head or "-", _trigger_text(b.trigger)] for b in branches])


def _trigger_text(trigger: dict | None) -> str:
    """``master on 2 commits or 100MB`` (Pachyderm's conditions, joined by
    ``and`` with ``all``), ``master on cron @hourly`` (``cron_spec``), or ``-``."""
    if not trigger:
        return "-"
    if trigger.get("cron_spec"):
        return f"{trigger['branch']} on cron {trigger['cron_spec']}"
    parts = [f"{trigger['commits']} commits" if trigger.get("commits") else "", trigger.get("size") or "",
             f"at most per {trigger['rate_limit_spec']}" if trigger.get("rate_limit_spec") else ""]
    conditions = (" and " if trigger.get("all") else " or ").join(p for p in parts if p)
    return f"{trigger['branch']} on {conditions}" if conditions else trigger["branch"]

@click.command("delete-branch")
@click.argument("repo", type=NAME)
@click.argument("branch")
def delete_branch(repo, branch):
    """Delete a branch (its commits are kept)."""
    current().client.delete_branch(repo, branch)

# files ---------------------------------------------------------------
@click.command("put-file")
@click.argument("repo", type=NAME)
@click.argument("branch")
@click.argument("path", required=False)
@click.option("-f", "--file", "files", multiple=True,
              help="Local file, directory (with -r), http(s) URL, or '-' for stdin. Repeatable.")
@click.option("-r", "--recursive", is_flag=True, help="Put the contents of directories, recursively.")
@click.option("--follow-symlinks", is_flag=True,
              help="With -r, store what symbolic links point to even outside the directory being put.")
@click.option("-o", "--overwrite", is_flag=True,
              help="Replace existing files instead of appending to them (pachctl 1.x appends).")
@click.option("-p", "--parallelism", type=click.IntRange(1, 256), default=None,
              help="Files uploaded at once (default: 4 on local disk, 16 on S3).")
def put_file(repo, branch, path, files, recursive, follow_symlinks, overwrite, parallelism):
    """Put files into BRANCH (or an open commit id) at PATH.

    Without an open commit, one commit is made and finished. Examples:

      pipectl put-file iris master /iris.csv -f iris.csv

      pipectl put-file images master -r -f ./photos
    """
    sources, closers = _sources(path, list(files) or ["-"], recursive, follow_symlinks)
    try:
        with _progress(sources) as advance:
            current().client.put_files(repo, branch, sources, overwrite=overwrite, progress=advance,
                                       parallelism=parallelism)
    finally:
        for c in closers:
            c.close()

@click.command("get-file")
@click.argument("repo", type=NAME)
@click.argument("commit")
@click.argument("path")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), help="Write to this file, not stdout.")
def get_file(repo, commit, path, out):
    """Print a file's contents (or write them to --output)."""
    client = current().client
    if out and os.path.lexists(out) and not stat.S_ISREG(os.lstat(out).st_mode):
        # A FIFO, a device or a symlink: written into in place, as cp and
        # curl -o do, never replaced by a regular file.
        with open(out, "wb") as f:
            client.get_file(repo, commit, path, f)
    elif out:
        tmp = out + ".pipectl-partial"
        try:
            with open(tmp, "wb") as f:
                client.get_file(repo, commit, path, f)
            os.replace(tmp, out)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    else:
        client.get_file(repo, commit, path, sys.stdout.buffer)
        sys.stdout.flush()

def _nodes_raw(nodes):
    return [n.to_dict() for n in nodes]

def _node_rows(nodes):
    return [[n.path, n.type, output.size(n.size)] for n in nodes]

def _show_nodes(nodes, raw):
    if raw:
        return output.raw(_nodes_raw(nodes))
    output.table(["NAME", "TYPE", "SIZE"], _node_rows(nodes))

@click.command("list-file")
@click.argument("repo", type=NAME)
@click.argument("commit")
@click.argument("path", default="/")
@raw_option
def list_file(repo, commit, path, raw):
    """List the files of a directory in a commit: NAME, TYPE, SIZE."""
    _show_nodes(current().client.list_files(repo, commit, path), raw)

@click.command("glob-file")
@click.argument("repo", type=NAME)
@click.argument("commit")
@click.argument("pattern")
@raw_option
def glob_file(repo, commit, pattern, raw):
    """List files and directories matching a glob (as pipeline inputs use)."""
    _show_nodes(current().client.glob_files(repo, commit, pattern), raw)

@click.command("inspect-file")
@click.argument("repo", type=NAME)
@click.argument("commit")
@click.argument("path")
@raw_option
def inspect_file(repo, commit, path, raw):
    """Show a file's type, size and content hash."""
    n = current().client.inspect_file(repo, commit, path)
    if raw:
        return output.raw(_nodes_raw([n])[0])
    click.echo(f"Path: {n.path}\nType: {n.type}\nSize: {output.size(n.size)}\nHash: {n.hash}")

@click.command("diff-file")
@click.argument("args", nargs=-1, required=True)
@raw_option
def diff_file(args, raw):
    """Show files added or removed between two commits.

    Arguments: NEW_REPO NEW_COMMIT [NEW_PATH [OLD_REPO OLD_COMMIT [OLD_PATH]]].
    Without an old commit, compares with NEW_COMMIT's parent.
    """
    if len(args) not in (2, 3, 5, 6):
        raise InvalidArgument("diff-file takes NEW_REPO NEW_COMMIT [NEW_PATH [OLD_REPO OLD_COMMIT [OLD_PATH]]]")
    new_repo, new_commit = current().qualify(args[0]), args[1]
    path = args[2] if len(args) > 2 else "/"
    old_repo, old_commit = (current().qualify(args[3]), args[4]) if len(args) > 3 else (None, None)
    added, removed = current().client.diff_files(new_repo, new_commit, path, old_repo, old_commit)
    if raw:
        return output.raw({"added": _nodes_raw(added), "removed": _nodes_raw(removed)})
    output.table(["OP", "NAME", "TYPE", "SIZE"],
                 [["+"] + r for r in _node_rows(added)] + [["-"] + r for r in _node_rows(removed)])

@click.command("delete-file")
@click.argument("repo", type=NAME)
@click.argument("branch")
@click.argument("path")
def delete_file(repo, branch, path):
    """Delete a file or directory (in a new commit, or an open one)."""
    current().client.delete_file(repo, branch, path)


COMMANDS = [create_repo, list_repo, inspect_repo, delete_repo, start_commit, finish_commit, list_commit,
            inspect_commit, delete_commit, create_branch, list_branch, delete_branch, put_file, get_file,
            list_file, glob_file, inspect_file, diff_file, delete_file]
"""The commands this module adds to the CLI, in help order."""


def _walk(top: str, follow_symlinks: bool) -> list[tuple[str, str]]:
    """``(local path, path relative to top)`` of every file below directory
    ``top``, in name order. Symbolic links are followed (files and
    directories alike) when they stay inside ``top``; one leading outside
    is refused naming it unless ``follow_symlinks``, and a dangling one is
    refused always. A link back up to a directory being walked (a loop) is
    not followed again. Raises InvalidArgument."""
    top_real = os.path.realpath(top)
    found: list[tuple[str, str]] = []

    def walk(directory: str, rel: str, ancestors: frozenset[str] = frozenset()) -> None:
        real = os.path.realpath(directory)
        if real in ancestors:
            return
        ancestors = ancestors | {real}
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            local, name = entry.path, f"{rel}/{entry.name}"
            if entry.is_symlink():
                target = os.path.realpath(local)
                if not os.path.exists(target):
                    raise InvalidArgument(f"{local} is a symbolic link to {os.readlink(local)}, which does not exist")
                if not follow_symlinks and os.path.commonpath([top_real, target]) != top_real:
                    raise InvalidArgument(f"{local} is a symbolic link to {target}, outside {top}; "
                                          "pass --follow-symlinks to store what it points to")
            if entry.is_dir():
                walk(local, name, ancestors)
            elif entry.is_file():
                found.append((local, name))
            else:
                raise InvalidArgument(f"{local} is not a regular file (a FIFO, socket or device); not put")

    walk(top, "")
    return found


def _sources(path: str | None, files: list[str], recursive: bool, follow_symlinks: bool = False):
    """Turn put-file's arguments into ``(path in commit, source)`` pairs and
    the streams to close afterwards. Raises NotFound, InvalidArgument."""
    many = len(files) > 1
    sources, closers = [], []
    for f in files:
        if f == "-":
            if not path:
                raise InvalidArgument("put-file from stdin needs a PATH")
            sources.append((path, sys.stdin.buffer))
        elif urllib.parse.urlparse(f).scheme in ("http", "https"):
            stream = _open_url(f)
            closers.append(stream)
            name = os.path.basename(urllib.parse.urlparse(f).path) or "index"
            sources.append((names.join(path or "/", name) if (many or not path) else path, stream))
        elif os.path.isdir(f):
            if not recursive:
                raise InvalidArgument(f"{f} is a directory; use -r to put its contents")
            base = path if path else (f if not os.path.isabs(f) else os.path.basename(os.path.abspath(f)))
            for local, name in _walk(f, follow_symlinks):
                sources.append((names.join(base, name.lstrip("/")), local))
        elif os.path.exists(f):
            default = f if not os.path.isabs(f) else os.path.basename(f)
            if path and many:
                sources.append((names.join(path, os.path.basename(f)), f))
            else:
                sources.append((path or default, f))
        else:
            raise NotFound(f"local file {f} does not exist")
    return sources, closers


def _open_url(url: str):
    import requests
    try:
        response = requests.get(url, stream=True, timeout=(10, 60))
        response.raise_for_status()
    except requests.RequestException as e:
        raise StoreUnavailable(f"cannot fetch {url}: {e}") from None
    response.raw.decode_content = True
    return response.raw


@contextlib.contextmanager
def _progress(sources: list[tuple[str, object]]):
    """Yield a byte-advance callback for putting ``sources`` (put-file's
    ``(path, local path or stream)`` pairs); shows a rich progress bar for
    large or many-file uploads when stdout is a terminal (only then are the
    local files' sizes looked up)."""
    count = len(sources)
    if not output.is_terminal():
        yield None
        return
    total_bytes = sum(os.path.getsize(s) for _, s in sources if isinstance(s, str))
    if total_bytes < 16 * 2 ** 20 and count < 64:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(f"put {count} file{'s' if count != 1 else ''}", total=total_bytes or None)
        yield lambda n: bar.advance(task, n)
