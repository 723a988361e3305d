"""Before any work starts: find the configured CLIP weights on this machine, or say plainly why not.

Workers never download: the plan hands them a local file or folder, checked by loading it once here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import open_clip
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
from open_clip.factory import parse_model_name
from open_clip.pretrained import download_pretrained, get_pretrained_cfg, list_pretrained_tags_by_model

from pipeline.clip.model import ClipModel, ClipSpec
from pipeline.config import ClipConfig

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
HOW_TO = ("To provide it: set clip.download: true on a machine with internet access (fills the cache "
          "once), or clip.pretrained: /path/to/checkpoint, or clip.model: local-dir:FOLDER "
          "(open_clip_config.json + weights).")


class ClipUnavailable(Exception):
    """The CLIP stage is required (clip.require / --require-clip) but cannot run; the CLI exits 2."""


class _NotFound(Exception):
    pass


@dataclass(frozen=True)
class ClipPlan:
    """`spec` to hand to the stages, or None; `message` is the run report's line either way."""

    spec: ClipSpec | None
    message: str

    @property
    def ready(self) -> bool:
        return self.spec is not None


def plan_clip(cfg: ClipConfig) -> ClipPlan:
    """Locate and test-load the weights. Raises ClipUnavailable instead of skipping when cfg.require."""
    try:
        if not cfg.enabled:
            raise _NotFound("it is turned off (clip.enabled: false)")
        spec = _locate(cfg)
        try:
            ClipModel(replace(spec, device="cpu"))
        except Exception as e:  # a corrupt or mismatched checkpoint must stop here, not in every task
            raise _NotFound(f"{spec.describe()} could not be loaded: {type(e).__name__}: {e}") from e
    except _NotFound as e:
        if cfg.require:
            raise ClipUnavailable(f"CLIP stage required (clip.require / --require-clip) but cannot run: {e}") from None
        return ClipPlan(None, f"CLIP stage skipped: {e} The build continues with pixel-based selection.")
    return ClipPlan(spec, f"CLIP stage on: {spec.describe()}, device {cfg.device}, batch {cfg.batch_size}")


def _locate(cfg: ClipConfig) -> ClipSpec:
    schema, ident = parse_model_name(cfg.model)
    if schema == "local-dir":
        return ClipSpec(f"local-dir:{_check_folder(Path(ident))}", None, cfg.device)
    if schema == "hf-hub":
        raise _NotFound(f"clip.model {cfg.model!r}: the pipeline does not fetch hub repos; download it once "
                        f"(`huggingface-cli download {ident} --local-dir DIR`) and set clip.model: local-dir:DIR.")
    if cfg.model not in open_clip.list_models():
        raise _NotFound(f"open_clip has no architecture {cfg.model!r} (see open_clip.list_models(), "
                        "or use clip.model: local-dir:FOLDER).")
    if os.path.isfile(cfg.pretrained):
        return ClipSpec(cfg.model, os.path.abspath(cfg.pretrained), cfg.device)
    tag = get_pretrained_cfg(cfg.model, cfg.pretrained)
    if not tag:
        raise _NotFound(f"clip.pretrained {cfg.pretrained!r} is neither an existing checkpoint file nor a "
                        f"pretrained tag of {cfg.model} (tags: {', '.join(list_pretrained_tags_by_model(cfg.model))}).")
    found, looked = _cached(tag, cfg.cache_dir)
    if found is None and cfg.download:
        try:
            found = download_pretrained(tag, cache_dir=cfg.cache_dir)
        except Exception as e:
            raise _NotFound(f"downloading {cfg.model} / {cfg.pretrained} failed: {e}. {HOW_TO}") from e
    if found is None:
        raise _NotFound(f"no local weights for open_clip {cfg.model} / {cfg.pretrained!r}; looked in "
                        f"{'; '.join(looked)}. {HOW_TO}")
    return ClipSpec(cfg.model, found, cfg.device)


def _check_folder(folder: Path) -> Path:
    """A local-dir folder needs open_clip_config.json and a weights file, as open_clip reads it."""
    if not folder.is_dir():
        raise _NotFound(f"clip.model local-dir folder {str(folder)!r} does not exist.")
    if not (folder / "open_clip_config.json").is_file():
        raise _NotFound(f"local-dir folder {str(folder)!r} has no open_clip_config.json.")
    if not any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir()):
        raise _NotFound(f"local-dir folder {str(folder)!r} has no weights file ({', '.join(WEIGHT_SUFFIXES)}).")
    return folder.resolve()


def _weight_names(filename: str) -> list[str]:
    """The names open_clip tries on the hub for one weights file, safetensors first."""
    if filename == HF_WEIGHTS_NAME:
        return [HF_SAFE_WEIGHTS_NAME, filename]
    stem, suffix = os.path.splitext(filename)
    return [stem + ".safetensors", filename] if suffix in (".bin", ".pth") else [filename]


def _cached(tag: dict, cache_dir: str | None) -> tuple[str | None, list[str]]:
    """The tag's weights file if a previous download left it in a cache, and every place looked at."""
    looked: list[str] = []
    if tag.get("hf_hub"):
        repo, filename = os.path.split(tag["hf_hub"])  # 'org/repo/' means the default file name
        names = _weight_names(filename or HF_WEIGHTS_NAME)
        for name in names:
            hit = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
            if isinstance(hit, str):
                return hit, looked
        looked.append(f"{cache_dir or hf_constants.HF_HUB_CACHE} (hub repo {repo}: {' or '.join(names)})")
    if tag.get("url"):
        target = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(tag["url"]))
        if os.path.isfile(target):
            return target, looked
        looked.append(target)
    return None, looked
