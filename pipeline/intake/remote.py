"""Remote sources (http, https, s3 and other fsspec URLs): what the server says about an object (size,
ETag / version id / Last-Modified) without reading it, and the objects under a glob in one listing.

The signature is how a refresh sees that a remote object changed without downloading it; it is stored in
the ledger next to the content hash. Endpoint and credentials come from fsspec's usual sources; an http
URL may also hold them (``https://user:secret@host/v.mp4``: sent as Basic auth, pipeline.io.http_auth).
"""

from __future__ import annotations

import urllib.request
from urllib.parse import urlparse

import fsspec

from pipeline.io.http_auth import request
from pipeline.work import RemoteInfo

TIMEOUT = 60
HTTP = ("http", "https")


def _signature(size: int | None, etag: object, version: object, modified: object) -> str:
    if not (etag or version or modified):
        return ""
    return (
        f"size={size};etag={str(etag or '').strip(chr(34))};version={version or ''};modified={modified or ''}"
    )


def from_listing(entry: dict) -> RemoteInfo:
    """From one fsspec ``info``/``ls(detail=True)`` entry (s3fs: ETag, VersionId, LastModified)."""
    size = entry.get("size")
    etag = entry.get("ETag") or entry.get("etag")
    modified = entry.get("LastModified") or entry.get("last_modified") or entry.get("mtime")
    return RemoteInfo(
        size, _signature(size, etag, entry.get("VersionId") or entry.get("version_id"), modified)
    )


def http_head(url: str) -> RemoteInfo:
    """One HEAD request: Content-Length, ETag and Last-Modified."""
    with urllib.request.urlopen(request(url, method="HEAD"), timeout=TIMEOUT) as r:
        size = r.headers.get("Content-Length")
        size = int(size) if size and size.isdigit() else None
        return RemoteInfo(size, _signature(size, r.headers.get("ETag"), None, r.headers.get("Last-Modified")))


def remote_info(url: str) -> RemoteInfo:
    """HEAD (http) or one metadata call (s3 and other fsspec stores); raises when the object is missing."""
    if urlparse(url).scheme in HTTP:
        return http_head(url)
    fs, path = fsspec.core.url_to_fs(url)
    return from_listing(fs.info(path))


def is_remote(location: str) -> bool:
    return "://" in location and urlparse(location).scheme not in ("", "file")


def expand_glob(pattern: str) -> list[tuple[str, RemoteInfo]]:
    """Objects matching ``s3://bucket/videos/**/*.mp4`` (or an HTTP index listing), sorted, each with its
    signature from the same listing: one listing per prefix instead of one HEAD per object."""
    fs, path = fsspec.core.url_to_fs(pattern)
    found = fs.glob(path, detail=True)
    out = []
    for name, entry in sorted(found.items()):
        if entry.get("type", "file") != "file":
            continue
        url = name if "://" in name else fs.unstrip_protocol(name)
        info = from_listing(entry)
        if urlparse(url).scheme in HTTP and not info.signature:
            info = http_head(url)  # an index page carries no ETag: ask the object itself
        out.append((url, info))
    return out
