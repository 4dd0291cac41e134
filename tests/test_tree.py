"""Unit tests of commit trees (pipectl.pfs.tree): serialisation, queries,
Pachyderm globs over paths, changes and diffs."""

from __future__ import annotations

import pytest

from pipectl.errors import NotFound
from pipectl.pfs.tree import (
    MAX_SHARD_FILES,
    SHARD_FILES,
    FileEntry,
    Node,
    Tree,
    diff,
    file_above,
    join,
    split,
)


def entry(n: int) -> FileEntry:
    return FileEntry(n, (f"{n:064x}",))


TREE = Tree({"/b/x.csv": entry(3), "/a.txt": entry(1), "/a-1": entry(2), "/a/b/c": entry(4), "/b/y.csv": entry(5)})


def test_serialisation_is_canonical_and_round_trips():
    same = Tree(dict(reversed(list(TREE.files.items()))))
    assert same.serialize() == TREE.serialize()
    assert Tree.parse(TREE.serialize()).files == TREE.files


def test_directories_are_implied_by_paths():
    assert TREE.is_dir("/") and TREE.is_dir("/a") and TREE.is_dir("/a/b")
    assert not TREE.is_dir("/a.txt") and not TREE.is_dir("/c")
    assert TREE.subtree("/b") == {"/b/x.csv": entry(3), "/b/y.csv": entry(5)}
    assert TREE.subtree("/a.txt") == {"/a.txt": entry(1)}
    assert TREE.size == 15


def test_nodes_and_listing():
    assert TREE.node("/a.txt") == Node("/a.txt", "file", 1, entry(1).hash)
    assert TREE.node("/b").type == "dir" and TREE.node("/b").size == 8
    with pytest.raises(NotFound):
        TREE.node("/nope")
    # in path order, a directory sorting as its first file does ("/a/" after "/a.txt", as in Pachyderm)
    assert [(n.path, n.type, n.size) for n in TREE.list_dir("/")] == [
        ("/a-1", "file", 2), ("/a.txt", "file", 1), ("/a", "dir", 4), ("/b", "dir", 8)]
    with pytest.raises(NotFound):
        TREE.list_dir("/nope")


@pytest.mark.parametrize("pattern, expected", [
    ("/", ["/"]),
    ("", ["/"]),
    ("/*", ["/a", "/a-1", "/a.txt", "/b"]),
    ("*", ["/a", "/a-1", "/a.txt", "/b"]),
    ("/*/*", ["/a/b", "/b/x.csv", "/b/y.csv"]),
    ("/b/*.csv", ["/b/x.csv", "/b/y.csv"]),
    ("/a*", ["/a", "/a-1", "/a.txt"]),
    ("/a?1", ["/a-1"]),
    ("/[ab]", ["/a", "/b"]),
    ("/**", ["/a", "/a-1", "/a.txt", "/a/b", "/a/b/c", "/b", "/b/x.csv", "/b/y.csv"]),
    ("/**.csv", ["/b/x.csv", "/b/y.csv"]),
    ("/nothing/*", []),
])
def test_globs_match_as_in_pachyderm(pattern, expected):
    assert TREE.glob(pattern) == expected


def test_changes_make_a_new_tree():
    changed = TREE.with_changes([("/a.txt", entry(7)), ("/new", entry(1))], deletes=["/b"], append=True)
    assert changed.files["/a.txt"] == FileEntry(8, entry(1).objects + entry(7).objects)
    assert "/b/x.csv" not in changed.files and "/new" in changed.files
    assert "/b/x.csv" in TREE.files  # the original is unchanged


def test_file_above_finds_a_file_used_as_a_directory():
    assert file_above("/a.txt/x", TREE.files) == "/a.txt"
    assert file_above("/a/b/c/d/e", TREE.files) == "/a/b/c"
    assert file_above("/b/z", TREE.files) is None


def test_diff_compares_content_not_location():
    new = TREE.with_changes([("/b/x.csv", entry(9))], deletes=["/a-1"])
    added, removed = diff(new, TREE)
    assert [n.path for n in added] == ["/b/x.csv"]
    assert sorted(n.path for n in removed) == ["/a-1", "/b/x.csv"]
    packed = Tree({"/a.txt": FileEntry(1, (f"{1:064x}@{2:064x}:0:1",))})
    assert diff(packed, Tree({"/a.txt": entry(1)})) == ([], [])


def test_big_trees_split_into_shards_whose_cuts_depend_on_paths_only():
    """A tree of more than SHARD_FILES files is cut into shards of
    consecutive paths that join back into it, none across two big top-level
    directories; changing, adding or removing
    one file changes the shard holding it (or its neighbour) and leaves the
    others byte-identical; a small tree stays whole."""
    big = Tree({f"/d{i % 7}/f{i:06d}": entry(i) for i in range(3 * SHARD_FILES)})
    parts = split(big)
    assert len(parts) > 1 and all(len(p.files) <= MAX_SHARD_FILES for p in parts)
    assert all(len({p.split("/")[1] for p in part.files}) == 1 for part in parts), "a shard spans two top dirs"
    assert [p for part in parts for p in part.files] == list(big.files)
    assert join(parts).files == big.files and join(parts).serialize() == big.serialize()
    before = {p.serialize() for p in parts}
    some = list(big.files)[len(big.files) // 2]
    for changed in (big.with_changes([(some, entry(1))]), big.with_changes(deletes=[some]),
                    big.with_changes([(some + "-new", entry(2))])):
        after = {p.serialize() for p in split(changed)}
        assert len(after - before) <= 2 and len(before - after) <= 2, "one change rewrote many shards"
    small = Tree({f"/f{i}": entry(i) for i in range(SHARD_FILES)})
    assert split(small) == [small]
