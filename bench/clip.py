"""CLIP stage throughput vs. a bare encode_image loop (issues 3 and 14; prints figures, not a test).

    .venv/bin/python -m bench.clip [--arch ViT-B-32] [--frames 128] [--gpu-frames 4096] [--batch 64] [--device all]
                                   [--stagers 1,2,8] [--repeats 3] [--jpeg]

One run measures the CPU and, when CUDA is available, the GPU (`--device all`, the default), so a
machine with a GPU for a few minutes gives every figure at once. On each device both sides use the
same model object, dtype and batch size:
  stage: ClipFilter on a Work item holding analysis frames (uint8 RGB, 512x288 by default):
         array -> PIL, open_clip preprocessing, batching, encode, normalise, relevance/dedup logic;
         `--jpeg` also decodes the candidates from JPEG files first (an image-folder source).
  bare:  model.encode_image on already-preprocessed tensors on the device, batch by batch.
On a GPU the stage uses its defaults (staging threads, CUDA-graph encoder; docs/CLIP.md), and a
breakdown follows: staging alone, embedding alone, other numbers of staging threads, graphs off,
the bare loop as a CUDA graph; then GPU embeddings are checked against the CPU model's.
The model has random weights (open_clip `pretrained=None`, saved as a local-dir folder): speed
does not depend on weight values, and no pretrained weights are available offline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, bench/ comes first on sys.path and bench/pipeline.py would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np
import torch
from PIL import Image

from pipeline.clip.model import ClipModel, ClipSpec, load
from pipeline.clip.stages import ClipFilter
from pipeline.config import ClipConfig
from pipeline.taxonomy import Taxonomy
from pipeline.work import Frame, Segment, Source, Work
from testkit.tiny_clip import write_random_model


def sync(model: ClipModel) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize()


def make_frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """Smooth images with structure (a gradient plus shapes), so JPEG sizes and resize costs are realistic."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    out = []
    for _ in range(n):
        img = np.stack(
            [
                (xx * rng.uniform(0.2, 0.5) + yy * rng.uniform(0.2, 0.5) + rng.uniform(0, 80)) % 256
                for _ in range(3)
            ],
            axis=-1,
        )
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(10, height // 2)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.integers(0, 256, 3)
        out.append(img.astype(np.uint8))
    return out


def timed(fn, *args) -> tuple[float, float]:
    """(wall, CPU) seconds of fn(*args); CPU time of this process stays fair when other jobs share the cores."""
    w, c = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - w, time.process_time() - c


def work_item(task, images: list[np.ndarray] | None, files: list[Path] | None) -> Work:
    """The Work item the stage receives: one segment of analysis frames (for `--jpeg`, empty frames that
    stage_run fills by decoding the files, inside the timing)."""
    source = Source(uri="bench", path="bench", task=task, kind="images")
    frames = [Frame(i, None, img) for i, img in enumerate(images if files is None else [None] * len(files))]
    return Work(source=source, segments=[Segment(frames=frames)])


def stage_run(stage: ClipFilter, work: Work, files: list[Path] | None) -> None:
    """One ClipFilter pass over a Work item (decoding the JPEG files first when given). The item is built
    outside the timing: in the pipeline it arrives from earlier stages."""
    if files is not None:
        for f, p in zip(work.segments[0].frames, files):
            f.image = np.asarray(Image.open(p).convert("RGB"))
    stage(work)
    sync(load(stage.spec))


def timed_stage(stage: ClipFilter, task, images: list[np.ndarray] | None, files: list[Path] | None) -> tuple:
    return timed(stage_run, stage, work_item(task, images, files), files)


def bare_run(model: ClipModel, batches: list[torch.Tensor]) -> None:
    """encode_image over preprocessed batches: the ceiling the stage is measured against."""
    with torch.inference_mode():
        for b in batches:
            model.model.encode_image(b)
    sync(model)


def measure(args: argparse.Namespace, folder: str, device: str, n: int) -> None:
    """Stage vs. bare on one device, interleaved ``args.repeats`` times; prints wall and CPU ratios."""
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        spec = ClipSpec(f"local-dir:{Path(folder, 'model').resolve()}", None, device)
        t0 = time.perf_counter()
        model = load(spec)
        load_s = time.perf_counter() - t0
        task = Taxonomy.load()["painting"]
        stage = ClipFilter(
            spec, ClipConfig(batch_size=args.batch, relevance_margin=2.0, duplicate_similarity=1.0)
        )
        images = make_frames(n, width, height)
        files = None
        if args.jpeg:
            files = [Path(tmp) / f"{i:04d}.jpg" for i in range(len(images))]
            for p, img in zip(files, images):
                Image.fromarray(img).save(p, quality=95)
        batches = [model.to_input(images[i : i + args.batch]) for i in range(0, len(images), args.batch)]

        timed_stage(stage, task, images[: args.batch], None)  # warm-up: text prompts, allocator, kernels
        bare_run(model, batches[:1])
        stage_s, bare_s = [], []
        for _ in range(args.repeats):  # interleaved so drift (thermal, other load) hits both sides
            stage_s.append(timed_stage(stage, task, None if args.jpeg else images, files))
            bare_s.append(timed(bare_run, model, batches))

        device = (
            torch.cuda.get_device_name()
            if model.device.type == "cuda"
            else f"CPU, {torch.get_num_threads()} threads"
        )
        print(
            f"model {args.arch} (random weights), {model.dtype}, device {device}, batch {args.batch}, "
            f"{n} frames {width}x{height}{' from JPEG' if args.jpeg else ''}, model load {load_s:.1f} s, "
            f"{model.stagers} staging threads, CUDA graphs {'on' if model.graphs else 'off'}"
        )
        bare_wall = statistics.median(t[0] for t in bare_s)
        for k, clock in enumerate(("wall", "CPU")):
            stage_ips = n / statistics.median(t[k] for t in stage_s)
            bare_ips = n / statistics.median(t[k] for t in bare_s)
            print(
                f"{clock:4s}: stage {stage_ips:7.1f} images/s, bare {bare_ips:7.1f} images/s, "
                f"ratio {stage_ips / bare_ips:.3f} (target >= 0.8; median of {args.repeats})"
            )
        if model.device.type == "cuda" and not args.jpeg:
            breakdown(args, stage, task, model, images, bare_wall)


def breakdown(
    args: argparse.Namespace,
    stage: ClipFilter,
    task,
    model: ClipModel,
    images: list[np.ndarray],
    bare_wall: float,
) -> None:
    """Where the stage's time goes on a GPU: staging alone, embedding alone, and the stage with other
    numbers of staging threads (wall clock, median of the repeats, as images/s and as a share of bare)."""
    n, default = len(images), model.stagers

    def staging_only() -> None:
        for i in range(0, n, args.batch):
            model.stage(images[i : i + args.batch])
        sync(model)

    def line(name: str, fn, *a) -> None:
        wall = statistics.median(
            fn(*a)[0] if fn is timed_stage else timed(fn, *a)[0] for _ in range(args.repeats)
        )
        print(f"  {name:38s} {n / wall:9.1f} images/s, x{bare_wall / wall:.3f} of bare")

    graphs = model.graphs
    line("staging alone, 1 thread", staging_only)
    line(
        f"embed_images alone, {default} threads",
        lambda: (model.embed_images(images, args.batch), sync(model)),
    )
    for k in args.stagers:
        model.stagers = k
        line(f"stage with {k} staging threads", timed_stage, stage, task, images, None)
    model.stagers = default
    model.graphs = not graphs
    line(f"stage, CUDA graphs {'on' if model.graphs else 'off'}", timed_stage, stage, task, images, None)
    model.graphs = graphs
    batches = [model.to_input(images[i : i + args.batch]) for i in range(0, n, args.batch)]
    line(
        "bare as CUDA graph (another reference)",
        lambda: ([model.encode(b, graph=len(b) == args.batch) for b in batches], sync(model)),
    )


def check_agreement(folder: str, batch: int) -> None:
    """The GPU path (device resize, pinned uploads, several staging threads, mixed image sizes in one
    batch) gives the CPU path's embeddings, within fp16 and resize-filter differences."""
    path = f"local-dir:{Path(folder, 'model').resolve()}"
    gpu, cpu = load(ClipSpec(path, None, "cuda")), load(ClipSpec(path, None, "cpu"))
    images = make_frames(3 * batch, 512, 288) + make_frames(batch, 300, 400)
    images = images[::2] + images[1::2]  # sizes interleaved within batches
    reference = cpu.embed_images(images, batch)
    default = gpu.graphs
    for graphs in (False, True):
        gpu.graphs = graphs
        diff = float(np.abs(gpu.embed_images(images, batch) - reference).max())
        verdict = "agree" if diff < 2e-2 else "DISAGREE"
        print(
            f"GPU vs CPU embeddings of {len(images)} mixed-size images, {gpu.stagers} staging threads, "
            f"CUDA graphs {'on' if graphs else 'off'}: max |diff| {diff:.4f} ({verdict}; tolerance 0.02)"
        )
    gpu.graphs = default


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--frames", type=int, default=128, help="frames per pass on the CPU")
    ap.add_argument("--gpu-frames", type=int, default=4096, help="frames per pass on a GPU")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", default="512x288", help="analysis frame WxH")
    ap.add_argument(
        "--device",
        default="all",
        choices=["all", "cpu", "cuda"],
        help="all: the CPU, then the GPU when CUDA is available",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--stagers",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1, 2, 8],
        help="on a GPU, also time the stage with these numbers of staging threads",
    )
    ap.add_argument(
        "--jpeg", action="store_true", help="decode the candidates from JPEG files inside the timing"
    )
    args = ap.parse_args()
    devices = {
        "all": ["cpu"] + (["cuda"] if torch.cuda.is_available() else []),
        "cpu": ["cpu"],
        "cuda": ["cuda"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        write_random_model(Path(tmp) / "model", args.arch)
        for device in devices[args.device]:
            measure(args, tmp, device, args.gpu_frames if device == "cuda" else args.frames)
        if "cuda" in devices[args.device]:
            check_agreement(tmp, args.batch)
        if args.device == "all" and not torch.cuda.is_available():
            print("GPU: no CUDA device here; run this on a machine with one for the GPU figures")


if __name__ == "__main__":
    main()
