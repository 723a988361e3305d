"""Fetch URL sources (http, https, s3 through fsspec) into a local cache; a partial download never has
the final name."""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from dataclasses import replace
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import fsspec

from pipeline.fingerprint import fingerprint
from pipeline.work import Source

TIMEOUT = 60


def download(url: str, cache_dir: str | Path) -> Path:
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    suffix = PurePosixPath(urlparse(url).path).suffix[:8] or ".bin"
    final = cache / (hashlib.sha256(url.encode()).hexdigest()[:24] + suffix)
    if final.exists():
        return final
    tmp = final.with_name(f"{final.name}.{os.getpid()}.part")
    try:
        opener = (urllib.request.urlopen(url, timeout=TIMEOUT) if urlparse(url).scheme in ("http", "https")
                  else fsspec.open(url, "rb").open())  # s3:// and other fsspec URLs: AWS_* env, fsspec config
        with opener as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def prepare(source: Source, cache_dir: str) -> tuple[Source, str, str]:
    """On a worker: download a URL source if needed, then hash it. Returns (source, sha256, error)."""
    if source.kind == "video" and not source.path:
        try:
            source = replace(source, path=str(download(source.uri, cache_dir)))
        except Exception as e:  # noqa: BLE001 - reported per source, the run goes on
            return source, "", f"download failed: {type(e).__name__}: {e}"
    return source, fingerprint(source), ""
