"""``DIR/dataset.json``: the reader's entry point. Shards with sample counts, sizes and sha256, per-task and
per-split counts, and the build history. Written last in a run, atomically, from the ledger.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

from pipeline import __version__
from pipeline.corpus.curation import Curation, resolve
from pipeline.corpus.ledger import Ledger
from pipeline.io.redact import redact_json
from pipeline.io.storage import Storage

NAME = "dataset.json"
FORMAT = "makeanything-dataset/1"


def split_of(source_sha256: str, val_fraction: float) -> str:
    """Train/val by source (every sequence of one video lands in the same split); the same in every run."""
    bucket = int(hashlib.sha256(f"split:{source_sha256}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if bucket < val_fraction else "train"


def read_index(storage: Storage) -> dict | None:
    try:
        return json.loads(storage.read(NAME))
    except FileNotFoundError:
        return None


def live_rows(ledger: Ledger) -> list[dict]:
    """Ledger rows of the sources whose samples the current config's shards hold."""
    return [r for r in ledger.current_rows() if r["status"] == "ok" and r["keys"]]


def _licenses(rows: list[dict]) -> list[dict]:
    """Licenses and attributions as the manifests gave them, with how many sources and samples each covers."""
    groups: dict[tuple, Counter] = {}
    for r in rows:
        groups.setdefault((r.get("license"), r.get("attribution")), Counter()).update(
            sources=1, samples=len(r["keys"])
        )
    return [
        {"license": lic, "attribution": att, **c}
        for (lic, att), c in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1])))
    ]


def make_index(ledger: Ledger, config: dict, history: list[dict], curation: Curation | None = None) -> dict:
    """``curation``: the corpus's decisions (curation.yaml); the index lists the samples each excludes."""
    shards = ledger.live_shards()
    rows = live_rows(ledger)
    per_task: dict[str, Counter] = {}
    splits: dict[str, Counter] = {}
    for s in shards:
        splits.setdefault(s["split"], Counter()).update(shards=1, samples=s["samples"], bytes=s["bytes"])
        for task, n in s["tasks"].items():
            per_task.setdefault(task, Counter())[s["split"]] += n
    status = Counter(r["status"] for r in ledger.current_rows())
    return {
        "format": FORMAT,
        "version": __version__,
        "config_sha": ledger.config_sha,
        "config": redact_json(config),  # no credentials (the caption URL) here nor in the card made from it
        "samples": sum(s["samples"] for s in shards),
        "shards": [
            {k: s[k] for k in ("name", "split", "samples", "bytes", "sha256", "run", "tasks")} for s in shards
        ],
        "splits": {k: dict(v) for k, v in sorted(splits.items())},
        "per_task": {t: dict(c, total=sum(c.values())) for t, c in sorted(per_task.items())},
        "sources": {k: status.get(k, 0) for k in ("ok", "rejected", "failed")},
        "licenses": _licenses(rows),
        "curation": resolve(curation or Curation(), rows),
        "history": redact_json(history),
    }


def write_index(storage: Storage, index: dict) -> None:
    storage.write(NAME, json.dumps(index, indent=2).encode())
