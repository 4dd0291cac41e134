"""pipectl benchmarks: every figure beside a baseline measured in the same run.

Run ``python -m benchmarks.run [--quick] [--stores local,s3,s3-moto] [--json PATH]``
(``make bench`` / ``make bench-full``). Each workload runs on the local
directory store and on S3: versitygw (``s3``) started by the harness on a
loopback port (one fresh bucket per store), and, for the small-file puts
whose S3 figures are the server's, moto's server beside it (``s3-moto``);
it prints one aligned table; the same figures go to a JSON file (default
``bench-results.json``).

Modules:

- :mod:`benchmarks.harness`: timed subprocesses (wall seconds; peak RSS
  through GNU time where asked), background processes, store environments
  (their S3 servers come from :mod:`pipectl.testing.s3servers`) and test data;
- :mod:`benchmarks.workloads`: the workloads (put-file, dedupe, jobs,
  incremental jobs, trigger latency, listing, serving hook);
- :mod:`benchmarks.scale`: workloads 12 and 13, put-file and listing at
  100,000 and 1,000,000 files (local store only);
- :mod:`benchmarks.report`: result rows, the table and the JSON file;
- :mod:`benchmarks.run`: the command line;
- :mod:`benchmarks.profile`: pyinstrument profiles of the slow paths
  (``python -m benchmarks.profile latency|job|incremental|list|put-big``), and
  the stages of a big put beside ``cp`` and ``b3sum`` (``put-stages``).

Ratios are oriented so that a ratio above 1 means pipectl did better than the
baseline (baseline time / pipectl time, or pipectl rate / baseline rate).
"""
