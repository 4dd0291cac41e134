#!/usr/bin/env python3
"""Generate a small, real, multi-speaker speech corpus offline with espeak-ng.

The corpus feeds the speech-audio pipeline (specs/audio: fetch -> filter ->
extract -> learn), whose last stage learns *who is speaking*.

Usage::

    python3 scripts/make_speech_corpus.py OUTPUT.zip [--clips 40] [--seed 1234]

Output: a zip archive whose members are

    <speaker>/<nn>.wav    16 kHz, mono, 16-bit PCM WAV (RIFF) clips
    transcripts.tsv       speaker, clip, voice, pitch, speed, seconds, text

* 8 speakers (listed in ``SPEAKERS``).  Each is a different espeak-ng voice
  (accent) combined with a different voice variant (formant/timbre set),
  base pitch and speaking rate, so the speakers genuinely differ in the
  acoustics rather than only in a label.  Every clip also gets a small
  random jitter of pitch, rate and loudness, so no two clips of a speaker
  are rendered with identical settings.
* ``--clips`` (default 40) ordinary clips per speaker, ``00.wav`` ...
  ``39.wav``: one short sentence each (4-7 words, made up here from the word
  lists below with a seeded RNG), every one at most ``MAX_SHORT_SECONDS``
  (3.8 s) long.
* one deliberately long clip per speaker, ``90.wav``: four sentences read
  in one go, at least ``MIN_LONG_SECONDS`` (6 s) long, so the pipeline's
  FILTER stage (MAX_SECONDS, default 4.0 s) has something to drop.

Deterministic: the same seed, espeak-ng and sox versions give a byte-identical
zip (seeded ``random.Random``; ``sox -R`` for repeatable output; no dither;
fixed zip timestamps and member order).  Different espeak-ng versions may
render slightly different audio, but the layout and texts stay the same.

Requirements: Python 3 (stdlib only), the ``espeak-ng`` and ``sox`` commands
(Debian packages ``espeak-ng`` and ``sox``).  espeak-ng renders 22.05 kHz;
sox resamples to 16 kHz (its default high-quality ``rate`` effect).

Time and size: the 8 x 41 = 328 clips take 5-10 s on a 2-core machine
(two espeak-ng + sox pipelines in parallel) and give a zip of about 20 MB
(about 14 minutes of audio).

Errors: a missing espeak-ng/sox or a failing render exits 1 with a one-line
message.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import random
import shutil
import subprocess
import sys
import tempfile
import wave
import zipfile
from dataclasses import dataclass
from pathlib import Path

SAMPLE_RATE = 16_000
MAX_SHORT_SECONDS = 3.8
MIN_LONG_SECONDS = 6.0
LONG_CLIP_NAME = "90"
ZIP_DATE = (2024, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: an espeak-ng voice plus fixed prosody settings.

    voice: espeak-ng ``-v`` value, ``<language>+<variant>``.
    pitch: base pitch, espeak-ng ``-p`` scale 0..99.
    speed: base rate in words per minute (espeak-ng ``-s``).
    gap:   extra pause between words, espeak-ng ``-g`` (units of 10 ms).
    """

    name: str
    voice: str
    pitch: int
    speed: int
    gap: int


SPEAKERS = (
    Speaker("alder", "en-us+m3", 40, 165, 0),
    Speaker("birch", "en-gb+f3", 62, 170, 0),
    Speaker("cedar", "en-gb-scotland+m1", 30, 155, 1),
    Speaker("dogwood", "en-029+f4", 70, 180, 0),
    Speaker("elm", "en-gb-x-rp+m7", 45, 160, 1),
    Speaker("fir", "en-us-nyc+f2", 55, 185, 0),
    Speaker("ginkgo", "en-gb-x-gbclan+m2", 35, 175, 0),
    Speaker("hazel", "en-gb-x-gbcwmd+f5", 65, 160, 1),
)

# Word lists for the sentence maker (written for this corpus).
NAMES = ("Mara", "Tobias", "Ines", "Oscar", "Lena", "Felix", "Nadia", "Hugo",
         "Clara", "Ruben", "Esther", "Milo")
ADJECTIVES = ("quiet", "yellow", "heavy", "small", "bright", "old", "narrow",
              "gentle", "wooden", "cold", "busy", "silver", "tall", "round")
NOUNS = ("farmer", "basket", "river", "lantern", "teacher", "garden", "window",
         "bicycle", "kettle", "harbour", "letter", "ladder", "pocket", "candle",
         "tunnel", "blanket", "market", "carpet", "orchard", "engine")
VERBS = ("carried", "painted", "found", "opened", "cleaned", "followed",
         "watched", "fixed", "borrowed", "counted", "moved", "noticed")
PLACES = ("near the station", "behind the barn", "across the bridge",
          "under the stairs", "beside the lake", "after the storm",
          "before breakfast", "in the morning", "at the corner",
          "on the hill")
NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine")

TEMPLATES = (
    "The {adj} {noun} {verb} a {noun2}.",
    "{name} {verb} the {adj} {noun}.",
    "{name} {verb} {num} {noun}s {place}.",
    "One {adj} {noun} stood {place}.",
    "We {verb} the {noun} {place}.",
    "Did {name} see the {adj} {noun2}?",
    "The {noun} was {adj} {place}.",
)


def make_sentence(rng: random.Random) -> str:
    """One short English sentence (4-7 words) drawn from the word lists."""
    template = rng.choice(TEMPLATES)
    return template.format(
        adj=rng.choice(ADJECTIVES), noun=rng.choice(NOUNS),
        noun2=rng.choice(NOUNS), verb=rng.choice(VERBS),
        name=rng.choice(NAMES), num=rng.choice(NUMBERS),
        place=rng.choice(PLACES))


@dataclass(frozen=True)
class Clip:
    """Render settings for one clip (jitter already applied)."""

    speaker: Speaker
    clip: str
    text: str
    pitch: int
    speed: int
    amplitude: int


def plan_clips(n_clips: int, seed: int) -> list[Clip]:
    """All clips with their texts and jittered settings, in a fixed order."""
    clips = []
    for index, spk in enumerate(SPEAKERS):
        rng = random.Random(seed * 1000 + index)
        texts: list[str] = []
        while len(texts) < n_clips:           # distinct sentences per speaker
            sentence = make_sentence(rng)
            if sentence not in texts:
                texts.append(sentence)
        long_text = " ".join(make_sentence(rng) for _ in range(4))
        for name, text in [(f"{i:02d}", t) for i, t in enumerate(texts)] + [
                (LONG_CLIP_NAME, long_text)]:
            clips.append(Clip(
                spk, name, text,
                pitch=min(99, max(0, spk.pitch + rng.randint(-4, 4))),
                speed=max(80, round(spk.speed * rng.uniform(0.92, 1.08))),
                amplitude=rng.randint(80, 120)))
    return clips


def render(clip: Clip, workdir: Path) -> bytes:
    """Render one clip to 16 kHz mono 16-bit WAV bytes (espeak-ng, then sox)."""
    stem = workdir / f"{clip.speaker.name}-{clip.clip}"
    raw, out = stem.with_suffix(".22k.wav"), stem.with_suffix(".wav")
    subprocess.run(
        ["espeak-ng", "-v", clip.speaker.voice, "-p", str(clip.pitch),
         "-s", str(clip.speed), "-a", str(clip.amplitude),
         "-g", str(clip.speaker.gap), "-w", str(raw), clip.text],
        check=True, capture_output=True)
    subprocess.run(
        ["sox", "-R", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1",
         "-b", "16", "-e", "signed-integer", str(out)],
        check=True, capture_output=True)
    return out.read_bytes()


def wav_seconds(path: Path) -> float:
    """Duration of a PCM WAV file in seconds (stdlib ``wave``)."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def build(output: Path, n_clips: int, seed: int, jobs: int) -> None:
    """Render every clip, check durations and write the zip to ``output``."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"make_speech_corpus: error: `{tool}` not found "
                             f"(apt-get install {tool})")
    clips = plan_clips(n_clips, seed)
    with tempfile.TemporaryDirectory(prefix="speech-corpus-") as tmp:
        workdir = Path(tmp)
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            audio = list(pool.map(lambda c: render(c, workdir), clips))
        rows = ["speaker\tclip\tvoice\tpitch\tspeed\tseconds\ttext"]
        for clip in clips:
            seconds = wav_seconds(workdir / f"{clip.speaker.name}-{clip.clip}.wav")
            is_long = clip.clip == LONG_CLIP_NAME
            if (seconds < MIN_LONG_SECONDS) if is_long else (seconds > MAX_SHORT_SECONDS):
                raise SystemExit(
                    f"make_speech_corpus: error: {clip.speaker.name}/{clip.clip}.wav "
                    f"is {seconds:.2f} s, outside the planned range")
            rows.append(f"{clip.speaker.name}\t{clip.clip}\t{clip.speaker.voice}\t"
                        f"{clip.pitch}\t{clip.speed}\t{seconds:.3f}\t{clip.text}")
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp_zip = output.with_name(output.name + ".partial")
        with zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED) as zf:
            members = [(f"{c.speaker.name}/{c.clip}.wav", a)
                       for c, a in zip(clips, audio)]
            members.append(("transcripts.tsv", ("\n".join(rows) + "\n").encode()))
            for name, data in sorted(members):
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, data)
        os.replace(tmp_zip, output)
    total = sum(float(r.split("\t")[5]) for r in rows[1:])
    print(f"make_speech_corpus: wrote {output}: {len(SPEAKERS)} speakers, "
          f"{len(clips)} clips ({n_clips} short + 1 long per speaker), "
          f"{total / 60:.1f} min of audio, {output.stat().st_size / 1e6:.1f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="path of the zip to write")
    parser.add_argument("--clips", type=int, default=40,
                        help="ordinary clips per speaker (default 40, max 90)")
    parser.add_argument("--seed", type=int, default=1234, help="RNG seed")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2,
                        help="parallel renders (default: CPU count)")
    args = parser.parse_args(argv)
    if not 1 <= args.clips <= 90:
        parser.error("--clips must be between 1 and 90")
    try:
        build(args.output, args.clips, args.seed, args.jobs)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        print(f"make_speech_corpus: error: {exc.cmd[0]} failed "
              f"(exit {exc.returncode}): {detail[-1] if detail else ''}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
