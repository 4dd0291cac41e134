"""Multipart uploads (CreateMultipartUpload, UploadPart, ListParts,
CompleteMultipartUpload, AbortMultipartUpload), kept in the store.

Each part's bytes are stored as content-addressed chunks the moment they
arrive (:meth:`~pipectl.client.Client.store_content`), and the upload's
records hold only their refs, in the store under::

    s3-uploads/<upload id>/upload.json          bucket (repo, branch), key, initiated
    s3-uploads/<upload id>/parts/<number>.json  size, chunk refs, ETag, last modified

so any replica of the server can take any part, and no server keeps
state of its own. Completing an upload lists the parts' chunks one after
another as the file's entry and puts it into the branch in one commit, as
put-file does: no byte is copied. An aborted upload's records are
deleted; chunks no commit uses stay in the store, unreferenced.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable

from ...client import Client
from ...errors import NotFound
from ...parallel import parallel
from ...pfs.model import now
from ...pfs.names import new_id
from ...pfs.tree import FileEntry
from .errors import S3Error, no_such_upload

PREFIX = "s3-uploads/"
MAX_PART_NUMBER = 10_000
"""S3's limit on part numbers (1 to 10,000)."""
MIN_PART_SIZE = 5 << 20
"""Every part but the last must hold at least this many bytes (S3's rule, which Pachyderm's gateway keeps)."""
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


@dataclasses.dataclass
class Upload:
    """A multipart upload in progress: its ``id``, the ``repo`` and
    ``branch`` of its bucket, the object ``key`` and when it was ``initiated``."""

    id: str
    repo: str
    branch: str
    key: str
    initiated: str


@dataclasses.dataclass
class Part:
    """One uploaded part: ``number``, ``size`` (bytes), its chunk refs
    (``objects``) and ``last_modified``. Its ETag is its content hash."""

    number: int
    size: int
    objects: list[str]
    last_modified: str

    @property
    def entry(self) -> FileEntry:
        return FileEntry(self.size, tuple(self.objects))

    @property
    def etag(self) -> str:
        return self.entry.hash


def _key(upload_id: str, name: str = "") -> str:
    """The store key of an upload's record ``name`` (checked id: no key outside ``s3-uploads/``)."""
    if not _UPLOAD_ID.fullmatch(upload_id or ""):
        raise no_such_upload(upload_id)
    return f"{PREFIX}{upload_id}/{name}"


def _part_key(upload_id: str, number: int) -> str:
    return _key(upload_id, f"parts/{number:05d}.json")


def create(client: Client, repo: str, branch: str, key: str) -> Upload:
    """Record a new upload of ``key`` into ``repo``'s ``branch``."""
    upload = Upload(new_id(), repo, branch, key, now())
    client.store.write(_key(upload.id, "upload.json"), json.dumps(dataclasses.asdict(upload)).encode(),
                       if_absent=True)
    return upload


def get(client: Client, upload_id: str, repo: str, branch: str, key: str) -> Upload:
    """The upload ``upload_id`` of ``key`` in that bucket. Raises S3Error
    NoSuchUpload (also for an upload of another bucket or key)."""
    try:
        upload = Upload(**json.loads(client.store.read(_key(upload_id, "upload.json"))))
    except NotFound:
        raise no_such_upload(upload_id) from None
    if (upload.repo, upload.branch, upload.key) != (repo, branch, key):
        raise no_such_upload(upload_id)
    return upload


def check_part_number(value: str | None) -> int:
    """A partNumber query parameter as a number. Raises S3Error InvalidArgument."""
    if value is None or not value.isdigit() or not 1 <= int(value) <= MAX_PART_NUMBER:
        raise S3Error("InvalidArgument", 400, f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, "
                      "inclusive")
    return int(value)


def put_part(client: Client, upload: Upload, number: int, entry: FileEntry) -> Part:
    """Record part ``number`` (a later upload of the same number replaces it)."""
    part = Part(number, entry.size, list(entry.objects), now())
    client.store.write(_part_key(upload.id, number), json.dumps(dataclasses.asdict(part)).encode())
    return part


def parts(client: Client, upload: Upload) -> list[Part]:
    """The parts uploaded so far, by number (their records read side by
    side: a 256 MiB upload in 8 MiB parts has 32)."""
    def read(key: str) -> Part | None:
        try:
            return Part(**json.loads(client.store.read(key)))
        except NotFound:  # aborted meanwhile
            return None
    found = [p for p in parallel(read, client.store.list(_key(upload.id, "parts/"))) if p is not None]
    return sorted(found, key=lambda p: p.number)


def assemble(client: Client, upload: Upload, chosen: Iterable[tuple[int, str | None]]) -> FileEntry:
    """The entry of the object made of the ``(part number, ETag)`` pairs
    a CompleteMultipartUpload request lists, in ascending order. An ETag
    is compared when it has the length of a content hash (as Pachyderm
    does: some clients send MD5s). Raises S3Error InvalidPartOrder,
    InvalidPart, EntityTooSmall, MalformedXML (no part)."""
    have = {p.number: p for p in parts(client, upload)}
    chosen = list(chosen)
    if not chosen:
        raise S3Error("MalformedXML", 400, "a CompleteMultipartUpload request must list at least one part")
    numbers = [n for n, _ in chosen]
    if numbers != sorted(set(numbers)):
        raise S3Error("InvalidPartOrder", 400, "The list of parts was not in ascending order.")
    entry = FileEntry(0, ())
    for i, (number, etag) in enumerate(chosen):
        part = have.get(number)
        given = (etag or "").strip().strip('"')
        if part is None or (len(given) == len(part.etag) and given != part.etag):
            raise S3Error("InvalidPart", 400, f"part {number} was not uploaded, or its ETag does not match")
        if i < len(chosen) - 1 and part.size < MIN_PART_SIZE:
            raise S3Error("EntityTooSmall", 400, f"part {number} holds {part.size} bytes; every part but the "
                          f"last must hold at least {MIN_PART_SIZE} bytes")
        entry = entry.appended(part.entry)
    return entry


def remove(client: Client, upload: Upload) -> None:
    """Delete the upload's records (its parts' chunks stay, unreferenced):
    the parts' side by side, then the upload's own, so an abort cut short
    can be made again."""
    parallel(client.store.delete, client.store.list(_key(upload.id, "parts/")))
    client.store.delete(_key(upload.id, "upload.json"))
