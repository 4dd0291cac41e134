"""Model handlers: a Python file that defines ``load(model_dir)``.

``load`` receives the path of a directory holding the files of one model
commit and returns a *model* object. Its contract, which the Iris handler
(``stages/inference/iris_model.py``) follows:

- ``predict(rows)`` (required): ``rows`` is a list of n lists of numbers
  (floats), one per instance; returns n labels (strings or numbers). Raises
  ValueError for input it cannot take (e.g. a wrong feature count): the
  server answers 400 with that message.
- ``predict_proba(rows)`` and ``classes`` (optional, together): an (n,
  len(classes)) array-like of class probabilities. When present the server
  answers probabilities too, and takes each prediction as the most probable
  class (the first on ties, as ``numpy.argmax``), one forward pass per request.
- ``features`` (optional): the feature names, in row order. When present
  the server accepts instances keyed by feature name and CSV with a header,
  and checks the feature count itself.

The model object must be safe to call from several threads, and ``load``
must read everything it needs: the directory is deleted once a newer model
replaces it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

from ..errors import InvalidArgument

LoadFunction = Callable[[str], Any]


def load_handler(path: str) -> LoadFunction:
    """Import the handler file at ``path`` and return its ``load`` function.

    The file is imported as a module named after it (``iris_model.py`` ->
    ``iris_model``; ``_pipectl_handler_<name>`` if a module of that name is
    already loaded), with its directory added to the end of ``sys.path`` so
    that it can import its neighbours (without shadowing installed
    packages). Raises InvalidArgument when the file is missing,
    fails to import (e.g. numpy or MXNet is not installed) or defines no
    callable ``load``.
    """
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise InvalidArgument(f"handler {path} not found (a Python file defining load(model_dir))")
    name = os.path.splitext(os.path.basename(path))[0]
    if name in sys.modules:
        name = f"_pipectl_handler_{name}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InvalidArgument(f"handler {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    directory = os.path.dirname(path)
    if directory not in sys.path:
        sys.path.append(directory)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001  (user code: report whatever it raised)
        del sys.modules[name]
        raise InvalidArgument(f"cannot import handler {path}: {type(e).__name__}: {e}") from None
    load = getattr(module, "load", None)
    if not callable(load):
        raise InvalidArgument(f"handler {path} defines no load(model_dir) function")
    return load
