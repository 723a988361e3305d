"""`makeanything train | export-lora | generate`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from makeanything.exit_codes import EXIT_OK, EXIT_USAGE
from pipeline.cli.common import positive


def _no_loader_bars() -> None:
    """transformers' and diffusers' per-file bars ("Loading weights", "Writing model shards", pipeline
    components) say nothing a user can act on here: train, export and generate print their own progress."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def _train(args: argparse.Namespace) -> int:
    from training.config import Config, ConfigError
    from training.loop import train

    _no_loader_bars()
    try:
        cfg = Config.load(args.config)
        if args.data:
            cfg.data.shards = list(args.data)
        if args.steps:
            cfg.train.steps = args.steps
        if not cfg.data.shards:
            raise ConfigError(f"{args.config}: no data.shards and no --data given")
        out = Path(args.out or Path("runs") / Path(args.config).stem)
        train(cfg, out, resume=args.resume)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"makeanything train: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"run written to {out}")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from training.export import export

    _no_loader_bars()
    try:
        path = export(
            args.run_dir,
            args.task,
            args.out,
            merge=args.merge,
            step=args.step,
            fmt=args.format,
            force=args.force,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"makeanything export-lora: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {path}")
    return EXIT_OK


def _generate(args: argparse.Namespace) -> int:
    import torch

    _no_loader_bars()
    try:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        if args.image:
            from training.recraft import generate_from_image

            paths = generate_from_image(
                args.source,
                args.image,
                args.out,
                prompt=args.prompt,
                seed=args.seed,
                steps=args.steps,
                device=device,
                dtype=dtype,
                last=args.last,
            )
        else:
            if not args.prompt:
                raise ValueError("--prompt is required (or --image for a ReCraft run)")
            from training.generate import generate

            paths = generate(
                args.source,
                args.prompt,
                args.out,
                task_id=args.task,
                seed=args.seed,
                steps=args.steps,
                guidance=args.guidance,
                base=args.base,
                device=device,
                dtype=dtype,
                head=args.head,
            )
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"makeanything generate: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {len(paths)} files to {args.out}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the asymmetric-LoRA Flux (or ReCraft) on shards",
        description="Train from a YAML config (see docs/TRAINING.md). Launch with torchrun or "
        "accelerate launch for several GPUs.",
    )
    p.add_argument("config", help="training config YAML (e.g. training/configs/tiny.yaml)")
    p.add_argument(
        "--data", nargs="+", help="shards: build folders, tars, globs, {a..b} patterns, https/s3 URLs"
    )
    p.add_argument("--out", help="run directory (default: runs/CONFIG_NAME)")
    p.add_argument("--steps", type=positive, help="override train.steps")
    p.add_argument(
        "--resume", action="store_true", help="continue from the run directory's latest checkpoint"
    )
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "export-lora",
        help="write one task's LoRA (A + B_task) as an ordinary LoRA file, or all "
        "heads in the authors' layout",
        description="--format diffusers (peft keys, for diffusers' load_lora_weights), kohya (one "
        "task as a plain kohya Flux LoRA, for ComfyUI / Forge / diffusers) or authors "
        "(every head, lora_ups.<i>, for the authors' inference code: --lora_ups_num, "
        "--lora_up_cur).",
    )
    p.add_argument("run_dir", metavar="RUN", help="run directory written by `makeanything train`")
    p.add_argument("--task", help="task id (manifests/tasks.yaml); required except with --format authors")
    p.add_argument(
        "--format",
        default="diffusers",
        choices=["diffusers", "kohya", "authors"],
        help="file layout (default diffusers; see above)",
    )
    p.add_argument("--out", required=True, help="FILE.safetensors, or a folder with --merge")
    p.add_argument("--merge", action="store_true", help="write the base model with the LoRA merged in")
    p.add_argument("--step", type=int, help="checkpoint step (default: latest)")
    p.add_argument(
        "--force",
        action="store_true",
        help="write a task the run never trained (its head is still zero: the LoRA changes nothing); "
        "refused otherwise",
    )
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "generate",
        help="generate a step sequence: grid, frames in step order, GIF",
        description="Text to sequence from a training run, an exported LoRA file, or a kohya / authors' "
        "file; or, with --image, a ReCraft run's sequence leading to a finished work. Writes "
        "OUT/grid.png, OUT/frames/step-NN.png in step order, OUT/steps.gif and "
        "OUT/sequences.jsonl, which `makeanything evaluate NAME=OUT` reads.",
    )
    p.add_argument(
        "source",
        help="run directory, exported LoRA .safetensors, or a kohya / authors' file "
        "(e.g. asymmetric_lora_4f_general.safetensors with --base and --head)",
    )
    p.add_argument("--task", help="task id (default: the LoRA file's task)")
    p.add_argument(
        "--head",
        type=positive,
        help="head of an asymmetric LoRA to use (default: the task's); the layout "
        "is the task's that owns this head in the taxonomy",
    )
    p.add_argument(
        "--prompt",
        help="the caption to generate from, used as it is: start it as the training captions do, with the "
        "layout and process, e.g. '3*3 of 9 sub-images, step-by-step painting process, a lighthouse' "
        "(nothing is added to it)",
    )
    p.add_argument("--image", help="ReCraft: the finished work (the final frame) to condition on")
    p.add_argument("--last", help="ReCraft interpolation: the last frame, with --image as the first frame")
    p.add_argument("--out", required=True, help="folder for grid.png, frames/, steps.gif, sequences.jsonl")
    p.add_argument(
        "--seed", type=int, default=0, help="noise seed (default 0): the same seed, the same sequence"
    )
    p.add_argument("--steps", type=positive, default=28, help="denoising steps (default 28)")
    p.add_argument(
        "--guidance",
        type=float,
        default=3.5,
        help="Flux guidance scale (default 3.5; the authors train at 1.0)",
    )
    p.add_argument("--base", help="base model for a LoRA file that does not name one")
    p.set_defaults(func=_generate)
