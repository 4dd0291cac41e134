"""Errors a request can end with: an HTTP status and a one-line message.

The app renders them as JSON: TorchServe's ``{"code", "type", "message"}``
on its routes and KServe v2's ``{"error": message}`` under ``/v2``.
"""

from __future__ import annotations


class ServingError(Exception):
    """A request that cannot be answered. ``status`` is the HTTP status,
    ``kind`` a short CamelCase name of the problem (TorchServe's ``type``)."""

    status = 500
    kind = "InternalServerError"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(ServingError):
    """Malformed body, wrong feature count or names, bad values (400)."""

    status = 400
    kind = "BadRequest"


class ModelNotFound(ServingError):
    """The URL names a model this server does not serve (404)."""

    status = 404
    kind = "ModelNotFound"


class TooLarge(ServingError):
    """A request with more rows than the server takes at once (413)."""

    status = 413
    kind = "RequestEntityTooLarge"


class UnsupportedMediaType(ServingError):
    """A request body in a format the endpoint does not read (415)."""

    status = 415
    kind = "UnsupportedMediaType"


class ModelUnavailable(ServingError):
    """No model version is loaded yet (503); the message says why."""

    status = 503
    kind = "ServiceUnavailable"
