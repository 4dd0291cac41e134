"""Profile pipectl's slow paths with pyinstrument (``pip install pyinstrument``).

``python -m benchmarks.profile latency [--files N] [--store local|s3]``
    The trigger-latency path of workload 6, split into its parts: ``put-file``
    of one file into a repo of N files under /bulk (the real CLI under
    pyinstrument), then the controller's side (create the job, plan it)
    and the worker's side (run the one new datum) and the controller's finish,
    each in-process under pyinstrument (the process executor would hide the
    worker in a subprocess). Prints each part's wall time in seconds and its
    top frames.

``python -m benchmarks.profile job [--datums N] [--store local|s3]``
    Workload 4's job: planning, one worker running every datum in-process
    (where the per-datum overhead shows), and the finish.

``python -m benchmarks.profile incremental [--datums N] [--store local|s3]``
    Workload 5: after a job over N single-file datums, one file is added and
    the next job (1 datum to run, N skipped) is profiled in its parts:
    create + plan, the worker in-process, the finish.

``python -m benchmarks.profile list [--files N] [--store local|s3]``
    ``list-file`` and ``inspect-commit`` (the real CLI under pyinstrument) on
    a commit of N files under /bulk.

``python -m benchmarks.profile put-big [--mib N] [--store local|s3]``
    ``put-file`` of one big file (the real CLI under pyinstrument). Only the
    main thread is sampled; chunk hashing and writes run on pool threads.

``python -m benchmarks.profile put-stages [--mib N]``
    Where a big put's time goes on local disk, without pyinstrument: each
    stage of pipectl's put of one file (mapping its pages, cutting it by
    content, hashing the chunks, copying them into a store, and that
    again with each copy hashed where it landed, as the put checks a new
    chunk) alone on one thread, then the whole put in-process, beside ``cp`` and ``b3sum``
    alone and side by side (workload 2's floor): wall and CPU seconds
    (user + system), best of 3, and what the CPU seconds allow on this
    machine's cores.

Output: the text reports on stdout; nothing is kept on disk.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from . import harness as h

TOP = 10


def _profiler():
    try:
        from pyinstrument import Profiler
    except ImportError:
        sys.exit("pyinstrument is not installed: pip install pyinstrument")
    return Profiler(interval=0.0005)


def _frames(flat_text: str) -> list[str]:
    """The ``<seconds> <function> <file>:<line>`` lines of a flat report."""
    return [x.strip() for x in flat_text.splitlines() if re.match(r"^\s*\d+\.\d+\s+\S", x)]


@contextlib.contextmanager
def _profiled(title):
    """Profile the ``with`` body; report it under ``title`` (a string, or a
    function of the elapsed seconds returning one)."""
    p = _profiler()
    began = time.perf_counter()
    p.start()
    try:
        yield
    finally:
        p.stop()
        seconds = time.perf_counter() - began
        _report(title(seconds) if callable(title) else title, seconds, p)


def _plan_next_job(controller, pps):
    """Create and plan the next job as the controller would; the
    controller's RunningJob (record, spec, plan, result batches)."""
    from pipectl.pps.controller import RunningJob
    controller.create_jobs()
    job = controller.next_job()
    job = pps.update_job(job.pipeline, job.id, state="running", started=job.created)
    run = RunningJob(job, pps.pipeline_version(job.pipeline, job.pipeline_version))
    controller._plan(run)
    return run


def _report(title: str, seconds: float, profiler, top: int = TOP) -> None:
    print(f"\n=== {title}: {seconds * 1000:,.0f} ms wall ===")
    flat = profiler.output_text(flat=True, flat_time="self", unicode=False, color=False)
    print(f"-- top {top} frames by self time --")
    print("\n".join(_frames(flat)[:top]))
    print("-- call tree --")
    tree = profiler.output_text(unicode=False, color=False)
    print("\n".join(tree.splitlines()[:60]))


def _cli_profile(env: h.StoreEnv, url: str, args: list[str], title: str) -> None:
    """Run ``pipectl ARGS`` once under ``python -m pyinstrument`` (session
    saved, then rendered as a flat self-time list and as a call tree)."""
    with tempfile.TemporaryDirectory() as tmp:
        session = os.path.join(tmp, "run.pyisession")
        r = h.run([sys.executable, "-m", "pyinstrument", "-i", "0.0005", "-r", "pyisession", "-o", session,
                   "-m", "pipectl", *args], env=env.env(url))
        load = [sys.executable, "-m", "pyinstrument", f"--load={session}", "-r", "text", "--no-color",
                "--no-unicode"]
        flat = h.run(load + ["-p", "flat"]).text()
        tree = h.run(load).text()
    print(f"\n=== {title}: {r.seconds * 1000:,.0f} ms wall (under the profiler) ===")
    print(f"-- top {TOP} frames by self time --")
    print("\n".join(_frames(flat)[:TOP]))
    print("-- call tree --")
    print("\n".join(tree.splitlines()[:60]))


def profile_latency(env: h.StoreEnv, files: int) -> None:
    from pipectl.pfs import PFS
    from pipectl.pps import PPS
    from pipectl.pps.controller import Controller
    from pipectl.pps.executors.process import ProcessExecutor
    from pipectl.pps.worker import Worker
    from pipectl.store import open_store

    from .workloads import LATENCY_CMD

    work = env.workdir
    src = h.make_files(os.path.join(work, "bulk"), files, 256)
    url = env.new_store("profile")
    h.log(f"setup: {files:,} files under /bulk")
    env.pipectl(url, "create-repo", "data")
    env.pipectl(url, "put-file", "data", "master", "/bulk", "-r", "-f", src)
    spec = {"pipeline": {"name": "latency"}, "transform": {"image": "bench/sh", "cmd": LATENCY_CMD},
            "input": {"pfs": {"repo": "data", "glob": "/*", "name": "in"}}, "parallelism_spec": {"constant": 1}}
    spec_path = os.path.join(work, "spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    env.pipectl(url, "create-pipeline", "-f", spec_path)
    h.log("setup: first job over /bulk")
    env.pipectl(url, "controller", "--exit-when-idle")

    trig = os.path.join(work, "trigger")
    with open(trig, "wb") as f:
        f.write(b"trigger\n")
    _cli_profile(env, url, ["put-file", "data", "master", "/trigger-0", "-f", trig],
                 f"put-file of 1 file into a {files:,}-file repo (CLI)")

    store = open_store(url)
    pfs = PFS(store)
    pps = PPS(store, pfs)
    controller = Controller(store, ProcessExecutor(url), 0.2)

    with _profiled("controller: create job + plan"):
        run = _plan_next_job(controller, pps)

    with _profiled("worker: run the new datum (in-process)"):
        Worker(store, run.job.pipeline, run.job.id, 0, 1).run()

    with _profiled("controller: collect results + land the output commit"):
        controller._finish(run, controller._execute(run))

    r = [h.run([sys.executable, "-c", "import pipectl.pps.worker"]).seconds for _ in range(3)]
    print(f"\nworker process start-up (python -c 'import pipectl.pps.worker'): {min(r) * 1000:,.0f} ms best of 3")
    if not pfs.inspect_file("latency", "master", "/trigger-0").size:
        raise h.BenchError("trigger output missing")


def _copy_pipeline(env: h.StoreEnv, label: str, datums: int, parallelism: int) -> str:
    """A fresh store with repo ``in`` of ``datums`` 4 KiB files and workload
    4's pipeline ``copy`` (glob ``/*``, ``cp`` to /pfs/out); returns its URL."""
    src = h.make_files(os.path.join(env.workdir, "in"), datums, 4096)
    url = env.new_store(label)
    env.pipectl(url, "create-repo", "in")
    env.pipectl(url, "put-file", "in", "master", "/", "-r", "-f", src)
    spec = {"pipeline": {"name": "copy"},
            "transform": {"image": "bench/sh", "cmd": ["sh", "-c", "cp /pfs/in/* /pfs/out/"]},
            "input": {"pfs": {"repo": "in", "glob": "/*"}}, "parallelism_spec": {"constant": parallelism}}
    spec_path = os.path.join(env.workdir, "spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    env.pipectl(url, "create-pipeline", "-f", spec_path)
    return url


def _profile_next_job(url: str, worker_title):
    """Profile the next job of store ``url`` in three parts: create + plan,
    one worker running every datum in-process (report titled
    ``worker_title``, as for :func:`_profiled`), the finish. Returns the
    job's final record."""
    from pipectl.pps import PPS
    from pipectl.pps.controller import Controller
    from pipectl.pps.executors.process import ProcessExecutor
    from pipectl.pps.worker import Worker
    from pipectl.store import open_store

    store = open_store(url)
    pps = PPS(store)
    controller = Controller(store, ProcessExecutor(url), 0.2)
    with _profiled("controller: create job + plan"):
        run = _plan_next_job(controller, pps)
    with _profiled(worker_title):
        Worker(store, run.job.pipeline, run.job.id, 0, 1).run()
    with _profiled("controller: collect results + land the output commit"):
        controller._finish(run, controller._execute(run))
        return run.job


def profile_job(env: h.StoreEnv, datums: int) -> None:
    """Workload 4's job: the controller's planning, then one worker running
    every datum in-process (parallelism 1), then the finish."""
    url = _copy_pipeline(env, "profile-job", datums, 1)
    final = _profile_next_job(url, lambda seconds: f"worker: {datums} datums in-process "
                                                   f"({datums / seconds:,.0f} datums/s)")
    if final.state != "success" or final.datums_processed != datums:
        raise h.BenchError(f"job ended {final.state} with {final.datums_processed} datums processed")


def profile_incremental(env: h.StoreEnv, datums: int) -> None:
    """Workload 5: the job after adding one file to a repo of ``datums``
    single-file datums that an earlier job processed."""
    url = _copy_pipeline(env, "profile-incremental", datums, 2)
    h.log(f"setup: first job over {datums:,} datums")
    env.pipectl(url, "controller", "--exit-when-idle")
    extra = os.path.join(env.workdir, "extra")
    with open(extra, "wb") as f:
        f.write(os.urandom(4096))
    env.pipectl(url, "put-file", "in", "master", "/extra", "-f", extra)
    final = _profile_next_job(url, "worker: run the new datum (in-process)")
    if final.state != "success" or final.datums_processed != 1 or final.datums_skipped != datums:
        raise h.BenchError(f"job ended {final.state}: {final.datums_processed} processed, "
                           f"{final.datums_skipped} skipped")


def profile_list(env: h.StoreEnv, files: int) -> None:
    """``list-file`` and ``inspect-commit`` on a commit of N files under /bulk."""
    src = h.make_files(os.path.join(env.workdir, "bulk"), files, 256)
    url = env.new_store("profile-list")
    env.pipectl(url, "create-repo", "data")
    env.pipectl(url, "put-file", "data", "master", "/bulk", "-r", "-f", src)
    _cli_profile(env, url, ["list-file", "data", "master", "/bulk"], f"list-file of {files:,} files (CLI)")
    _cli_profile(env, url, ["inspect-commit", "data", "master"], f"inspect-commit, {files:,}-file commit (CLI)")


def profile_put_big(env: h.StoreEnv, mib: int) -> None:
    path = h.make_big_file(os.path.join(env.workdir, "big.bin"), mib * 1024 * 1024)
    url = env.new_store("profile-big")
    env.pipectl(url, "create-repo", "big")
    _cli_profile(env, url, ["put-file", "big", "master", "/big.bin", "-o", "-f", path],
                 f"put-file of one {mib} MiB file (CLI, main thread only)")


def profile_put_stages(env: h.StoreEnv, mib: int, repeats: int = 3) -> None:
    """See the module docs (``put-stages``)."""
    import mmap
    import resource

    from pipectl.pfs import objects
    from pipectl.pfs.hashing import content_hash
    from pipectl.store.base import FileRange
    from pipectl.store.local import LocalStore

    path = h.make_big_file(os.path.join(env.workdir, "big.bin"), mib * 1024 * 1024)
    size = os.path.getsize(path)
    rows: list[tuple[str, float, float]] = []

    def best(name: str, fn, threads: bool = False) -> None:
        """Run ``fn`` ``repeats`` times; keep the fastest (wall, CPU) pair.
        CPU: this thread's, or the whole process's when ``threads``."""
        runs = []
        for _ in range(repeats):
            h.settle()
            cpu0, wall0 = (sum(os.times()[:2]) if threads else time.thread_time()), time.perf_counter()
            fn()
            wall = time.perf_counter() - wall0
            runs.append((wall, (sum(os.times()[:2]) if threads else time.thread_time()) - cpu0))
        rows.append((name, *min(runs)))

    def child(name: str, *commands: list[str]) -> None:
        """``commands`` started together; wall until the last ends, CPU of all of them."""
        def go() -> None:
            procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL) for c in commands]
            if any(p.wait() for p in procs):
                raise h.BenchError(f"{name} failed")
        runs = []
        for _ in range(repeats):
            h.settle()
            dest = os.path.join(env.workdir, "copy.bin")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)
            before, wall0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            go()
            wall, after = time.perf_counter() - wall0, resource.getrusage(resource.RUSAGE_CHILDREN)
            runs.append((wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime))
        rows.append((name, *min(runs)))

    fd = os.open(path, os.O_RDONLY)
    try:
        def populate() -> None:
            with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as m:
                for start in range(0, size, 2 * objects.CHUNK_MAX):
                    m.madvise(objects.MADV_POPULATE_READ, start, min(2 * objects.CHUNK_MAX, size - start))
        best("map the pages (MADV_POPULATE_READ)", populate)
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as m:
            m.madvise(objects.MADV_POPULATE_READ)
            view = memoryview(m)
            lengths: list[int] = []
            best("cut by content (pyfastcdc)", lambda: lengths.__setitem__(slice(None), objects.chunk_lengths(view)))
            offsets = [sum(lengths[:i]) for i in range(len(lengths))]
            best("hash the chunks (BLAKE3, one thread)",
                 lambda: [content_hash(view[o:o + n]) for o, n in zip(offsets, lengths)])

            def write(check) -> None:
                root = tempfile.mkdtemp(dir=env.workdir)
                store = LocalStore(root)
                for i, (o, n) in enumerate(zip(offsets, lengths)):
                    store.put_content(f"objects/{i:064x}", FileRange(fd, o, view[o:o + n]), check)
                shutil.rmtree(root)  # inside the timing: as cp's copy is removed before the next
            best("copy the chunks into a store (kernel copy)", lambda: write(None))
            best("... and hash each again where it landed", lambda: write(content_hash))
            view.release()

        def put() -> None:
            root = tempfile.mkdtemp(dir=env.workdir)
            with objects.ObjectWriter(LocalStore(root)) as writer, open(path, "rb") as f:
                writer.put_stream(f)
            shutil.rmtree(root)
        best("pipectl's put in-process (all threads)", put, threads=True)
    finally:
        os.close(fd)
    dest = os.path.join(env.workdir, "copy.bin")
    child("cp", ["cp", path, dest])
    child("b3sum", [h.B3SUM, "--no-names", path])
    child("cp | b3sum side by side (the floor)", ["cp", path, dest], [h.B3SUM, "--no-names", path])
    print(f"\n=== put of one {mib} MiB file: stages alone, best of {repeats} "
          f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}) ===")
    print(f"{'STAGE':48s} {'WALL':>8s} {'CPU':>8s} {'MB/s per CPU-s':>15s}")
    for name, wall, cpu in rows:
        print(f"{name:48s} {wall:7.2f}s {cpu:7.2f}s {size / 1e6 / max(cpu, 1e-9):15,.0f}")
    stages = sum(cpu for _, _, cpu in rows[:3]) + rows[4][2]  # map, cut, hash; copy and hash again
    floor_cpu = rows[-3][2] + rows[-2][2]
    cores = os.cpu_count() or 1
    print(f"pipectl's stages: {stages:.2f} CPU-s, so at best {stages / cores:.2f} s on {cores} cores "
          f"({size / 1e6 / (stages / cores):,.0f} MB/s, before the CLI starts); cp and b3sum: {floor_cpu:.2f} CPU-s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["latency", "put-big", "put-stages", "job", "incremental", "list"])
    parser.add_argument("--files", type=int, default=20_000, help="latency, list: files under /bulk (default 20,000)")
    parser.add_argument("--datums", type=int, default=1_000,
                        help="job, incremental: single-file datums (default 1,000)")
    parser.add_argument("--mib", type=int, default=256, help="put-big, put-stages: file size in MiB (default 256)")
    parser.add_argument("--store", choices=["local", "s3"], default="local")
    args = parser.parse_args(argv)
    h.compile_bytecode()
    top = tempfile.mkdtemp(prefix="pipectl-profile-")
    try:
        with (h.S3Env if args.store == "s3" else h.LocalEnv)(top) as env:
            if args.what == "latency":
                profile_latency(env, args.files)
            elif args.what == "list":
                profile_list(env, args.files)
            elif args.what == "job":
                profile_job(env, args.datums)
            elif args.what == "incremental":
                profile_incremental(env, args.datums)
            elif args.what == "put-stages":
                profile_put_stages(env, args.mib)
            else:
                profile_put_big(env, args.mib)
    finally:
        h.Background.stop_all()
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
