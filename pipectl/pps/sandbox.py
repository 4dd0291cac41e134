"""Pachyderm's filesystem for user code run by the process executor.

A container gives user code ``/pfs``, a private ``/tmp`` and a file system
of its own. A local process has none of these, so under the process executor
each worker starts the user-code runner (:mod:`pipectl.pps.runner`, as in a
user container) in a mount and PID namespace of its own made by bubblewrap
(``bwrap``, Debian's ``bubblewrap``; the sandbox tool of Flatpak), and runs
every datum's user code through it, where:

- ``/pfs`` is the worker's datum directory (inputs at ``/pfs/<input>``,
  outputs at ``/pfs/out``), so code with hardcoded ``/pfs`` paths runs
  unchanged;
- ``/tmp`` is a tmpfs of its own, emptied before each datum;
- ``$HOME`` is an empty directory of the worker's, kept across its datums
  (caches such as numba's or matplotlib's are made once per worker), so the
  host user's files (``~/.aws``, ``~/.ssh``) are out of sight, except the
  directories under it that user code needs to run: those holding a ``PATH``
  entry, the Python installation, the image's working directory or files
  (e.g. ``~/.pyenv``), bound back read-only;
- every other top-level directory of the host is bound read-only, and a
  local store's directory is hidden behind an empty tmpfs: user code writes
  nowhere else on the host and reads no repo but its datum's files; the
  container engines' sockets (Docker's, containerd's, ...) are hidden too,
  so user code run as root cannot start containers on the host;
- it has a PID namespace of its own with its own ``/proc``, so it cannot see
  the worker process (or read the store's credentials from its
  ``/proc/<pid>/environ``), and the runner's environment has no credential;
- ``files`` of the local images file (absolute path in the sandbox -> file
  or directory on the host) are bound read-only where an image would have
  them, e.g. ``/edges.py`` or ``/etc/secrets/db`` (a host directory on the
  way that lacks the mount point is shown entry by entry over a tmpfs, so
  one can be made); its ``writable`` directories are bound read-write at
  their own paths (as ``docker run -v`` would).

One namespace per worker, not per datum: making one costs about 7 ms here
(25 bind mounts), a run through the runner about 1 ms. Where bubblewrap is
missing or cannot make namespaces, the worker falls back
to rewriting ``/pfs`` paths (see :func:`pipectl.pps.usercode.rewrite`), and
fails a datum whose user code created or changed the host's ``/pfs``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
import sys

from .runner import SOCKET, SocketRunner
from .usercode import user_environment

BWRAP = os.environ.get("PIPECTL_BWRAP") or shutil.which("bwrap")
"""bubblewrap: ``$PIPECTL_BWRAP`` (a path), else ``bwrap`` on ``PATH``."""
ENGINE_SOCKETS = ("/run/docker.sock", "/run/containerd/containerd.sock", "/run/podman/podman.sock",
                  "/run/crio/crio.sock")
"""The container engines' sockets, each hidden in the sandbox behind ``/dev/null``."""
_OWN = {"pfs", "tmp", "proc", "dev"}
"""Top-level directories the sandbox makes itself rather than binding the host's."""


@functools.lru_cache(maxsize=1)
def unavailable() -> str:
    """Why the sandbox cannot be used here ('' when it can): bubblewrap is
    missing, or fails to make a mount and PID namespace (measured once per
    process; the process executor asks before it forks workers)."""
    if not BWRAP or not os.access(BWRAP, os.X_OK):
        return "bubblewrap (bwrap) is not installed"
    probe = subprocess.run([BWRAP, "--ro-bind", "/", "/", "--proc", "/proc", "--unshare-pid", "--", "true"],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"bwrap cannot make namespaces here: {probe.stderr.strip() or probe.returncode}"
    return ""


@functools.lru_cache(maxsize=1)
def _host_root() -> tuple[str, ...]:
    """bwrap options recreating the host's top-level entries, read-only
    (symlinks such as /bin -> usr/bin as symlinks)."""
    return _recreated("/", skip=_OWN)


def _recreated(directory: str, skip: frozenset[str] | set[str] = frozenset()) -> tuple[str, ...]:
    """bwrap options showing the entries of the host's ``directory`` one by
    one, read-only, over a tmpfs there (bwrap's sources are the host's), so
    that new mount points can be made in it."""
    options: list[str] = [] if directory == "/" else ["--tmpfs", directory]
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.name in skip:
            continue
        if entry.is_symlink():
            options += ["--symlink", os.readlink(entry.path), entry.path]
        elif entry.is_dir() or entry.is_file():
            options += ["--ro-bind", entry.path, entry.path]
    return tuple(options)


def _parents_to_recreate(targets: list[str]) -> list[str]:
    """The host directories below ``/`` that must be recreated (see
    :func:`_recreated`) to make a mount point at each of ``targets``:
    for a target whose parent is missing on the host, its deepest existing
    ancestor. Shallowest first."""
    found = set()
    for target in targets:
        parent = os.path.dirname(target.rstrip("/"))
        if os.path.isdir(parent):
            continue
        while parent != "/" and not os.path.isdir(parent):
            parent = os.path.dirname(parent)
        if parent != "/" and parent.strip("/").split("/")[0] not in _OWN:
            found.add(parent)
    return sorted(found, key=lambda p: (p.count("/"), p))


@dataclasses.dataclass
class Sandbox:
    """The namespace one worker runs user code in: ``pfs`` (host directory
    shown at ``/pfs``), ``home`` (host directory shown at ``$HOME``), ``run``
    (host directory holding the runner's socket, shown where containers have
    it), ``files`` (sandbox path -> host path, bound read-only),
    ``writable`` (host directories bound read-write at their own paths) and
    ``hide`` (host directories replaced by an empty tmpfs)."""

    pfs: str
    home: str
    run: str
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    writable: list[str] = dataclasses.field(default_factory=list)
    hide: list[str] = dataclasses.field(default_factory=list)
    needed: list[str] = dataclasses.field(default_factory=list)
    """Host paths user code and the runner run from (PATH entries, the Python
    installation, pipectl, the working directory): where they lie under
    ``$HOME``, the directory holding them there stays visible; under
    ``/tmp``, they do."""

    @functools.cached_property
    def _options(self) -> list[str]:
        options = [BWRAP or "bwrap", *_host_root(), "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        for parent in _parents_to_recreate(list(self.files)):  # /etc/secrets/db: /etc made writable to bwrap
            options += _recreated(parent)
        home = os.path.expanduser("~")
        options += ["--bind", self.pfs, "/pfs", "--bind", self.run, os.path.dirname(SOCKET)]
        if os.path.dirname(home) != home:  # a user whose home is / keeps the read-only root instead
            options += ["--bind", self.home, home]
        for path in _shown([*self.needed, *self.files.values(), *self.writable], home):
            options += ["--ro-bind-try", path, path]
        for inside, host in sorted(self.files.items()):
            options += ["--ro-bind", host, inside]
        for path in self.writable:
            options += ["--bind", path, path]
        for path in self.hide:  # last: no bind above may show it again
            options += ["--tmpfs", path]
        for path in ENGINE_SOCKETS:  # root's user code would drive the host's containers through them
            if os.path.exists(path):
                options += ["--ro-bind", "/dev/null", os.path.realpath(path)]
        return options + ["--unshare-pid", "--die-with-parent"]

    def runner(self) -> SocketRunner:
        """Start the user-code runner in the sandbox (``/tmp`` emptied before
        each run, an environment without the store's credentials) and
        return the worker's side of it. Raises PipectlError if it does not
        start."""
        argv = [*self._options, "--", sys.executable, "-m", "pipectl.pps.runner", SOCKET, "--empty-tmp"]
        env = user_environment(os.environ)
        return SocketRunner(os.path.join(self.run, os.path.basename(SOCKET)), wait=60,
                            start=lambda: subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                                           start_new_session=True))


def _shown(paths: list[str], home: str) -> list[str]:
    """The directories to bind back read-only so that ``paths`` are visible
    in the sandbox: for a path under ``home`` or ``/tmp`` (which the sandbox
    replaces), the directory right below it that holds the path (all of
    ``~/.pyenv`` for ``~/.pyenv/shims``, all of ``/tmp/build`` for a
    virtualenv's ``/tmp/build/venv/bin``, so the venv's ``pyvenv.cfg`` and
    relative symlinks come along)."""
    shown = set()
    for path in paths:
        path = os.path.normpath(path)
        for top in (home, "/tmp"):
            if path.startswith(top + os.sep):
                shown.add(os.path.join(top, os.path.relpath(path, top).split(os.sep)[0]))
    return sorted(shown)


def host_pfs() -> tuple | None:
    """What the host's ``/pfs`` holds now, to tell whether user code run
    without the sandbox wrote to it: None when it does not exist, else the
    (path, mtime) of every directory under it."""
    if not os.path.isdir("/pfs"):
        return None
    return tuple((d, os.stat(d).st_mtime_ns) for d, _, _ in os.walk("/pfs"))
