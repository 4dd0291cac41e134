#!/usr/bin/env python3
"""Train stage: fit a small MXNet Gluon MLP on the preprocessed Iris data.

Input (``--input``, default ``/pfs/preprocess``): the preprocess stage's
``train.csv``, ``test.csv`` (standardized features + ``species`` column, with
header) and ``scaler.json``.

Output (``--output``, default ``/pfs/out``), a self-contained model directory:

* ``model-symbol.json``, ``model-0000.params``: the hybridized network from
  ``net.export("model", 0)``. Input ``data``: float32 (n_rows, n_features)
  of *standardized* features; output: (n_rows, n_classes) logits.
* ``classes.json``: class names in output-index order (sorted species names).
* ``features.json``: feature names in input-column order.
* ``scaler.json``: copied from the input; rows are fed as (x - mean) / std.
* ``metrics.json``: held-out test accuracy, confusion matrix (rows = true,
  columns = predicted, in ``classes`` order), scikit-learn per-class report,
  train accuracy, final train loss, n_train, n_test and all hyper-parameters.

Training is deterministic for a given seed: MXNet, NumPy and Python RNGs are
seeded and minibatch order comes from a seeded RandomState.

Parameters (flag, env var, default): ``--epochs`` EPOCHS 50,
``--learning-rate`` LEARNING_RATE 0.01 (Adam), ``--weight-decay``
WEIGHT_DECAY 0.01, ``--batch-size`` BATCH_SIZE 16, ``--hidden-units``
HIDDEN_UNITS 32 (one ReLU layer), ``--seed`` SEED 42.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

LABEL = "species"
MODEL_PREFIX = "model"  # -> model-symbol.json, model-0000.params

log = logging.getLogger("train")


class InputError(Exception):
    """The input cannot be used; the stage reports it and exits 1."""


def read_json(path: Path):
    """Return the parsed JSON file at ``path``; raise InputError if missing or invalid."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path} not found (is the input the preprocess stage's output?)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: invalid JSON: {exc}") from None


def read_split(path: Path, features: list[str]) -> tuple[np.ndarray, list[str]]:
    """Read a preprocess split CSV.

    Returns (x, labels): x is float32 of shape (n_rows, len(features)), labels
    the n_rows class names. The header must be ``features + ["species"]``.
    Raises InputError on a missing file, other header, or any bad row (the
    file is machine-written, so nothing is silently dropped), or no rows.
    """
    expected = features + [LABEL]
    xs, labels = [], []
    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header != expected:
                raise InputError(f"{path}: header is {header}, expected {expected}")
            for fields in reader:
                if len(fields) != len(expected):
                    raise InputError(f"{path}: line {reader.line_num}: {len(fields)} fields, expected {len(expected)}")
                try:
                    row = [float(v) for v in fields[:-1]]
                except ValueError:
                    raise InputError(f"{path}: line {reader.line_num}: non-numeric feature value") from None
                if not all(math.isfinite(v) for v in row) or not fields[-1]:
                    raise InputError(f"{path}: line {reader.line_num}: non-finite value or empty label")
                xs.append(row)
                labels.append(fields[-1])
    except FileNotFoundError:
        raise InputError(f"{path} not found (is the input the preprocess stage's output?)") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: unreadable CSV: {exc}") from None
    if not xs:
        raise InputError(f"{path}: no data rows")
    return np.asarray(xs, dtype=np.float32), labels


def build_net(hidden_units: int, n_classes: int) -> gluon.nn.HybridSequential:
    """Return an initialized, hybridized MLP: Dense(hidden_units, relu) -> Dense(n_classes) logits."""
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(hidden_units, activation="relu"), gluon.nn.Dense(n_classes))
    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    net.hybridize()
    return net


def fit(net: gluon.HybridBlock, x: np.ndarray, y: np.ndarray, epochs: int,
        learning_rate: float, weight_decay: float, batch_size: int, seed: int) -> float:
    """Train ``net`` with Adam (L2 ``weight_decay``) on softmax cross-entropy.

    Returns the last epoch's mean per-row loss.
    ``x``: float32 (n_rows, n_features); ``y``: class indices (n_rows,).
    Minibatches are drawn in an order fixed by ``seed``.
    """
    trainer = gluon.Trainer(net.collect_params(), "adam",
                            {"learning_rate": learning_rate, "wd": weight_decay})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    rng = np.random.RandomState(seed)
    mean_loss = float("nan")
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x))
        total = mx.nd.zeros(1)
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            data, label = mx.nd.array(x[batch]), mx.nd.array(y[batch])
            with autograd.record():
                loss = loss_fn(net(data), label)
            loss.backward()
            trainer.step(len(batch))
            total += loss.sum()
        mean_loss = float(total.asscalar()) / len(x)
        if epoch == 1 or epoch % 20 == 0 or epoch == epochs:
            log.info("epoch %d/%d: mean train loss %.4f", epoch, epochs, mean_loss)
    return mean_loss


def predict(net: gluon.HybridBlock, x: np.ndarray) -> np.ndarray:
    """Return predicted class indices (n_rows,) for float32 features ``x`` (n_rows, n_features)."""
    return net(mx.nd.array(x)).argmax(axis=1).asnumpy().astype(int)


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """Return accuracy, confusion matrix and per-class report for class-index arrays."""
    labels = list(range(len(classes)))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classification_report": classification_report(
            y_true, y_pred, labels=labels, target_names=classes, output_dict=True, zero_division=0
        ),
    }


def seed_everything(seed: int) -> None:
    """Seed the Python, NumPy and MXNet random generators."""
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as indented JSON."""
    path.write_text(json.dumps(obj, indent=2) + "\n")


def run(input_dir: Path, output_dir: Path, epochs: int = 50, learning_rate: float = 0.01,
        weight_decay: float = 0.01, batch_size: int = 16, hidden_units: int = 32, seed: int = 42) -> dict:
    """Train, evaluate and export the model; return the metrics written to ``metrics.json``."""
    scaler = read_json(input_dir / "scaler.json")
    features = scaler.get("features") if isinstance(scaler, dict) else None
    if not isinstance(features, list) or not features:
        raise InputError(f"{input_dir / 'scaler.json'}: no 'features' list")
    x_train, labels_train = read_split(input_dir / "train.csv", features)
    x_test, labels_test = read_split(input_dir / "test.csv", features)
    classes = sorted(set(labels_train) | set(labels_test))
    if len(classes) < 2:
        raise InputError(f"need at least 2 classes to train, found {classes}")
    index = {name: i for i, name in enumerate(classes)}
    y_train = np.array([index[c] for c in labels_train])
    y_test = np.array([index[c] for c in labels_test])
    log.info("train %d rows, test %d rows, features %s, classes %s",
             len(y_train), len(y_test), features, classes)

    seed_everything(seed)
    net = build_net(hidden_units, len(classes))
    started = time.monotonic()
    final_loss = fit(net, x_train, y_train, epochs, learning_rate, weight_decay, batch_size, seed)
    log.info("trained %d epochs in %.2f s", epochs, time.monotonic() - started)

    metrics = evaluate(y_test, predict(net, x_test), classes)
    metrics.update({
        "train_accuracy": float(accuracy_score(y_train, predict(net, x_train))),
        "final_train_loss": round(final_loss, 6),
        "classes": classes,
        "features": features,
        "n_train": len(y_train),
        "n_test": len(y_test),
        "epochs": epochs,
        "learning_rate": learning_rate,
        "weight_decay": weight_decay,
        "batch_size": batch_size,
        "hidden_units": hidden_units,
        "seed": seed,
    })

    output_dir.mkdir(parents=True, exist_ok=True)
    net.export(str(output_dir / MODEL_PREFIX), epoch=0)
    write_json(output_dir / "classes.json", classes)
    write_json(output_dir / "features.json", features)
    shutil.copyfile(input_dir / "scaler.json", output_dir / "scaler.json")
    write_json(output_dir / "metrics.json", metrics)
    log.info("test accuracy %.4f (train %.4f); confusion matrix %s",
             metrics["accuracy"], metrics["train_accuracy"], metrics["confusion_matrix"])
    return metrics


def positive(kind):
    """Return an argparse type converting with ``kind`` and requiring a value > 0."""
    def convert(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return convert


def non_negative_float(text: str) -> float:
    """argparse type: a float >= 0."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line; defaults come from the environment where noted."""
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=Path("/pfs/preprocess"), help="preprocess output dir")
    parser.add_argument("--output", type=Path, default=Path("/pfs/out"), help="model output dir")
    parser.add_argument("--epochs", type=positive(int), default=env("EPOCHS", "50"), help="env EPOCHS, default 50")
    parser.add_argument("--learning-rate", type=positive(float), default=env("LEARNING_RATE", "0.01"),
                        help="Adam learning rate (env LEARNING_RATE, default 0.01)")
    parser.add_argument("--weight-decay", type=non_negative_float, default=env("WEIGHT_DECAY", "0.01"),
                        help="L2 weight decay (env WEIGHT_DECAY, default 0.01)")
    parser.add_argument("--batch-size", type=positive(int), default=env("BATCH_SIZE", "16"),
                        help="env BATCH_SIZE, default 16")
    parser.add_argument("--hidden-units", type=positive(int), default=env("HIDDEN_UNITS", "32"),
                        help="hidden layer units (env HIDDEN_UNITS, default 32)")
    parser.add_argument("--seed", type=int, default=env("SEED", "42"), help="env SEED, default 42")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 1 bad input)."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    for var in ("PACH_JOB_ID", "PACH_DATUM_ID", "PACH_OUTPUT_COMMIT_ID"):
        if var in os.environ:
            log.info("%s=%s", var, os.environ[var])
    try:
        run(args.input, args.output, args.epochs, args.learning_rate, args.weight_decay,
            args.batch_size, args.hidden_units, args.seed)
    except InputError as exc:
        log.error("error: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
