"""Pipelines: specs, datums, jobs, the controller, executors and the worker."""

from .api import PPS

__all__ = ["PPS"]
