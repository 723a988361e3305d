"""An 8-bit frozen base: block Linear weights stored as float8 e4m3 with one float32 scale per output row.

Halves the transformer's resident memory (Flux-dev: 22 GiB -> 11 GiB). Two ways to compute with it:

- ``native`` (CUDA GPUs of compute capability 8.9 or more, i.e. fp8 tensor cores, probed once per device):
  the activation is quantised per token to e4m3 and ``torch._scaled_mm`` multiplies fp8 by fp8 with both row
  scales and the bias applied in the GEMM's epilogue (fast accumulation, bf16 out): two kernels per Linear,
  and no bf16 copy of the weight in the forward (nor in the recomputed forward of gradient checkpointing).
  A CPU build of torch may run ``_scaled_mm`` too (oneDNN); there ``native`` is used only when asked for.
- ``upcast`` (anywhere): the weight is dequantised to the activation's dtype layer by layer, with its row
  scales (one fused Triton kernel on a GPU), then an ordinary Linear with its bias.

The backward (the input gradient the LoRA layers below need) always dequantises the weight the same way, so
gradients are not quantised. Only the fp8 weight is saved for it: no upcast copy outlives its layer.
"""

from __future__ import annotations

from functools import cache

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
    kernel on a GPU where it passed its check (reads the activation twice, writes one byte per element), else
    torch operations."""
    kernel = _kernels()["quantize"] if x2.is_cuda and _kernel_ok(x2.device, "quantize") else None
    return kernel(x2) if kernel is not None else _torch_quantize_tokens(x2)


def _torch_quantize_tokens(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = (
        torch.linalg.vector_norm(x2, float("inf"), dim=1, keepdim=True, dtype=torch.float32) / FP8_MAX
    ).clamp_min(1e-12)
    return (x2.float() / scale).to(FP8), scale


def dequantize(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The weight ``q * scale[:, None]`` in ``dtype``: one fused Triton kernel on a GPU where it passed its check
    (reads one byte, writes one element), else torch operations (rounded once, from float32, either way)."""
    kernel = _kernels()["dequantize"] if q.is_cuda and _kernel_ok(q.device, "dequantize") else None
    return kernel(q, scale, dtype) if kernel is not None else _torch_dequantize(q, scale, dtype)


def _torch_dequantize(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (q.float() * scale[:, None]).to(dtype)


@cache
def _kernels() -> dict[str, object]:
    """The Triton kernels as plain functions ('quantize': x2 -> (q, scale); 'dequantize': (q, scale, dtype) ->
    weight), or an empty dict without Triton."""
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return {}

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

    @triton.jit
    def dequant_rows(q_ptr, s_ptr, w_ptr, K, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        v = tl.load(q_ptr + row * K + cols, mask=cols < K, other=0.0).to(tl.float32)
        tl.store(w_ptr + row * K + cols, (v * tl.load(s_ptr + row)).to(w_ptr.dtype.element_ty), mask=cols < K)

    def quantize(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x2.stride(1) != 1:
            x2 = x2.contiguous()
        m, k = x2.shape
        q = torch.empty(m, k, dtype=FP8, device=x2.device)
        scale = torch.empty(m, 1, dtype=torch.float32, device=x2.device)
        quant_rows[(m,)](x2, q, scale, k, x2.stride(0), BLOCK=1024)
        return q, scale

    def dequantize(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        n, k = q.shape
        w = torch.empty(n, k, dtype=dtype, device=q.device)
        dequant_rows[(n, triton.cdiv(k, 1024))](q, scale, w, k, BLOCK=1024)
        return w

    return {"quantize": quantize, "dequantize": dequantize}


def _cuda_index(device: torch.device) -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device())
        if device.type == "cuda" and device.index is None
        else device
    )


def _kernel_ok(device: torch.device, name: str) -> bool:
    return _check_kernels(_cuda_index(device))[name] is None


@cache
def _check_kernels(device: torch.device) -> dict[str, str | None]:
    """Each Triton kernel against torch's own operations on ``device``, once: kernel -> None where it may be
    used, else why not (no Triton, a compile or launch failure, or a different result)."""
    kernels = _kernels()
    if not kernels:
        return {"quantize": "Triton is not installed", "dequantize": "Triton is not installed"}
    why: dict[str, str | None] = {}
    x = (
        torch.randn(64, 2000, device=device, dtype=torch.bfloat16)
        * torch.logspace(-3, 3, 64, device=device)[:, None]
    )
    try:
        q, s = kernels["quantize"](x)
        ref_q, ref_s = _torch_quantize_tokens(x)
        # a scale may differ in the last bit (division by 448 compiled as a reciprocal product)
        same_scale = bool(torch.allclose(s, ref_s, rtol=1e-6, atol=0))
        why["quantize"] = (
            None
            if same_scale and one_step_apart(q, ref_q)
            else (
                f"differs from torch's casts (scales equal: {same_scale}, max scale diff "
                f"{(s - ref_s).abs().max().item():.3g}, values within one step: {one_step_apart(q, ref_q)})"
            )
        )
    except Exception as e:  # noqa: BLE001 (any compile or launch failure: use torch's casts)
        why["quantize"] = f"failed: {e!r}"[:300]
    try:
        q, s = quantize_rows(
            torch.randn(48, 2000, device=device) * torch.logspace(-3, 3, 48, device=device)[:, None]
        )
        w, ref = kernels["dequantize"](q, s, torch.bfloat16), _torch_dequantize(q, s, torch.bfloat16)
        why["dequantize"] = (
            None
            if one_step_apart(w, ref)
            else f"differs from torch's casts (max diff {(w.float() - ref.float()).abs().max().item():.3g})"
        )
    except Exception as e:  # noqa: BLE001
        why["dequantize"] = f"failed: {e!r}"[:300]
    return why


def _native_matmul(
    x2: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, out_dtype: torch.dtype
) -> torch.Tensor:
    """x2 [M, in] (any float) times the e4m3 weight q [out, in] plus ``bias``: fp8 x fp8 with per-token and
    per-row scales. ``q.t()`` is column-major as ``_scaled_mm`` wants its second operand; the bias is fused
    into the GEMM where the kernels take it (a bf16 or fp16 output)."""
    xq, sx = quantize_tokens(x2)
    fused = bias is not None and out_dtype in (torch.bfloat16, torch.float16)
    y = torch._scaled_mm(
        xq,
        q.t(),
        scale_a=sx,
        scale_b=scale[None, :],
        bias=bias.to(out_dtype) if fused else None,
        out_dtype=out_dtype,
        use_fast_accum=True,
    )
    return y if bias is None or fused else y + bias


def native_supported(device: torch.device) -> bool:
    """Whether row-wise ``torch._scaled_mm`` with a fused bias runs on ``device``: on CUDA it needs compute
    capability 8.9 or more (fp8 tensor cores); a CPU build may have it. Probed once per device."""
    device = _cuda_index(device)
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
        return False
    return _probe(device)


@cache
def _probe(device: torch.device) -> bool:
    """Tries a small row-wise product with a bias (and odd token count) on ``device``."""
    try:
        w, s = quantize_rows(torch.randn(32, 2000, device=device))
        x = torch.randn(50, 2000, device=device, dtype=torch.bfloat16)
        _native_matmul(x, w, s, torch.zeros(32, device=device, dtype=torch.bfloat16), torch.bfloat16)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return True
    except (RuntimeError, NotImplementedError, TypeError):
        return False


def one_step_apart(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors of one float dtype differ by at most one representable step anywhere (a rounding
    tie, or rounding once against twice)."""
    info = torch.finfo(b.dtype)
    a, b = a.float(), b.float()
    step = info.eps * 2.0 ** torch.floor(
        torch.log2(b.abs().clamp_min(info.tiny))
    )  # below tiny: the subnormal step
    return bool(((a - b).abs() <= step).all())


def native_report(device: torch.device) -> str:
    """How fp8 matmuls run on ``device`` under ``auto`` (for logs and the bench)."""
    device = _cuda_index(device)
    if device.type != "cuda":
        return (
            f"upcast (auto multiplies in fp8 on CUDA only; 'native' "
            f"{'runs' if native_supported(device) else 'does not run'} on this {device.type})"
        )
    how = {
        name: "a Triton kernel" if why is None else f"torch operations ({why})"
        for name, why in _check_kernels(device).items()
    }
    upcast = f"weights dequantised by {how['dequantize']}"
    if not native_supported(device):
        return f"upcast (no native fp8 matmul, compute capability {torch.cuda.get_device_capability(device)}); {upcast}"
    return f"native, activations quantised by {how['quantize']}; backward (and upcast mode): {upcast}"


class _Fp8Matmul(torch.autograd.Function):
    """y = x W^T + b with W = q * scale; backward gives only the input gradient (the weight is frozen).
    Few kernels on purpose: a training step of Flux launches tens of thousands, and the CPU that launches
    them is as much a limit as the GPU."""

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, native: bool
    ) -> torch.Tensor:
        ctx.save_for_backward(q, scale)
        x2 = x.reshape(-1, x.shape[-1])
        y = (
            _native_matmul(x2, q, scale, bias, x.dtype)
            if native
            else F.linear(x2, dequantize(q, scale, x.dtype), bias)
        )
        return y.reshape(*x.shape[:-1], -1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        q, scale = ctx.saved_tensors
        return grad @ dequantize(q, scale, grad.dtype), None, None, None, None


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
        self._bias: torch.Tensor | None = None  # the bias in the compute dtype, cast once (not once per call)
        self._native: dict[tuple[torch.device, str], bool] = {}  # native() per device and mode, decided once

    def native(self, x: torch.Tensor) -> bool:
        """Whether this call multiplies in fp8: ``auto`` on a CUDA device that has it, ``native`` wherever
        ``_scaled_mm`` runs (a clear error where not); both need in and out features in multiples of 16."""
        key = (x.device, self.mode)
        if key not in self._native:
            if self.mode == "upcast" or (self.mode == "auto" and not x.is_cuda):
                self._native[key] = False
            else:
                ok = self.in_features % 16 == 0 and self.out_features % 16 == 0 and native_supported(x.device)
                if self.mode == "native" and not ok:
                    raise RuntimeError(
                        f"model.fp8_matmul: native fp8 matmul is not available on {x.device} for "
                        f"a {self.in_features}->{self.out_features} layer; use 'auto' or 'upcast'"
                    )
                self._native[key] = ok
        return self._native[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _autocast_dtype(x)
        bias = self.bias
        if bias is not None and bias.dtype != dtype:
            if self._bias is None or self._bias.dtype != dtype or self._bias.device != bias.device:
                self._bias = bias.to(dtype)
            bias = self._bias
        return _Fp8Matmul.apply(x.to(dtype), self.weight, self.scale, bias, self.native(x))

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, fp8 e4m3 per-row, {self.mode}"
        )


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
    if device.type == "cuda":  # probe the kernels now, not inside the first forward
        _check_kernels(_cuda_index(device))
        if mode != "upcast":
            native_supported(device)
    return before
