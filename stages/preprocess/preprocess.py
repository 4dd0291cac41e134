#!/usr/bin/env python3
"""Preprocess stage: validate, clean, split and standardize the Iris data.

Input (``--input``, default ``/pfs/iris``): a directory of CSV files, searched
recursively (every ``*.csv``). A file either

* has a header row naming the columns ``sepal_length, sepal_width,
  petal_length, petal_width, species`` (any order, extra columns ignored;
  names match case-insensitively, with ``.``, ``-`` and spaces read as ``_``,
  so R's ``Sepal.Length`` works), or
* has no header (its first row is data): the columns are then read in that
  canonical order, as in the classic UCI / Pachyderm demo ``iris.csv``.

Species may be spelt ``setosa`` or ``Iris-setosa``. Feature units are cm.

Bad rows (wrong field count, missing, non-numeric or non-finite value,
unknown species) are dropped and reported. A file that is not UTF-8 text CSV,
lacks a required column or has no valid row is fatal: one-line error, exit 1.

Output (``--output``, default ``/pfs/out``):

* ``train.csv``, ``test.csv``: header ``<features...>,species``; features
  standardized with the train split's mean and std.
* ``scaler.json``: ``{"features": [...], "mean": [...], "std": [...]}``
  (population std, ddof=0; a zero std is stored as 1.0).
* ``report.json``: rows read / kept / dropped per file and by reason, a few
  dropped examples, split sizes per class, parameters.

Parameters: ``--test-fraction`` (env ``TEST_FRACTION``, default 0.2),
``--seed`` (env ``SEED``, default 42).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
LABEL = "species"
SPECIES = ("setosa", "versicolor", "virginica")
MAX_EXAMPLES = 20  # dropped rows quoted in report.json

log = logging.getLogger("preprocess")


class InputError(Exception):
    """The input cannot be used at all; the stage reports it and exits 1."""


class BadRow(Exception):
    """A data row to drop; ``str(exc)`` is the short reason key."""


@dataclass
class CleanData:
    """Valid rows of all input files plus what was dropped.

    ``features[i]`` holds the len(FEATURES) measurements (cm) of valid row i
    and ``labels[i]`` its species name.
    """

    features: list[list[float]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)
    examples: list[dict] = field(default_factory=list)


def normalize_name(name: str) -> str:
    """Return a column name in canonical form: ``"Sepal.Length "`` -> ``"sepal_length"``."""
    return re.sub(r"[\s.\-]+", "_", name.strip().lower())


def parse_number(text: str) -> float:
    """Parse one feature value; raise BadRow if missing, non-numeric or not finite."""
    if not text.strip():
        raise BadRow("missing_value")
    try:
        value = float(text)
    except ValueError:
        raise BadRow("non_numeric") from None
    if not math.isfinite(value):
        raise BadRow("non_finite")
    return value


def parse_species(text: str) -> str:
    """Return the canonical species name; raise BadRow if missing or unknown."""
    name = text.strip().lower()
    if not name:
        raise BadRow("missing_value")
    name = name.removeprefix("iris-")
    if name not in SPECIES:
        raise BadRow("unknown_label")
    return name


def is_data_row(fields: list[str]) -> bool:
    """True if the first ``len(FEATURES)`` fields are all numbers (a headerless file)."""
    try:
        [float(f) for f in fields[: len(FEATURES)]]
    except ValueError:
        return False
    return len(fields) >= len(FEATURES)


def column_positions(first_row: list[str], path: Path) -> tuple[list[int], int, bool]:
    """Find the columns to read from a file's first row.

    Returns (feature positions, label position, has_header). Raises InputError
    when a header lacks a required column.
    """
    if is_data_row(first_row):
        return list(range(len(FEATURES))), len(FEATURES), False
    names = [normalize_name(f) for f in first_row]
    missing = [c for c in FEATURES + [LABEL] if c not in names]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)} "
            f"(header is {','.join(first_row)!r}; expected {','.join(FEATURES + [LABEL])})"
        )
    return [names.index(c) for c in FEATURES], names.index(LABEL), True


def parse_row(fields: list[str], width: int, positions: list[int], label_pos: int) -> tuple[list[float], str]:
    """Return (features, species) of one data row; raise BadRow to drop it."""
    if len(fields) != width:
        raise BadRow("wrong_field_count")
    return [parse_number(fields[i]) for i in positions], parse_species(fields[label_pos])


def read_csv_file(path: Path, name: str, data: CleanData) -> None:
    """Append the valid rows of one CSV file to ``data`` and record its drops there.

    ``name`` is the path shown in reports. Raises InputError if the file is
    not readable as UTF-8 CSV, lacks a column, or has no valid row.
    """
    rows = kept = 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            positions = label_pos = width = None
            for fields in reader:
                if not any(f.strip() for f in fields):
                    continue  # blank line
                if positions is None:
                    positions, label_pos, has_header = column_positions(fields, path)
                    width = len(fields) if has_header else len(FEATURES) + 1
                    if has_header:
                        continue
                rows += 1
                try:
                    features, species = parse_row(fields, width, positions, label_pos)
                except BadRow as exc:
                    data.reasons[str(exc)] += 1
                    if len(data.examples) < MAX_EXAMPLES:
                        data.examples.append(
                            {"file": name, "line": reader.line_num, "reason": str(exc), "row": fields}
                        )
                    continue
                data.features.append(features)
                data.labels.append(species)
                kept += 1
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as exc:
        raise InputError(f"{path}: unparseable CSV: {exc}") from None
    if kept == 0:
        raise InputError(f"{path}: no valid data rows ({rows} read, {rows} dropped)")
    data.files.append({"file": name, "rows": rows, "kept": kept, "dropped": rows - kept})
    log.info("%s: %d rows read, %d kept, %d dropped", name, rows, kept, rows - kept)


def find_csv_files(root: Path) -> list[Path]:
    """Return every ``*.csv`` file under ``root`` (following symlinks), sorted."""
    if not root.is_dir():
        raise InputError(f"input directory {root} does not exist")
    found = [
        Path(d) / f
        for d, _, files in os.walk(root, followlinks=True)
        for f in files
        if f.lower().endswith(".csv")
    ]
    if not found:
        raise InputError(f"no *.csv files under {root}")
    return sorted(found)


def load_clean(root: Path) -> CleanData:
    """Read and clean every CSV under ``root``; see the module doc for the rules."""
    data = CleanData()
    for path in find_csv_files(root):
        read_csv_file(path, str(path.relative_to(root)), data)
    return data


def stratified_split(labels: list[str], test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into sorted (train, test) index arrays, per class.

    Each class is shuffled with a RandomState(seed) and ``round(n_class *
    test_fraction)`` of its rows go to test, always leaving at least one row of
    the class in train. Deterministic for the same labels, fraction and seed.
    """
    rng = np.random.RandomState(seed)
    labels_arr = np.asarray(labels)
    test: list[int] = []
    for cls in sorted(set(labels)):
        idx = np.flatnonzero(labels_arr == cls)
        rng.shuffle(idx)
        n_test = min(int(round(len(idx) * test_fraction)), len(idx) - 1)
        test.extend(idx[:n_test].tolist())
    test_idx = np.array(sorted(test), dtype=int)
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def fit_scaler(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return per-column (mean, std) of ``x`` (n_rows, n_features); a zero std becomes 1.0."""
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    for name, s in zip(FEATURES, std):
        if s == 0:
            log.warning("feature %s is constant in the train split; its std is set to 1", name)
    return mean, np.where(std == 0, 1.0, std)


def write_split(path: Path, x: np.ndarray, y: list[str]) -> None:
    """Write standardized rows ``x`` (n, n_features) and labels ``y`` as CSV with a header."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(FEATURES + [LABEL])
        for row, label in zip(x.tolist(), y):
            writer.writerow(row + [label])


def run(input_dir: Path, output_dir: Path, test_fraction: float, seed: int) -> dict:
    """Run the stage; return the report also written to ``report.json``."""
    data = load_clean(input_dir)
    train_idx, test_idx = stratified_split(data.labels, test_fraction, seed)
    if len(test_idx) == 0:
        raise InputError(
            f"too few valid rows ({len(data.labels)}) for a test split at test fraction {test_fraction}"
        )
    x = np.asarray(data.features, dtype=np.float64)
    mean, std = fit_scaler(x[train_idx])
    scaled = (x - mean) / std
    labels = np.asarray(data.labels)

    output_dir.mkdir(parents=True, exist_ok=True)
    write_split(output_dir / "train.csv", scaled[train_idx], labels[train_idx].tolist())
    write_split(output_dir / "test.csv", scaled[test_idx], labels[test_idx].tolist())
    scaler = {"features": FEATURES, "mean": mean.tolist(), "std": std.tolist()}
    (output_dir / "scaler.json").write_text(json.dumps(scaler, indent=2) + "\n")

    rows_read = sum(f["rows"] for f in data.files)
    report = {
        "files": data.files,
        "rows_read": rows_read,
        "rows_kept": len(labels),
        "rows_dropped": rows_read - len(labels),
        "drop_reasons": dict(sorted(data.reasons.items())),
        "dropped_examples": data.examples,
        "n_train": len(train_idx),
        "n_test": len(test_idx),
        "train_class_counts": dict(sorted(Counter(labels[train_idx].tolist()).items())),
        "test_class_counts": dict(sorted(Counter(labels[test_idx].tolist()).items())),
        "test_fraction": test_fraction,
        "seed": seed,
    }
    (output_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info(
        "%d rows read, %d kept, %d dropped %s; train %d, test %d (fraction %g, seed %d)",
        rows_read, len(labels), report["rows_dropped"], report["drop_reasons"],
        len(train_idx), len(test_idx), test_fraction, seed,
    )
    return report


def fraction(text: str) -> float:
    """argparse type: a float strictly between 0 and 1."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"test fraction must be between 0 and 1, got {text}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line; defaults come from the environment where noted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=Path("/pfs/iris"), help="input dir of CSV files")
    parser.add_argument("--output", type=Path, default=Path("/pfs/out"), help="output dir")
    parser.add_argument("--test-fraction", type=fraction, default=os.environ.get("TEST_FRACTION", "0.2"),
                        help="share of each class held out for test (env TEST_FRACTION, default 0.2)")
    parser.add_argument("--seed", type=int, default=os.environ.get("SEED", "42"),
                        help="split seed (env SEED, default 42)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 1 bad input)."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    for var in ("PACH_JOB_ID", "PACH_DATUM_ID", "PACH_OUTPUT_COMMIT_ID"):
        if var in os.environ:
            log.info("%s=%s", var, os.environ[var])
    try:
        run(args.input, args.output, args.test_fraction, args.seed)
    except InputError as exc:
        log.error("error: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
