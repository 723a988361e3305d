"""`makeanything caption CORPUS`: VLM captions for a corpus that already exists, under the refresh's rules.

Shards are never edited in place. Each shard holding samples without a caption by this model and prompt
is written anew (same samples and keys, new captions) as a new shard; one ledger record names the new
shard and retires the old one, so the dataset switches from one to the other atomically. ``dataset.json``
is written last (pipeline.corpus.snapshots.publish); the retired files stay for readers of older snapshots
until a vacuum deletes them. A crash leaves either an unrecorded new shard, deleted at the next start
(pipeline.corpus.vacuum.remove_orphan_shards), or a retired old one that the published snapshot still lists,
and a rerun captions what is left, from the answer cache where the VLM already answered: every sample ends up in the
dataset once, captioned once.
"""

from __future__ import annotations

import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from pipeline import __version__
from pipeline.caption.cache import default_cache_dir
from pipeline.caption.stage import Captioner
from pipeline.config import CaptionConfig, SnapshotConfig
from pipeline.corpus import snapshots
from pipeline.corpus.card import write_card
from pipeline.corpus.curation import load as load_curation
from pipeline.corpus.existing import open_corpus
from pipeline.corpus.index import make_index
from pipeline.corpus.ledger import Ledger
from pipeline.corpus.retire import replace_shard, shard_samples
from pipeline.corpus.shards import Sample
from pipeline.corpus.vacuum import after_run, remove_orphan_shards
from pipeline.io.atomic import write_json, write_text
from pipeline.io.failpoint import failpoint
from pipeline.io.lock import OutputLock
from pipeline.io.storage import Storage
from pipeline.report.run_report import caption_lines, corpus_report
from pipeline.taxonomy import Taxonomy

CAPTION_LANE = 998  # shard names {split}-r{run}-998-{n}: no lane the committer or a repack uses
Item = tuple[dict, list[Sample], list[Sample]]  # (ledger shard record, every sample, those to caption)


class CorpusCaptioner:
    """One `caption` run over the live shards of ``storage`` (the caller holds the output's lock)."""

    def __init__(
        self, storage: Storage, ledger: Ledger, captioner: Captioner, run: int, staging: Path
    ) -> None:
        self.storage, self.ledger, self.captioner, self.run, self.staging = (
            storage,
            ledger,
            captioner,
            run,
            staging,
        )
        self.rewritten: list[tuple[str, str]] = []  # (old shard, new shard)
        self.unreadable: dict[str, str] = {}

    def items(self, shards: list[dict]) -> Iterator[Item]:
        """Shards with something to caption, read one at a time; unreadable ones are noted and skipped."""
        for shard in shards:
            try:
                samples = shard_samples(self.storage.read(f"shards/{shard['name']}"))
            except (OSError, tarfile.TarError, ValueError, KeyError) as e:  # SchemaError is a ValueError
                self.unreadable[shard["name"]] = f"{type(e).__name__}: {e}"
                continue
            todo = [s for s in samples if self.captioner.wanted(s.meta)]
            if todo:
                yield shard, samples, todo

    def _publish(self, tmp: Path, name: str) -> None:
        self.storage.put(tmp, f"shards/{name}")
        failpoint("shard-published")

    def commit(self, shard: dict, samples: list[Sample], done: list[Sample]) -> None:
        """Write the shard anew with the captioned samples in place, then swap it for the old one in the ledger."""
        by_key = {s.key: s for s in done if s.meta["caption"]["model"]}
        if not by_key:
            return  # nothing new to write (all fell back): the old shard stays as it is
        new = replace_shard(
            self.storage,
            self.ledger,
            self.run,
            self.staging,
            shard,
            [by_key.get(s.key, s) for s in samples],
            CAPTION_LANE,
            len(self.rewritten),
            self._publish,
        )
        failpoint("committed")
        self.rewritten.append((shard["name"], new))


def _write_report(storage: Storage, run: int, report: dict) -> str:
    """``caption-report.json`` / ``.md`` in ``reports/run-NNNN/`` and, as the latest, at the root; returns
    the markdown."""
    with tempfile.TemporaryDirectory(prefix="makeanything-caption-") as tmp:
        write_json(Path(tmp) / "caption-report.json", report)
        md = [
            f"# Caption run {run}",
            "",
            f"{len(report['rewritten'])} shards rewritten with new captions; {report['duration_s']:.1f} s.",
        ] + caption_lines(report["caption"])
        md += [f"\nUnreadable shard `{k}`: {v}" for k, v in report["unreadable"].items()]
        write_text(Path(tmp) / "caption-report.md", "\n".join(md) + "\n")
        names = ["caption-report.json", "caption-report.md"]
        storage.upload_folder(Path(tmp), names, prefix=snapshots.reports(run))
        storage.upload_folder(Path(tmp), names)
    return "\n".join(md) + "\n"


def caption_corpus(out: str | Path, cfg: CaptionConfig, progress: bool = True) -> dict:
    """Caption every sample of the corpus in ``out`` that has no caption by ``cfg.model`` and its prompt;
    returns the one-line summary. NotACorpus, LockBusy and config errors raise before any request."""
    t0, started = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    storage, index = open_corpus(out)
    taxonomy = Taxonomy.load(index["config"].get("taxonomy"))
    captioner = Captioner(cfg, taxonomy, default_cache_dir(cfg, storage))
    with OutputLock(storage):
        curation = load_curation(storage)  # CurationError (exit 2) before any request
        ledger = Ledger.load(storage)
        orphans = remove_orphan_shards(storage, ledger)
        run = snapshots.next_run(storage, ledger, index)
        staging = storage.staging()
        job = CorpusCaptioner(storage, ledger, captioner, run, staging)
        shards = ledger.live_shards()
        try:
            with tqdm(total=len(shards), desc="shards", unit="shard", disable=not progress) as bar:
                for shard, samples, done in captioner.stream(
                    job.items(shards), lambda item: item[2], lambda item, done: (item[0], item[1], done)
                ):
                    job.commit(shard, samples, done)
                    bar.update(1)
                bar.update(len(shards) - bar.n)
        finally:
            storage.clear_staging(staging)
        summary = captioner.summary()
        counts = {
            "captioned": summary["captioned"],
            "fallback": summary["fallback"],
            "already_captioned": summary["already_captioned"],
            "requests": summary["requests"],
            "shards_rewritten": len(job.rewritten),
        }
        report = {
            "version": __version__,
            "run": run,
            "started": started,
            "duration_s": round(time.perf_counter() - t0, 3),
            "caption": summary,
            "rewritten": dict(job.rewritten),
            "unreadable": job.unreadable,
            "removed_orphan_shards": orphans,
        }
        run_md = _write_report(storage, run, report)
        history = index.get("history", []) + [
            snapshots.history_entry(
                run, "caption", ledger.config_sha, started, report["duration_s"], counts=counts
            )
        ]
        new_index = make_index(ledger, index["config"], history, curation)
        write_card(storage, new_index, taxonomy)  # it lists the shards too
        storage.write("report.md", corpus_report({**new_index, "snapshot": run}, run_md, run).encode())
        new_index = snapshots.publish(storage, new_index, run, "caption")
        ledger.compact()
        after_run(storage, ledger, SnapshotConfig.model_validate(index["config"].get("snapshots", {})))
    if job.unreadable:
        print(
            f"{len(job.unreadable)} shards could not be read: see {storage}/caption-report.md",
            file=sys.stderr,
        )
    return {
        "status": "ok",
        "out": str(storage),
        "run": run,
        **counts,
        "not_asked_budget": summary["not_asked_budget"],
        "first_fallback_reason": next(iter(summary["fallbacks"].values()), None),
        "unreadable_shards": len(job.unreadable),
        "removed_orphan_shards": len(orphans),
        "duration_s": round(time.perf_counter() - t0, 3),
    }
