"""Asymmetric LoRA: per-sample heads, initialisation, gradients only where used, export format."""

from __future__ import annotations

import torch
from torch import nn
from training_fixtures import one_thread  # noqa: F401 (autouse)

from training.asymmetric_lora import AsymmetricLora, select_targets
from training.config import TinyModel
from training.flux_model import build_tiny


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.transformer_blocks = nn.ModuleList([nn.ModuleDict({"ff": nn.Linear(6, 5)})])

    def forward(self, x):
        return self.transformer_blocks[0]["ff"](x)


def toy_lora(heads: int = 3, freeze_a: bool = False) -> tuple[Toy, AsymmetricLora]:
    torch.manual_seed(0)
    model = Toy()
    lora = AsymmetricLora(model, rank=2, alpha=4.0, heads=heads, targets="all", freeze_a=freeze_a)
    with torch.no_grad():
        for p in lora.modules["transformer_blocks.0.ff"].lora_B:
            p.normal_()
    return model, lora


def test_init_a_kaiming_b_zero_leaves_base_output_unchanged():
    torch.manual_seed(0)
    model = Toy()
    x = torch.randn(2, 4, 6)
    before = model(x)
    lora = AsymmetricLora(model, rank=2, alpha=4.0, heads=3)
    m = lora.modules["transformer_blocks.0.ff"]
    assert all(torch.count_nonzero(b) == 0 for b in m.lora_B)
    bound = 1 / 6**0.5  # kaiming_uniform(a=sqrt(5)) on fan_in 6
    assert m.lora_A.abs().max() <= bound and m.lora_A.std() > bound / 4
    lora.use([1, 3])
    assert torch.allclose(model(x), before)


def test_each_sample_uses_its_own_head():
    model, lora = toy_lora()
    m = lora.modules["transformer_blocks.0.ff"]
    x = torch.randn(3, 4, 6)
    lora.use([1, 3, 2])
    mixed = model(x)
    for i, head in enumerate([1, 3, 2]):
        expected = m.base(x[i]) + lora.scale * (x[i] @ m.lora_A.t()) @ m.lora_B[head - 1].t()
        assert torch.allclose(mixed[i], expected, atol=1e-6)
        lora.use([head])
        assert torch.allclose(model(x[i : i + 1])[0], expected, atol=1e-6)


def test_only_a_and_the_batch_heads_get_gradients_and_adamw_leaves_others():
    model, lora = toy_lora(heads=4)
    m = lora.modules["transformer_blocks.0.ff"]
    opt = torch.optim.AdamW(lora.trainable(), lr=0.1, weight_decay=0.1)
    lora.use([1, 4])
    model(torch.randn(2, 3, 6)).square().mean().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    lora.use([2, 2])  # second step: heads 1 and 4 unused, but have AdamW momentum
    frozen = [b.detach().clone() for b in m.lora_B]
    model(torch.randn(2, 3, 6)).square().mean().backward()
    assert m.lora_A.grad is not None
    assert [b.grad is not None for b in m.lora_B] == [False, True, False, False]
    opt.step()
    assert torch.equal(m.lora_B[0], frozen[0]) and torch.equal(m.lora_B[3], frozen[3])
    assert torch.equal(m.lora_B[2], frozen[2]) and not torch.equal(m.lora_B[1], frozen[1])


def test_freeze_a():
    model, lora = toy_lora(freeze_a=True)
    m = lora.modules["transformer_blocks.0.ff"]
    trainable = {id(p) for p in lora.trainable()}
    assert id(m.lora_A) not in trainable and not m.lora_A.requires_grad
    assert trainable == {id(b) for b in m.lora_B}


def test_head_out_of_range_is_a_clear_error():
    _, lora = toy_lora(heads=3)
    try:
        lora.use([4])
    except ValueError as e:
        assert "4" in str(e) and "1..3" in str(e)
    else:
        raise AssertionError("head 4 of 3 accepted")


def test_target_presets_on_flux():
    tr = build_tiny(TinyModel()).transformer
    every = select_targets(tr, "all")
    attn = select_targets(tr, "attention")
    assert len(every) == 14 + 6  # one double block (14 Linear) + one single block (6)
    assert set(attn) < set(every) and all(".attn." in n for n in attn) and len(attn) == 8 + 3
    assert select_targets(tr, ["to_q"]) == [
        "transformer_blocks.0.attn.to_q",
        "single_transformer_blocks.0.attn.to_q",
    ]


def test_head_lora_is_delta_w():
    model, lora = toy_lora()
    m = lora.modules["transformer_blocks.0.ff"]
    a, b = lora.head_lora(2)["transformer_blocks.0.ff"]
    x = torch.randn(5, 6)
    lora.use([2])
    assert torch.allclose(model(x), m.base(x) + x @ (b @ a).t(), atol=1e-6)
