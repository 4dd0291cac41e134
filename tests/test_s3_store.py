"""The S3 store's writes as botocore sends them, under the faults S3
answers with: a chunk's write that fails once is sent again, and chunks go
whole or as files whether or not botocore computes request checksums; a
conditional write whose answer is lost is applied once, and one answered
409 ConditionalRequestConflict is tried again. The faults are injected by
a proxy in front of the tests' versitygw, which forwards every request
except the first of each key that a test picks."""

from __future__ import annotations

import http.client
import io
import os
import re
import threading
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import use_s3

from pipectl.pfs import PFS
from pipectl.pfs.objects import ObjectWriter
from pipectl.pfs.reader import iter_objects_range
from pipectl.store.s3 import S3Store

MiB = 1 << 20

FAULTS = {
    "slowdown": (503, b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"),
    "conflict": (409, b"<Error><Code>ConditionalRequestConflict</Code><Message>A conflicting conditional "
                      b"operation is currently in progress against this resource.</Message></Error>"),
}


class _FaultOnce(ThreadingHTTPServer):
    """Forwards every request to ``upstream`` (host, port), Host header and
    all (the signature covers it), except the first PUT of each key whose
    path matches ``pattern`` and that carries ``header`` (any PUT if None):
    ``fault`` is ``slowdown`` or ``conflict`` (answered so, not forwarded;
    see :data:`FAULTS`) or ``lose`` (forwarded and applied, then the
    connection dropped with no answer: a timeout after the write)."""

    def __init__(self, upstream: tuple[str, int], fault: str, pattern: str, header: str | None = None):
        self.upstream, self.fault, self.pattern, self.header = upstream, fault, re.compile(pattern), header
        self.refused, self.lock = Counter(), threading.Lock()
        super().__init__(("127.0.0.1", 0), _Forward)


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # answers "Expect: 100-continue" as a server does
    server: _FaultOnce

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urllib.parse.urlsplit(self.path).path
        first = False
        if (self.command == "PUT" and self.server.pattern.search(path)
                and (self.server.header is None or self.headers.get(self.server.header))):
            with self.server.lock:
                self.server.refused[path] += 1
                first = self.server.refused[path] == 1
        if first and self.server.fault in FAULTS:
            status, error = FAULTS[self.server.fault]
            self.send_response(status)
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
        finally:
            upstream.close()
        if first:  # "lose": the server applied the write; its answer is lost on the way back
            self.close_connection = True
            return
        self.send_response(answer.status)
        for k, v in answer.getheaders():
            if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _any

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def faulty(s3_server, monkeypatch):
    """Starts :class:`_FaultOnce` in front of a bucket on the tests'
    versitygw (this process's AWS variables point at the proxy): yields a
    function of the proxy's arguments after ``upstream`` that returns
    (proxy, bucket)."""
    bucket = use_s3(s3_server, monkeypatch)
    target = urllib.parse.urlsplit(s3_server.endpoint)
    proxies = []

    def start(*fault) -> tuple[_FaultOnce, str]:
        proxy = _FaultOnce((target.hostname, target.port), *fault)
        proxies.append(proxy)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.server_port}")
        return proxy, bucket
    yield start
    for proxy in proxies:
        proxy.shutdown()
        proxy.server_close()


@pytest.mark.parametrize("checksums", ["when_required", "when_supported"])
def test_chunk_writes_refused_once_are_sent_again(faulty, monkeypatch, checksums):
    """Over plain HTTP the store sends a chunk as it is (botocore signs it
    with its SHA-256 and computes no CRC32), and botocore cannot rewind
    such a body to retry it: a chunk refused once (503 SlowDown) is sent
    again as a file. When botocore computes request checksums (set, or
    over HTTPS) every chunk goes as a file it can read twice. Either way
    the stream is stored whole, each chunk after one refusal."""
    proxy, bucket = faulty("slowdown", "/objects/")
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


def _content(pfs: PFS, repo: str, ref: str, path: str) -> bytes:
    out = io.BytesIO()
    pfs.get_file(repo, ref, path, out)
    return out.getvalue()


def test_a_branch_move_whose_answer_is_lost_is_applied_once(faulty, tmp_path):
    """The compare-and-swap that lands a put-file is applied, then its
    answer lost; botocore sends it again and the server refuses the retry
    (412: the first attempt moved the branch). That refusal is the
    writer's own success: the file is appended once, in one commit."""
    proxy, bucket = faulty("lose", r"/repos/r/branches/master\.json$", "If-Match")
    pfs = PFS(S3Store(bucket, "pipectl"))
    pfs.create_repo("r")
    (tmp_path / "b.txt").write_bytes(b"hello\n")
    pfs.put_files("r", "master", [("/b.txt", str(tmp_path / "b.txt"))])
    assert list(proxy.refused.values()) == [2]  # the branch's record: lost, then refused
    assert _content(pfs, "r", "master", "/b.txt") == b"hello\n"
    assert len(pfs.list_commits("r", "master")) == 1


def test_a_commit_started_whose_branch_move_answer_is_lost_exists(faulty):
    """start_commit deletes the commit it made when its branch move is
    refused; a refusal of its own lost move must not delete the commit the
    branch now names."""
    proxy, bucket = faulty("lose", r"/repos/r/branches/master\.json$", "If-Match")
    pfs = PFS(S3Store(bucket, "pipectl"))
    pfs.create_repo("r")
    commit = pfs.start_commit("r", "master")
    assert list(proxy.refused.values()) == [2]
    assert pfs.inspect_branch("r", "master").head == commit.id
    assert pfs.inspect_commit("r", "master").is_open


def test_commit_record_writes_whose_answer_is_lost_are_applied_once(faulty, tmp_path):
    """The same for an open commit's record: put-file into it appends
    once, and finish-commit is not told the commit was already finished."""
    proxy, bucket = faulty("lose", r"/repos/r/commits/", "If-Match")
    pfs = PFS(S3Store(bucket, "pipectl"))
    pfs.create_repo("r")
    commit = pfs.start_commit("r", "master")
    (tmp_path / "b.txt").write_bytes(b"hello\n")
    pfs.put_files("r", "master", [("/b.txt", str(tmp_path / "b.txt"))])
    assert _content(pfs, "r", commit.id, "/b.txt") == b"hello\n"
    proxy.refused.clear()  # the finish: its answer lost too
    assert pfs.finish_commit("r", commit.id).finished
    assert list(proxy.refused.values()) == [2]  # lost, then refused: the write applied once


@pytest.mark.parametrize("kind", ["/objects/", "/trees/"])
def test_a_create_only_write_answered_409_is_tried_again(faulty, tmp_path, kind):
    """S3 answers a create-only write 409 ConditionalRequestConflict while
    another one of the key is in flight, and that writer may die: it does
    not mean the object exists. The write is sent again and the commit
    names objects that are stored."""
    proxy, bucket = faulty("conflict", kind, "If-None-Match")
    pfs = PFS(S3Store(bucket, "pipectl"))
    pfs.create_repo("r")
    (tmp_path / "a.bin").write_bytes(b"x" * 1000)
    pfs.put_files("r", "master", [("/a.bin", str(tmp_path / "a.bin"))])
    assert proxy.refused and set(proxy.refused.values()) == {2}
    assert _content(PFS(S3Store(bucket, "pipectl")), "r", "master", "/a.bin") == b"x" * 1000
