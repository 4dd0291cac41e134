"""Read every pipeline spec file of a Pachyderm checkout as create-pipeline
would, and report which are accepted and why the others are refused.

    python3 scripts/pachyderm_specs.py PACHYDERM_GIT_DIR [REV ...]

For each revision (default ``HEAD``), every ``.json``/``.yaml``/``.yml``
file in its tree that mentions ``pipeline`` and ``transform`` is parsed and
validated (``pipectl.pps.spec``: no store is touched, so input repos need
not exist). Prints one line per refused spec and a summary per revision.
"""

from __future__ import annotations

import re
import subprocess
import sys

from pipectl.errors import PipectlError
from pipectl.pps import spec as specs

SPEC_FILE = re.compile(r"\.(json|ya?ml)$")
SKIP = re.compile(r"node_modules|^etc/helm|package(-lock)?\.json|tsconfig|^\.github|vendor/")


def _git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", repo, *args], check=True, capture_output=True,
                          text=True, errors="replace").stdout


def check(repo: str, rev: str) -> tuple[int, int]:
    """(accepted, refused) among the spec files of ``rev``; prints each refusal."""
    accepted = refused = 0
    for path in _git(repo, "ls-tree", "-r", "--name-only", rev).splitlines():
        if not SPEC_FILE.search(path) or SKIP.search(path):
            continue
        text = _git(repo, "show", f"{rev}:{path}")
        if "transform" not in text or "pipeline" not in text:
            continue
        try:
            found = specs.parse_all(text, path)
        except PipectlError as e:
            print(f"{rev}  refused  {e}")
            refused += 1
            continue
        for spec in found:
            if not isinstance(spec, dict) or not {"transform", "spout", "service"} & set(spec):
                continue
            try:
                specs.validate(spec, path)
                accepted += 1
            except PipectlError as e:
                print(f"{rev}  refused  {e}")
                refused += 1
    return accepted, refused


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for rev in argv[1:] or ["HEAD"]:
        accepted, refused = check(argv[0], rev)
        print(f"{rev}: {accepted} of {accepted + refused} specs accepted")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
