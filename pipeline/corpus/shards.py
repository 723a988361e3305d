"""WebDataset shard writer: KEY.jpg / KEY.txt / KEY.json members, tars renamed into place only when complete."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from pipeline.corpus.schema import SchemaError, conform
from pipeline.io.digest import file_sha256
from pipeline.io.failpoint import failpoint

KEY_OK = re.compile(r"^[A-Za-z0-9_-]+$")
# The one shard naming scheme: {split}-r{run:04d}-{lane:03d}-{n:06d}.tar. Names never collide across runs
# (the run number) nor within one (the lane: train lanes side by side, a repack's, a caption run's).
OUR_SHARD = re.compile(r"^(train|val)-r\d{4}-\d{3}-\d{6}\.tar$")


def shard_prefix(split: str, run: int, lane: int) -> str:
    """The name of a run's shards up to their number (ShardWriter adds ``-{n:06d}.tar``)."""
    return f"{split}-r{run:04d}-{lane:03d}"


@dataclass(frozen=True)
class Sample:
    """One grid sequence ready to be written."""

    key: str
    jpg: bytes
    caption: str
    meta: dict

    def __post_init__(self) -> None:
        if not KEY_OK.match(self.key):
            raise ValueError(f"sample key {self.key!r} must match [A-Za-z0-9_-]+ (no dots)")
        if conform(self.meta) != self.meta:  # raises SchemaError on a wrong key or type
            raise SchemaError(
                f"sample {self.key}: json is not in its schema form (absent or int-valued "
                "float fields); build it with pipeline.corpus.schema.conform"
            )
        if self.meta["caption"]["text"] != self.caption:
            raise SchemaError(f"sample {self.key}: json.caption.text differs from the .txt caption")


def encode_jpeg(img: Image.Image, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    rgb = img if img.mode == "RGB" else img.convert("RGB")  # convert copies even an RGB image
    rgb.save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


@dataclass
class ShardInfo:
    """What the index and run report record about a finished shard."""

    name: str
    samples: int
    bytes: int
    sha256: str
    keys: list[str] = field(default_factory=list)

    def record(self, split: str, run: int, tasks: dict[str, int], config_sha: str) -> dict:
        """The ledger's record of this shard (``Ledger.shards``), made here only, whoever wrote the shard."""
        return {
            "name": self.name,
            "split": split,
            "run": run,
            "samples": self.samples,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "keys": self.keys,
            "tasks": dict(tasks),
            "config_sha": config_sha,
        }


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


Publish = Callable[[Path, str], None]


def _rename_into(out_dir: Path) -> Publish:
    def publish(tmp: Path, name: str) -> None:
        os.replace(tmp, out_dir / name)

    return publish


class ShardWriter:
    """Writes samples into ``{prefix}-{n:06d}.tar``; each tar is written as ``.tmp`` and published when full.

    ``publish(tmp, name)`` puts a finished tar in place (default: rename into ``out_dir``; the refresh
    build uploads it to its storage and then records it in the ledger). ``write_group`` keeps the samples
    of one source in one shard, so a shard and the ledger rows of its sources commit together.
    """

    def __init__(
        self,
        out_dir: str | Path,
        prefix: str = "shard",
        samples_per_shard: int = 100,
        start_index: int = 0,
        publish: Publish | None = None,
    ) -> None:
        if samples_per_shard < 1:
            raise ValueError("samples_per_shard must be >= 1")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.prefix, self.per_shard, self.index = prefix, samples_per_shard, start_index
        self.publish = publish or _rename_into(self.out_dir)
        self.finished: list[ShardInfo] = []
        self._tar: tarfile.TarFile | None = None
        self._keys: list[str] = []

    def _name(self) -> str:
        return f"{self.prefix}-{self.index:06d}.tar"

    def _tmp(self) -> Path:
        return self.out_dir / (self._name() + ".tmp")

    def write(self, sample: Sample) -> ShardInfo | None:
        return self.write_group([sample])

    def write_group(self, samples: list[Sample]) -> ShardInfo | None:
        """Add samples to the open shard; returns the shard's info if this filled and published it."""
        if not samples:
            return None
        if self._tar is None:
            self._tar = tarfile.open(self._tmp(), "w", format=tarfile.USTAR_FORMAT)
        for sample in samples:
            _add(self._tar, f"{sample.key}.jpg", sample.jpg)
            _add(self._tar, f"{sample.key}.txt", sample.caption.encode())
            _add(self._tar, f"{sample.key}.json", json.dumps(sample.meta, sort_keys=True).encode())
            self._keys.append(sample.key)
        return self._finish() if len(self._keys) >= self.per_shard else None

    def _finish(self) -> ShardInfo:
        assert self._tar is not None
        self._tar.close()
        tmp = self._tmp()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        digest = file_sha256(tmp)
        info = ShardInfo(self._name(), len(self._keys), tmp.stat().st_size, digest, self._keys)
        failpoint("shard-staged")
        self.publish(tmp, info.name)
        self.finished.append(info)
        self._tar, self._keys = None, []
        self.index += 1
        return info

    def close(self) -> list[ShardInfo]:
        """Finish the open shard (if any) and return every shard this writer completed."""
        if self._tar is not None and self._keys:
            self._finish()
        return self.finished

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        elif self._tar is not None:  # never leave a partial tar behind, even as .tmp
            self._tar.close()
            self._tmp().unlink(missing_ok=True)
