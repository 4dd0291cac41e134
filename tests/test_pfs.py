"""Versioned repositories: round trips, dedupe, errors and faults, on both stores."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import blake3
import pytest
from helpers import assert_clean_error, file_bytes, run_cli, snapshot

from pipectl import glob as globs
from pipectl.errors import Conflict, InvalidArgument, NotFound
from pipectl.pfs import PFS, keys, objects, reader
from pipectl.pfs.hashing import content_hash
from pipectl.pfs.tree import SHARD_FILES, FileEntry, Tree, parse_shards
from pipectl.store import ObjectStore, open_store
from pipectl.store.base import FileRange


def make_tree(root, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


SAMPLE = {
    "a.csv": b"x,y\n1,2\n",
    "empty.txt": b"",
    "sub/b.bin": bytes(range(256)) * 40,
    "sub/deeper/c.txt": "naïve ünïcode\n".encode(),
}


def test_round_trip_directory_via_cli(store_url, tmp_path, cli):
    """The README walk-through: create a repo, put a directory, list and
    inspect commits, get every file back byte-identical."""
    src = tmp_path / "data"
    files = dict(SAMPLE)
    files["big.bin"] = os.urandom(objects.CHUNK_MAX + 12345)  # spans two chunks at least
    make_tree(src, files)
    assert cli("create-repo", "images").code == 0
    r = cli("put-file", "images", "master", "/", "-r", "-f", str(src))
    assert r.code == 0, r
    listing = cli("list-commit", "images")
    assert listing.code == 0 and len(listing.out.strip().splitlines()) == 2
    assert listing.out.split()[:7] == ["REPO", "BRANCH", "COMMIT", "PARENT", "STARTED", "DURATION", "SIZE"]
    info = json.loads(cli("inspect-commit", "images", "master", "--raw").out)
    assert info["size_bytes"] == sum(len(v) for v in files.values())
    assert info["finished"] and info["origin"] == "user" and info["parent"] is None
    for rel, data in files.items():
        got = cli("get-file", "images", "master", "/" + rel)
        assert got.code == 0, got
        assert got.stdout_bytes == data, rel
    out = tmp_path / "copy.bin"
    assert cli("get-file", "images", info["id"], "/big.bin", "-o", str(out)).code == 0
    assert out.read_bytes() == files["big.bin"]
    names = [row["path"] for row in json.loads(cli("list-file", "images", "master", "/sub", "--raw").out)]
    assert names == ["/sub/b.bin", "/sub/deeper"]


def test_put_same_bytes_twice_uploads_nothing(pfs, store, tmp_path):
    pfs.create_repo("r")
    make_tree(tmp_path / "d", SAMPLE)
    sources = [("/" + k, str(tmp_path / "d" / k)) for k in SAMPLE]
    _, first = pfs.put_files("r", "master", sources)
    assert first.bytes_uploaded == sum(len(v) for v in SAMPLE.values())
    before = sorted(store.list("objects/"))
    _, second = pfs.put_files("r", "master", sources, overwrite=True)
    assert second.bytes_uploaded == 0 and second.objects_uploaded == 0
    # the same bytes at new paths in another repo are stored once too
    pfs.create_repo("other")
    _, third = pfs.put_files("other", "master", [("/copy" + p, s) for p, s in sources])
    assert third.bytes_uploaded == 0
    assert sorted(store.list("objects/")) == before
    assert len(pfs.list_commits("r")) == 2


def test_append_and_overwrite(pfs, tmp_path):
    pfs.create_repo("r")
    f = tmp_path / "x"
    f.write_bytes(b"one\n")
    pfs.put_files("r", "master", [("/x", str(f))])
    pfs.put_files("r", "master", [("/x", str(f))])  # pachctl 1.x appends
    assert _read(pfs, "r", "master", "/x") == b"one\none\n"
    pfs.put_files("r", "master", [("/x", str(f))], overwrite=True)
    assert _read(pfs, "r", "master", "/x") == b"one\n"
    assert _read(pfs, "r", "master^", "/x") == b"one\none\n"
    assert _read(pfs, "r", "master~2", "/x") == b"one\n"


def _read(pfs, repo, ref, path) -> bytes:
    import io
    buf = io.BytesIO()
    pfs.get_file(repo, ref, path, buf)
    return buf.getvalue()


def test_open_commit_lifecycle(pfs, tmp_path):
    pfs.create_repo("r")
    f = tmp_path / "x"
    f.write_bytes(b"data")
    c = pfs.start_commit("r", "master")
    pfs.put_files("r", "master", [("/a", str(f))])  # the branch's open head
    pfs.put_files("r", c.id, [("/b", str(f))])       # by id
    assert pfs.inspect_commit("r", "master").is_open
    with pytest.raises(Conflict):
        pfs.start_commit("r", "master")
    done = pfs.finish_commit("r", c.id)
    assert done.size_bytes == 8 and not done.is_open
    with pytest.raises(Conflict):
        pfs.put_files("r", c.id, [("/c", str(f))])
    assert [n.path for n in pfs.list_files("r", "master")] == ["/a", "/b"]


def test_branches_delete_and_diff(pfs, tmp_path):
    pfs.create_repo("r")
    f = tmp_path / "x"
    f.write_bytes(b"1")
    first, _ = pfs.put_files("r", "master", [("/dir/a", str(f)), ("/dir/b", str(f))])
    pfs.create_branch("r", "dev", "master")
    second = pfs.delete_file("r", "master", "/dir/a")
    added, removed = pfs.diff_files("r", "master")
    assert (added, [n.path for n in removed]) == ([], ["/dir/a"])
    assert pfs.inspect_branch("r", "dev").head == first.id
    pfs.delete_commit("r", second.id)
    assert pfs.inspect_commit("r", "master").id == first.id
    with pytest.raises(NotFound):
        pfs.inspect_commit("r", second.id)
    with pytest.raises(NotFound):
        pfs.delete_file("r", "master", "/nope")
    assert [b.name for b in pfs.list_branches("r")] == ["dev", "master"]


def test_a_commit_another_branch_builds_on_is_not_deleted(pfs, tmp_path):
    """delete-commit of a branch's head that another branch's commits have
    as parent is refused: deleting it would cut that branch's history."""
    pfs.create_repo("r")
    f = tmp_path / "x"
    f.write_bytes(b"1")
    base, _ = pfs.put_files("r", "master", [("/one", str(f))])
    pfs.create_branch("r", "dev", "master")
    pfs.put_files("r", "dev", [("/two", str(f))])
    with pytest.raises(Conflict, match="branch dev builds on it"):
        pfs.delete_commit("r", "master")
    assert pfs.inspect_commit("r", "dev^").id == base.id
    third, _ = pfs.put_files("r", "master", [("/three", str(f))])
    pfs.delete_commit("r", "master")  # a head no other branch builds on
    assert pfs.inspect_commit("r", "master").id == base.id


@pytest.mark.parametrize("pattern,expected", [
    ("/", ["/"]),
    ("/*", ["/a", "/b.txt"]),
    ("/*/*", ["/a/x", "/a/y"]),
    ("/**", ["/a", "/a/x", "/a/x/1", "/a/y", "/b.txt"]),
    ("/a/x/*", ["/a/x/1"]),
    ("*.txt", ["/b.txt"]),
    ("/[ab]", ["/a"]),
])
def test_glob_semantics(pattern, expected):
    e = FileEntry(1, ("0" * 64,))
    tree = Tree({"/a/x/1": e, "/a/y": e, "/b.txt": e})
    assert tree.glob(pattern) == expected


@pytest.mark.parametrize("pattern,expected", [
    ("/*", ["/a", "/a-1", "/a.txt", "/d", "/d-1"]),
    ("/*/*", ["/a-1/x", "/a/b", "/d/a", "/d/a-1", "/d/a.txt"]),
])
def test_glob_takes_names_that_extend_a_file_name(pattern, expected):
    """Names that sort between a file and its would-be children (``/a.txt``,
    ``/a-1`` after ``/a``) are matches of their own; a file that also has
    files below it is matched once."""
    e = FileEntry(1, ("0" * 64,))
    tree = Tree({p: e for p in ["/a", "/a/b", "/a-1/x", "/a.txt", "/d/a", "/d/a-1", "/d/a.txt", "/d-1"]})
    assert tree.glob(pattern) == expected


def test_glob_rejects_unterminated_class():
    with pytest.raises(InvalidArgument):
        globs.compile_glob("/[ab")


def test_listing_aligns_and_raw(store_url, tmp_path, cli):
    cli("create-repo", "short")
    cli("create-repo", "a-much-longer-name", "-d", "described")
    out = cli("list-repo").out.splitlines()
    assert out[0].startswith("NAME") and len(out) == 3
    col = out[0].index("CREATED")
    assert all(line[col - 3:col] == "   " and line[col] != " " for line in out)
    data = json.loads(cli("list-repo", "--raw").out)
    assert {r["name"] for r in data} == {"short", "a-much-longer-name"}


def test_bad_input_is_one_line_and_changes_nothing(store_url, store, tmp_path, cli):
    (tmp_path / "f").write_bytes(b"1")
    assert cli("create-repo", "r").code == 0
    assert cli("put-file", "r", "master", "/f", "-f", str(tmp_path / "f")).code == 0
    assert cli("put-file", "r", "master", "/f2", "-f", str(tmp_path / "f")).code == 0
    commit = cli("start-commit", "r", "dev").out.strip()
    assert cli("finish-commit", "r", commit).code == 0
    before = snapshot(store)
    cases = [
        (("list-commit", "nope"), "repo nope not found"),
        (("get-file", "r", "nobranch", "/f"), "branch nobranch not found"),
        (("get-file", "r", "0" * 32, "/f"), "not found"),
        (("get-file", "r", "master", "/missing"), "file /missing not found"),
        (("create-repo", "bad name"), "invalid repo name"),
        (("create-repo", "r"), "already exists"),
        (("put-file", "r", "bad/branch", "/f", "-f", str(tmp_path / "f")), "invalid branch name"),
        (("put-file", "r", commit, "/g", "-f", str(tmp_path / "f")), "is finished"),
        (("put-file", "r", "master", "/g", "-f", str(tmp_path / "absent")), "does not exist"),
        (("put-file", "nope", "master", "/g", "-f", str(tmp_path / "f")), "repo nope not found"),
        (("inspect-commit", "r", "master~5"), "past the first commit"),
        (("get-file", "r", "master", "/"), "is a directory"),
        (("finish-commit", "r", commit), "already finished"),
        (("delete-commit", "r", "master^"), "not the head"),
    ]
    for args, needle in cases:
        assert_clean_error(cli(*args), needle)
    assert snapshot(store) == before


def test_a_path_is_a_file_or_a_directory_never_both(pfs, tmp_path, cli):
    """put-file refuses a file below a file, in the commit or in the same
    put, and a file where a directory is, with one line; the branch keeps
    its head (content already uploaded stays, unreferenced, for gc)."""
    (tmp_path / "f").write_bytes(b"1")
    assert cli("create-repo", "r").code == 0
    assert cli("put-file", "r", "master", "/a", "-f", str(tmp_path / "f")).code == 0
    assert cli("put-file", "r", "master", "/dir/b", "-f", str(tmp_path / "f")).code == 0
    head = cli("inspect-commit", "r", "master", "--raw").out
    cases = [
        (("put-file", "r", "master", "/a/b", "-f", str(tmp_path / "f")), "/a/b: /a is a file"),
        (("put-file", "r", "master", "/a/b/c", "-f", str(tmp_path / "f")), "/a/b/c: /a is a file"),
        (("put-file", "r", "master", "/dir", "-f", str(tmp_path / "f")), "a directory of that name exists"),
    ]
    for args, needle in cases:
        assert_clean_error(cli(*args), needle)
    with pytest.raises(Conflict, match="/m/x: /m is a file"):  # both in one put
        pfs.put_files("r", "master", [("/m/x", str(tmp_path / "f")), ("/m", str(tmp_path / "f"))])
    assert cli("inspect-commit", "r", "master", "--raw").out == head
    # names that extend a file's name are no directory of it
    assert cli("put-file", "r", "master", "/a.txt", "-f", str(tmp_path / "f")).code == 0
    assert cli("put-file", "r", "master", "/a-1/b", "-f", str(tmp_path / "f")).code == 0


def test_a_file_that_shrinks_while_being_stored_fails_the_put_cleanly(pfs, tmp_path):
    """A large file truncated during its put (here once its first chunk is
    stored, at a length that leaves every chunk in flight whole) fails the
    put with one line naming the file; the branch does not move."""

    f = tmp_path / "big"
    f.write_bytes(os.urandom(16 * objects.CHUNK_MAX))
    pfs.create_repo("r")
    shrunk = []

    def truncate_once(_n: int) -> None:  # runs on a chunk thread once its chunk is stored
        if not shrunk:
            # past every page mapped so far: the chunks in flight (CHUNK_UPLOADS of them),
            # the next one cut and the cutter's window, each at most CHUNK_MAX bytes
            os.truncate(f, (objects.CHUNK_UPLOADS + 3) * objects.CHUNK_MAX + 100)
            shrunk.append(True)

    with pytest.raises(Conflict, match=f"{f} shrank while being stored"):
        pfs.put_files("r", "master", [("/big", str(f))], progress=truncate_once)
    assert shrunk
    with pytest.raises(NotFound):  # no commit was made
        pfs.inspect_commit("r", "master")


def _written_during_copy(store: ObjectStore, path: str) -> ObjectStore:
    """``store``, during whose copy of one chunk another process writes
    into the file being put (what a put racing an editor or a log writer
    meets); the write lands after the chunk was hashed and before its
    bytes are copied."""
    done = []

    class Racing(type(store)):  # type: ignore[misc]
        def put_content(self, key, data, *args, **kwargs):
            if isinstance(data, FileRange) and not done:
                done.append(key)
                with open(path, "r+b") as f:  # same size, other bytes
                    f.seek(data.offset)
                    f.write(b"\xff" * 4096)
            return super().put_content(key, data, *args, **kwargs)

    store.__class__ = Racing
    return store


def _mismatched(store: ObjectStore) -> list[str]:
    """The objects whose bytes do not hash to their name."""
    return [k for k in store.list("objects/") if content_hash(store.read(k)) != k.rsplit("/", 1)[1]]


def test_a_file_written_while_being_put_never_stores_an_object_under_a_wrong_name(store_url, tmp_path):
    """A big file overwritten in place during its put (bytes of a chunk
    changed after the chunk was hashed, before it was copied into the
    store) must not leave an object whose bytes differ from its content
    hash: every later put of the true bytes would be deduplicated against
    it and read back the other bytes, in any repo. On local disk, where a
    chunk is hashed from the file and copied from it by the kernel, the
    put fails, naming the file; into S3 a file is read once into memory
    and hashed and sent from there, so the put stores the bytes it read
    (as ``cp`` would copy them), each under its own name."""
    f = tmp_path / "big"
    original = os.urandom(3 * objects.CHUNK_MAX)
    f.write_bytes(original)
    racing = PFS(_written_during_copy(open_store(store_url), str(f)))
    racing.create_repo("a")
    if racing.store.copies_file_ranges:
        with pytest.raises(Conflict, match=f"{f} changed while being stored"):
            racing.put_files("a", "master", [("/big", str(f))])
    else:
        def overwrite(_n: int) -> None:  # once the first chunk is stored: bytes of the next ones change
            with open(f, "r+b") as out:
                out.seek(2 * objects.CHUNK_MAX)
                out.write(b"\xff" * 4096)
        racing.put_files("a", "master", [("/big", str(f))], progress=overwrite)
    store = open_store(store_url)
    assert _mismatched(store) == []
    # an innocent put of the original bytes, in another repo, reads back what it put
    pfs = PFS(store)
    pfs.create_repo("b")
    pfs.put_files("b", "master", [("/copy", io.BytesIO(original))])
    out = io.BytesIO()
    pfs.get_file("b", "master", "/copy", out)
    assert out.getvalue() == original


def _put_proc(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "pipectl", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def test_eight_concurrent_writers_all_land(store_url, pfs, tmp_path):
    pfs.create_repo("r")
    procs = []
    for i in range(8):
        f = tmp_path / f"f{i}"
        f.write_bytes(f"writer {i}\n".encode())
        procs.append(_put_proc(["put-file", "r", "master", f"/f{i}", "-f", str(f)]))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    commits = pfs.list_commits("r", "master")
    assert len(commits) == 8
    chain = [c.parent for c in commits[:-1]]
    assert chain == [c.id for c in commits[1:]]  # linear: each commit's parent is the previous
    assert sorted(n.path for n in pfs.list_files("r", "master")) == [f"/f{i}" for i in range(8)]


def test_put_file_killed_midway_leaves_branch_unchanged(store_url, pfs, tmp_path, cli):
    pfs.create_repo("r")
    (tmp_path / "seed").write_bytes(b"seed")
    pfs.put_files("r", "master", [("/seed", str(tmp_path / "seed"))])
    head = pfs.inspect_commit("r", "master").id
    proc = _put_proc(["put-file", "r", "master", "/big", "-f", "-"], stdin=subprocess.PIPE)
    chunk = os.urandom(1024 * 1024)
    for _ in range(2 * objects.CHUNK_MAX // len(chunk) + 3):  # past two whole windows: some objects stored
        proc.stdin.write(chunk)
    proc.stdin.flush()
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert pfs.inspect_commit("r", "master").id == head
    assert [c.id for c in pfs.list_commits("r")] == [head]
    assert [n.path for n in pfs.list_files("r", "master")] == ["/seed"]
    r = cli("put-file", "r", "master", "/small", "-f", str(tmp_path / "seed"))
    assert r.code == 0, r
    assert len(pfs.list_commits("r")) == 2


def test_s3_endpoint_down_fails_fast(tmp_path):
    from helpers import free_port
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
           "PIPECTL_STORE": "s3://bucket/p"}
    began = time.monotonic()
    r = run_cli("list-repo", env=env, timeout=120)
    assert_clean_error(r, "cannot reach S3 endpoint")
    assert time.monotonic() - began < 60


def test_unsupported_store_url(tmp_path):
    assert_clean_error(run_cli("list-repo", env={"PIPECTL_STORE": "ftp://x"}), "unsupported store URL")


def test_put_file_from_url_and_stdin(store_url, pfs, tmp_path, cli):
    import http.server
    import threading
    (tmp_path / "served.txt").write_bytes(b"over http\n")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pfs.create_repo("r")
        url = f"http://127.0.0.1:{server.server_port}/served.txt"
        assert cli("put-file", "r", "master", "-f", url).code == 0
        assert cli("put-file", "r", "master", "/in.txt", "-f", "-", input=b"piped\n").code == 0
        assert _read(pfs, "r", "master", "/served.txt") == b"over http\n"
        assert _read(pfs, "r", "master", "/in.txt") == b"piped\n"
        assert_clean_error(cli("put-file", "r", "master", "-f", url + ".missing"), "cannot fetch")
    finally:
        server.shutdown()


def test_content_is_addressed_by_blake3(pfs, store, tmp_path):
    """Objects (small files and each chunk of a large one, cut where FastCDC
    cuts it: pyfastcdc, asked here directly, with pipectl's parameters) and
    trees are stored under the BLAKE3-256 of their bytes, computed here by
    the blake3 package itself, and each object holds its own chunk's bytes."""
    import pyfastcdc
    small = b"content addressed\n"
    large = os.urandom((objects.CHUNK_UPLOADS + 1) * objects.CHUNK_MAX + 12345)  # more chunks than threads
    (tmp_path / "small").write_bytes(small)
    (tmp_path / "large").write_bytes(large)
    pfs.create_repo("r")
    pfs.put_files("r", "master", [("/small", str(tmp_path / "small")), ("/large", str(tmp_path / "large"))])
    cdc = pyfastcdc.FastCDC(objects.CHUNK_AVG, min_size=objects.CHUNK_MIN, max_size=objects.CHUNK_MAX)
    cuts = [bytes(c.data) for c in cdc.cut_buf(large)]
    assert len(cuts) > objects.CHUNK_UPLOADS + 1 and all(
        objects.CHUNK_MIN <= len(c) <= objects.CHUNK_MAX for c in cuts[:-1])
    for piece in [small] + cuts:
        assert store.read(keys.object_key(blake3.blake3(piece).hexdigest())) == piece
    entry = pfs.read_tree(pfs.inspect_commit("r", "master")).files["/large"]
    assert list(entry.objects) == [blake3.blake3(c).hexdigest() for c in cuts]
    assert file_bytes(pfs, "r")["/large"] == large
    commit = pfs.inspect_commit("r", "master")
    assert blake3.blake3(store.read(f"trees/{commit.tree}")).hexdigest() == commit.tree
    assert pfs.inspect_file("r", "master", "/small").hash == blake3.blake3(small).hexdigest()


def test_small_files_are_packed(pfs, store, tmp_path):
    """Small files put together are stored as packs (one object per
    PACK_SIZE bytes, not one per file); each reads back byte-identical and
    keeps its own content hash; a duplicate and an empty file cost nothing;
    the same files put again, unchanged or into another repo, store nothing."""
    files = {f"s/{i:03d}": os.urandom(100 + i) for i in range(300)}
    files.update({f"m/{i:02d}": os.urandom(objects.SMALL) for i in range(objects.PACK_SIZE // objects.SMALL)})
    files["t/dup"], files["empty"] = files["s/007"], b""
    files["large"] = os.urandom(objects.SMALL + 1)  # not small: stored on its own
    make_tree(tmp_path / "d", files)
    sources = [("/" + k, str(tmp_path / "d" / k)) for k in sorted(files)]
    pfs.create_repo("r")
    _, stats = pfs.put_files("r", "master", sources)
    # m/* fill one pack to PACK_SIZE; s/* (and t/dup) make a second; large is its own object
    assert stats.objects_uploaded == 3 and len(list(store.list("objects/"))) == 3
    assert stats.bytes_uploaded == sum(len(v) for k, v in files.items() if k != "t/dup")
    assert file_bytes(pfs, "r") == {"/" + k: v for k, v in files.items()}
    for k in ("s/000", "t/dup", "m/03", "large"):
        assert pfs.inspect_file("r", "master", "/" + k).hash == blake3.blake3(files[k]).hexdigest()
    before = sorted(store.list("objects/"))
    _, again = pfs.put_files("r", "master", sources, overwrite=True)
    pfs.create_repo("other")
    _, other = pfs.put_files("other", "master", sources)
    assert again.bytes_uploaded == other.bytes_uploaded == 0
    assert sorted(store.list("objects/")) == before
    # one file put alone is its own object, with the same identity as when packed
    pfs.create_repo("single")
    pfs.put_files("single", "master", [("/s/007", str(tmp_path / "d" / "s/007"))])
    assert pfs.diff_files("single", "master", "/s/007", "r", "master") == ([], [])


def test_read_packed_reads_nearby_files_together(pfs, store, tmp_path):
    """read_packed (a worker's read-ahead of its next datums' inputs) gets
    every packed file's bytes; files of one pack that lie close together
    come in one ranged read, and with ``gap=0`` every second file takes its
    own (S3 requests counted by botocore's event hook)."""
    files = {f"{i:03d}": os.urandom(1000 + i) for i in range(100)}
    make_tree(tmp_path / "d", files)
    pfs.create_repo("r")
    pfs.put_files("r", "master", [("/" + k, str(tmp_path / "d" / k)) for k in sorted(files)])
    tree = pfs.read_tree(pfs.inspect_commit("r", "master"))
    every_other = {tree.files["/" + k].objects[0]: v for k, v in sorted(files.items())[::2]}
    requests = []
    if hasattr(store, "client"):
        store.client.meta.events.register("before-send.s3.GetObject", lambda **kw: requests.append(kw))
    assert reader.read_packed(store, every_other) == every_other
    assert reader.read_packed(store, every_other, gap=0) == every_other
    if hasattr(store, "client"):
        assert len(requests) == 1 + 50


def test_truncated_pack_is_a_clean_error(store_url, store, pfs, tmp_path):
    """A pack cut short (a damaged store) fails get-file with one line."""
    make_tree(tmp_path / "d", {"a": b"first file\n", "b": b"second file\n"})
    pfs.create_repo("r")
    pfs.put_files("r", "master", [("/a", str(tmp_path / "d" / "a")), ("/b", str(tmp_path / "d" / "b"))])
    [pack] = list(store.list("objects/"))
    store.write(pack, store.read(pack)[:15])
    assert run_cli("get-file", "r", "master", "/a").stdout_bytes == b"first file\n"
    assert_clean_error(run_cli("get-file", "r", "master", "/b"), "ends before")


def test_sha256_named_content_stays_readable(store, tmp_path):
    """A store written when content was named by SHA-256 (objects, tree and
    commit rewritten here into that form) still reads, and putting the same
    bytes again stores them under their BLAKE3 name beside the old ones."""
    data = b"written by an older pipectl\n"
    (tmp_path / "f").write_bytes(data)
    pfs = PFS(store)
    pfs.create_repo("r")
    commit, _ = pfs.put_files("r", "master", [("/f", str(tmp_path / "f"))])
    old_name = hashlib.sha256(data).hexdigest()
    store.write(keys.object_key(old_name), data)
    store.delete(keys.object_key(blake3.blake3(data).hexdigest()))
    tree = json.loads(store.read(f"trees/{commit.tree}"))
    tree["files"]["/f"][1] = [old_name]
    tree_bytes = json.dumps(tree, sort_keys=True, separators=(",", ":")).encode()
    old_tree = hashlib.sha256(tree_bytes).hexdigest()
    store.write(f"trees/{old_tree}", tree_bytes)
    record_key = f"repos/r/commits/{commit.id}.json"
    record = json.loads(store.read(record_key))
    record["tree"] = old_tree
    store.write(record_key, json.dumps(record).encode())

    old = PFS(store)
    assert old.inspect_commit("r", commit.id).tree == old_tree
    assert file_bytes(old, "r", commit.id) == {"/f": data}
    assert old.inspect_file("r", commit.id, "/f").hash == old_name
    again, _ = old.put_files("r", "master", [("/g", str(tmp_path / "f"))])
    assert file_bytes(old, "r", again.id) == {"/f": data, "/g": data}
    assert old.inspect_file("r", again.id, "/g").hash == blake3.blake3(data).hexdigest()
    assert run_cli("get-file", "r", "master", "/f").stdout_bytes == data


def test_progress_bar_only_on_a_terminal(store_url, tmp_path):
    """Many-file uploads show a progress bar when stdout is a terminal, and
    print nothing when it is a pipe."""
    import pty
    src = tmp_path / "many"
    make_tree(src, {f"f{i:03d}": b"x" * 100 for i in range(80)})
    assert run_cli("create-repo", "r").code == 0
    quiet = run_cli("put-file", "r", "master", "/quiet", "-r", "-f", str(src))
    assert quiet.code == 0 and quiet.out == ""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pipectl", "put-file", "r", "master", "/tty", "-r", "-f", str(src)],
                            stdout=follower, stderr=subprocess.PIPE, env=dict(os.environ, COLUMNS="100"))
    os.close(follower)
    shown = b""
    while True:
        try:
            piece = os.read(leader, 4096)
        except OSError:
            break
        if not piece:
            break
        shown += piece
    assert proc.wait(60) == 0
    os.close(leader)
    assert b"put 80 files" in shown


def test_usage_errors_are_one_line(tmp_path):
    for args in (("get-file", "r"), ("no-such-command",), ("put-file", "r", "master", "--bogus")):
        r = run_cli(*args, env={"PIPECTL_STORE": "file://" + str(tmp_path / "s")})
        assert r.code == 2 and "Traceback" not in r.err, r
        lines = r.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "--help" in lines[0], r


def test_delete_repo_refuses_while_a_pipeline_reads_it(store_url, cli, tmp_path):
    assert cli("create-repo", "src").code == 0
    spec = {"pipeline": {"name": "reader"}, "transform": {"image": "none", "cmd": ["true"]},
            "input": {"pfs": {"repo": "src", "glob": "/*"}}}
    assert cli("create-pipeline", "-f", "-", input=json.dumps(spec).encode()).code == 0
    assert_clean_error(cli("delete-repo", "src"), "used by pipeline(s) reader", "--force")
    assert cli("inspect-repo", "src").code == 0
    assert cli("delete-repo", "src", "--force").code == 0
    assert_clean_error(cli("inspect-repo", "src"), "repo src not found")
    assert_clean_error(cli("delete-repo", "src"), "repo src not found")


def test_big_trees_are_stored_in_shards_and_read_in_part(store):
    """A commit of more than SHARD_FILES files stores its tree as shards:
    every query (list-file, inspect-file, get-file, glob-file, diff-file,
    the whole tree) answers as from the whole tree; a fresh reader asking
    about one directory reads only the shards that can hold it, and one
    listing the root skips the shards that lie inside one top directory
    (the others may be missing without it noticing); a commit changing one
    file stores a shard or two, not the whole tree again."""
    n = 4 * SHARD_FILES
    paths = [f"/d{i // 20_000}/e{(i // 1000) % 20:02d}/f{i % 1000:04d}" for i in range(n)]
    pfs = PFS(store)
    pfs.create_repo("big")
    with objects.ObjectWriter(store) as writer:
        entries = writer.put_blobs([i.to_bytes(4, "big") * 4 for i in range(n)])
    commit = pfs.put_entries("big", "master", list(zip(paths, entries)))
    shards = parse_shards(store.read(keys.tree(commit.tree)))
    assert shards is not None and len(shards) > 1
    whole = Tree(dict(zip(paths, entries)))
    fresh = PFS(store)
    assert fresh.read_tree(fresh.inspect_commit("big", "master")).files == whole.files
    fresh = PFS(store)
    for path in ("/d1/e07", "/d1", "/"):
        assert fresh.list_files("big", "master", path) == whole.list_dir(path), path
    assert fresh.inspect_file("big", "master", "/d1/e07") == whole.node("/d1/e07")
    assert fresh.inspect_file("big", "master", "/d1/e07/f0042") == whole.node("/d1/e07/f0042")
    for pattern in ("/d1/e07/f00*", "/*/e03/f0001", "/d0/*"):
        assert fresh.glob_files("big", "master", pattern) == [whole.node(p) for p in whole.glob(pattern)], pattern
    with pytest.raises(NotFound):
        fresh.list_files("big", "master", "/d1/e07/nope")
    got = io.BytesIO()
    fresh.get_file("big", "master", "/d1/e19/f0999", got)
    assert got.getvalue() == (n - 1).to_bytes(4, "big") * 4

    def hidden(keep):  # shards not kept, taken out of the store for a while
        return {s.hash: store.read(keys.tree(s.hash)) for s in shards if not keep(s)}

    def one_top_dir(s):
        return s.first.split("/")[1] == s.last.split("/")[1]
    for path, keep in (("/d1/e07", lambda s: s.overlaps("/d1/e07")), ("/", lambda s: not one_top_dir(s))):
        away = hidden(keep)
        assert away, "no shard to leave unread"
        for digest in away:
            store.delete(keys.tree(digest))
        try:
            assert PFS(store).list_files("big", "master", path) == whole.list_dir(path), path
            with pytest.raises(NotFound):
                PFS(store).read_tree(commit)
        finally:
            for digest, data in away.items():
                store.write(keys.tree(digest), data)

    trees_before = set(store.list("trees/"))
    pfs.put_files("big", "master", [("/d1/e15/f0500", io.BytesIO(b"changed"))], overwrite=True)
    new = set(store.list("trees/")) - trees_before
    assert 2 <= len(new) <= 3, "one changed file rewrote many shards"
    added, removed = PFS(store).diff_files("big", "master", "/d1/e15")
    assert [n.path for n in added] == [n.path for n in removed] == ["/d1/e15/f0500"]
    got = io.BytesIO()
    PFS(store).get_file("big", "master", "/d1/e15/f0500", got)
    assert got.getvalue() == b"changed"
    after = dict(PFS(store).iter_files("big", "master"))
    assert after.keys() == whole.files.keys()
    assert all(after[p] == e for p, e in whole.files.items() if p != "/d1/e15/f0500")
