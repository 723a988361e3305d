"""Text embeddings, computed once per caption and optionally cached on disk by sample key.

Flux's T5 runs padded to a fixed length with no attention mask, so the cache stores the full fixed-length
embedding; each entry records its caption and is recomputed if the sample's caption changed. The encoders
run wherever they are (the CPU once the trainer has filled the cache); results go to ``device``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from training.flux_model import Flux
from training.tensor_cache import TensorCache


class TextEncoder:
    """Encodes a batch of captions, reading and filling the on-disk cache when one is configured."""

    def __init__(self, flux: Flux, device: torch.device, cache_dir: str | Path | None = None) -> None:
        self.flux, self.device = flux, device
        self.cache = TensorCache(cache_dir) if cache_dir else None
        self.modules = [flux.text_encoder, flux.text_encoder_2]

    def _digest(self, caption: str) -> str:
        return hashlib.sha256(f"{self.flux.source}|{self.flux.text_length}|{caption}".encode()).hexdigest()

    def _encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.flux.encode_text(captions, self.flux.text_encoder.device)

    def __call__(self, keys: list[str], captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cache is None:
            text, pooled = self._encode(captions)
            return text.to(self.device), pooled.to(self.device)
        found = [self.cache.get(k, self._digest(c)) for k, c in zip(keys, captions)]
        todo = [i for i, f in enumerate(found) if f is None]
        if todo:
            text, pooled = self._encode([captions[i] for i in todo])
            for j, i in enumerate(todo):
                found[i] = {"text": text[j], "pooled": pooled[j]}
                self.cache.put(keys[i], self._digest(captions[i]), found[i])
        return (
            torch.stack([f["text"] for f in found]).to(self.device),
            torch.stack([f["pooled"] for f in found]).to(self.device),
        )
