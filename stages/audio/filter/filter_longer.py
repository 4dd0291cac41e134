#!/usr/bin/env python3
"""FILTER_LONGER stage: drop audio clips longer than a maximum duration.

Pipeline transform (specs/audio/filter.json, input repo ``fetch``, glob "/*",
so one datum is one speaker folder)::

    python3 filter_longer.py --input /pfs/fetch --output /pfs/out

Input: every ``*.wav`` file under ``--input`` (normally
``<input>/<speaker>/<clip>.wav``, as written by the FETCH stage).
Output: the clips whose duration is at most ``MAX_SECONDS``, copied byte for
byte to the same relative path under ``--output``.  Longer clips are
dropped and listed in the log, with their durations.

Parameters (flag, else env var, else default):

    --max-seconds  MAX_SECONDS  4.0  keep clips with duration <= this (s)

Duration = frames / sample rate, read from the file header with libsndfile
(python-soundfile's ``soundfile.info``); the samples are not decoded.  Any
format libsndfile reads is accepted (PCM or float WAV, WAVE_FORMAT_EXTENSIBLE,
...).

Errors (one line on stderr naming the file, exit 1, no traceback): a file
libsndfile cannot parse (corrupt or not a WAV), a clip with no samples, a
bad MAX_SECONDS.  An input without WAV files is not an error (nothing is
written).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import soundfile


class FilterError(Exception):
    """A failure that ends the datum with a one-line message."""


def log(message: str) -> None:
    print(f"filter: {message}", flush=True)


def duration_seconds(path: Path, shown: str) -> float:
    """Clip duration in seconds from the file header; FilterError if unreadable."""
    try:
        info = soundfile.info(str(path))
    except Exception as exc:  # libsndfile raises RuntimeError subclasses, OSError...
        detail = " ".join(str(exc).split())
        raise FilterError(f"{shown}: not a readable WAV file ({detail})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise FilterError(f"{shown}: WAV file holds no audio samples")
    return info.frames / info.samplerate


def filter_clips(src: Path, dst: Path, max_seconds: float) -> tuple[int, int]:
    """Copy clips of at most ``max_seconds`` from ``src`` to ``dst``.

    Every clip is checked before anything is copied, so a corrupt file
    fails the datum without leaving partial output.  Returns (kept, dropped).
    """
    clips = sorted(p for p in src.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())
    durations = {p: duration_seconds(p, str(p.relative_to(src))) for p in clips}
    kept = 0
    for path, seconds in durations.items():
        rel = path.relative_to(src)
        if seconds > max_seconds:
            log(f"drop {rel}: {seconds:.2f} s > {max_seconds:g} s")
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dst / rel)
        kept += 1
    return kept, len(clips) - kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Drop WAV clips longer than "
                                     "MAX_SECONDS; copy the rest through.")
    parser.add_argument("--input", type=Path, default=Path("/pfs/fetch"))
    parser.add_argument("--output", type=Path, default=Path("/pfs/out"))
    parser.add_argument("--max-seconds", type=float,
                        help="maximum clip duration in seconds (env MAX_SECONDS, 4.0)")
    args = parser.parse_args(argv)
    try:
        max_seconds = args.max_seconds
        if max_seconds is None:
            raw = os.environ.get("MAX_SECONDS", "4.0")
            try:
                max_seconds = float(raw)
            except ValueError:
                raise FilterError(f"env MAX_SECONDS={raw!r} is not a number") from None
        if not max_seconds > 0:
            raise FilterError(f"MAX_SECONDS must be > 0, got {max_seconds}")
        if not args.input.is_dir():
            raise FilterError(f"input directory {args.input} does not exist")
        kept, dropped = filter_clips(args.input, args.output, max_seconds)
    except FilterError as exc:
        print(f"filter: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"filter: error: I/O error: {exc}", file=sys.stderr)
        return 1
    if kept + dropped == 0:
        log(f"no .wav files under {args.input}; nothing to do")
    else:
        log(f"kept {kept}, dropped {dropped} of {kept + dropped} clips from "
            f"{args.input} (MAX_SECONDS={max_seconds:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
