"""`makeanything refresh` (incremental build for scheduled jobs) and `makeanything inspect`."""

from __future__ import annotations

import argparse
import json

from makeanything.exit_codes import EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE
from pipeline.cli.build import cmd_build
from pipeline.cli.common import fail, run_args


def cmd_inspect(args: argparse.Namespace) -> int:
    from pipeline.corpus.existing import NotACorpus, open_corpus
    from pipeline.corpus.inspection import curation_counts, describe, verify

    try:
        storage, index = open_corpus(args.corpus)
    except NotACorpus as e:
        return fail(EXIT_USAGE, str(e), args.json)
    problems = verify(storage, index) if args.verify else None
    if args.json:
        print(
            json.dumps(
                {
                    "out": str(storage),
                    "samples": index["samples"],
                    "shards": len(index["shards"]),
                    "splits": index["splits"],
                    "per_task": index["per_task"],
                    "runs": len(index["history"]),
                    "curation": curation_counts(index),
                    **({"problems": problems} if problems is not None else {}),
                }
            )
        )
    else:
        print(describe(storage, index))
        if problems is not None:
            print(
                "\n".join(f"PROBLEM: {p}" for p in problems)
                or f"verified: {index['samples']} samples in "
                f"{len(index['shards'])} shards agree with dataset.json and the ledger"
            )
    return EXIT_RUN_FAILED if problems else EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "refresh",
        help="add new sources to an existing corpus (only new or changed work)",
        description="Process only the sources of MANIFEST that the output's ledger has not seen "
        "under this config (plus failed ones with --retry-failed); new samples go to "
        "new shards, finished shards are never rewritten. Safe to kill and rerun.",
    )
    r.add_argument("manifest", help="manifest YAML")
    run_args(r)
    r.add_argument("--retry-failed", action="store_true", help="also redo sources that failed before")
    r.add_argument(
        "--rebuild",
        action="store_true",
        help="the config changed: reprocess every listed source under it; the old config's "
        "shards are retired when the run completes",
    )
    r.set_defaults(func=cmd_build)
    i = sub.add_parser(
        "inspect",
        help="per-task counts, shards, sizes and runs of a built corpus",
        description="Summarise CORPUS/dataset.json; --verify reads every shard and checks it "
        "against the index and ledger (exit 1 on any problem).",
    )
    i.add_argument("corpus", help="corpus folder or URL (s3://bucket/prefix) made by `makeanything build`")
    i.add_argument("--verify", action="store_true", help="read every shard and check it")
    i.add_argument("--json", action="store_true", help="one-line JSON instead of text")
    i.set_defaults(func=cmd_inspect)
