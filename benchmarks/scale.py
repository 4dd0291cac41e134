"""Workloads 12 and 13: pipectl at many files (local store only).

12. ``pipectl put-file REPO master / -r -f DIR`` of many 4 KiB files (100,000
    full, 10,000 quick), files/s and peak RSS, against ``cp -r`` of the same
    tree: workload 1's measurement (:func:`benchmarks.workloads.put_tree`)
    at a larger count.

13. Listing a commit of many files (1,000,000 full, 100,000 quick) laid out
    as ``/sNN/dNNN/fNNNN``, 1,000 files in each ``dNNN`` directory:
    ``list-file`` of one such directory, ``list-file /`` (a few directories
    whose sizes sum every file), ``inspect-commit`` and ``glob-file`` of a
    narrow pattern (``/s00/d000/f00*``, 100 matches), ms (best of N) and
    peak RSS (GNU time), each against the same command on a 1,000-file
    commit of the same layout in the same store (same output, except for
    ``list-file /``'s sizes): the ratio shows what the total file count
    costs. The big commit is built by :func:`build_commit` in a child
    process (``python -m benchmarks.scale build URL REPO N``), through
    pipectl's Python API: the files' bytes packed by
    :meth:`~pipectl.pfs.objects.ObjectWriter.put_blobs`, one
    :meth:`~pipectl.pfs.api.PFS.put_entries` commit; its time and peak
    RSS are in the notes.

The S3 rows are left out: their baselines (one request per file on the moto
server) would take many minutes at these counts.
"""

from __future__ import annotations

import os
import sys
import time

from . import harness as h
from .report import Row

MB = 1e6

PER_DIR = 1_000
"""Files in each leaf directory of :func:`scale_path`'s layout."""

LISTED_DIR = "/s00/d000"
NARROW_GLOB = "/s00/d000/f00*"


def scale_path(i: int) -> str:
    """The path of file ``i`` (from 0) of a listing commit:
    ``/s<i // 100,000>/d<(i // 1,000) % 100>/f<i % 1,000>``, zero-padded."""
    return f"/s{i // (PER_DIR * 100):02d}/d{(i // PER_DIR) % 100:03d}/f{i % PER_DIR:04d}"


def build_commit(url: str, repo: str, count: int, size: int = 256) -> float:
    """Create ``repo`` on store ``url`` and commit ``count`` files of
    ``size`` distinct bytes each (``size`` >= 8) at :func:`scale_path`,
    in one commit on ``master`` through pipectl's Python API (packed
    bytes, one put). Returns wall seconds."""
    from pipectl.pfs import PFS
    from pipectl.pfs.objects import ObjectWriter
    from pipectl.store import open_store

    began = time.perf_counter()
    store = open_store(url)
    pfs = PFS(store)
    pfs.create_repo(repo)
    with ObjectWriter(store) as writer:
        entries = writer.put_blobs([i.to_bytes(8, "big") * (size // 8) for i in range(count)])
    pfs.put_entries(repo, "master", [(scale_path(i), e) for i, e in enumerate(entries)], overwrite=True)
    return time.perf_counter() - began


def _build(url: str, repo: str, count: int) -> tuple[float, int]:
    """:func:`build_commit` in a child process: (its seconds, from its
    first action to the commit, and its peak RSS in bytes)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = h.run([sys.executable, "-m", "benchmarks.scale", "build", url, repo, str(count)],
              cwd=root, peak_rss=True, timeout=3600)
    return float(r.stdout), r.maxrss_bytes or 0


def bench_put_scale(ctx) -> list[Row]:
    """12. put-file -r of many 4 KiB files (see the module docs)."""
    if ctx.store != "local":
        return []
    from .workloads import put_tree
    return [put_tree(ctx, ctx.sizes.scale_put_files, 1, "12")]


def _timed(ctx, url: str, args: list[str], expect_lines: int | None, repeats: int) -> tuple[list[float], int]:
    """``pipectl ARGS`` ``repeats`` times: (wall ms of each, max peak RSS
    bytes). Raises BenchError when stdout does not have ``expect_lines``."""
    ms, rss = [], 0
    for _ in range(repeats):
        r = ctx.env.pipectl(url, *args, peak_rss=True)
        lines = r.stdout.count(b"\n")
        if expect_lines is not None and lines != expect_lines:
            raise h.BenchError(f"pipectl {' '.join(args)} printed {lines} lines, expected {expect_lines}")
        ms.append(r.seconds * 1000)
        rss = max(rss, r.maxrss_bytes or 0)
    return ms, rss


def bench_list_scale(ctx) -> list[Row]:
    """13. list-file, inspect-commit and glob-file on a commit of many files
    (see the module docs)."""
    if ctx.store != "local":
        return []
    env, n, repeats = ctx.env, ctx.sizes.scale_list_files, ctx.sizes.list_repeats
    url = env.new_store("scale-list")
    h.log(f"{ctx.store}: 12 building a {n:,}-file commit")
    built, built_rss = _build(url, "big", n)
    small, _ = _build(url, "small", PER_DIR)
    from .workloads import file_count
    if file_count(url, "big") != n:
        raise h.BenchError(f"the {n:,}-file commit does not hold {n:,} files")
    h.log(f"{ctx.store}: 12 listing the {n:,}-file commit")
    tops = (n + PER_DIR * 100 - 1) // (PER_DIR * 100)
    commands = [  # (row label, args, lines printed on the big commit, on the small one)
        (f"list-file {LISTED_DIR}", ["list-file", "{repo}", "master", LISTED_DIR], PER_DIR + 1, PER_DIR + 1),
        ("list-file /", ["list-file", "{repo}", "master", "/"], tops + 1, 2),
        ("inspect-commit", ["inspect-commit", "{repo}", "master"], None, None),
        (f"glob-file {NARROW_GLOB}", ["glob-file", "{repo}", "master", NARROW_GLOB], 101, 101),
    ]
    rows = []
    stat = f"best of {repeats}"
    for label, args, big_lines, small_lines in commands:
        pip, pip_rss = _timed(ctx, url, [a.format(repo="big") for a in args], big_lines, repeats)
        base, base_rss = _timed(ctx, url, [a.format(repo="small") for a in args], small_lines, repeats)
        rows.append(Row(ctx.store, f"13 {label}, {n:,}-file commit", min(pip), "ms", stat, min(base),
                        f"same, {PER_DIR:,}-file commit", samples=pip, baseline_samples=base,
                        notes=f"peak RSS {pip_rss / MB:,.0f} MB ({base_rss / MB:,.0f} MB on "
                              f"{PER_DIR:,} files); incl. CLI start-up",
                        extra={"peak_rss_bytes": pip_rss, "baseline_peak_rss_bytes": base_rss}))
    rows[0].notes += (f"; commit built through the Python API in {built:.1f} s ({n / built:,.0f} files/s), "
                      f"peak RSS {built_rss / MB:,.0f} MB ({PER_DIR:,}-file commit {small:.2f} s)")
    rows[0].extra.update(build_seconds=built, build_peak_rss_bytes=built_rss)
    env.drop(url)
    return rows


def main(argv: list[str]) -> int:
    """``python -m benchmarks.scale build URL REPO COUNT``: :func:`build_commit`."""
    if len(argv) != 4 or argv[0] != "build":
        print("usage: python -m benchmarks.scale build URL REPO COUNT", file=sys.stderr)
        return 2
    seconds = build_commit(argv[1], argv[2], int(argv[3]))
    print(f"{seconds:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
