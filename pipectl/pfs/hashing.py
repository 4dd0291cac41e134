"""Content hashes: the names of everything stored by its content.

Objects (file chunks), trees and datum indexes are stored under the hash of
their bytes: BLAKE3 with its default 256-bit output, as 64 lowercase hex
digits (O'Connor, Aumasson, Neves, Wilcox-O'Hearn, "BLAKE3: one function,
fast everywhere", 2020; computed by the ``blake3`` package, the official
Rust implementation's Python binding, which releases the GIL). On the
2-core x86-64 machine the benchmarks run on, it hashes 3.3 GB/s on one core
against SHA-256's 1.5 GB/s (with SHA-NI), and a content-addressed put must
hash every byte it stores.

Stores written before BLAKE3 hold SHA-256 names; a name is an opaque key
when read, so those commits stay readable, and their content is stored once
more (under its BLAKE3 name) only when it is put again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Container

import blake3

from ..errors import PreconditionFailed
from ..store import ObjectStore

HASH_HEX = 64
"""Hex digits in a content hash (BLAKE3-256, and the SHA-256 names of stores
written before it, alike)."""


def content_hash(data: bytes | bytearray | memoryview) -> str:
    """The content hash of ``data``: BLAKE3-256 as 64 lowercase hex digits."""
    return blake3.blake3(data).hexdigest()


def write_addressed(store: ObjectStore, key: Callable[[str], str], data: bytes, known: Container[str] = ()) -> str:
    """Store ``data`` once at ``key(<content hash>)`` (a function of the
    keys modules, such as ``pfs.keys.tree``; a create-only write: an
    existing object, which holds the same bytes, is left as it is); return
    the hash. A hash in ``known`` (already stored) is not written again."""
    digest = content_hash(data)
    if digest not in known:
        with contextlib.suppress(PreconditionFailed):
            store.write(key(digest), data, if_absent=True)
    return digest
