"""Random-weight open_clip models written as local-dir folders, for tests and the speed benchmark only.

A random model never appears by accident: the pipeline loads one only when a config points
`clip.model` at a folder written here. Speed does not depend on weight values, so the benchmark
can time a real architecture (e.g. ViT-B-32) without pretrained weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
from open_clip.constants import HF_CONFIG_NAME, HF_WEIGHTS_NAME

TINY = "makeanything-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def register_tiny(folder: Path) -> str:
    """Register the tiny architecture with open_clip (JSON config + add_model_config); returns its name."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)
    return TINY


def write_random_model(folder: Path, arch: str, seed: int = 0) -> str:
    """Create `arch` with pretrained=None under a fixed seed and save it as an open_clip local-dir folder.

    Returns the `clip.model` value that loads it ("local-dir:FOLDER").
    """
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "model_cfg": open_clip.get_model_config(arch),
        "preprocess_cfg": open_clip.get_model_preprocess_cfg(model),
    }
    (folder / HF_CONFIG_NAME).write_text(json.dumps(config))
    torch.save(model.state_dict(), folder / HF_WEIGHTS_NAME)
    return f"local-dir:{folder.resolve()}"
