"""Specs written for Pachyderm, read as pachctl reads them: lowerCamelCase
names, int64 fields as strings, the 1.x ``atom`` input, no image, several
specs in one file (a JSON stream, YAML documents), union branches sharing an
input name, a glob matching nothing yet, fields pipectl accepts with no
equivalent, ``accept_return_code``. Real CLI, real controller and workers."""

from __future__ import annotations

import json
import re

import pytest
from helpers import assert_clean_error, files_of, ok, put

LOCAL = pytest.mark.parametrize("store_url", ["local"], indirect=True)


def pipeline_of(cli, name: str) -> dict:
    return json.loads(ok(cli("inspect-pipeline", name, "--raw")).out)


@LOCAL
def test_a_pachyderm_1x_spec_in_proto3_json_is_read_as_pachctl_reads_it(cli, pfs, spec_file, run_controller):
    """camelCase names, ``"constant": "2"``, ``atom``, no ``transform.image``
    (Pachyderm's default), Kubernetes-only fields and ``salt``: accepted
    unchanged and run."""
    pfs.create_repo("images")
    put(pfs, "images", {"/a": "a", "/b": "b"})
    spec = {"pipeline": {"name": "edges"},
            "transform": {"cmd": ["sh", "-c", "cp /pfs/images/* /pfs/out/"], "imagePullSecrets": ["regcred"],
                          "env": {"someVar": "kept as written"}},
            "parallelismSpec": {"constant": "2"}, "datumTries": "2",
            "input": {"atom": {"repo": "images", "glob": "/*"}},
            "resourceRequests": {"memory": "64Mi"}, "schedulingSpec": {"nodeSelector": {"diskType": "ssd"}},
            "metadata": {"labels": {"teamName": "vision"}}, "podPatch": "[]", "autoscaling": True,
            "salt": "abc", "datumSetSpec": {"number": "10"}}
    ok(cli("create-pipeline", "-f", spec_file(spec)))
    stored = pipeline_of(cli, "edges")["spec"]
    assert stored["parallelism_spec"] == {"constant": 2} and stored["datum_tries"] == 2
    assert stored["transform"]["image"] == "ubuntu:20.04"
    assert stored["transform"]["env"] == {"someVar": "kept as written"}  # map keys are data
    assert stored["scheduling_spec"] == {"node_selector": {"diskType": "ssd"}}
    assert stored["input"] == {"pfs": {"repo": "images", "glob": "/*", "branch": "master", "name": "images"}}
    run_controller()
    assert files_of(pfs, "edges") == {"/a": "a", "/b": "b"}


@LOCAL
@pytest.mark.parametrize("form", ["json-array", "json-stream", "yaml-documents", "json-documents"])
def test_several_specs_in_one_file_are_created_in_order(form, cli, pfs, spec_file, run_controller):
    """pachctl creates every spec of a file, in order (2.x reads a JSON array
    or YAML documents, 1.x a stream of JSON objects): here the second reads
    the first's output repo, which exists only once the first is made."""
    pfs.create_repo("raw")
    put(pfs, "raw", {"/x": "hello"})
    first = {"pipeline": {"name": "upper"}, "transform": {"image": "local", "cmd": [
        "sh", "-c", "tr a-z A-Z < /pfs/raw/x > /pfs/out/x"]}, "input": {"pfs": {"repo": "raw", "glob": "/"}}}
    second = {"pipeline": {"name": "twice"}, "transform": {"image": "local", "cmd": [
        "sh", "-c", "cat /pfs/upper/x /pfs/upper/x > /pfs/out/x"]}, "input": {"pfs": {"repo": "upper", "glob": "/"}}}
    if form == "json-array":  # pachctl 2.x
        text, suffix = json.dumps([first, second]), ".json"
    elif form == "json-stream":  # pachctl 1.x
        text, suffix = json.dumps(first, indent=2) + "\n" + json.dumps(second, indent=2), ".json"
    elif form == "json-documents":  # as Pachyderm's tensorflow example: JSON between ---, with a tab YAML refuses
        text, suffix = json.dumps(first, indent=2) + "\t\n---\n" + json.dumps(second, indent=2), ".json"
    else:
        import yaml
        text, suffix = yaml.safe_dump_all([first, second]), ".yaml"
    ok(cli("create-pipeline", "-f", spec_file(text, suffix)))
    run_controller()
    assert files_of(pfs, "twice") == {"/x": "HELLOHELLO"}


@LOCAL
def test_an_error_in_the_second_spec_of_a_file_names_it(cli, pfs, spec_file):
    pfs.create_repo("raw")
    good = {"pipeline": {"name": "a"}, "transform": {"cmd": ["true"]}, "input": {"pfs": {"repo": "raw", "glob": "/"}}}
    bad = {"pipeline": {"name": "b"}, "transform": {"cmd": "true"}, "input": {"pfs": {"repo": "raw", "glob": "/"}}}
    r = cli("create-pipeline", "-f", spec_file(json.dumps(good) + json.dumps(bad)))
    assert r.code == 1 and "(spec 2 of 2): transform.cmd" in r.err and "Traceback" not in r.err, r
    assert pipeline_of(cli, "a")["name"] == "a"  # created, as pachctl would have


@LOCAL
def test_union_branches_may_share_an_input_name_and_a_glob_may_match_nothing_yet(cli, pfs, spec_file,
                                                                                  run_controller):
    """Pachyderm allows both: a datum comes from one union branch; a glob
    matching nothing makes a job with no datums and an empty output commit."""
    pfs.create_repo("a")
    pfs.create_repo("b")
    put(pfs, "a", {"/1": "one"})
    put(pfs, "b", {"/2": "two"})
    union = {"pipeline": {"name": "both"}, "transform": {"image": "local", "cmd": ["sh", "-c", "cp /pfs/in/* /pfs/out/"]},
             "input": {"union": [{"pfs": {"repo": "a", "glob": "/*", "name": "in"}},
                                 {"pfs": {"repo": "b", "glob": "/*", "name": "in"}}]}}
    ok(cli("create-pipeline", "-f", spec_file(union)))
    empty = {"pipeline": {"name": "csv"}, "transform": {"image": "local", "cmd": ["sh", "-c", "exit 1"]},
             "input": {"pfs": {"repo": "a", "glob": "/*.csv"}}}
    ok(cli("create-pipeline", "-f", spec_file(empty)))
    run_controller()
    assert files_of(pfs, "both") == {"/1": "one", "/2": "two"}
    job = json.loads(ok(cli("list-job", "-p", "csv", "--raw")).out)[0]
    assert (job["state"], job["datums_total"]) == ("success", 0), job
    assert files_of(pfs, "csv") == {}


@LOCAL
def test_accept_return_code(cli, pfs, spec_file, run_controller):
    """An exit status listed in ``transform.accept_return_code`` counts as
    success, as in Pachyderm; any other still fails the datum."""
    pfs.create_repo("in")
    put(pfs, "in", {"/x": "x"})
    spec = {"pipeline": {"name": "lenient"}, "transform": {"image": "local", "acceptReturnCode": ["3"],
                                                           "cmd": ["sh", "-c", "cp /pfs/in/x /pfs/out/; exit 3"]},
            "input": {"pfs": {"repo": "in", "glob": "/*"}}}
    ok(cli("create-pipeline", "-f", spec_file(spec)))
    run_controller()
    assert files_of(pfs, "lenient") == {"/x": "x"}


@LOCAL
def test_join_and_group_pipelines_run_with_pachyderms_datums_and_variables(cli, pfs, spec_file, run_controller):
    """An inner join (by the capture group of each glob, given in camelCase
    as a Pachyderm user may) and a group run end to end: user code finds
    each datum's files under /pfs/<input> and its key in
    PACH_DATUM_<input>_JOIN_ON / _GROUP_BY."""
    pfs.create_repo("left")
    pfs.create_repo("right")
    put(pfs, "left", {"/1.csv": "L1", "/2.csv": "L2", "/3.csv": "L3"})
    put(pfs, "right", {"/x/1.json": "R1", "/y/2.json": "R2y", "/z/2.json": "R2z"})
    join = {"pipeline": {"name": "joined"}, "transform": {"image": "local", "cmd": ["sh", "-c",
            'k=$PACH_DATUM_left_JOIN_ON; cat /pfs/left/*.csv /pfs/right/*/*.json >> /pfs/out/$k-$(basename $(dirname $right))']},
            "input": {"join": [{"pfs": {"repo": "left", "glob": "/(*).csv", "joinOn": "$1"}},
                               {"pfs": {"repo": "right", "glob": "/*/(*).json", "joinOn": "$1"}}]}}
    group = {"pipeline": {"name": "grouped"}, "transform": {"image": "local", "cmd": ["sh", "-c",
             "cat $(find /pfs/left /pfs/right -type f | sort) > /pfs/out/$PACH_DATUM_left_GROUP_BY$PACH_DATUM_right_GROUP_BY"]},
             "input": {"group": [{"pfs": {"repo": "left", "glob": "/(*).csv", "group_by": "$1"}},
                                 {"pfs": {"repo": "right", "glob": "/*/(*).json", "group_by": "$1"}}]}}
    # what the datums would be, before the pipeline exists (pachctl list datum -f)
    planned = json.loads(ok(cli("list-datum", "-f", spec_file(join), "--raw")).out)
    assert [re.sub(r"@[0-9a-f]{8}:", "@C:", r["files"]) for r in planned] == [
        "left@C:/1.csv, right@C:/x/1.json", "left@C:/2.csv, right@C:/y/2.json", "left@C:/2.csv, right@C:/z/2.json"]
    assert ok(cli("list-pipeline", "--raw")).out.strip() == "[]"
    ok(cli("create-pipeline", "-f", spec_file(join)))
    ok(cli("create-pipeline", "-f", spec_file(group)))
    run_controller()
    assert files_of(pfs, "joined") == {"/1-x": "L1R1", "/2-y": "L2R2y", "/2-z": "L2R2z"}
    # a group datum holds several files of one input: both keys set when both children take part
    assert files_of(pfs, "grouped") == {"/11": "L1R1", "/22": "L2R2yR2z", "/3": "L3"}
    listed = ok(cli("list-pipeline")).out
    assert "(left:/(*).csv ⋈ right:/*/(*).json)" in listed
    job = json.loads(ok(cli("list-job", "-p", "joined", "--raw")).out)[0]
    assert [r["id"] for r in json.loads(ok(cli("list-datum", job["id"], "--raw")).out)] == [r["id"] for r in planned]
    assert "give a JOB or --file SPEC" in cli("list-datum").err


@LOCAL
def test_every_problem_of_a_spec_is_reported_at_once(cli, pfs, spec_file):
    """Schema problems (a missing field, an unknown one, a bad value) all on
    one line; then, in a spec whose shape is right, every problem of
    meaning (a zero timeout, a reserved input name, a bad glob, a pod_patch
    that is not a JSON Patch). Nothing is created."""
    shape = {"pipeline": {"name": "p", "colour": "red"}, "transform": {"command": ["true"]},
             "input": {"pfs": {"repo": "in"}}, "parallelism_spec": {"constant": 0}}
    assert_clean_error(cli("create-pipeline", "-f", spec_file(shape)), "5 problems", "pipeline.colour: unknown field",
                       "transform.cmd: required field is missing", "transform.command: unknown field",
                       "input.pfs.glob: required field is missing", "parallelism_spec.constant")
    meaning = {"pipeline": {"name": "p"}, "transform": {"cmd": ["true"]}, "job_timeout": "0s",
               "input": {"pfs": {"repo": "in", "glob": "[", "name": "out"}}, "pod_patch": "{}"}
    assert_clean_error(cli("create-pipeline", "-f", spec_file(meaning)), "4 problems",
                       "job_timeout: must be longer than 0s", "input.pfs.name: input name 'out' is reserved",
                       "input.pfs.glob: invalid glob", "pod_patch: must be a JSON Patch")
    assert ok(cli("list-pipeline", "--raw")).out.strip() == "[]"
