"""Ordinary (single-head) LoRA files in the peft/diffusers layout, and merging a LoRA into the base weights.

Keys are ``transformer.<module>.lora_A.weight`` ([r, in]) and ``transformer.<module>.lora_B.weight``
([out, r]) with the scale alpha/r folded into B, so any loader that assumes alpha = r (diffusers' default
for peft-style keys) applies exactly the trained delta W = scale * B A.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

PREFIX = "transformer."
META_KEY = "makeanything"

Lora = dict[str, tuple[torch.Tensor, torch.Tensor]]  # module name -> (A [r, in], B [out, r], scale folded in)


def write(lora: Lora, path: Path, meta: dict, dtype: torch.dtype = torch.float32) -> None:
    """Write atomically (temp name, then rename)."""
    sd = {}
    for name, (a, b) in lora.items():
        sd[f"{PREFIX}{name}.lora_A.weight"] = a.to(dtype).contiguous()
        sd[f"{PREFIX}{name}.lora_B.weight"] = b.to(dtype).contiguous()
    save_whole(sd, path, {META_KEY: json.dumps(meta)})


def save_whole(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """A safetensors file written under a temporary name, then renamed. Its mode follows the umask like any
    file the user makes (safetensors itself creates 0600, which other users and containers cannot read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, tmp, metadata=metadata)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)
    tmp.replace(path)


def read(path: Path) -> tuple[Lora, dict]:
    """(LoRA, our metadata) from a file written by :func:`write` (or any peft-style Flux transformer LoRA)."""
    if not path.is_file():
        raise FileNotFoundError(f"LoRA file {path} does not exist")
    with safe_open(str(path), "pt") as f:
        meta = json.loads((f.metadata() or {}).get(META_KEY, "{}"))
        keys = list(f.keys())
        tensors = {k: f.get_tensor(k) for k in keys}
    lora: Lora = {}
    for k in keys:
        if k.endswith(".lora_A.weight"):
            name = k.removesuffix(".lora_A.weight").removeprefix(PREFIX)
            b_key = k.replace(".lora_A.weight", ".lora_B.weight")
            if b_key not in tensors:
                raise ValueError(f"LoRA file {path}: {k} has no matching lora_B")
            lora[name] = (tensors[k].float(), tensors[b_key].float())
    if not lora:
        raise ValueError(f"LoRA file {path} holds no transformer.*.lora_A/lora_B weights")
    return lora, meta


@torch.no_grad()
def merge(transformer: nn.Module, lora: Lora) -> None:
    """W <- W + B A for every module of the LoRA (computed in float32)."""
    for name, (a, b) in lora.items():
        try:
            lin = transformer.get_submodule(name)
        except AttributeError as e:
            raise ValueError(f"LoRA module {name} is not in this transformer") from e
        w = lin.weight
        w.copy_((w.float() + b.to(w.device).float() @ a.to(w.device).float()).to(w.dtype))
