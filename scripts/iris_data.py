#!/usr/bin/env python3
"""Write the Iris data set that ships with scikit-learn as CSV files (no download).

Usage::

    python scripts/iris_data.py OUT_DIR [--new-dir DIR] [--new-files 2] [--new-rows 5] [--seed 7]

* ``OUT_DIR/iris.csv``: all 150 rows, header
  ``sepal_length,sepal_width,petal_length,petal_width,species`` (cm; species
  ``setosa``/``versicolor``/``virginica``) — the contents of the ``iris`` repo.
* with ``--new-dir``: ``test1.csv`` .. ``testN.csv``, unlabeled "new data" for
  the ``iris-new`` repo: the feature header plus ``--new-rows`` rows each,
  sampled without replacement (seeded, so always the same rows) from the set.

Needs scikit-learn, so run it with the stage environment's interpreter.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from sklearn.datasets import load_iris

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
LABEL = "species"


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    """Write ``rows`` under ``header`` to ``path`` (parent dirs created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_iris(out_dir: Path) -> Path:
    """Write the labeled data set to ``out_dir/iris.csv``; return that path."""
    iris = load_iris()
    rows = [[*map(float, x), iris.target_names[t]] for x, t in zip(iris.data, iris.target)]
    path = out_dir / "iris.csv"
    write_csv(path, FEATURES + [LABEL], rows)
    return path


def write_new_data(new_dir: Path, n_files: int, n_rows: int, seed: int) -> list[Path]:
    """Write ``n_files`` unlabeled CSVs of ``n_rows`` distinct sampled rows each.

    Raises ValueError if ``n_files * n_rows`` exceeds the 150 rows available.
    """
    data = load_iris().data
    if n_files * n_rows > len(data):
        raise ValueError(f"cannot sample {n_files} x {n_rows} distinct rows from {len(data)}")
    picks = np.random.RandomState(seed).choice(len(data), n_files * n_rows, replace=False)
    paths = []
    for i in range(n_files):
        path = new_dir / f"test{i + 1}.csv"
        chosen = picks[i * n_rows:(i + 1) * n_rows]
        write_csv(path, FEATURES, [[*map(float, data[j])] for j in chosen])
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="directory for iris.csv")
    parser.add_argument("--new-dir", type=Path, help="also write unlabeled test*.csv files here")
    parser.add_argument("--new-files", type=int, default=2, help="number of new-data files (default 2)")
    parser.add_argument("--new-rows", type=int, default=5, help="rows per new-data file (default 5)")
    parser.add_argument("--seed", type=int, default=7, help="sampling seed (default 7)")
    args = parser.parse_args(argv)
    print(f"wrote {write_iris(args.out_dir)}")
    if args.new_dir is not None:
        try:
            paths = write_new_data(args.new_dir, args.new_files, args.new_rows, args.seed)
        except ValueError as exc:
            parser.error(str(exc))
        for path in paths:
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
