"""The S3 store's writes as botocore sends them: a chunk's write that
fails once is sent again, and chunks go whole or as files whether or not
botocore computes request checksums. The faults are injected by a proxy in
front of the tests' versitygw, which forwards every request and answers
the first PUT of each chunk with 503 SlowDown, as S3 does under load."""

from __future__ import annotations

import http.client
import io
import os
import threading
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import use_s3

from pipectl.pfs.objects import ObjectWriter
from pipectl.pfs.reader import iter_objects_range
from pipectl.store.s3 import S3Store

MiB = 1 << 20


class _SlowDownOnce(ThreadingHTTPServer):
    """Forwards every request to ``upstream`` (host, port), Host header and
    all (the signature covers it), except the first PUT of each key under
    ``objects/``, which it answers with 503 SlowDown after reading its body."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream, self.refused, self.lock = upstream, Counter(), threading.Lock()
        super().__init__(("127.0.0.1", 0), _Forward)


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # answers "Expect: 100-continue" as a server does
    server: _SlowDownOnce

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urllib.parse.urlsplit(self.path).path
        if self.command == "PUT" and "/objects/" in path:
            with self.server.lock:
                self.server.refused[path] += 1
                first = self.server.refused[path] == 1
            if first:
                error = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                self.send_response(503)
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)
                return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("expect", "connection")}
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=30)
        try:
            upstream.request(self.command, self.path, body, headers)
            answer = upstream.getresponse()
            payload = answer.read()
            self.send_response(answer.status)
            for k, v in answer.getheaders():
                if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        finally:
            upstream.close()

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _any

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def slowdown(s3_server, monkeypatch):
    """A bucket on the tests' versitygw reached through :class:`_SlowDownOnce`
    (this process's AWS variables point at the proxy); yields (proxy, bucket)."""
    bucket = use_s3(s3_server, monkeypatch)
    target = urllib.parse.urlsplit(s3_server.endpoint)
    proxy = _SlowDownOnce((target.hostname, target.port))
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.server_port}")
    try:
        yield proxy, bucket
    finally:
        proxy.shutdown()
        proxy.server_close()


@pytest.mark.parametrize("checksums", ["when_required", "when_supported"])
def test_chunk_writes_refused_once_are_sent_again(slowdown, monkeypatch, checksums):
    """Over plain HTTP the store sends a chunk as it is (botocore signs it
    with its SHA-256 and computes no CRC32), and botocore cannot rewind
    such a body to retry it: a chunk refused once (503 SlowDown) is sent
    again as a file. When botocore computes request checksums (set, or
    over HTTPS) every chunk goes as a file it can read twice. Either way
    the stream is stored whole, each chunk after one refusal."""
    proxy, bucket = slowdown
    if checksums == "when_supported":
        monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", checksums)
    store = S3Store(bucket, "pipectl")
    data = os.urandom(24 * MiB)
    with ObjectWriter(store) as writer:
        entry = writer.put_stream(io.BytesIO(data))
    assert b"".join(iter_objects_range(store, entry.objects, 0, len(data))) == data
    assert len(proxy.refused) == len(entry.objects) >= 2
    assert set(proxy.refused.values()) == {2}, proxy.refused  # each chunk refused once, then stored


def test_an_empty_key_is_refused(s3_server, monkeypatch):
    """With no prefix, an empty key would address the bucket itself (a
    GET of it lists the bucket); the store refuses it."""
    store = S3Store(use_s3(s3_server, monkeypatch))
    with pytest.raises(ValueError, match="cannot be empty"):
        store.read("")
