"""End-to-end tests of the shipped Iris stages: preprocess -> train -> inference.

The stage scripts run as subprocesses, each in its own stage directory (as in
its image), with the stage environment's interpreter: ``$PIPECTL_STAGE_PYTHON``
or ``<repo>/.venv-stages/bin/python``. Tests needing it are skipped when it is
missing. This file itself imports nothing beyond the standard library and
pytest, so it runs under the platform's plain Python.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import helpers
import pytest
from helpers import skip

ROOT = Path(__file__).resolve().parents[2]
STAGES = ROOT / "stages"
STAGE_PYTHON = Path(helpers.STAGE_PYTHON)
CLASSES = ["setosa", "versicolor", "virginica"]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
LABELED_HEADER = ",".join(FEATURES) + ",species\n"
MODEL_FILES = {"model-symbol.json", "model-0000.params", "classes.json", "features.json",
               "scaler.json", "metrics.json"}
# Stage parameters read from the environment; cleared so the caller's shell cannot change results.
PARAM_VARS = ("TEST_FRACTION", "SEED", "EPOCHS", "LEARNING_RATE", "WEIGHT_DECAY", "BATCH_SIZE", "HIDDEN_UNITS")


@pytest.fixture(scope="module")
def stage_python() -> Path:
    """The stage interpreter; skips the test when it does not exist."""
    if not STAGE_PYTHON.exists():
        skip("stages", f"stage interpreter {STAGE_PYTHON} not found; "
                    "set PIPECTL_STAGE_PYTHON or create .venv-stages with the stage requirements")
    return STAGE_PYTHON


def run_py(python: Path, cwd: Path, args: list, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python args...`` in ``cwd`` with a clean parameter environment; return the result."""
    base = {k: v for k, v in os.environ.items() if k not in PARAM_VARS}
    return subprocess.run(
        [str(python), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**base, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
    )


def run_stage(python: Path, stage: str, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``stages/<stage>/<stage>.py args...`` from its stage directory."""
    return run_py(python, STAGES / stage, [f"{stage}.py", *args], env)


def check_ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Assert a zero exit code, showing the output otherwise."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def check_error(result: subprocess.CompletedProcess, stage: str, *fragments: str) -> str:
    """Assert exit code 1 and a final stderr line ``<stage>: error: ...`` holding ``fragments``."""
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stderr}"
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{stage}: error: "), last
    for fragment in fragments:
        assert fragment in last, last
    assert "Traceback" not in result.stderr
    return last


def read_rows(path: Path) -> list[list[str]]:
    """Return the CSV rows of ``path``, header included."""
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


@pytest.fixture(scope="module")
def pipeline(stage_python, tmp_path_factory) -> dict[str, Path]:
    """Generate the data and run the three stages once; return their directories."""
    base = tmp_path_factory.mktemp("iris")
    dirs = {name: base / name for name in ("iris", "iris-new", "preprocess", "train", "inference")}
    check_ok(run_py(stage_python, ROOT, ["scripts/iris_data.py", dirs["iris"], "--new-dir", dirs["iris-new"]]))
    check_ok(run_stage(stage_python, "preprocess", "--input", dirs["iris"], "--output", dirs["preprocess"]))
    check_ok(run_stage(stage_python, "train", "--input", dirs["preprocess"], "--output", dirs["train"]))
    check_ok(run_stage(stage_python, "inference", "--model", dirs["train"],
                       "--input", dirs["iris-new"], "--output", dirs["inference"]))
    return dirs


def test_data_script_writes_iris_and_new_data(pipeline):
    rows = read_rows(pipeline["iris"] / "iris.csv")
    assert rows[0] == FEATURES + ["species"]
    assert len(rows) == 151
    assert {r[4] for r in rows[1:]} == set(CLASSES)
    new = sorted(p.name for p in pipeline["iris-new"].iterdir())
    assert new == ["test1.csv", "test2.csv"]
    assert read_rows(pipeline["iris-new"] / "test1.csv")[0] == FEATURES


def test_preprocess_split_and_scaler(pipeline):
    out = pipeline["preprocess"]
    report = json.loads((out / "report.json").read_text())
    assert (report["rows_read"], report["rows_kept"], report["rows_dropped"]) == (150, 150, 0)
    assert (report["n_train"], report["n_test"]) == (120, 30)
    assert report["test_class_counts"] == {c: 10 for c in CLASSES}
    scaler = json.loads((out / "scaler.json").read_text())
    assert scaler["features"] == FEATURES
    assert len(scaler["mean"]) == len(scaler["std"]) == 4 and all(s > 0 for s in scaler["std"])
    train = read_rows(out / "train.csv")
    assert train[0] == FEATURES + ["species"] and len(train) == 121
    column_means = [sum(float(r[i]) for r in train[1:]) / 120 for i in range(4)]
    assert all(abs(m) < 1e-9 for m in column_means)  # standardized on the train split
    assert len(read_rows(out / "test.csv")) == 31


def test_train_accuracy_and_model_dir(pipeline):
    out = pipeline["train"]
    assert {p.name for p in out.iterdir()} >= MODEL_FILES
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.9
    assert (metrics["n_train"], metrics["n_test"]) == (120, 30)
    assert metrics["classes"] == CLASSES
    assert sum(map(sum, metrics["confusion_matrix"])) == 30
    assert set(CLASSES) <= set(metrics["classification_report"])
    assert json.loads((out / "classes.json").read_text()) == CLASSES
    assert json.loads((out / "features.json").read_text()) == FEATURES


def test_train_is_deterministic(pipeline, stage_python, tmp_path):
    check_ok(run_stage(stage_python, "train", "--input", pipeline["preprocess"], "--output", tmp_path))
    for name in ("metrics.json", "model-0000.params", "model-symbol.json"):
        assert (tmp_path / name).read_bytes() == (pipeline["train"] / name).read_bytes(), name


def test_inference_predicts_each_file(pipeline):
    truth = {tuple(r[:4]): r[4] for r in read_rows(pipeline["iris"] / "iris.csv")[1:]}
    correct = total = 0
    for source in sorted(pipeline["iris-new"].glob("*.csv")):
        rows = read_rows(source)[1:]
        predicted = (pipeline["inference"] / source.name).read_text().splitlines()
        assert len(predicted) == len(rows) and set(predicted) <= set(CLASSES)
        correct += sum(truth[tuple(r)] == p for r, p in zip(rows, predicted))
        total += len(rows)
    assert correct / total >= 0.9


def test_inference_single_datum_headerless(pipeline, stage_python, tmp_path):
    """One file per datum as with the "/*" glob; a headerless file is read in model column order."""
    datum = tmp_path / "iris-new"
    datum.mkdir()
    (datum / "one.csv").write_text("5.1,3.5,1.4,0.2\n\n6.7,3.0,5.2,2.3\n")
    check_ok(run_stage(stage_python, "inference", "--model", pipeline["train"],
                       "--input", datum, "--output", tmp_path / "out"))
    assert (tmp_path / "out" / "one.csv").read_text() == "setosa\nvirginica\n"


@pytest.mark.parametrize("content, fragments", [
    ("sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,abc,0.2\n", ["line 2", "petal_length", "not a number"]),
    ("5.1,3.5,1.4\n", ["line 1", "3 fields, expected 4"]),
    ("a,b,c,d\n1,2,3,4\n", ["missing column(s) sepal_length"]),
    ("5.1,3.5,1.4,0.2\n\x00\x01\x02\n", ["bad.csv"]),
])
def test_inference_rejects_corrupt_csv(pipeline, stage_python, tmp_path, content, fragments):
    datum = tmp_path / "in"
    datum.mkdir()
    (datum / "bad.csv").write_text(content)
    result = run_stage(stage_python, "inference", "--model", pipeline["train"],
                       "--input", datum, "--output", tmp_path / "out")
    check_error(result, "inference", "bad.csv", *fragments)
    assert not (tmp_path / "out" / "bad.csv").exists()


def test_preprocess_drops_and_reports_bad_rows(stage_python, tmp_path):
    """Headerless UCI-style rows ("Iris-setosa") are read; bad rows are dropped and counted."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    good = "".join(f"{5 + i / 10},3.{i},1.{i},0.{i},Iris-setosa\n{6 + i / 10},2.{i},4.{i},1.{i},Iris-versicolor\n"
                   for i in range(6))
    bad = "1,2,3,x,setosa\n1,2,3,4,rose\n1,2,,4,setosa\n1,2,3,inf,setosa\n1,2,3\n"
    (src / "sub" / "uci.csv").write_text(good + bad)
    check_ok(run_stage(stage_python, "preprocess", "--input", src, "--output", tmp_path / "out"))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["rows_read"], report["rows_kept"], report["rows_dropped"]) == (17, 12, 5)
    assert report["drop_reasons"] == {"missing_value": 1, "non_finite": 1, "non_numeric": 1,
                                      "unknown_label": 1, "wrong_field_count": 1}
    assert report["dropped_examples"][0] == {"file": "sub/uci.csv", "line": 13, "reason": "non_numeric",
                                             "row": ["1", "2", "3", "x", "setosa"]}
    assert report["test_class_counts"] == {"setosa": 1, "versicolor": 1}


@pytest.mark.parametrize("content, fragments", [
    ("sepal_length,sepal_width,petal_length,species\n1,2,3,setosa\n", ["missing column(s) petal_width"]),
    (LABELED_HEADER, ["no valid data rows"]),
    (LABELED_HEADER + "1,2,3,x,setosa\n", ["no valid data rows (1 read, 1 dropped)"]),
    (LABELED_HEADER + "1,2,3,4,\"unterminated\n", ["x.csv"]),
])
def test_preprocess_rejects_unusable_file(stage_python, tmp_path, content, fragments):
    src = tmp_path / "in"
    src.mkdir()
    (src / "x.csv").write_text(content)
    check_error(run_stage(stage_python, "preprocess", "--input", src, "--output", tmp_path / "out"),
                "preprocess", "x.csv", *fragments)


def test_preprocess_rejects_binary_and_empty_input(stage_python, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    check_error(run_stage(stage_python, "preprocess", "--input", src, "--output", tmp_path / "out"),
                "preprocess", "no *.csv files")
    (src / "x.csv").write_bytes(bytes(range(256)))
    check_error(run_stage(stage_python, "preprocess", "--input", src, "--output", tmp_path / "out"),
                "preprocess", "x.csv", "not a UTF-8 text file")


def test_preprocess_test_fraction_from_env(pipeline, stage_python, tmp_path):
    check_ok(run_stage(stage_python, "preprocess", "--input", pipeline["iris"], "--output", tmp_path,
                       env={"TEST_FRACTION": "0.3"}))
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["n_train"], report["n_test"], report["test_fraction"]) == (105, 45, 0.3)


def test_iris_model_module(pipeline, stage_python):
    """The serving module predicts raw rows and rejects a wrong feature count with ValueError."""
    code = f"""
import json, iris_model
m = iris_model.load({str(pipeline["train"])!r})
out = {{"predict": m.predict([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]),
       "proba": m.predict_proba([[5.1, 3.5, 1.4, 0.2]]).tolist(), "empty": m.predict([])}}
try:
    m.predict([[1.0, 2.0, 3.0]])
except ValueError as exc:
    out["error"] = str(exc)
print(json.dumps(out))
"""
    result = check_ok(run_py(stage_python, STAGES / "inference", ["-c", code]))
    out = json.loads(result.stdout)
    assert out["predict"] == ["setosa", "virginica"]
    assert len(out["proba"][0]) == 3 and abs(sum(out["proba"][0]) - 1) < 1e-5
    assert out["empty"] == []
    assert out["error"].startswith("expected 4 features per row")


@pytest.mark.parametrize("stage", ["preprocess", "train", "inference"])
def test_stage_layout_and_spec(stage):
    """Each stage dir holds its script, exact pins and a Dockerfile on the base image; its spec runs the script."""
    stage_dir = STAGES / stage
    assert (stage_dir / f"{stage}.py").is_file()
    pins = [line for line in (stage_dir / "requirements.txt").read_text().splitlines() if line.strip()]
    assert pins and all("==" in line for line in pins)
    assert "FROM pipectl/base:0.1.0" in (stage_dir / "Dockerfile").read_text().splitlines()
    spec = json.loads((ROOT / "specs" / "iris" / f"{stage}.json").read_text())
    assert spec["pipeline"]["name"] == stage
    assert spec["transform"]["image"] == f"pipectl/{stage}:0.1.0"
    cmd = spec["transform"]["cmd"]
    assert cmd[:2] == ["python3", f"{stage}.py"]
    assert "/pfs/out" in cmd

