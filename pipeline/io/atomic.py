"""Atomic output: write to a temporary name beside the target, then rename, so readers never see half a file."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable
from pathlib import Path

from PIL import Image


def write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: str | Path, obj: object) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    return write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def write_png(path: str | Path, img: Image.Image) -> Path:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return write_bytes(path, buf.getvalue())
