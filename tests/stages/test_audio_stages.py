"""End-to-end tests of the speech-audio pipeline stages (stages/audio/*).

The stages run as subprocesses with the *stage* interpreter (env
``PIPECTL_STAGE_PYTHON``, default ``<repo>/.venv-stages/bin/python``), the
way the process executor runs them: current directory = the stage
directory, every /pfs path passed on the command line, parameters in env
vars.  This file itself needs only the platform's Python (no numpy).

A real espeak-ng corpus is generated once per module
(scripts/make_speech_corpus.py, about 10 s) and served over HTTP on an
ephemeral 127.0.0.1 port.  FILTER and EXTRACT run once per speaker folder,
as glob "/*" datums would, each with its own output directory, merged
afterwards; LEARN runs once over everything (glob "/").

Skipped, with the reason, when the stage interpreter or its audio packages
are missing, or when espeak-ng / sox are not installed.
"""
from __future__ import annotations

import ast
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import helpers
import pytest
from helpers import needs, skip

REPO = Path(__file__).resolve().parents[2]
STAGES = REPO / "stages" / "audio"
STAGE_PYTHON = Path(helpers.STAGE_PYTHON)
MAX_SECONDS = 4.0

pytestmark = needs("stages", STAGE_PYTHON.exists(), f"stage interpreter {STAGE_PYTHON} not found (set PIPECTL_STAGE_PYTHON)")


def run_stage(stage: str, script: str, *args: str | Path, env: dict | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``stages/audio/<stage>/<script> args`` with the stage interpreter."""
    return subprocess.run(
        [str(STAGE_PYTHON), script, *map(str, args)], cwd=STAGES / stage,
        env={**os.environ, **(env or {})}, capture_output=True, text=True,
        timeout=timeout)


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def npy_shape(path: Path) -> tuple:
    """Shape and dtype from an NPY v1/v2 header (no numpy needed)."""
    with open(path, "rb") as f:
        assert f.read(6) == b"\x93NUMPY"
        major = f.read(2)[0]
        size = int.from_bytes(f.read(2 if major == 1 else 4), "little")
        header = ast.literal_eval(f.read(size).decode("latin1"))
    return header["shape"], header["descr"]


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if ": error: " in line]


def per_speaker(stage: str, script: str, src: Path, input_name: str, work: Path,
                env: dict | None = None) -> tuple[Path, list[subprocess.CompletedProcess]]:
    """Run a glob "/*" stage once per speaker folder of ``src``, like the
    platform: datum input /pfs/<input_name>/<speaker>/..., a fresh /pfs/out
    per datum, outputs merged into one directory (returned)."""
    merged, procs = work / f"{stage}-out", []
    for speaker in sorted(p for p in src.iterdir() if p.is_dir()):
        datum = work / f"{stage}-datum-{speaker.name}"
        shutil.copytree(speaker, datum / input_name / speaker.name)
        proc = run_stage(stage, script, "--input", datum / input_name,
                         "--output", datum / "out", env=env)
        assert proc.returncode == 0, f"{speaker.name}: {proc.stderr}"
        shutil.copytree(datum / "out", merged, dirs_exist_ok=True)
        procs.append(proc)
    return merged, procs


@pytest.fixture(scope="module")
def stage_python_ready() -> None:
    probe = subprocess.run([str(STAGE_PYTHON), "-c", "import librosa, sklearn, soundfile"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        skip("audio", f"{STAGE_PYTHON} lacks librosa/scikit-learn/soundfile "
                    f"(install stages/audio/*/requirements.txt): "
                    f"{probe.stderr.strip().splitlines()[-1:]}")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Directory holding speech.zip (the generated corpus) and bad.zip."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            skip("audio", f"{tool} not installed (apt-get install espeak-ng sox)")
    root = tmp_path_factory.mktemp("corpus")
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_speech_corpus.py"),
                    str(root / "speech.zip")], check=True, timeout=300)
    (root / "bad.zip").write_text("this is not a zip archive\n")
    return root


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def base_url(corpus):
    """http://127.0.0.1:<ephemeral port> serving the corpus directory."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(corpus)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, base_url, stage_python_ready) -> dict:
    """Run fetch -> filter -> extract -> learn once; return dirs, logs, timings."""
    work = tmp_path_factory.mktemp("pipeline")
    trigger = work / "audio-trigger"
    trigger.mkdir()
    (trigger / "request.txt").write_text("fetch please\n")
    spec_env = {name: json.loads((REPO / "specs" / "audio" / f"{name}.json").read_text())
                ["transform"]["env"] for name in ("fetch", "filter", "extract", "learn")}
    out, times = {}, {}

    start = time.monotonic()
    fetch_env = {**spec_env["fetch"], "SOURCE_URL": f"{base_url}/speech.zip"}
    proc = run_stage("fetch", "fetch.py", "--input", trigger, "--output", work / "fetch-out",
                     env=fetch_env)
    assert proc.returncode == 0, proc.stderr
    out["fetch"], out["fetch_log"], times["fetch"] = work / "fetch-out", proc.stdout, time.monotonic() - start

    start = time.monotonic()
    out["filter"], procs = per_speaker("filter", "filter_longer.py", out["fetch"], "fetch", work,
                                       spec_env["filter"])
    out["filter_log"], times["filter"] = "".join(p.stdout for p in procs), time.monotonic() - start

    start = time.monotonic()
    out["extract"], procs = per_speaker("extract", "extract_mfcc.py", out["filter"], "filter", work,
                                        spec_env["extract"])
    out["extract_log"], times["extract"] = "".join(p.stdout for p in procs), time.monotonic() - start

    start = time.monotonic()
    proc = run_stage("learn", "learn.py", "--input", out["extract"], "--output", work / "learn-out",
                     env=spec_env["learn"])
    assert proc.returncode == 0, proc.stderr
    out["learn"], out["learn_log"], times["learn"] = work / "learn-out", proc.stdout, time.monotonic() - start
    out["learn_env"] = spec_env["learn"]
    print("\naudio stage wall times (s):", {k: round(v, 1) for k, v in times.items()})
    return out


def test_fetch_unpacks_one_folder_per_speaker(pipeline):
    speakers = sorted(p for p in pipeline["fetch"].iterdir())
    assert len(speakers) >= 6 and all(p.is_dir() for p in speakers)
    for speaker in speakers:
        clips = sorted(speaker.glob("*.wav"))
        assert len(clips) >= 41, speaker
        with wave.open(str(clips[0]), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
    assert "triggered by 1 file(s)" in pipeline["fetch_log"]
    assert not list(pipeline["fetch"].glob("*.tsv")), "non-WAV members must be skipped"


def test_filter_drops_only_clips_longer_than_max_seconds(pipeline):
    dropped = 0
    for clip in pipeline["fetch"].rglob("*.wav"):
        rel = clip.relative_to(pipeline["fetch"])
        kept = pipeline["filter"] / rel
        if wav_seconds(clip) > MAX_SECONDS:
            assert not kept.exists(), f"{rel} is longer than {MAX_SECONDS} s but was kept"
            dropped += 1
        else:
            assert kept.read_bytes() == clip.read_bytes(), f"{rel} not copied through"
    assert dropped >= 3
    assert pipeline["filter_log"].count("filter: drop ") == dropped


def test_extract_writes_one_mfcc_matrix_per_clip(pipeline):
    clips = sorted(p.relative_to(pipeline["filter"]) for p in pipeline["filter"].rglob("*.wav"))
    features = sorted(p.relative_to(pipeline["extract"]) for p in pipeline["extract"].rglob("*.npy"))
    assert features == [c.with_suffix(".npy") for c in clips]
    shape, dtype = npy_shape(pipeline["extract"] / features[0])
    assert dtype == "<f4" and len(shape) == 2 and shape[0] == 20 and shape[1] > 50
    manifest = json.loads(next(pipeline["extract"].rglob("mfcc_params.json")).read_text())
    assert manifest["params"]["N_MFCC"] == 20 and manifest["params"]["HOP_LENGTH"] == 160


def test_learn_identifies_speakers_well_above_chance(pipeline):
    metrics = json.loads((pipeline["learn"] / "metrics.json").read_text())
    n = metrics["n_speakers"]
    assert n == len(list(pipeline["extract"].iterdir())) >= 6
    assert metrics["class_names"] == sorted(p.name for p in pipeline["extract"].iterdir())
    assert metrics["chance_accuracy"] == pytest.approx(1 / n)
    assert metrics["accuracy"] >= max(0.8, 4 * metrics["chance_accuracy"]), metrics
    matrix = metrics["confusion_matrix"]
    assert len(matrix) == n and all(len(row) == n for row in matrix)
    assert sum(map(sum, matrix)) == metrics["n_test"] >= 2 * n
    assert (pipeline["learn"] / "model.joblib").stat().st_size > 0
    assert "held-out accuracy" in pipeline["learn_log"]


def test_learn_is_deterministic(pipeline, tmp_path):
    proc = run_stage("learn", "learn.py", "--input", pipeline["extract"], "--output", tmp_path,
                     env=pipeline["learn_env"])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "metrics.json").read_text() == (pipeline["learn"] / "metrics.json").read_text()


@pytest.mark.parametrize("stage,script,input_name", [
    ("filter", "filter_longer.py", "fetch"), ("extract", "extract_mfcc.py", "filter")])
def test_corrupt_wav_fails_the_datum_with_one_clear_line(pipeline, tmp_path, stage, script, input_name):
    speaker = tmp_path / input_name / "spk"
    speaker.mkdir(parents=True)
    good = next(pipeline["filter"].rglob("*.wav"))
    shutil.copyfile(good, speaker / "00.wav")
    (speaker / "01.wav").write_bytes(good.read_bytes()[:20])  # truncated header
    proc = run_stage(stage, script, "--input", tmp_path / input_name, "--output", tmp_path / "out")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = error_lines(proc)
    assert len(errors) == 1 and "spk/01.wav" in errors[0] and "not a readable WAV" in errors[0], proc.stderr


@pytest.mark.parametrize("path,expected", [
    ("/missing.zip", "HTTP 404"), ("/bad.zip", "not a zip archive")])
def test_fetch_bad_source_fails_with_one_clear_line(base_url, tmp_path, path, expected):
    proc = run_stage("fetch", "fetch.py", "--input", tmp_path / "trigger", "--output", tmp_path / "out",
                     env={"SOURCE_URL": base_url + path})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = error_lines(proc)
    assert len(errors) == 1 and expected in errors[0], proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_fetch_unreachable_or_unsupported_url_fails(tmp_path):
    unreachable = run_stage("fetch", "fetch.py", "--output", tmp_path / "out",
                            env={"SOURCE_URL": "http://127.0.0.1:9/speech.zip", "FETCH_RETRIES": "2"})
    unsupported = run_stage("fetch", "fetch.py", "--output", tmp_path / "out",
                            env={"SOURCE_URL": "ftp://example.invalid/speech.zip"})
    for proc, expected in ((unreachable, "cannot download"), (unsupported, "unsupported URL")):
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert expected in "".join(error_lines(proc)), proc.stderr


def test_corpus_generator_is_deterministic(tmp_path):
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            skip("audio", f"{tool} not installed (apt-get install espeak-ng sox)")
    script = str(REPO / "scripts" / "make_speech_corpus.py")
    for name in ("a.zip", "b.zip"):
        subprocess.run([sys.executable, script, str(tmp_path / name), "--clips", "2"],
                       check=True, timeout=120, capture_output=True)
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
