#!/usr/bin/env python3
"""FETCH stage: download a zip of WAV clips and unpack it, one folder per speaker.

Pipeline transform (specs/audio/fetch.json)::

    python3 fetch.py --input /pfs/audio-trigger --output /pfs/out

The input repo ``audio-trigger`` (glob "/") only *triggers* a fetch: any
commit to it runs this stage once; its files are listed in the log and
otherwise ignored.

Source: ``--url`` or env ``SOURCE_URL`` (http:// or https://), the URL of a
zip archive whose members are ``<speaker>/<clip>.wav`` (any leading folders
are ignored, e.g. ``corpus/<speaker>/<clip>.wav``; members that are not
``.wav`` files, such as a transcripts file, are skipped).  The archive format
is the PKZIP "APPNOTE" format read by Python's ``zipfile``; every member's
CRC-32 is checked before anything is written.

The download is buffered in memory up to 64 MiB, beyond that in a temporary
file (``tempfile.SpooledTemporaryFile``), and unpacked only once complete.

Output: ``<output>/<speaker>/<clip>.wav``, the members' bytes unchanged (WAV
content is not decoded here; the FILTER stage does that).  Speaker and clip
names must match ``[A-Za-z0-9][A-Za-z0-9._-]*``, so no member can escape the
output directory.

Parameters (command-line flag, else env var, else default):

    --url       SOURCE_URL        (required)
    --timeout   FETCH_TIMEOUT     30 s, per connection attempt and per read
    --retries   FETCH_RETRIES     3 attempts in all; connection errors,
                                  time-outs, HTTP 429 and 5xx are retried
                                  after 1 s, 2 s, 4 s, ...; other HTTP errors
                                  fail at once
    --max-bytes FETCH_MAX_BYTES   2 GiB; a bigger download is refused

Errors (one line on stderr, exit 1, no traceback): unsupported or unreachable
URL, HTTP error, download too large, not a zip / corrupt zip, unsafe or
duplicate member names, no WAV members, failure writing the output.

Dependencies: Python standard library only (urllib, zipfile).
"""
from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
CHUNK = 1 << 20


class FetchError(Exception):
    """A failure that ends the datum with a one-line message."""


def log(message: str) -> None:
    print(f"fetch: {message}", flush=True)


def redact(url: str) -> str:
    """The URL without any user:password part, for logs and errors."""
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:
        parts = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""))
    return urllib.parse.urlunsplit(parts)


def download(url: str, timeout: float, retries: int, max_bytes: int):
    """Download ``url`` into a temporary file (rewound) and return it.

    Retries transient failures with exponential back-off (1 s, 2 s, ...).
    Raises FetchError for anything that still fails.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise FetchError(f"unsupported URL {redact(url)!r} (need http:// or https://)")
    last = ""
    for attempt in range(1, retries + 1):
        if attempt > 1:
            time.sleep(2 ** (attempt - 2))
        buf = tempfile.SpooledTemporaryFile(max_size=64 << 20)  # noqa: SIM115 (returned, or closed on error)
        try:
            start = time.monotonic()
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                size = 0
                while chunk := resp.read(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchError(f"download from {redact(url)} exceeds "
                                         f"{max_bytes} bytes (FETCH_MAX_BYTES)")
                    buf.write(chunk)
            log(f"downloaded {size} bytes from {redact(url)} in "
                f"{time.monotonic() - start:.1f} s (attempt {attempt}/{retries})")
            buf.seek(0)
            return buf
        except urllib.error.HTTPError as exc:
            buf.close()
            last = f"HTTP {exc.code} {exc.reason}"
            if exc.code != 429 and exc.code < 500:
                break
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, ConnectionError) as exc:
            buf.close()
            last = str(getattr(exc, "reason", exc)) or type(exc).__name__
        except BaseException:
            buf.close()
            raise
        log(f"attempt {attempt}/{retries} failed: {last}")
    raise FetchError(f"cannot download {redact(url)}: {last}")


def wav_members(archive: zipfile.ZipFile) -> tuple[dict[tuple[str, str], zipfile.ZipInfo], int]:
    """Map (speaker, clip file name) -> member for every WAV in the archive.

    Returns the mapping and the number of skipped (non-WAV) members.
    """
    found: dict[tuple[str, str], zipfile.ZipInfo] = {}
    skipped = 0
    for info in archive.infolist():
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if (info.is_dir() or not info.filename.lower().endswith(".wav")
                or any(p.startswith((".", "__MACOSX")) for p in parts)):
            skipped += not info.is_dir()
            continue
        if len(parts) < 2:
            raise FetchError(f"zip member {info.filename!r} is not inside a "
                             "<speaker>/ folder")
        speaker, clip = parts[-2], parts[-1]
        if not (SAFE_NAME.fullmatch(speaker) and SAFE_NAME.fullmatch(clip)):
            raise FetchError(f"zip member {info.filename!r} has an unsafe name")
        if (speaker, clip) in found:
            raise FetchError(f"zip holds {speaker}/{clip} twice "
                             f"({found[speaker, clip].filename!r}, {info.filename!r})")
        found[speaker, clip] = info
    return found, skipped


def unpack(buf, output: Path) -> None:
    """Check the zip in ``buf`` and write its WAVs to ``output/<speaker>/``."""
    try:
        archive = zipfile.ZipFile(buf)
    except zipfile.BadZipFile as exc:
        raise FetchError(f"downloaded file is not a zip archive ({exc})") from None
    with archive:
        try:
            bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
            raise FetchError(f"corrupt zip archive: {exc}") from None
        if bad is not None:
            raise FetchError(f"corrupt zip archive: CRC mismatch in member {bad!r}")
        members, skipped = wav_members(archive)
        if not members:
            raise FetchError("zip archive holds no <speaker>/<clip>.wav members")
        per_speaker: dict[str, int] = {}
        for (speaker, clip), info in sorted(members.items()):
            target = output / speaker / clip
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            per_speaker[speaker] = per_speaker.get(speaker, 0) + 1
    log(f"unpacked {len(members)} WAV clips for {len(per_speaker)} speakers "
        f"to {output} (skipped {skipped} non-WAV members)")
    for speaker, count in per_speaker.items():
        log(f"  {speaker}: {count} clips")


def describe_trigger(trigger: Path) -> None:
    """Log which trigger files started this run (they are not otherwise used)."""
    if not trigger.is_dir():
        log(f"no trigger directory at {trigger}; fetching anyway")
        return
    names = sorted(str(p.relative_to(trigger)) for p in trigger.rglob("*") if p.is_file())
    shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
    log(f"triggered by {len(names)} file(s) in {trigger}: {shown or '-'}")


def env_number(name: str, default: str, kind):
    """Read a numeric env var, turning a bad value into a FetchError."""
    raw = os.environ.get(name, default)
    try:
        return kind(raw)
    except ValueError:
        raise FetchError(f"env {name}={raw!r} is not a valid {kind.__name__}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Download a zip of WAV clips "
                                     "and unpack it as <speaker>/<clip>.wav.")
    parser.add_argument("--input", type=Path, default=Path("/pfs/audio-trigger"),
                        help="trigger repo directory (only listed)")
    parser.add_argument("--output", type=Path, default=Path("/pfs/out"))
    parser.add_argument("--url", help="zip URL (default: env SOURCE_URL)")
    parser.add_argument("--timeout", type=float, help="seconds (env FETCH_TIMEOUT, 30)")
    parser.add_argument("--retries", type=int, help="attempts (env FETCH_RETRIES, 3)")
    parser.add_argument("--max-bytes", type=int, help="env FETCH_MAX_BYTES, 2 GiB")
    args = parser.parse_args(argv)
    try:
        url = args.url or os.environ.get("SOURCE_URL", "")
        if not url:
            raise FetchError("no source URL: pass --url or set SOURCE_URL")
        timeout = args.timeout or env_number("FETCH_TIMEOUT", "30", float)
        retries = max(1, args.retries or env_number("FETCH_RETRIES", "3", int))
        max_bytes = args.max_bytes or env_number("FETCH_MAX_BYTES", str(2 << 30), int)
        describe_trigger(args.input)
        with download(url, timeout, retries, max_bytes) as buf:
            unpack(buf, args.output)
    except FetchError as exc:
        print(f"fetch: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"fetch: error: I/O error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
