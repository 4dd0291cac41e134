"""``python -m benchmarks.run [--quick] [--stores local,s3,s3-moto] [--json PATH]``

Runs the workloads of :mod:`benchmarks.workloads` on each store (the local
directory store; ``s3``: S3 on versitygw, and ``s3-moto``: on moto, each
server started by this command on an ephemeral loopback port and stopped
at the end), prints one aligned table on stdout and
writes the same figures to a JSON file (default ``bench-results.json``).
Progress goes to stderr. pipectl's bytecode is compiled first
(:func:`~benchmarks.harness.compile_bytecode`), so its start-up is measured
as an installed package starts. Scratch data lives in a temporary directory
that is removed at the end, and every process started is stopped.

Exit status: 0 when every workload ran (targets missed are reported, not
errors), 1 when a workload failed (its row says why).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

from pipectl.testing import s3servers

from . import harness as h
from .report import FOOTER, Row, table, write_json
from .workloads import SIZES, WORKLOADS, Context, controller_poll_interval

STORES = {"local": h.LocalEnv, "s3": h.S3Env, "s3-moto": h.MotoS3Env}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], check=False, capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__)), timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="Small sizes (a few minutes in all).")
    parser.add_argument("--stores", default="local,s3,s3-moto",
                        help="Comma-separated: local, s3 (versitygw), s3-moto (default all three).")
    parser.add_argument("--json", default="bench-results.json", metavar="PATH",
                        help="Where to write the figures as JSON (default bench-results.json).")
    parser.add_argument("--workloads", default="0,1,2,3,4,5,6,7,8,9,10,11,12,13",
                        help="Comma-separated workload numbers to run (default all).")
    parser.add_argument("--moto-workloads", default="1", metavar="LIST",
                        help="Of those, the ones also run on s3-moto (default 1: the small-file puts, "
                             "whose S3 figures are the server's; 'all' for every one).")
    args = parser.parse_args(argv)
    stores = [x.strip() for x in args.stores.split(",") if x.strip()]
    bad = [x for x in stores if x not in STORES]
    if bad or not stores:
        parser.error(f"unknown store(s) {', '.join(bad) or '(none)'}; choose from {', '.join(STORES)}")
    if "s3" in stores and s3servers.versitygw_binary() is None:
        parser.error("store s3 needs versitygw: run `make versitygw` (or leave s3 out of --stores)")
    selected = {x.strip() for x in args.workloads.split(",") if x.strip()}
    on_moto = selected if args.moto_workloads == "all" else \
        selected & {x.strip() for x in args.moto_workloads.split(",") if x.strip()}
    mode = "quick" if args.quick else "full"

    signal.signal(signal.SIGTERM, _sigterm)
    h.compile_bytecode()
    started, began = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
    load_start = os.getloadavg()
    rows: list[Row] = []
    timings: dict[str, float] = {}
    failed = False
    top = tempfile.mkdtemp(prefix="pipectl-bench-")
    h.log(f"mode {mode}, stores {', '.join(stores)}, scratch {top}")
    try:
        for name in stores:
            workdir = os.path.join(top, name)
            os.makedirs(workdir)
            store_began = time.perf_counter()
            with STORES[name](workdir) as env:
                ctx = Context(env, SIZES[(mode, name)], mode, SIZES[(mode, "local")])
                for numbers, fn in WORKLOADS:
                    if not numbers & (on_moto if name == "s3-moto" else selected):
                        continue
                    fn_began = time.perf_counter()
                    try:
                        rows.extend(fn(ctx))
                    except Exception as e:  # noqa: BLE001  (report it in the table, then go on)
                        failed = True
                        h.log(f"{name}: {fn.__name__} FAILED: {e}")
                        traceback.print_exc(file=sys.stderr)
                        rows.append(Row(name, f"{'/'.join(sorted(numbers))} {fn.__name__}", None, "",
                                        compare=False, notes=f"FAILED: {str(e).splitlines()[0][:200]}"))
                    elapsed = time.perf_counter() - fn_began
                    timings[f"{name}/{fn.__name__}"] = round(elapsed, 1)
                    h.log(f"{name}: {fn.__name__} took {elapsed:.0f} s")
            cleanup = time.perf_counter()
            shutil.rmtree(workdir, ignore_errors=True)
            timings[f"{name}/cleanup"] = round(time.perf_counter() - cleanup, 1)
            h.log(f"{name}: done in {time.perf_counter() - store_began:.0f} s")
    except KeyboardInterrupt:
        h.log("interrupted; stopping processes and cleaning up")
        failed = True
    finally:
        h.Background.stop_all()
        shutil.rmtree(top, ignore_errors=True)

    duration = time.perf_counter() - began
    load_end = os.getloadavg()
    try:
        poll = controller_poll_interval()
    except Exception:  # noqa: BLE001
        poll = None
    meta = {
        "mode": mode, "stores": stores, "started": started, "duration_seconds": round(duration, 1),
        "nproc": os.cpu_count(), "loadavg_start": load_start, "loadavg_end": load_end,
        "python": platform.python_version(), "platform": platform.platform(),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "controller_poll_interval_seconds": poll, "workload_seconds": timings, "pipectl_command": h.PIPECTL,
        "sizes": {s: vars(SIZES[(mode, s)]) for s in stores},
        "units": "files/s, MB/s (10^6 bytes/s), datums/s: higher is better; s, ms: lower is better",
    }
    footer = [
        FOOTER,
        ("Stats: best of N for throughputs and one-shot times, median of N for latencies and repeated jobs "
         "(as marked). Target MET/MISSED is judged on pipectl's figure."),
        (f"Mode {mode}; nproc={os.cpu_count()}; load average {load_start[0]:.1f} at start, "
         f"{load_end[0]:.1f} at end (a shared machine: figures are noisy, ratios less so); "
         f"total runtime {duration:.0f} s."),
    ]
    print(table(rows, footer))
    if args.json:
        write_json(args.json, rows, meta)
        h.log(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
