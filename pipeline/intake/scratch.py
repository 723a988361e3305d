"""A bounded scratch cache for remote sources: an object is downloaded just before its source is processed
and deleted right after, so the output never keeps a second copy of the corpus.

Shared by every worker process of one machine: space is reserved under an flock on ``DIR/.lock`` before a
download starts (the object's size from its listing or HEAD), so the bytes on disk never exceed
``max_bytes``; a download that needs more waits for others to finish. Entries are named by the URL and
its remote signature (ETag / version / Last-Modified): a changed object never reuses an old entry, and
an entry left by a killed run is reused only while the signature and size still match.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import urlparse

import fsspec

from pipeline.intake.remote import HTTP, TIMEOUT
from pipeline.io.digest import CHUNK
from pipeline.io.http_auth import request
from pipeline.io.lock import pid_alive
from pipeline.io.redact import redact_url
from pipeline.work import RemoteInfo


class CacheFull(RuntimeError):
    """The object cannot fit the cache at all, or no space came free in time."""


def _open_remote(url: str) -> BinaryIO:
    if urlparse(url).scheme in HTTP:
        return urllib.request.urlopen(request(url), timeout=TIMEOUT)
    return fsspec.open(url, "rb").open()  # s3:// and other fsspec URLs: AWS_* env, fsspec config


class ScratchCache:
    """``fetch`` is a context manager: (local path, sha256 of the content) inside, the files gone after."""

    def __init__(self, folder: str | Path, max_bytes: int, wait_s: float = 3600.0) -> None:
        self.folder, self.max_bytes, self.wait_s = Path(folder), max_bytes, wait_s
        self.folder.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.folder / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _entries(self) -> list[tuple[Path, dict]]:
        out = []
        for p in self.folder.glob("*.json"):
            try:
                out.append((p, json.loads(p.read_text())))
            except (OSError, ValueError):
                continue
        return out

    def _drop(self, meta_path: Path) -> None:
        stem = meta_path.name[: -len(".json")]
        for p in self.folder.glob(stem + "*"):
            p.unlink(missing_ok=True)

    def _reserve(self, key: str, shown: str, info: RemoteInfo) -> dict | None:
        """Reserve room for ``key``; returns a finished entry's record when one can be reused. ``shown``:
        the URL as messages and the record show it (credentials redacted)."""
        need = info.size if info.size is not None else self.max_bytes
        if need > self.max_bytes:
            raise CacheFull(f"{shown}: {need} bytes exceed cache.max_bytes ({self.max_bytes})")
        deadline = time.monotonic() + self.wait_s
        while True:
            with self._locked():
                used = 0
                for path, meta in self._entries():
                    if path.name == f"{key}.json":
                        if (
                            meta.get("sha256")
                            and info.signature
                            and meta.get("signature") == info.signature
                            and meta.get("size") == info.size
                            and not pid_alive(meta.get("pid", 0))
                        ):
                            meta["pid"] = os.getpid()  # a killed run's complete download of the same object
                            (self.folder / f"{key}.json").write_text(json.dumps(meta))
                            return meta
                        if not pid_alive(meta.get("pid", 0)):
                            self._drop(path)
                            continue
                    elif not pid_alive(meta.get("pid", 0)):  # left by a killed worker
                        self._drop(path)
                        continue
                    used += meta["reserved"]
                if used + need <= self.max_bytes:
                    (self.folder / f"{key}.json").write_text(
                        json.dumps(
                            {
                                "url": shown,
                                "pid": os.getpid(),
                                "reserved": need,
                                "size": info.size,
                                "signature": info.signature,
                            }
                        )
                    )
                    return None
            if time.monotonic() > deadline:
                raise CacheFull(
                    f"{shown}: no room for {need} bytes in {self.folder} within {self.wait_s:.0f}s"
                )
            time.sleep(0.2)

    @contextlib.contextmanager
    def fetch(self, url: str, info: RemoteInfo) -> Iterator[tuple[Path, str]]:
        key = hashlib.sha256(f"{url}\0{info.signature}".encode()).hexdigest()[:24]
        final = self.folder / (key + (PurePosixPath(urlparse(url).path).suffix[:8] or ".bin"))
        meta_path = self.folder / f"{key}.json"
        try:
            meta = self._reserve(key, redact_url(url), info)
            if meta is None or not final.exists():
                meta = self._download(url, info, final, meta_path)
            yield final, meta["sha256"]
        finally:
            with self._locked():
                self._drop(meta_path)

    def _download(self, url: str, info: RemoteInfo, final: Path, meta_path: Path) -> dict:
        part = final.with_name(final.name + ".part")
        h, size, limit = hashlib.sha256(), 0, json.loads(meta_path.read_text())["reserved"]
        with _open_remote(url) as r, open(part, "wb") as f:
            while chunk := r.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise CacheFull(
                        f"{redact_url(url)}: larger than the {limit} bytes it announced or reserved"
                    )
                h.update(chunk)
                f.write(chunk)
        os.replace(part, final)
        meta = {**json.loads(meta_path.read_text()), "sha256": h.hexdigest(), "size": size, "reserved": size}
        meta_path.write_text(json.dumps(meta))
        return meta

    def clear(self) -> None:
        """Remove whatever no live process holds (the driver calls this at the end of a run)."""
        with self._locked():
            for path, meta in self._entries():
                if not pid_alive(meta.get("pid", 0)) or meta.get("pid") == os.getpid():
                    self._drop(path)
            held = {p.name[: -len(".json")] for p in self.folder.glob("*.json")}
            for p in self.folder.iterdir():  # debris without a record, e.g. a download of an older version
                if p.name != ".lock" and p.name.split(".", 1)[0] not in held:
                    shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)

    def close(self) -> None:
        """End of a run: clear, and remove the folder when nothing else is in it."""
        self.clear()
        if [p.name for p in self.folder.iterdir()] == [".lock"]:
            (self.folder / ".lock").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.folder.rmdir()
