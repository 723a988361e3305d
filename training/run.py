"""A run directory: ``run.json`` says how to rebuild the model, ``checkpoints/`` holds the trained weights.

Export, generation, resume and ReCraft all rebuild the model from ``run.json`` alone, so they cannot drift
from what the trainer built.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import BaseModel

from pipeline.taxonomy import Taxonomy
from training import checkpoint, fp8, lora_files
from training.asymmetric_lora import AsymmetricLora, select_targets
from training.flux_model import Flux, load_flux

RUN_FILE = "run.json"


class RunInfo(BaseModel):
    """What a run trained, on which base."""

    base: str = "base"  # relative to the run directory, or an absolute path / hub id
    heads: int
    rank: int
    alpha: float
    targets: str | list[str]
    freeze_a: bool = False
    base_dtype: str = "bf16"  # "fp8": block Linear weights quantised at load (training/fp8.py)
    cell: int | None = None
    taxonomy: str | None = None
    text_length: int = 512
    merged: list[str] = []  # LoRA files (relative to the run) merged into the base before training
    recraft_task: str | None = None
    condition: str | None = None

    def write(self, run_dir: Path) -> None:
        tmp = run_dir / f".{RUN_FILE}.tmp"
        tmp.write_text(self.model_dump_json(indent=2))
        tmp.replace(run_dir / RUN_FILE)

    @classmethod
    def read(cls, run_dir: Path) -> RunInfo:
        f = Path(run_dir) / RUN_FILE
        if not f.is_file():
            raise FileNotFoundError(f"{run_dir} is not a training run directory (no {RUN_FILE})")
        return cls.model_validate_json(f.read_text())

    def base_source(self, run_dir: Path) -> str:
        local = run_dir / self.base
        return str(local) if local.exists() else self.base

    def tasks(self) -> Taxonomy:
        return Taxonomy.load(self.taxonomy)


def record_data(run_dir: Path, entry: dict) -> None:
    """Add to run.json's ``data`` list the corpus snapshot a run started on or moved to (with the step and
    epoch), so a training run names the exact data it saw; RunInfo ignores the key."""
    f = Path(run_dir) / RUN_FILE
    data = json.loads(f.read_text()) if f.is_file() else {}
    data.setdefault("data", []).append(entry)
    tmp = f.with_name(f".{RUN_FILE}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(f)


def build(
    info: RunInfo,
    run_dir: Path,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    *,
    base_dtype: str | None = None,
    fp8_matmul: str = "auto",
    encoders: torch.device | None = None,
) -> tuple[Flux, AsymmetricLora]:
    """Base model (with any merged LoRA) on ``device`` plus freshly initialised LoRA layers.

    ``base_dtype`` overrides the run's (export merges into full-precision weights); the VAE and the text
    encoders go to ``encoders`` (default ``device``; the CPU when the trainer reads their outputs from caches).
    """
    flux = load_flux(info.base_source(run_dir), dtype=dtype, text_length=info.text_length)
    for rel in info.merged:
        lora_files.merge(flux.transformer, lora_files.read(run_dir / rel)[0])
    if (base_dtype or info.base_dtype) == "fp8":
        fp8.quantize_(flux.transformer, select_targets(flux.transformer, "all"), device, fp8_matmul)
    flux.transformer.to(device)
    for part in (flux.vae, flux.text_encoder, flux.text_encoder_2):
        part.to(encoders or device)
    lora = AsymmetricLora(flux.transformer, info.rank, info.alpha, info.heads, info.targets, info.freeze_a)
    return flux, lora


def load(
    run_dir: str | Path,
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
    step: int | None = None,
    base_dtype: str | None = None,
) -> tuple[Flux, AsymmetricLora, RunInfo, int]:
    """A trained run: model with the weights of checkpoint ``step`` (default: the latest)."""
    run_dir = Path(run_dir)
    info = RunInfo.read(run_dir)
    step, folder = checkpoint_at(run_dir, step)
    flux, lora = build(info, run_dir, device, dtype, base_dtype=base_dtype)
    lora.load_state_dict(checkpoint.load_lora(folder))
    return flux, lora, info, step


def checkpoint_at(run_dir: Path, step: int | None) -> tuple[int, Path]:
    """(step, folder) of checkpoint ``step`` (default: the latest); FileNotFoundError names what exists."""
    found = dict(checkpoint.checkpoints(run_dir))
    if not found:
        raise FileNotFoundError(f"run {run_dir} has no complete checkpoint yet")
    if step is None:
        step = max(found)
    elif step not in found:
        raise FileNotFoundError(f"run {run_dir} has no checkpoint at step {step} (has {sorted(found)})")
    return step, found[step]
