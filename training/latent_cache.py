"""VAE latents of the training grids, optionally cached on disk by sample key and content.

The cache keeps the latent *distribution* (mean and log-variance, in the VAE's dtype), not one sample of it,
so training still draws a fresh VAE sample every step from the seeded generator, exactly as without the cache.
Each grid is encoded on its own, so a latent does not depend on which batch it came in: with or without the
cache a run computes the same numbers. An entry is valid for one model, one cell size and one image content.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from training.data import to_model_range
from training.flux_model import Flux
from training.tensor_cache import TensorCache


class LatentEncoder:
    """uint8 grids [B, 3, H, W] -> normalised packed-ready latents [B, C, h, w] on ``device``."""

    def __init__(
        self, flux: Flux, device: torch.device, cache_dir: str | Path | None = None, cell: int | None = None
    ) -> None:
        self.flux, self.device = flux, device
        self.cache = TensorCache(cache_dir) if cache_dir else None
        self.modules = [flux.vae]
        vae = flux.vae
        self.model_id = hashlib.sha256(
            json.dumps(
                {"source": flux.source, "vae": dict(vae.config), "dtype": str(vae.dtype), "cell": cell},
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()

    def _digest(self, image: torch.Tensor) -> str:
        content = hashlib.sha256(image.contiguous().numpy().tobytes()).hexdigest()
        return hashlib.sha256(f"{self.model_id}|{tuple(image.shape)}|{content}".encode()).hexdigest()

    def _encode(self, image: torch.Tensor) -> torch.Tensor:
        return self.flux.latent_parameters(to_model_range(image[None]))[0]

    def parameters(self, keys: list[str], images: torch.Tensor) -> torch.Tensor:
        """The latent distributions [B, 2C, h, w] on ``device`` (from the cache, or encoded and cached)."""
        out = []
        for key, image in zip(keys, images.cpu()):
            if self.cache is None:
                out.append(self._encode(image))
                continue
            digest = self._digest(image)
            hit = self.cache.get(key, digest)
            if hit is None:
                hit = {"parameters": self._encode(image)}
                self.cache.put(key, digest, hit)
            out.append(hit["parameters"])
        return torch.stack([p.to(self.device) for p in out])

    def __call__(
        self, keys: list[str], images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A VAE sample drawn with ``generator`` (training), or the mode without one (validation)."""
        return self.flux.latents(self.parameters(keys, images), generator)
