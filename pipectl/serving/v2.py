"""The KServe Open Inference Protocol (v2): infer requests and responses.

Request (``POST /v2/models/{name}/infer``)::

    {"id": "optional",
     "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32",
                 "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}],
     "outputs": [{"name": "predictions"}]}          # optional: which outputs

Inputs come in one of two layouts:

- one tensor (any name) of shape ``[n, n_features]``, rows in feature order;
- several tensors, one per feature, named by the feature (matched as in
  :func:`~.instances.normalize_name`), each of shape ``[n]`` or ``[n, 1]``.

``data`` is row-major, flat or nested; ``datatype`` is numeric (``FP*``,
``INT*``, ``UINT*``); values must be finite. Response::

    {"model_name": "iris", "model_version": "<commit>", "id": "optional",
     "outputs": [{"name": "predictions", "datatype": "BYTES", "shape": [2], "data": ["setosa", ...]},
                 {"name": "probabilities", "datatype": "FP32", "shape": [2, 3], "data": [...]}]}

``probabilities`` exists only for models that give them. Problems raise
:class:`~.errors.BadRequest`.

The binary tensor data extension (KServe v2 and Triton, what
``tritonclient`` sends by default): a request with an
``Inference-Header-Content-Length: N`` header holds N bytes of JSON, then
the raw data of every input whose ``parameters.binary_data_size`` is set,
in input order, little-endian (``BYTES`` elements each with a 4-byte
little-endian length first). Outputs asked for with ``parameters.binary_data``
(or all, with the request's ``parameters.binary_data_output``) are answered
the same way: their JSON gives ``binary_data_size`` instead of ``data``, the
bytes follow the JSON, and the header gives the JSON's length.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from typing import Any

from .. import __version__
from .errors import BadRequest
from .instances import Rows, expected, normalize_name, number
from .model import ModelVersion, Prediction

NUMERIC = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64",
           "UINT8", "UINT16", "UINT32", "UINT64"}
OUTPUTS = ("predictions", "probabilities")
HEADER_LENGTH = "Inference-Header-Content-Length"
"""The binary extension's header: the length of the JSON part of the body."""
FORMATS = {"FP16": "e", "FP32": "f", "FP64": "d", "INT8": "b", "INT16": "h", "INT32": "i", "INT64": "q",
           "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q"}
"""``struct`` codes of the numeric datatypes, as their binary data holds them."""


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """``(JSON part, binary part)`` of a request body, by the value of its
    ``Inference-Header-Content-Length`` header (None: all JSON)."""
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        raise BadRequest(f"{HEADER_LENGTH} must be a number of bytes, not {header_length!r}") from None
    if not 0 <= n <= len(body):
        raise BadRequest(f"{HEADER_LENGTH} {n} is beyond the body's {len(body)} bytes")
    return body[:n], body[n:]


def parse_request(payload: Any, features: Sequence[str] | None,
                  binary: bytes = b"") -> tuple[Rows, list[tuple[str, bool]] | None]:
    """``(rows, requested outputs or None for all)`` from a decoded infer
    request and the binary part of its body; each requested output is
    ``(name, wanted in binary)``."""
    if not isinstance(payload, dict):
        raise BadRequest('an infer request is a JSON object with "inputs"')
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest('"inputs" must be a non-empty list of tensors')
    reader = _Binary(binary)
    tensors = [_tensor(t, i, reader) for i, t in enumerate(inputs)]
    if reader.left():
        raise BadRequest(f"{reader.left()} bytes of binary data follow the inputs' binary_data_size")
    if len(tensors) == 1:
        rows = _rows_from_matrix(*tensors[0], features)
    else:
        rows = _rows_from_columns({normalize_name(name): (name, shape, data) for name, shape, data in tensors},
                                  features)
    return rows, _requested_outputs(payload.get("outputs"), _parameters(payload).get("binary_data_output") is True)


def _parameters(item: dict) -> dict:
    """The ``parameters`` object of a request, input or output (empty when absent or not an object)."""
    parameters = item.get("parameters")
    return parameters if isinstance(parameters, dict) else {}


class _Binary:
    """The binary part of a request, taken input by input."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def take(self, n: int, name: str) -> bytes:
        if self.at + n > len(self.data):
            raise BadRequest(f"input {name}: binary_data_size {n} runs past the end of the body")
        self.at += n
        return self.data[self.at - n:self.at]

    def left(self) -> int:
        return len(self.data) - self.at


def _tensor(tensor: Any, index: int, binary: _Binary) -> tuple[str, list[int], list[float]]:
    """``(name, shape, flat values)`` of one input tensor, checked."""
    if not isinstance(tensor, dict):
        raise BadRequest(f"input {index} must be an object with name, shape, datatype, data")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"input {index} has no name")
    shape, datatype = tensor.get("shape"), tensor.get("datatype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise BadRequest(f"input {name}: shape must be a list of non-negative integers")
    if datatype not in NUMERIC:
        raise BadRequest(f"input {name}: datatype {datatype!r} is not numeric "
                         f"(use one of {', '.join(sorted(NUMERIC))})")
    size = _parameters(tensor).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadRequest(f"input {name}: binary_data_size must be a number of bytes")
        raw, code = binary.take(size, name), FORMATS[datatype]
        if size != math.prod(shape) * struct.calcsize(code):
            raise BadRequest(f"input {name}: shape {shape} of {datatype} needs "
                             f"{math.prod(shape) * struct.calcsize(code)} bytes, binary_data_size is {size}")
        flat = list(struct.unpack(f"<{math.prod(shape)}{code}", raw))
    elif "data" not in tensor:
        raise BadRequest(f"input {name} has no data")
    else:
        flat = _flatten(tensor["data"])
    if len(flat) != math.prod(shape):
        raise BadRequest(f"input {name}: shape {shape} needs {math.prod(shape)} values, data has {len(flat)}")
    return name, shape, [number(v, f"input {name}, value {i}") for i, v in enumerate(flat)]


def _flatten(data: Any) -> list:
    if not isinstance(data, list):
        return [data]
    flat: list = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _rows_from_matrix(name: str, shape: list[int], values: list[float],
                      features: Sequence[str] | None) -> Rows:
    if len(shape) != 2:
        raise BadRequest(f"input {name}: shape {shape} must be [n_rows, n_features]")
    n, width = shape
    if features is not None and width != len(features):
        raise BadRequest(f"input {name}: {width} features per row; the model expects {expected(features)}")
    if n == 0:
        raise BadRequest(f"input {name}: no rows")
    return [values[i * width:(i + 1) * width] for i in range(n)]


def _rows_from_columns(named: dict, features: Sequence[str] | None) -> Rows:
    if features is None:
        raise BadRequest("the model declares no feature names; send one tensor of shape [n, n_features]")
    missing = [f for f in features if f not in named]
    unknown = [original for key, (original, _, _) in named.items() if key not in features]
    if missing or unknown:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + \
                   ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise BadRequest(f"wrong input names ({'; '.join(problems)}): send one tensor [n, n_features] "
                         f"or one tensor per feature of {expected(features)}")
    columns = []
    for f in features:
        original, shape, values = named[f]
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise BadRequest(f"input {original}: shape {shape} must be [n] or [n, 1] (one feature)")
        columns.append(values)
    lengths = {len(c) for c in columns}
    if len(lengths) != 1:
        raise BadRequest(f"feature inputs have different lengths {sorted(lengths)}")
    if not columns[0]:
        raise BadRequest("no rows: the feature inputs are empty")
    return [list(row) for row in zip(*columns)]


def _requested_outputs(outputs: Any, binary: bool) -> list[tuple[str, bool]] | None:
    """``[(name, in binary)]`` asked for (None: every output, each in
    binary if ``binary``, the request's ``binary_data_output``)."""
    if outputs is None:
        return None if not binary else [(o, True) for o in OUTPUTS]
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                for o in outputs):
        raise BadRequest('"outputs" must be a list of {"name": ...} objects')
    unknown = [o["name"] for o in outputs if o["name"] not in OUTPUTS]
    if unknown:
        raise BadRequest(f"unknown output(s) {', '.join(unknown)}: the outputs are {', '.join(OUTPUTS)}")
    return [(o["name"], _parameters(o).get("binary_data", binary) is True) for o in outputs]


def render(body: dict, binary: set[str]) -> tuple[bytes, int | None]:
    """An infer response as bytes, the outputs named in ``binary`` as
    binary data after the JSON; with the JSON's length for the
    ``Inference-Header-Content-Length`` header (None: all JSON)."""
    chunks = []
    for tensor in body["outputs"]:
        if tensor["name"] in binary:
            raw = raw_data(tensor["datatype"], tensor.pop("data"))
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
    head = json.dumps(body).encode()
    return (head + b"".join(chunks), len(head)) if chunks else (head, None)


def raw_data(datatype: str, values: list) -> bytes:
    """The binary form of a tensor's flat ``values``: little-endian
    numbers, or for ``BYTES`` each element's UTF-8 bytes after its 4-byte
    little-endian length (the binary extension's and gRPC's
    ``raw_output_contents`` layout)."""
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in (str(v).encode() for v in values))
    return struct.pack(f"<{len(values)}{FORMATS[datatype]}", *values)


def response(name: str, version: ModelVersion, prediction: Prediction, request_id: Any,
             requested: list[str] | None) -> dict:
    """The infer response body for ``prediction`` (see the module doc);
    ``requested``: the output names asked for (None: all)."""
    n = len(prediction.labels)
    tensors = {"predictions": {"name": "predictions", "shape": [n],
                               "datatype": "BYTES" if _all_text(prediction.labels) else "FP64",
                               "data": prediction.labels}}
    if prediction.probabilities is not None:
        tensors["probabilities"] = {"name": "probabilities", "datatype": "FP32",
                                    "shape": [n, len(version.classes or ())],
                                    "data": [p for row in prediction.probabilities for p in row]}
    wanted = requested if requested is not None else list(tensors)
    missing = [w for w in wanted if w not in tensors]
    if missing:
        raise BadRequest(f"model {name} gives no {', '.join(missing)}")
    body = {"model_name": name, "model_version": version.id, "outputs": [tensors[w] for w in wanted]}
    if request_id is not None:
        body["id"] = request_id
    return body


def server_metadata() -> dict:
    """The server metadata body of ``GET /v2`` (and gRPC ``ServerMetadata``)."""
    return {"name": "pipectl", "version": __version__, "extensions": ["binary_tensor_data"]}


def metadata(name: str, version: ModelVersion) -> dict:
    """The model metadata body of ``GET /v2/models/{name}``."""
    width = len(version.features) if version.features is not None else -1
    outputs = [{"name": "predictions", "datatype": "BYTES", "shape": [-1]}]
    if version.classes is not None:
        outputs.append({"name": "probabilities", "datatype": "FP32", "shape": [-1, len(version.classes)]})
    return {
        "name": name, "versions": [version.id], "platform": "pipectl",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, width]}],
        "outputs": outputs,
        "parameters": {"features": version.features, "classes": version.classes},
    }


def _all_text(values: list) -> bool:
    return all(isinstance(v, str) for v in values)
