"""`export-lora`: one task's A + B_k as an ordinary LoRA file (diffusers or kohya keys), every head in the
authors' asymmetric layout, or the base with one task's LoRA merged in."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors import safe_open

from training import kohya, lora_files, run
from training.flux_model import TINY_MARKER


class UntrainedHead(ValueError):
    """The task's head in this checkpoint is still all zeros: the run never trained the task."""


def trained(folder: Path, head: int) -> bool:
    """Whether any B matrix of ``head`` in the checkpoint ``folder`` moved from its zero init. Every B_k starts at
    zero and only a step with a sample of task k changes it, so an all-zero head is a task the run never saw
    (its export would change nothing). Reads only that head's tensors, without building the model."""
    suffix = f".lora_B.{head}"
    with safe_open(str(folder / "lora.safetensors"), "pt") as f:
        return any(f.get_tensor(k).any() for k in f.keys() if k.endswith(suffix))


def check(
    run_dir: Path, task_id: str | None, fmt: str, merge: bool, step: int | None, force: bool = False
) -> tuple[int, int | None]:
    """(checkpoint step, head or None for every head): every argument checked against run.json and the
    checkpoints before the model is loaded (seconds to minutes), so a mistake is reported at once."""
    info = run.RunInfo.read(run_dir)
    step, folder = run.checkpoint_at(run_dir, step)
    if fmt == "authors":
        if merge:
            raise ValueError("--merge writes one task's model: use --format diffusers or kohya")
        return step, None
    if task_id is None:
        raise ValueError(f"--task is required for --format {fmt}")
    taxonomy = info.tasks()
    if task_id not in taxonomy:
        raise ValueError(f"unknown task {task_id!r}; known: {', '.join(sorted(taxonomy.tasks))}")
    if info.recraft_task and task_id != info.recraft_task:
        raise ValueError(f"{run_dir} is a ReCraft run for task {info.recraft_task!r}, not {task_id!r}")
    head = 1 if info.recraft_task else taxonomy[task_id].head
    if head > info.heads:
        raise ValueError(f"task {task_id} uses head {head} but the run trained {info.heads} heads")
    if not force and not trained(folder, head):
        raise UntrainedHead(
            f"{run_dir} never trained task {task_id!r} (head {head} is still zero at step {step}): its LoRA "
            "would change nothing. Pass --force to write it anyway"
        )
    return step, head


def export(
    run_dir: str | Path,
    task_id: str | None,
    out: str | Path,
    merge: bool = False,
    step: int | None = None,
    dtype: torch.dtype = torch.float32,
    fmt: str = "diffusers",
    force: bool = False,
) -> Path:
    """Write ``out``: one task's LoRA (``diffusers`` or ``kohya`` format), every head in the authors' layout
    (``authors``), or with ``merge`` a diffusers folder of the base with the task's LoRA merged in.
    ``force``: write a task the run never trained (UntrainedHead otherwise)."""
    run_dir, out = Path(run_dir), Path(out)
    step, head = check(run_dir, task_id, fmt, merge, step, force)
    if merge and out.exists():
        raise FileExistsError(f"{out} already exists: remove it or choose another --out")
    flux, lora, info, step = run.load(run_dir, step=step, base_dtype="bf16")  # merge into full precision
    meta = {
        "base": str(Path(info.base_source(run_dir)).resolve())
        if (run_dir / info.base).exists()
        else info.base,
        "cell": info.cell,
        "taxonomy": info.taxonomy,
        "rank": info.rank,
        "step": step,
        "run": str(run_dir.resolve()),
        "merged": info.merged,
    }
    if head is None:
        return kohya.write(lora, out, "authors", meta=meta, dtype=dtype)
    meta.update(task=task_id, head=head)
    if info.merged:
        meta["note"] = "load on the base with the listed LoRA files merged in (a ReCraft run)"
    if fmt == "kohya" and not merge:
        return kohya.write(lora, out, "kohya", head=head, meta=meta, dtype=dtype)
    single = lora.head_lora(head)
    if not merge:
        lora_files.write(single, out, meta, dtype)
        return out
    for name, m in lora.modules.items():  # put the plain Linear layers back, then merge into them
        parent, _, child = name.rpartition(".")
        setattr(flux.transformer.get_submodule(parent), child, m.base)
    lora_files.merge(flux.transformer, single)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    flux.transformer.to(dtype).save_pretrained(tmp / "transformer")
    for name in ("vae", "text_encoder", "text_encoder_2", "scheduler"):
        getattr(flux, name).save_pretrained(tmp / name)
    src = Path(info.base_source(run_dir))
    for extra in ("tokenizer", "tokenizer_2", "model_index.json", TINY_MARKER):
        if (src / extra).is_dir():
            shutil.copytree(src / extra, tmp / extra)
        elif (src / extra).is_file():
            shutil.copy2(src / extra, tmp / extra)
    tmp.replace(out)
    return out
