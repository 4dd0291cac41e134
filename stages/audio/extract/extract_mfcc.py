#!/usr/bin/env python3
"""EXTRACT stage: MFCC features for every clip, with librosa.

Pipeline transform (specs/audio/extract.json, input repo ``filter``,
glob "/*", so one datum is one speaker folder)::

    python3 extract_mfcc.py --input /pfs/filter --output /pfs/out

Input: every ``*.wav`` file under ``--input`` (normally
``<input>/<speaker>/<clip>.wav``).
Output, for each clip, at the same relative path:

* ``<speaker>/<clip>.npy``: float32 array of shape ``(N_MFCC, n_frames)``,
  the MFCC matrix exactly as ``librosa.feature.mfcc`` returns it (row k =
  coefficient k, column t = frame t, frame t centred at t * HOP_LENGTH
  samples), written with ``numpy.save`` (NPY format v1.0).
* ``<speaker>/mfcc_params.json``: the parameters below plus, per clip, the
  number of samples (at SAMPLE_RATE, before trimming) and of frames, so a
  later stage can check that all of its inputs were computed the same way.

Method, per clip:

1. read the file with libsndfile (python-soundfile), average the channels
   to mono, float32 in [-1, 1];
2. resample to SAMPLE_RATE if needed (``librosa.resample``, soxr "HQ");
3. trim leading/trailing parts quieter than TRIM_DB below the clip's peak
   (``librosa.effects.trim``; 0 disables), so silence does not dominate
   the per-clip statistics the LEARN stage computes;
4. ``librosa.feature.mfcc(y, sr=SAMPLE_RATE, n_mfcc=N_MFCC, n_fft=N_FFT,
   hop_length=HOP_LENGTH, win_length=WIN_LENGTH, n_mels=N_MELS, fmin=FMIN,
   fmax=FMAX)``: Hann-windowed STFT, power spectrogram, Slaney-style mel
   filter bank, log power in dB (``power_to_db``), DCT-II with orthonormal
   scaling, first N_MFCC coefficients.  Reference:
   https://librosa.org/doc/0.10.2/generated/librosa.feature.mfcc.html and
   https://librosa.org/doc/0.10.2/generated/librosa.feature.melspectrogram.html

Parameters (env vars set in the spec's transform.env; defaults suit 16 kHz
speech):

    SAMPLE_RATE  16000  Hz, rate the audio is analysed at
    N_MFCC       20     coefficients per frame
    N_FFT        512    FFT size in samples (32 ms at 16 kHz)
    WIN_LENGTH   400    analysis window in samples (25 ms at 16 kHz), <= N_FFT
    HOP_LENGTH   160    samples between frames (10 ms at 16 kHz)
    N_MELS       40     mel bands
    FMIN         20     Hz, lowest mel band edge
    FMAX         0      Hz, highest mel band edge; 0 means SAMPLE_RATE / 2
    TRIM_DB      30     dB below peak treated as silence at the ends; 0 = off

Errors (one line on stderr naming the file, exit 1, no traceback): a file
libsndfile cannot decode (corrupt or not audio), a clip with no samples,
a bad parameter value.  An input without WAV files is not an error.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile

PARAMS = {  # name -> (type, default)
    "SAMPLE_RATE": (int, 16000),
    "N_MFCC": (int, 20),
    "N_FFT": (int, 512),
    "WIN_LENGTH": (int, 400),
    "HOP_LENGTH": (int, 160),
    "N_MELS": (int, 40),
    "FMIN": (float, 20.0),
    "FMAX": (float, 0.0),
    "TRIM_DB": (float, 30.0),
}


class ExtractError(Exception):
    """A failure that ends the datum with a one-line message."""


def log(message: str) -> None:
    print(f"extract: {message}", flush=True)


def read_params() -> dict:
    """Parameters from the environment, validated; ExtractError if invalid."""
    params = {}
    for name, (kind, default) in PARAMS.items():
        raw = os.environ.get(name)
        try:
            params[name] = default if raw is None else kind(raw)
        except ValueError:
            raise ExtractError(f"env {name}={raw!r} is not a valid {kind.__name__}") from None
    if params["FMAX"] == 0:
        params["FMAX"] = params["SAMPLE_RATE"] / 2
    problems = [name for name in ("SAMPLE_RATE", "N_MFCC", "N_FFT", "WIN_LENGTH",
                                  "HOP_LENGTH", "N_MELS") if params[name] <= 0]
    if params["WIN_LENGTH"] > params["N_FFT"]:
        problems.append("WIN_LENGTH > N_FFT")
    if params["N_MFCC"] > params["N_MELS"]:
        problems.append("N_MFCC > N_MELS")
    if not 0 <= params["FMIN"] < params["FMAX"] <= params["SAMPLE_RATE"] / 2:
        problems.append("need 0 <= FMIN < FMAX <= SAMPLE_RATE/2")
    if params["TRIM_DB"] < 0:
        problems.append("TRIM_DB < 0")
    if problems:
        raise ExtractError("invalid parameters: " + ", ".join(problems))
    return params


def load_mono(path: Path, shown: str, sample_rate: int) -> np.ndarray:
    """Decode ``path`` to a mono float32 signal at ``sample_rate`` Hz."""
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile errors are RuntimeError subclasses
        detail = " ".join(str(exc).split())
        raise ExtractError(f"{shown}: not a readable WAV file ({detail})") from None
    signal = audio.mean(axis=1)
    if signal.size == 0:
        raise ExtractError(f"{shown}: WAV file holds no audio samples")
    if rate != sample_rate:
        signal = librosa.resample(signal, orig_sr=rate, target_sr=sample_rate,
                                  res_type="soxr_hq")
    return signal


def mfcc(signal: np.ndarray, p: dict) -> np.ndarray:
    """MFCC matrix (N_MFCC, n_frames), float32, of a mono signal."""
    if p["TRIM_DB"] > 0:
        trimmed, _ = librosa.effects.trim(signal, top_db=p["TRIM_DB"],
                                          frame_length=p["N_FFT"],
                                          hop_length=p["HOP_LENGTH"])
        if trimmed.size >= p["N_FFT"]:  # keep near-silent clips whole
            signal = trimmed
    features = librosa.feature.mfcc(
        y=signal, sr=p["SAMPLE_RATE"], n_mfcc=p["N_MFCC"], n_fft=p["N_FFT"],
        hop_length=p["HOP_LENGTH"], win_length=p["WIN_LENGTH"],
        n_mels=p["N_MELS"], fmin=p["FMIN"], fmax=p["FMAX"])
    return features.astype(np.float32)


def extract(src: Path, dst: Path, params: dict) -> int:
    """Write MFCCs of every WAV under ``src`` to ``dst``; return the clip count.

    All clips are computed before anything is written, so a corrupt file
    fails the datum without leaving partial output.
    """
    clips = sorted(p for p in src.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())
    results = {}
    for path in clips:
        rel = path.relative_to(src)
        signal = load_mono(path, str(rel), params["SAMPLE_RATE"])
        results[rel] = (signal.size, mfcc(signal, params))
    by_folder: dict[Path, dict] = {}
    for rel, (samples, features) in results.items():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(dst / rel.with_suffix(".npy"), features)
        by_folder.setdefault(rel.parent, {})[rel.stem] = {
            "samples": int(samples), "frames": int(features.shape[1])}
    for folder, clip_info in by_folder.items():
        manifest = {"params": params, "feature_shape": "(N_MFCC, n_frames)",
                    "dtype": "float32", "clips": clip_info}
        (dst / folder / "mfcc_params.json").write_text(json.dumps(manifest, indent=1) + "\n")
    frames = [f.shape[1] for _, f in results.values()]
    if frames:
        log(f"frames per clip: min {min(frames)}, median {int(np.median(frames))}, "
            f"max {max(frames)}; each array float32 ({params['N_MFCC']}, n_frames)")
    return len(clips)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compute librosa MFCCs for every "
                                     "WAV clip (parameters from env, see docstring).")
    parser.add_argument("--input", type=Path, default=Path("/pfs/filter"))
    parser.add_argument("--output", type=Path, default=Path("/pfs/out"))
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        params = read_params()
        if not args.input.is_dir():
            raise ExtractError(f"input directory {args.input} does not exist")
        count = extract(args.input, args.output, params)
    except ExtractError as exc:
        print(f"extract: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"extract: error: I/O error: {exc}", file=sys.stderr)
        return 1
    if count == 0:
        log(f"no .wav files under {args.input}; nothing to do")
    else:
        log(f"wrote MFCCs of {count} clips from {args.input} to {args.output} in "
            f"{time.monotonic() - start:.1f} s ({', '.join(f'{k}={v:g}' for k, v in params.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
