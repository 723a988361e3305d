"""Text-to-sequence generation: a grid from FluxPipeline, its frames in step order, and a GIF of the steps.

Accepts a run directory (the asymmetric LoRA with the chosen task head), an exported peft-style LoRA file, which
is loaded the ordinary way (diffusers' ``FluxPipeline.load_lora_weights``), or a kohya / authors' file (the
authors' released checkpoints: ``--head N`` picks the head), read exactly by training/kohya.py.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import FluxPipeline
from PIL import Image

from evaluation.inputs import MANIFEST
from pipeline.io.atomic import write_jsonl
from pipeline.layout import Layout, split
from pipeline.taxonomy import Task, Taxonomy
from training import kohya, lora_files, run
from training.flux_model import Flux, load_flux


def grid_size(layout: Layout, cell: int | None) -> tuple[int, int]:
    """(width, height) of a generated grid: the layout with cells of ``cell`` px (default: its own)."""
    side = cell or layout.cell
    return layout.cols * side, layout.rows * side


@torch.no_grad()
def sample(
    pipe: FluxPipeline,
    flux: Flux,
    prompt: str,
    size: tuple[int, int],
    steps: int,
    guidance: float,
    seed: int,
    output_type: str = "pil",
    **kw,
):
    """One image from the pipeline, text encoded by our encoder (works without tokenizer files)."""
    device = pipe._execution_device
    text, pooled = flux.encode_text([prompt], device)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt_embeds=text.to(flux.transformer.dtype),
        pooled_prompt_embeds=pooled.to(flux.transformer.dtype),
        width=size[0],
        height=size[1],
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type=output_type,
        max_sequence_length=flux.text_length,
        **kw,
    )
    return out.images[0] if output_type == "pil" else out.images


def save_sequence(
    grid: Image.Image, task: Task, prompt: str, out_dir: Path, frame_ms: int = 600
) -> list[Path]:
    """grid.png, frames/step-NN.png in step order, steps.gif, and sequences.jsonl: the row that lets
    `makeanything evaluate NAME=OUT` read the grid in the task's step order; returns the written paths."""
    layout = task.layout
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"--out {out_dir}: is a file; give a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "frames").mkdir(exist_ok=True)
    paths = [out_dir / "grid.png"]
    grid.save(paths[0])
    frames = split(grid, layout)
    for i, frame in enumerate(frames, 1):
        paths.append(out_dir / "frames" / f"step-{i:02d}.png")
        frame.save(paths[-1])
    paths.append(out_dir / "steps.gif")
    frames[0].save(paths[-1], save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    row = {"key": out_dir.resolve().name, "task": task.id, "prompt": prompt, "grid": "grid.png"}
    paths.append(write_jsonl(out_dir / MANIFEST, [row]))
    return paths


def _task(taxonomy: Taxonomy, task_id: str | None, meta_task: str | None) -> Task:
    task_id = task_id or meta_task
    if task_id is None:
        raise ValueError("--task is required (the LoRA file does not name its task)")
    if task_id not in taxonomy:
        raise ValueError(f"unknown task {task_id!r}; known: {', '.join(sorted(taxonomy.tasks))}")
    return taxonomy[task_id]


def _choose(
    taxonomy: Taxonomy,
    task_id: str | None,
    meta_task: str | None,
    head: int | None,
    heads: int,
    default: int | None,
) -> tuple[Task, int]:
    """(task whose layout the grid takes, head to use) from --task / --head, checked against the LoRA's heads.
    ``default``: the head when --head is not given (None: the task's own)."""
    if head is not None and not 1 <= head <= heads:
        raise ValueError(f"--head {head}: this LoRA has heads 1 to {heads}")
    if head is not None and task_id is None:
        try:
            return taxonomy.by_head(head), head
        except KeyError:
            raise ValueError(
                f"--head {head}: no task of the taxonomy has this head; pass --task for its layout"
            ) from None
    task = _task(taxonomy, task_id, meta_task)
    chosen = head if head is not None else default or task.head
    if chosen > heads:
        raise ValueError(f"task {task.id} uses head {chosen} but this LoRA has {heads} heads")
    return task, chosen


def pipeline_for(
    source: Path,
    task_id: str | None,
    base: str | None,
    device: torch.device,
    dtype: torch.dtype,
    head: int | None = None,
) -> tuple[FluxPipeline, Flux, Task, int | None]:
    """(pipeline with the task's LoRA active, its Flux, the task, cell size) for a run directory, a peft-style
    LoRA file, or a kohya / authors' file (``head``: which of its heads; default the task's)."""
    if source.is_dir():  # every argument is checked before the model loads (seconds to minutes)
        info = run.RunInfo.read(source)
        if info.recraft_task:
            raise ValueError(f"{source} is a ReCraft run: generate from it with --image")
        task, chosen = _choose(info.tasks(), task_id, None, head, info.heads, None)
        flux, lora, _, _ = run.load(source, device, dtype)
        lora.use([chosen])
        return flux.pipeline(), flux, task, info.cell
    if not source.is_file():
        raise FileNotFoundError(f"{source} is neither a run directory nor a LoRA file")
    if kohya.is_kohya_file(source):
        meta, heads = kohya.file_meta(source), kohya.head_count(source)
        if head is None and task_id is None and meta.get("task") is None:
            raise ValueError(f"{source}: pass --head N (which of its {heads} heads) or --task")
        taxonomy = Taxonomy.load(meta.get("taxonomy"))
        task, chosen = _choose(taxonomy, task_id, meta.get("task"), head, heads, None if heads > 1 else 1)
        flux = load_flux(_base(source, base, meta), dtype=dtype)
        lora = kohya.lora_from_file(flux.transformer, source)
        lora.use([chosen])
        return flux.pipeline().to(device), flux, task, meta.get("cell")
    if head is not None:
        raise ValueError(
            f"--head is for asymmetric LoRAs (a run directory or an authors' file); {source} has one"
        )
    _, meta = lora_files.read(source)
    task = _task(Taxonomy.load(meta.get("taxonomy")), task_id, meta.get("task"))
    flux = load_flux(_base(source, base, meta), dtype=dtype)
    pipe = flux.pipeline().to(device)
    pipe.load_lora_weights(str(source))
    return pipe, flux, task, meta.get("cell")


def _base(source: Path, base: str | None, meta: dict) -> str:
    if base is None and meta.get("base") is None:
        raise ValueError(f"{source} does not name its base model: pass --base")
    return base or meta["base"]


def generate(
    source: str | Path,
    prompt: str,
    out_dir: str | Path,
    task_id: str | None = None,
    seed: int = 0,
    steps: int = 28,
    guidance: float = 3.5,
    base: str | None = None,
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
    head: int | None = None,
) -> list[Path]:
    pipe, flux, task, cell = pipeline_for(Path(source), task_id, base, device, dtype, head)
    grid = sample(pipe, flux, prompt, grid_size(task.layout, cell), steps, guidance, seed)
    return save_sequence(grid, task, prompt, Path(out_dir))
