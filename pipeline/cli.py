"""`makeanything build` and `makeanything demo`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from makeanything.exit_codes import EXIT_LOCKED, EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE
from pipeline.clip import ClipUnavailable
from pipeline.config import BuildConfig, CaptionConfig
from pipeline.corpus.curation import CurationError
from pipeline.manifest import ManifestError


def _config(args: argparse.Namespace) -> BuildConfig:
    cfg = BuildConfig.load(args.config)
    cluster = cfg.cluster.model_copy(update={k: v for k, v in
                                             (("workers", args.workers), ("scheduler", args.scheduler)) if v})
    clip = cfg.clip.model_copy(update={"require": True}) if args.require_clip else cfg.clip
    return cfg.model_copy(update={"cluster": cluster, "clip": clip, "caption": caption_overrides(cfg.caption, args)})


def caption_overrides(caption: CaptionConfig, args: argparse.Namespace) -> CaptionConfig:
    """The config's caption section with the command line's --caption-* (or caption's --url ...) on top."""
    given = {field: getattr(args, name) for field, name in
             (("url", "caption_url"), ("model", "caption_model"), ("budget", "caption_budget"))
             if getattr(args, name, None) is not None}
    return CaptionConfig.model_validate({**caption.model_dump(), **given})


def _summary(s: dict) -> None:
    done = f"; {s['skipped']} sources already done" if s["skipped"] else ""
    handled = s["ok"] + s["rejected"] + s["failed"]
    print(f"{s['new_samples']} new sequences from {s['ok']}/{handled} sources handled in this run "
          f"({s['rejected']} rejected, {s['failed']} failed){done}; the corpus holds {s['total_samples']} "
          f"sequences; {s['duration_s']:.1f}s -> {s['out']}/shards; report: {s['out']}/report.md")


def _error(args: argparse.Namespace, code: int, msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    if getattr(args, "json", False):  # cron wants one parseable line either way
        print(json.dumps({"status": "error", "exit_code": code, "error": msg}))
    return code


def cmd_build(args: argparse.Namespace) -> int:
    """`build` and `refresh` (the same job; refresh adds --retry-failed, --rebuild and --json)."""
    from pipeline.build import ConfigChanged, build
    from pipeline.lock import LockBusy

    try:
        cfg = _config(args)
        result = build(args.manifest, args.out, cfg, progress=not args.quiet,
                       retry_failed=getattr(args, "retry_failed", False), rebuild=getattr(args, "rebuild", False),
                       verify_content=args.verify_content)
    except (ManifestError, ValidationError, FileNotFoundError, ClipUnavailable, ConfigChanged, CurationError) as e:
        return _error(args, EXIT_USAGE, str(e))
    except LockBusy as e:
        return _error(args, EXIT_LOCKED, str(e))
    except Exception as e:  # noqa: BLE001 - the run itself could not complete
        return _error(args, EXIT_RUN_FAILED, f"build failed: {type(e).__name__}: {e}")
    if getattr(args, "json", False):
        print(json.dumps(result.summary))
    else:
        _summary(result.summary)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo import write_demo

    manifest = write_demo(Path(args.out) / "demo-sources")
    print(f"demo sources and manifest written to {manifest.parent}")
    args.manifest = str(manifest)
    args.rebuild = True  # the demo output is ours: after an upgrade that changes the config, build it anew
    return cmd_build(args)


def _cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=not p.prog.endswith("demo"), default="demo-out",
                   help="output folder: shards/, report.json, report.md, contact sheets")
    p.add_argument("--workers", type=int, help="local Dask worker processes (default 2)")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--config", help="build config YAML (see docs/CONFIG.md); defaults otherwise")
    p.add_argument("--require-clip", action="store_true",
                   help="stop (exit 2) before any work when the CLIP model cannot be loaded, "
                        "instead of falling back to pixel-based selection")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--verify-content", action="store_true",
                   help="hash every source's content again instead of trusting unchanged metadata "
                        "(size, mtime, inode; ETag / version / Last-Modified for remote sources)")
    g = p.add_argument_group("VLM captions (docs/CAPTION.md; off unless a URL is given)")
    g.add_argument("--caption-url", help="OpenAI-compatible API base URL, e.g. http://localhost:8000/v1 "
                                         "(key from the environment variable caption.api_key_env, default OPENAI_API_KEY)")
    g.add_argument("--caption-model", help="model name the server knows (default: caption.model, gpt-4o)")
    g.add_argument("--caption-budget", type=int, help="stop asking after this many requests")


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("build", help="build a corpus from a manifest",
                       description="Read MANIFEST (YAML list of videos, URLs, folders of step images, SVG files "
                                   "or archives and QuickDraw-style stroke files, with task labels), find the "
                                   "making process in each (drawings: element by element in paint order), "
                                   "select N steps, tile them into grids and write WebDataset shards plus a "
                                   "run report.")
    b.add_argument("manifest", help="manifest YAML")
    _cluster_args(b)
    b.set_defaults(func=cmd_build)
    d = sub.add_parser("demo", help="make tutorial-like demo videos from bundled photos and build them",
                       description="Generate a small demo corpus (videos from scikit-image's sample photos, "
                                   "an image folder, videos with no making process, and a few SVG and stroke "
                                   "drawings), write its manifest and build it.")
    _cluster_args(d)
    d.set_defaults(func=cmd_demo)
