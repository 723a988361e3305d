"""`makeanything build` and `makeanything demo`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from makeanything.exit_codes import EXIT_LOCKED, EXIT_OK, EXIT_RUN_FAILED, EXIT_STRICT, EXIT_USAGE
from pipeline.cli.common import caption_overrides, fail, run_args
from pipeline.clip import ClipUnavailable
from pipeline.config import BuildConfig, ConfigError
from pipeline.corpus.curation import CurationError
from pipeline.intake.manifest import ManifestError
from pipeline.work import is_missing


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


def _missing(report: dict) -> list[dict]:
    """This run's sources that are not there (README: missing sources), in manifest order."""
    return [r for r in report["sources"] if r["status"] != "ok" and is_missing(r["reason"])]


def cmd_build(args: argparse.Namespace) -> int:
    """`build`, `demo` and `refresh` (the same job; refresh adds --retry-failed and --rebuild)."""
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
        ConfigError,
        ValidationError,
        FileNotFoundError,
        NotADirectoryError,
        ClipUnavailable,
        ConfigChanged,
        CurationError,
    ) as e:
        return fail(EXIT_USAGE, str(e), as_json)
    except LockBusy as e:
        return fail(EXIT_LOCKED, str(e), as_json)
    except Exception as e:  # noqa: BLE001 - the run itself could not complete
        return fail(EXIT_RUN_FAILED, f"build failed: {type(e).__name__}: {e}", as_json)
    missing = _missing(result.report)
    for r in missing:
        print(f"missing source (manifest entry {r['entry']}): {r['reason']}", file=sys.stderr)
    strict = getattr(args, "strict", False) and (missing or result.summary["failed"])
    summary = {**result.summary, "missing": len(missing)}
    if strict:
        summary["status"] = "strict"
    if as_json:
        print(json.dumps(summary))
    else:
        _summary(summary)
    if strict:
        print(
            f"--strict: {summary['failed']} failed and {len(missing)} missing source(s) in this run (exit 4)",
            file=sys.stderr,
        )
        return EXIT_STRICT
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo.bundle import write_demo

    if Path(args.out).exists() and not Path(args.out).is_dir():
        return fail(EXIT_USAGE, f"--out {args.out}: is a file, not a folder", args.json)
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
