"""What the build-side subcommands share: error exits, the run options, caption overrides."""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.config import CaptionConfig
from pipeline.io.redact import redact_text


def fail(code: int, msg: str, as_json: bool = False) -> int:
    """Print a usage or run error and return its exit code; with --json also one parseable line (cron).
    Credentials in any URL of the message (a scheduler address, a source) are redacted."""
    msg = redact_text(msg)
    print(f"error: {msg}", file=sys.stderr)
    if as_json:
        print(json.dumps({"status": "error", "exit_code": code, "error": msg}))
    return code


def positive(text: str) -> int:
    """argparse type for counts that must be at least 1: anything else is a usage error (exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def caption_overrides(caption: CaptionConfig, args: argparse.Namespace) -> CaptionConfig:
    """The config's caption section with the command line's --caption-* (or caption's --url ...) on top."""
    given = {
        field: getattr(args, name)
        for field, name in (("url", "caption_url"), ("model", "caption_model"), ("budget", "caption_budget"))
        if getattr(args, name, None) is not None
    }
    return CaptionConfig.model_validate({**caption.model_dump(), **given})


def run_args(p: argparse.ArgumentParser) -> None:
    """The options every command that runs a build takes (build, demo, refresh): the same in all three."""
    p.add_argument(
        "--out",
        required=not p.prog.endswith("demo"),
        default="demo-out",
        help="output folder: shards/, report.json, report.md, contact sheets",
    )
    p.add_argument("--workers", type=positive, help="local Dask worker processes (default 2)")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--config", help="build config YAML (see docs/CONFIG.md); defaults otherwise")
    p.add_argument(
        "--require-clip",
        action="store_true",
        help="stop (exit 2) before any work when the CLIP model cannot be loaded, "
        "instead of falling back to pixel-based selection",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar, no CLIP notice")
    p.add_argument("--json", action="store_true", help="print a one-line JSON summary on stdout (for cron)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 4 when a source of this run failed or is missing (a path, folder or glob that is not "
        "there), for cron jobs; without it such sources are listed on stderr and in the report, exit 0",
    )
    p.add_argument(
        "--verify-content",
        action="store_true",
        help="hash every source's content again instead of trusting unchanged metadata "
        "(size, mtime, inode; ETag / version / Last-Modified for remote sources)",
    )
    g = p.add_argument_group("VLM captions (docs/CAPTION.md; off unless a URL is given)")
    g.add_argument(
        "--caption-url",
        help="OpenAI-compatible API base URL, e.g. http://localhost:8000/v1 "
        "(key from the environment variable caption.api_key_env, default OPENAI_API_KEY)",
    )
    g.add_argument("--caption-model", help="model name the server knows (default: caption.model, gpt-4o)")
    g.add_argument("--caption-budget", type=int, help="stop asking after this many requests (0: ask none)")
