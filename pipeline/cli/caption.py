"""`makeanything caption CORPUS --url URL --model NAME`: VLM captions for a corpus that already exists."""

from __future__ import annotations

import argparse
import json
import sys

from pydantic import ValidationError

from makeanything.exit_codes import EXIT_LOCKED, EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE
from pipeline.cli.common import caption_overrides, fail
from pipeline.config import BuildConfig


def cmd_caption(args: argparse.Namespace) -> int:
    from pipeline.corpus.existing import NotACorpus
    from pipeline.io.lock import LockBusy
    from pipeline.run.recaption import caption_corpus

    try:
        cfg = caption_overrides(BuildConfig.load(args.config).caption, args)
        if not cfg.url:
            raise ValueError("no endpoint: give --url or caption.url in --config")
        summary = caption_corpus(args.corpus, cfg, progress=not args.quiet)
    except (ValidationError, ValueError, NotACorpus, FileNotFoundError) as e:  # CurationError is a ValueError
        return fail(EXIT_USAGE, str(e), args.json)
    except LockBusy as e:
        return fail(EXIT_LOCKED, str(e), args.json)
    except Exception as e:  # noqa: BLE001 - the run itself could not complete
        return fail(EXIT_RUN_FAILED, f"caption failed: {type(e).__name__}: {e}", args.json)
    failed = summary["fallback"] - summary["not_asked_budget"]
    if failed and not summary["captioned"]:  # every request failed: the endpoint is wrong or down
        summary["status"] = "error"
        msg = (
            f"no caption request succeeded ({failed} samples kept the template); first reason: "
            f"{summary['first_fallback_reason']} (all reasons: {summary['out']}/caption-report.md)"
        )
        print(f"error: {msg}", file=sys.stderr)
        if args.json:
            print(json.dumps({**summary, "exit_code": EXIT_RUN_FAILED, "error": msg}))
        return EXIT_RUN_FAILED
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{summary['captioned']} samples captioned ({summary['already_captioned']} already had this model's "
            f"caption, {summary['fallback']} kept the template: see {summary['out']}/caption-report.md); "
            f"{summary['requests']} requests; {summary['shards_rewritten']} shards rewritten; "
            f"{summary['duration_s']:.1f}s"
        )
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "caption",
        help="add VLM captions (a process line + one line per step) to a built corpus",
        description="Ask a vision-language model behind an OpenAI-compatible chat-completions API "
        "(OpenAI, vLLM, Ollama, llama.cpp server) for a process caption and one line per "
        "step of every sample that has no caption by this model and prompt yet. Shards "
        "are written anew, never edited; safe to kill and rerun (docs/CAPTION.md). The "
        "API key comes from the environment variable caption.api_key_env "
        "(default OPENAI_API_KEY).",
    )
    c.add_argument("corpus", help="corpus folder or URL (s3://bucket/prefix) made by `makeanything build`")
    c.add_argument("--url", dest="caption_url", help="API base URL, e.g. http://localhost:8000/v1")
    c.add_argument("--model", dest="caption_model", help="model name the server knows (default gpt-4o)")
    c.add_argument("--budget", dest="caption_budget", type=int, help="stop asking after this many requests")
    c.add_argument("--config", help="YAML whose `caption:` section sets the rest (docs/CAPTION.md)")
    c.add_argument("--json", action="store_true", help="print a one-line JSON summary on stdout (for cron)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_caption)
