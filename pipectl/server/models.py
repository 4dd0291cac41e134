"""The model server seen from the pipectl server: the console shows which
model commit is served and lets a person try a prediction, through the
pipectl server (which alone needs to reach the model server, and checks the
console's token).

The model server is ``pipectl serve`` (see :mod:`pipectl.serving`), or any
server with its TorchServe-style ``/models`` and ``/predictions`` routes.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from ..errors import BadGateway, NotFound

TIMEOUT = 30.0
"""Seconds a call to the model server may take."""


class ModelServer:
    """The TorchServe-style API of a model server at ``url``
    (``http(s)://[user:password@]host:port``). Credentials in the URL are
    sent as HTTP basic auth and never appear in an error: errors reach
    read tokens and the console."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url.rstrip("/"))
        self._auth = ((urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password or ""))
                      if parts.username or parts.password else None)
        host = parts.hostname or ""
        netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
        self.url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    def _call(self, method: str, path: str, **kw: Any):
        import requests  # only when a model server is configured
        try:
            return requests.request(method, self.url + path, timeout=TIMEOUT, auth=self._auth, **kw)
        except requests.RequestException as e:  # its text repeats the URL: the type alone is said
            raise BadGateway(f"model server {self.url}: {type(e).__name__}") from None

    def models(self) -> list[dict]:
        """Each model the server has, as its ``GET /models/{name}`` describes
        it: ``modelName``, ``modelVersion`` (the model commit id, None
        before one loads), ``modelUrl`` (``pfs://repo@branch``), ``status``,
        and once loaded ``features``, ``classes``, ``provenance`` (``repo``,
        ``commit``, ``inputs``, ...). Raises BadGateway."""
        listed = self._call("GET", "/models")
        try:
            names = [m["modelName"] for m in listed.json()["models"]]
            return [self._call("GET", f"/models/{_segment(name)}").json()[0] for name in names]
        except (ValueError, KeyError, IndexError, TypeError):
            raise BadGateway(f"model server {self.url}: unexpected answer to GET /models "
                                   f"({listed.status_code})") from None

    def predict(self, name: str, body: bytes, content_type: str) -> tuple[int, bytes, dict[str, str]]:
        """POST ``body`` to ``/predictions/{name}``; returns the model
        server's status, JSON body and ``X-Model-Version`` header as they
        are (errors included: the model server's message is the one to
        show). Raises BadGateway when it cannot be reached."""
        answer = self._call("POST", f"/predictions/{_segment(name)}", data=body,
                            headers={"Content-Type": content_type})
        headers = {k: v for k, v in answer.headers.items() if k.lower() in ("x-model-version", "content-type")}
        return answer.status_code, answer.content, headers


def _segment(name: str) -> str:
    """A model name as one path segment of the model server's URL, whatever it holds."""
    return urllib.parse.quote(str(name), safe="")


def require(server: ModelServer | None) -> ModelServer:
    """``server``, or NotFound when the pipectl server has none configured."""
    if server is None:
        raise NotFound("no model server is configured: start pipectl server with --model-server URL")
    return server
