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


def quantize_tokens(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(e4m3 [M, K], float32 scale [M, 1]) of activations x2 [M, K], one scale per token: one fused Triton
    kernel on a GPU (reads the activation twice, writes one byte per element), else torch operations."""
    kernel = _triton_quantizer() if x2.is_cuda and _TRITON_OK.get(x2.device) else None
    return kernel(x2) if kernel is not None else _torch_quantize_tokens(x2)


def _torch_quantize_tokens(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = (torch.linalg.vector_norm(x2, float("inf"), dim=1, keepdim=True, dtype=torch.float32)
             / FP8_MAX).clamp_min(1e-12)
    return (x2.float() / scale).to(FP8), scale


_TRITON_OK: dict[torch.device, bool] = {}  # set by native_supported(device) after checking the kernel there
_TRITON_WHY: dict[torch.device, str] = {}  # why not, where it is False


@lru_cache(maxsize=None)
def _triton_quantizer():
    """The Triton row quantiser as a function x2 -> (q, scale), or None without Triton."""
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None

    @triton.jit
    def quant_rows(x_ptr, q_ptr, s_ptr, K, stride, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        amax = tl.zeros([BLOCK], dtype=tl.float32)
        for off in range(0, K, BLOCK):
            cols = off + tl.arange(0, BLOCK)
            v = tl.load(x_ptr + row * stride + cols, mask=cols < K, other=0.0).to(tl.float32)
            amax = tl.maximum(amax, tl.abs(v))
        scale = tl.maximum(tl.max(amax, axis=0) / 448.0, 1e-12)
        tl.store(s_ptr + row, scale)
        for off in range(0, K, BLOCK):
            cols = off + tl.arange(0, BLOCK)
            v = tl.load(x_ptr + row * stride + cols, mask=cols < K, other=0.0).to(tl.float32)
            tl.store(q_ptr + row * K + cols, (v / scale).to(q_ptr.dtype.element_ty), mask=cols < K)

    def run(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x2.stride(1) != 1:
            x2 = x2.contiguous()
        m, k = x2.shape
        q = torch.empty(m, k, dtype=FP8, device=x2.device)
        scale = torch.empty(m, 1, dtype=torch.float32, device=x2.device)
        quant_rows[(m,)](x2, q, scale, k, x2.stride(0), BLOCK=1024)
        return q, scale

    return run


def _native_matmul(x2: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """x2 [M, in] (any float) times the e4m3 weight q [out, in], fp8 x fp8 with per-token and per-row scales."""
    xq, sx = quantize_tokens(x2)
    return torch._scaled_mm(xq, q.t(), scale_a=sx, scale_b=scale[None, :], out_dtype=out_dtype)


def native_supported(device: torch.device) -> bool:
    """Whether ``torch._scaled_mm`` with row-wise scales runs on ``device`` (probed once per device)."""
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _probe(device)


@lru_cache(maxsize=None)
def _probe(device: torch.device) -> bool:
    """Whether ``torch._scaled_mm`` with row-wise scales runs on ``device`` (tried once on a small product).
    Also checks the Triton quantiser there against torch's own casts, and falls back to those if it differs."""
    if device.type != "cuda":
        return False
    x = torch.randn(64, 2000, device=device, dtype=torch.bfloat16) * torch.logspace(-3, 3, 64, device=device)[:, None]
    if _triton_quantizer() is not None:
        _TRITON_OK[device] = False
        try:
            q, s = _triton_quantizer()(x)
            ref_q, ref_s = _torch_quantize_tokens(x)
            # a scale may differ in the last bit (division by 448 compiled as a reciprocal product)
            same_scale = bool(torch.allclose(s, ref_s, rtol=1e-6, atol=0))
            _TRITON_OK[device] = same_scale and one_step_apart(q, ref_q)
            if not _TRITON_OK[device]:
                _TRITON_WHY[device] = (f"differs from torch's casts (scales equal: {same_scale}, "
                                       f"max scale diff {(s - ref_s).abs().max().item():.3g}, values within one "
                                       f"step: {one_step_apart(q, ref_q)})")
        except Exception as e:  # noqa: BLE001 (any compile or launch failure: use torch's casts)
            _TRITON_OK[device], _TRITON_WHY[device] = False, f"failed: {e!r}"[:300]
    try:
        w, s = quantize_rows(torch.randn(32, 2000, device=device))
        _native_matmul(x, w, s, torch.bfloat16)
        torch.cuda.synchronize(device)
        return True
    except (RuntimeError, NotImplementedError):
        return False


def one_step_apart(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two e4m3 tensors differ by at most one representable step anywhere (a rounding tie)."""
    a, b = a.float(), b.float()
    mag = b.abs().clamp_min(2.0 ** -6)
    step = 2.0 ** (torch.floor(torch.log2(mag)) - 3)  # 3 mantissa bits; 2^-9 below the normal range
    return bool(((a - b).abs() <= step).all())


def native_report(device: torch.device) -> str:
    """How fp8 matmuls run on ``device`` (for logs and the bench)."""
    if not native_supported(device):
        return "upcast (no native fp8 matmul here)"
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if _TRITON_OK.get(device):
        return "native, activations quantised by a Triton kernel"
    return f"native, activations quantised by torch casts (Triton kernel {_TRITON_WHY.get(device, 'unavailable')})"


class _Fp8Matmul(torch.autograd.Function):
    """y = x W^T + b with W = q * scale; backward gives only the input gradient (the weight is frozen).
    Few kernels on purpose: a training step of Flux launches tens of thousands, and the CPU that launches
    them is as much a limit as the GPU."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
                native: bool) -> torch.Tensor:
        ctx.save_for_backward(q, scale)
        if native:
            y = _native_matmul(x.reshape(-1, x.shape[-1]), q, scale, x.dtype).reshape(*x.shape[:-1], -1)
            return y if bias is None else y + bias
        y = F.linear(x, q.to(x.dtype))
        return y * scale if bias is None else torch.addcmul(bias, y, scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        q, scale = ctx.saved_tensors
        return (grad * scale.to(grad.dtype)) @ q.to(grad.dtype), None, None, None, None


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
        self._cast: tuple[torch.Tensor, torch.Tensor | None] | None = None

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

    def _in(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scale and bias in the compute dtype, cast once (not once per call)."""
        if self._cast is None or self._cast[0].dtype != dtype or self._cast[0].device != self.scale.device:
            self._cast = (self.scale.to(dtype), None if self.bias is None else self.bias.to(dtype))
        return self._cast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _autocast_dtype(x)
        native = self.native(x)
        scale, bias = self._in(dtype)
        # the native kernel applies the float32 row scales itself; the upcast path scales the output
        return _Fp8Matmul.apply(x.to(dtype), self.weight, self.scale if native else scale, bias, native)

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
