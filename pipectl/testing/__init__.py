"""Helpers for pipectl's own tests and benchmarks (not used by the platform)."""
