#!/usr/bin/env python3
"""Inference stage: predict the species of every row of every new-data CSV.

Inputs: ``--model`` (default ``/pfs/train``), a model directory written by the
train stage (see ``iris_model``); ``--input`` (default ``/pfs/iris-new``), a
directory searched recursively for ``*.csv`` (with the spec's ``/*`` glob it
holds one file per datum).

Output (``--output``, default ``/pfs/out``): for each input CSV, a file with
the same relative path holding one predicted species name per input data row,
in row order, no header, nothing else — as in Pachyderm's Iris demo::

    setosa
    virginica

Input CSV format: either a header row naming at least the model's features
(any order, case-insensitive; other columns such as ``species`` are ignored)
or no header and exactly the feature columns in model order (cm). Blank lines
are skipped; a file with no data rows gives an empty output file. Since output
lines map 1:1 to input rows, any malformed row (wrong field count, missing,
non-numeric or non-finite value) is an error: the stage names file and line
and exits 1. All files are checked before any output is written.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import re
import sys
from pathlib import Path

import iris_model
import numpy as np

log = logging.getLogger("inference")


class InputError(Exception):
    """The input cannot be used; the stage reports it and exits 1."""


def normalize_name(name: str) -> str:
    """Return a column name in canonical form: ``"Sepal.Length "`` -> ``"sepal_length"``."""
    return re.sub(r"[\s.\-]+", "_", name.strip().lower())


def parse_value(text: str, where: str, column: str) -> float:
    """Parse one feature value; raise InputError naming ``where`` and ``column`` if bad."""
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: {column}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: {column}: {text!r} is not a finite number")
    return value


def header_positions(first_row: list[str], features: tuple[str, ...], path: Path) -> list[int] | None:
    """Return the feature column positions named by a header row, or None if it is a data row.

    A row whose fields all parse as numbers is data. Raises InputError if a
    header lacks a feature.
    """
    try:
        [float(f) for f in first_row]
        return None
    except ValueError:
        pass
    names = [normalize_name(f) for f in first_row]
    missing = [f for f in features if f not in names]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (header is {','.join(first_row)!r})")
    return [names.index(f) for f in features]


def read_features(path: Path, features: tuple[str, ...]) -> np.ndarray:
    """Read a new-data CSV into float64 of shape (n_rows, len(features)), in model column order.

    Raises InputError if the file is not UTF-8 CSV, a header lacks a feature,
    or any row is malformed (the message names the file and line).
    """
    rows: list[list[float]] = []
    positions = width = None
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            for fields in reader:
                if not any(f.strip() for f in fields):
                    continue
                if width is None:
                    width = len(fields)
                    positions = header_positions(fields, features, path)
                    if positions is not None:
                        continue
                    positions = list(range(len(features)))
                    width = len(features)
                where = f"{path}: line {reader.line_num}"
                if len(fields) != width:
                    raise InputError(f"{where}: {len(fields)} fields, expected {width}")
                rows.append([parse_value(fields[i], where, name) for i, name in zip(positions, features)])
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as exc:
        raise InputError(f"{path}: unparseable CSV: {exc}") from None
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(features))


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


def run(model_dir: Path, input_dir: Path, output_dir: Path) -> dict[str, list[str]]:
    """Predict every CSV under ``input_dir``; return {relative path: predicted names}."""
    try:
        model = iris_model.load(model_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(f"cannot load model: {exc}") from None
    inputs = {str(p.relative_to(input_dir)): read_features(p, model.features) for p in find_csv_files(input_dir)}
    results = {}
    for name, x in inputs.items():
        predictions = model.predict(x)
        target = output_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(p + "\n" for p in predictions))
        counts = {c: predictions.count(c) for c in model.classes if c in predictions}
        log.info("%s: %d rows -> %s %s", name, len(predictions), target, counts)
        if not predictions:
            log.warning("%s: no data rows; wrote an empty file", name)
        results[name] = predictions
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("/pfs/train"), help="model dir (train output)")
    parser.add_argument("--input", type=Path, default=Path("/pfs/iris-new"), help="dir of new-data CSVs")
    parser.add_argument("--output", type=Path, default=Path("/pfs/out"), help="output dir")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 1 bad input)."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    for var in ("PACH_JOB_ID", "PACH_DATUM_ID", "PACH_OUTPUT_COMMIT_ID"):
        if var in os.environ:
            log.info("%s=%s", var, os.environ[var])
    try:
        run(args.model, args.input, args.output)
    except InputError as exc:
        log.error("error: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
