"""Pipeline specs in Pachyderm's format: loading, validation and defaults.

A spec is JSON (or YAML) such as::

    {"pipeline": {"name": "train"},
     "transform": {"image": "pipectl/train:0.1.0", "cmd": ["python3", "train.py"],
                   "stdin": [], "env": {"EPOCHS": "50"}},
     "input": {"pfs": {"repo": "preprocess", "glob": "/"}},
     "parallelism_spec": {"constant": 1}}

Inputs nest: ``{"pfs": {...}}``, ``{"cross": [input, ...]}``,
``{"union": [input, ...]}``. The schema is ``pipeline_spec.schema.json``
beside this module (JSON Schema draft 2020-12), checked with jsonschema; a
bad spec is refused with the path of the first bad field and the reason.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.resources
import json
from collections.abc import Iterator
from typing import Any

from .. import glob as globs
from ..errors import InvalidArgument
from ..pfs import names

DEFAULTS = {"datum_tries": 3, "output_branch": "master", "parallelism_spec": {"constant": 1}}


@functools.lru_cache(maxsize=1)
def schema() -> dict:
    """The pipeline spec JSON Schema."""
    return json.loads(importlib.resources.files(__package__).joinpath(
        "pipeline_spec.schema.json").read_text())


def parse(text: str, source: str = "spec") -> Any:
    """Parse spec text, JSON or YAML (not yet validated: see :func:`validate`).
    Raises InvalidArgument."""
    if "\0" in text:
        raise InvalidArgument(f"{source}: not a spec: binary data (NUL bytes)")
    try:
        try:
            return json.loads(text)
        except json.JSONDecodeError as json_error:
            import yaml
            try:
                return yaml.safe_load(text)
            except yaml.YAMLError:
                raise InvalidArgument(f"{source}: not valid JSON ({json_error.msg} at line "
                                      f"{json_error.lineno}) nor YAML") from None
    except RecursionError:
        raise InvalidArgument(f"{source}: nested too deeply to be a pipeline spec") from None


def load(text: str, source: str = "spec") -> dict:
    """Parse a spec from JSON or YAML text, validate it and fill defaults.
    Raises InvalidArgument naming the bad field."""
    return validate(parse(text, source), source)


def validate(spec: Any, source: str = "spec") -> dict:
    """Validate a parsed spec; return a copy with defaults filled in.
    Raises InvalidArgument: ``<source>: <field path>: <reason>``, the path
    naming the bad field itself (``transform.cmd``), also when it is missing
    or unknown."""
    import jsonschema  # imported here: it costs every CLI call ~0.2 s otherwise
    if _depth(spec) > MAX_DEPTH:
        raise InvalidArgument(f"{source}: nested deeper than {MAX_DEPTH} levels; not a pipeline spec")
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(spec), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        e = jsonschema.exceptions.best_match(errors)
        path, message = [str(p) for p in e.absolute_path], e.message
        if e.validator == "required" and isinstance(e.instance, dict):
            missing = [k for k in e.validator_value if k not in e.instance]
            path, message = path + missing[:1], "required field is missing"
        elif e.validator == "additionalProperties" and isinstance(e.instance, dict):
            allowed = e.schema.get("properties", {})
            unknown = sorted(k for k in e.instance if k not in allowed)
            path, message = path + unknown[:1], f"unknown field (allowed: {', '.join(allowed)})"
        raise InvalidArgument(f"{source}: {'.'.join(path) or '(top level)'}: {message}")
    spec = copy.deepcopy(spec)
    for key, value in DEFAULTS.items():
        spec.setdefault(key, copy.deepcopy(value))

    def check(where: str, fn, *args) -> None:
        try:
            fn(*args)
        except InvalidArgument as e:
            raise InvalidArgument(f"{source}: {where}: {e}") from None

    check("pipeline.name", names.check_name, "pipeline", spec["pipeline"]["name"])
    check("output_branch", names.check_name, "branch", spec["output_branch"])
    for field in ("datum_timeout", "job_timeout"):
        if field in spec and not parse_duration(spec[field]):
            raise InvalidArgument(f"{source}: {field}: must be longer than 0s")
    seen: set[str] = set()
    for where, pfs in _pfs_inputs_with_paths(spec["input"], "input"):
        check(f"{where}.repo", names.check_name, "repo", pfs["repo"])
        pfs.setdefault("branch", "master")
        pfs.setdefault("name", pfs["repo"])
        check(f"{where}.branch", names.check_name, "branch", pfs["branch"])
        check(f"{where}.name", names.check_name, "input", pfs["name"])
        if pfs["name"] == "out":
            raise InvalidArgument(f"{source}: {where}.name: input name 'out' is reserved for the output directory")
        if pfs["name"] in seen:
            raise InvalidArgument(f"{source}: {where}.name: two inputs are named {pfs['name']!r}; "
                                  "give them distinct 'name's")
        seen.add(pfs["name"])
        check(f"{where}.glob", globs.compile_glob, pfs["glob"])
        if pfs["repo"] == spec["pipeline"]["name"]:
            raise InvalidArgument(f"{source}: {where}.repo: pipeline {pfs['repo']} cannot read its own output repo")
    return spec


MAX_DEPTH = 64
"""Deepest nesting of objects and lists a spec may have (cross and union
inputs nest; nothing real comes near this)."""


def _depth(value: Any, limit: int = MAX_DEPTH + 1) -> int:
    """Nesting depth of parsed JSON ``value``, counted up to ``limit``
    (iteratively: a hostile document must not exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            if depth >= limit:
                return depth
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _pfs_inputs_with_paths(node: dict, where: str) -> Iterator[tuple[str, dict]]:
    """Like :func:`pfs_inputs`, each with its field path (``input.cross.1.pfs``)."""
    if "pfs" in node:
        yield f"{where}.pfs", node["pfs"]
    for kind in ("cross", "union"):
        for n, child in enumerate(node.get(kind, [])):
            yield from _pfs_inputs_with_paths(child, f"{where}.{kind}.{n}")


def pfs_inputs(node: dict) -> Iterator[dict]:
    """Every ``pfs`` input of an input tree, depth first, left to right."""
    if "pfs" in node:
        yield node["pfs"]
    for child in node.get("cross", []) + node.get("union", []):
        yield from pfs_inputs(child)


def transform_hash(spec: dict) -> str:
    """SHA-256 of what decides a datum's output: the transform (image, cmd,
    stdin, env). Other fields (parallelism, description) do not count."""
    t = spec["transform"]
    key = {k: t.get(k) for k in ("image", "cmd", "stdin", "env")}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def parse_duration(value: str | None) -> float | None:
    """Seconds in a Go-style duration (``30s``, ``5m``, ``1h30m``, ``250ms``);
    None passes through."""
    if value is None:
        return None
    import re
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(ms|s|m|h)", value))
