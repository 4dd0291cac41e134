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
from typing import Any, Iterator

import jsonschema

from .. import glob as globs
from ..errors import InvalidArgument
from ..pfs import names

DEFAULTS = {"datum_tries": 3, "output_branch": "master", "parallelism_spec": {"constant": 1}}


@functools.lru_cache(maxsize=1)
def schema() -> dict:
    """The pipeline spec JSON Schema."""
    return json.loads(importlib.resources.files(__package__).joinpath(
        "pipeline_spec.schema.json").read_text())


def load(text: str, source: str = "spec") -> dict:
    """Parse a spec from JSON or YAML text, validate it and fill defaults.
    Raises InvalidArgument naming the bad field."""
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as json_error:
        import yaml
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError:
            raise InvalidArgument(f"{source}: not valid JSON ({json_error.msg} at line "
                                  f"{json_error.lineno}) nor YAML") from None
    return validate(spec, source)


def validate(spec: Any, source: str = "spec") -> dict:
    """Validate a parsed spec; return a copy with defaults filled in.
    Raises InvalidArgument: ``<source>: <field path>: <reason>``."""
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(spec), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        e = jsonschema.exceptions.best_match(errors)
        where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        raise InvalidArgument(f"{source}: {where}: {e.message}")
    spec = copy.deepcopy(spec)
    for key, value in DEFAULTS.items():
        spec.setdefault(key, copy.deepcopy(value))
    names.check_name("pipeline", spec["pipeline"]["name"])
    seen: set[str] = set()
    for pfs in pfs_inputs(spec["input"]):
        names.check_name("repo", pfs["repo"])
        pfs.setdefault("branch", "master")
        pfs.setdefault("name", pfs["repo"])
        names.check_name("input", pfs["name"])
        if pfs["name"] == "out":
            raise InvalidArgument(f"{source}: input name 'out' is reserved for the output directory")
        if pfs["name"] in seen:
            raise InvalidArgument(f"{source}: two inputs are named {pfs['name']!r}; give them distinct 'name's")
        seen.add(pfs["name"])
        globs.compile_glob(pfs["glob"])
        if pfs["repo"] == spec["pipeline"]["name"]:
            raise InvalidArgument(f"{source}: pipeline {pfs['repo']} cannot read its own output repo")
    return spec


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
