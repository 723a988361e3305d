"""Small shards for the training tests: our format (pipeline.corpus.shards.ShardWriter) and the authors' format."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image, ImageDraw

from pipeline.corpus.shards import Sample, ShardWriter, encode_jpeg
from pipeline.layout import Layout, tile
from pipeline.taxonomy import Taxonomy
from testkit.samples import made_meta

TASKS = Taxonomy.load()


def small_layout(task_id: str, cell: int = 32) -> Layout:
    lay = TASKS[task_id].layout
    return Layout(rows=lay.rows, cols=lay.cols, cell=cell, order=lay.order, separator=2)


def frames(n: int, seed: int, size: int = 64) -> list[Image.Image]:
    """A drawing that grows step by step (each frame adds a coloured shape)."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (250, 248, 240))
    draw, out = ImageDraw.Draw(img), []
    for _ in range(n):
        x, y = rng.integers(0, size - 16, 2)
        draw.ellipse(
            (int(x), int(y), int(x) + 16, int(y) + 16), fill=tuple(int(c) for c in rng.integers(0, 255, 3))
        )
        out.append(img.copy())
    return out


def write_shards(
    folder: Path, tasks: list[str], per_task: int, per_shard: int, cell: int = 32, prefix: str = "shard"
) -> list[str]:
    """Our format: KEY.jpg grid, KEY.txt caption, KEY.json record (docs/FORMAT.md)."""
    keys = []
    with ShardWriter(folder, prefix=prefix, samples_per_shard=per_shard) as w:
        for i in range(per_task):
            for t_id in tasks:
                task, layout = TASKS[t_id], small_layout(t_id, cell)
                key = f"{t_id}_src{i:03d}_s0"
                caption = task.caption(f"subject {i}")
                meta = made_meta(
                    key,
                    task.describe(),
                    layout.describe(),
                    caption,
                    uri=f"src{i:03d}",
                    sha256=f"{i:064x}",
                    kind="synthetic",
                )
                w.write(
                    Sample(
                        key,
                        encode_jpeg(tile(frames(layout.frames, hash(key) % 2**32), layout)),
                        caption,
                        meta,
                    )
                )
                keys.append(key)
    return keys


def write_released(path: Path, heads: dict[str, int], tagged: bool, cell: int = 32) -> None:
    """The authors' format: KEY.png grid + KEY.caption (head from a --lora_up_cur tag or untagged)."""
    with wds.TarWriter(str(path)) as w:
        for i, (t_id, head) in enumerate(heads.items()):
            layout = small_layout(t_id, cell)
            buf = io.BytesIO()
            tile(frames(layout.frames, i), layout).save(buf, format="PNG")
            caption = TASKS[t_id].caption("a cat") + (f" --lora_up_cur {head}" if tagged else "")
            w.write({"__key__": f"rel{i:04d}", "png": buf.getvalue(), "caption": caption.encode()})


def tiny_config(shards: list[str], **train):
    """training/configs/tiny.yaml, shortened for tests."""
    from training.config import Config

    cfg = Config.load(Path(__file__).parents[1] / "training" / "configs" / "tiny.yaml")
    cfg.data.shards = shards
    cfg.data.shuffle_buffer = 4
    cfg.sample.every = 0
    cfg.train.steps, cfg.train.ckpt_every, cfg.train.warmup, cfg.train.log_every = 8, 4, 2, 1
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def ddp_worker(rank: int, world: int, port: int, cfg_json: str, run_dir: str, out: str) -> None:
    """One rank of a gloo DDP run (tests/test_train_e2e.py); writes its records and LoRA weights to ``out``."""
    import json
    import os

    import torch
    from safetensors.torch import save_file

    from training.config import Config
    from training.loop import Trainer

    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    trainer = Trainer(Config.model_validate_json(cfg_json), run_dir)
    records = trainer.fit()
    Path(out, f"rank{rank}.json").write_text(json.dumps(records))
    save_file(
        {k: v.contiguous() for k, v in trainer.lora.state_dict().items()},
        Path(out, f"rank{rank}.safetensors"),
    )
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run far faster on one thread than on two contended ones (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
