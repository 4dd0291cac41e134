"""pipectl: versioned data repositories and containerized ML pipelines.

The platform core. It never imports numpy, MXNet, librosa or scikit-learn;
those belong to the stage environments under ``stages/``.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``pipectl.Client``, the Python client (:mod:`pipectl.sdk`), and
    ``pipectl.next_datum`` and ``pipectl.batch_all_datums`` for user code
    with ``datum_batching`` (see :mod:`pipectl.pps.batching`), imported on
    first use so that ``import pipectl`` stays light."""
    if name == "Client":
        from .sdk import Client
        return Client
    if name in ("next_datum", "batch_all_datums"):
        from .pps import batching
        return getattr(batching, name)
    raise AttributeError(f"module 'pipectl' has no attribute {name!r}")
