"""ReCraft (image -> sequence): an ordinary LoRA trained on Flux with one task's asymmetric LoRA merged in.

Conditioning is in place, as the authors' code does it: the clean latent tokens of the condition cell(s)
replace the noisy ones in the grid at every step and are left out of the loss. The condition cells come from
the layout itself (:func:`condition_steps`), in training and in generation alike, so the final frame is
bottom-right on 3x3 serpentine and bottom-left on the 2x2 U-turn, never a hard-coded corner.
``mode: interpolate`` gives the first and the last cell instead, and the model fills in the steps between.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from PIL import Image

from pipeline.layout import Layout, letterbox, tile
from training import lora_files, run
from training.config import Config, ConfigError
from training.data import resize_grid, to_model_range, to_tensor
from training.flux_model import pack
from training.generate import grid_size, sample, save_sequence

BASE_LORA = "base_lora.safetensors"
WHITE = (255, 255, 255)


def condition_steps(layout: Layout, mode: str) -> list[int]:
    """0-based steps given to the model: the final frame, or the first and the final frame."""
    return [layout.frames - 1] if mode == "final" else [0, layout.frames - 1]


def condition_mask(layout: Layout, mode: str, rows_tok: int, cols_tok: int) -> torch.Tensor:
    """Bool [tokens] of the packed tokens inside the condition cells (cells are whole numbers of tokens)."""
    if rows_tok % layout.rows or cols_tok % layout.cols:
        raise ValueError(
            f"a {rows_tok}x{cols_tok} token grid does not split into {layout.rows}x{layout.cols} cells"
        )
    ch, cw = rows_tok // layout.rows, cols_tok // layout.cols
    mask = torch.zeros(rows_tok, cols_tok, dtype=torch.bool)
    for step in condition_steps(layout, mode):
        r, c = layout.positions[step]
        mask[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw] = True
    return mask.flatten()


def batch_mask(layouts: list[Layout], mode: str, hw: tuple[int, int], token_px: int) -> torch.Tensor:
    """Bool [B, tokens]: each sample's condition tokens, from its own layout."""
    return torch.stack([condition_mask(lay, mode, hw[0] // token_px, hw[1] // token_px) for lay in layouts])


def recraft_info(cfg: Config, run_dir: Path, info: run.RunInfo, is_main: bool) -> run.RunInfo:
    """The ReCraft run's model: the task LoRA of ``recraft.base_lora`` merged into its base, one new LoRA head."""
    rc = cfg.recraft
    src = Path(rc.base_lora)
    taxonomy = info.tasks()
    if rc.task not in taxonomy:
        raise ConfigError(f"recraft.task {rc.task!r} is not a task id")
    if src.is_dir():
        source_info = run.RunInfo.read(src)
        base = source_info.base_source(src)
        if is_main and not (run_dir / BASE_LORA).is_file():
            from training.export import export

            export(src, rc.task, run_dir / BASE_LORA)
    elif src.is_file():
        meta = lora_files.read(src)[1]
        if "base" not in meta:
            raise ConfigError(f"recraft.base_lora {src} does not name its base model")
        base = meta["base"]
        if is_main and not (run_dir / BASE_LORA).is_file():
            shutil.copy2(src, run_dir / BASE_LORA)
    else:
        raise ConfigError(f"recraft.base_lora {src} is neither a run directory nor a LoRA file")
    base = str(Path(base).resolve()) if Path(base).exists() else base
    return info.model_copy(
        update={
            "base": base,
            "heads": 1,
            "merged": [BASE_LORA],
            "recraft_task": rc.task,
            "condition": rc.mode,
        }
    )


def condition_grid(images: list[Image.Image], layout: Layout, mode: str) -> Image.Image:
    """A grid (native layout size) with the given frames letterboxed on white in their cells, white elsewhere."""
    steps = condition_steps(layout, mode)
    if len(images) != len(steps):
        raise ValueError(f"mode {mode!r} needs {len(steps)} image(s), got {len(images)}")
    frames = [Image.new("RGB", (layout.content, layout.content), WHITE) for _ in range(layout.frames)]
    for step, img in zip(steps, images):
        frames[step] = letterbox(img, layout.content)
    return tile(frames, layout)


def generate_from_image(
    source: str | Path,
    image: str | Path,
    out: str | Path,
    prompt: str | None = None,
    seed: int = 0,
    steps: int = 20,
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
    last: str | Path | None = None,
    guidance: float = 1.0,
) -> list[Path]:
    """Grid, frames and GIF of the steps leading to ``image`` (or between ``image`` and ``last``)."""
    info = run.RunInfo.read(Path(source))  # arguments checked before the model loads
    if not info.recraft_task:
        raise ValueError(f"{source} is not a ReCraft run (train one with `model: recraft`)")
    if (info.condition == "interpolate") != (last is not None):
        raise ValueError(
            f"this run was trained with mode {info.condition!r}: "
            f"{'pass --last' if last is None else 'do not pass --last'}"
        )
    task = info.tasks()[info.recraft_task]
    given = [Image.open(p).convert("RGB") for p in ([image, last] if last else [image])]
    flux, lora, _, _ = run.load(source, device, dtype)
    prompt = prompt or task.caption()
    grid = run_recraft(
        flux,
        lora,
        task.layout,
        info.cell,
        info.condition,
        given,
        prompt,
        seed,
        steps,
        guidance,
    )
    return save_sequence(grid, task, prompt, Path(out))


@torch.no_grad()
def run_recraft(
    flux,
    lora,
    layout: Layout,
    cell: int | None,
    mode: str,
    given: list[Image.Image],
    prompt: str,
    seed: int,
    steps: int,
    guidance: float,
    trace: list | None = None,
) -> Image.Image:
    """Denoise with the condition tokens reset to their clean latent before every step; the given images are
    composited back into their cells after decoding. ``trace`` (tests) collects the latents of every step."""
    size = grid_size(layout, cell)
    cond_img = resize_grid(condition_grid(given, layout, mode), layout, size[0] // layout.cols)
    device = flux.transformer.device
    clean = pack(flux.encode_images(to_model_range(to_tensor(cond_img)[None].to(device))))
    token_px = flux.token_px
    mask = condition_mask(layout, mode, size[1] // token_px, size[0] // token_px).to(device)
    noise = torch.randn(clean.shape, generator=torch.Generator("cpu").manual_seed(seed)).to(device)
    latents = torch.where(mask[None, :, None], clean, noise).to(flux.transformer.dtype)

    def paste(pipe, i, t, kw):
        kw["latents"] = torch.where(mask[None, :, None], clean.to(kw["latents"].dtype), kw["latents"])
        return kw

    hook = (
        flux.transformer.register_forward_pre_hook(
            lambda m, args, kwargs: trace.append(kwargs["hidden_states"].clone()), with_kwargs=True
        )
        if trace is not None
        else None
    )
    try:
        lora.use([1])
        grid = sample(
            flux.pipeline(),
            flux,
            prompt,
            size,
            steps,
            guidance,
            seed,
            latents=latents,
            callback_on_step_end=paste,
        )
    finally:
        if hook:
            hook.remove()
    out = grid.copy()
    for step in condition_steps(layout, mode):
        box = layout.cell_box(step, out.size)
        out.paste(cond_img.crop(box), box[:2])
    return out
