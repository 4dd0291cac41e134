"""pipectl: versioned data repositories and containerized ML pipelines.

The platform core. It never imports numpy, MXNet, librosa or scikit-learn;
those belong to the stage environments under ``stages/``.
"""

__version__ = "0.1.0"
