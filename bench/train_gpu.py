"""Training-step speed and memory of the asymmetric-LoRA Flux against a bare diffusers + peft LoRA.

Full-size Flux-dev transformer architecture with random bf16 weights (speed does not depend on weight values),
rank 64 on every Linear of the double and single blocks (as the authors), 21 task heads; 1056 px 3x3 and
1024 px 2x2 grids. Every variant runs in the same process on the same base weights, so the printed ratios are
like for like (baseline: peft, one LoRA, bf16 base):

- ``ours``: 21 heads resident on the GPU;  ``ours+offload``: heads (and AdamW state) in pinned host memory,
  each step a different head (the worst case: one head in, one out per step, on a side stream);
- ``recraft``: the ReCraft step (one LoRA, final-frame cell clean and out of the loss);
- ``ours+offload+fp8``: the same on a float8 e4m3 base (native fp8 matmuls, and ``upcast``).

No text encoder or VAE is on the GPU (inputs are random tensors): the figures are those of training with
``data.text_cache`` and ``data.latent_cache`` filled. Peak = ``torch.cuda.max_memory_allocated``; the
``--gib-budget`` check adds the allocator's reserve and about 0.5 GiB of CUDA context.

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
from training.fp8 import native_report, native_supported, quantize_
from training.head_offload import HeadOffloader
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
        base = getattr(mod, "base_layer", None)
        base = getattr(mod, "base", None) if base is None else base
        setattr(model.get_submodule(parent), child, base)
    if hasattr(model, "peft_config"):
        del model.peft_config


def add_peft(model: nn.Module, names: list[str], rank: int) -> list[nn.Parameter]:
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=1, target_modules=names, init_lora_weights=True), model)
    return [p for n, p in model.named_parameters() if "lora_" in n]


CONTEXT_GIB = 0.5  # CUDA context and cuBLAS workspace, outside the caching allocator


def measure(forward, params: list[nn.Parameter], tokens: int, batch: int, text_len: int, spec: dict,
            device: torch.device, steps: int, warmup: int, grid_px: int, cond: torch.Tensor | None = None,
            heads_at=lambda i: [1], offload: HeadOffloader | None = None) -> dict:
    """Median s/step and peak memory of forward + backward + AdamW on random inputs. ``cond`` [tokens] marks
    ReCraft condition tokens (kept clean in the input, left out of the loss); ``heads_at(i)`` are the heads of
    step i, brought in (and the next step's prefetched) by ``offload`` if given."""
    opt = torch.optim.AdamW(params, lr=1e-4, foreach=True if device.type == "cuda" else None)
    if offload is not None:
        offload.opt = opt
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
        torch.cuda.empty_cache()  # blocks freed by earlier variants (or by moving heads to the host) not counted
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        heads = heads_at(i)
        if offload is not None:
            offload.require(heads)
            offload.prefetch(heads_at(i + 1))
        t = fm.sample_timesteps(batch, fm.shift_for(tokens), g)
        x_t, v = fm.noisy(x0, torch.randn(x0.shape, generator=g).to(device), t.to(device))
        mask = None
        if cond is not None:
            x_t = torch.where(cond[None, :, None], x0, x_t)
            mask = ~cond[None].expand(batch, -1)
        with torch.autocast("cuda", torch.bfloat16) if cuda else nullcontext():
            pred = forward(x_t.to(dt), t.to(device), text, pooled, ids, heads)
        fm.loss(pred, v, mask).backward()
        if offload is not None:
            offload.before_step()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if offload is not None:
            offload.evict(keep=heads_at(i + 1))
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    if offload is not None:
        offload.sync()
    out = {"s": statistics.median(times), "peak": float("nan"), "reserved": float("nan")}
    if cuda:
        out["peak"] = torch.cuda.max_memory_allocated() / 2**30
        out["reserved"] = torch.cuda.max_memory_reserved() / 2**30
    del opt
    return out


def profile(forward, params, tokens, batch, text_len, spec, device, grid_px, label: str, top: int = 12) -> None:
    """Top CUDA kernels of two steps (after one warm-up), to see where a variant spends its time."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        measure(forward, params, tokens, batch, text_len, spec, device, 2, 1, grid_px)
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA" or _dev_ms(e) > 0]
    total = sum(_dev_ms(e) for e in events) / 3
    print(f"  profile {label}: {total:.0f} ms CUDA time per step, "
          f"{sum(e.count for e in events) // 3} kernel launches per step; top kernels (ms per step):")
    for e in sorted(events, key=lambda e: -_dev_ms(e))[:top]:
        print(f"    {_dev_ms(e) / 3:8.1f}  x{e.count // 3:<6d} {e.key[:90]}")


def _dev_ms(event) -> float:
    return getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0.0)) / 1e3


def fp8_error(model: nn.Module, ref_inputs: dict, ref: torch.Tensor) -> float:
    """Relative L2 error of the transformer's output against the bf16 output ``ref`` on the same inputs."""
    with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
        out = model(**ref_inputs, return_dict=False)[0].float()
    return ((out - ref).norm() / ref.norm()).item()


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
    p.add_argument("--gib-budget", type=float, default=24.0, help="say which configurations fit a GPU this size")
    p.add_argument("--grids", default="3x3,2x2", help="which grids to run (3x3 = 1056 px, 2x2 = 1024 px)")
    p.add_argument("--no-recraft", action="store_true", help="skip the ReCraft step")
    p.add_argument("--no-resident", action="store_true", help="skip the 21 resident heads (needs ~49 GiB)")
    p.add_argument("--no-fp8", action="store_true", help="skip the fp8-base variants")
    p.add_argument("--profile", action="store_true", help="also print the top CUDA kernels of peft and ours (2x2)")
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
    grids = [g for g in ([("3x3", 1056), ("2x2", 1024)] if not a.tiny else [("3x3", 96), ("2x2", 64)])
             if g[0] in a.grids.split(",")]
    print(f"{len(names)} adapted Linear layers, rank {a.rank}, {a.heads} heads, batch {a.batch}, "
          f"checkpointing {not a.no_checkpointing}")
    rows: list[tuple[str, str, dict]] = []
    t_start = time.perf_counter()

    def run(label: str, variant: str, px: int, n_heads: int, offload: bool = False, cond=None, peft: bool = False):
        tokens = (px // 16) ** 2
        if peft:
            params = add_peft(model, names, a.rank)
            fwd = (lambda x, t, te, po, ids, heads: model(
                hidden_states=x, encoder_hidden_states=te, pooled_projections=po, timestep=t, img_ids=ids,
                txt_ids=torch.zeros(te.shape[1], 3, device=x.device), guidance=torch.full((x.shape[0],), 1.0,
                                                                                          device=x.device),
                return_dict=False)[0])
            off = None
        else:
            lora = AsymmetricLora(model, a.rank, 1.0, n_heads, names)
            den = Denoiser(model, lora)
            params = lora.trainable()
            fwd = (lambda x, t, te, po, ids, heads: den(x, t, te, po, ids, heads))
            off = HeadOffloader(lora, torch.optim.AdamW(params), device) if offload else None
        # offloaded: every step other heads than the last (the worst case: heads in and out every step), from a
        # set the warm-up steps have already trained, as in a long run where every head has AdamW state (a
        # head's first step also allocates that state); resident: the first step's heads throughout (as issue
        # 15 measured it: AdamW state for one head only)
        cycle = min(n_heads, max(2 * a.batch, a.warmup * a.batch))
        heads_at = (lambda i: [1 + ((i if offload else 0) * a.batch + j) % cycle for j in range(a.batch)])
        r = measure(fwd, params, tokens, a.batch, text_len, spec, device, a.steps, a.warmup, px, cond, heads_at, off)
        if a.profile and label == "2x2" and not offload and cond is None:
            try:
                profile(fwd, params, tokens, a.batch, text_len, spec, device, px, variant)
            except Exception as e:  # the profile is a diagnosis; never lose the figures for it
                print(f"  profile {variant} failed: {e!r}")
        unwrap(model, names)
        del params, fwd, off
        if device.type == "cuda":
            torch.cuda.empty_cache()
        rows.append((label, variant, r))
        base = next(x for lab, v, x in rows if lab == label and v == "peft")
        print(f"{label} {px}px {variant:<22s} {r['s']:.3f} s/step  peak {r['peak']:.1f} GiB "
              f"(reserved {r['reserved']:.1f})  time x{r['s'] / base['s']:.3f}  peak x{r['peak'] / base['peak']:.2f}"
              f"  [{time.perf_counter() - t_start:.0f} s]", flush=True)

    for label, px in grids:
        run(label, "peft", px, 1, peft=True)
        if not a.no_resident:
            run(label, f"ours {a.heads} heads", px, a.heads)
        run(label, "ours+offload", px, a.heads, offload=True)
        if not a.no_recraft:
            layout = Taxonomy.load()["painting" if label == "3x3" else "clay-toys"].layout
            side = px // 16
            run(label, "recraft", px, 1, cond=condition_mask(layout, "final", side, side).to(device))

    if not a.no_fp8:
        g = torch.Generator().manual_seed(1)
        px = grids[-1][1]
        tokens = (px // 16) ** 2
        ref_inputs = dict(
            hidden_states=torch.randn(1, tokens, spec["in_channels"], generator=g).to(device),
            encoder_hidden_states=torch.randn(1, text_len, spec["joint_attention_dim"], generator=g).to(device),
            pooled_projections=torch.randn(1, spec["pooled_projection_dim"], generator=g).to(device),
            timestep=torch.tensor([0.5], device=device), img_ids=image_ids(px // 8, px // 8, device),
            txt_ids=torch.zeros(text_len, 3, device=device), guidance=torch.tensor([1.0], device=device))
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda"):
            ref = model(**ref_inputs, return_dict=False)[0].float()
        quantize_(model, names, device, "auto")
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"fp8 matmul on this device: {native_report(device)}")
        modes = ["native", "upcast"] if native_supported(device) else ["upcast"]
        for mode in modes:
            for name in names:
                model.get_submodule(name).mode = mode
            if device.type == "cuda":
                print(f"fp8 base ({mode} matmul): output rel. L2 error vs bf16 {fp8_error(model, ref_inputs, ref):.4f}")
            for label, px in grids:
                run(label, f"ours+offload+fp8 {mode}", px, a.heads, offload=True)

    print(f"\nFits a {a.gib_budget:g} GiB GPU (reserved + {CONTEXT_GIB} GiB context, text and latent caches filled):")
    for label, variant, r in rows:
        need = r["reserved"] + CONTEXT_GIB
        print(f"  {label} {variant:<26s} {need:5.1f} GiB  {'fits' if need <= a.gib_budget else 'does not fit'}")


if __name__ == "__main__":
    main()
