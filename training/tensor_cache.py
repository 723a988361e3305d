"""A folder of safetensors files, one per sample key, each stamped with the digest of what produced it.

An entry whose digest differs (another caption, image, model or cell size) reads as missing and is
recomputed; files are written under a temporary name and renamed, so a crash never leaves half an entry.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file


class TensorCache:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def get(self, key: str, digest: str) -> dict[str, torch.Tensor] | None:
        path = self.folder / f"{key}.safetensors"
        if not path.is_file():
            return None
        with safe_open(str(path), "pt") as f:
            if (f.metadata() or {}).get("digest") != digest:
                return None
            return {k: f.get_tensor(k) for k in f.keys()}

    def put(self, key: str, digest: str, tensors: dict[str, torch.Tensor]) -> None:
        path = self.folder / f"{key}.safetensors"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata={"digest": digest}
        )
        tmp.replace(path)
