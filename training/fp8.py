"""An 8-bit frozen base: block Linear weights stored as float8 e4m3 with one float32 scale per output row.

Halves the transformer's resident memory (Flux-dev: 22 GiB -> 11 GiB). Two ways to compute with it:

- ``native`` (GPUs with fp8 tensor cores, probed once per device): the activation is quantised per token to
  e4m3 and ``torch._scaled_mm`` multiplies fp8 by fp8 with both row scales applied in the kernel, so no bf16
  copy of the weight is ever made in the forward (nor in the recomputed forward of gradient checkpointing).
- ``upcast`` (anywhere, the CPU included): the weight is upcast to the activation's dtype layer by layer.

The backward (the input gradient the LoRA layers below need) always upcasts the weight, so gradients are not
quantised. Only the saved fp8 weight is kept for it: no upcast copy outlives its layer.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448
MODES = ("auto", "native", "upcast")


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(e4m3 weight, float32 scale per row) with ``w ~= q.float() * scale[:, None]``."""
    scale = (w.detach().float().abs().amax(dim=1) / FP8_MAX).clamp_min(1e-12)
    return (w.detach().float() / scale[:, None]).to(FP8), scale


def _autocast_dtype(x: torch.Tensor) -> torch.dtype:
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


def _native_matmul(x2: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """x2 [M, in] (any float) times the e4m3 weight q [out, in], fp8 x fp8 with per-token and per-row scales."""
    sx = (x2.abs().amax(dim=1, keepdim=True).float() / FP8_MAX).clamp_min(1e-12)
    xq = (x2.float() / sx).to(FP8)
    return torch._scaled_mm(xq, q.t(), scale_a=sx, scale_b=scale[None, :], out_dtype=out_dtype)


@lru_cache(maxsize=None)
def native_supported(device: torch.device) -> bool:
    """Whether ``torch._scaled_mm`` with row-wise scales runs on ``device`` (tried once on a small product)."""
    if device.type != "cuda":
        return False
    try:
        a = torch.randn(32, 32, device=device)
        w, s = quantize_rows(torch.randn(16, 32, device=device))
        _native_matmul(a, w, s, torch.bfloat16)
        torch.cuda.synchronize(device)
        return True
    except (RuntimeError, NotImplementedError):
        return False


class _Fp8Matmul(torch.autograd.Function):
    """y = x W^T with W = q * scale; backward gives only the input gradient (the weight is frozen)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, native: bool) -> torch.Tensor:
        ctx.save_for_backward(q, scale)
        if native:
            return _native_matmul(x.reshape(-1, x.shape[-1]), q, scale, x.dtype).reshape(*x.shape[:-1], -1)
        return F.linear(x, q.to(x.dtype)) * scale.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        q, scale = ctx.saved_tensors
        return (grad * scale.to(grad.dtype)) @ q.to(grad.dtype), None, None, None


class Fp8Linear(nn.Module):
    """A frozen Linear whose weight is stored in float8 e4m3 with a float32 scale per output row."""

    def __init__(self, linear: nn.Linear, mode: str = "auto") -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"fp8 matmul mode {mode!r} is not one of {MODES}")
        self.in_features, self.out_features, self.mode = linear.in_features, linear.out_features, mode
        q, scale = quantize_rows(linear.weight)
        self.register_buffer("weight", q)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def native(self, x: torch.Tensor) -> bool:
        if self.mode == "upcast":
            return False
        ok = native_supported(x.device) and self.in_features % 16 == 0 and self.out_features % 16 == 0
        if self.mode == "native" and not ok:
            raise RuntimeError(f"model.fp8_matmul: native fp8 matmul is not available on {x.device} for a "
                               f"{self.in_features}->{self.out_features} layer; use 'auto' or 'upcast'")
        return ok

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        """The weight as ``dtype`` (for merging and checks; the forward never materialises it)."""
        return (self.weight.float() * self.scale[:, None]).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _autocast_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            y = _Fp8Matmul.apply(x.to(dtype), self.weight, self.scale, self.native(x))
            return y if self.bias is None else y + self.bias.to(dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8 e4m3 per-row, {self.mode}"


@torch.no_grad()
def quantize_(model: nn.Module, names: list[str], device: torch.device, mode: str = "auto") -> int:
    """Replace the named Linear layers by :class:`Fp8Linear` on ``device``, one at a time (the full-precision
    weight of only one layer is ever on the device). Returns the bytes the weights took before."""
    before = 0
    for name in names:
        parent, _, child = name.rpartition(".")
        lin = model.get_submodule(name)
        before += lin.weight.numel() * lin.weight.element_size()
        setattr(model.get_submodule(parent), child, Fp8Linear(lin.to(device), mode))
        lin.to("meta")  # drop the full-precision copy now, not at the end
    return before
