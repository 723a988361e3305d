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
from open_clip.transform import MaybeConvertMode, PreprocessCfg, image_transform_v2
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, Normalize, Resize, ToTensor


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to load the model offline; small and picklable so stages ship it, not the model."""

    model: str               # open_clip architecture name, or local-dir:FOLDER
    checkpoint: str | None   # weights file for an architecture name; None for local-dir (weights in the folder)
    device: str = "auto"     # auto: CUDA when this process sees a GPU

    def describe(self) -> str:
        return f"{self.model} ({self.checkpoint})" if self.checkpoint else self.model


def _split_eval_transform(model: torch.nn.Module) -> tuple[Compose, tuple, tuple]:
    """open_clip's eval preprocessing split into its resize steps (resize, crop, RGB) and the
    mean/std of its final ToTensor + Normalize, which ClipModel.to_input applies per batch."""
    pre = image_transform_v2(PreprocessCfg(**open_clip.get_model_preprocess_cfg(model)), is_train=False)
    *resize_steps, to_tensor, normalize = pre.transforms
    if not (isinstance(to_tensor, ToTensor) and isinstance(normalize, Normalize)):
        raise TypeError(f"open_clip's eval transform no longer ends with ToTensor, Normalize: {pre}")
    return Compose(resize_steps), tuple(normalize.mean), tuple(normalize.std)


TENSOR_STEPS = (Resize, CenterCrop, MaybeConvertMode)  # resize steps that also take (B, C, H, W) tensors


def _device(preference: str) -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def _rgb(img: np.ndarray | Image.Image) -> np.ndarray:
    if isinstance(img, Image.Image):
        return np.asarray(img.convert("RGB"))
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {img.dtype} {img.shape}")
    return img


class ClipModel:
    """One loaded model with its tokenizer and eval preprocessing; fp16 on CUDA, fp32 on CPU.

    Resizing runs where it is cheapest: per image with PIL on a CPU (1.6 ms a frame, faster than
    torch there), and on a GPU as the same open_clip transforms applied to uint8 batches on the
    device, since PIL at ~600 frames/s per core would starve an encoder doing tens of thousands
    (results within a few grey levels of PIL's).
    """

    def __init__(self, spec: ClipSpec, resize_on_device: bool | None = None) -> None:
        self.spec = spec
        self.device = _device(spec.device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.model = open_clip.create_model(
            spec.model, pretrained=spec.checkpoint, device=self.device,
            precision="fp16" if self.dtype == torch.float16 else "fp32", require_pretrained=True)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(spec.model)
        self.resize, mean, std = _split_eval_transform(self.model)
        tensor_ok = all(isinstance(t, TENSOR_STEPS) for t in self.resize.transforms)
        wanted = self.device.type == "cuda" if resize_on_device is None else resize_on_device
        self.resize_on_device = wanted and tensor_ok
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self._texts: dict[str, np.ndarray] = {}

    def _resized(self, images: list[np.ndarray | Image.Image]) -> torch.Tensor:
        """Resized and cropped uint8 batch (B, 3, S, S) on the device."""
        if not self.resize_on_device:
            arrays = [np.asarray(self.resize(img if isinstance(img, Image.Image) else Image.fromarray(_rgb(img))))
                      for img in images]
            return torch.from_numpy(np.stack(arrays)).to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        arrays = [_rgb(img) for img in images]
        by_size: dict[tuple, list[int]] = {}
        for k, a in enumerate(arrays):
            by_size.setdefault(a.shape, []).append(k)
        out: list[torch.Tensor] = [torch.empty(0)] * len(arrays)
        for idx in by_size.values():  # a source's frames share one size: usually one upload per batch
            x = torch.from_numpy(np.stack([arrays[k] for k in idx])).to(self.device, non_blocking=True)
            for k, r in zip(idx, self.resize(x.permute(0, 3, 1, 2))):
                out[k] = r
        return torch.stack(out)

    def to_input(self, images: list[np.ndarray | Image.Image]) -> torch.Tensor:
        """RGB images -> one normalised model input (B, 3, S, S) on the device, in the model's dtype.

        ToTensor + Normalize happen once per batch (on the GPU there, after a uint8 upload a
        quarter of the size of a float one) instead of once per image.
        """
        x = self._resized(images).float().div_(255).sub_(self.mean).div_(self.std)
        return x.to(self.dtype)

    @torch.inference_mode()
    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """Unit-length image embeddings of a model input from `to_input`; stays on the device."""
        return F.normalize(self.model.encode_image(batch).float(), dim=-1)

    def embed_images(self, images: Iterable[np.ndarray | Image.Image], batch_size: int) -> np.ndarray:
        """(n, D) float32 unit-length embeddings of RGB images (uint8 arrays or PIL), `batch_size` at a time.

        Results stay on the device until the end, so on a GPU the CPU prepares the next batch while
        the previous one is still being encoded.
        """
        out: list[torch.Tensor] = []
        batch: list[np.ndarray | Image.Image] = []
        for img in images:
            batch.append(img)
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
