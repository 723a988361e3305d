"""Checkpoints: LoRA weights (safetensors), optimiser, scheduler, step and every rank's RNG state.

A checkpoint is written into ``checkpoints/.tmp-step-N`` and renamed to ``checkpoints/step-N`` only when every
file is complete, so a crash never leaves a checkpoint that looks whole. State is loaded with
``weights_only=True``: nothing is unpickled beyond tensors and plain containers.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

STEP_DIR = re.compile(r"^step-(\d{8})$")


def step_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step:08d}"


def tmp_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f".tmp-step-{step:08d}"


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    folder = run_dir / "checkpoints"
    found = (
        [(int(m.group(1)), p) for p in folder.iterdir() if (m := STEP_DIR.match(p.name))]
        if folder.is_dir()
        else []
    )
    return sorted(found)


def latest(run_dir: Path) -> tuple[int, Path] | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def rng_state(generator: torch.Generator) -> dict:
    """This process's random state: the training generator, torch (CPU and CUDA) and Python."""
    state = {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def write_rank_state(run_dir: Path, step: int, rank: int, generator: torch.Generator) -> None:
    """Each rank writes its own RNG state into the pending checkpoint (call before :func:`commit`)."""
    folder = tmp_dir(run_dir, step)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(rng_state(generator), folder / f"rng-rank{rank}.pt")


def commit(
    run_dir: Path,
    step: int,
    lora: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    keep: int,
) -> Path:
    """Rank 0: add weights and optimiser state to the pending checkpoint, rename it into place, prune old ones."""
    folder, final = tmp_dir(run_dir, step), step_dir(run_dir, step)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in lora.items()}, folder / "lora.safetensors")
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step},
        folder / "state.pt",
    )
    if final.exists():
        shutil.rmtree(final)
    os.replace(folder, final)
    for _, old in checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old)
    return final


def load_lora(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "lora.safetensors")


def load_state(folder: Path, rank: int) -> tuple[dict, dict]:
    """(optimiser/scheduler/step state, this rank's RNG state)."""
    rng_file = folder / f"rng-rank{rank}.pt"
    if not rng_file.is_file():
        raise FileNotFoundError(
            f"checkpoint {folder} has no RNG state for rank {rank}: "
            f"resume with the world size it was written with"
        )
    return (
        torch.load(folder / "state.pt", weights_only=True, map_location="cpu"),
        torch.load(rng_file, weights_only=True),
    )
