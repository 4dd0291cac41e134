"""Pipeline specs as pachctl reads them: Pachyderm's spec is a protobuf
message (``CreatePipelineRequest`` in Pachyderm's ``pps.proto``), read from
JSON with the proto3 JSON mapping (protojson), so a spec written for
Pachyderm may use

- lowerCamelCase field names (``parallelismSpec``, ``joinOn``) as well as the
  proto's snake_case ones;
- int64 fields as JSON strings (``"constant": "1"``), the mapping's standard
  form for 64-bit integers;
- the 1.x input name ``atom``, the old name of ``pfs``.

:func:`normalize` turns such a spec into the one form the rest of pipectl
reads: snake_case names, integers as numbers, ``pfs``. The keys of map
fields (``transform.env``, ``metadata.labels`` and ``annotations``,
``scheduling_spec.node_selector``) are data, not field names, and are kept.
Source: the proto3 JSON mapping, https://protobuf.dev/programming-guides/json/.
"""

from __future__ import annotations

import re
from typing import Any

MAP_FIELDS = {"env", "labels", "annotations", "node_selector"}
"""Fields whose value is a map with user-chosen keys."""
_CAMEL = re.compile(r"^[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)+$")
_HUMP = re.compile(r"(?<=[a-z0-9])([A-Z])")
_INT = re.compile(r"^-?[0-9]+$")


def snake(name: str) -> str:
    """The proto field name of a JSON name: ``parallelismSpec`` ->
    ``parallelism_spec``; snake_case and other names are returned as they
    are (``URL``, ``join_on``)."""
    return _HUMP.sub(r"_\1", name).lower() if _CAMEL.match(name) else name


def normalize(spec: Any, schema: dict) -> Any:
    """A copy of ``spec`` (parsed JSON) with snake_case field names, ``atom``
    inputs as ``pfs`` and int64 strings as numbers where ``schema`` (the
    pipeline spec JSON Schema) says integer. Anything else is returned as it
    is, for validation to judge."""
    return _coerce(_rename(spec, None), schema, schema)


def _rename(value: Any, field: str | None) -> Any:
    if isinstance(value, list):
        return [_rename(v, field) for v in value]
    if not isinstance(value, dict):
        return value
    if field in MAP_FIELDS:
        return dict(value)
    out: dict[Any, Any] = {}
    for key, child in value.items():
        name = snake(key) if isinstance(key, str) else key
        if name == "atom":  # Pachyderm 1.x
            name = "pfs"
        out.setdefault(name, _rename(child, name))
    return out


def _coerce(value: Any, node: Any, root: dict) -> Any:
    """``value`` with strings of digits made integers where schema ``node``
    expects an integer (following ``$ref``, ``properties``, ``items`` and
    ``additionalProperties``)."""
    if not isinstance(node, dict):
        return value
    while "$ref" in node:  # a JSON pointer into the schema, such as #/$defs/input
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    types = node.get("type")
    wants_int = types == "integer" or (isinstance(types, list) and "integer" in types and "string" not in types)
    if wants_int and isinstance(value, str) and _INT.match(value):
        return int(value)
    if isinstance(value, dict):
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        return {k: _coerce(v, props.get(k, extra), root) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce(v, node.get("items"), root) for v in value]
    return value
