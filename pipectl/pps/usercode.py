"""How user code is started by the worker: its process (a new session that
dies with its worker, optionally as ``transform.user``), its environment
(without the store's credentials) and the ``/pfs`` paths rewritten for a
layout that is not at ``/pfs``."""

from __future__ import annotations

import contextlib
import ctypes
import re
import shutil
import signal
from collections.abc import Mapping

from ..errors import PipectlError

_PFS = re.compile(r"(?<![\w.-])/pfs(?![\w.-])")  # /pfs, /pfs/x, '/pfs', "/pfs"; not /pfsx, /a/pfs


def die_with_parent() -> None:
    """``preexec_fn``: ask Linux to SIGKILL this child when its parent dies,
    so no worker or user process outlives a killed controller or worker."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# Starting user code through util-linux's setpriv sets the parent-death signal
# without a Python preexec_fn, which would force a slow fork() per datum
# (about 10 ms instead of 2-5 ms with vfork); without setpriv, fall back.
SETPRIV = shutil.which("setpriv")


def spawn_options(cmd: list[str], user: tuple[int, int] | None = None) -> tuple[list[str], dict]:
    """The argv and Popen options that start ``cmd`` in a new session, dying
    with its worker, as ``user`` (uid, gid; needs setpriv and root) if given."""
    if SETPRIV:
        as_user = [f"--reuid={user[0]}", f"--regid={user[1]}", "--init-groups"] if user else []
        return [SETPRIV, "--pdeathsig", "KILL", *as_user, "--", *cmd], {"start_new_session": True}
    return cmd, {"start_new_session": True, "preexec_fn": die_with_parent}


def resolve_user(user: str) -> tuple[int, int]:
    """``(uid, gid)`` of ``transform.user``: a user name, or ``uid[:gid]``
    (Pachyderm's form). Raises PipectlError if there is no such user."""
    import pwd
    name, _, group = user.partition(":")
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        uid, gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        if not name.isdigit():
            raise PipectlError(f"transform.user: no user {name!r} here") from None
        uid = gid = int(name)
    return uid, int(group) if group.isdigit() else gid


PRIVATE_PREFIXES = ("AWS_", "PIPECTL_", "BOTO_", "KUBECONFIG")
"""Variables of the worker's environment that user code never sees: the
store's credentials and endpoint (botocore's ``AWS_*``, boto's), pipectl's
own settings (the store URL among them) and a kubeconfig."""


def user_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the variables :data:`PRIVATE_PREFIXES` names: the
    base of the environment user code runs in (the spec's ``transform.env``
    and Pachyderm's variables are added to it)."""
    return {k: v for k, v in environ.items() if not k.startswith(PRIVATE_PREFIXES)}


def rewrite(text: str, root: str) -> str:
    """Replace each ``/pfs`` path prefix in ``text`` with ``root``."""
    return text if root == "/pfs" else _PFS.sub(root, text)
