"""Find the sequences behind each `[METHOD=]PATH` argument and hand each file to its adapter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from evaluation.adapters import read_manifest, read_shard
from evaluation.sequence import InputError, Sequence
from pipeline.taxonomy import Taxonomy

MANIFEST = "sequences.jsonl"


def parse_spec(spec: str) -> tuple[str, Path]:
    """`ours=runs/gen` -> ('ours', runs/gen); a bare path is named after its folder."""
    name, sep, rest = spec.partition("=")
    if sep and name and "/" not in name:
        return name, Path(rest)
    path = Path(spec)
    return (path.stem if path.is_file() else path.resolve().name), path


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    found = sorted(path.glob("*.tar")) + sorted(path.glob("shards/*.tar"))
    if (path / MANIFEST).is_file():
        found.append(path / MANIFEST)
    return found


def load_inputs(
    specs: list[str], taxonomy: Taxonomy, video_frames: int | None = None
) -> Iterator[Sequence | InputError]:
    """Every sequence of every input, in order; unreadable inputs come out as `InputError`s."""
    for spec in specs:
        method, path = parse_spec(spec)
        if not path.exists():
            yield InputError(str(path), "does not exist", method)
            continue
        files = _files(path)
        if not files:
            yield InputError(str(path), f"holds no *.tar shards and no {MANIFEST}", method)
        for f in files:
            if f.suffix == ".tar":
                yield from read_shard(f, method, taxonomy)
            elif f.suffix == ".jsonl":
                yield from read_manifest(f, method, taxonomy, video_frames)
            else:
                yield InputError(str(f), "not a .tar shard or a .jsonl manifest", method)
