"""Answers on disk, keyed by (the images' content, model, request text), so no sequence is paid for twice:
a rerun, a crashed run's redo, or `makeanything caption` after a build finds them here. Only answers that
passed validation are stored, so a malformed one is asked again next time."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.config import CaptionConfig
from pipeline.io.atomic import write_json
from pipeline.io.lock import pid_alive
from pipeline.io.storage import Storage


def default_cache_dir(cfg: CaptionConfig, storage: Storage) -> str:
    """``caption.cache_dir``, else beside a local output (OUT/caption-cache), else the user's cache."""
    if cfg.cache_dir:
        return cfg.cache_dir
    return (
        f"{storage.root}/caption-cache"
        if storage.local
        else str(Path.home() / ".cache/makeanything/captions")
    )


def answer_key(
    model: str, text: str, grid_jpg: bytes, images: str, image_side: int, response_format: dict | None
) -> str:
    """Names one answer: the frames' content (the grid they are cut from), how they are sent, the model and
    the exact request text. Computed without cutting or encoding anything, so a cache hit costs a hash."""
    record = {
        "model": model,
        "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "grid_sha256": hashlib.sha256(grid_jpg).hexdigest(),
        "images": images,
        "side": image_side,
        "format": response_format,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


class AnswerCache:
    """One JSON file per answer under ``folder/ab/KEY.json``, each written atomically."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        self._sweep()

    def _sweep(self) -> None:
        """Delete the temporary files of writers killed mid-write (pipeline.io.atomic names them ``.NAME.PID.tmp``)."""
        for tmp in self.folder.glob("*/.*.tmp"):
            pid = tmp.name.rsplit(".", 2)[-2]
            if not pid.isdigit() or not pid_alive(int(pid)):
                tmp.unlink(missing_ok=True)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        path = self._path(key)
        try:
            return json.loads(path.read_text())["content"]
        except (FileNotFoundError, ValueError, KeyError):  # absent, or damaged: ask again
            return None

    def put(self, key: str, model: str, content: str) -> None:
        write_json(self._path(key), {"model": model, "content": content})
