"""`makeanything vacuum CORPUS`: delete the shard files that no snapshot within the retention refers to."""

from __future__ import annotations

import argparse
import json

from makeanything.exit_codes import EXIT_LOCKED, EXIT_OK, EXIT_USAGE
from pipeline.cli.common import fail


def cmd_vacuum(args: argparse.Namespace) -> int:
    from pipeline.config import SnapshotConfig
    from pipeline.corpus.existing import NotACorpus, open_corpus
    from pipeline.corpus.index import read_index
    from pipeline.corpus.ledger import Ledger
    from pipeline.corpus.vacuum import DAY, vacuum
    from pipeline.io.lock import LockBusy, OutputLock

    if args.retention is not None and args.retention < 0:
        return fail(EXIT_USAGE, f"--retention {args.retention}: days must be >= 0", args.json)
    try:
        storage, _ = open_corpus(args.corpus)  # the index is read again under the lock
    except NotACorpus as e:
        return fail(EXIT_USAGE, str(e), args.json)
    try:
        with OutputLock(storage):
            index = read_index(storage) or {}
            days = args.retention
            if days is None:
                days = SnapshotConfig.model_validate(index["config"].get("snapshots", {})).retention_days
            done = vacuum(storage, Ledger.load(storage), days * DAY, dry_run=args.dry_run)
    except LockBusy as e:
        return fail(EXIT_LOCKED, str(e), args.json)
    summary = {"status": "ok", "dry_run": args.dry_run, "retention_days": days, **done.summary()}
    if args.json:
        print(json.dumps(summary))
        return EXIT_OK
    verb = "would delete" if args.dry_run else "deleted"
    for run in done.expired:
        print(f"{verb} snapshots/{run:06d}.json")
    for name in done.files:
        print(f"{verb} shards/{name}")
    print(
        f"{storage}: {verb} {len(done.expired)} snapshot(s) replaced more than {days:g} day(s) ago and "
        f"{len(done.files)} shard file(s) ({done.bytes / 1e6:.1f} MB) no kept snapshot lists; "
        f"kept snapshots {done.kept}"
    )
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser(
        "vacuum",
        help="delete retired shard files that no snapshot within the retention refers to",
        description="Every committed run is a snapshot (snapshots/NNNNNN.json); a run never deletes the "
        "shards it retires, so readers that pinned an older snapshot (a training run) keep reading. "
        "vacuum deletes the snapshots replaced more than the retention ago, then the shard files no "
        "kept snapshot lists. Takes the corpus's lock; safe to kill and rerun. See docs/REFRESH.md.",
    )
    v.add_argument("corpus", help="corpus folder or URL (s3://bucket/prefix)")
    v.add_argument(
        "--retention",
        type=float,
        metavar="DAYS",
        help="keep what snapshots replaced less than DAYS ago list (default: the corpus's "
        "snapshots.retention_days, 7); 0 keeps only the latest snapshot's files",
    )
    v.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    v.add_argument("--json", action="store_true", help="one-line JSON summary on stdout")
    v.set_defaults(func=cmd_vacuum)
