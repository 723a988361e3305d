"""Content hash of a source: keys, duplicate detection and (later) the refresh ledger use it."""
from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.work import Source

CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(source: Source) -> str:
    """sha256 of the file, or of the ordered (name, file hash) list of an image folder; '' if unreadable."""
    try:
        if source.kind == "images":
            h = hashlib.sha256()
            for p in source.images:
                h.update(Path(p).name.encode() + b"\0" + file_sha256(p).encode())
            return h.hexdigest()
        return file_sha256(source.path)
    except OSError:
        return ""  # the probe stage reports why the file cannot be read
