"""`makeanything inspect`: summarise dataset.json, and with --verify read every shard and check it
against the index and the ledger (a reader's guarantees: counts, unique keys, schema, checksums)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections import Counter, defaultdict

from PIL import Image

from pipeline.corpus import snapshots
from pipeline.corpus.index import split_of
from pipeline.corpus.ledger import Ledger
from pipeline.corpus.schema import MEMBERS, SchemaError, conform
from pipeline.io.storage import Storage


def curation_counts(index: dict, text: bool = False) -> dict | str:
    """Decisions and excluded samples by action (an index written before curation existed has none)."""
    cur = index.get("curation") or {"decisions": [], "excluded": {"drop": [], "hold-out": []}}
    counts = {
        "decisions": len(cur["decisions"]),
        "dropped": len(cur["excluded"]["drop"]),
        "held_out": len(cur["excluded"]["hold-out"]),
    }
    if not text:
        return counts
    return (
        f"{counts['decisions']} decision(s) in curation.yaml; {counts['dropped']} samples dropped, "
        f"{counts['held_out']} held out (still in the shards)"
    )


def describe(storage: Storage, index: dict) -> str:
    lines = [
        f"{storage}: {index['samples']} samples in {len(index['shards'])} shards "
        f"({sum(s['bytes'] for s in index['shards']) / 1e6:.1f} MB), config {index['config_sha'][:12]}",
        "splits: "
        + ", ".join(f"{k} {v['samples']} samples / {v['shards']} shards" for k, v in index["splits"].items())
        + (
            ""
            if index["splits"].get("val")
            else " (no validation split: no source fell into shards.val_fraction)"
        ),
        "sources: " + ", ".join(f"{k} {v}" for k, v in index["sources"].items()),
        "curation: " + curation_counts(index, text=True),
        "",
        "per task:",
    ]
    lines += [
        f"  {t:24s} {c['total']:6d}  ({', '.join(f'{k} {v}' for k, v in c.items() if k != 'total')})"
        for t, c in index["per_task"].items()
    ]
    lines += ["", "runs:"] + [
        f"  run {h['run']:3d}  {h.get('command', 'build'):8s} {h['started']}  {h['duration_s']:8.1f}s  "
        + ", ".join(f"{k} {v}" for k, v in h["counts"].items())
        for h in index["history"]
    ]
    return "\n".join(lines)


def _check_sample(
    key: str, parts: dict[str, bytes], index: dict, split: str, where: str
) -> tuple[list[str], str]:
    """Problems with one sample, and its task id."""
    if set(parts) != set(MEMBERS):
        return [f"{where}: sample {key} has members {sorted(parts)}, expected {sorted(MEMBERS)}"], ""
    try:
        meta = json.loads(parts["json"])
    except ValueError as e:
        return [f"{where}: {key}.json is not JSON: {e}"], ""
    try:
        if conform(meta) != meta:
            return [
                f"{where}: {key}.json is not in the schema's form (a float field holds an int, or a "
                "nullable field is absent instead of null)"
            ], ""
    except SchemaError as e:
        return [f"{where}: {e}"], ""
    bad = []
    if meta["key"] != key:
        bad.append(f"{where}: {key}.json says key {meta['key']!r}")
    if meta["pipeline"].get("config_sha") != index["config_sha"]:
        bad.append(
            f"{where}: {key} was made under config {meta['pipeline'].get('config_sha')}, "
            f"index says {index['config_sha']}"
        )
    if meta["caption"]["text"] != parts["txt"].decode("utf-8", "replace"):
        bad.append(f"{where}: {key}.txt differs from the caption in {key}.json")
    if split_of(meta["source"].get("sha256", ""), index["config"]["shards"]["val_fraction"]) != split:
        bad.append(f"{where}: {key} is in the {split} split but its source belongs to the other one")
    try:
        Image.open(io.BytesIO(parts["jpg"])).verify()
    except Exception as e:  # noqa: BLE001 - any decode error is the problem to report
        bad.append(f"{where}: {key}.jpg does not decode: {e}")
    return bad, meta["task"].get("id", "")


def _check_shard(
    storage: Storage, shard: dict, index: dict, ledger_keys: list[str] | None, seen: dict[str, str]
) -> list[str]:
    where = f"shards/{shard['name']}"
    try:
        data = storage.read(where)
    except FileNotFoundError:
        return [f"{where}: listed in dataset.json but missing"]
    problems = []
    if len(data) != shard["bytes"] or hashlib.sha256(data).hexdigest() != shard["sha256"]:
        problems.append(f"{where}: size or sha256 differs from dataset.json")
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar.getmembers():
                key, _, ext = m.name.partition(".")
                samples[key][ext] = tar.extractfile(m).read() if m.isfile() else b""
    except tarfile.TarError as e:
        return problems + [f"{where}: not a readable tar: {e}"]
    tasks: Counter = Counter()
    for key, parts in samples.items():
        if key in seen:
            problems.append(f"{where}: key {key} also in {seen[key]}")
        seen[key] = where
        bad, task = _check_sample(key, parts, index, shard["split"], where)
        problems += bad
        tasks[task] += 1
    if len(samples) != shard["samples"]:
        problems.append(f"{where}: {len(samples)} samples, dataset.json says {shard['samples']}")
    if dict(tasks) != shard["tasks"]:
        problems.append(f"{where}: per-task counts {dict(tasks)} differ from dataset.json {shard['tasks']}")
    if ledger_keys is None:
        problems.append(f"{where}: not recorded in the ledger")
    elif sorted(ledger_keys) != sorted(samples):
        problems.append(f"{where}: keys differ from the ledger's record of this shard")
    return problems


def verify(storage: Storage, index: dict) -> list[str]:
    """Every problem found, as one line each; [] when the dataset is sound."""
    ledger = Ledger.load(storage)
    problems = []
    if ledger.config_sha != index["config_sha"]:
        problems.append(f"ledger config {ledger.config_sha} differs from dataset.json {index['config_sha']}")
    indexed = {s["name"] for s in index["shards"]}
    live = {s["name"] for s in ledger.live_shards()}
    problems += [
        f"shards/{n}: recorded in the ledger but not in dataset.json" for n in sorted(live - indexed)
    ]
    on_storage = set(storage.list("shards"))
    retained: set[str] = set()  # files of older snapshots, kept for their readers until a vacuum
    for run in snapshots.runs(storage):
        listed = {s["name"] for s in snapshots.read(storage, run)["shards"]}
        problems += [
            f"{snapshots.path(run)}: lists shards/{n}, which is missing" for n in sorted(listed - on_storage)
        ]
        retained |= listed
    problems += [
        f"shards/{n}: on storage but not in dataset.json nor any snapshot (left by an interrupted run, or not ours)"
        for n in sorted(on_storage - indexed - retained)
    ]
    problems += [f".staging/{n}: temporary file left behind" for n in storage.list(".staging")]
    seen: dict[str, str] = {}
    for shard in index["shards"]:
        rec = ledger.shards.get(shard["name"])
        problems += _check_shard(storage, shard, index, rec["keys"] if rec else None, seen)
    if sum(s["samples"] for s in index["shards"]) != index["samples"]:
        problems.append("dataset.json: shard sample counts do not add up to its total")
    if sum(c["total"] for c in index["per_task"].values()) != index["samples"]:
        problems.append("dataset.json: per-task counts do not add up to its total")
    return problems
