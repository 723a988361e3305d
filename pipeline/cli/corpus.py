"""`makeanything curate` (curation decisions) and `makeanything review` (the static review site)."""

from __future__ import annotations

import argparse
import json
import time

from makeanything.exit_codes import EXIT_LOCKED, EXIT_OK, EXIT_USAGE
from pipeline.cli.common import fail, positive
from pipeline.taxonomy import Taxonomy


class UsageError(ValueError):
    """A curate request that names nothing in the corpus, or lacks a reason."""


def _requests(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(selector, value, action) for every decision asked for on the command line."""
    return (
        [("key", v, "drop") for v in args.drop]
        + [("source", v, "drop") for v in args.drop_source]
        + [("task", v, "drop") for v in args.drop_task]
        + [("task", v, "hold-out") for v in args.hold_out]
    )


def _check_names(requests: list[tuple[str, str, str]], rows: list[dict], taxonomy: Taxonomy) -> None:
    """Every key, source and task named must exist: a typo must not become a decision that drops nothing."""
    from pipeline.corpus.curation import source_names

    keys = {k for r in rows for k in r["keys"]}
    sources = {n for r in rows for k in r["keys"] for n in source_names(k, r["task"], r["sha256"], r["uri"])}
    for selector, value, _ in requests:
        if selector == "key" and value not in keys:
            raise UsageError(f"no sample has key {value!r} in this corpus")
        if selector == "source" and value not in sources:
            raise UsageError(
                f"no source is named {value!r} in this corpus (use its manifest id, sha256, "
                "the 16-digit prefix in its keys, or its URI)"
            )
        if selector == "task" and value not in taxonomy:
            raise UsageError(f"unknown task {value!r} (not in the corpus's task taxonomy)")


def cmd_curate(args: argparse.Namespace) -> int:
    from pipeline.corpus import snapshots
    from pipeline.corpus.card import write_card
    from pipeline.corpus.curation import Curation, CurationError, decide, load, resolve, save
    from pipeline.corpus.existing import NotACorpus, open_corpus
    from pipeline.corpus.index import live_rows
    from pipeline.corpus.ledger import Ledger
    from pipeline.io.lock import LockBusy, OutputLock

    try:
        storage, index = open_corpus(args.corpus)
    except NotACorpus as e:
        return fail(EXIT_USAGE, str(e), args.json)
    requests, started = _requests(args), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        with OutputLock(storage):
            curation = load(storage)
            ledger = Ledger.load(storage)
            rows = live_rows(ledger)
            taxonomy = Taxonomy.load(index["config"].get("taxonomy"))
            if requests and not args.reason:
                raise UsageError(
                    "say why: --reason is required with --drop, --drop-source, --drop-task, --hold-out"
                )
            _check_names(requests, rows, taxonomy)
            kept = [d for d in curation.decisions if d.selector[1] not in args.undo]
            missing = set(args.undo) - {d.selector[1] for d in curation.decisions}
            if missing:
                raise UsageError(f"no decision selects {sorted(missing)[0]!r} (see curation.yaml)")
            new = [decide(sel, value, action, args.reason, args.by) for sel, value, action in requests]
            curation = Curation(decisions=kept + new)
            save(storage, curation)
            index["curation"] = resolve(curation, rows)
            # a curate run commits like any other: its own number, history entry, report and snapshot
            run, ex = snapshots.next_run(storage, ledger, index), index["curation"]["excluded"]
            counts = {
                "decisions": len(curation.decisions),
                "dropped": len(ex["drop"]),
                "held_out": len(ex["hold-out"]),
            }
            storage.write(
                f"{snapshots.reports(run)}/curate-report.json", json.dumps({"run": run, **counts}).encode()
            )
            index["history"] = index.get("history", []) + [
                snapshots.history_entry(run, "curate", index["config_sha"], started, 0.0, counts=counts)
            ]
            write_card(storage, index, taxonomy)
            index = snapshots.publish(storage, index, run, "curate")
    except (CurationError, UsageError) as e:
        return fail(EXIT_USAGE, str(e), args.json)
    except LockBusy as e:
        return fail(EXIT_LOCKED, str(e), args.json)
    ex = index["curation"]["excluded"]
    summary = {
        "status": "ok",
        "decisions": len(curation.decisions),
        "dropped": len(ex["drop"]),
        "held_out": len(ex["hold-out"]),
        "samples": index["samples"],
    }
    print(
        json.dumps(summary)
        if args.json
        else f"{summary['decisions']} decision(s) in {storage}/curation.yaml: {summary['dropped']} of "
        f"{summary['samples']} samples dropped, {summary['held_out']} held out; dataset.json and README.md updated"
    )
    return EXIT_OK


def cmd_review(args: argparse.Namespace) -> int:
    from pipeline.corpus.curation import CurationError
    from pipeline.corpus.existing import NotACorpus
    from pipeline.review.site import SiteFolderError, write_site

    try:
        stats = write_site(args.corpus, args.out, page_size=args.page_size, thumb_side=args.thumb)
    except (NotACorpus, SiteFolderError, CurationError) as e:
        return fail(EXIT_USAGE, str(e), args.json)
    print(
        json.dumps(stats)
        if args.json
        else f"{stats['sequences']} sequences of {stats['tasks']} tasks, {stats['rejected']} rejected sources -> "
        f"{stats['out']}/index.html ({stats['thumbs_written']} thumbnails written, {stats['thumbs_reused']} reused; "
        f"{stats['seconds']:.1f}s)"
    )
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "review",
        help="write a static review site of a corpus (works offline, from the file system)",
        description="Write SITE/index.html (per-task counts, drop reasons, curation decisions), a page "
        "per task with every sequence (grid thumbnail, steps with timestamps or file "
        "names, scores, source; filters by task, source, split and score range; paged), "
        "and the rejected sources with their reasons. Thumbnails are written once and "
        "reused by later runs. No network: open SITE/index.html in a browser.",
    )
    r.add_argument("corpus", help="corpus folder or URL (s3://bucket/prefix)")
    r.add_argument("--out", required=True, help="site folder (created; updated in place by later runs)")
    r.add_argument("--page-size", type=positive, default=60, help="sequences per page (default 60)")
    r.add_argument("--thumb", type=positive, default=256, help="thumbnail long side in pixels (default 256)")
    r.add_argument("--json", action="store_true", help="one-line JSON summary on stdout")
    r.set_defaults(func=cmd_review)

    c = sub.add_parser(
        "curate",
        help="drop a sequence, a source or a task, or hold a task out (curation.yaml)",
        description="Record curation decisions in CORPUS/curation.yaml and apply them: dataset.json "
        "lists the samples each decision excludes, the trainer skips dropped and "
        "held-out samples, evaluate skips dropped ones, a refresh does not build a "
        "dropped source. Shards are never rewritten. With no decision options, "
        "validate a hand-edited curation.yaml and apply it (exit 2 names the line).",
    )
    c.add_argument("corpus", help="corpus folder or URL (s3://bucket/prefix)")
    c.add_argument("--drop", action="append", default=[], metavar="KEY", help="drop one sequence by its key")
    c.add_argument(
        "--drop-source",
        action="append",
        default=[],
        metavar="SOURCE",
        help="drop every sequence of a source: manifest id, sha256 (or the 16-digit prefix in keys), or URI",
    )
    c.add_argument(
        "--drop-task", action="append", default=[], metavar="TASK", help="drop every sequence of a task"
    )
    c.add_argument(
        "--hold-out",
        action="append",
        default=[],
        metavar="TASK",
        help="keep a task out of training (evaluate still reads it)",
    )
    c.add_argument(
        "--undo",
        action="append",
        default=[],
        metavar="SELECTOR",
        help="remove the decisions that select this key, source or task",
    )
    c.add_argument("--reason", help="why (required with a decision); shown in the card and the review site")
    c.add_argument("--by", help="who decides (default: the current user)")
    c.add_argument("--json", action="store_true", help="one-line JSON summary on stdout")
    c.set_defaults(func=cmd_curate)
