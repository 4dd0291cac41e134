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
