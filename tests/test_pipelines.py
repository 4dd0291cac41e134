"""Pipelines end to end (issue #3): specs, glob semantics, jobs, incremental
processing, failures, the job/datum/log commands and flush-commit.

Real parts only: every command is the real ``pipectl`` CLI in a subprocess,
jobs run under a real ``pipectl controller --exit-when-idle`` process whose
workers are real ``pipectl.pps.worker`` processes, and user code is small
``sh -c`` / ``python3 -c`` commands. Test data is put and read back with
the real PFS API (``pfs`` fixture) where the CLI is not what is tested.
User code counts its own runs by appending to files outside /pfs.

Store-level behaviour runs on both stores (local directory and versitygw S3 over
HTTP); CLI formatting and datum semantics run on the local store; the
many-files scenario runs with 1,000 files locally and 100 on S3.
"""

from __future__ import annotations

import json
import os
import time

import orjson
import pytest
from helpers import assert_clean_error, files_of, ok, put, snapshot, wait_for

LOCAL = pytest.mark.parametrize("store_url", ["local"], indirect=True)
IMAGE = "pipectl/test:1"
LIST_JOB_HEADER = ["ID", "PIPELINE", "STARTED", "DURATION", "RESTART", "PROGRESS", "DL", "UL", "STATE"]


# helpers -------------------------------------------------------------------

def pipeline(name: str, cmd: list[str], input: dict, **extra) -> dict:
    spec = {"pipeline": {"name": name}, "transform": {"image": IMAGE, "cmd": cmd}, "input": input}
    spec.update(extra)
    return spec


def pfs_input(repo: str, glob: str = "/*", **extra) -> dict:
    return {"pfs": {"repo": repo, "glob": glob, **extra}}


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def raw(result):
    """The JSON a ``--raw`` command printed."""
    return json.loads(ok(result).out)


def list_jobs(cli, pipeline: str | None = None) -> list[dict]:
    return raw(cli("list-job", "--raw", *(["-p", pipeline] if pipeline else [])))


def counts(path) -> dict[str, int]:
    """How often each word was appended (one per line) to ``path``."""
    tally: dict[str, int] = {}
    if os.path.exists(path):
        with open(path) as f:
            for word in f.read().split():
                tally[word] = tally.get(word, 0) + 1
    return tally


def parse_table(text: str, header: list[str]) -> list[dict]:
    """Rows of an aligned table; asserts the header is exactly ``header`` and
    that every cell starts at its header's column."""
    lines = text.rstrip("\n").splitlines()
    assert lines[0].split() == header, text
    starts, at = [], 0
    for h in header:
        at = lines[0].index(h, at)
        starts.append(at)
        at += len(h)
    rows = []
    for line in lines[1:]:
        for s in starts[1:]:
            assert line[s - 1] == " " and line[s] != " ", f"misaligned at column {s}:\n{text}"
        cells = [line[s:e].strip() for s, e in zip(starts, starts[1:] + [None])]
        rows.append(dict(zip(header, cells)))
    return rows


# specs ---------------------------------------------------------------------

GOOD = pipeline("edges", ["sh", "-c", "true"], pfs_input("images"))


def _with(path: str, value) -> dict:
    """GOOD with the field at dotted ``path`` set to ``value`` (None deletes it)."""
    spec = json.loads(json.dumps(GOOD))
    *parents, last = path.split(".")
    node = spec
    for p in parents:
        node = node[p]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return spec


BAD_SPECS = {
    "cmd-not-a-list": (_with("transform.cmd", "echo hi"), ["transform.cmd", "not of type 'array'"]),
    "cmd-missing": (_with("transform.cmd", None), ["transform.cmd", "missing"]),
    "cmd-empty": (_with("transform.cmd", []), ["transform.cmd"]),
    "spout-with-input": (_with("spout", {"overwrite": True}), ["input", "a spout takes no input"]),
    "s3-input-glob": (_with("input.pfs.s3", True), ["input.pfs.glob", "an S3 input's glob must be \"/\""]),
    "bad-cron": (_with("input", {"cron": {"name": "tick", "spec": "every minute"}}), ["cron input tick",
                                                                                       "does not parse"]),
    "join-of-a-cross": (_with("input", {"join": [{"cross": [pfs_input("images")]}]}), ["input.join.0.pfs", "missing"]),
    "bad-project": (_with("pipeline.project", {"name": "re/search"}), ["pipeline.project.name", "invalid project name"]),
    "cross-same-name": (_with("input", {"cross": [pfs_input("images"), pfs_input("images")]}),
                        ["input.cross.1", "two inputs are named 'images'"]),
    "unknown-field": (_with("transform.cmnd", ["x"]), ["transform.cmnd", "unknown field"]),
    "input-missing": (_with("input", None), ["input", "missing"]),
    "glob-missing": (_with("input.pfs.glob", None), ["input.pfs.glob", "missing"]),
    "bad-glob": (_with("input.pfs.glob", "/[ab"), ["input.pfs.glob", "unterminated"]),
    "bad-parallelism": (_with("parallelism_spec", {"constant": 0}), ["parallelism_spec.constant", "minimum"]),
    "bad-name": (_with("pipeline.name", "no spaces"), ["pipeline.name", "invalid pipeline name"]),
    "reads-itself": (_with("input.pfs.repo", "edges"), ["input.pfs.repo", "own output"]),
    "bad-cross-child": (_with("input", {"cross": [pfs_input("images"), {"pfs": {"repo": "images"}}]}),
                        ["input.cross.1.pfs.glob", "missing"]),
    "yaml-bad-cmd": (("pipeline:\n  name: edges\ntransform:\n  image: x\n  cmd: echo hi\n"
                      "input:\n  pfs: {repo: images, glob: /*}\n"), ["transform.cmd", "not of type 'array'"]),
    "neither-json-nor-yaml": ("{ this is: [not valid\n", ["not valid JSON", "nor YAML"]),
}


@LOCAL
@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_is_refused_naming_the_field_and_creates_nothing(case, cli, store, pfs, spec_file):
    """A spec failing the JSON Schema (or the name/glob rules) is refused with
    one line naming the bad field's path and why; nothing is created."""
    pfs.create_repo("images")
    put(pfs, "images", {"/a.txt": "a"})
    spec, needles = BAD_SPECS[case]
    path = spec_file(spec, ".yaml" if case.startswith("yaml") else ".json")
    before = snapshot(store)
    result = cli("create-pipeline", "-f", path)
    assert_clean_error(result, *needles)
    assert snapshot(store) == before


def test_spec_errors_that_need_the_store_create_nothing(cli, store, pfs, pps, spec_file):
    """A missing input repo, a name taken by a repo or pipeline: clear
    one-line errors; no output repo, no pipeline record, nothing else
    written."""
    pfs.create_repo("images")
    pfs.create_repo("taken")
    put(pfs, "images", {"/a.txt": "a", "/dir/b.txt": "b"})
    before = snapshot(store)
    assert_clean_error(cli("create-pipeline", "-f", spec_file(_with("input.pfs.repo", "nope"))), "nope", "not found")
    cross = _with("input", {"cross": [pfs_input("images"), pfs_input("missing")]})
    assert_clean_error(cli("create-pipeline", "-f", spec_file(cross)), "missing", "not found")
    assert_clean_error(cli("create-pipeline", "-f", spec_file(_with("pipeline.name", "taken"))),
                       "taken", "already exists")
    assert snapshot(store) == before

    # A valid YAML spec creates the pipeline and its output repo; creating
    # it again is refused and changes nothing.
    yaml_spec = ("pipeline:\n  name: edges\ndescription: edge detection\ntransform:\n  image: x:1\n"
                 "  cmd: [sh, -c, 'cp /pfs/images/* /pfs/out/']\ninput:\n  pfs:\n    repo: images\n"
                 "    glob: /*\nparallelism_spec:\n  constant: 2\n")
    ok(cli("create-pipeline", "-f", spec_file(yaml_spec, ".yaml")))
    assert sorted(r.name for r in pfs.list_repos()) == ["edges", "images", "taken"]
    created = pps.inspect_pipeline("edges")
    assert (created.version, created.spec["parallelism_spec"], created.spec["datum_tries"]) == (1, {"constant": 2}, 3)
    before = snapshot(store)
    assert_clean_error(cli("create-pipeline", "-f", spec_file(yaml_spec, ".yaml")), "edges", "already exists")
    assert snapshot(store) == before


@LOCAL
def test_pipeline_lifecycle_and_versions(cli, pfs, pps, spec_file, run_controller, tmp_path):
    """create-pipeline, list/inspect-pipeline, update-pipeline keeping each
    spec version, output commits recording the version that made them,
    datums reprocessed when the transform changes or with --reprocess and
    skipped otherwise."""
    runs = tmp_path / "runs.log"
    pfs.create_repo("words")
    put(pfs, "words", {"/a": "alpha", "/b": "beta"})
    spec = pipeline("upper", sh(f"echo v1 >> {runs}; tr a-z A-Z < $words > /pfs/out/$(basename $words)"),
                    pfs_input("words"), description="shout")
    ok(cli("create-pipeline", "-f", spec_file(spec)))

    lines = ok(cli("list-pipeline")).out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "INPUT", "CREATED", "STATE", "LAST", "JOB", "DESCRIPTION"]
    assert lines[1].split()[:3] == ["upper", "1", "words:/*"] and lines[1].split()[-1] == "shout"
    listed = raw(cli("list-pipeline", "--raw"))
    assert [(p["name"], p["version"], p["state"], p["last_job_state"]) for p in listed] == [("upper", 1, "running", "-")]
    text = ok(cli("inspect-pipeline", "upper")).out
    assert "Name: upper" in text and "Version: 1" in text and "State: running" in text
    assert "Input: words:/*" in text and "Description: shout" in text and "Parallelism: 1" in text

    run_controller()
    assert files_of(pfs, "upper") == {"/a": "ALPHA", "/b": "BETA"}
    head = raw(cli("inspect-commit", "upper", "master", "--raw"))
    assert (head["pipeline"], head["pipeline_version"], head["origin"]) == ("upper", 1, "auto")
    assert counts(runs) == {"v1": 2}

    # A new transform: version 2, every datum reprocessed.
    spec["transform"]["cmd"] = sh(f"echo v2 >> {runs}; rev < $words > /pfs/out/$(basename $words)")
    ok(cli("update-pipeline", "-f", spec_file(spec)))
    run_controller()
    assert files_of(pfs, "upper") == {"/a": "ahpla", "/b": "ateb"}
    assert raw(cli("inspect-commit", "upper", "master", "--raw"))["pipeline_version"] == 2
    assert counts(runs) == {"v1": 2, "v2": 2}

    # Same transform (only the description changed): a job of version 3 that skips every datum.
    spec["description"] = "reversed"
    ok(cli("update-pipeline", "-f", spec_file(spec)))
    run_controller()
    assert counts(runs) == {"v1": 2, "v2": 2}
    latest = list_jobs(cli, "upper")[0]
    assert (latest["pipeline_version"], latest["datums_processed"], latest["datums_skipped"]) == (3, 0, 2)
    assert raw(cli("inspect-commit", "upper", "master", "--raw"))["pipeline_version"] == 3

    # --reprocess: same transform, every datum run again.
    ok(cli("update-pipeline", "-f", spec_file(spec), "--reprocess"))
    run_controller()
    assert counts(runs) == {"v1": 2, "v2": 4}
    assert [j["pipeline_version"] for j in list_jobs(cli, "upper")] == [4, 3, 2, 1]
    assert list_jobs(cli, "upper")[0]["datums_processed"] == 2

    # Every version is kept, unchanged.
    assert "tr a-z A-Z" in pps.pipeline_version("upper", 1)["transform"]["cmd"][2]
    assert "rev" in pps.pipeline_version("upper", 2)["transform"]["cmd"][2]
    assert pps.pipeline_version("upper", 1)["description"] == "shout"
    info = raw(cli("inspect-pipeline", "upper", "--raw"))
    assert info["version"] == 4 and info["spec"]["description"] == "reversed"

    # A missing spec file, or updating a pipeline that does not exist, is refused.
    assert_clean_error(cli("create-pipeline", "-f", "/nonexistent/spec.json"), "/nonexistent/spec.json",
                       "does not exist")
    assert_clean_error(cli("update-pipeline", "-f", spec_file(_with("pipeline.name", "ghost"))), "ghost", "not found")


def test_stop_start_and_delete_pipeline(cli, pfs, pps, store, spec_file, run_controller):
    """stop-pipeline: no new jobs while paused, not for data there before
    nor for new commits; start-pipeline resumes; delete-pipeline removes the
    pipeline, its jobs and its output repo, and refuses while another
    pipeline reads that repo."""
    pfs.create_repo("src")
    put(pfs, "src", {"/1": "one"})
    ok(cli("create-pipeline", "-f", spec_file(pipeline("copy", sh("cp $src /pfs/out/"), pfs_input("src")))))
    ok(cli("create-pipeline", "-f", spec_file(pipeline("copy2", sh("cp $copy /pfs/out/"), pfs_input("copy")))))
    ok(cli("stop-pipeline", "copy"))
    assert pps.inspect_pipeline("copy").state == "paused"
    put(pfs, "src", {"/2": "two"})
    run_controller()
    assert pps.list_jobs() == []

    ok(cli("start-pipeline", "copy"))
    assert pps.inspect_pipeline("copy").state == "running"
    run_controller()
    assert [(j.pipeline, j.state) for j in pps.list_jobs()] == [("copy2", "success"), ("copy", "success")]
    assert files_of(pfs, "copy2") == {"/1": "one", "/2": "two"}

    assert_clean_error(cli("delete-pipeline", "copy"), "copy2", "delete them first")
    ok(cli("delete-pipeline", "copy2"))
    ok(cli("delete-pipeline", "copy"))
    assert pps.list_pipelines() == [] and pps.list_jobs() == []
    assert [r.name for r in pfs.list_repos()] == ["src"]
    assert not list(store.list("jobs/")) and not list(store.list("job-data/")) and not list(store.list("pipelines/"))
    assert_clean_error(cli("delete-pipeline", "copy"), "copy", "not found")


# datums ----------------------------------------------------------------------

# What each datum's user code sees: the matched path ($data minus its root)
# and the files under /pfs/data.
SEE = "cd /pfs/data && printf '%s|%s' \"${data#/pfs/data}\" \"$(find . -type f | sort | tr '\\n' ' ')\" > /pfs/out/$PACH_DATUM_ID"


@LOCAL
def test_glob_semantics(cli, pfs, spec_file, run_controller):
    """"/" is one datum with everything, "/*" one per top-level entry,
    "/*/*" one per second-level entry, "/**" one per file and directory at
    any depth; each datum sees exactly its files under /pfs/<input>."""
    pfs.create_repo("data")
    put(pfs, "data", {"/a/1.txt": "1", "/a/2.txt": "2", "/a/sub/3.txt": "3", "/b/4.txt": "4", "/c.txt": "c"})
    globs = {"root": "/", "top": "/*", "second": "/*/*", "deep": "/**", "txt": "/*.txt"}
    for name, glob in globs.items():
        ok(cli("create-pipeline", "-f", spec_file(pipeline(name, sh(SEE), pfs_input("data", glob)))))
    run_controller()

    def seen(repo):
        return sorted(tuple(x.strip() for x in v.split("|")) for v in files_of(pfs, repo).values())

    every = "./a/1.txt ./a/2.txt ./a/sub/3.txt ./b/4.txt ./c.txt"
    assert seen("root") == [("", every)]
    assert seen("top") == [("/a", "./a/1.txt ./a/2.txt ./a/sub/3.txt"), ("/b", "./b/4.txt"), ("/c.txt", "./c.txt")]
    assert seen("second") == [("/a/1.txt", "./a/1.txt"), ("/a/2.txt", "./a/2.txt"), ("/a/sub", "./a/sub/3.txt"),
                              ("/b/4.txt", "./b/4.txt")]
    assert seen("deep") == [("/a", "./a/1.txt ./a/2.txt ./a/sub/3.txt"), ("/a/1.txt", "./a/1.txt"),
                            ("/a/2.txt", "./a/2.txt"), ("/a/sub", "./a/sub/3.txt"), ("/a/sub/3.txt", "./a/sub/3.txt"),
                            ("/b", "./b/4.txt"), ("/b/4.txt", "./b/4.txt"), ("/c.txt", "./c.txt")]
    assert seen("txt") == [("/c.txt", "./c.txt")]
    for name, n in {"root": 1, "top": 3, "second": 4, "deep": 8, "txt": 1}.items():
        job = list_jobs(cli, name)[0]
        assert (job["state"], job["datums_total"], job["datums_processed"]) == ("success", n, n), job


@LOCAL
def test_cross_and_union(cli, pfs, spec_file, run_controller):
    """cross yields the product of its inputs' datums (each sees one file of
    each input), union their concatenation (each sees one input only)."""
    for repo, files in {"left": {"/x1": "X1", "/x2": "X2"}, "right": {"/y1": "Y1", "/y2": "Y2", "/y3": "Y3"}}.items():
        pfs.create_repo(repo)
        put(pfs, repo, files)
    cross = pipeline("pairs", sh("[ $(ls /pfs/left | wc -l) = 1 ] && [ $(ls /pfs/right | wc -l) = 1 ] && "
                                 "cat $left $right > /pfs/out/$(basename $left)-$(basename $right)"),
                     {"cross": [pfs_input("left"), pfs_input("right")]})
    union = pipeline("either", sh("for f in /pfs/left/* /pfs/right/*; do [ -e \"$f\" ] && "
                                  "echo \"$(ls /pfs | tr '\\n' ' ')\" > /pfs/out/$(basename $f); done; true"),
                     {"union": [pfs_input("left"), pfs_input("right")]})
    ok(cli("create-pipeline", "-f", spec_file(cross)))
    ok(cli("create-pipeline", "-f", spec_file(union)))
    run_controller()
    assert files_of(pfs, "pairs") == {f"/x{i}-y{j}": f"X{i}Y{j}" for i in (1, 2) for j in (1, 2, 3)}
    assert files_of(pfs, "either") == {**{f"/x{i}": "left out \n" for i in (1, 2)},
                                       **{f"/y{j}": "out right \n" for j in (1, 2, 3)}}
    job = list_jobs(cli, "pairs")[0]
    assert len(raw(cli("list-datum", job["id"], "--raw"))) == 6
    job = list_jobs(cli, "either")[0]
    assert len(raw(cli("list-datum", job["id"], "--raw"))) == 5


@LOCAL
def test_user_code_sees_pfs_paths_and_pachyderm_environment(cli, pfs, spec_file, run_controller):
    """Inputs appear under /pfs/<input name>/ and outputs go to /pfs/out, as
    code hardcoding them (cmd, stdin, transform.env) expects; env carries
    PACH_JOB_ID, PACH_DATUM_ID, PACH_OUTPUT_COMMIT_ID, <name>_COMMIT and
    <name> = the datum's path."""
    pfs.create_repo("images")
    commit = put(pfs, "images", {"/one.png": "first", "/two.png": "second"})
    code = ("import os, json; e = os.environ\n"
            "d = {k: e.get(k) for k in ['PACH_JOB_ID', 'PACH_DATUM_ID', 'PACH_OUTPUT_COMMIT_ID', 'src', "
            "'src_COMMIT', 'PPS_PIPELINE_NAME', 'OUT_COPY']}\n"
            "d['listing'] = sorted(os.listdir('/pfs'))\n"
            "d['inputs'] = sorted(os.listdir('/pfs/src'))\n"
            "d['content'] = open(e['src']).read()\n"
            "json.dump(d, open('/pfs/out/' + os.path.basename(e['src']) + '.json', 'w'))\n")
    spec = pipeline("env", ["python3", "-c", code], pfs_input("images", name="src"))
    spec["transform"]["env"] = {"OUT_COPY": "/pfs/out/copy"}
    ok(cli("create-pipeline", "-f", spec_file(spec)))
    stdin_spec = pipeline("stdin", ["sh"], pfs_input("images", "/"))
    stdin_spec["transform"]["stdin"] = ["cd /pfs/images", "for f in *; do cp $f /pfs/out/$f.copy; done"]
    ok(cli("create-pipeline", "-f", spec_file(stdin_spec)))
    run_controller()

    assert files_of(pfs, "stdin") == {"/one.png.copy": "first", "/two.png.copy": "second"}
    job = list_jobs(cli, "env")[0]
    assert job["state"] == "success", job
    datum_ids = {d["id"] for d in raw(cli("list-datum", job["id"], "--raw"))}
    out_head = raw(cli("inspect-commit", "env", "master", "--raw"))
    seen = {path: json.loads(text) for path, text in files_of(pfs, "env").items()}
    assert sorted(seen) == ["/one.png.json", "/two.png.json"]
    for name, content in (("one.png", "first"), ("two.png", "second")):
        env = seen[f"/{name}.json"]
        assert env["PACH_JOB_ID"] == job["id"]
        assert env["PACH_OUTPUT_COMMIT_ID"] == out_head["id"] == job["output_commit"]
        assert env["src_COMMIT"] == commit.id
        assert env["PPS_PIPELINE_NAME"] == "env"
        assert env["listing"] == ["out", "src"] and env["inputs"] == [name]
        assert env["src"] == f"/pfs/src/{name}"
        assert env["content"] == content
        assert env["OUT_COPY"] == "/pfs/out/copy"
    assert {seen[f"/{n}.json"]["PACH_DATUM_ID"] for n in ("one.png", "two.png")} == datum_ids


# jobs ----------------------------------------------------------------------

@LOCAL
def test_one_job_per_new_set_of_input_heads_run_in_order(cli, pfs, spec_file, run_controller):
    """Jobs are created for the current input heads (two commits landed
    before the controller looks make one job), never twice for the same
    heads, and a pipeline's jobs run one after another with a linear output
    history."""
    pfs.create_repo("in")
    put(pfs, "in", {"/a": "1"})
    second = put(pfs, "in", {"/b": "2"})
    ok(cli("create-pipeline", "-f", spec_file(pipeline("p", sh("cp $in /pfs/out/"), pfs_input("in")))))
    run_controller()
    run_controller()
    jobs = list_jobs(cli, "p")
    assert len(jobs) == 1 and jobs[0]["inputs"][0]["commit"] == second.id
    third = put(pfs, "in", {"/c": "3"})
    run_controller()
    jobs = list_jobs(cli, "p")
    assert [j["inputs"][0]["commit"] for j in jobs] == [third.id, second.id]
    assert jobs[0]["started"] >= jobs[1]["finished"]
    heads = raw(cli("list-commit", "p", "master", "--raw"))
    assert [c["id"] for c in heads] == [jobs[0]["output_commit"], jobs[1]["output_commit"]]
    assert heads[0]["parent"] == heads[1]["id"]
    assert files_of(pfs, "p") == {"/a": "1", "/b": "2", "/c": "3"}


@LOCAL
def test_recreated_pipeline_runs_afresh_under_a_running_controller(cli, pfs, pps, spec_file, background):
    """A pipeline deleted and created again with the same spec, while one
    controller runs, gets a job on the same input that processes every
    datum: the controller forgets the deleted pipeline's jobs (and so their
    datum index) instead of serving them from memory."""
    pfs.create_repo("in")
    put(pfs, "in", {"/a": "1", "/b": "2"})
    spec = spec_file(pipeline("p", sh("cp $in /pfs/out/"), pfs_input("in")))
    controller = background("controller", "--poll-interval", "0.05")
    ok(cli("create-pipeline", "-f", spec))
    wait_for(lambda: [j for j in pps.list_jobs("p") if j.state == "success"], what="the first job")
    ok(cli("delete-pipeline", "p"))
    ok(cli("create-pipeline", "-f", spec))
    job = wait_for(lambda: next((j for j in pps.list_jobs("p") if j.done), None), what="the recreated pipeline's job")
    assert (job.state, job.datums_processed, job.datums_skipped) == ("success", 2, 0), job
    assert files_of(pfs, "p") == {"/a": "1", "/b": "2"}
    assert controller.poll() is None, controller.err_path.read_text()


def test_multi_stage_chain_provenance_and_flush_commit(cli, pfs, spec_file, run_controller, background):
    """Three chained stages run in one controller pass; the last stage's
    output commit lists every upstream commit with the spec version that
    made it (inspect-commit --raw and text). flush-commit, started before
    the controller, returns the downstream commits, also for an input commit
    superseded before any job ran."""
    pfs.create_repo("raw")
    first = put(pfs, "raw", {"/a": "x"})
    second = put(pfs, "raw", {"/b": "yy"})
    s1 = pipeline("s1", sh("tr a-z A-Z < $raw > /pfs/out/$(basename $raw)"), pfs_input("raw"))
    ok(cli("create-pipeline", "-f", spec_file(s1)))
    s1["transform"]["cmd"] = sh("tr x-y X-Y < $raw > /pfs/out/$(basename $raw)")
    ok(cli("update-pipeline", "-f", spec_file(s1)))  # s1 is at spec version 2
    ok(cli("create-pipeline", "-f", spec_file(pipeline("s2", sh("cat /pfs/s1/* > /pfs/out/all"), pfs_input("s1", "/")))))
    ok(cli("create-pipeline", "-f", spec_file(pipeline("s3", sh("wc -c < /pfs/s2/all | tr -d ' ' > /pfs/out/n"),
                                                       pfs_input("s2", "/")))))
    flush_new = background("flush-commit", "raw", second.id, "--raw", "--timeout", "120")
    flush_old = background("flush-commit", "raw", first.id, "--raw", "--timeout", "120")
    time.sleep(0.5)
    assert flush_new.poll() is None  # waits for the controller
    run_controller()
    assert files_of(pfs, "s3") == {"/n": "3\n"}

    s1_head, s2_head, s3_head = (pfs.inspect_commit(r, "master").to_dict() for r in ("s1", "s2", "s3"))
    assert (s3_head["pipeline"], s3_head["pipeline_version"]) == ("s3", 1)
    assert s1_head["pipeline_version"] == 2
    prov = {(p["repo"], p["commit"], p["pipeline_version"]) for p in s3_head["provenance"]}
    assert prov == {("raw", second.id, None), ("s1", s1_head["id"], 2), ("s2", s2_head["id"], 1)}
    assert {(p["repo"], p["commit"]) for p in s2_head["provenance"]} == {("raw", second.id), ("s1", s1_head["id"])}
    text = ok(cli("inspect-commit", "s3", "master")).out
    assert f"raw@{second.id} (branch master)" in text
    assert f"s1@{s1_head['id']} (branch master)  (pipeline spec version 2)" in text
    assert "Pipeline: s3 (spec version 1" in text

    for proc in (flush_new, flush_old):
        assert proc.wait(60) == 0, proc.err_path.read_text()
        flushed = json.loads(proc.out_path.read_text())
        assert sorted((c["repo"], c["id"]) for c in flushed) == sorted(
            [("s1", s1_head["id"]), ("s2", s2_head["id"]), ("s3", s3_head["id"])])
    # Already processed: returns at once; a table without --raw.
    rows = parse_table(ok(cli("flush-commit", "raw", "master")).out,
                       ["REPO", "BRANCH", "COMMIT", "PARENT", "STARTED", "DURATION", "SIZE"])
    assert sorted(r["REPO"] for r in rows) == ["s1", "s2", "s3"]
    assert_clean_error(cli("flush-commit", "raw", "0" * 32), "not found")


@LOCAL
def test_diamond_runs_once_per_commit_on_consistent_inputs(pfs, pps, cli, spec_file, run_controller):
    """A pipeline reading a repo both directly and through an upstream
    pipeline gets one job per new commit, on inputs that agree (as in
    Pachyderm): never new data beside the upstream's stale output, so its
    output's provenance names the input repo once."""
    pfs.create_repo("a")
    put(pfs, "a", {"/x": "1"})
    ok(cli("create-pipeline", "-f", spec_file(pipeline("p1", sh("cp $a /pfs/out/"), pfs_input("a")))))
    ok(cli("create-pipeline", "-f", spec_file(pipeline(
        "join", sh("cat /pfs/a/x /pfs/p1/x > /pfs/out/both"), {"cross": [pfs_input("a", "/"), pfs_input("p1", "/")]}))))
    run_controller()
    second = put(pfs, "a", {"/x": "2"})
    run_controller()
    assert files_of(pfs, "join") == {"/both": "22"}
    jobs = pps.list_jobs("join")
    assert len(jobs) == 2
    for job in jobs:
        inputs = {i["name"]: i["commit"] for i in job.inputs}
        upstream = pfs.inspect_commit("p1", inputs["p1"]).provenance
        assert [p["commit"] for p in upstream if p["repo"] == "a"] == [inputs["a"]]
    head = pfs.inspect_commit("join", "master")
    assert [p["commit"] for p in head.provenance if p["repo"] == "a"] == [second.id]


def test_incremental_skips_processed_datums_and_drops_removed_outputs(cli, pfs, pps, store, spec_file, run_controller,
                                                                      tmp_path):
    """A datum processed before with the same transform is skipped and its
    outputs reused; a datum whose files disappeared has its outputs removed
    from the next output commit."""
    runs = tmp_path / "runs.log"
    pfs.create_repo("docs")
    put(pfs, "docs", {"/a": "apple", "/b": "banana", "/c": "cherry"})
    spec = pipeline("lens", sh(f"basename $docs >> {runs}; wc -c < $docs | tr -d ' ' > /pfs/out/$(basename $docs).len"),
                    pfs_input("docs"))
    ok(cli("create-pipeline", "-f", spec_file(spec)))
    run_controller()
    assert files_of(pfs, "lens") == {"/a.len": "5\n", "/b.len": "6\n", "/c.len": "6\n"}
    assert counts(runs) == {"a": 1, "b": 1, "c": 1}
    first = pps.list_jobs("lens")[0]
    first_outputs = {r.cache_key: r.outputs for r in pps.datum_results("lens", first.id).values()}

    pfs.delete_file("docs", "master", "/b")
    put(pfs, "docs", {"/d": "date", "/c": "cherries"})
    run_controller()
    assert files_of(pfs, "lens") == {"/a.len": "5\n", "/c.len": "8\n", "/d.len": "4\n"}
    assert counts(runs) == {"a": 1, "b": 1, "c": 2, "d": 1}
    job = pps.list_jobs("lens")[0]
    assert (job.datums_total, job.datums_processed, job.datums_skipped) == (3, 2, 1)
    plan = pps.plan("lens", job.id)
    path_of = {d["id"]: d["inputs"][0]["path"] for d in plan}
    results = pps.datum_results("lens", job.id)
    states = {path_of[d]: r.state for d, r in results.items()}
    assert states == {"/a": "skipped", "/c": "success", "/d": "success"}
    # The skipped datum is recorded by reference to the first job's datum
    # index, and its result carries that job's outputs.
    ref = orjson.loads(store.read(f"job-data/lens/{job.id}/results/controller-skipped.json"))
    assert set(ref) == {"datum_index", "at"} and ref["datum_index"] == first.datum_index
    (skipped,) = [r for r in results.values() if r.state == "skipped"]
    assert skipped.outputs == first_outputs[skipped.cache_key] and "/a.len" in skipped.outputs
    # The workers' list holds only the datums that ran, with their files;
    # in the plan, only those have file lists too.
    todo = pps.todo("lens", job.id)
    assert sorted(path_of[d["id"]] for d in todo) == ["/c", "/d"]
    assert [list(d["inputs"][0]["files"]) for d in todo] == [["/c"], ["/d"]]
    assert sorted(path_of[d["id"]] for d in plan if "files" in d["inputs"][0]) == ["/c", "/d"]


@LOCAL
def _planned_job(store, pps, pipeline: str):
    """Create and plan the next job of ``pipeline`` as a controller would,
    without running it; return its record."""
    from pipectl.pps.controller import Controller, RunningJob
    from pipectl.pps.executors.process import ProcessExecutor

    controller = Controller(store, ProcessExecutor(store.url))
    controller.create_jobs()
    job = controller.next_job()
    controller._plan(RunningJob(job, pps.pipeline_version(pipeline, job.pipeline_version)))
    return job


def _second_lens_job_planned(cli, pfs, pps, store, spec_file, run_controller, runs):
    """Pipeline ``lens`` (each file's length, its name appended to ``runs``)
    run once over /a and /b; then /c put and the next job planned, not run.
    Returns that job."""
    pfs.create_repo("docs")
    put(pfs, "docs", {"/a": "apple", "/b": "banana"})
    spec = pipeline("lens", sh(f"basename $docs >> {runs}; wc -c < $docs | tr -d ' ' > /pfs/out/$(basename $docs).len"),
                    pfs_input("docs"))
    ok(cli("create-pipeline", "-f", spec_file(spec)))
    run_controller()
    put(pfs, "docs", {"/c": "cherry"})
    return _planned_job(store, pps, "lens")


def _resume_and_check_second_lens_job(pfs, pps, job, run_controller, runs) -> None:
    """A controller resumes ``job`` (see :func:`_second_lens_job_planned`):
    it runs /c alone, skips /a and /b, and lands all three outputs."""
    run_controller()
    assert files_of(pfs, "lens") == {"/a.len": "5\n", "/b.len": "6\n", "/c.len": "6\n"}
    assert counts(runs) == {"a": 1, "b": 1, "c": 1}
    final = pps.inspect_job(job.id, "lens")
    assert (final.state, final.datums_processed, final.datums_skipped) == ("success", 1, 2)


@LOCAL
def test_job_planned_before_todo_lists_still_runs(cli, pfs, pps, store, spec_file, run_controller, tmp_path):
    """A job planned by an earlier version, which has no todo list (the
    plan's datums to run carry their file lists), runs those datums, and
    only those, when a controller resumes it."""
    runs = tmp_path / "runs.log"
    job = _second_lens_job_planned(cli, pfs, pps, store, spec_file, run_controller, runs)
    store.delete(f"job-data/lens/{job.id}/todo.json")
    assert [d["inputs"][0]["path"] for d in pps.todo("lens", job.id)] == ["/c"]
    _resume_and_check_second_lens_job(pfs, pps, job, run_controller, runs)


@LOCAL
def test_job_planned_with_skipped_results_written_out_still_lands_them(cli, pfs, pps, store, spec_file,
                                                                       run_controller, tmp_path):
    """A job planned by an earlier version, whose skipped datums' results
    were written out one by one (not by reference), keeps those datums'
    outputs when a controller resumes it."""
    runs = tmp_path / "runs.log"
    job = _second_lens_job_planned(cli, pfs, pps, store, spec_file, run_controller, runs)
    skipped = list(pps.datum_results("lens", job.id).values())
    assert len(skipped) == 2
    store.write(f"job-data/lens/{job.id}/results/controller-skipped.json", orjson.dumps(skipped))
    assert pps.datum_results("lens", job.id) == {r.id: r for r in skipped}
    _resume_and_check_second_lens_job(pfs, pps, job, run_controller, runs)


@LOCAL
def test_job_planned_in_part_is_planned_again(cli, pfs, pps, store, spec_file, run_controller, tmp_path):
    """A controller killed while writing a job's plan (the plan stored, the
    skipped datums not, the record not yet counting the datums) leaves a job
    that the next controller plans again: it skips /a and /b, runs /c alone
    and lands all three outputs."""
    runs = tmp_path / "runs.log"
    job = _second_lens_job_planned(cli, pfs, pps, store, spec_file, run_controller, runs)
    store.delete(f"job-data/lens/{job.id}/results/controller-skipped.json")
    pps.update_job("lens", job.id, datums_total=0, datums_skipped=0)
    _resume_and_check_second_lens_job(pfs, pps, job, run_controller, runs)


def test_update_job_keeps_changes_made_by_another_writer(store, pps):
    """``update_job`` swaps first on the record as it last wrote it; a change
    another writer made since (here, a stop) is kept, not overwritten, and
    a later update still lands."""
    from pipectl.pps import PPS
    from pipectl.pps.model import JobInfo

    j1 = "0" * 31 + "1"
    job = JobInfo(j1, "p", 1, "", "t", [], "out", created="2026-01-01T00:00:00Z")
    assert pps.create_job(job)
    assert pps.update_job("p", j1, datums_total=3).datums_total == 3
    other = PPS(store)
    other.update_job("p", j1, restarts=2)
    assert pps.update_job("p", j1, datums_processed=1).restarts == 2
    other.update_job("p", j1, state="killed", reason="stopped by user")
    final = pps.update_job("p", j1, state="running")
    assert (final.state, final.datums_total, final.datums_processed, final.restarts) == ("killed", 3, 1, 2)
    assert PPS(store).inspect_job(j1, "p") == final


@LOCAL
def test_skipped_datums_read_while_planning_are_not_cached_empty(cli, pfs, pps, store, spec_file, run_controller,
                                                                  tmp_path):
    """Between the skipped-datums record and the plan (written beside it),
    a reader sees no skipped results yet, and a reader keeping a batch cache
    reads them once the plan exists instead of keeping that empty view."""
    job = _second_lens_job_planned(cli, pfs, pps, store, spec_file, run_controller, tmp_path / "runs.log")
    plan_key = f"job-data/lens/{job.id}/plan.json"
    plan = store.read(plan_key)
    store.delete(plan_key)  # as if read before the plan was written
    batches = {}
    assert pps.datum_results("lens", job.id, batches) == {}
    store.write(plan_key, plan)
    results = pps.datum_results("lens", job.id, batches)
    assert sorted(r.state for r in results.values()) == ["skipped", "skipped"]


@LOCAL
def test_workers_that_record_nothing_fail_the_job(cli, pfs, pps, store, spec_file, run_controller):
    """Workers that end without recording any of the datums left (as those
    of an image with a pipectl too old to read the todo list would) fail the
    job with a reason saying so, instead of being started again forever."""
    pfs.create_repo("docs")
    put(pfs, "docs", {"/a": "apple"})
    ok(cli("create-pipeline", "-f", spec_file(pipeline("lens", sh("cp $docs /pfs/out/"), pfs_input("docs")))))
    job = _planned_job(store, pps, "lens")
    store.write(f"job-data/lens/{job.id}/todo.json", orjson.dumps([]))  # what such workers see
    run_controller(timeout=60)
    final = pps.inspect_job(job.id, "lens")
    assert final.state == "failure" and "without recording any of the 1 datums" in final.reason, final


@LOCAL
def test_successful_datums_of_a_failed_job_are_not_run_again(cli, pfs, pps, spec_file, run_controller, tmp_path):
    """The datums a failed job completed are skipped by the next job (its
    datum index is kept)."""
    runs, fixed = tmp_path / "runs.log", tmp_path / "fixed"
    pfs.create_repo("in")
    put(pfs, "in", {"/a": "1", "/b": "2"})
    script = (f"echo $(basename $in) >> {runs}; "
              f"if [ $(basename $in) = b ] && [ ! -e {fixed} ]; then exit 1; fi; cp $in /pfs/out/")
    ok(cli("create-pipeline", "-f", spec_file(pipeline("half", sh(script), pfs_input("in"), datum_tries=1))))
    run_controller()
    assert pps.list_jobs("half")[0].state == "failure"
    assert counts(runs) == {"a": 1, "b": 1}
    fixed.touch()
    put(pfs, "in", {"/c": "3"})
    run_controller()
    job = pps.list_jobs("half")[0]
    assert (job.state, job.datums_processed, job.datums_skipped) == ("success", 2, 1)
    assert counts(runs) == {"a": 1, "b": 2, "c": 1}
    assert files_of(pfs, "half") == {"/a": "1", "/b": "2", "/c": "3"}


@LOCAL
def test_run_pipeline_reruns_the_failed_datums_only(cli, pfs, pps, spec_file, run_controller, tmp_path):
    """run-pipeline (Pachyderm's run pipeline) makes a new job over the
    newest job's inputs: after a failure only the failed datum runs; with
    --reprocess every datum runs, at the same spec version."""
    runs, fixed = tmp_path / "runs.log", tmp_path / "fixed"
    pfs.create_repo("in")
    put(pfs, "in", {"/a": "1", "/b": "2"})
    script = (f"echo $(basename $in) >> {runs}; "
              f"if [ $(basename $in) = b ] && [ ! -e {fixed} ]; then exit 1; fi; cp $in /pfs/out/")
    assert_clean_error(cli("run-pipeline", "half"), "pipeline half not found")
    ok(cli("create-pipeline", "-f", spec_file(pipeline("half", sh(script), pfs_input("in"), datum_tries=1))))
    run_controller()
    failed = pps.list_jobs("half")[0]
    assert failed.state == "failure"
    assert_clean_error(cli("run-pipeline", "half", "other@master"), "repo other is not an input of pipeline half")
    usage = cli("run-pipeline", "half", "in")
    assert usage.code == 2 and "expected REPO@COMMIT" in usage.err and "Traceback" not in usage.err, usage
    fixed.touch()
    rerun = ok(cli("run-pipeline", "half")).out.strip()
    assert rerun != failed.id and pps.inspect_job(rerun).state == "created"
    run_controller()
    job = pps.inspect_job(rerun)
    assert (job.state, job.datums_processed, job.datums_skipped) == ("success", 1, 1), job
    assert job.inputs == failed.inputs and job.executor == "process"
    assert counts(runs) == {"a": 1, "b": 2}
    assert files_of(pfs, "half") == {"/a": "1", "/b": "2"}
    again = ok(cli("run-pipeline", "half", "--reprocess", f"in@{failed.inputs[0]['commit']}")).out.strip()
    run_controller()
    job = pps.inspect_job(again)
    assert (job.state, job.datums_processed, job.datums_skipped) == ("success", 2, 0), job
    assert counts(runs) == {"a": 2, "b": 3}
    assert pps.inspect_pipeline("half").version == 1 and len(pps.list_jobs("half")) == 3


@LOCAL
def test_two_datums_writing_one_path_fail_the_job(cli, pfs, spec_file, run_controller):
    """Two datums writing the same output path fail the job with a message
    naming the path; the output branch does not move."""
    pfs.create_repo("in")
    put(pfs, "in", {"/a": "1"})
    ok(cli("create-pipeline", "-f", spec_file(pipeline("clash", sh("cp $in /pfs/out/$(basename $in)"), pfs_input("in")))))
    run_controller()
    good_head = raw(cli("inspect-commit", "clash", "master", "--raw"))["id"]
    put(pfs, "in", {"/b": "2"})
    spec = pipeline("clash", sh("mkdir -p /pfs/out/x && cp $in /pfs/out/x/same.txt"), pfs_input("in"))
    ok(cli("update-pipeline", "-f", spec_file(spec)))
    run_controller()
    job = list_jobs(cli, "clash")[0]
    assert job["state"] == "failure"
    assert "/x/same.txt" in job["reason"] and "both wrote" in job["reason"]
    assert (job["datums_total"], job["datums_processed"]) == (2, 2)
    assert "/x/same.txt" in ok(cli("inspect-job", job["id"])).out
    assert raw(cli("inspect-commit", "clash", "master", "--raw"))["id"] == good_head


def test_datums_writing_a_file_and_a_file_below_it_fail_the_job(cli, pfs, spec_file, run_controller):
    """One datum writing output file /x and another /x/y (a path that would
    be a file and a directory at once) fail the job naming both paths; no
    output commit lands."""
    pfs.create_repo("in")
    put(pfs, "in", {"/a": "1", "/b": "2"})
    cmd = sh('if [ "$(basename $in)" = a ]; then cp $in /pfs/out/x; else mkdir /pfs/out/x && cp $in /pfs/out/x/y; fi')
    ok(cli("create-pipeline", "-f", spec_file(pipeline("clash", cmd, pfs_input("in")))))
    run_controller()
    job = list_jobs(cli, "clash")[0]
    assert job["state"] == "failure"
    assert "/x and /x/y below it" in job["reason"], job["reason"]
    assert cli("inspect-commit", "clash", "master").code != 0


@LOCAL
def test_failing_datum_is_retried_then_fails_the_job(cli, pfs, spec_file, run_controller, tmp_path):
    """A datum failing every try is attempted datum_tries times; the job
    fails naming the datum and showing the tail of its stderr (inspect-job,
    inspect-datum, get-logs); the output branch is not moved. A datum that
    fails once and then succeeds is retried (in Pachyderm's words, recovered
    means rescued by err_cmd, which this pipeline has none of)."""
    runs = tmp_path / "runs.log"
    pfs.create_repo("in")
    put(pfs, "in", {"/good": "fine", "/flaky": "ok"})
    script = (f"echo $(basename $in) >> {runs}; "
              "if [ $(basename $in) = bad ]; then echo \"boom-$(cat $in)\" >&2; exit 3; fi; "
              f"if [ $(basename $in) = flaky ] && [ $(grep -c flaky {runs}) -lt 2 ]; then exit 1; fi; "
              "cp $in /pfs/out/")
    ok(cli("create-pipeline", "-f", spec_file(pipeline("fragile", sh(script), pfs_input("in"), datum_tries=4))))
    run_controller()
    job = list_jobs(cli, "fragile")[0]
    assert (job["state"], job["datums_processed"], job["datums_retried"], job["datums_recovered"]) == \
        ("success", 2, 1, 0)
    assert counts(runs) == {"good": 1, "flaky": 2}
    good_head = raw(cli("inspect-commit", "fragile", "master", "--raw"))["id"]

    put(pfs, "in", {"/bad": "kaput"})
    run_controller()
    assert counts(runs) == {"good": 1, "flaky": 2, "bad": 4}
    job = list_jobs(cli, "fragile")[0]
    assert (job["state"], job["datums_failed"], job["datums_skipped"]) == ("failure", 1, 2)
    bad = next(d for d in raw(cli("list-datum", job["id"], "--raw")) if d["files"].endswith(":/bad"))
    assert bad["state"] == "failed" and bad["attempts"] == 4
    text = ok(cli("inspect-job", job["id"])).out
    assert "State: failure" in text
    reason = text.split("Reason:", 1)[1]
    assert bad["id"] in reason and "4 tries" in reason and "boom-kaput" in reason
    assert "exit status 3" in reason
    datum = ok(cli("inspect-datum", job["id"], bad["id"])).out
    assert "State: failed" in datum and "Attempts: 4" in datum and bad["id"] in datum
    logs = ok(cli("get-logs", "--job", job["id"], "--datum", bad["id"][:12])).out
    assert logs.count("boom-kaput") == 4 and all(line.startswith(f"[{bad['id'][:12]}]") for line in logs.splitlines())
    assert raw(cli("inspect-commit", "fragile", "master", "--raw"))["id"] == good_head
    assert_clean_error(cli("flush-commit", "in", "master", "--timeout", "60"), "fragile", "failure", "4 tries",
                       f"inspect-job {job['id']}")

    # Without the bad file the next job succeeds, reusing the other outputs.
    pfs.delete_file("in", "master", "/bad")
    run_controller()
    job = list_jobs(cli, "fragile")[0]
    assert (job["state"], job["datums_skipped"]) == ("success", 2)
    assert files_of(pfs, "fragile") == {"/good": "fine", "/flaky": "ok"}


@LOCAL
def test_err_cmd_recovers_a_failed_datum(cli, pfs, spec_file, run_controller, tmp_path):
    """Pachyderm's err_cmd: run on a datum that failed every try, with the
    datum's inputs and err_stdin; when it exits 0 the datum is recovered:
    the job succeeds without its outputs (what the failed tries and err_cmd
    wrote is dropped), and the next job runs it again. An err_cmd that fails
    too fails the job, naming both."""
    runs = tmp_path / "runs.log"
    pfs.create_repo("in")
    put(pfs, "in", {"/good": "fine", "/bad": "kaput"})
    script = (f"echo run-$(basename $in) >> {runs}; echo partial > /pfs/out/$(basename $in).part; "
              "if [ $(basename $in) = bad ]; then exit 3; fi; cp $in /pfs/out/")
    rescue = {"err_cmd": ["sh"], "err_stdin": [f"echo err_cmd-$(basename $in)-$(cat $in) >> {runs}",
                                                "echo junk > /pfs/out/junk", "exit $RESCUE"]}
    spec = pipeline("forgiving", sh(script), pfs_input("in"), datum_tries=2)
    spec["transform"].update(rescue, env={"RESCUE": "0"})
    ok(cli("create-pipeline", "-f", spec_file(spec)))
    run_controller()
    job = list_jobs(cli, "forgiving")[0]
    assert (job["state"], job["datums_processed"], job["datums_recovered"], job["datums_failed"]) == \
        ("success", 1, 1, 0), job
    assert files_of(pfs, "forgiving") == {"/good": "fine", "/good.part": "partial\n"}
    assert counts(runs) == {"run-good": 1, "run-bad": 2, "err_cmd-bad-kaput": 1}
    bad = next(d for d in raw(cli("list-datum", job["id"], "--raw")) if d["files"].endswith(":/bad"))
    assert bad["state"] == "recovered"
    assert "recovered" in ok(cli("inspect-job", job["id"])).out

    put(pfs, "in", {"/more": "x"})  # the recovered datum runs again; the good one is skipped
    spec["transform"]["env"] = {"RESCUE": "5"}
    ok(cli("update-pipeline", "-f", spec_file(spec)))
    run_controller()
    job = list_jobs(cli, "forgiving")[0]
    assert (job["state"], job["datums_failed"]) == ("failure", 1), job
    reason = ok(cli("inspect-job", job["id"])).out.split("Reason:", 1)[1]
    assert "2 tries" in reason and "err_cmd failed too" in reason and "exit status 5" in reason


BATCHING_CODE = """
import os, sys, time
from pipectl import batch_all_datums

with open(os.environ["RUNS"], "a") as f:
    f.write("load\\n")  # the expensive part: once per worker

@batch_all_datums
def main():
    name = os.path.basename(os.environ["in"])
    with open(os.environ["RUNS"], "a") as f:
        f.write(name + "\\n")
    print("processing", name, os.environ["PACH_DATUM_ID"][:12])
    if name == "bad":
        raise ValueError("cannot read " + name)
    if name == "crash":
        os._exit(7)
    with open(os.environ["in"]) as src, open("/pfs/out/" + name, "w") as dst:
        dst.write(src.read().upper())

main()
"""


@LOCAL
def test_datum_batching_starts_user_code_once_per_worker(cli, pfs, spec_file, run_controller, tmp_path):
    """Pachyderm's datum_batching: the command starts once per worker and
    asks for each datum (pipectl.batch_all_datums); each datum's output and
    log are its own. A datum whose code raises fails after its tries (the
    same process), naming the error; code that exits mid-datum fails that
    try and is started again for the next."""
    runs, code = tmp_path / "runs.log", tmp_path / "batched.py"
    code.write_text(BATCHING_CODE)
    pfs.create_repo("in")
    put(pfs, "in", {f"/f{i}": f"text {i}" for i in range(5)})
    spec = pipeline("batched", ["python3", str(code)], pfs_input("in"), datum_tries=2)
    spec["transform"].update(datum_batching=True, env={"RUNS": str(runs)})
    ok(cli("create-pipeline", "-f", spec_file(spec)))
    run_controller()
    job = list_jobs(cli, "batched")[0]
    assert (job["state"], job["datums_processed"]) == ("success", 5), job
    assert files_of(pfs, "batched") == {f"/f{i}": f"TEXT {i}" for i in range(5)}
    assert counts(runs) == {"load": 1, **{f"f{i}": 1 for i in range(5)}}
    datum = raw(cli("list-datum", job["id"], "--raw"))[2]
    log = ok(cli("get-logs", "--job", job["id"], "--datum", datum["id"][:12])).out
    assert log.count("processing") == 1 and datum["id"][:12] in log

    put(pfs, "in", {"/bad": "x"})
    run_controller()
    job = list_jobs(cli, "batched")[0]
    reason = ok(cli("inspect-job", job["id"])).out.split("Reason:", 1)[1]
    assert job["state"] == "failure" and "user code reported: ValueError: cannot read bad" in reason, reason
    assert counts(runs)["bad"] == 2 and counts(runs)["load"] == 2  # both tries, one process

    pfs.delete_file("in", "master", "/bad")
    put(pfs, "in", {"/crash": "x", "/g": "after"})
    run_controller()
    job = list_jobs(cli, "batched")[0]
    assert job["state"] == "failure", job
    reason = ok(cli("inspect-job", job["id"])).out.split("Reason:", 1)[1]
    assert "exited with status 7 without asking for the next datum" in reason, reason
    assert counts(runs)["crash"] == 2 and counts(runs)["load"] == 4  # started again for the second try


@LOCAL
def test_missing_input_pack_fails_the_datum_not_the_worker(cli, pfs, store, spec_file, run_controller, tmp_path):
    """When a pack holding input files is gone (a damaged store), the
    worker's read-ahead gives way, each datum fails on its own missing
    input, and the job fails naming the missing object; no worker restarts."""
    for name in ("a", "b"):
        (tmp_path / name).write_text(name)
    pfs.create_repo("in")
    pfs.put_files("in", "master", [("/a", str(tmp_path / "a")), ("/b", str(tmp_path / "b"))])
    [pack] = list(store.list("objects/"))
    store.delete(pack)
    ok(cli("create-pipeline", "-f", spec_file(pipeline("copy", sh("cp $in /pfs/out/"), pfs_input("in"),
                                                       datum_tries=1))))
    run_controller()
    job = list_jobs(cli, "copy")[0]
    assert (job["state"], job["restarts"]) == ("failure", 0)
    assert "cannot lay out inputs" in job["reason"] and pack.rsplit("/", 1)[1] in job["reason"]


@LOCAL
def test_job_and_datum_commands(cli, pfs, spec_file, run_controller):
    """list-job [-p] (header, alignment, PROGRESS, --raw), inspect-job,
    list-datum, inspect-datum and get-logs (--pipeline, --job, --datum, --raw)
    and their clean errors."""
    pfs.create_repo("in")
    put(pfs, "in", {f"/f{i}": "x" * (i + 1) * 100 for i in range(3)})
    ok(cli("create-pipeline", "-f", spec_file(pipeline("copy", sh("echo copying $(basename $in); tr a-z A-Z < $in > /pfs/out/$(basename $in)"),
                                                       pfs_input("in")))))
    ok(cli("create-pipeline", "-f", spec_file(pipeline("count", sh("ls /pfs/copy | wc -l > /pfs/out/n"),
                                                       pfs_input("copy", "/")))))
    run_controller()
    put(pfs, "in", {"/f9": "new"})
    run_controller()

    rows = parse_table(ok(cli("list-job")).out, LIST_JOB_HEADER)
    jobs = list_jobs(cli)
    assert [r["ID"] for r in rows] == [j["id"] for j in jobs] and len(rows) == 4
    assert [r["PIPELINE"] for r in rows] == ["count", "copy", "count", "copy"]
    newest_copy = next(r for r in rows if r["PIPELINE"] == "copy")
    assert newest_copy["PROGRESS"] == "1 + 3 / 4" and newest_copy["STATE"] == "success"
    assert newest_copy["RESTART"] == "0" and newest_copy["DL"] == "3B" and newest_copy["UL"] == "3B"
    assert newest_copy["STARTED"].endswith("ago") or newest_copy["STARTED"].startswith("Less than")
    rows_p = parse_table(ok(cli("list-job", "-p", "copy")).out, LIST_JOB_HEADER)
    assert [r["ID"] for r in rows_p] == [j["id"] for j in jobs if j["pipeline"] == "copy"]
    assert_clean_error(cli("list-job", "-p", "nope"), "nope", "not found")

    job = [j for j in jobs if j["pipeline"] == "copy"][1]  # the first copy job
    text = ok(cli("inspect-job", job["id"])).out
    assert f"ID: {job['id']}" in text and "Pipeline: copy (spec version 1)" in text and "State: success" in text
    assert "Datums: 3 total, 3 processed, 0 skipped, 0 failed, 0 recovered" in text
    assert f"Output commit: copy@{job['output_commit']}" in text and "in@" in text
    assert raw(cli("inspect-job", job["id"], "--raw"))["id"] == job["id"]
    assert_clean_error(cli("inspect-job", "f" * 32), "not found")

    datums = raw(cli("list-datum", job["id"], "--raw"))
    assert sorted(d["files"].rsplit(":", 1)[1] for d in datums) == ["/f0", "/f1", "/f2"]
    assert {d["state"] for d in datums} == {"success"}
    table = parse_table(ok(cli("list-datum", job["id"])).out, ["ID", "FILES", "STATUS", "TIME"])
    assert sorted(r["ID"] for r in table) == sorted(d["id"] for d in datums)
    one = datums[0]
    detail = raw(cli("inspect-datum", job["id"], one["id"], "--raw"))
    assert detail["id"] == one["id"] and detail["state"] == "success" and detail["attempts"] == 1
    text = ok(cli("inspect-datum", job["id"], one["id"][:10])).out
    assert f"ID: {one['id']}" in text and "Outputs: /f" in text
    assert_clean_error(cli("inspect-datum", job["id"], "0" * 64), "not found")

    latest = ok(cli("get-logs", "--pipeline", "copy")).out.splitlines()
    assert len(latest) == 1 and latest[0].endswith("copying f9")
    logs = ok(cli("get-logs", "--job", job["id"])).out.splitlines()
    assert sorted(line.split("] ")[1] for line in logs) == ["copying f0", "copying f1", "copying f2"]
    only = ok(cli("get-logs", "--job", job["id"], "--datum", one["id"])).out.splitlines()
    assert len(only) == 1 and only[0].startswith(f"[{one['id'][:12]}] copying")
    logs_raw = raw(cli("get-logs", "-p", "copy", "--job", job["id"], "--raw"))
    assert sorted(x["datum"] for x in logs_raw) == sorted(d["id"] for d in datums)
    assert_clean_error(cli("get-logs"), "--pipeline or --job")
    assert_clean_error(cli("get-logs", "--job", job["id"], "--datum", "zzzzzzzz"), "not found")


@LOCAL
def test_a_process_left_running_does_not_write_into_the_next_datums_log(cli, pfs, spec_file, run_controller,
                                                                       tmp_path):
    """A process a datum's command leaves running ends with its datum (the
    sandbox's PID namespace goes with it), so it never writes into the next
    datum's log, nor anywhere else."""
    marks = tmp_path / "marks"
    marks.mkdir()
    pfs.create_repo("in")
    put(pfs, "in", {"/a": "a", "/b": "b"})
    script = (f"n=$(basename $in); echo start $n; if [ $n = a ]; then "
              f"(sleep 0.5; echo late from a; touch {marks / 'a-wrote'}) & else sleep 1.5; fi; cp $in /pfs/out/")
    ok(cli("create-pipeline", "-f", spec_file(pipeline("bg", sh(script), pfs_input("in")))))
    run_controller()
    assert not (marks / "a-wrote").exists()
    logs = {x["log"].split()[1]: x["log"] for x in raw(cli("get-logs", "-p", "bg", "--raw"))}
    assert logs == {"a": "start a\n", "b": "start b\n"}, logs


@LOCAL
def test_stop_job(cli, pfs, pps, spec_file, background, tmp_path):
    """While a job runs, list-job's PROGRESS counts the datums done so far;
    stop-job kills it: its workers stop, no output commit lands, the
    controller carries on; stopping a finished job is refused."""
    runs = tmp_path / "runs.log"
    pfs.create_repo("in")
    put(pfs, "in", {f"/{i:02d}": str(i) for i in range(20)})
    ok(cli("create-pipeline", "-f", spec_file(pipeline("slow", sh(f"echo $(basename $in) >> {runs}; sleep 0.5; "
                                                                  "cp $in /pfs/out/"), pfs_input("in")))))
    controller = background("controller", "--exit-when-idle", "--poll-interval", "0.05")
    wait_for(lambda: [j for j in pps.list_jobs("slow") if j.datums_processed >= 1], what="progress")
    row = parse_table(ok(cli("list-job", "-p", "slow")).out, LIST_JOB_HEADER)[0]
    done, total = row["PROGRESS"].split(" + 0 / ")
    assert (row["STATE"], total) == ("running", "20") and 1 <= int(done) < 20, row
    job = pps.list_jobs("slow")[0].to_dict()
    ok(cli("stop-job", job["id"]))
    assert controller.wait(60) == 0, controller.err_path.read_text()
    ran = sum(counts(runs).values())
    assert ran < 20
    time.sleep(0.5)
    assert sum(counts(runs).values()) == ran  # no user code left running
    job = list_jobs(cli, "slow")[0]
    assert job["state"] == "killed" and job["finished"]
    assert "State: killed" in ok(cli("inspect-job", job["id"])).out
    assert_clean_error(cli("inspect-commit", "slow", "master"), "no commits")
    assert_clean_error(cli("stop-job", job["id"]), "already finished")
    assert_clean_error(cli("stop-job", "a" * 32), "not found")


@LOCAL
def test_parallel_workers_each_run_many_datums(cli, pfs, spec_file, run_controller, tmp_path):
    """parallelism_spec.constant = 3 starts 3 worker processes; each runs
    several datums, starting the user command once per datum."""
    runs = tmp_path / "runs.log"
    pfs.create_repo("in")
    put(pfs, "in", {f"/{i:02d}": str(i) for i in range(15)})
    script = f"echo $PACH_DATUM_ID >> {runs}; cp $in /pfs/out/"
    ok(cli("create-pipeline", "-f", spec_file(pipeline("par", sh(script), pfs_input("in"),
                                                       parallelism_spec={"constant": 3}))))
    result = run_controller()
    lines = runs.read_text().split()
    assert len(lines) == 15 and len(set(lines)) == 15
    datums = raw(cli("list-datum", list_jobs(cli, "par")[0]["id"], "--raw"))
    workers: dict[str, int] = {}
    for d in datums:
        workers[d["worker"]] = workers.get(d["worker"], 0) + 1
    assert len(workers) == 3 and all(n >= 2 for n in workers.values()), workers
    assert result.err.count("datums to run") == 3  # one worker process each
    assert len(files_of(pfs, "par")) == 15
    job = list_jobs(cli, "par")[0]
    assert (job["state"], job["restarts"], job["datums_processed"]) == ("success", 0, 15)


# the done-when scenario ------------------------------------------------------

@pytest.mark.parametrize("store_url, n", [("local", 1000), ("s3", 100)], indirect=["store_url"])
def test_two_stage_pipeline_over_many_files(n, cli, pfs, store, spec_file, run_controller, tmp_path):
    """Issue #3's done-when: a two-stage pipeline over 1,000 input files runs
    to completion under ``controller --exit-when-idle``; adding one file runs
    jobs that process 1 datum and skip the rest (PROGRESS shows it);
    provenance and list-job show what Pachyderm's would. Inputs and outputs
    are small files, so both are kept in packs: the store holds a few
    objects, not one per file."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(n):
        (data / f"{i:04d}.txt").write_text(f"line {i}\n")
    ok(cli("create-repo", "numbers"))
    ok(cli("put-file", "numbers", "master", "/", "-r", "-f", str(data)))
    ok(cli("create-pipeline", "-f", spec_file(pipeline(
        "double", sh('read line < $numbers; echo "$line twice" > /pfs/out/${numbers##*/}'), pfs_input("numbers"),
        parallelism_spec={"constant": 2}))))
    ok(cli("create-pipeline", "-f", spec_file(pipeline(
        "sizes", sh("read line < $double; echo ${#line} > /pfs/out/${double##*/}.size"), pfs_input("double"),
        parallelism_spec={"constant": 2}))))
    run_controller()
    rows = parse_table(ok(cli("list-job")).out, LIST_JOB_HEADER)
    assert [(r["PIPELINE"], r["PROGRESS"], r["STATE"]) for r in rows] == [
        ("sizes", f"{n} + 0 / {n}", "success"), ("double", f"{n} + 0 / {n}", "success")]
    assert len(list(store.list("objects/"))) < n / 10  # 3n files

    (data / "new.txt").write_text("brand new\n")
    ok(cli("put-file", "numbers", "master", "/new.txt", "-f", str(data / "new.txt")))
    run_controller()
    rows = parse_table(ok(cli("list-job")).out, LIST_JOB_HEADER)
    assert [(r["PIPELINE"], r["PROGRESS"], r["STATE"], r["RESTART"]) for r in rows] == [
        ("sizes", f"1 + {n} / {n + 1}", "success", "0"), ("double", f"1 + {n} / {n + 1}", "success", "0"),
        ("sizes", f"{n} + 0 / {n}", "success", "0"), ("double", f"{n} + 0 / {n}", "success", "0")]
    assert rows[1]["DL"] == "10B" and rows[1]["UL"] == "16B"

    sizes = files_of(pfs, "sizes")
    assert len(sizes) == n + 1 and sizes["/new.txt.size"] == "15\n" and sizes["/0007.txt.size"] == "12\n"
    numbers_head = raw(cli("inspect-commit", "numbers", "master", "--raw"))
    double_head = raw(cli("inspect-commit", "double", "master", "--raw"))
    sizes_head = raw(cli("inspect-commit", "sizes", "master", "--raw"))
    assert sizes_head["provenance"] == [
        {"repo": "double", "branch": "master", "commit": double_head["id"], "pipeline_version": 1},
        {"repo": "numbers", "branch": "master", "commit": numbers_head["id"], "pipeline_version": None}]
    assert sizes_head["parent"] == list_jobs(cli, "sizes")[1]["output_commit"]
    assert (sizes_head["origin"], sizes_head["job"]) == ("auto", rows[0]["ID"])
