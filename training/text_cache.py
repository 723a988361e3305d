"""Text embeddings, computed once per caption and optionally cached on disk by sample key.

Flux's T5 runs padded to a fixed length with no attention mask, so the cache stores the full fixed-length
embedding; each entry records its caption and is recomputed if the sample's caption changed.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from training.flux_model import Flux


class TextEncoder:
    """Encodes a batch of captions, reading and filling the on-disk cache when one is configured."""

    def __init__(self, flux: Flux, device: torch.device, cache_dir: str | Path | None = None) -> None:
        self.flux, self.device = flux, device
        self.cache = Path(cache_dir) if cache_dir else None
        if self.cache:
            self.cache.mkdir(parents=True, exist_ok=True)

    def _digest(self, caption: str) -> str:
        return hashlib.sha256(f"{self.flux.source}|{self.flux.text_length}|{caption}".encode()).hexdigest()

    def _read(self, key: str, caption: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        path = self.cache / f"{key}.safetensors"
        if not path.is_file():
            return None
        with safe_open(str(path), "pt") as f:
            if (f.metadata() or {}).get("digest") != self._digest(caption):
                return None
            return f.get_tensor("text"), f.get_tensor("pooled")

    def _write(self, key: str, caption: str, text: torch.Tensor, pooled: torch.Tensor) -> None:
        path = self.cache / f"{key}.safetensors"
        tmp = path.with_name(f".{path.name}.{id(self)}.tmp")
        save_file({"text": text.cpu().contiguous(), "pooled": pooled.cpu().contiguous()}, tmp,
                  metadata={"digest": self._digest(caption)})
        tmp.replace(path)

    def __call__(self, keys: list[str], captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cache is None:
            return self.flux.encode_text(captions, self.device)
        found = [self._read(k, c) for k, c in zip(keys, captions)]
        todo = [i for i, f in enumerate(found) if f is None]
        if todo:
            text, pooled = self.flux.encode_text([captions[i] for i in todo], self.device)
            for j, i in enumerate(todo):
                found[i] = (text[j], pooled[j])
                self._write(keys[i], captions[i], text[j], pooled[j])
        return (torch.stack([f[0] for f in found]).to(self.device),
                torch.stack([f[1] for f in found]).to(self.device))
