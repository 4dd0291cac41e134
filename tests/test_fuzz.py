"""Property-based fuzzing (hypothesis, bounded: ``PIPECTL_FUZZ_EXAMPLES``
examples per target, default 300) of what reads untrusted input: spec
reading, glob compiling and tree parsing. Each either succeeds or raises
InvalidArgument, the one-line error; nothing else escapes."""

from __future__ import annotations

import contextlib
import os
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipectl import glob as globs
from pipectl.errors import InvalidArgument
from pipectl.pfs.tree import Tree
from pipectl.pps import spec as specs

FUZZ = settings(max_examples=int(os.environ.get("PIPECTL_FUZZ_EXAMPLES", "300")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children,
                                                                                      max_size=4),
                    max_leaves=30)
FIELDS = st.sampled_from(["pipeline", "transform", "input", "pfs", "cross", "union", "repo", "glob", "name",
                          "cmd", "image", "output_branch", "datum_timeout", "parallelism_spec", "constant",
                          "join", "group", "joinOn", "group_by", "outer_join", "atom", "parallelismSpec", "project"])
SPECLIKE = st.recursive(st.text(max_size=10) | st.integers() | st.lists(st.text(max_size=8), max_size=3),
                        lambda children: st.dictionaries(FIELDS, children, max_size=5) | st.lists(children, max_size=3),
                        max_leaves=25)


@FUZZ
@given(st.one_of(JSON, SPECLIKE))
def test_spec_validation_accepts_or_refuses_with_one_line(spec):
    try:
        result = specs.validate(spec)
    except InvalidArgument as e:
        assert "\n" not in str(e)
    else:
        assert isinstance(result, dict)


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_spec_text_parses_or_refuses(text):
    with contextlib.suppress(InvalidArgument):
        specs.parse(text)
    with contextlib.suppress(InvalidArgument):
        specs.parse_all(text)


@FUZZ
@given(st.text(alphabet=st.sampled_from("/*?[]!-^\\az.{}()|@+$1"), max_size=24) | st.text(max_size=24))
def test_globs_compile_or_refuse(pattern):
    try:
        rx = globs.compile_glob(pattern)
    except InvalidArgument:
        return
    assert isinstance(rx, re.Pattern)
    globs.match(pattern, "/a/b.txt")
    globs.expand(pattern, "/a/b.txt", "$1-${2}-$0-$$")


@FUZZ
@given(st.binary(max_size=300) | JSON.map(lambda v: __import__("json").dumps({"files": v}).encode()))
def test_tree_parsing_accepts_or_refuses(data):
    with contextlib.suppress(InvalidArgument):
        Tree.parse(data)
