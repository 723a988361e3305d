"""open_clip loading for the harness, cached per process.

TODO(shared loader): pipeline/clip/ is getting its own open_clip loader; once both exist, this
module should call that one and keep only the scorer wrapper.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from evaluation.config import ClipConfig
from pipeline.layout import letterbox


class WeightsUnavailable(RuntimeError):
    """No CLIP weights could be loaded; the harness refuses to score with a random model."""


class OpenClipModel:
    """An open_clip model used both as `TextImageScorer` and as a `FeatureBackbone` (cosine similarity)."""

    duplicate_distance = 0.02  # 1 - cos; re-encoded copies of one image stay well inside this

    def __init__(self, model: torch.nn.Module, preprocess, tokenizer, device: str, batch_size: int,
                 name: str) -> None:
        self.model, self.preprocess, self.tokenizer = model.eval(), preprocess, tokenizer
        self.device, self.batch_size, self.name = device, batch_size, name
        self.context_length = getattr(tokenizer, "context_length", None) or 77
        self._texts: dict[str, tuple[np.ndarray, bool | None]] = {}

    @torch.inference_mode()
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Unit-norm embeddings; each image is letterboxed onto white first so the crop keeps all of it."""
        out = []
        for i in range(0, len(images), self.batch_size):
            batch = torch.stack([self.preprocess(letterbox(img, max(img.size)))
                                 for img in images[i:i + self.batch_size]]).to(self.device)
            out.append(torch.nn.functional.normalize(self.model.encode_image(batch).float(), dim=-1).cpu())
        return torch.cat(out).numpy()

    def truncated(self, text: str) -> bool | None:
        """Whether the tokenizer cuts `text` at the context length (None: tokenizer cannot tell)."""
        encode = getattr(self.tokenizer, "encode", None)
        if encode is None:
            return None
        return len(encode(text)) + 2 > self.context_length  # + start and end tokens

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, list[bool | None]]:
        """Unit-norm embeddings; texts longer than the context are truncated (CLIP's own rule) and flagged."""
        new = [t for t in dict.fromkeys(texts) if t not in self._texts]
        for i in range(0, len(new), self.batch_size):
            chunk = new[i:i + self.batch_size]
            tokens = self.tokenizer(chunk).to(self.device)
            emb = torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu().numpy()
            for text, vec in zip(chunk, emb):
                self._texts[text] = (vec, self.truncated(text))
        return np.stack([self._texts[t][0] for t in texts]), [self._texts[t][1] for t in texts]

    def similarity(self, features: np.ndarray) -> np.ndarray:
        return features @ features.T


_LOADED: dict[tuple, OpenClipModel] = {}


def load_clip(cfg: ClipConfig) -> OpenClipModel:
    """The configured model with real weights, or `WeightsUnavailable` saying why and what to do."""
    import open_clip

    if cfg.model_config_path is not None:
        open_clip.add_model_config(cfg.model_config_path)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    key = (cfg.model, cfg.pretrained, str(cfg.model_config_path), device)
    if key not in _LOADED:
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                cfg.model, pretrained=cfg.pretrained, device=device, require_pretrained=True)
        except Exception as exc:  # open_clip wraps download and checkpoint failures in several types
            raise WeightsUnavailable(
                f"CLIP weights {cfg.model} / {cfg.pretrained!r} are not available here ({exc}). "
                "Pass --clip-pretrained PATH to a local checkpoint (or put the weights in the "
                "open_clip/Hugging Face cache), or --no-clip to skip CLIP scores; the harness "
                "never scores with random weights.") from exc
        _LOADED[key] = OpenClipModel(model, preprocess, open_clip.get_tokenizer(cfg.model), device,
                                     cfg.batch_size, f"{cfg.model}/{cfg.pretrained}")
    return _LOADED[key]
