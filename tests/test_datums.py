"""Unit tests of datum computation (pipectl.pps.datums): Pachyderm's pfs,
cross and union semantics, datum ids, cache keys and sharding."""

from __future__ import annotations

from pipectl.pfs.tree import FileEntry, Tree
from pipectl.pps.datums import Datum, cache_key, compute, shard


def entry(n: int) -> FileEntry:
    return FileEntry(n, (f"{n:064x}",))


IMAGES = Tree({"/cat.png": entry(1), "/dog.png": entry(2), "/birds/owl.png": entry(3), "/birds/tit.png": entry(4)})
MODELS = Tree({"/m1": entry(5), "/m2": entry(6)})


def pfs(repo: str, glob: str, name: str | None = None) -> dict:
    return {"pfs": {"repo": repo, "branch": "master", "glob": glob, "name": name or repo}}


COMMITS = {("images", "master"): ("c" * 32, IMAGES), ("models", "master"): ("d" * 32, MODELS)}


def paths(datums: list[Datum]) -> list[tuple[str, ...]]:
    return [tuple(i.path for i in d.inputs) for d in datums]


def test_each_glob_match_is_a_datum_with_every_file_below_it():
    datums = compute(pfs("images", "/*"), COMMITS)
    assert paths(datums) == [("/birds",), ("/cat.png",), ("/dog.png",)]
    assert set(datums[0].inputs[0].files) == {"/birds/owl.png", "/birds/tit.png"}
    assert datums[0].size == 7
    assert paths(compute(pfs("images", "/"), COMMITS)) == [("/",)]


def test_cross_is_the_product_and_union_the_concatenation():
    cross = compute({"cross": [pfs("images", "/*.png"), pfs("models", "/*")]}, COMMITS)
    assert paths(cross) == [("/cat.png", "/m1"), ("/cat.png", "/m2"), ("/dog.png", "/m1"), ("/dog.png", "/m2")]
    union = compute({"union": [pfs("images", "/*.png"), pfs("models", "/*")]}, COMMITS)
    assert paths(union) == [("/cat.png",), ("/dog.png",), ("/m1",), ("/m2",)]
    assert compute({"cross": [pfs("images", "/*"), pfs("models", "/none")]}, COMMITS) == []


def test_an_input_without_a_commit_yields_no_datums():
    assert compute(pfs("other", "/*"), COMMITS) == []


def test_datum_ids_follow_data_not_commits():
    first = compute(pfs("images", "/*"), COMMITS)
    moved = compute(pfs("images", "/*"), {("images", "master"): ("e" * 32, IMAGES)})
    assert [d.id for d in first] == [d.id for d in moved]
    changed = IMAGES.with_changes([("/cat.png", entry(9))])
    again = compute(pfs("images", "/*"), {("images", "master"): ("e" * 32, changed)})
    assert [d.id == e.id for d, e in zip(first, again)] == [True, False, True]
    renamed = compute(pfs("images", "/*", name="pics"), COMMITS)
    assert not {d.id for d in renamed} & {d.id for d in first}


def test_cache_keys_change_with_transform_and_salt():
    d = compute(pfs("images", "/*"), COMMITS)[0].id
    assert cache_key("t", "", d) == cache_key("t", "", d)
    assert len({cache_key("t", "", d), cache_key("u", "", d), cache_key("t", "s", d)}) == 3


def test_round_trip_and_shards():
    datums = compute({"cross": [pfs("images", "/*"), pfs("models", "/*")]}, COMMITS)
    assert [Datum.from_dict(d.to_dict()).id for d in datums] == [d.id for d in datums]
    assert "files" not in datums[0].to_dict(files=False)["inputs"][0]
    shares = [shard(datums, i, 4) for i in range(4)]
    assert sorted(d.id for s in shares for d in s) == sorted(d.id for d in datums)
    assert [len(s) for s in shares] == [2, 2, 1, 1]


# join and group: Pachyderm's semantics (src/server/worker/datum/worker.go) ---------

LEFT = Tree({"/1.csv": entry(11), "/2.csv": entry(12), "/3.csv": entry(13)})
RIGHT = Tree({"/x/1.json": entry(21), "/y/2.json": entry(22), "/z/2.json": entry(23), "/w/4.json": entry(24)})
SIDES = {("left", "master"): ("e" * 32, LEFT), ("right", "master"): ("f" * 32, RIGHT)}


def keyed(repo: str, glob: str, **extra) -> dict:
    return {"pfs": {"repo": repo, "branch": "master", "glob": glob, "name": repo, **extra}}


def inputs_of(datums: list[Datum]) -> list[list[tuple[str, str]]]:
    return [[(i.name, i.path) for i in d.inputs] for d in datums]


def test_an_inner_join_pairs_every_match_of_a_key_with_every_other_childs():
    """Per key, the cross product of the children's matches; a key some
    child lacks makes nothing."""
    join = {"join": [keyed("left", "/(*).csv", join_on="$1"), keyed("right", "/*/(*).json", join_on="$1")]}
    datums = compute(join, SIDES)
    assert inputs_of(datums) == [[("left", "/1.csv"), ("right", "/x/1.json")],
                                 [("left", "/2.csv"), ("right", "/y/2.json")],
                                 [("left", "/2.csv"), ("right", "/z/2.json")]]
    assert [i.join_on for i in datums[1].inputs] == ["2", "2"]


def test_an_outer_join_keeps_the_outer_childs_unmatched_files():
    left_outer = {"join": [keyed("left", "/(*).csv", join_on="$1", outer_join=True),
                           keyed("right", "/*/(*).json", join_on="$1")]}
    assert inputs_of(compute(left_outer, SIDES))[3:] == [[("left", "/3.csv")]]
    both = {"join": [keyed("left", "/(*).csv", join_on="$1", outer_join=True),
                     keyed("right", "/*/(*).json", join_on="$1", outer_join=True)]}
    assert inputs_of(compute(both, SIDES))[3:] == [[("left", "/3.csv")], [("right", "/w/4.json")]]


def test_a_group_holds_every_match_of_a_key_from_every_child():
    group = {"group": [keyed("left", "/(*).csv", group_by="$1"), keyed("right", "/*/(*).json", group_by="$1")]}
    assert inputs_of(compute(group, SIDES)) == [
        [("left", "/1.csv"), ("right", "/x/1.json")],
        [("left", "/2.csv"), ("right", "/y/2.json"), ("right", "/z/2.json")],
        [("left", "/3.csv")],
        [("right", "/w/4.json")]]


def test_join_keys_follow_capture_groups_as_pachyderm_expands_them():
    """``$n`` and ``${n}`` are capture groups, ``$0`` the whole path, ``$$``
    a dollar; Pachyderm's own example: glob ``/foo(?)(?)``, join_on ``$2$1``."""
    from pipectl.glob import expand
    assert expand("/foo(?)(?)", "/foo12", "$2$1") == "21"
    assert expand("/(*)_(*).csv", "/a_b.csv", "${2}-$1-$$-$0-$9") == "b-a-$-/a_b.csv-"
    assert expand("/@(a|b)*", "/bx", "$1") == "b"
