"""Object stores and how one is chosen.

``PIPECTL_STORE`` (or the CLI's ``--store``) names the store:

- ``file:///some/dir``: a local directory (the embedded default, under the
  user's data directory, e.g. ``~/.local/share/pipectl/store``, when unset);
- ``s3://bucket[/prefix]``: an S3 bucket, with the endpoint and credentials
  from the standard AWS variables (``AWS_ENDPOINT_URL`` and friends).
"""

from __future__ import annotations

import os
import urllib.parse

from ..errors import InvalidArgument
from .base import ObjectStore
from .local import LocalStore

__all__ = ["ObjectStore", "LocalStore", "default_store_url", "open_store"]


def default_store_url() -> str:
    """The store URL used when neither ``--store`` nor ``PIPECTL_STORE`` is set."""
    import platformdirs  # here: 5-9 ms of start-up that a command given a store URL skips
    return "file://" + os.path.join(platformdirs.user_data_dir("pipectl"), "store")


def open_store(url: str | None = None) -> ObjectStore:
    """Open the store named by ``url`` (default: ``$PIPECTL_STORE``, else the
    embedded default). Raises InvalidArgument for an unsupported URL."""
    url = url or os.environ.get("PIPECTL_STORE") or default_store_url()
    parsed = urllib.parse.urlparse(url)
    if "@" in parsed.netloc:  # never echo it: it may hold a secret key
        raise InvalidArgument(f"store URL {parsed.scheme}://<credentials>@...: a store URL must not hold credentials; "
                              "give them in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if parsed.scheme == "file" or (parsed.scheme == "" and url.startswith("/")):
        path = urllib.parse.unquote(parsed.path if parsed.scheme else url)
        if parsed.netloc and parsed.netloc != "localhost":
            raise InvalidArgument(f"store URL {url!r}: use file:///absolute/path")
        return LocalStore(path)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise InvalidArgument(f"store URL {url!r}: missing bucket (s3://bucket/prefix)")
        from .s3 import S3Store  # botocore import is slow; only pay for it when used
        return S3Store(parsed.netloc, parsed.path)
    raise InvalidArgument(f"unsupported store URL {url!r}: use file:///dir or s3://bucket/prefix")
