"""kohya / ComfyUI / the authors' LoRA files for Flux: read them onto our model exactly, and write them.

Keys are ``lora_unet_<BFL module>.lora_down.weight`` (A, [r, in]), ``.lora_up.weight`` (B, [out, r]; a plain
kohya LoRA) or ``.lora_ups.<i>.weight`` (B of head i, 0-based; the authors' asymmetric LoRA) and ``.alpha``
(scale alpha / r). A fused BFL Linear maps onto split diffusers layers (training/bfl_names.py):

- one A shared by the split layers (our ``lora.targets: fused``, the authors' parametrisation): B's are row
  blocks of the fused B; written and read at rank r, bit for bit;
- split layers with their own A's (``targets: all``): written exactly as A = [A_q; A_k; A_v] (rank n r) with a
  block-diagonal B and alpha n alpha; read back by splitting again. A rank-r file read into split layers
  gives each a copy of the fused A: the same function, but the copies are no longer tied in training.

A file is checked whole before a single weight is copied: a bad file leaves the model as it was.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from training import lora_files
from training.asymmetric_lora import AsymmetricLora
from training.bfl_names import BflModule, bfl_modules

KEY = re.compile(
    r"^(lora_unet_[a-z0-9_]+?)\.(lora_down\.weight|lora_up\.weight|lora_ups\.(\d+)\.weight|alpha)$"
)
FORMATS = ("kohya", "authors")


class LoraFileError(ValueError):
    """A LoRA file that does not fit the model; the message names the file and the first offending key."""


@dataclass
class FileModule:
    down: torch.Tensor  # [r, in]
    ups: list[torch.Tensor]  # per head [out, r]
    alpha: float


def read(path: str | Path) -> dict[str, FileModule]:
    """BFL module key -> its A, B head(s) and alpha; any key that is not a Flux LoRA key is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LoRA file {path} does not exist")
    parts: dict[str, dict] = {}
    with safe_open(str(path), "pt") as f:
        for key in sorted(f.keys()):
            m = KEY.match(key)
            if not m:
                raise LoraFileError(f"{path}: key {key!r} is not a kohya/authors Flux LoRA key")
            t = f.get_tensor(key).float()
            if not torch.isfinite(t).all():
                raise LoraFileError(f"{path}: {key} holds NaN or infinite values")
            entry = parts.setdefault(m.group(1), {"ups": {}})
            if m.group(3) is not None:
                entry["ups"][int(m.group(3))] = (key, t)
            elif m.group(2) == "lora_up.weight":
                entry["ups"][0] = (key, t)
            else:
                entry[m.group(2)] = (key, t)
    out = {}
    for name, e in parts.items():
        if "lora_down.weight" not in e or not e["ups"]:
            raise LoraFileError(
                f"{path}: {name} lacks {'lora_down' if 'lora_down.weight' not in e else 'lora_up'}"
            )
        down = e["lora_down.weight"][1]
        if sorted(e["ups"]) != list(range(len(e["ups"]))):
            raise LoraFileError(f"{path}: {name} has heads {sorted(e['ups'])}, not 0..{len(e['ups']) - 1}")
        ups = [e["ups"][i][1] for i in range(len(e["ups"]))]
        bad = next(
            ((k, t) for k, t in (e["ups"][i] for i in range(len(ups))) if t.shape[1] != down.shape[0]), None
        )
        if bad:
            raise LoraFileError(
                f"{path}: {bad[0]} has rank {bad[1].shape[1]} but lora_down has {down.shape[0]}"
            )
        alpha = e["alpha"][1].item() if "alpha" in e else float(down.shape[0])
        out[name] = FileModule(down, ups, alpha)
    return out


def _block_diagonal(up: torch.Tensor, rows: list[int], n: int) -> bool:
    r, at = up.shape[1] // n, 0
    for j, size in enumerate(rows):
        block = up[at : at + size].clone()
        block[:, j * r : (j + 1) * r] = 0
        if block.any():
            return False
        at += size
    return True


def load_into(lora: AsymmetricLora, path: str | Path) -> int:
    """Copy the file's A and B heads onto ``lora`` (heads 1..n of the file; later heads untouched) and return n.
    Everything is checked first; on any error nothing has been copied."""
    path = Path(path)
    found = read(path)
    bfl = bfl_modules(list(lora.modules))
    expected = {b.key for b in bfl}
    if set(found) != expected:
        extra, missing = sorted(set(found) - expected), sorted(expected - set(found))
        first = (
            f"{extra[0]}.lora_down.weight is not a layer of this model"
            if extra
            else f"{missing[0]}.lora_down.weight is missing"
        )
        raise LoraFileError(
            f"{path}: {first} ({len(extra)} unexpected and {len(missing)} missing modules: "
            f"another architecture, or lora.targets does not match)"
        )
    heads = {len(f.ups) for f in found.values()}
    if len(heads) != 1:
        raise LoraFileError(f"{path}: modules have different head counts {sorted(heads)}")
    n_heads = heads.pop()
    if n_heads > lora.heads:
        raise LoraFileError(f"{path}: {n_heads} heads but the model has lora.heads = {lora.heads}")
    plan = []  # (module, A or None, [B per head]), built whole before any copy
    for b in bfl:
        f, members = found[b.key], [lora.modules[n] for n in b.members]
        key = f"{b.key}.lora_down.weight"
        rows = [m.base.out_features for m in members]
        if f.down.shape[1] != members[0].base.in_features or f.ups[0].shape[0] != sum(rows):
            raise LoraFileError(
                f"{path}: {key} is {tuple(f.down.shape)} / up {tuple(f.ups[0].shape)}, the model's "
                f"layer is {members[0].base.in_features} -> {sum(rows)}"
            )
        factor = (f.alpha / f.down.shape[0]) / lora.scale  # the file's scale in units of ours
        shared = all(m.lora_A is members[0].lora_A for m in members)
        if (
            f.down.shape[0] == lora.rank
        ):  # one A for the fused layer (split layers without sharing get copies)
            downs = [f.down] * len(members)
            ups = [list(u.split(rows)) for u in f.ups]
        elif (
            f.down.shape[0] == lora.rank * len(members)
            and not shared
            and all(_block_diagonal(u, rows, len(members)) for u in f.ups)
        ):
            r = lora.rank
            downs = list(f.down.split(r))
            ups = [[blk[:, j * r : (j + 1) * r] for j, blk in enumerate(u.split(rows))] for u in f.ups]
        else:
            raise LoraFileError(
                f"{path}: {key} has rank {f.down.shape[0]}; the model has lora.rank {lora.rank}"
                + (
                    ""
                    if shared or len(members) == 1
                    else " per split layer (lora.targets: fused reads one A per fused layer)"
                )
            )
        plan.append((members, downs, [[u * factor if factor != 1 else u for u in head] for head in ups]))
    with torch.no_grad():
        for members, downs, ups in plan:
            for j, m in enumerate(members):
                m.lora_A.copy_(downs[j])
                for k, head in enumerate(ups):
                    m.lora_B[k].copy_(head[j])
    return n_heads


def _fused(lora: AsymmetricLora, b: BflModule, head: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(A, B of ``head`` (1-based), alpha) of one BFL module, exact: shared A at rank r, else concatenated."""
    members = [lora.modules[n] for n in b.members]
    ups = [m.lora_B[head - 1].detach().float().cpu() for m in members]
    if len(members) == 1 or all(m.lora_A is members[0].lora_A for m in members):
        return members[0].lora_A.detach().float().cpu(), torch.cat(ups), lora.alpha
    r = lora.rank
    up = torch.zeros(sum(u.shape[0] for u in ups), r * len(members))
    at = 0
    for j, u in enumerate(ups):
        up[at : at + u.shape[0], j * r : (j + 1) * r] = u
        at += u.shape[0]
    down = torch.cat([m.lora_A.detach().float().cpu() for m in members])
    return down, up, lora.alpha * len(members)  # alpha / (n r) = our alpha / r


def write(
    lora: AsymmetricLora,
    path: str | Path,
    fmt: str,
    head: int | None = None,
    meta: dict | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """``kohya``: one head as a plain kohya Flux LoRA; ``authors``: every head (``lora_ups.<i>``)."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {FORMATS}")
    path = Path(path)
    sd, ranks = {}, set()
    for b in bfl_modules(list(lora.modules)):
        heads = [head] if fmt == "kohya" else list(range(1, lora.heads + 1))
        for i, h in enumerate(heads):
            down, up, alpha = _fused(lora, b, h)
            sd[f"{b.key}.lora_down.weight"] = down.to(dtype).contiguous()
            sd[f"{b.key}.alpha"] = torch.tensor(alpha, dtype=torch.float32)
            up_key = "lora_up.weight" if fmt == "kohya" else f"lora_ups.{i}.weight"
            sd[f"{b.key}.{up_key}"] = up.to(dtype).contiguous()
            ranks.add(down.shape[0])
    info = {
        "ss_network_module": "networks.lora_flux",
        "ss_network_dim": str(min(ranks)),
        "ss_network_alpha": str(lora.alpha),
        "ss_base_model_version": "flux1",
        "makeanything": json.dumps(
            {
                **(meta or {}),
                "format": fmt,
                "heads": lora.heads if fmt == "authors" else 1,
                "scale": lora.scale,
                "rank": lora.rank,
            }
        ),
    }
    if fmt == "authors":
        info["lora_ups_num"] = str(lora.heads)
    lora_files.save_whole(sd, path, info)
    return path


def is_kohya_file(path: str | Path) -> bool:
    """Whether a .safetensors file holds kohya-style Flux LoRA keys (``lora_unet_...``)."""
    with safe_open(str(path), "pt") as f:
        return any(k.startswith("lora_unet_") for k in f.keys())


def head_count(path: str | Path) -> int:
    """How many heads a kohya / authors' file holds, from its key names alone (no tensor is read)."""
    with safe_open(str(path), "pt") as f:
        return len({m.group(3) for k in f.keys() if (m := KEY.match(k)) and m.group(3) is not None}) or 1


def file_meta(path: str | Path) -> dict:
    """Our metadata in a file we wrote (base, task, cell, taxonomy), or {}."""
    with safe_open(str(path), "pt") as f:
        return json.loads((f.metadata() or {}).get("makeanything", "{}"))


def lora_from_file(transformer: torch.nn.Module, path: str | Path) -> AsymmetricLora:
    """An asymmetric LoRA on ``transformer`` shaped by the file (rank, alpha, heads) with its weights: one A per
    BFL layer when every module has the same rank (the authors' layout), else split layers."""
    found = read(path)
    ranks = {f.down.shape[0] for f in found.values()}
    rank = min(ranks)
    alpha = next(f.alpha for f in found.values() if f.down.shape[0] == rank)
    heads = len(next(iter(found.values())).ups)
    lora = AsymmetricLora(transformer, rank, alpha, heads, "fused" if len(ranks) == 1 else "all")
    load_into(lora, path)
    return lora
