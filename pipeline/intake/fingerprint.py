"""What a source is: its content hash (keys, duplicate detection, the ledger) and a cheap metadata
signature that tells a refresh whether the content can have changed without reading it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pipeline.io.digest import file_sha256
from pipeline.work import Source


def fingerprint(source: Source) -> str:
    """sha256 of the file (or the archive member, or the ndjson line), or of the ordered (name, file hash)
    list of an image folder; '' if unreadable."""
    try:
        if source.data:  # an archive member, read on the driver
            return hashlib.sha256(source.data).hexdigest()
        if source.span is not None:  # one line of an ndjson file
            with open(source.path, "rb") as f:
                f.seek(source.span[0])
                return hashlib.sha256(f.read(source.span[1] - source.span[0])).hexdigest()
        if source.kind == "images":
            if not source.images:
                return ""  # nothing there: not the content of every other empty folder
            h = hashlib.sha256()
            for p in source.images:
                h.update(Path(p).name.encode() + b"\0" + file_sha256(p).encode())
            return h.hexdigest()
        return file_sha256(source.path)
    except OSError:
        return ""  # the probe stage reports why the file cannot be read


def _triple(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def stat_signature(source: Source) -> str:
    """(size, mtime, inode) of a local file, or the ordered list of (name, triple) of an image folder;
    '' when unreadable. Equal signatures mean unchanged content, as make and rsync assume."""
    try:
        if source.kind == "images":
            h = hashlib.sha256()
            for p in source.images:
                h.update(f"{Path(p).name}\0{_triple(p)}\n".encode())
            return "dir:" + h.hexdigest()
        return "file:" + _triple(source.path)
    except OSError:
        return ""
