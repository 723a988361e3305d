"""Where a dataset lives: a local folder or any fsspec URL (s3://...). Readers never see a partial object.

Local files are written under a temporary name in the same folder and renamed; remote objects are
written whole from a local file (an S3 object appears only when its upload completes). Endpoint and
credentials come from fsspec's usual sources (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ~/.aws, fsspec config).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pipeline.io.atomic import write_bytes
from pipeline.io.redact import redact_url


class Storage:
    """Names are '/'-separated paths relative to the dataset root (``shards/x.tar``, ``dataset.json``)."""

    def __init__(self, url: str | Path, create: bool = True) -> None:
        """``create``: make a local root folder that is not there yet (a build's output). Commands that only
        read a corpus pass False, so a mistyped path is reported, not left behind as an empty folder."""
        self.url = str(url).rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.local = isinstance(self.fs, LocalFileSystem)
        if self.local and create:
            if Path(self.root).exists() and not Path(self.root).is_dir():
                raise NotADirectoryError(f"{url}: is a file, not a folder")
            Path(self.root).mkdir(parents=True, exist_ok=True)

    def __str__(self) -> str:
        """The output as messages and summaries show it: credentials in its URL redacted."""
        return redact_url(self.url)

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def staging(self) -> Path:
        """A local scratch folder for files on their way in: inside the output when local (so a rename
        publishes them), a private temp folder otherwise."""
        if self.local:
            path = Path(self.root) / ".staging"
            path.mkdir(exist_ok=True)
            return path
        return Path(tempfile.mkdtemp(prefix="makeanything-staging-"))

    def clear_staging(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def put(self, local: Path, name: str) -> None:
        """Publish a complete local file under ``name`` and remove the local copy."""
        dest = self._path(name)
        if self.local:
            Path(dest).parent.mkdir(parents=True, exist_ok=True)
            os.replace(local, dest)
        else:
            self.fs.put_file(str(local), dest)
            local.unlink()

    def write(self, name: str, data: bytes) -> None:
        if self.local:
            Path(self._path(name)).parent.mkdir(parents=True, exist_ok=True)
            write_bytes(self._path(name), data)
        else:
            self.fs.pipe_file(self._path(name), data)

    def read(self, name: str) -> bytes:
        return self.fs.cat_file(self._path(name))

    def exists(self, name: str) -> bool:
        self.fs.invalidate_cache()
        return self.fs.exists(self._path(name))

    def list(self, folder: str) -> list[str]:
        """File names (not paths) directly inside ``folder``; [] when it does not exist."""
        self.fs.invalidate_cache()
        try:
            entries = self.fs.ls(self._path(folder), detail=True)
        except FileNotFoundError:
            return []
        return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "file")

    def size(self, name: str) -> int:
        return int(self.fs.size(self._path(name)))

    def remove(self, name: str) -> None:
        try:
            self.fs.rm_file(self._path(name))
        except FileNotFoundError:
            pass

    def upload_folder(self, local: Path, files: list[str], prefix: str = "") -> None:
        """Copy files made in a local folder to ``prefix/`` (default: the root), each written whole."""
        for f in files:
            self.write(f"{prefix}/{f}" if prefix else f, (local / f).read_bytes())
