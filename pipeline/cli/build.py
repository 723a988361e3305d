"""`makeanything build` and `makeanything demo`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import ValidationError

from makeanything.exit_codes import EXIT_LOCKED, EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE
from pipeline.cli.common import caption_overrides, fail, run_args
from pipeline.clip import ClipUnavailable
from pipeline.config import BuildConfig
from pipeline.corpus.curation import CurationError
from pipeline.intake.manifest import ManifestError


def _config(args: argparse.Namespace) -> BuildConfig:
    cfg = BuildConfig.load(args.config)
    cluster = cfg.cluster.model_copy(
        update={k: v for k, v in (("workers", args.workers), ("scheduler", args.scheduler)) if v}
    )
    clip = cfg.clip.model_copy(update={"require": True}) if args.require_clip else cfg.clip
    return cfg.model_copy(
        update={"cluster": cluster, "clip": clip, "caption": caption_overrides(cfg.caption, args)}
    )


def _summary(s: dict) -> None:
    done = f"; {s['skipped']} sources already done" if s["skipped"] else ""
    handled = s["ok"] + s["rejected"] + s["failed"]
    print(
        f"{s['new_samples']} new sequences from {s['ok']}/{handled} sources handled in this run "
        f"({s['rejected']} rejected, {s['failed']} failed){done}; the corpus holds {s['total_samples']} "
        f"sequences; {s['duration_s']:.1f}s -> {s['out']}/shards; report: {s['out']}/report.md"
    )


def cmd_build(args: argparse.Namespace) -> int:
    """`build` and `refresh` (the same job; refresh adds --retry-failed, --rebuild and --json)."""
    from pipeline.io.lock import LockBusy
    from pipeline.run.driver import ConfigChanged, build

    as_json = getattr(args, "json", False)  # cron wants one parseable line either way
    try:
        cfg = _config(args)
        result = build(
            args.manifest,
            args.out,
            cfg,
            progress=not args.quiet,
            retry_failed=getattr(args, "retry_failed", False),
            rebuild=getattr(args, "rebuild", False),
            verify_content=args.verify_content,
        )
    except (
        ManifestError,
        ValidationError,
        FileNotFoundError,
        ClipUnavailable,
        ConfigChanged,
        CurationError,
    ) as e:
        return fail(EXIT_USAGE, str(e), as_json)
    except LockBusy as e:
        return fail(EXIT_LOCKED, str(e), as_json)
    except Exception as e:  # noqa: BLE001 - the run itself could not complete
        return fail(EXIT_RUN_FAILED, f"build failed: {type(e).__name__}: {e}", as_json)
    if as_json:
        print(json.dumps(result.summary))
    else:
        _summary(result.summary)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo.bundle import write_demo

    manifest = write_demo(Path(args.out) / "demo-sources")
    print(f"demo sources and manifest written to {manifest.parent}")
    args.manifest = str(manifest)
    args.rebuild = True  # the demo output is ours: after an upgrade that changes the config, build it anew
    return cmd_build(args)


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser(
        "build",
        help="build a corpus from a manifest",
        description="Read MANIFEST (YAML list of videos, URLs, folders of step images, SVG files "
        "or archives and QuickDraw-style stroke files, with task labels), find the "
        "making process in each (drawings: element by element in paint order), "
        "select N steps, tile them into grids and write WebDataset shards plus a "
        "run report.",
    )
    b.add_argument("manifest", help="manifest YAML")
    run_args(b)
    b.set_defaults(func=cmd_build)
    d = sub.add_parser(
        "demo",
        help="make tutorial-like demo videos from bundled photos and build them",
        description="Generate a small demo corpus (videos from scikit-image's sample photos, "
        "an image folder, videos with no making process, and a few SVG and stroke "
        "drawings), write its manifest and build it.",
    )
    run_args(d)
    d.set_defaults(func=cmd_demo)
