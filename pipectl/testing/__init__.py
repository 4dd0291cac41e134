"""Helpers for pipectl's own tests and benchmarks (not used by the platform)."""

from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """Terminate ``proc`` (if it still runs), waiting up to ``timeout``
    seconds before killing it, and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
