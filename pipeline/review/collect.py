"""Read a built corpus for the review site: one compact record per sequence (thumbnails written on the way),
the rejected sources with their reasons, and the frame drops by reason."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from pipeline.corpus import snapshots
from pipeline.corpus.curation import Curation, Decision, source_names
from pipeline.corpus.ledger import Ledger
from pipeline.io.storage import Storage

SCORES = {
    "gain": ("process", "gain"),
    "monotonic": ("process", "monotonic"),
    "area": ("process", "area"),
    "step_change": ("process", "step_change"),
    "clip": (None, "clip"),
    "elements": ("process", "elements"),  # drawings: drawable elements, and those that added something
    "visible_additions": ("process", "visible_additions"),
}


def present_scores(records: list[dict]) -> list[str]:
    """The score names at least one of ``records`` has, in SCORES order: a page offers only those (a folder
    taken as given has none, a drawing only its element counts), so its score filter can match something."""
    return [name for name in SCORES if any(r["sc"].get(name) is not None for r in records)]


@dataclass
class Reviewed:
    index: dict
    records: dict[str, list[dict]] = field(default_factory=dict)  # task -> records
    rejected: list[dict] = field(default_factory=list)
    frame_drops: Counter = field(default_factory=Counter)
    thumbs_written: int = 0
    thumbs_reused: int = 0
    vanished: list[str] = field(default_factory=list)  # shards dataset.json listed, gone since (vacuumed)


def _decisions(index: dict) -> Curation:
    raw = (index.get("curation") or {}).get("decisions", [])
    return Curation(decisions=[Decision(**{k: v for k, v in d.items() if k != "samples"}) for d in raw])


def _step_label(frame: dict) -> str:
    if frame["file"]:
        return frame["file"]
    return f"{frame['time']:.1f}s" if frame["time"] is not None else f"#{frame['source_frame']}"


def record(meta: dict, split: str, thumb: str, verdict: Decision | None) -> dict:
    """What the site shows of one sequence, with short keys (a 20,000-sequence task stays a few MB)."""
    src, scores = meta["source"], meta["scores"]
    return {
        "k": meta["key"],
        "t": meta["task"]["id"],
        "sp": split,
        "th": thumb,
        "c": meta["caption"]["text"],
        "u": src["uri"],
        "i": src["id"] or src["sha256"][:16],
        "kd": src["kind"],
        "l": src["license"],
        "st": [_step_label(f) for f in meta["frames"]],
        "sc": {name: (scores[a][b] if a else scores[b]) for name, (a, b) in SCORES.items()},
        "x": [verdict.action, verdict.reason, verdict.by, verdict.at] if verdict else None,
    }


def thumbnail(jpg: bytes, side: int) -> bytes:
    """A small JPEG of the grid; the decoder scales while it decodes (draft), so this stays cheap."""
    with Image.open(io.BytesIO(jpg)) as im:
        im.draft("RGB", (side, side))
        im = im.convert("RGB")
        im.thumbnail((side, side), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=82)
    return buf.getvalue()


def thumb_writer(folder: Path, side: int, reviewed: Reviewed) -> Callable[[str, bytes], str]:
    """Writes ``thumbs/KEY-DIGEST.jpg`` once: a later run finds it and reuses it (the digest of the grid
    changes when a rebuild changes the grid, so a stale thumbnail is never shown)."""
    folder.mkdir(parents=True, exist_ok=True)

    def write(key: str, jpg: bytes) -> str:
        name = f"{key}-{hashlib.sha1(jpg).hexdigest()[:12]}.jpg"
        path = folder / name
        if path.exists():
            reviewed.thumbs_reused += 1
        else:
            tmp = path.with_name(f".{name}.tmp")
            tmp.write_bytes(thumbnail(jpg, side))
            tmp.replace(path)
            reviewed.thumbs_written += 1
        return f"{folder.name}/{name}"

    return write


def _members(data: bytes) -> dict[str, dict[str, bytes]]:
    groups: dict[str, dict[str, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            if m.isfile():
                key, _, ext = m.name.partition(".")
                if ext in ("json", "jpg"):
                    groups.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return groups


def collect(
    storage: Storage, index: dict, thumb: Callable[[str, bytes], str], reviewed: Reviewed
) -> Reviewed:
    curation = _decisions(index)
    for shard in index["shards"]:  # the snapshot dataset.json named when the site was started
        try:
            data = storage.read(f"shards/{shard['name']}")
        except FileNotFoundError:
            reviewed.vanished.append(shard["name"])
            print(
                f"warning: shards/{shard['name']} of snapshot {index.get('snapshot')} has vanished "
                "(vacuumed or deleted): skipped",
                file=sys.stderr,
            )
            continue
        for key, m in _members(data).items():
            meta = json.loads(m["json"])
            task, src = meta["task"]["id"], meta["source"]
            verdict = curation.verdict(key, task, source_names(key, task, src["sha256"], src["uri"]))
            reviewed.records.setdefault(task, []).append(
                record(meta, shard["split"], thumb(key, m["jpg"]), verdict)
            )
    ledger = Ledger.load(storage)
    reviewed.rejected = sorted(
        (
            {k: r[k] for k in ("uri", "task", "status", "reason", "run")}
            for r in ledger.current_rows()
            if r["status"] != "ok"
        ),
        key=lambda r: (r["task"], r["uri"]),
    )
    for run in (h["run"] for h in index["history"] if h["config_sha"] == index["config_sha"]):
        try:
            report = json.loads(storage.read(f"{snapshots.reports(run)}/report.json"))
        except FileNotFoundError:  # a corpus from before per-run reports: its runs' drops are unknown
            continue
        reviewed.frame_drops.update(report["drops"]["frames"])
    return reviewed
