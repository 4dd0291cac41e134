"""Pachyderm's ``pod_spec`` and ``pod_patch``: a pipeline's own changes to
its worker pods' spec (the Kubernetes executor).

``pod_spec`` is JSON text merged into the pod spec pipectl builds, as a JSON
Merge Patch (RFC 7386: objects merge key by key, any other value replaces,
``null`` removes); ``pod_patch`` is JSON text holding a JSON Patch (RFC 6902:
``[{"op": "add", "path": "/containers/0/env/-", "value": {...}}]``) applied
after it, with the ``jsonpatch`` library. Both act on the pod's ``spec``
(containers ``user`` then ``storage``, volumes, security context...), as in
Pachyderm (``src/server/pps/server/worker_rc.go``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ..errors import InvalidArgument


def check(spec: dict) -> None:
    """Raise InvalidArgument when ``pod_spec`` is not a JSON object or
    ``pod_patch`` not a JSON Patch, naming the field."""
    import jsonpatch
    if spec.get("pod_spec"):
        try:
            merged = json.loads(spec["pod_spec"])
        except json.JSONDecodeError as e:
            raise InvalidArgument(f"pod_spec: not JSON ({e.msg} at character {e.pos})") from None
        if not isinstance(merged, dict):
            raise InvalidArgument("pod_spec: must be a JSON object (merged into the pod spec)")
    if spec.get("pod_patch"):
        try:
            jsonpatch.JsonPatch.from_string(spec["pod_patch"])
            patch = json.loads(spec["pod_patch"])
        except (json.JSONDecodeError, jsonpatch.InvalidJsonPatch) as e:
            raise InvalidArgument(f"pod_patch: not a JSON Patch ({e})") from None
        if not isinstance(patch, list) or not all(isinstance(op, dict) and "op" in op and "path" in op
                                                  for op in patch):
            raise InvalidArgument("pod_patch: must be a JSON Patch, a list of {op, path, ...} operations")


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with the JSON Merge Patch ``patch`` applied (RFC 7386,
    section 2, the algorithm as written there); ``target`` is not changed."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def apply(pod: dict, spec: dict) -> dict:
    """The pod spec ``pod`` with the spec's ``pod_spec`` merged in and its
    ``pod_patch`` applied. Raises InvalidArgument when the patch does not
    apply to it (a path that does not exist, a failed ``test``)."""
    import jsonpatch
    if spec.get("pod_spec"):
        pod = merge_patch(pod, json.loads(spec["pod_spec"]))
    if spec.get("pod_patch"):
        try:
            pod = jsonpatch.apply_patch(pod, json.loads(spec["pod_patch"]))
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
            raise InvalidArgument(f"pod_patch does not apply to the worker pod: {e}") from None
    return pod
