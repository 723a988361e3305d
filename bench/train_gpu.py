"""Training-step speed and memory of the asymmetric-LoRA Flux against a bare diffusers + peft LoRA.

Full-size Flux-dev transformer architecture with random bf16 weights (speed does not depend on weight values),
rank 64 on every Linear of the double and single blocks (as the authors), 21 task heads; 1056 px 3x3 and
1024 px 2x2 grids. Both variants run in the same process on the same base weights, so the printed ratio is
like for like. Target: ours / peft <= 1.10 s/step. Then the ReCraft step (one LoRA of the same rank, the
final-frame cell kept clean and out of the loss) on the same setup.

    .venv/bin/python -m bench.train_gpu                     # on an H100/H200 (about 5 minutes)
    .venv/bin/python -m bench.train_gpu --tiny --steps 3    # CPU smoke test of this script

Reference (reference.md section 5, one H200): a bare r16 attention-only loop took 0.78 s/step at 1024 px with
gradient checkpointing, 24.7 GiB.
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch
from diffusers import FluxTransformer2DModel
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from pipeline.taxonomy import Taxonomy
from training import flow_matching as fm
from training.asymmetric_lora import AsymmetricLora, select_targets
from training.denoiser import Denoiser
from training.flux_model import image_ids
from training.recraft import condition_mask

FLUX_DEV = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                axes_dims_rope=(16, 56, 56))
TINY = dict(patch_size=1, in_channels=64, num_layers=1, num_single_layers=2, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=16, guidance_embeds=True,
            axes_dims_rope=(4, 6, 6))


def random_flux(spec: dict, device: torch.device, dtype: torch.dtype) -> FluxTransformer2DModel:
    """The architecture on ``device`` in ``dtype`` with random weights, never materialised in float32."""
    with torch.device("meta"):
        model = FluxTransformer2DModel(**spec)
    g = torch.Generator(device).manual_seed(0)
    for mod in model.modules():
        for name, p in list(mod._parameters.items()):
            if p is not None:
                w = torch.empty(p.shape, device=device, dtype=dtype)
                w.normal_(0, 0.02, generator=g) if p.ndim > 1 else w.fill_(1.0 if "norm" in name else 0.0)
                mod._parameters[name] = nn.Parameter(w, requires_grad=False)
    return model.to(device)


def unwrap(model: nn.Module, names: list[str]) -> None:
    """Put the original Linear layers back (after either LoRA variant)."""
    for name in names:
        parent, _, child = name.rpartition(".")
        mod = model.get_submodule(name)
        base = getattr(mod, "base_layer", None) or getattr(mod, "base", None)
        setattr(model.get_submodule(parent), child, base)
    if hasattr(model, "peft_config"):
        del model.peft_config


def add_peft(model: nn.Module, names: list[str], rank: int) -> list[nn.Parameter]:
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=1, target_modules=names, init_lora_weights=True), model)
    return [p for n, p in model.named_parameters() if "lora_" in n]


def measure(forward, params: list[nn.Parameter], tokens: int, batch: int, text_len: int, spec: dict,
            device: torch.device, steps: int, warmup: int, grid_px: int,
            cond: torch.Tensor | None = None) -> tuple[float, float]:
    """(median s/step, peak GiB) of forward + backward + AdamW on random inputs; ``cond`` [tokens] marks
    ReCraft condition tokens (kept clean in the input, left out of the loss)."""
    opt = torch.optim.AdamW(params, lr=1e-4)
    g = torch.Generator().manual_seed(0)
    side = grid_px // 16
    ids = image_ids(side * 2, side * 2, device)
    x0 = torch.randn(batch, tokens, spec["in_channels"], generator=g).to(device)
    text = torch.randn(batch, text_len, spec["joint_attention_dim"], generator=g).to(device)
    pooled = torch.randn(batch, spec["pooled_projection_dim"], generator=g).to(device)
    cuda = device.type == "cuda"
    dt = torch.bfloat16 if cuda else torch.float32
    text, pooled = text.to(dt), pooled.to(dt)
    times = []
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        t = fm.sample_timesteps(batch, fm.shift_for(tokens), g)
        x_t, v = fm.noisy(x0, torch.randn(x0.shape, generator=g).to(device), t.to(device))
        mask = None
        if cond is not None:
            x_t = torch.where(cond[None, :, None], x0, x_t)
            mask = ~cond[None].expand(batch, -1)
        with torch.autocast("cuda", torch.bfloat16) if cuda else nullcontext():
            pred = forward(x_t.to(dt), t.to(device), text, pooled, ids)
        fm.loss(pred, v, mask).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return statistics.median(times), peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny architecture on the CPU (checks the script only)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--heads", type=int, default=21)
    p.add_argument("--batch", type=int, default=1, help="samples per step; ours uses a different head per sample")
    p.add_argument("--targets", default="all", choices=["all", "attention"])
    p.add_argument("--no-checkpointing", action="store_true")
    a = p.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() and not a.tiny else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(False)  # crashed in Flux's backward on this stack (reference.md 5)
        print(torch.cuda.get_device_name(), f"torch {torch.__version__}")
    spec = TINY if a.tiny else FLUX_DEV
    model = random_flux(spec, device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    if not a.no_checkpointing:
        model.enable_gradient_checkpointing()
    model.train()
    names = select_targets(model, a.targets)
    text_len = 16 if a.tiny else 512
    grids = [("3x3", 1056), ("2x2", 1024)] if not a.tiny else [("3x3", 96), ("2x2", 64)]
    print(f"{len(names)} adapted Linear layers, rank {a.rank}, {a.heads} heads, batch {a.batch}, "
          f"checkpointing {not a.no_checkpointing}")

    def peft_forward(x_t, t, text, pooled, ids):
        g = torch.full((x_t.shape[0],), 1.0, device=x_t.device)
        return model(hidden_states=x_t, encoder_hidden_states=text, pooled_projections=pooled, timestep=t,
                     img_ids=ids, txt_ids=torch.zeros(text.shape[1], 3, device=x_t.device), guidance=g,
                     return_dict=False)[0]

    for label, px in grids:
        tokens = (px // 16) ** 2
        params = add_peft(model, names, a.rank)
        base_s, base_gib = measure(peft_forward, params, tokens, a.batch, text_len, spec, device, a.steps, a.warmup, px)
        unwrap(model, names)
        del params
        lora = AsymmetricLora(model, a.rank, 1.0, a.heads, names)
        den = Denoiser(model, lora)
        heads = [1 + i % a.heads for i in range(a.batch)]
        ours_s, ours_gib = measure(lambda x, t, te, po, ids: den(x, t, te, po, ids, heads), lora.trainable(),
                                   tokens, a.batch, text_len, spec, device, a.steps, a.warmup, px)
        a_params = sum(m.lora_A.numel() for m in lora.modules.values())
        b_params = sum(m.lora_B[0].numel() for m in lora.modules.values())
        unwrap(model, names)
        del lora, den
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"{label} {px}px ({tokens} tokens): peft single LoRA {base_s:.3f} s/step {base_gib:.1f} GiB | "
              f"asymmetric ({a.heads} heads) {ours_s:.3f} s/step {ours_gib:.1f} GiB | "
              f"ratio {ours_s / base_s:.3f} (target <= 1.10) | A {a_params / 1e6:.0f}M, B/head {b_params / 1e6:.0f}M")

        # ReCraft step: one ordinary LoRA of the same rank on the (merged) base, final cell clean and unscored
        layout = Taxonomy.load()["painting" if label == "3x3" else "clay-toys"].layout
        side = px // 16
        cond = condition_mask(layout, "final", side, side).to(device)
        lora = AsymmetricLora(model, a.rank, 1.0, 1, names)
        den = Denoiser(model, lora)
        rc_s, rc_gib = measure(lambda x, t, te, po, ids: den(x, t, te, po, ids, [1] * a.batch), lora.trainable(),
                               tokens, a.batch, text_len, spec, device, a.steps, a.warmup, px, cond)
        unwrap(model, names)
        del lora, den
        print(f"{label} {px}px ReCraft step (final cell {layout.final_cell} clean): {rc_s:.3f} s/step "
              f"{rc_gib:.1f} GiB | ratio to peft {rc_s / base_s:.3f}")


if __name__ == "__main__":
    main()
