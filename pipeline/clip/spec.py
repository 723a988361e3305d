"""Which CLIP weights to load: a small, picklable description the stages ship instead of the model.

Apart from pipeline.clip.model so that finding the weights (pipeline.clip.locate) never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to load the model offline; small and picklable so stages ship it, not the model."""

    model: str  # open_clip architecture name, or local-dir:FOLDER
    checkpoint: (
        str | None
    )  # weights file for an architecture name; None for local-dir (weights in the folder)
    device: str = "auto"  # auto: CUDA when this process sees a GPU

    def describe(self) -> str:
        return f"{self.model} ({self.checkpoint})" if self.checkpoint else self.model
