"""The workloads. Each ``bench_*`` function takes a :class:`Context` (one
store kind and its sizes) and returns :class:`~benchmarks.report.Row` s.

Every pipectl figure comes from the real command line in a subprocess
(``pipectl put-file``, ``pipectl controller --exit-when-idle``...), timed
wall clock from spawn to exit (row 5 times the job that process ran, see
:func:`bench_job`); each baseline is measured in the same run on
the same data. Results are checked (file counts, job states, bytes uploaded)
through pipectl's Python API so a fast wrong answer cannot pass.

Workloads (sizes in :data:`SIZES`):

0. CLI start-up: ``pipectl list-repo`` on an empty store, ms, vs ``python -c pass``.
1. put-file of many 4 KiB files, files/s, vs ``cp -r`` / boto3 ``put_object`` x16 threads.
2. put-file of one big file, MB/s (10^6 bytes/s) and peak RSS, vs ``cp`` and ``b3sum`` side by side
   (local) / boto3 ``upload_file``.
3. the same put-file again (dedupe): s, and new bytes under ``objects/`` (must be 0); then 4 KiB
   inserted in the middle, re-put: MB stored (< 20 MB) vs fixed 16 MiB slices, s vs the first put;
   4 KiB changed in place: MB stored (< 20 MB).
4. a job over N single-file datums, datums/s, vs a shell loop of the same command.
5. the same job after adding one file: s, vs run 4's job (target < 5% of it); jobs timed by
   their records, creation to finish.
6. trigger latency (put-file returns -> first datum starts), ms, small repo and bulk repo.
7. list-file and inspect-commit on a commit of many files, ms, vs ``find`` / ``list_objects_v2``.
8. serving: requests/s and p50/p99 of the model server, vs the in-process forward pass (local store).
9. the pipectl server: API latency vs the in-process call, watch delivery, the console's first paint
   with 100 pipelines and 10,000 jobs vs the same page with no job (local store).
10. the S3 gateway: GET and PUT MB/s of one big object with boto3, vs the same calls to the
   backing store over S3 (versitygw: the S3 store's server, or serving the local store's disk).
11. an idle controller step with 10,000 jobs in history, ms, vs the same step with one job a
   pipeline (local store).
12. put-file of 100,000 4 KiB files, files/s and peak RSS, vs ``cp -r`` (local store; see
   benchmarks/scale.py).
13. list-file, inspect-commit, glob-file on a 1,000,000-file commit, ms and peak RSS, vs the same
   on a 1,000-file commit (local store; see benchmarks/scale.py).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time

from pipectl.errors import NotFound

from . import harness as h
from .report import Row
from .scale import bench_list_scale, bench_put_scale

KiB, MiB, GiB = 1024, 1024 ** 2, 1024 ** 3
MB = 1e6


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Workload sizes for one mode and store (counts of files, bytes)."""

    small_files: int          # 1: number of 4 KiB files
    put_repeats: int          # 1: best of
    big_bytes: int            # 2/3: size of the big file in bytes
    big_repeats: int          # 2: best of (each into a fresh store)
    dedupe_repeats: int       # 3: best of
    datums: int               # 4: single-file datums
    job_baseline_repeats: int  # 4: best of, for the shell loop
    bulk_files: int           # 6/7: files under /bulk
    small_size: int = 4 * KiB
    datum_size: int = 4 * KiB
    bulk_size: int = 256
    incremental_repeats: int = 3   # 5: median of
    latency_small_files: int = 10  # 6: files under /bulk of the "small" repo
    latency_repeats: int = 3       # 6: median of
    list_repeats: int = 3          # 7: best of
    startup_repeats: int = 5       # 0: median of
    reduced: bool = False          # sizes cut down for S3 (said in notes)
    scale_put_files: int = 0       # 11: 4 KiB files put at once (local store only)
    scale_list_files: int = 0      # 12: files in the listed commit (local store only)


SIZES = {
    ("quick", "local"): Sizes(small_files=2_000, put_repeats=2, big_bytes=256 * MiB, big_repeats=1,
                              dedupe_repeats=2, datums=10_000, job_baseline_repeats=1, bulk_files=20_000,
                              startup_repeats=3, scale_put_files=10_000, scale_list_files=100_000),
    ("full", "local"): Sizes(small_files=10_000, put_repeats=3, big_bytes=1 * GiB, big_repeats=3,
                             dedupe_repeats=3, datums=100_000, job_baseline_repeats=3, bulk_files=100_000,
                             scale_put_files=100_000, scale_list_files=1_000_000),
    # S3 costs a request per object: the S3 sizes whose baselines make a
    # request per file (1, 6/7) are cut down so quick mode stays within a few
    # minutes (they were sized for moto, ~100-300 requests/s here). A job's workers read and
    # write packs, not one object per datum, so 4/5 run at the local sizes.
    ("quick", "s3"): Sizes(small_files=500, put_repeats=1, big_bytes=64 * MiB, big_repeats=1,
                           dedupe_repeats=2, datums=1_000, job_baseline_repeats=1, bulk_files=1_000,
                           incremental_repeats=2, latency_repeats=3, list_repeats=2, startup_repeats=3,
                           reduced=True),
    ("full", "s3"): Sizes(small_files=2_000, put_repeats=2, big_bytes=1 * GiB, big_repeats=2,
                          dedupe_repeats=3, datums=10_000, job_baseline_repeats=3, bulk_files=10_000,
                          reduced=True),
}
# moto runs the same S3 sizes, so that its rows compare with versitygw's one to one.
SIZES.update({(mode, "s3-moto"): SIZES[(mode, "s3")] for mode in ("quick", "full")})


@dataclasses.dataclass
class Context:
    """What a workload needs: the store kind (``env``), its sizes, the mode
    (``quick``/``full``) and the nominal (local) sizes of that mode."""

    env: h.StoreEnv
    sizes: Sizes
    mode: str
    nominal: Sizes

    @property
    def store(self) -> str:
        return self.env.name

    def scratch(self, name: str) -> str:
        path = os.path.join(self.env.workdir, name)
        os.makedirs(path, exist_ok=True)
        return path

    def reduced(self, what: str, value, nominal) -> str:
        """A note saying a size was cut down for S3 (empty if not)."""
        if self.sizes.reduced and value != nominal:
            return f"; S3: {what} reduced to {value:,} (nominal {nominal:,})"
        return ""


def api(url: str):
    """pipectl's Python API on store ``url`` (for checks and polling only)."""
    from pipectl.pfs import PFS
    from pipectl.pps import PPS
    from pipectl.store import open_store
    store = open_store(url)
    pfs = PFS(store)
    return pfs, PPS(store, pfs)


def file_count(url: str, repo: str, ref: str = "master") -> int:
    pfs, _ = api(url)
    return len(pfs.read_tree(pfs.inspect_commit(repo, ref)).files)


def controller_poll_interval() -> float:
    """The CLI's default ``--poll-interval`` in seconds."""
    from pipectl.cli import cli
    return float(next(p.default for p in cli.commands["controller"].params if p.name == "poll_interval"))


def _write_spec(ctx: Context, name: str, spec: dict) -> str:
    path = os.path.join(ctx.scratch("specs"), f"{name}.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


# --- 0. start-up ------------------------------------------------------------

def bench_startup(ctx: Context) -> list[Row]:
    """Wall time of ``pipectl list-repo`` on an empty store (ms, median),
    against ``python -c pass`` (the interpreter alone). Explains the fixed
    cost inside every CLI figure below."""
    env, n = ctx.env, ctx.sizes.startup_repeats
    url = env.new_store("startup")
    env.pipectl(url, "list-repo")  # warm the page cache
    pip = [env.pipectl(url, "list-repo").seconds * 1000 for _ in range(n)]
    base = [h.run([sys.executable, "-c", "pass"]).seconds * 1000 for _ in range(n)]
    return [Row(ctx.store, "0 CLI start-up (list-repo)", h.median(pip), "ms", f"median of {n}",
                h.median(base), "python -c pass", samples=pip, baseline_samples=base,
                notes="fixed cost included in every CLI figure below")]


# --- 1. many small files ------------------------------------------------------

def _boto_put_many(env: h.S3Env, bucket: str, src: str, names: list[str]) -> float:
    """put_object every file of ``src`` on 16 threads; wall seconds."""
    def one(name: str) -> None:
        with open(os.path.join(src, name), "rb") as f:
            env.client.put_object(Bucket=bucket, Key=f"copy/{name}", Body=f.read())

    began = time.perf_counter()
    with cf.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, names))
    return time.perf_counter() - began


def put_tree(ctx: Context, n: int, repeats: int, number: str) -> Row:
    """``pipectl put-file REPO master / -r -f DIR`` of ``n`` 4 KiB files into
    a fresh store each repeat: files/s (best of ``repeats``) and pipectl's
    peak RSS (GNU time), against ``cp -r`` of the same tree (local) or
    boto3 ``put_object`` on a ThreadPoolExecutor(16) (S3, in-process: no
    interpreter start-up). The row of workload ``number`` (1, and 11 at
    scale: see :mod:`benchmarks.scale`)."""
    env, s = ctx.env, ctx.sizes
    h.log(f"{ctx.store}: {number} put-file {n:,} x {s.small_size // KiB} KiB")
    work = ctx.scratch(f"put-small-{n}")
    src = h.make_files(os.path.join(work, "src"), n, s.small_size)
    names = sorted(os.listdir(src))
    pip, base, rss = [], [], []
    for k in range(repeats):  # pipectl and the baseline take turns (see bench_put_big)
        url = env.new_store(f"small{n}-{k}")
        env.pipectl(url, "create-repo", "small")
        h.settle()
        r = env.pipectl(url, "put-file", "small", "master", "/", "-r", "-f", src, peak_rss=True)
        pip.append(r.seconds)
        rss.append(r.maxrss_bytes or 0)
        got = file_count(url, "small")
        if got != n:
            raise h.BenchError(f"put-file stored {got} files, expected {n}")
        if isinstance(env, h.LocalEnv):
            env.drop(url)
        h.settle()
        if isinstance(env, h.S3Env):
            base.append(_boto_put_many(env, env.new_bucket(f"copy{k}"), src, names))
        else:
            dest = os.path.join(work, f"copy{k}")
            base.append(h.run(["cp", "-r", src, dest]).seconds)
            shutil.rmtree(dest)
    shutil.rmtree(work)
    name = "boto3 put_object x16" if isinstance(env, h.S3Env) else "cp -r"
    return Row(ctx.store, f"{number} put-file {n:,} x 4 KiB", n / min(pip), "files/s", f"best of {repeats}",
               n / min(base), name, target=">= 0.5x baseline", target_met=min(base) / min(pip) >= 0.5,
               samples=[n / t for t in pip], baseline_samples=[n / t for t in base],
               extra={"peak_rss_bytes": rss},
               notes=f"one commit; incl. CLI start-up; peak RSS {max(rss) / MB:,.0f} MB"
                     f"{ctx.reduced('files', n, ctx.nominal.small_files) if number == '1' else ''}")


def bench_put_small(ctx: Context) -> list[Row]:
    """1. put-file -r of N 4 KiB files (:func:`put_tree`)."""
    return [put_tree(ctx, ctx.sizes.small_files, ctx.sizes.put_repeats, "1")]


# --- 2./3. one big file, then again ---------------------------------------------

def bench_put_big(ctx: Context) -> list[Row]:
    """2. ``pipectl put-file REPO master /big.bin -o -f FILE`` of one big file
    into a fresh store, MB/s (10^6 bytes/s, best of N), with pipectl's peak
    RSS (measured by GNU time, see :func:`harness.run`; target < 200 MB),
    against, on local disk, ``cp`` and ``b3sum`` of the same file run side
    by side (:func:`harness.copy_and_hash_seconds`: the most any
    content-addressed put could reach here, which must copy and hash every
    byte; no interpreter starts, while pipectl's figure includes its CLI
    start), and on S3 boto3's ``upload_file`` to the same server.

    3. The same put-file again, unchanged: seconds (best of N) and the new
    bytes under ``objects/`` (must be 0), against ``cp`` (local) or
    ``upload_file`` (S3) again. ``-o`` (overwrite) keeps the re-put
    unchanged: without it pachctl 1.x semantics would append the file to
    itself.

    3. Then the file with 4 KiB of new random bytes inserted in its middle
    (a new copy each repeat, new bytes each time), put again over it: the
    growth of ``objects/`` (MB, the most of N; target < 20 MB) beside the
    growth fixed 16 MiB slices (how large files were stored before
    content-defined chunking) would have had on the same bytes (computed
    here from the slices' hashes), and the re-put's time (best of N)
    beside the first put's (row 2). Last, 4 KiB changed in place in the
    middle of the original file: the growth again (target < 20 MB).

    pipectl and the baseline take turns, each after :func:`harness.settle`,
    and ``cp`` writes a new file each time, as pipectl writes new objects.
    The notes give the CLI's start time (``pipectl --version``: interpreter
    and imports), part of every pipectl figure, the rate without it (what
    a longer put approaches), and on local disk the rate of ``cp`` alone."""
    env, s = ctx.env, ctx.sizes
    size = s.big_bytes
    h.log(f"{ctx.store}: 2/3 put-file one {size // MiB} MiB file")
    work = ctx.scratch("put-big")
    path = h.make_big_file(os.path.join(work, "big.bin"), size)
    is_s3 = isinstance(env, h.S3Env)
    bucket = env.new_bucket("bigcopy") if is_s3 else None
    dest = os.path.join(work, "big.copy")

    def baseline() -> float:
        h.settle()
        if is_s3:
            began = time.perf_counter()
            env.client.upload_file(path, bucket, "big.bin")
            return time.perf_counter() - began
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dest)  # cp writes a new file, as pipectl writes new objects
        return h.run(["cp", path, dest]).seconds

    def floor() -> float:
        h.settle()
        return h.copy_and_hash_seconds(path, dest)

    pip, rss, base, floors, urls = [], [], [], [], []
    for k in range(s.big_repeats):
        url = env.new_store(f"big{k}")
        env.pipectl(url, "create-repo", "big")
        h.settle()
        r = env.pipectl(url, "put-file", "big", "master", "/big.bin", "-o", "-f", path, peak_rss=True)
        pip.append(r.seconds)
        rss.append(r.maxrss_bytes)
        if not is_s3 and urls:
            env.drop(urls.pop())
        urls.append(url)
        base.append(baseline())
        if not is_s3:
            floors.append(floor())
    url = urls[-1]
    pfs, _ = api(url)
    if pfs.inspect_file("big", "master", "/big.bin").size != size:
        raise h.BenchError("big file stored with the wrong size")
    chunks = len(pfs.read_tree(pfs.inspect_commit("big", "master")).files["/big.bin"].objects)
    start = min(env.pipectl(url, "--version").seconds for _ in range(3))
    peak = max(rss)
    note = ctx.reduced("MiB", size // MiB, ctx.nominal.big_bytes // MiB)
    extra = {"peak_rss_bytes": rss, "cli_start_seconds": start, "chunks": chunks}
    if is_s3:
        compared, base_name, also = base, "boto3 upload_file", ""
    else:
        compared, base_name = floors, "cp | b3sum side by side"
        also = f"; cp alone {size / MB / min(base):,.0f} MB/s"
        extra["cp_seconds"] = base
    rows = [Row(ctx.store, f"2 put-file 1 x {size // MiB:,} MiB", size / MB / min(pip), "MB/s",
                f"best of {s.big_repeats}", size / MB / min(compared), base_name,
                target=">= 0.8x baseline, peak RSS < 200 MB",
                target_met=min(compared) / min(pip) >= 0.8 and peak < 200 * MB,
                notes=f"peak RSS {peak / MB:,.0f} MB; {chunks} chunks; CLI start (pipectl --version) "
                      f"{start:.2f} s, without it {size / MB / max(min(pip) - start, 1e-3):,.0f} MB/s{also}{note}",
                samples=[size / MB / t for t in pip], baseline_samples=[size / MB / t for t in compared],
                extra=extra)]

    # 3. dedupe: the same put again
    before = env.objects_bytes(url)
    again, base3 = [], []
    for _ in range(s.dedupe_repeats):
        h.settle()
        again.append(env.pipectl(url, "put-file", "big", "master", "/big.bin", "-o", "-f", path).seconds)
        base3.append(baseline())
    new_bytes = env.objects_bytes(url) - before
    if pfs.inspect_file("big", "master", "/big.bin").size != size:
        raise h.BenchError("re-put changed the big file")
    if not is_s3:
        os.unlink(dest)
    rows.append(Row(ctx.store, f"3 put-file same {size // MiB:,} MiB again", min(again), "s",
                    f"best of {s.dedupe_repeats}", min(base3), ("upload_file" if is_s3 else "cp") + " again",
                    target="0 new bytes", target_met=new_bytes == 0,
                    notes=f"new bytes in objects/: {new_bytes:,}; {size / MB / min(again):,.0f} MB/s effective",
                    samples=again, baseline_samples=base3, extra={"new_object_bytes": new_bytes}))

    # 3. a 4 KiB change in the middle: inserted (each repeat new bytes), then in place
    rows += _put_big_edits(ctx, url, path, min(pip), note)
    if not is_s3:
        env.drop(url)
    return rows


def _put_big_edits(ctx: Context, url: str, path: str, first: float, note: str) -> list[Row]:
    """The rows of a 4 KiB change in the middle of the big file already
    put at ``url`` (see :func:`bench_put_big`); ``first``: the first put's
    seconds (best of N)."""
    env, s = ctx.env, ctx.sizes
    size = os.path.getsize(path)
    changed = os.path.join(ctx.scratch("put-big"), "changed.bin")
    sliced = {digest for digest, _ in h.fixed_slice_hashes(path)}
    pfs, _ = api(url)

    def put(edit: bytes, insert: bool) -> tuple[float, int, int, int]:
        """Put the edited file over /big.bin: (seconds, growth of objects/,
        growth fixed slices would have had, new chunks in the file)."""
        h.edited_copy(path, changed, size // 2, edit, insert)
        fixed = sum(n for digest, n in h.fixed_slice_hashes(changed) if digest not in sliced)
        old = set(pfs.read_tree(pfs.inspect_commit("big", "master")).files["/big.bin"].objects)
        before = env.objects_bytes(url)
        h.settle()
        seconds = env.pipectl(url, "put-file", "big", "master", "/big.bin", "-o", "-f", changed).seconds
        grown = env.objects_bytes(url) - before
        entry = pfs.read_tree(pfs.inspect_commit("big", "master")).files["/big.bin"]
        if entry.size != size + (len(edit) if insert else 0):
            raise h.BenchError("re-put of the edited file stored the wrong size")
        return seconds, grown, fixed, sum(ref not in old for ref in entry.objects)

    n = s.dedupe_repeats
    inserts = [put(os.urandom(4 * KiB), insert=True) for _ in range(n)]
    times = [x[0] for x in inserts]
    grown, fixed, fresh = max(x[1] for x in inserts), max(x[2] for x in inserts), max(x[3] for x in inserts)
    seconds, in_place, in_place_fixed, in_place_fresh = put(os.urandom(4 * KiB), insert=False)
    os.unlink(changed)
    label = f"{size // MiB:,} MiB"
    return [
        Row(ctx.store, f"3 4 KiB inserted mid-file ({label}), re-put: stored", grown / MB, "MB",
            f"most of {n}", fixed / MB, "16 MiB slices (before CDC)", target="< 20 MB", target_met=grown < 20 * MB,
            notes=f"{fresh} new chunk(s) per re-put; growth from objects/ before and after{note}",
            samples=[x[1] / MB for x in inserts], baseline_samples=[x[2] / MB for x in inserts],
            extra={"new_chunks": [x[3] for x in inserts]}),
        Row(ctx.store, f"3 4 KiB inserted mid-file ({label}), re-put: time", min(times), "s", f"best of {n}",
            first, "first put (row 2)", notes=f"the whole file read, cut and hashed again{note}",
            samples=times, baseline_samples=[first]),
        Row(ctx.store, f"3 4 KiB changed in place ({label}), re-put: stored", in_place / MB, "MB", "1 run",
            in_place_fixed / MB, "16 MiB slices (before CDC)", target="< 20 MB", target_met=in_place < 20 * MB,
            notes=f"{in_place_fresh} new chunk(s); re-put {seconds:.2f} s{note}",
            extra={"new_chunks": in_place_fresh, "seconds": seconds}),
    ]


# --- 4./5. a job, then the same job incrementally --------------------------------

def _job_check(url: str, pipeline: str, processed: int, total: int) -> dict:
    """The newest job of ``pipeline`` succeeded with these datum counts.
    Returns its id, counts and ``seconds``: from its creation to its finish
    as its record gives them (the job's own time, which a controller left
    running pays; not the start of the ``pipectl controller`` process)."""
    from pipectl.pfs.model import parse_time

    _, pps = api(url)
    job = pps.list_jobs(pipeline)[0]
    if job.state != "success" or job.datums_processed != processed or job.datums_total != total:
        raise h.BenchError(f"job {job.id}: state {job.state}, processed {job.datums_processed}/{processed}, "
                           f"total {job.datums_total}/{total}: {job.reason}")
    seconds = (parse_time(job.finished) - parse_time(job.created)).total_seconds()
    return {"job": job.id, "processed": job.datums_processed, "skipped": job.datums_skipped, "seconds": seconds}


def bench_job(ctx: Context) -> list[Row]:
    """4. A pipeline over N single-file datums (glob ``/*``, cmd ``sh -c 'cp
    /pfs/in/* /pfs/out/'``, parallelism 2): wall time of ``pipectl controller
    --exit-when-idle``, datums/s, against a sequential shell loop running
    ``sh -c 'cp FILE OUTDIR/'`` for each of the same files (best of N).

    5. The same after adding one file, seconds (median of N, one more file
    each time), against run 4; target: under 5% of it. Both are the jobs'
    own times, from their records: creation to finish (``list-job``'s
    DURATION starts later, at the job's start). A controller runs
    continuously; the start of each ``controller --exit-when-idle`` process
    here (interpreter, imports, an S3 client: 0.3-0.9 s on S3 on this
    machine, whatever the job) is no part of a job. The notes give those
    process times as well."""
    env, s = ctx.env, ctx.sizes
    n = s.datums
    h.log(f"{ctx.store}: 4/5 job over {n} datums")
    work = ctx.scratch("job")
    src = h.make_files(os.path.join(work, "in"), n, s.datum_size)
    url = env.new_store("job")
    env.pipectl(url, "create-repo", "in")
    env.pipectl(url, "put-file", "in", "master", "/", "-r", "-f", src)
    spec = {"pipeline": {"name": "copy"},
            "transform": {"image": "bench/sh", "cmd": ["sh", "-c", "cp /pfs/in/* /pfs/out/"]},
            "input": {"pfs": {"repo": "in", "glob": "/*"}},
            "parallelism_spec": {"constant": 2}}
    env.pipectl(url, "create-pipeline", "-f", _write_spec(ctx, f"copy-{ctx.store}", spec))
    first = env.pipectl(url, "controller", "--exit-when-idle").seconds
    first_job = _job_check(url, "copy", n, n)["seconds"]
    if file_count(url, "copy") != n:
        raise h.BenchError("job output is missing files")

    out = os.path.join(work, "loop-out")
    loop = 'for f in "$1"/*; do sh -c "cp $f $2/"; done'
    base = []
    for _ in range(s.job_baseline_repeats):
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        base.append(h.run(["sh", "-c", loop, "loop", src, out]).seconds)
    if len(os.listdir(out)) != n:
        raise h.BenchError("shell loop baseline did not copy every file")
    shutil.rmtree(out)
    nproc = os.cpu_count()
    rows = [Row(ctx.store, f"4 job {n:,} datums (cp)", n / first, "datums/s", "1 run", n / min(base),
                f"sh loop, best of {s.job_baseline_repeats}", target=">= 0.5x baseline",
                target_met=min(base) / first >= 0.5,
                notes=f"controller wall {first:.1f} s; parallelism 2 on nproc={nproc}; baseline sequential"
                      + ctx.reduced("datums", n, ctx.nominal.datums),
                samples=[first], baseline_samples=base, extra={"controller_seconds": first, "nproc": nproc})]

    extra_dir = ctx.scratch("job-extra")
    incr, walls, checks = [], [], []
    for k in range(s.incremental_repeats):
        f = h.make_files(os.path.join(extra_dir, str(k)), 1, s.datum_size, prefix=f"extra{k}-")
        local = os.path.join(f, os.listdir(f)[0])
        env.pipectl(url, "put-file", "in", "master", f"/extra-{k}", "-f", local)
        walls.append(env.pipectl(url, "controller", "--exit-when-idle").seconds)
        checks.append(_job_check(url, "copy", 1, n + k + 1))
        incr.append(checks[-1]["seconds"])
    t5 = h.median(incr)
    share = t5 / first_job
    wall = h.median(walls)
    rows.append(Row(ctx.store, "5 same job +1 file", t5, "s", f"median of {s.incremental_repeats}",
                    first_job, "run 4's job", target="< 5% of run 4", target_met=share < 0.05,
                    notes=f"{share:.1%} of run 4 (jobs' own times); controller processes {wall:.2f} s "
                          f"against {first:.1f} s, {wall / first:.1%}; 1 datum processed, {n}+ skipped",
                    samples=incr, baseline_samples=[first_job],
                    extra={"jobs": checks, "controller_seconds": walls, "run4_controller_seconds": first}))
    if isinstance(env, h.LocalEnv):
        env.drop(url)
    return rows


# --- 6./7. trigger latency, listing ----------------------------------------------

LATENCY_CMD = ["sh", "-c", 'date +%s.%N > /pfs/out/"$(basename "$in")"']


def _latency_scenario(ctx: Context, label: str, bulk: int, bulk_size: int) -> dict:
    """A repo with ``bulk`` files under /bulk, a pipeline (glob ``/*``) whose
    transform writes ``date +%s.%N`` to /pfs/out/<datum name>, and a
    long-running controller at its default poll interval. After the /bulk
    datum is processed once, /trigger-K files are put one at a time; each
    sample is (time the datum started, read back with get-file) - (time
    put-file returned), in seconds."""
    env, s = ctx.env, ctx.sizes
    work = ctx.scratch(f"latency-{label}")
    src = h.make_files(os.path.join(work, "bulk"), bulk, bulk_size)
    url = env.new_store(f"lat-{label}")
    env.pipectl(url, "create-repo", "data")
    bulk_put = env.pipectl(url, "put-file", "data", "master", "/bulk", "-r", "-f", src).seconds
    spec = {"pipeline": {"name": "latency"},
            "transform": {"image": "bench/sh", "cmd": LATENCY_CMD},
            "input": {"pfs": {"repo": "data", "glob": "/*", "name": "in"}},
            "parallelism_spec": {"constant": 1}}
    env.pipectl(url, "create-pipeline", "-f", _write_spec(ctx, f"latency-{label}-{ctx.store}", spec))
    pfs, _ = api(url)

    def output_has(path: str):
        def check():
            try:
                return path in pfs.read_tree(pfs.inspect_commit("latency", "master")).files
            except NotFound:  # no output commit yet
                return False
        return check

    controller = h.Background.start(h.PIPECTL + ["controller"], env=env.env(url),
                                    log_path=os.path.join(work, "controller.log"))
    samples, visible, puts = [], [], []
    try:
        began = time.perf_counter()
        h.wait_for(output_has("/bulk"), 3600, 0.1, f"first job over /bulk ({bulk} files)", controller)
        first_job = time.perf_counter() - began
        for k in range(s.latency_repeats):
            trig = os.path.join(work, f"trigger-{k}")
            with open(trig, "wb") as f:
                f.write(os.urandom(64))
            r = env.pipectl(url, "put-file", "data", "master", f"/trigger-{k}", "-f", trig)
            puts.append(r.seconds)
            h.wait_for(output_has(f"/trigger-{k}"), 600, 0.05, f"output of /trigger-{k}", controller)
            visible.append(time.time() - r.ended)
            started = float(env.pipectl(url, "get-file", "latency", "master", f"/trigger-{k}").text())
            samples.append(started - r.ended)
    finally:
        h.Background.stop(controller)
    return {"url": url, "src": src, "samples": samples, "visible": visible, "puts": puts,
            "first_job": first_job, "bulk_put": bulk_put}


def bench_latency_and_listing(ctx: Context) -> list[Row]:
    """6. Trigger latency (ms, median of N) for a small repo and for a repo of
    many files under /bulk; baseline column: the controller's poll interval
    (a reference, not a competitor: ratio n/a). Target < 1 s.

    7. ``pipectl list-file REPO master /bulk`` and ``pipectl inspect-commit
    REPO master`` on the bulk commit (ms, best of N), against ``find DIR``
    over the same files (local) or a paginated boto3 ``list_objects_v2`` over
    the same number of keys (S3: the same files uploaded one key each with
    boto3; pipectl's store holds them in a few packs). Target < 2 s."""
    env, s = ctx.env, ctx.sizes
    poll = controller_poll_interval()
    rows = []
    runs = {}
    for label, bulk, size in (("small", s.latency_small_files, s.bulk_size), ("bulk", s.bulk_files, s.bulk_size)):
        h.log(f"{ctx.store}: 6 trigger latency, {label} repo ({bulk:,} files under /bulk)")
        runs[label] = r = _latency_scenario(ctx, label, bulk, size)
        ms = [x * 1000 for x in r["samples"]]
        lat = h.median(ms)
        note = (f"commit visible after {h.median(r['visible']) * 1000:,.0f} ms; put-file of 1 file "
                f"{h.median(r['puts']):.2f} s")
        if label == "bulk":
            note += (f"; setup: put {bulk:,} files {r['bulk_put']:.1f} s, first job {r['first_job']:.1f} s"
                     + ctx.reduced("files", bulk, ctx.nominal.bulk_files))
        rows.append(Row(ctx.store, f"6 trigger latency, {bulk:,}-file repo", lat, "ms",
                        f"median of {len(ms)}", poll * 1000, "poll interval", compare=False,
                        target="< 1 s", target_met=lat < 1000, notes=note, samples=ms,
                        extra={"visible_seconds": r["visible"], "put_seconds": r["puts"],
                               "first_job_seconds": r["first_job"], "bulk_put_seconds": r["bulk_put"]}))

    big = runs["bulk"]
    url, src, n = big["url"], big["src"], s.bulk_files
    h.log(f"{ctx.store}: 7 list-file / inspect-commit on {n:,} files")
    lists, inspects, base = [], [], []
    for _ in range(s.list_repeats):
        r = env.pipectl(url, "list-file", "data", "master", "/bulk")
        lines = r.stdout.count(b"\n")
        if lines != n + 1:
            raise h.BenchError(f"list-file printed {lines} lines, expected {n + 1}")
        lists.append(r.seconds * 1000)
        inspects.append(env.pipectl(url, "inspect-commit", "data", "master").seconds * 1000)
    if isinstance(env, h.S3Env):
        bucket = env.new_bucket("listing")
        _boto_put_many(env, bucket, src, sorted(os.listdir(src)))
        for _ in range(s.list_repeats):
            began = time.perf_counter()
            count = sum(1 for _ in env.list_keys(bucket, "copy/"))
            base.append((time.perf_counter() - began) * 1000)
            if count != n:
                raise h.BenchError(f"listed {count} keys, expected {n}")
        base_name = f"list_objects_v2 {n:,} keys"
    else:
        for _ in range(s.list_repeats):
            r = h.run(["find", src])
            base.append(r.seconds * 1000)
        base_name = "find DIR"
    stat = f"best of {s.list_repeats}"
    for what, xs in (("list-file", lists), ("inspect-commit", inspects)):
        rows.append(Row(ctx.store, f"7 {what}, {n:,}-file commit", min(xs), "ms", stat, min(base), base_name,
                        target="< 2 s", target_met=min(xs) < 2000, samples=xs, baseline_samples=base,
                        notes="incl. CLI start-up" + ctx.reduced("files", n, ctx.nominal.bulk_files)))
    for r in runs.values():
        if isinstance(env, h.LocalEnv):
            env.drop(r["url"])
    return rows


# --- 8. serving (hook) -------------------------------------------------------------

def bench_serving(ctx: Context) -> list[Row]:
    """8. Serving: single-row POST /predictions/<model> requests/s and p50/p99
    latency (ms) at concurrency 1 and 8, beside the same model's in-process
    forward pass timed in the same run (see benchmarks/serving.py). Run on
    the local store only: the server reads the model once per version."""
    if ctx.store != "local":
        return []
    from .serving import bench_serving as serve
    return [Row(ctx.store, r["workload"], r["pipectl"], r["unit"], baseline=r["baseline"],
                baseline_name=r["baseline_name"], ratio=r["ratio"], notes=r["notes"],
                target=r["target"], target_met=r["target_met"], compare=r["baseline"] is not None)
            for r in serve(ctx.mode == "quick", ctx.env.new_store("serving"))]


def bench_api(ctx: Context) -> list[Row]:
    """9. The pipectl server: p50 latency of list-repo, inspect-commit and
    list-job through the API beside the same call in-process, a watch
    stream's delivery time, and the console's first paint with 100
    pipelines and 10,000 jobs (see benchmarks/api.py). Local store only."""
    if ctx.store != "local":
        return []
    from .api import bench_api as run
    from .api import bench_console
    url, console = ctx.env.new_store("api"), ctx.env.new_store("console")
    return run(ctx.mode == "quick", url, ctx.env.env(url)) + [bench_console(console, ctx.env.env(console))]


def bench_s3_gateway(ctx: Context) -> list[Row]:
    """10. The S3 gateway: boto3 PUT and GET of one big object (64 MiB
    quick, 256 MiB full) through ``pipectl server --s3-gateway-port``,
    MB/s (best of 3), beside the same calls to the backing store over S3:
    on the S3 store its versitygw server directly, on the local store
    versitygw serving a directory on the same disk (see
    benchmarks/s3gateway.py). Not on moto."""
    if ctx.store not in ("local", "s3"):
        return []
    from pipectl.testing import s3servers

    from .s3gateway import bench_s3_gateway as run
    url = ctx.env.new_store("s3gateway")
    scratch = ctx.scratch("s3gateway")
    started = None
    if ctx.store == "s3":
        raw, what = ctx.env.server, "the store's versitygw server directly"
    else:
        try:
            raw = started = s3servers.VersityGW(os.path.join(scratch, "versitygw"),
                                                log_path=os.path.join(scratch, "versitygw.log")).start()
        except s3servers.ServerError as e:
            raise h.BenchError(str(e)) from None
        what = "versitygw serving a directory on the same disk"
    try:
        return run(ctx.mode == "quick", ctx.store, url, ctx.env.env(url), scratch, raw, what)
    finally:
        if started is not None:
            started.stop()


def bench_controller(ctx: Context) -> list[Row]:
    """11. An idle controller step on a long job history beside the same
    step on a short one (see benchmarks/controller.py). Local store only."""
    if ctx.store != "local":
        return []
    from .controller import bench_controller_idle
    return [bench_controller_idle(ctx.mode == "quick", ctx.env.new_store("history"),
                                  ctx.env.new_store("no-history"))]


WORKLOADS = [
    ({"0"}, bench_startup),
    ({"1"}, bench_put_small),
    ({"2", "3"}, bench_put_big),
    ({"4", "5"}, bench_job),
    ({"6", "7"}, bench_latency_and_listing),
    ({"8"}, bench_serving),
    ({"9"}, bench_api),
    ({"10"}, bench_s3_gateway),
    ({"11"}, bench_controller),
    ({"12"}, bench_put_scale),
    ({"13"}, bench_list_scale),
]
"""(workload numbers, function) in run order; a function runs if any of its
numbers is selected."""
