#!/usr/bin/env python3
"""LEARN stage: train and evaluate a speaker classifier on MFCC features.

Pipeline transform (specs/audio/learn.json, input repo ``extract``, glob "/",
so the one datum sees every speaker)::

    python3 learn.py --input /pfs/extract --output /pfs/out

Input: ``<input>/<speaker>/<clip>.npy``, float32 MFCC matrices of shape
``(n_mfcc, n_frames)`` written by the EXTRACT stage, plus its
``<speaker>/mfcc_params.json`` (copied into metrics.json; all speakers must
have been extracted with the same parameters).  The class of a clip is the
name of its folder.

Features: each clip becomes one fixed-length vector of ``4 * n_mfcc`` values,
the mean and standard deviation over time of the MFCCs and of their
first-order frame-to-frame differences (a simple "delta" feature).
Averaging over time discards what was said and keeps how the voice sounds,
the classic MFCC-statistics approach to text-independent speaker
recognition.

Model: scikit-learn ``Pipeline(StandardScaler(), LogisticRegression(C=C))``
(multinomial, lbfgs), or an RBF-kernel ``SVC`` with MODEL=svm.
Evaluation: a stratified hold-out split (``train_test_split(...,
stratify=speaker, random_state=SEED)``): each speaker keeps the same share of
clips in the test set.  Everything is seeded and the input files are read in
sorted order, so a rerun gives the same model and metrics.

Parameters (env vars, else default):

    TEST_FRACTION  0.25    share of each speaker's clips held out
    SEED           0       random_state of the split (and the SVM)
    MODEL          logreg  "logreg" or "svm"
    C              1.0     inverse regularisation strength

Output:

* ``model.joblib``: the fitted sklearn Pipeline (joblib pickle; load it
  with the same scikit-learn version, 1.3.2) trained on the training split;
  ``model.classes_`` are the speaker names.
* ``metrics.json``: held-out accuracy, chance level (1 / n_speakers),
  majority-class baseline, training accuracy, confusion matrix (rows = true
  speaker, columns = predicted, both in ``class_names`` order), per-speaker
  recall, clip counts, parameters and library versions.

Errors (one line on stderr, exit 1, no traceback): no features, fewer than 2
speakers, a speaker with too few clips for the split, an unreadable or
malformed .npy file (named), inconsistent extract parameters.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC


class LearnError(Exception):
    """A failure that ends the datum with a one-line message."""


def log(message: str) -> None:
    print(f"learn: {message}", flush=True)


def summarize(mfcc: np.ndarray) -> np.ndarray:
    """(n_mfcc, n_frames) MFCCs -> (4 * n_mfcc,) mean/std of MFCCs and deltas."""
    delta = np.diff(mfcc, axis=1) if mfcc.shape[1] > 1 else np.zeros_like(mfcc)
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1),
                           delta.mean(axis=1), delta.std(axis=1)])


def load_features(root: Path) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """Read every ``<speaker>/<clip>.npy`` under ``root``.

    Returns (X of shape (n_clips, 4 * n_mfcc), speaker label per clip,
    clip paths relative to root, the extract parameters).
    """
    files = sorted(p for p in root.rglob("*.npy") if p.is_file())
    if not files:
        raise LearnError(f"no .npy feature files under {root}")
    rows, labels, names = [], [], []
    for path in files:
        rel = path.relative_to(root)
        try:
            mfcc = np.load(path, allow_pickle=False)
        except Exception as exc:  # ValueError / OSError / EOFError from numpy
            raise LearnError(f"{rel}: unreadable .npy file ({' '.join(str(exc).split())})") from None
        if mfcc.ndim != 2 or mfcc.shape[1] == 0 or not np.isfinite(mfcc).all():
            raise LearnError(f"{rel}: expected a finite (n_mfcc, n_frames) array, "
                             f"got shape {mfcc.shape}")
        if rows and mfcc.shape[0] * 4 != rows[0].size:
            raise LearnError(f"{rel}: has {mfcc.shape[0]} coefficients, "
                             f"{names[0]} has {rows[0].size // 4}")
        rows.append(summarize(mfcc.astype(np.float64)))
        labels.append(path.parent.name)
        names.append(str(rel))
    return np.stack(rows), np.array(labels), names, extract_params(root)


def extract_params(root: Path) -> dict:
    """The EXTRACT parameters shared by all speakers ({} if none recorded)."""
    seen = {}
    for manifest in sorted(root.rglob("mfcc_params.json")):
        try:
            params = json.loads(manifest.read_text())["params"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LearnError(f"{manifest.relative_to(root)}: unreadable ({exc})") from None
        seen[str(manifest.relative_to(root))] = params
    distinct = {json.dumps(p, sort_keys=True) for p in seen.values()}
    if len(distinct) > 1:
        raise LearnError("speakers were extracted with different parameters: "
                         + ", ".join(sorted(seen)))
    return next(iter(seen.values()), {})


def read_settings() -> dict:
    """Env settings, validated; LearnError if invalid."""
    try:
        settings = {"TEST_FRACTION": float(os.environ.get("TEST_FRACTION", "0.25")),
                    "SEED": int(os.environ.get("SEED", "0")),
                    "MODEL": os.environ.get("MODEL", "logreg"),
                    "C": float(os.environ.get("C", "1.0"))}
    except ValueError as exc:
        raise LearnError(f"bad setting: {exc}") from None
    if not 0 < settings["TEST_FRACTION"] < 1:
        raise LearnError("TEST_FRACTION must be between 0 and 1")
    if settings["MODEL"] not in ("logreg", "svm") or settings["C"] <= 0:
        raise LearnError("MODEL must be 'logreg' or 'svm' and C must be > 0")
    return settings


def train(X: np.ndarray, y: np.ndarray, settings: dict, extract: dict) -> tuple:
    """Split, fit, evaluate.  Returns (fitted pipeline, metrics dict)."""
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise LearnError(f"need at least 2 speakers, found {len(classes)}")
    n_test = int(np.ceil(settings["TEST_FRACTION"] * len(y)))
    if counts.min() < 2 or n_test < len(classes) or len(y) - n_test < len(classes):
        raise LearnError(f"too few clips for a stratified split ({dict(zip(classes, counts.tolist()))}, "
                         f"TEST_FRACTION={settings['TEST_FRACTION']})")
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=settings["TEST_FRACTION"], stratify=y,
        random_state=settings["SEED"])
    classifier = (LogisticRegression(C=settings["C"], max_iter=5000)
                  if settings["MODEL"] == "logreg"
                  else SVC(C=settings["C"], random_state=settings["SEED"]))
    model = make_pipeline(StandardScaler(), classifier).fit(X_train, y_train)
    predicted = model.predict(X_test)
    matrix = confusion_matrix(y_test, predicted, labels=classes)
    metrics = {
        "task": "speaker identification from MFCC statistics",
        "accuracy": accuracy_score(y_test, predicted),
        "chance_accuracy": 1 / len(classes),
        "majority_baseline_accuracy": float(np.bincount(
            np.searchsorted(classes, y_test)).max() / len(y_test)),
        "train_accuracy": accuracy_score(y_train, model.predict(X_train)),
        "n_speakers": len(classes),
        "n_clips": len(y), "n_train": len(y_train), "n_test": len(y_test),
        "class_names": classes.tolist(),
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_axes": "rows = true speaker, columns = predicted speaker",
        "per_speaker_recall": {c: float(matrix[i, i] / max(1, matrix[i].sum()))
                               for i, c in enumerate(classes)},
        "clips_per_speaker": dict(zip(classes.tolist(), counts.tolist())),
        "features": f"mean+std over time of MFCCs and their frame deltas, "
                    f"{X.shape[1]} values per clip, standardized",
        "settings": settings,
        "extract_params": extract,
        "versions": {"numpy": np.__version__, "scikit-learn": sklearn.__version__},
    }
    return model, metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a speaker classifier on "
                                     "MFCC features; write model + metrics.json.")
    parser.add_argument("--input", type=Path, default=Path("/pfs/extract"))
    parser.add_argument("--output", type=Path, default=Path("/pfs/out"))
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        settings = read_settings()
        if not args.input.is_dir():
            raise LearnError(f"input directory {args.input} does not exist")
        X, y, _, extract = load_features(args.input)
        log(f"loaded {len(y)} clips of {len(set(y))} speakers, features {X.shape}")
        model, metrics = train(X, y, settings, extract)
        args.output.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, args.output / "model.joblib")
        (args.output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    except LearnError as exc:
        print(f"learn: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"learn: error: I/O error: {exc}", file=sys.stderr)
        return 1
    log(f"{settings['MODEL']}: held-out accuracy {metrics['accuracy']:.3f} on "
        f"{metrics['n_test']} clips (chance {metrics['chance_accuracy']:.3f}, "
        f"train {metrics['train_accuracy']:.3f}, trained on {metrics['n_train']})")
    for name, row in zip(metrics["class_names"], metrics["confusion_matrix"]):
        log(f"  {name:>12} {row}")
    log(f"wrote model.joblib and metrics.json to {args.output} in "
        f"{time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
