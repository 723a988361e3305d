"""The harness's CLIP scorer: the pipeline's open_clip loader (pipeline.clip) plus what evaluation adds,
letterboxed images (so the centre crop keeps the whole grid) and a flag for truncated prompts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from evaluation.config import ClipConfig
from pipeline.layout import letterbox


class WeightsUnavailable(RuntimeError):
    """No CLIP weights could be loaded; the harness refuses to score with a random model."""


class OpenClipModel:
    """An open_clip model used both as `TextImageScorer` and as a `FeatureBackbone` (cosine similarity)."""

    duplicate_distance = 0.02  # 1 - cos; re-encoded copies of one image stay well inside this

    def __init__(self, model, batch_size: int, name: str) -> None:  # model: pipeline.clip.model.ClipModel
        self.model, self.batch_size, self.name = model, batch_size, name
        self.context_length = getattr(model.tokenizer, "context_length", None) or 77
        self._truncated: dict[str, bool | None] = {}

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Unit-norm embeddings; each image is letterboxed onto white first so the crop keeps all of it."""
        return self.model.embed_images((letterbox(img, max(img.size)) for img in images), self.batch_size)

    def truncated(self, text: str) -> bool | None:
        """Whether the tokenizer cuts `text` at the context length (None: tokenizer cannot tell)."""
        encode = getattr(self.model.tokenizer, "encode", None)
        if encode is None:
            return None
        return len(encode(text)) + 2 > self.context_length  # + start and end tokens

    def embed_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, list[bool | None]]:
        """Unit-norm embeddings; texts longer than the context are truncated (CLIP's own rule) and flagged."""
        for t in texts:
            if t not in self._truncated:
                self._truncated[t] = self.truncated(t)
        return self.model.embed_texts(list(texts)), [self._truncated[t] for t in texts]

    def similarity(self, features: np.ndarray) -> np.ndarray:
        return features @ features.T


_SCORERS: dict[tuple, OpenClipModel] = {}


def load_clip(cfg: ClipConfig) -> OpenClipModel:
    """The configured model with real weights, or `WeightsUnavailable` saying why and what to do."""
    import open_clip

    from pipeline.clip.locate import HOW_TO, WeightsNotFound, locate
    from pipeline.clip.model import load
    from pipeline.config import ClipConfig as LoaderConfig

    if cfg.model_config_path is not None:
        open_clip.add_model_config(cfg.model_config_path)
    key = (cfg.model, cfg.pretrained, str(cfg.model_config_path), cfg.device, cfg.batch_size)
    if key not in _SCORERS:
        try:
            spec = locate(
                LoaderConfig(model=cfg.model, pretrained=cfg.pretrained, device=cfg.device or "auto")
            )
            model = load(spec)  # one model per process, shared with the pipeline's CLIP stage
        except (WeightsNotFound, Exception) as exc:  # open_clip wraps checkpoint failures in several types
            why = str(exc).replace(HOW_TO, "").strip()  # its advice is the build's (clip.download), not ours
            raise WeightsUnavailable(
                f"CLIP weights {cfg.model} / {cfg.pretrained!r} are not available here ({why}). "
                "Pass --clip-pretrained PATH to a local checkpoint (or put the weights in the "
                "open_clip/Hugging Face cache), or --no-clip to skip CLIP scores; the harness "
                "never scores with random weights."
            ) from exc
        _SCORERS[key] = OpenClipModel(model, cfg.batch_size, f"{cfg.model}/{cfg.pretrained}")
    return _SCORERS[key]
