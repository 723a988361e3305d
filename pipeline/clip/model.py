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
from torchvision.transforms import Compose, Normalize, ToTensor


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to load the model offline; small and picklable so stages ship it, not the model."""

    model: str               # open_clip architecture name, or local-dir:FOLDER
    checkpoint: str | None   # weights file for an architecture name; None for local-dir (weights in the folder)
    device: str = "auto"     # auto: CUDA when this process sees a GPU

    def describe(self) -> str:
        return f"{self.model} ({self.checkpoint})" if self.checkpoint else self.model


def _split_eval_transform(model: torch.nn.Module) -> tuple[Compose, tuple, tuple]:
    """open_clip's eval preprocessing split into its per-image PIL steps (resize, crop, RGB) and the
    mean/std of its final ToTensor + Normalize, which ClipModel.to_input applies per batch."""
    pre = image_transform_v2(PreprocessCfg(**open_clip.get_model_preprocess_cfg(model)), is_train=False)
    *pil_steps, to_tensor, normalize = pre.transforms
    if not (isinstance(to_tensor, ToTensor) and isinstance(normalize, Normalize)):
        raise TypeError(f"open_clip's eval transform no longer ends with ToTensor, Normalize: {pre}")
    return Compose(pil_steps), tuple(normalize.mean), tuple(normalize.std)


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
        self.resize, mean, std = _split_eval_transform(self.model)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self._texts: dict[str, np.ndarray] = {}

    def to_input(self, resized: list[np.ndarray]) -> torch.Tensor:
        """Resized uint8 RGB images (H, W, 3) -> one normalised model input (B, 3, H, W) on the device.

        The same arithmetic as open_clip's ToTensor + Normalize, done once per batch (and on the GPU
        there, after a uint8 upload a quarter of the size) instead of once per image.
        """
        x = torch.from_numpy(np.stack(resized)).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255).sub_(self.mean).div_(self.std)
        return x.to(self.dtype)

    @torch.inference_mode()
    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """Unit-length image embeddings of a model input from `to_input`; stays on the device."""
        return F.normalize(self.model.encode_image(batch).float(), dim=-1)

    def embed_images(self, images: Iterable[np.ndarray | Image.Image], batch_size: int) -> np.ndarray:
        """(n, D) float32 unit-length embeddings of RGB images (uint8 arrays or PIL), `batch_size` at a time.

        Results stay on the device until the end, so on a GPU the CPU resizes the next batch while
        the previous one is still being encoded.
        """
        out: list[torch.Tensor] = []
        batch: list[np.ndarray] = []
        for img in images:
            pil = img if isinstance(img, Image.Image) else Image.fromarray(img)
            batch.append(np.asarray(self.resize(pil)))
            if len(batch) == batch_size:
                out.append(self.encode(self.to_input(batch)))
                batch = []
        if batch:
            out.append(self.encode(self.to_input(batch)))
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
