"""Request bodies to rows: the instances of ``POST /predictions/{name}``.

Every function returns ``rows``: a list of n >= 1 lists of floats, one per
instance, columns in the model's feature order. ``features`` is the model's
feature names (or None when it declares none: then instances must be lists,
and the model itself checks their length). Every problem raises
:class:`~.errors.BadRequest` with a one-line message naming it.

JSON (``application/json``) takes one instance or a batch:

- ``[5.1, 3.5, 1.4, 0.2]``: one instance, values in feature order;
- ``{"sepal_length": 5.1, ...}``: one instance keyed by feature name (every
  feature, no other key; names match case-insensitively with ``.``, ``-``
  and spaces read as ``_``, so ``"Sepal.Length"`` works);
- ``[[...], {...}]``: a batch of those;
- ``{"instances": [...]}``: a batch (the KServe v1 / TF Serving form).

CSV (``text/csv``): one instance per non-blank line. A first line with no
number in it is a header naming the columns: it must name every feature
(other columns, e.g. ``species``, are ignored). Without a header each line
holds exactly the features, in order. Feature values are numbers (not
booleans), finite: NaN and infinities are refused.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Sequence
from typing import Any

from .errors import BadRequest

Rows = list[list[float]]


def normalize_name(name: str) -> str:
    """A feature name in canonical form: ``"Sepal.Length "`` -> ``"sepal_length"``."""
    return re.sub(r"[\s.\-]+", "_", name.strip().lower())


def parse_json(body: bytes) -> Any:
    """Decode a JSON body. Raises BadRequest when it is empty, not UTF-8 or
    not JSON, or uses the non-standard NaN/Infinity constants."""
    if not body.strip():
        raise BadRequest("empty request body: send JSON (or text/csv) instances")

    def reject(constant: str):
        raise BadRequest(f"malformed JSON: {constant} is not a number")

    try:
        return json.loads(body, parse_constant=reject)
    except UnicodeDecodeError:
        raise BadRequest("malformed JSON: the body is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise BadRequest(f"malformed JSON: {e}") from None
    except RecursionError:
        raise BadRequest("malformed JSON: nested too deeply") from None


def number(value: Any, where: str) -> float:
    """``value`` as a finite float; BadRequest naming ``where`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{where}: {json.dumps(value)[:40]} is not a number")
    if not math.isfinite(value):
        raise BadRequest(f"{where}: {value} is not a finite number")
    return float(value)


def expected(features: Sequence[str]) -> str:
    """``4 features (sepal_length, sepal_width, ...)``: for error messages."""
    return f"{len(features)} features ({', '.join(features)})"


def row_from_list(values: list, features: Sequence[str] | None, where: str) -> list[float]:
    """One instance given as a list of values in feature order."""
    if features is not None and len(values) != len(features):
        raise BadRequest(f"{where} has {len(values)} values; the model expects {expected(features)}")
    return [number(v, f"{where}, value {i}") for i, v in enumerate(values)]


def row_from_mapping(values: dict, features: Sequence[str] | None, where: str) -> list[float]:
    """One instance given as ``{feature name: value}``."""
    if features is None:
        raise BadRequest(f"{where}: the model declares no feature names; send each instance as a list")
    by_name = {normalize_name(str(k)): v for k, v in values.items()}
    missing = [f for f in features if f not in by_name]
    unknown = [str(k) for k in values if normalize_name(str(k)) not in features]
    if missing or unknown:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + \
                   ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise BadRequest(f"{where}: wrong feature names ({'; '.join(problems)}); "
                         f"the model expects {expected(features)}")
    return [number(by_name[f], f"{where}, {f}") for f in features]


def row_from_instance(instance: Any, features: Sequence[str] | None, where: str) -> list[float]:
    """One instance, a list or a mapping."""
    if isinstance(instance, list):
        return row_from_list(instance, features, where)
    if isinstance(instance, dict):
        return row_from_mapping(instance, features, where)
    raise BadRequest(f"{where} is {json.dumps(instance)[:40]}: an instance is a list of values "
                     "or an object keyed by feature name")


def rows_from_json(payload: Any, features: Sequence[str] | None) -> Rows:
    """Rows from a decoded JSON body (see the module doc for the forms)."""
    if isinstance(payload, dict) and "instances" in payload and "instances" not in (features or ()):
        batch = payload["instances"]
        if not isinstance(batch, list):
            raise BadRequest('"instances" must be a list of instances')
        return _batch(batch, features)
    if isinstance(payload, dict):
        return [row_from_mapping(payload, features, "the instance")]
    if not isinstance(payload, list):
        raise BadRequest(f"the body is {json.dumps(payload)[:40]}: send an instance (a list of values "
                         "or an object keyed by feature name) or a list of instances")
    if payload and all(isinstance(v, (list, dict)) for v in payload):
        return _batch(payload, features)
    if any(isinstance(v, (list, dict)) for v in payload):
        raise BadRequest("a batch must hold only instances (lists or objects), "
                         "and an instance only numbers")
    if not payload:
        raise BadRequest("no instances: the body is an empty list")
    return [row_from_list(payload, features, "the instance")]


def _batch(batch: list, features: Sequence[str] | None) -> Rows:
    if not batch:
        raise BadRequest("no instances: the batch is empty")
    return [row_from_instance(x, features, f"instance {i}") for i, x in enumerate(batch)]


def rows_from_csv(body: bytes, features: Sequence[str] | None) -> Rows:
    """Rows from a CSV body (see the module doc). Raises BadRequest naming
    the line of a bad row."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("malformed CSV: the body is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text))
    rows: Rows = []
    positions: list[int] | None = None
    width = 0
    try:
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            where = f"CSV line {reader.line_num}"
            if positions is None:
                width = len(fields)
                positions = _header_positions(fields, features)
                if positions is not None:
                    continue
                if features is not None and width != len(features):
                    raise BadRequest(f"{where} has {width} values; the model expects "
                                     f"{expected(features)} (or a header row naming them)")
                positions = list(range(width))
            if len(fields) != width:
                raise BadRequest(f"{where} has {len(fields)} fields, expected {width}")
            rows.append([_csv_number(fields[i], f"{where}, column {i + 1}") for i in positions])
    except csv.Error as e:
        raise BadRequest(f"malformed CSV: {e}") from None
    if not rows:
        raise BadRequest("no instances: the CSV body has no data rows")
    return rows


def _header_positions(fields: list[str], features: Sequence[str] | None) -> list[int] | None:
    """Column positions of the features named by a header row, or None when
    ``fields`` is a data row (any field a number: then a non-number in it is
    a bad value, reported as such)."""
    if any(_is_number(f) for f in fields):
        return None
    if features is None:
        raise BadRequest("CSV header given but the model declares no feature names; send rows only")
    names = [normalize_name(f) for f in fields]
    missing = [f for f in features if f not in names]
    if missing:
        raise BadRequest(f"CSV header {','.join(fields)!r} lacks feature(s) {', '.join(missing)}; "
                         f"the model expects {expected(features)}")
    return [names.index(f) for f in features]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _csv_number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{where}: {text.strip()[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise BadRequest(f"{where}: {text.strip()} is not a finite number")
    return value
