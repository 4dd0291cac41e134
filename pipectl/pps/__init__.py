"""Pipelines: specs, datums, jobs, the controller, executors and the worker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import PPS

__all__ = ["PPS"]


def __getattr__(name: str) -> Any:
    # Imported on first use (PEP 562): the user-code runner imports this
    # package in every sandbox and container and needs none of the store code.
    if name == "PPS":
        from .api import PPS
        return PPS
    raise AttributeError(name)
