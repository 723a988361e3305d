"""Adapters: each turns one input format into `Sequence`s in step order, recording the original frame count.

Formats: our shards (docs/FORMAT.md), the authors' released tars (`KEY.jpg` + `KEY.caption`), and
manifest rows (`sequences.jsonl`) pointing at a grid with a declared layout and reading order, a
folder or list of frames, or a video resampled to K frames. Another method's outputs come in by
writing such a manifest.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from evaluation.sequence import InputError, Sequence
from pipeline.corpus.curation import Exclusions
from pipeline.layout import Layout, split
from pipeline.taxonomy import Taxonomy

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
STEP_MARK = re.compile(r"<image-(\d+)>")
AUTHORS_GRID = re.compile(r"(\d+)\s*\*\s*(\d+)\s+of\s+(\d+)\s+sub-images")
AUTHORS_HEAD = re.compile(r"--lora_up_cur\s+(\d+)")
NUMBER = re.compile(r"(\d+)")


class AdapterError(ValueError):
    """A problem with one input; the message says what is wrong."""


def parse_caption(caption: str, frames: int) -> tuple[str, list[str] | None]:
    """Split a caption into the prompt and per-step texts.

    Step texts come from `<image-k>` markers (the paper's hierarchical captions) or, failing that,
    from exactly one extra line per frame after the first line.
    """
    parts = STEP_MARK.split(caption)
    if len(parts) > 1:
        steps = {int(n): text.strip(" ,;\n") for n, text in zip(parts[1::2], parts[2::2])}
        if sorted(steps) != list(range(1, frames + 1)):
            raise AdapterError(f"caption marks steps {sorted(steps)}, expected <image-1>..<image-{frames}>")
        return parts[0].strip(" ,;\n"), [steps[i] for i in range(1, frames + 1)]
    lines = [ln.strip() for ln in caption.strip().splitlines() if ln.strip()]
    if not lines:
        raise AdapterError("empty caption")
    if len(lines) == frames + 1:
        return lines[0], lines[1:]
    return " ".join(lines), None


def open_image(data: bytes | Path, what: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
        img.load()
        return img.convert("RGB")
    except Exception as exc:  # PIL raises several types for unreadable images
        raise AdapterError(f"{what}: not a readable image ({exc})") from exc


def uniform_indices(n: int, k: int) -> list[int]:
    """k indices spread evenly over n items, first and last included."""
    if n < k:
        raise AdapterError(f"has {n} frames, fewer than the {k} requested")
    return [int(i) for i in np.round(np.linspace(0, n - 1, k))]


def _natural(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in NUMBER.split(path.name)]


def _task_frames(taxonomy: Taxonomy, task: str) -> int:
    if task not in taxonomy:
        raise AdapterError(f"unknown task {task!r} (not in the taxonomy)")
    return taxonomy[task].frames


# --- shards ------------------------------------------------------------------------------------


def read_shard(path: Path, method: str, taxonomy: Taxonomy) -> Iterator[Sequence | InputError]:
    """Samples of one tar: ours (jpg+txt+json) or the authors' (jpg/png + caption)."""
    try:
        with tarfile.open(path) as tar:
            groups: dict[str, dict[str, bytes]] = {}
            for m in tar.getmembers():
                if not m.isfile():
                    continue
                name = m.name.rsplit("/", 1)[-1]
                key, _, ext = name.partition(".")
                groups.setdefault(key, {})[ext.lower()] = tar.extractfile(m).read()
    except (OSError, tarfile.TarError) as exc:
        yield InputError(str(path), f"unreadable tar ({exc})", method)
        return
    skip = Exclusions(Exclusions.EVALUATION)  # samples a curator dropped (dataset.json); held-out ones stay
    for key, members in groups.items():
        if skip(key, str(path)):
            continue
        source = f"{path}:{key}"
        try:
            yield _shard_sample(key, members, method, taxonomy, source)
        except (AdapterError, ValueError, KeyError, TypeError) as exc:
            yield InputError(source, str(exc), method)


def _shard_sample(key: str, m: dict[str, bytes], method: str, taxonomy: Taxonomy, source: str) -> Sequence:
    image = next((m[e] for e in ("jpg", "jpeg", "png", "webp") if e in m), None)
    if image is None:
        raise AdapterError(f"no grid image among members {sorted(m)}")
    grid = open_image(image, "grid image")
    if "json" in m:
        meta = json.loads(m["json"])
        task = meta["task"]["id"]
        lay = meta["layout"]
        layout = Layout(
            rows=lay["rows"],
            cols=lay["cols"],
            cell=lay["cell"],
            order=lay["order"],
            separator=lay.get("separator", 0),
        )
        caption = m["txt"].decode() if "txt" in m else meta["caption"]["text"]
    elif "caption" in m:
        caption = m["caption"].decode()
        head, size = AUTHORS_HEAD.search(caption), AUTHORS_GRID.search(caption)
        if head is None:
            raise AdapterError("authors' caption has no --lora_up_cur tag naming the task")
        if size is None:
            raise AdapterError("authors' caption does not say 'R*C of N sub-images'")
        task = taxonomy.by_head(int(head.group(1))).id
        rows, cols = int(size.group(1)), int(size.group(2))
        layout = Layout(rows=rows, cols=cols, cell=max(16, grid.width // cols), order="serpentine")
        caption = AUTHORS_HEAD.sub("", caption).strip()
    else:
        raise AdapterError(f"no KEY.json or KEY.caption beside the image (members {sorted(m)})")
    _task_frames(taxonomy, task)
    prompt, steps = parse_caption(caption, layout.frames)
    return Sequence(
        key=key,
        method=method,
        task=task,
        prompt=prompt,
        frames=split(grid, layout),
        grid=grid,
        source=source,
        original_frames=layout.frames,
        steps=steps,
        layout={"rows": layout.rows, "cols": layout.cols, "order": layout.order},
    )


# --- manifest rows -----------------------------------------------------------------------------


def _grid_row(row: dict, base: Path, taxonomy: Taxonomy) -> tuple[list[Image.Image], Image.Image, dict]:
    grid = open_image(base / row["grid"], f"grid {row['grid']}")
    declared = row.get("layout") or {}
    if not isinstance(declared, dict):
        raise AdapterError("'layout' must be an object with rows, cols, order (serpentine|raster)")
    spec = {**taxonomy[row["task"]].layout.model_dump(), **declared}
    spec["cell"] = max(16, grid.width // spec["cols"])
    spec.setdefault("separator", 0)
    layout = Layout(**spec)
    return split(grid, layout), grid, {"rows": layout.rows, "cols": layout.cols, "order": layout.order}


def _frames_row(row: dict, base: Path) -> list[Image.Image]:
    given = row["frames"]
    if isinstance(given, str):
        folder = base / given
        if not folder.is_dir():
            raise AdapterError(f"frames folder {given} does not exist")
        paths = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXT), key=_natural)
    else:
        paths = [base / p for p in given]
    if len(paths) < 2:
        raise AdapterError(f"needs at least 2 frames, found {len(paths)}")
    return [open_image(p, f"frame {p.name}") for p in paths]


def _video_row(row: dict, base: Path, k: int) -> tuple[list[Image.Image], int]:
    import av

    path = base / row["video"]
    try:
        with av.open(str(path)) as box:
            decoded = [f.to_image() for f in box.decode(video=0)]
    except Exception as exc:  # av raises its own error family for broken or missing files
        raise AdapterError(f"video {row['video']}: cannot decode ({exc})") from exc
    return [decoded[i].convert("RGB") for i in uniform_indices(len(decoded), k)], len(decoded)


def read_manifest(
    path: Path, method: str, taxonomy: Taxonomy, video_frames: int | None
) -> Iterator[Sequence | InputError]:
    """One sequence per JSONL row; paths in rows are relative to the manifest's folder."""
    base = path.parent
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        source = f"{path}:{n}"
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise AdapterError("row is not a JSON object")
            missing = [f for f in ("task", "prompt") if f not in row]
            if missing:
                raise AdapterError(f"row lacks {', '.join(missing)}")
            frames_needed = _task_frames(taxonomy, row["task"])
            kinds = [k for k in ("grid", "frames", "video") if k in row]
            if len(kinds) != 1:
                raise AdapterError(
                    f"row must have exactly one of grid, frames, video (has {kinds or 'none'})"
                )
            grid = layout = None
            if kinds[0] == "grid":
                frames, grid, layout = _grid_row(row, base, taxonomy)
                original = len(frames)
            elif kinds[0] == "frames":
                frames = _frames_row(row, base)
                original = len(frames)
            else:
                k = int(row.get("frames_k") or video_frames or frames_needed)
                frames, original = _video_row(row, base, k)
            steps = row.get("steps")
            if steps is not None and len(steps) != len(frames):
                raise AdapterError(f"{len(steps)} step texts for {len(frames)} frames")
            yield Sequence(
                key=str(row.get("key") or f"{path.stem}-{n}"),
                method=str(row.get("method") or method),
                task=row["task"],
                prompt=str(row["prompt"]),
                frames=frames,
                grid=grid,
                source=source,
                original_frames=original,
                steps=steps,
                layout=layout,
            )
        except (AdapterError, ValueError, KeyError, TypeError, OSError) as exc:
            yield InputError(source, str(exc), method)
