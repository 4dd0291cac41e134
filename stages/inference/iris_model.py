"""Load an exported Iris classifier and predict species from raw measurements.

A model directory (the train stage's output, e.g. ``/pfs/train``) holds:

* ``model-symbol.json``, ``model-0000.params``: the network exported with
  ``HybridBlock.export("model", 0)``; input ``data`` float32 of shape
  (n_rows, n_features), standardized; output (n_rows, n_classes) logits.
* ``features.json``: feature names, the column order of a raw row.
* ``classes.json``: the class name of each network output index.
* ``scaler.json``: ``{"features", "mean", "std"}``; a raw row ``x`` is fed
  to the network as ``(x - mean) / std``.

Example::

    import iris_model
    model = iris_model.load("/pfs/train")
    model.predict([[5.1, 3.5, 1.4, 0.2]])         # -> ["setosa"]
    model.predict_proba([[5.1, 3.5, 1.4, 0.2]])   # -> array of shape (1, 3)

Needs numpy and mxnet (the stage environment), never the platform core.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import mxnet as mx
import numpy as np

SYMBOL_FILE = "model-symbol.json"
PARAMS_FILE = "model-0000.params"
FEATURES_FILE = "features.json"
CLASSES_FILE = "classes.json"
SCALER_FILE = "scaler.json"
INPUT_NAME = "data"


class IrisModel:
    """A loaded classifier; build it with :func:`load`.

    Attributes: ``features`` (tuple of feature names, the expected column
    order of raw rows, in cm) and ``classes`` (tuple of class names, the
    column order of :meth:`predict_proba`). Safe to call from several threads:
    network calls are serialized by a lock.
    """

    def __init__(self, net: mx.gluon.SymbolBlock, features: Sequence[str], classes: Sequence[str],
                 mean: Sequence[float], std: Sequence[float]):
        self.features = tuple(features)
        self.classes = tuple(classes)
        self._net = net
        self._mean = np.asarray(mean, dtype=np.float64)
        self._std = np.asarray(std, dtype=np.float64)
        self._lock = threading.Lock()

    def _as_matrix(self, rows) -> np.ndarray:
        """Return ``rows`` as float64 of shape (n_rows, n_features); ValueError if impossible."""
        try:
            x = np.asarray(rows, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"rows must be a 2-D array of numbers: {exc}") from None
        if x.ndim == 1 and x.size == 0:
            x = x.reshape(0, len(self.features))
        if x.ndim != 2:
            raise ValueError(
                f"rows must be 2-D (n_rows, {len(self.features)}), got an array of shape {x.shape}"
            )
        if x.shape[1] != len(self.features):
            raise ValueError(
                f"expected {len(self.features)} features per row ({', '.join(self.features)}), "
                f"got {x.shape[1]}"
            )
        if not np.isfinite(x).all():
            raise ValueError("rows contain NaN or infinite values")
        return x

    def predict_proba(self, rows) -> np.ndarray:
        """Return class probabilities for raw feature rows.

        ``rows``: list of lists or 2-D array-like of shape (n_rows, n_features),
        unstandardized, columns in ``self.features`` order (n_rows may be 0).
        Returns float32 of shape (n_rows, n_classes), columns in
        ``self.classes`` order, each row summing to 1.
        Raises ValueError on a wrong shape or feature count, non-numeric,
        NaN or infinite values.
        """
        x = self._as_matrix(rows)
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        scaled = mx.nd.array((x - self._mean) / self._std, dtype=np.float32)
        with self._lock:
            return mx.nd.softmax(self._net(scaled), axis=1).asnumpy()

    def predict(self, rows) -> list[str]:
        """Return the most probable class name for each raw feature row.

        Same ``rows`` and errors as :meth:`predict_proba`; returns a list of
        n_rows names from ``self.classes``.
        """
        return [self.classes[i] for i in self.predict_proba(rows).argmax(axis=1)]


def _read_json(path: Path):
    """Return the parsed JSON at ``path``; FileNotFoundError / ValueError with the path."""
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} not found")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"model file {path} is not valid JSON: {exc}") from None


def load(model_dir: str | Path) -> IrisModel:
    """Load the model in ``model_dir`` (see the module doc for its files).

    Raises FileNotFoundError if a model file is missing, ValueError if the
    files are malformed or inconsistent (e.g. scaler length differs from the
    feature count, or the network's output width from the class count).
    """
    model_dir = Path(model_dir)
    features = _read_json(model_dir / FEATURES_FILE)
    classes = _read_json(model_dir / CLASSES_FILE)
    scaler = _read_json(model_dir / SCALER_FILE)
    for name in (SYMBOL_FILE, PARAMS_FILE):
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"model file {model_dir / name} not found")
    if not isinstance(scaler, dict) or not all(
        isinstance(scaler.get(k), list) and len(scaler[k]) == len(features) for k in ("mean", "std")
    ):
        raise ValueError(f"{model_dir / SCALER_FILE}: needs 'mean' and 'std' lists of {len(features)} numbers")
    try:
        with warnings.catch_warnings():
            # MXNet warns that the input's dtype is unknown until first use; it is float32.
            warnings.filterwarnings("ignore", message="Cannot decide type", category=UserWarning)
            net = mx.gluon.SymbolBlock.imports(
                str(model_dir / SYMBOL_FILE), [INPUT_NAME], str(model_dir / PARAMS_FILE), ctx=mx.cpu()
            )
    except mx.base.MXNetError as exc:
        raise ValueError(f"cannot load network from {model_dir}: {str(exc).splitlines()[0]}") from None
    model = IrisModel(net, features, classes, scaler["mean"], scaler["std"])
    width = model.predict_proba([scaler["mean"]]).shape[1]
    if width != len(classes):
        raise ValueError(f"network has {width} outputs but {CLASSES_FILE} lists {len(classes)} classes")
    return model
