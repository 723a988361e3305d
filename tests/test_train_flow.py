"""Flow-matching objective and the text-embedding cache."""

from __future__ import annotations

import math

import pytest
import torch
from training_fixtures import one_thread  # noqa: F401 (autouse)

from training import flow_matching as fm
from training.config import TinyModel
from training.flux_model import build_tiny
from training.text_cache import TextEncoder


def test_shift_matches_flux_schedule():
    assert fm.shift_for(256) == pytest.approx(math.exp(0.5))
    assert fm.shift_for(4096) == pytest.approx(3.1582, abs=1e-4)  # 1024 px
    assert fm.shift(torch.tensor([0.0, 0.5, 1.0]), 3.0).tolist() == pytest.approx([0.0, 0.75, 1.0])


def test_timesteps_are_shifted_sigmoid_normal():
    g = torch.Generator().manual_seed(0)
    plain = fm.sample_timesteps(20000, 1.0, g)
    shifted = fm.sample_timesteps(20000, 3.1582, torch.Generator().manual_seed(0))
    assert 0 < plain.min() and plain.max() < 1
    assert plain.median().item() == pytest.approx(0.5, abs=0.01)
    assert shifted.median().item() == pytest.approx(3.1582 * 0.5 / (1 + 2.1582 * 0.5), abs=0.01)


def test_noisy_sample_and_velocity_target():
    torch.manual_seed(0)
    x0, eps = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    t = torch.tensor([0.0, 0.25])
    x_t, v = fm.noisy(x0, eps, t)
    assert torch.allclose(x_t[0], x0[0]) and torch.allclose(x_t[1], 0.75 * x0[1] + 0.25 * eps[1], atol=1e-6)
    assert torch.allclose(v, eps - x0)
    assert torch.allclose(x_t[1] + 0.75 * v[1], eps[1], atol=1e-6)  # integrating v to t=1 reaches the noise


def test_masked_loss_ignores_masked_tokens():
    pred, target = torch.zeros(1, 4, 2), torch.ones(1, 4, 2)
    target[0, 0] = 100.0
    mask = torch.tensor([[0, 1, 1, 1]])
    assert fm.loss(pred, target, mask).item() == pytest.approx(1.0)
    assert fm.loss(pred, target).item() > 1000


def test_text_cache_by_sample_key(tmp_path):
    flux = build_tiny(TinyModel())
    enc = TextEncoder(flux, torch.device("cpu"), tmp_path)
    text, pooled = enc(["k1", "k2"], ["a cat", "a dog"])
    assert text.shape == (2, TinyModel().text_length, 32)  # full fixed length, never trimmed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k1.safetensors", "k2.safetensors"]
    flux.text_encoder_2 = None  # a cache hit must not need the encoder
    again, _ = enc(["k1", "k2"], ["a cat", "a dog"])
    assert torch.equal(again, text)
    with pytest.raises(TypeError):  # changed caption: recomputed, so the (removed) encoder is needed
        enc(["k1"], ["a bird"])
