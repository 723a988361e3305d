"""Find the sequences behind each `[METHOD=]PATH` argument and hand each file to its adapter."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from evaluation.adapters import read_manifest, read_shard
from evaluation.sequence import InputError, Sequence
from pipeline.corpus.snapshots import is_corpus, pin
from pipeline.taxonomy import Taxonomy

MANIFEST = "sequences.jsonl"
log = logging.getLogger("makeanything.evaluate")


def parse_spec(spec: str) -> tuple[str, Path]:
    """`ours=runs/gen` -> ('ours', runs/gen); a bare path is named after its folder."""
    name, sep, rest = spec.partition("=")
    if sep and name and "/" not in name:
        return name, Path(rest)
    path = Path(spec)
    return (path.stem if path.is_file() else path.resolve().name), path


def _files(path: Path, pins: dict[str, int | None]) -> list[Path]:
    """The files of one input. A built corpus is read as its latest snapshot, pinned now (recorded in
    ``pins``), so a refresh running meanwhile changes nothing this evaluation reads."""
    if path.is_file():
        return [path]
    if is_corpus(str(path)):
        pinned = pin(str(path))
        pins[str(path)] = pinned.snapshot
        log.info("evaluate: %s", pinned.describe())
        return [Path(u) for u in pinned.urls()]
    found = sorted(path.glob("*.tar")) + sorted(path.glob("shards/*.tar"))
    if (path / MANIFEST).is_file():
        found.append(path / MANIFEST)
    return found


def load_inputs(
    specs: list[str],
    taxonomy: Taxonomy,
    video_frames: int | None = None,
    pins: dict[str, int | None] | None = None,
) -> Iterator[Sequence | InputError]:
    """Every sequence of every input, in order; unreadable inputs come out as `InputError`s. ``pins``
    receives the snapshot each corpus among the inputs was read at."""
    pins = {} if pins is None else pins
    for spec in specs:
        method, path = parse_spec(spec)
        if not path.exists():
            yield InputError(str(path), "does not exist", method)
            continue
        files = _files(path, pins)
        if not files:
            yield InputError(str(path), f"holds no *.tar shards and no {MANIFEST}", method)
        for f in files:
            if f.suffix == ".tar" and not f.exists():  # listed by the pinned snapshot, then deleted
                yield InputError(
                    str(f), f"vanished from snapshot {pins.get(str(path))} (vacuumed or deleted)", method
                )
            elif f.suffix == ".tar":
                yield from read_shard(f, method, taxonomy)
            elif f.suffix == ".jsonl":
                yield from read_manifest(f, method, taxonomy, video_frames)
            else:
                yield InputError(str(f), "not a .tar shard or a .jsonl manifest", method)
