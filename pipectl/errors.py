"""Errors raised by pipectl. Each carries a one-line, user-facing message.

The CLI turns any :class:`PipectlError` into ``error: <message>`` on stderr
and exit status 1; anything else is a bug.
"""


class PipectlError(Exception):
    """Base class: a failure the user can act on (bad input, missing data)."""


class NotFound(PipectlError):
    """A repo, branch, commit, file, pipeline, job or datum does not exist."""


class AlreadyExists(PipectlError):
    """Creating something whose name is taken."""


class InvalidArgument(PipectlError):
    """A malformed name, spec or argument."""


class Conflict(PipectlError):
    """The operation is not allowed in the current state (e.g. writing into a
    finished commit, deleting a repo a pipeline reads)."""


class PreconditionFailed(PipectlError):
    """A compare-and-swap lost the race: the object changed since it was read."""


class StoreUnavailable(PipectlError):
    """The object store cannot be reached (after bounded retries)."""


class BadGateway(PipectlError):
    """A server that pipectl's server relies on (the model server) could
    not be reached or gave an answer that makes no sense."""


HTTP_STATUS: dict[type[PipectlError], int] = {
    InvalidArgument: 400, NotFound: 404, AlreadyExists: 409, Conflict: 409, PreconditionFailed: 412,
    BadGateway: 502, StoreUnavailable: 503,
}
"""The HTTP status of each kind of error in the server's answers (any other: 500)."""


def http_status(error: PipectlError) -> int:
    """The HTTP status :data:`HTTP_STATUS` gives ``error``'s kind, else 500."""
    return next((code for kind, code in HTTP_STATUS.items() if isinstance(error, kind)), 500)


def from_http(kind: str | None, message: str) -> PipectlError:
    """The error a server's answer ``{"error": message, "kind": kind}``
    stands for (a plain :class:`PipectlError` for an unknown kind)."""
    known = {k.__name__: k for k in HTTP_STATUS}
    return known.get(kind or "", PipectlError)(message)
