"""Black Forest Labs' Flux module names (used by kohya sd-scripts, ComfyUI and the authors' checkpoints) and the
diffusers modules each one is. BFL fuses q, k and v (and, in single blocks, the MLP input) into one Linear that
diffusers splits; the fused layer's output rows are the split layers' outputs in the listed order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DOUBLE = {  # BFL name in double block i -> diffusers modules under transformer_blocks.i
    "img_mod_lin": ["norm1.linear"],
    "txt_mod_lin": ["norm1_context.linear"],
    "img_attn_qkv": ["attn.to_q", "attn.to_k", "attn.to_v"],
    "img_attn_proj": ["attn.to_out.0"],
    "txt_attn_qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"],
    "txt_attn_proj": ["attn.to_add_out"],
    "img_mlp_0": ["ff.net.0.proj"],
    "img_mlp_2": ["ff.net.2"],
    "txt_mlp_0": ["ff_context.net.0.proj"],
    "txt_mlp_2": ["ff_context.net.2"],
}
SINGLE = {  # BFL name in single block i -> diffusers modules under single_transformer_blocks.i
    "linear1": ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"],
    "linear2": ["proj_out"],
    "modulation_lin": ["norm.linear"],
}
BLOCK = re.compile(r"^(transformer_blocks|single_transformer_blocks)\.(\d+)\.")


@dataclass(frozen=True)
class BflModule:
    """One BFL Linear: its kohya key prefix and the diffusers modules whose outputs it concatenates."""

    key: str  # e.g. lora_unet_double_blocks_0_img_attn_qkv
    members: tuple[str, ...]  # e.g. transformer_blocks.0.attn.to_q, ...


def bfl_modules(names: list[str]) -> list[BflModule]:
    """The BFL modules covering the diffusers Linear ``names`` (block layers only), in block order.
    Raises if a name has no BFL counterpart or a fused layer is only partly present."""
    present, out = set(names), []
    blocks = sorted(
        {(m.group(1), int(m.group(2))) for n in names if (m := BLOCK.match(n))},
        key=lambda b: (b[0] != "transformer_blocks", b[1]),
    )
    for kind, i in blocks:
        table, bfl = (DOUBLE, "double_blocks") if kind == "transformer_blocks" else (SINGLE, "single_blocks")
        for short, members in table.items():
            full = tuple(f"{kind}.{i}.{m}" for m in members)
            found = [m for m in full if m in present]
            if found and len(found) != len(full):
                raise ValueError(
                    f"BFL layer {bfl}.{i}.{short} is fused from {list(full)}; only {found} are "
                    f"adapted (use lora.targets: all or fused)"
                )
            if found:
                out.append(BflModule(f"lora_unet_{bfl}_{i}_{short}", full))
    covered = {m for b in out for m in b.members}
    if covered != present:
        raise ValueError(f"adapted layers without a BFL name: {sorted(present - covered)[:3]}")
    return out


def fused_groups(names: list[str]) -> list[tuple[str, ...]]:
    """Diffusers layers that are one Linear in BFL's Flux (q/k/v; single-block q/k/v/MLP-in), 2+ members."""
    groups = []
    for kind, table in (("transformer_blocks", DOUBLE), ("single_transformer_blocks", SINGLE)):
        for i in sorted({int(m.group(2)) for n in names if (m := BLOCK.match(n)) and m.group(1) == kind}):
            for members in table.values():
                full = tuple(f"{kind}.{i}.{m}" for m in members)
                if len(full) > 1 and all(m in names for m in full):
                    groups.append(full)
    return groups
