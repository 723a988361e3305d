"""Training-step speed and memory of the asymmetric-LoRA Flux against a bare diffusers + peft LoRA: every
figure issue 15 asks for, in one run of about 5 minutes on one H100/H200.

Full-size Flux-dev transformer architecture with random bf16 weights (speed does not depend on weight values),
rank 64 on every Linear of the double and single blocks (as the authors), 21 task heads; 1056 px 3x3 and
1024 px 2x2 grids. Every variant runs in the same process on the same base weights, so the printed ratios are
like for like. Variants per grid:

- ``peft``: diffusers + peft, one LoRA, bf16 base; its LoRA weights and AdamW state are bf16, as in diffusers'
  own Flux LoRA script under bf16 mixed precision (the baseline of every "x peft" ratio);
- ``peft f32 LoRA``: the same with float32 LoRA weights and AdamW state, as ours keeps them (the like-for-like
  memory reference: the difference to ``peft`` is precision, not heads);
- ``ours 21 heads``: 21 heads resident on the GPU;  ``ours+offload``: heads (and AdamW state) in pinned host
  memory, each step a different head (the worst case: one head in, one out per step, on side streams);
  ``ours+offload, drained`` (last grid only): the same, waiting for every copy after each step as this bench
  did before (the difference is the write-back the training loop does not wait for);
- ``recraft``: the ReCraft step (one LoRA, final-frame cell clean and out of the loss);
- ``ours+offload+fp8 native|upcast``: offloaded heads on a float8 e4m3 base (fp8 x fp8 ``_scaled_mm``, and the
  weight dequantised per layer), with the fp8 model's output error against bf16.

Timing follows the training loop: per step the main stream is synchronised once (``loss.item()``), not the
side streams, so head copies overlap the next step as they do in training; s/step is the wall time of the
timed steps (ended by a device-wide synchronisation, so no copy is left out) over their number.
No text encoder or VAE is on the GPU (inputs are random tensors): the figures are those of training with
``data.text_cache`` and ``data.latent_cache`` filled; what the caches keep off the GPU is printed from the
encoders' real configurations. Peak = ``torch.cuda.max_memory_allocated``; the ``--gib-budget`` check adds the
allocator's reserve and about 0.5 GiB of CUDA context. Before the variants, offloading is checked against
resident heads on a tiny model on the same GPU (the side-stream ordering only exists there).

    .venv/bin/python -m bench.train_gpu                     # on an H100/H200 (about 5 minutes)
    .venv/bin/python -m bench.train_gpu --tiny --steps 2    # CPU smoke test of this script

Reference (measured by this project on one H200, random weights): a bare r16 attention-only loop took
0.78 s/step at 1024 px with gradient checkpointing, 24.7 GiB.
"""

from __future__ import annotations

import argparse
import gc
import time
from contextlib import nullcontext

import torch
from diffusers import AutoencoderKL, FluxTransformer2DModel
from peft import LoraConfig, inject_adapter_in_model
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

from pipeline.taxonomy import Taxonomy
from training import flow_matching as fm
from training.asymmetric_lora import AsymmetricLora, select_targets
from training.denoiser import Denoiser
from training.flux_model import image_ids
from training.fp8 import native_report, native_supported, quantize_
from training.head_offload import HeadOffloader
from training.recraft import condition_mask

FLUX_DEV = dict(
    patch_size=1,
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,
    guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)
TINY = dict(
    patch_size=1,
    in_channels=64,
    num_layers=1,
    num_single_layers=2,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=32,
    pooled_projection_dim=16,
    guidance_embeds=True,
    axes_dims_rope=(4, 6, 6),
)
CONTEXT_GIB = 0.5  # CUDA context and cuBLAS workspace, outside the caching allocator


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


def encoder_gib() -> dict[str, float]:
    """GiB of bf16 weights the text and latent caches keep off the GPU: Flux-dev's T5-XXL encoder, CLIP-L text
    model and VAE, built on the meta device from their published configurations (nothing is downloaded)."""
    with torch.device("meta"):
        models = {
            "T5-XXL encoder": T5EncoderModel(
                T5Config(
                    d_model=4096,
                    d_ff=10240,
                    d_kv=64,
                    num_heads=64,
                    num_layers=24,
                    vocab_size=32128,
                    feed_forward_proj="gated-gelu",
                )
            ),
            "CLIP-L text": CLIPTextModel(
                CLIPTextConfig(
                    hidden_size=768,
                    intermediate_size=3072,
                    num_hidden_layers=12,
                    num_attention_heads=12,
                    projection_dim=768,
                    vocab_size=49408,
                )
            ),
            "VAE": AutoencoderKL(
                in_channels=3,
                out_channels=3,
                latent_channels=16,
                block_out_channels=(128, 256, 512, 512),
                layers_per_block=2,
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                use_quant_conv=False,
                use_post_quant_conv=False,
            ),
        }
    return {name: sum(p.numel() for p in m.parameters()) * 2 / 2**30 for name, m in models.items()}


def unwrap(model: nn.Module, names: list[str]) -> None:
    """Put the original Linear layers back (after either LoRA variant)."""
    for name in names:
        parent, _, child = name.rpartition(".")
        mod = model.get_submodule(name)
        base = getattr(mod, "base_layer", None)
        base = getattr(mod, "base", None) if base is None else base
        if base is not None:  # None: not wrapped (a variant that failed before wrapping it)
            setattr(model.get_submodule(parent), child, base)
    if hasattr(model, "peft_config"):
        del model.peft_config


def add_peft(model: nn.Module, names: list[str], rank: int, float32: bool) -> list[nn.Parameter]:
    """One peft LoRA; its weights take the base's dtype unless ``float32`` (diffusers' cast_training_params)."""
    inject_adapter_in_model(
        LoraConfig(r=rank, lora_alpha=1, target_modules=names, init_lora_weights=True), model
    )
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    if float32:
        for p in params:
            p.data = p.data.float()
    return params


def measure(
    forward,
    params: list[nn.Parameter],
    tokens: int,
    batch: int,
    text_len: int,
    spec: dict,
    device: torch.device,
    steps: int,
    warmup: int,
    grid_px: int,
    cond: torch.Tensor | None = None,
    heads_at=lambda i: [1],
    offload: HeadOffloader | None = None,
    profile: str = "",
    drain_each_step: bool = False,
) -> dict:
    """s/step and peak memory of forward + backward + AdamW on random inputs, synchronised like the training
    loop (or, with ``drain_each_step``, waiting for every stream after each step, as this bench did before).
    ``cond`` [tokens] marks ReCraft condition tokens (kept clean in the input, left out of the loss);
    ``heads_at(i)`` are the heads of step i, brought in (and the next step's prefetched) by ``offload``.
    With ``profile`` (a label), two more steps after the timed ones run under torch.profiler (summarised)."""
    cuda = device.type == "cuda"
    opt = torch.optim.AdamW(params, lr=1e-4, foreach=True if cuda else None)
    if offload is not None:
        offload.opt = opt
    g = torch.Generator().manual_seed(0)
    side = grid_px // 16
    ids = image_ids(side * 2, side * 2, device)
    x0 = torch.randn(batch, tokens, spec["in_channels"], generator=g).to(device)
    dt = torch.bfloat16 if cuda else torch.float32
    text = torch.randn(batch, text_len, spec["joint_attention_dim"], generator=g).to(device, dt)
    pooled = torch.randn(batch, spec["pooled_projection_dim"], generator=g).to(device, dt)
    losses = []

    def step(i: int) -> None:
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
        loss = fm.loss(pred, v, mask)
        loss.backward()
        losses.append(loss.item())  # the loop's one synchronisation per step (main stream only)
        if offload is not None:
            offload.before_step()
        opt.step()  # noqa: F821 - bound before step() runs, deleted after the last
        opt.zero_grad(set_to_none=True)  # noqa: F821
        if offload is not None:
            offload.evict(keep=heads_at(i + 1))
        if drain_each_step:
            drain()

    def drain() -> None:
        if offload is not None:
            offload.sync()
        if cuda:
            torch.cuda.synchronize()  # every copy still in flight counts

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # blocks freed by earlier variants (or by moving heads to the host) not counted
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup):
        step(i)
    drain()
    t0 = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    drain()
    out = {
        "s": (time.perf_counter() - t0) / steps,
        "peak": float("nan"),
        "reserved": float("nan"),
        "losses": losses,
    }
    if cuda:
        out["peak"] = torch.cuda.max_memory_allocated() / 2**30
        out["reserved"] = torch.cuda.max_memory_reserved() / 2**30
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(
            activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        ) as prof:
            for i in range(warmup + steps, warmup + steps + 2):
                step(i)
            drain()
        summarize(prof, profile, cuda, 2)
    del opt
    return out


PROFILED = {"peft", "ours+offload", "ours+offload+fp8 native", "ours+offload+fp8 upcast"}
SYNCS = (
    "cudaStreamSynchronize",
    "cudaDeviceSynchronize",
    "cudaEventSynchronize",
    "aten::_local_scalar_dense",
)


def summarize(prof, label: str, cuda: bool, n: int, top: int = 10) -> None:
    """Per step: operator calls, synchronisations and (on a GPU) kernel time and launches; then the top entries
    by device time (GPU) or self CPU time (CPU)."""
    events = prof.key_averages()
    ops = sum(e.count for e in events if e.key.startswith("aten::")) // n
    syncs = {e.key: e.count // n for e in events if e.key in SYNCS and e.count}
    line = f"  profile {label}: {ops} aten ops/step, synchronisations/step {syncs or 'none'}"
    kernels = [e for e in events if _dev_ms(e) > 0 and not e.key.startswith(("aten::", "cuda"))]
    if cuda:
        line += (
            f", {sum(_dev_ms(e) for e in kernels) / n:.0f} ms GPU time in "
            f"{sum(e.count for e in kernels) // n} kernels/copies per step"
        )
    print(line)
    key = _dev_ms if cuda else (lambda e: e.self_cpu_time_total / 1e3)
    for e in sorted(kernels if cuda else list(events), key=lambda e: -key(e))[:top]:
        print(f"    {key(e) / n:8.2f} ms  x{e.count // n:<6d} {e.key[:90]}")


def _dev_ms(event) -> float:
    return getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0.0)) / 1e3


def offload_check(device: torch.device, steps: int = 6) -> float:
    """Relative L2 difference of every head after ``steps`` steps with heads offloaded against resident heads,
    on a tiny model on ``device`` (same inputs, heads changing every step). On a GPU bf16 autocast and atomic
    adds in the attention backward make it small but non-zero; a copy read before it landed gives O(1)."""
    model = random_flux(TINY, device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    model.train()
    names = select_targets(model, "all")
    heads = []
    for offload in (False, True):
        torch.manual_seed(0)  # the same A initialisation
        lora = AsymmetricLora(model, 8, 1.0, 4, names)
        den = Denoiser(model, lora)
        off = HeadOffloader(lora, torch.optim.AdamW(lora.trainable()), device) if offload else None
        measure(
            lambda x, t, te, po, ids, h: den(x, t, te, po, ids, h),
            lora.trainable(),
            64,
            1,
            16,
            TINY,
            device,
            steps,
            0,
            128,
            heads_at=lambda i: [1 + i % 3],
            offload=off,
        )
        heads.append(torch.cat([p.detach().float().flatten().cpu() for p in lora.trainable()]))
        unwrap(model, names)
    return ((heads[1] - heads[0]).norm() / heads[0].norm()).item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--tiny", action="store_true", help="tiny architecture on the CPU (checks the script only)"
    )
    p.add_argument("--steps", type=int, default=8, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant before them")
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--heads", type=int, default=21)
    p.add_argument(
        "--batch", type=int, default=1, help="samples per step; ours uses a different head per sample"
    )
    p.add_argument("--targets", default="all", choices=["all", "attention"])
    p.add_argument("--no-checkpointing", action="store_true")
    p.add_argument(
        "--gib-budget", type=float, default=24.0, help="say which configurations fit a GPU this size"
    )
    p.add_argument("--grids", default="3x3,2x2", help="which grids to run (3x3 = 1056 px, 2x2 = 1024 px)")
    p.add_argument("--no-recraft", action="store_true", help="skip the ReCraft step")
    p.add_argument("--no-resident", action="store_true", help="skip the 21 resident heads (needs ~49 GiB)")
    p.add_argument("--no-fp8", action="store_true", help="skip the fp8-base variants")
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile peft, ours+offload and the fp8 variants (2x2): ops, syncs, top kernels",
    )
    a = p.parse_args()

    if not a.tiny and not torch.cuda.is_available():
        p.error("the full-size benchmark needs a CUDA GPU (30-50 GiB); --tiny runs this script on the CPU")
    device = torch.device("cpu" if a.tiny else "cuda")
    t_start = time.perf_counter()
    if device.type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(
            False
        )  # crashed in Flux's backward on this stack (seen on an H200 with torch 2.11 / cu130)
        print(torch.cuda.get_device_name(), f"torch {torch.__version__}")
    try:
        diff = offload_check(device)
        print(
            f"offload check (tiny model on {device.type}, 6 steps, heads changing every step): heads offloaded "
            f"vs resident differ by {diff:.2e} relative L2 ({'ok' if diff < 0.05 else 'WRONG: above 0.05'})"
        )
    except Exception as e:  # noqa: BLE001 (report it, measure the rest)
        print(f"offload check FAILED: {e!r}"[:500])
    spec = TINY if a.tiny else FLUX_DEV
    model = random_flux(spec, device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    if not a.no_checkpointing:
        model.enable_gradient_checkpointing()
    model.train()
    names = select_targets(model, a.targets)
    text_len = 16 if a.tiny else 512
    grids = [
        g
        for g in ([("3x3", 1056), ("2x2", 1024)] if not a.tiny else [("3x3", 96), ("2x2", 64)])
        if g[0] in a.grids.split(",")
    ]
    print(
        f"{len(names)} adapted Linear layers, rank {a.rank}, {a.heads} heads, batch {a.batch}, "
        f"checkpointing {not a.no_checkpointing}, {a.warmup} + {a.steps} steps per variant"
    )
    rows: list[tuple[str, str, dict]] = []

    def run(label: str, variant: str, px: int, n_heads: int, **kw) -> None:
        """One variant; a failure (e.g. out of memory) is printed and the run goes on with the others."""
        try:
            r = variant_figures(label, variant, px, n_heads, **kw)
        except Exception as e:  # noqa: BLE001 (one GPU run must bring back every figure it can)
            print(f"{label} {px}px {variant:<26s} FAILED: {e!r}"[:500], flush=True)
        else:
            rows.append((label, variant, r))
            base = next((x for lab, v, x in rows if lab == label and v == "peft"), r)
            print(
                f"{label} {px}px {variant:<26s} {r['s']:.3f} s/step  peak {r['peak']:.1f} GiB "
                f"(reserved {r['reserved']:.1f})  time x{r['s'] / base['s']:.3f}  peak x{r['peak'] / base['peak']:.2f}"
                f"  [{time.perf_counter() - t_start:.0f} s]",
                flush=True,
            )
        finally:
            unwrap(model, names)
            gc.collect()  # the offloader's pinned buffers go back to the host allocator's cache for the next variant
            if device.type == "cuda":
                torch.cuda.empty_cache()

    def variant_figures(
        label: str,
        variant: str,
        px: int,
        n_heads: int,
        offload: bool = False,
        cond=None,
        peft: str = "",
        drain_each_step: bool = False,
    ) -> dict:
        tokens = (px // 16) ** 2
        if peft:
            params = add_peft(model, names, a.rank, float32=peft == "f32")
            fwd = lambda x, t, te, po, ids, heads: model(
                hidden_states=x,
                encoder_hidden_states=te,
                pooled_projections=po,
                timestep=t,
                img_ids=ids,
                txt_ids=torch.zeros(te.shape[1], 3, device=x.device),
                guidance=torch.full((x.shape[0],), 1.0, device=x.device),
                return_dict=False,
            )[0]
            off = None
        else:
            lora = AsymmetricLora(model, a.rank, 1.0, n_heads, names)
            den = Denoiser(model, lora)
            params = lora.trainable()
            fwd = lambda x, t, te, po, ids, heads: den(x, t, te, po, ids, heads)
            off = HeadOffloader(lora, torch.optim.AdamW(params), device) if offload else None
        # offloaded: every step other heads than the last (the worst case: heads in and out every step), from a
        # set the warm-up steps have already trained, as in a long run where every head has AdamW state (a
        # head's first step also allocates that state); resident: the first step's heads throughout (as issue
        # 15 measured it: AdamW state for one head only)
        cycle = min(n_heads, max(2 * a.batch, a.warmup * a.batch))
        heads_at = lambda i: [1 + ((i if offload else 0) * a.batch + j) % cycle for j in range(a.batch)]
        profiled = variant if a.profile and label == grids[-1][0] and variant in PROFILED else ""
        return measure(
            fwd,
            params,
            tokens,
            a.batch,
            text_len,
            spec,
            device,
            a.steps,
            a.warmup,
            px,
            cond,
            heads_at,
            off,
            profiled,
            drain_each_step,
        )

    for label, px in grids:
        run(label, "peft", px, 1, peft="bf16")
        run(label, "peft f32 LoRA", px, 1, peft="f32")
        if not a.no_resident:
            run(label, f"ours {a.heads} heads", px, a.heads)
        run(label, "ours+offload", px, a.heads, offload=True)
        if label == grids[-1][0]:  # the previous way of timing it: the write-back inside every step
            run(label, "ours+offload, drained", px, a.heads, offload=True, drain_each_step=True)
        if not a.no_recraft:
            layout = Taxonomy.load()["painting" if label == "3x3" else "clay-toys"].layout
            side = px // 16
            run(label, "recraft", px, 1, cond=condition_mask(layout, "final", side, side).to(device))

    errors: dict[str, float] = {}
    if not a.no_fp8:
        g = torch.Generator().manual_seed(1)
        px = grids[-1][1]
        tokens = (px // 16) ** 2
        ref_inputs = dict(
            hidden_states=torch.randn(1, tokens, spec["in_channels"], generator=g).to(device),
            encoder_hidden_states=torch.randn(1, text_len, spec["joint_attention_dim"], generator=g).to(
                device
            ),
            pooled_projections=torch.randn(1, spec["pooled_projection_dim"], generator=g).to(device),
            timestep=torch.tensor([0.5], device=device),
            img_ids=image_ids(px // 8, px // 8, device),
            txt_ids=torch.zeros(text_len, 3, device=device),
            guidance=torch.tensor([1.0], device=device),
        )
        autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else nullcontext()
        with torch.no_grad(), autocast:
            ref = model(**ref_inputs, return_dict=False)[0].float()
        quantize_(model, names, device, "auto")
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"fp8 matmul on this device under 'auto': {native_report(device)}")
        modes = ["native", "upcast"] if native_supported(device) else ["upcast"]
        for mode in modes:
            for name in names:
                model.get_submodule(name).mode = mode
            with torch.no_grad(), autocast:
                out = model(**ref_inputs, return_dict=False)[0].float()
            errors[mode] = ((out - ref).norm() / ref.norm()).item()
            print(f"fp8 base ({mode} matmul): output rel. L2 error vs bf16 {errors[mode]:.2e}")
            for label, px in grids:
                run(label, f"ours+offload+fp8 {mode}", px, a.heads, offload=True)

    enc = encoder_gib()
    report(rows, errors, enc, a.gib_budget)
    print(f"\nbench took {time.perf_counter() - t_start:.0f} s")


def report(
    rows: list[tuple[str, str, dict]], errors: dict[str, float], enc: dict[str, float], budget: float
) -> None:
    """The summary table (markdown), what the caches keep off the GPU, and the fit check."""
    print("\n| grid | variant | s/step | x peft | x peft f32 | peak GiB | x peft | x peft f32 | needs GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    nan = {"s": float("nan"), "peak": float("nan")}
    for label, variant, r in rows:
        base = next((x for lab, v, x in rows if lab == label and v == "peft"), nan)
        f32 = next((x for lab, v, x in rows if lab == label and v == "peft f32 LoRA"), nan)
        print(
            f"| {label} | {variant} | {r['s']:.3f} | {r['s'] / base['s']:.3f} | {r['s'] / f32['s']:.3f} | "
            f"{r['peak']:.1f} | {r['peak'] / base['peak']:.2f} | {r['peak'] / f32['peak']:.2f} | "
            f"{r['reserved'] + CONTEXT_GIB:.1f} |"
        )
    for mode, err in errors.items():
        print(f"fp8 {mode}: output rel. L2 error vs bf16 {err:.2e}")
    enc_total = sum(enc.values())
    print(
        f"\nThe text and latent caches keep off the GPU {enc_total:.1f} GiB of bf16 weights ("
        + ", ".join(f"{k} {v:.2f}" for k, v in enc.items())
        + "), plus their activations while encoding."
    )
    print(
        f"Fits a {budget:g} GiB GPU (reserved + {CONTEXT_GIB} GiB context), with both caches filled / without "
        f"(+ encoder weights only, a lower bound):"
    )
    for label, variant, r in rows:
        need = r["reserved"] + CONTEXT_GIB
        print(
            f"  {label} {variant:<26s} {need:5.1f} GiB {'fits' if need <= budget else 'does not fit':<13s} / "
            f"{need + enc_total:5.1f} GiB {'fits' if need + enc_total <= budget else 'does not fit'}"
        )


if __name__ == "__main__":
    main()
