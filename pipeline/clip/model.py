"""An open_clip model loaded once per process (so once per Dask worker) that embeds images and texts in batches.

Loading always requires real weights (open_clip's `require_pretrained`): a random model can only
come from a checkpoint someone wrote on purpose, never from a fallback here.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to load the model offline; small and picklable so stages ship it, not the model."""

    model: str               # open_clip architecture name, or local-dir:FOLDER
    checkpoint: str | None   # weights file for an architecture name; None for local-dir (weights in the folder)
    device: str = "auto"     # auto: CUDA when this process sees a GPU

    def describe(self) -> str:
        return f"{self.model} ({self.checkpoint})" if self.checkpoint else self.model


def _device(preference: str) -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


class ClipModel:
    """One loaded model with its tokenizer and eval preprocessing; fp16 on CUDA, fp32 on CPU."""

    def __init__(self, spec: ClipSpec) -> None:
        self.spec = spec
        self.device = _device(spec.device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.model = open_clip.create_model(
            spec.model, pretrained=spec.checkpoint, device=self.device,
            precision="fp16" if self.dtype == torch.float16 else "fp32", require_pretrained=True)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(spec.model)
        self.preprocess = image_transform_v2(
            PreprocessCfg(**open_clip.get_model_preprocess_cfg(self.model)), is_train=False)
        self._texts: dict[str, np.ndarray] = {}

    @torch.inference_mode()
    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """Unit-length image embeddings of preprocessed images (B, 3, H, W); stays on the device."""
        feats = self.model.encode_image(batch.to(self.device, self.dtype, non_blocking=True))
        return F.normalize(feats.float(), dim=-1)

    def embed_images(self, images: Iterable[np.ndarray | Image.Image], batch_size: int) -> np.ndarray:
        """(n, D) float32 unit-length embeddings of RGB images (uint8 arrays or PIL), `batch_size` at a time.

        Results stay on the device until the end, so on a GPU the CPU preprocesses the next batch
        while the previous one is still being encoded.
        """
        out: list[torch.Tensor] = []
        batch: list[torch.Tensor] = []
        for img in images:
            pil = img if isinstance(img, Image.Image) else Image.fromarray(img)
            batch.append(self.preprocess(pil))
            if len(batch) == batch_size:
                out.append(self.encode(torch.stack(batch)))
                batch = []
        if batch:
            out.append(self.encode(torch.stack(batch)))
        if not out:
            raise ValueError("embed_images was given no images")
        return torch.cat(out).cpu().numpy()

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, D) unit-length text embeddings; each distinct text is encoded once per process.

        Texts longer than the model's context (77 tokens for CLIP) are truncated by the tokenizer,
        as torchmetrics' CLIP score does.
        """
        if not texts:
            raise ValueError("embed_texts was given no texts")
        missing = list(dict.fromkeys(t for t in texts if t not in self._texts))
        if missing:
            tokens = self.tokenizer(missing).to(self.device)
            feats = F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu().numpy()
            self._texts.update(zip(missing, feats))
        return np.stack([self._texts[t] for t in texts])


_LOADED: dict[ClipSpec, ClipModel] = {}
_LOCK = threading.Lock()


def load(spec: ClipSpec) -> ClipModel:
    """The process-wide model for `spec`: the first task on a worker loads it, later tasks reuse it."""
    with _LOCK:
        if spec not in _LOADED:
            _LOADED[spec] = ClipModel(spec)
        return _LOADED[spec]
