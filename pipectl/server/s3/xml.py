"""S3's XML documents, built and read with :mod:`xml.etree.ElementTree`.

Shapes follow the Amazon S3 API Reference (API version 2006-03-01):
ListAllMyBucketsResult, ListBucketResult (v1 and v2), the multipart
results, DeleteResult and Error; every result document is in S3's
namespace, as S3 writes it.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from typing import Any

from starlette.responses import Response

from .errors import S3Error

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_BODY = 1 << 20
"""The largest XML request body read (CompleteMultipartUpload, DeleteObjects)."""


def _add(parent: ET.Element, name: str, value: Any) -> None:
    """Append ``<name>value</name>``: a dict nests, a list repeats ``name``,
    a bool is ``true``/``false``, None is left out."""
    if value is None:
        return
    if isinstance(value, list):
        for item in value:
            _add(parent, name, item)
        return
    child = ET.SubElement(parent, name)
    if isinstance(value, dict):
        for key, inner in value.items():
            _add(child, key, inner)
    elif isinstance(value, bool):
        child.text = "true" if value else "false"
    else:
        child.text = str(value)


def document(root: str, fields: dict[str, Any], namespace: bool = True) -> bytes:
    """The XML document ``<root>`` holding ``fields`` (see :func:`_add`
    for how values become elements), with its declaration."""
    element = ET.Element(root, {"xmlns": NAMESPACE} if namespace else {})
    for key, value in fields.items():
        _add(element, key, value)
    return ET.tostring(element, encoding="utf-8", xml_declaration=True)


def response(root: str, fields: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """An ``application/xml`` response holding :func:`document`."""
    return Response(document(root, fields), status_code=status, media_type="application/xml", headers=headers)


def error_response(error: S3Error, resource: str, head: bool = False) -> Response:
    """S3's error document for ``error`` on ``resource`` (the request
    path); a HEAD request gets the status and no body, as S3 answers."""
    request_id = uuid.uuid4().hex[:16].upper()
    headers = dict(error.headers, **{"x-amz-request-id": request_id})
    if head:
        return Response(status_code=error.status, headers=headers)
    body = document("Error", {"Code": error.code, "Message": error.message, "Resource": resource,
                              "RequestId": request_id}, namespace=False)
    return Response(body, status_code=error.status, media_type="application/xml", headers=headers)


def parse(body: bytes, root: str) -> ET.Element:
    """The request document ``body`` whose root element is ``root`` (in
    S3's namespace or none). Raises S3Error MalformedXML (400)."""
    try:
        element = ET.fromstring(body)
    except ET.ParseError:
        raise S3Error("MalformedXML", 400, "The XML you provided was not well-formed") from None
    if strip(element.tag) != root:
        raise S3Error("MalformedXML", 400, f"expected a {root} document")
    return element


def strip(tag: str) -> str:
    """An element's tag without its ``{namespace}``."""
    return tag.rpartition("}")[2]


def children(element: ET.Element, name: str) -> list[ET.Element]:
    """The direct children of ``element`` named ``name`` (any namespace)."""
    return [c for c in element if strip(c.tag) == name]


def text(element: ET.Element, name: str) -> str | None:
    """The text of the first direct child named ``name``, or None."""
    found = children(element, name)
    return (found[0].text or "") if found else None
