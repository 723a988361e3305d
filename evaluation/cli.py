"""`makeanything evaluate INPUTS --out DIR [--judge-url URL]`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pydantic import ValidationError

from makeanything.exit_codes import EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE
from pipeline.cli.common import positive

log = logging.getLogger("evaluation")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score procedural sequences (CLIP, coherence, progress, VLM judge) and write a report",
        description="Evaluate sequences from shards (ours or the authors' release) or sequences.jsonl "
        "manifests (grids with a declared reading order, frame folders, videos). Name each "
        "method with METHOD=PATH.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="[METHOD=]PATH",
        help="a shard, a sequences.jsonl, a corpus folder, or a `generate` output folder; METHOD names it",
    )
    p.add_argument("--out", required=True, type=Path, help="report folder (report.md, summary.json, rows)")
    p.add_argument("--config", type=Path, help="YAML with any EvalConfig fields; flags override it")
    p.add_argument("--taxonomy", type=Path, help="tasks.yaml (default: the bundled taxonomy)")
    p.add_argument("--video-frames", type=int, help="frames sampled from each video (default: the task's)")
    p.add_argument("--clip-model", help="open_clip model name (default ViT-L-14)")
    p.add_argument("--clip-pretrained", help="open_clip tag or local checkpoint path (default openai)")
    p.add_argument("--clip-model-config", type=Path, help="JSON model config to register with open_clip")
    p.add_argument("--no-clip", action="store_true", help="skip CLIP scores (coherence/progress use pixels)")
    p.add_argument("--device", help="torch device for CLIP (default: cuda when present, else cpu)")
    p.add_argument("--backbone", choices=["clip", "pixel"], help="features for coherence and progress")
    p.add_argument("--judge-url", help="OpenAI-compatible base URL, e.g. https://api.openai.com/v1")
    p.add_argument("--judge-model", help="model name the judge's server knows")
    p.add_argument(
        "--judge-key-env", help="environment variable holding the API key (default OPENAI_API_KEY)"
    )
    p.add_argument("--judge-prompts", help="prompt version in evaluation/prompts/ or a YAML path")
    p.add_argument("--judge-cache", type=Path, help="response cache folder (default OUT/judge-cache)")
    p.add_argument("--judge-replay", action="store_true", help="answer only from the judge cache")
    p.add_argument("--judge-budget", type=positive, help="stop asking the judge after this many requests")
    p.add_argument("--bootstrap", type=positive, help="bootstrap resamples for confidence intervals")
    p.add_argument("--seed", type=int, help="seed of the bootstrap")
    p.set_defaults(func=main)


def overrides(args: argparse.Namespace) -> dict:
    """Only the flags actually given, in EvalConfig's nesting."""
    sections = {
        "clip": {
            "model": args.clip_model,
            "pretrained": args.clip_pretrained,
            "model_config_path": args.clip_model_config,
            "device": args.device,
            "enabled": False if args.no_clip else None,
        },
        "metrics": {"backbone": args.backbone},
        "judge": {
            "url": args.judge_url,
            "model": args.judge_model,
            "api_key_env": args.judge_key_env,
            "prompts": args.judge_prompts,
            "cache_dir": args.judge_cache,
            "replay_only": True if args.judge_replay else None,
            "budget": args.judge_budget,
        },
        "report": {"bootstrap": args.bootstrap, "seed": args.seed},
    }
    out: dict = {
        k: v
        for k, v in {"taxonomy": args.taxonomy, "video_frames": args.video_frames}.items()
        if v is not None
    }
    for name, fields in sections.items():
        given = {k: v for k, v in fields.items() if v is not None}
        if given:
            out[name] = given
    return out


def main(args: argparse.Namespace) -> int:
    from evaluation.clip_model import WeightsUnavailable, load_clip
    from evaluation.config import EvalConfig
    from evaluation.inputs import parse_spec
    from evaluation.report import write_report
    from evaluation.run import run
    from pipeline.io.redact import redact_text
    from pipeline.taxonomy import Taxonomy

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = EvalConfig.load(args.config, overrides(args))
        taxonomy = Taxonomy.load(cfg.taxonomy)
    except (OSError, ValueError, ValidationError) as exc:
        log.error("configuration: %s", redact_text(str(exc)))
        return EXIT_USAGE
    if not any(parse_spec(spec)[1].exists() for spec in args.inputs):
        log.error("no input exists: %s", ", ".join(args.inputs))
        return EXIT_USAGE
    if args.out.exists() and not args.out.is_dir():
        log.error("--out %s: is a file; give a folder for the report", args.out)
        return EXIT_USAGE
    scorer = None
    if cfg.clip.enabled:
        try:
            scorer = load_clip(cfg.clip)
        except WeightsUnavailable as exc:
            log.error("%s", exc)
            return EXIT_USAGE
    else:
        log.warning("CLIP scores are off (--no-clip): the report has no CLIP columns")
    result = run(args.inputs, cfg, args.out, scorer, taxonomy)
    info = {
        "clip": scorer.name if scorer else "off",
        "backbone": cfg.metrics.backbone if scorer else f"pixel-{cfg.metrics.pixel_side}",
        "judge": f"{cfg.judge.model} ({cfg.judge.prompts})" if cfg.judge.enabled else "off",
    }
    report = write_report(result, args.out, taxonomy, info, cfg.report.bootstrap, cfg.report.seed)
    log.info("%d sequences, %d failed inputs; report: %s", len(result.records), len(result.errors), report)
    return EXIT_OK if result.records else EXIT_RUN_FAILED
