"""Asymmetric LoRA: y = W0 x + scale * B_k (A x), one shared A and one B_k per task head k.

Each sample picks its own head (mixed-task batches are fine). Heads are separate parameters so a head that
no sample in the batch used gets no gradient at all (grad stays None, so AdamW leaves it untouched).
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from training.bfl_names import fused_groups
from training.fp8 import Fp8Linear

ATTENTION = (
    "attn.to_q",
    "attn.to_k",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_q_proj",
    "attn.add_k_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
)
BLOCKS = re.compile(r"^(transformer_blocks|single_transformer_blocks)\.\d+\.")


class AsymLoraLinear(nn.Module):
    """A frozen Linear plus a shared down-projection A and per-head up-projections B."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, heads: int) -> None:
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear / peft
        self.lora_B = nn.ParameterList(
            nn.Parameter(torch.zeros(base.out_features, rank)) for _ in range(heads)
        )
        self.heads: list[int] | None = None  # 0-based head per sample, set by AsymmetricLora.use()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.heads is None:
            raise RuntimeError("AsymLoraLinear called before AsymmetricLora.use(heads)")
        # under autocast F.linear casts (and caches) the float32 LoRA weights itself
        cast = (lambda w: w) if torch.is_autocast_enabled(x.device.type) else (lambda w: w.to(x.dtype))
        low = F.linear(x, cast(self.lora_A))
        if len(set(self.heads)) == 1:
            delta = F.linear(low, cast(self.lora_B[self.heads[0]]))
        else:
            if len(self.heads) != x.shape[0]:
                raise RuntimeError(f"{len(self.heads)} heads for a batch of {x.shape[0]}")
            b = cast(torch.stack([self.lora_B[h] for h in self.heads]))  # [batch, out, r]
            delta = torch.bmm(low.reshape(x.shape[0], -1, low.shape[-1]), b.transpose(1, 2))
            delta = delta.reshape(*x.shape[:-1], -1)
        return torch.add(out, delta.to(out.dtype), alpha=self.scale)  # one kernel for scale and sum


def select_targets(model: nn.Module, targets: str | list[str]) -> list[str]:
    """Names of the block Linear layers to adapt: 'all' (also 'fused'), 'attention', or a list of suffixes."""
    names = []
    for name, mod in model.named_modules():
        if not isinstance(mod, (nn.Linear, Fp8Linear)) or not BLOCKS.match(name):
            continue
        if (
            targets in ("all", "fused")
            or (targets == "attention" and name.endswith(ATTENTION))
            or (isinstance(targets, list) and any(name == t or name.endswith("." + t) for t in targets))
        ):
            names.append(name)
    if not names:
        raise ValueError(f"LoRA targets {targets!r} match no Linear layer in the transformer blocks")
    return names


class AsymmetricLora:
    """Installs AsymLoraLinear modules into a transformer and owns their parameters."""

    def __init__(
        self,
        model: nn.Module,
        rank: int,
        alpha: float,
        heads: int,
        targets: str | list[str] = "all",
        freeze_a: bool = False,
    ) -> None:
        self.rank, self.alpha, self.heads = rank, alpha, heads
        self.modules: dict[str, AsymLoraLinear] = {}
        model.requires_grad_(False)
        for name in select_targets(model, targets):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            base = getattr(parent, child)
            lora = AsymLoraLinear(base, rank, alpha, heads).to(base.weight.device)
            lora.lora_A.requires_grad_(not freeze_a)
            setattr(parent, child, lora)
            self.modules[name] = lora
        # 'fused': the split layers of one BFL Linear (q/k/v, single-block q/k/v/MLP-in) share one A, as in the
        # authors' parametrisation; their B's are the row blocks of that Linear's B
        self.shared: dict[str, str] = {}  # member -> the group's first member, which owns A in state_dict()
        if targets == "fused":
            for group in fused_groups(list(self.modules)):
                for name in group[1:]:
                    self.modules[name].lora_A = self.modules[group[0]].lora_A
                    self.shared[name] = group[0]

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def use(self, heads: list[int]) -> None:
        """Select the head (1-based task head) of every sample in the next forward passes."""
        bad = [h for h in heads if not 1 <= h <= self.heads]
        if bad:
            raise ValueError(f"task head(s) {bad} out of range 1..{self.heads} (lora.heads)")
        zero_based = [h - 1 for h in heads]
        for m in self.modules.values():
            m.heads = zero_based

    def trainable(self) -> list[nn.Parameter]:
        """Each trainable parameter once (a shared A is one parameter)."""
        return list(
            {id(p): p for m in self.modules.values() for p in m.parameters() if p.requires_grad}.values()
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``{module}.lora_A`` and ``{module}.lora_B.{head}`` (1-based head) for every adapted layer (a shared A
        only under its group's first member)."""
        out = {}
        for name, m in self.modules.items():
            if name not in self.shared:
                out[f"{name}.lora_A"] = m.lora_A.detach()
            for k, b in enumerate(m.lora_B):
                out[f"{name}.lora_B.{k + 1}"] = b.detach()
        return out

    def load_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        expected = set(self.state_dict())
        if set(sd) != expected:
            missing, extra = sorted(expected - set(sd))[:3], sorted(set(sd) - expected)[:3]
            raise ValueError(
                f"LoRA weights do not match this model (missing {missing}, unexpected {extra}): "
                f"check lora.rank/targets/heads"
            )
        with torch.no_grad():
            for name, m in self.modules.items():
                if name not in self.shared:
                    m.lora_A.copy_(sd[f"{name}.lora_A"])
                for k, b in enumerate(m.lora_B):
                    b.copy_(sd[f"{name}.lora_B.{k + 1}"])

    def head_lora(self, head: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """module -> (A, scale * B_head): an ordinary LoRA (delta W = B A) for one task."""
        return {
            name: (m.lora_A.detach(), self.scale * m.lora_B[head - 1].detach())
            for name, m in self.modules.items()
        }
