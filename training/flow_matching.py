"""Rectified-flow objective as Flux was trained: x_t = (1 - t) x0 + t eps, target v = eps - x0, MSE.

Timesteps are sigmoid(N(mean, std)) shifted toward noise by s = e^mu, mu linear in the number of image
tokens (0.5 at 256 tokens, 1.15 at 4096), the same shift FluxPipeline applies at inference.
"""

from __future__ import annotations

import math

import torch


def shift_for(
    tokens: int, base: tuple[int, float] = (256, 0.5), top: tuple[int, float] = (4096, 1.15)
) -> float:
    """s = e^mu for an image of ``tokens`` packed tokens (1024 px Flux: 4096 tokens -> 3.1582)."""
    slope = (top[1] - base[1]) / (top[0] - base[0])
    return math.exp(base[1] + slope * (tokens - base[0]))


def shift(t: torch.Tensor, s: float) -> torch.Tensor:
    return s * t / (1 + (s - 1) * t)


def sample_timesteps(
    n: int, s: float, generator: torch.Generator, mean: float = 0.0, std: float = 1.0
) -> torch.Tensor:
    """``n`` training timesteps in (0, 1), on the CPU."""
    return shift(torch.sigmoid(mean + std * torch.randn(n, generator=generator)), s)


def noisy(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, v target) for clean tokens x0 [B, N, C], noise eps and timesteps t [B]."""
    tt = t.view(-1, *([1] * (x0.dim() - 1)))
    return (1 - tt) * x0 + tt * eps, eps - x0


def loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """MSE over all tokens, or only where ``mask`` [B, N] is 1 (ReCraft leaves its condition cell out)."""
    err = (pred.float() - target.float()) ** 2
    if mask is None:
        return err.mean()
    m = mask.to(err.dtype).unsqueeze(-1)
    return (err * m).sum() / (m.sum() * err.shape[-1]).clamp_min(1)
