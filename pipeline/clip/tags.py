"""open_clip's own tables (architectures, pretrained tags and where their weights are published), read
without importing the open_clip package.

Why: `import open_clip` imports torch and every model module (6 s of CPU on a busy 2-core machine), and a
build needs the tables only to find out whether the weights are on this machine at all; when they are
not (the default config on a fresh machine) the answer must cost milliseconds. So the installed
``open_clip/pretrained.py`` (plain dicts of tags, plus download helpers) runs under a private package name
that shares open_clip's folder, which skips ``open_clip/__init__.py``; its optional imports
(``safetensors.torch``, ``huggingface_hub``, used only by its download helpers, never called here) are
held back while it loads, as if they were not installed. The tables are open_clip's, so they never
disagree with the version installed.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import types
from pathlib import Path

_ALIAS = "_makeanything_open_clip_tables"
_HELD_BACK = ("safetensors.torch", "huggingface_hub")  # optional in pretrained.py; torch / httpx behind them


@functools.cache
def _folder() -> Path:
    """open_clip's package folder; ImportError when open_clip is not installed."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("No module named 'open_clip'")
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def _pretrained() -> types.ModuleType:
    """open_clip/pretrained.py, loaded under the private package name (see the module docstring)."""
    package = types.ModuleType(_ALIAS)
    package.__path__ = [str(_folder())]
    saved = {name: sys.modules.get(name) for name in (_ALIAS, *_HELD_BACK)}
    sys.modules[_ALIAS] = package
    for name in _HELD_BACK:
        if saved[name] is None:  # a module already imported costs nothing more: leave it
            sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        return importlib.import_module(f"{_ALIAS}.pretrained")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        for name in [n for n in sys.modules if n.startswith(f"{_ALIAS}.")]:
            del sys.modules[name]


def has_architecture(model: str) -> bool:
    """Whether open_clip knows the architecture ``model``: a config shipped with it, or one registered in
    this process with ``open_clip.add_model_config`` (only when open_clip is imported already)."""
    if (_folder() / "model_configs" / f"{model}.json").is_file():
        return True
    open_clip = sys.modules.get("open_clip")
    return open_clip is not None and model in open_clip.list_models()


def pretrained_cfg(model: str, tag: str) -> dict:
    """open_clip's entry for ``model`` / ``tag`` (``url``, ``hf_hub``, ...), {} when it has none."""
    return _pretrained().get_pretrained_cfg(model, tag)


def tags_of(model: str) -> list[str]:
    """The pretrained tags open_clip lists for ``model``."""
    return _pretrained().list_pretrained_tags_by_model(model)


def hub_weight_names() -> tuple[str, str]:
    """open_clip's file names for a hub repo's weights: (the default, its safetensors form)."""
    pretrained = _pretrained()
    return pretrained.HF_WEIGHTS_NAME, pretrained.HF_SAFE_WEIGHTS_NAME
