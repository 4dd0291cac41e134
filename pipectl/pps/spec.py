"""Pipeline specs in Pachyderm's format: loading, validation and defaults.

A spec is JSON (or YAML) such as::

    {"pipeline": {"name": "train"},
     "transform": {"image": "pipectl/train:0.1.0", "cmd": ["python3", "train.py"],
                   "stdin": [], "env": {"EPOCHS": "50"}},
     "input": {"pfs": {"repo": "preprocess", "glob": "/"}},
     "parallelism_spec": {"constant": 1}}

Inputs nest: ``{"pfs": {...}}``, ``{"cross": [input, ...]}``,
``{"union": [input, ...]}``. A spec is read as pachctl reads it (see
:mod:`pipectl.pps.proto3`: lowerCamelCase names, int64 strings, ``atom``),
and a file may hold several (a JSON stream or YAML documents, see
:func:`parse_all`). The schema is ``pipeline_spec.schema.json`` beside this
module (JSON Schema draft 2020-12), checked with jsonschema; a bad spec is
refused with the path of the first bad field and the reason. Fields of
Pachyderm's spec that pipectl has no equivalent for are accepted (the
README's field table says which); features not built yet are refused with
one line naming them (:data:`UNSUPPORTED`).
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import hashlib
import importlib.resources
import json
import re
from collections.abc import Iterator
from typing import Any

from .. import glob as globs
from ..errors import InvalidArgument
from ..pfs import names, triggers
from . import cron, egress, podspec, proto3, secrets

DEFAULTS = {"datum_tries": 3, "output_branch": "master", "parallelism_spec": {"constant": 1}}
DEFAULT_IMAGE = "ubuntu:20.04"
"""``transform.image`` when a spec gives none, as in Pachyderm."""
UNSUPPORTED = {
    "tf_job": "TFJob pipelines",
}
"""Fields of Pachyderm's spec for features pipectl does not have yet: a
spec using one is refused, naming it."""


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


_DOCUMENT_END = re.compile(r"---(?=\s|$)")


def parse_all(text: str, source: str = "spec") -> list[Any]:
    """Every spec in ``text``, in order: one JSON object, a JSON array of
    them or YAML documents separated by ``---`` (as pachctl 2.x reads a
    file of several; JSON documents so separated are read as JSON, which
    allows the tabs YAML does not), or a stream of JSON objects (as pachctl
    1.x did). Raises InvalidArgument."""
    if "\0" in text:
        raise InvalidArgument(f"{source}: not a spec: binary data (NUL bytes)")
    decoder = json.JSONDecoder()
    found: list[Any] = []
    at = 0
    try:
        while True:
            while at < len(text) and text[at].isspace():
                at += 1
            if found and _DOCUMENT_END.match(text, at):  # JSON documents as YAML separates them
                at += 3
                continue
            if at == len(text):
                break
            value, at = decoder.raw_decode(text, at)
            found.append(value)
        return found[0] if len(found) == 1 and isinstance(found[0], list) else found
    except json.JSONDecodeError:
        if found:  # JSON values, then something else
            return [*found, parse(text[at:], source)]
    except RecursionError:
        raise InvalidArgument(f"{source}: nested too deeply to be a pipeline spec") from None
    import yaml
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError:
        return [parse(text, source)]  # the JSON error, told as parse() tells it
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
    or unknown; with several problems, every one of them on one line
    (``<source>: 3 problems: <path>: <reason>; ...``).

    Projects, as in Pachyderm 2.x: the pipeline belongs to
    ``pipeline.project.name``, else to the project its name gives
    (``team/edges``), else to ``default`` (the CLI puts a spec that names
    none in its ``--project``); an input's repo to its
    ``pfs.project``, else to the pipeline's. In the copy, ``pipeline.name``
    and each input's ``repo`` are qualified (``project/name``, see
    :mod:`pipectl.pfs.names`) and an input's ``name`` defaults to the bare
    repo name, so user code sees ``/pfs/<repo>`` as in Pachyderm."""
    import jsonschema  # imported here: it costs every CLI call ~0.2 s otherwise
    if _depth(spec) > MAX_DEPTH:
        raise InvalidArgument(f"{source}: nested deeper than {MAX_DEPTH} levels; not a pipeline spec")
    spec = proto3.normalize(spec, schema())
    if isinstance(spec, dict):
        _refuse_unsupported(spec, source)
        if isinstance(spec.get("transform"), dict) and "image" not in spec["transform"]:
            spec["transform"]["image"] = DEFAULT_IMAGE
    validator = jsonschema.Draft202012Validator(schema())
    problems = _schema_problems(validator.iter_errors(spec))
    if isinstance(spec, dict) and "input" not in spec and "spout" not in spec:
        problems.insert(0, "input: required field is missing")
    if isinstance(spec, dict) and "input" in spec and "spout" in spec:
        problems.insert(0, "input: a spout takes no input (its code commits to its output repo)")
    if isinstance(spec, dict) and "service" in spec and "spout" in spec:
        problems.insert(0, "service: a spout serves with spout.service, not service")
    if problems:
        raise InvalidArgument(_report(source, problems))
    spec = copy.deepcopy(spec)
    for key, value in DEFAULTS.items():
        spec.setdefault(key, copy.deepcopy(value))
    spec.setdefault("input", {})  # a spout's: no input, no datums

    def check(where: str | None, fn, *args) -> None:
        try:
            fn(*args)
        except InvalidArgument as e:
            problems.append(f"{where}: {e}" if where else str(e))

    own = (spec["pipeline"].get("project") or {}).get("name") or names.project_of(spec["pipeline"]["name"])
    check("pipeline.project.name", names.check_name, "project", own)
    if "/" in spec["pipeline"]["name"] and names.project_of(spec["pipeline"]["name"]) != own:
        problems.append(f"pipeline.name: {spec['pipeline']['name']!r} is not in project {own!r}")
    spec["pipeline"]["name"] = names.qualify(own, spec["pipeline"]["name"])
    check("pipeline.name", names.check_name, "pipeline", spec["pipeline"]["name"])
    check("output_branch", names.check_name, "branch", spec["output_branch"])
    for field in ("datum_timeout", "job_timeout"):
        if field in spec and not parse_duration(spec[field]):
            problems.append(f"{field}: must be longer than 0s")
    if spec["input"]:
        check(None, _check_input_names, spec["input"], "input")
        check(None, _check_s3_inputs, spec["input"], "input")
    check(None, podspec.check, spec)  # its messages name the field
    check(None, egress.egress_url, spec)  # likewise
    for n, secret in enumerate(spec["transform"].get("secrets") or []):
        check(f"transform.secrets.{n}", secrets.check, secret)
    for c in cron.cron_inputs(spec["input"]):
        c["repo"] = names.qualify(own, cron.repo_of(spec["pipeline"]["name"], c))
        c.setdefault("start", dt.datetime.now(dt.UTC).strftime(cron.TIME_FORMAT))
        check(f"cron input {c['name']}", cron.schedule, c["spec"])
        check(f"cron input {c['name']}", cron.parse_time, c["start"])
        check(f"cron input {c['name']}.repo", names.check_name, "repo", c["repo"])
        check(f"cron input {c['name']}.name", names.check_name, "input", c["name"])
    triggered: dict[str, int] = {}
    for where, pfs in _pfs_inputs_with_paths(spec["input"], "input"):
        if pfs.get("project"):
            check(f"{where}.project", names.check_name, "project", pfs["project"])
        pfs.setdefault("name", names.bare(pfs["repo"]))
        pfs["repo"] = names.qualify(pfs.get("project") or own, pfs["repo"])
        check(f"{where}.repo", names.check_name, "repo", pfs["repo"])
        if pfs.get("trigger"):  # Pachyderm's defaults: the pipeline reads a branch of its own
            pfs["trigger"].setdefault("branch", "master")
            check(f"{where}.trigger", triggers.check, pfs["trigger"])
            triggered[pfs["repo"]] = triggered.get(pfs["repo"], 0) + 1
            pfs.setdefault("branch", f"{names.bare(spec['pipeline']['name'])}-trigger-{triggered[pfs['repo']]}")
        pfs.setdefault("branch", "master")
        check(f"{where}.branch", names.check_name, "branch", pfs["branch"])
        check(f"{where}.name", names.check_name, "input", pfs["name"])
        if pfs["name"] == "out":
            problems.append(f"{where}.name: input name 'out' is reserved for the output directory")
        check(f"{where}.glob", globs.compile_glob, pfs["glob"])
        if pfs.get("s3") and pfs["glob"] != "/":
            problems.append(f"{where}.glob: an S3 input's glob must be \"/\" (its whole commit is one datum)")
        if pfs["repo"] == spec["pipeline"]["name"]:
            problems.append(f"{where}.repo: pipeline {pfs['repo']} cannot read its own output repo")
    if problems:
        raise InvalidArgument(_report(source, problems))
    return spec


def _report(source: str, problems: list[str]) -> str:
    """One line for every problem of a spec (duplicates dropped; a line
    break a spec smuggled into a message is shown as ``\\n``)."""
    problems = [p.replace("\r", "\\r").replace("\n", "\\n") for p in dict.fromkeys(problems)]
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    return f"{source}: {len(problems)} problems: " + "; ".join(problems)


def _field_path(path: list) -> str:
    """A field path as ``a.b.0``; a name that is not plain letters, digits,
    ``_``, ``-`` is quoted (``'\\n'``), so the path reads unambiguously."""
    return ".".join(p if re.fullmatch(r"[\w-]+", p) else repr(p) for p in map(str, path)) or "(top level)"


def _schema_problems(errors) -> list[str]:
    """``<field path>: <reason>`` for each JSON Schema error, by path: the
    most relevant alternative of an ``anyOf``/``oneOf`` (jsonschema's
    ``best_match``), each missing field and each unknown field on its own."""
    import jsonschema
    problems = []
    for e in sorted(errors, key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))):
        e = jsonschema.exceptions.best_match([e])
        path = [str(p) for p in e.absolute_path]
        if e.validator == "required" and isinstance(e.instance, dict):
            found = [(path + [k], "required field is missing") for k in e.validator_value if k not in e.instance]
        elif e.validator == "additionalProperties" and isinstance(e.instance, dict):
            allowed = e.schema.get("properties", {})
            found = [(path + [k], f"unknown field (allowed: {', '.join(allowed)})")
                     for k in sorted(k for k in e.instance if k not in allowed)]
        else:
            found = [(path, e.message)]
        problems += [f"{_field_path(where)}: {message}" for where, message in found]
    return problems


def _refuse_unsupported(spec: dict, source: str) -> None:
    """Raise InvalidArgument naming the first feature of :data:`UNSUPPORTED`
    that ``spec`` (normalized) uses."""
    used = [k for k in spec if k in UNSUPPORTED]
    transform = spec.get("transform")
    if isinstance(transform, dict):
        used += [f"transform.{k}" for k in transform if f"transform.{k}" in UNSUPPORTED]
    stack = [spec.get("input")]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        used += [f"input.{k}" for k in node if f"input.{k}" in UNSUPPORTED]
        if isinstance(node.get("pfs"), dict):
            used += [f"pfs.{k}" for k in node["pfs"] if f"pfs.{k}" in UNSUPPORTED and node["pfs"][k]]
        for kind in ("cross", "union", "join", "group"):
            if isinstance(node.get(kind), list):
                stack += node[kind]
    if used:
        raise InvalidArgument(f"{source}: {used[0]}: {UNSUPPORTED[used[0]]} are not supported by pipectl yet")


def _check_s3_inputs(node: dict, where: str, within: str | None = None) -> None:
    """Refuse ``pfs.s3`` inputs inside a join, group or union, as Pachyderm
    does (their datums would split a commit an S3 bucket shows whole).
    Raises InvalidArgument."""
    if "pfs" in node and node["pfs"].get("s3") and within:
        raise InvalidArgument(f"{where}.pfs.s3: S3 inputs in {within} expressions are not supported")
    for kind in ("cross", "union", "join", "group"):
        for n, child in enumerate(node.get(kind, [])):
            _check_s3_inputs(child, f"{where}.{kind}.{n}", within if kind == "cross" else kind)


def _check_input_names(node: dict, where: str) -> set[str]:
    """The input names of ``node`` (``name``, else the repo's bare name). The inputs of
    one datum must have distinct names, so a cross refuses a name twice; the
    branches of a union may share one (a datum comes from one branch), as
    Pachyderm allows. Raises InvalidArgument."""
    if "pfs" in node:
        return {node["pfs"].get("name") or names.bare(node["pfs"]["repo"])}
    if "cron" in node:
        return {node["cron"]["name"]}
    if "union" in node:
        return set().union(*(_check_input_names(c, f"{where}.union.{n}")
                             for n, c in enumerate(node["union"])))
    kind = next(k for k in ("cross", "join", "group") if k in node)
    seen: set[str] = set()
    for n, child in enumerate(node[kind]):
        names_here = _check_input_names(child, f"{where}.{kind}.{n}")
        if seen & names_here:
            twice = sorted(seen & names_here)[0]
            raise InvalidArgument(f"{where}.{kind}.{n}: two inputs are named {twice!r}; "
                                  "give them distinct 'name's")
        seen |= names_here
    return seen


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
    for kind in ("cross", "union", "join", "group"):
        for n, child in enumerate(node.get(kind, [])):
            yield from _pfs_inputs_with_paths(child, f"{where}.{kind}.{n}")


def pfs_inputs(node: dict) -> Iterator[dict]:
    """Every ``pfs`` input of an input tree, depth first, left to right."""
    if "pfs" in node:
        yield node["pfs"]
    if "cron" in node:
        yield cron.as_pfs(node["cron"])
    for kind in ("cross", "union", "join", "group"):
        for child in node.get(kind, []):
            yield from pfs_inputs(child)


def transform_hash(spec: dict) -> str:
    """SHA-256 of what decides a datum's output: the transform (image, cmd,
    stdin, env) and Pachyderm's ``salt`` where given (changing it makes
    every datum new). Other fields (parallelism, description) do not count."""
    t = spec["transform"]
    key = {k: t.get(k) for k in ("image", "cmd", "stdin", "env")}
    if spec.get("salt"):
        key["salt"] = spec["salt"]
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def parse_duration(value: str | None) -> float | None:
    """Seconds in a Go-style duration (``30s``, ``5m``, ``1h30m``, ``250ms``);
    None passes through."""
    if value is None:
        return None
    import re
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(ms|s|m|h)", value))
