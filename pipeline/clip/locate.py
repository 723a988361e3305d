"""Where the configured CLIP weights are on this machine: a checkpoint file, a local-dir folder, or a cache.

Looks at files only: open_clip's tables come from pipeline.clip.tags and the package (with torch) is imported
only to download (clip.download) or to check an architecture registered at run time, so that a machine
without the weights learns it in milliseconds. ImportError when open_clip is not installed.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.clip import tags
from pipeline.clip.spec import ClipSpec
from pipeline.config import ClipConfig

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
SCHEMAS = ("hf-hub", "local-dir")  # open_clip's model-name prefixes
HOW_TO = (
    "To provide it: set clip.download: true on a machine with internet access (fills the cache "
    "once), or clip.pretrained: /path/to/checkpoint, or clip.model: local-dir:FOLDER "
    "(open_clip_config.json + weights)."
)


class WeightsNotFound(Exception):
    """The configured weights are not on this machine; the message says where it looked and what to do."""


def _parse_model_name(model: str) -> tuple[str | None, str]:
    """(schema, rest) of 'hf-hub:org/repo' / 'local-dir:FOLDER', (None, model) for an architecture name."""
    schema, sep, rest = model.partition(":")
    return (schema, rest) if sep and schema in SCHEMAS else (None, model)


def locate(cfg: ClipConfig) -> ClipSpec:
    schema, ident = _parse_model_name(cfg.model)
    if schema == "local-dir":
        return ClipSpec(f"local-dir:{_check_folder(Path(ident))}", None, cfg.device)
    if schema == "hf-hub":
        raise WeightsNotFound(
            f"clip.model {cfg.model!r}: the pipeline does not fetch hub repos; download it once "
            f"(`huggingface-cli download {ident} --local-dir DIR`) and set clip.model: local-dir:DIR."
        )
    if not tags.has_architecture(cfg.model) and not _registered(cfg.model):
        raise WeightsNotFound(
            f"open_clip has no architecture {cfg.model!r} (see open_clip.list_models(), "
            "or use clip.model: local-dir:FOLDER)."
        )
    if os.path.isfile(cfg.pretrained):
        return ClipSpec(cfg.model, os.path.abspath(cfg.pretrained), cfg.device)
    tag = tags.pretrained_cfg(cfg.model, cfg.pretrained)
    if not tag:
        known = ", ".join(tags.tags_of(cfg.model))
        raise WeightsNotFound(
            f"clip.pretrained {cfg.pretrained!r} is neither an existing checkpoint file "
            f"nor a pretrained tag of {cfg.model} (tags: {known})."
        )
    found, looked = _cached(tag, cfg.cache_dir)
    if found is None and cfg.download:
        try:
            from open_clip.pretrained import download_pretrained

            found = download_pretrained(tag, cache_dir=cfg.cache_dir)
        except Exception as e:
            raise WeightsNotFound(f"downloading {cfg.model} / {cfg.pretrained} failed: {e}. {HOW_TO}") from e
    if found is None:
        raise WeightsNotFound(
            f"no local weights for open_clip {cfg.model} / {cfg.pretrained!r}; looked in "
            f"{'; '.join(looked)}. {HOW_TO}"
        )
    return ClipSpec(cfg.model, found, cfg.device)


def _registered(model: str) -> bool:
    """Whether ``model`` is an architecture registered in this process (open_clip.add_model_config); imports
    open_clip, so it is asked only about names open_clip does not ship."""
    import open_clip

    return model in open_clip.list_models()


def _check_folder(folder: Path) -> Path:
    """A local-dir folder needs open_clip_config.json and a weights file, as open_clip reads it."""
    if not folder.is_dir():
        raise WeightsNotFound(f"clip.model local-dir folder {str(folder)!r} does not exist.")
    if not (folder / "open_clip_config.json").is_file():
        raise WeightsNotFound(f"local-dir folder {str(folder)!r} has no open_clip_config.json.")
    if not any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir()):
        raise WeightsNotFound(
            f"local-dir folder {str(folder)!r} has no weights file ({', '.join(WEIGHT_SUFFIXES)})."
        )
    return folder.resolve()


def _weight_names(filename: str) -> list[str]:
    """The names open_clip tries on the hub for one weights file, safetensors first."""
    default, safe = tags.hub_weight_names()
    if filename == default:
        return [safe, filename]
    stem, suffix = os.path.splitext(filename)
    return [stem + ".safetensors", filename] if suffix in (".bin", ".pth") else [filename]


def _cached(tag: dict, cache_dir: str | None) -> tuple[str | None, list[str]]:
    """The tag's weights file if a previous download left it in a cache, and every place looked at."""
    looked: list[str] = []
    if tag.get("hf_hub"):
        from huggingface_hub import constants

        hub = cache_dir or constants.HF_HUB_CACHE
        repo, filename = os.path.split(tag["hf_hub"])  # 'org/repo/' means the default file name
        names = _weight_names(filename or tags.hub_weight_names()[0])
        # The hub cache keeps a repo under models--org--name: without that folder nothing of it is cached,
        # and the lookup (which imports huggingface_hub's download machinery) is not needed.
        if os.path.isdir(os.path.join(hub, "models--" + repo.replace("/", "--"))):
            from huggingface_hub import try_to_load_from_cache

            for name in names:
                hit = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
                if isinstance(hit, str):
                    return hit, looked
        looked.append(f"{hub} (hub repo {repo}: {' or '.join(names)})")
    if tag.get("url"):
        target = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(tag["url"]))
        if os.path.isfile(target):
            return target, looked
        looked.append(target)
    return None, looked
