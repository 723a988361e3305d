"""`makeanything` command line: each package registers its own subcommands."""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules with `register(subparsers)`; each adds its subcommands with `set_defaults(func=...)`,
# where func(args) returns the process exit code (makeanything.exit_codes).
COMMAND_MODULES = [
    "pipeline.cli.build",
    "pipeline.cli.refresh",
    "pipeline.cli.corpus",
    "pipeline.cli.caption",
    "pipeline.cli.vacuum",
    "training.cli",
    "evaluation.cli",
]


def parser() -> argparse.ArgumentParser:
    from pipeline import __version__

    p = argparse.ArgumentParser(
        prog="makeanything",
        description="Build MakeAnything procedural-sequence corpora from tutorial videos and image "
        "folders, train models on the shards, and evaluate generated sequences.",
        epilog="Exit codes: 0 run completed (per-source failures are in the report), "
        "1 the run itself could not complete (inspect --verify: a problem found), "
        "2 usage or manifest/config error, 3 another job holds the output's lock, "
        "4 --strict: a source of this run failed or is missing.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
