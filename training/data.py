"""Streaming training samples from WebDataset shards (our format and the authors' released format).

Only image, json and text members are decoded (never pickles). Grids are resized cell by cell, so cell
boundaries land exactly on token boundaries and no step bleeds into its neighbour; nothing is cropped or
flipped, which would break the step order.
"""

from __future__ import annotations

import glob
import io
import json
import random
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.shardlists import expand_urls
from webdataset.tariterators import group_by_keys, tar_file_expander

from pipeline.caption.record import template_of
from pipeline.corpus.curation import Exclusions
from pipeline.corpus.snapshots import Pinned, is_corpus, pin
from pipeline.layout import Layout
from pipeline.taxonomy import Taxonomy

IMAGE_EXTS = ("jpg", "jpeg", "png")
TEXT_EXTS = ("txt", "caption")
DECODED = frozenset(IMAGE_EXTS + TEXT_EXTS + ("json",))
LORA_TAG = re.compile(r"--lora_up_cur\s+(\d+)")
GRID_CAPTION = re.compile(r"(\d+)\s*\*\s*(\d+)\s+of\s+\d+\s+sub-images")


class DataError(ValueError):
    """A shard spec or sample that cannot be used; the message names it."""


@dataclass(frozen=True)
class ShardSet:
    """The shard URLs of ``data.shards``, with the snapshot each corpus among them resolved to: a corpus
    (a folder or URL holding dataset.json) is read as one snapshot, never as whatever tars sit in it."""

    specs: tuple[str, ...]
    urls: tuple[str, ...]
    pins: tuple[Pinned, ...] = ()

    @property
    def label(self) -> int | str | None:
        """The snapshot a sample came from: its number (one corpus), root@number each (several), None
        (loose tars)."""
        if len(self.pins) == 1:
            return self.pins[0].snapshot
        return ",".join(f"{p.root}@{p.snapshot}" for p in self.pins) or None

    def newest(self) -> ShardSet:
        """The same specs resolved again: corpora move to their latest snapshot."""
        return resolve_shards(list(self.specs)) if self.pins else self

    def describe(self) -> list[str]:
        return [p.describe() for p in self.pins]


def resolve_shards(specs: list[str]) -> ShardSet:
    """Shard URLs from build folders, tar paths, globs, brace patterns and remote URLs, in a stable order;
    a corpus is pinned to its latest snapshot (pipeline.corpus.snapshots)."""
    out: list[str] = []
    pins: list[Pinned] = []
    for spec in specs:
        for url in expand_urls(spec):
            if not any(c in url for c in "*?[") and is_corpus(url.removeprefix("file://")):
                pins.append(pin(url.removeprefix("file://")))
                found = pins[-1].urls()
            elif "://" in url and not url.startswith("file://"):
                proto = url.split("://", 1)[0]
                if any(c in url for c in "*?["):
                    fs = fsspec.filesystem(proto)
                    found = sorted(f"{proto}://{p}" for p in fs.glob(url))
                else:
                    found = [url]
            else:
                path = Path(url.removeprefix("file://")).expanduser()
                if path.is_dir():
                    folder = path / "shards" if (path / "shards").is_dir() else path
                    found = sorted(str(p) for p in folder.glob("*.tar"))
                elif any(c in url for c in "*?["):
                    found = sorted(glob.glob(str(path)))
                else:
                    found = [str(path)] if path.is_file() else []
            if not found:
                raise DataError(f"shard spec {spec!r}: {url!r} matches no shard")
            out.extend(found)
    if not out:
        raise DataError("no shards given (data.shards in the config or --data)")
    return ShardSet(tuple(specs), tuple(out), tuple(pins))


def expand_shards(specs: list[str]) -> list[str]:
    """The shard URLs of ``resolve_shards`` (corpora at their latest snapshot)."""
    return list(resolve_shards(specs).urls)


def open_shard(url: str):
    """A readable binary stream for a local path or any fsspec URL (https, s3, ...)."""
    return fsspec.open(url, "rb").open()


@dataclass
class Vanished:
    """Shards of a pinned snapshot that are gone (vacuumed too early, deleted remotely): each is skipped with
    a warning and counted; once more than ``max_share`` of the snapshot is gone, the run stops (DataError)
    rather than train on what is left."""

    max_share: float
    urls: set[str] = field(default_factory=set)

    def add(self, url: str, snapshot: ShardSet) -> None:
        self.urls.add(url)
        gone = len(self.urls & set(snapshot.urls))
        print(
            f"warning: shard {url} of snapshot {snapshot.label} has vanished (vacuumed or deleted): "
            f"skipped ({gone} of its {len(snapshot.urls)} shards gone)",
            file=sys.stderr,
        )
        if gone > self.max_share * len(snapshot.urls):
            raise DataError(
                f"{gone} of the {len(snapshot.urls)} shards of snapshot {snapshot.label} have vanished, "
                f"more than data.max_missing ({self.max_share:.0%}): was the corpus vacuumed with a "
                "retention shorter than this run? (makeanything vacuum --retention)"
            )


@dataclass(frozen=True)
class HeadResolver:
    """Finds a sample's task head and layout: from our json, else the caption tag, else the config mapping;
    and which of our captions to train on (``caption``: the VLM's ``rich`` one when present, or ``template``)."""

    taxonomy: Taxonomy
    head_map: dict[str, int]
    caption: str = "rich"

    def text(self, txt: str, meta: dict | None) -> str:
        """The caption to train on: KEY.txt (rich when a VLM captioned the sample), or the json's template line."""
        if self.caption == "template" and meta is not None:
            return template_of(meta["caption"])
        return txt

    def __call__(self, key: str, url: str, caption: str, meta: dict | None) -> tuple[int, Layout]:
        if meta is not None:
            try:
                head = int(meta["task"]["head"])
                layout = Layout(
                    **{k: meta["layout"][k] for k in ("rows", "cols", "cell", "order", "separator")}
                )
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"sample {key} in {url}: json lacks a valid task.head / layout ({e})") from e
            return head, layout
        tag = LORA_TAG.search(caption)
        if tag:
            head = int(tag.group(1))
        else:
            hits = {h for s, h in self.head_map.items() if s in caption or s in key or s in url}
            if len(hits) != 1:
                raise DataError(
                    f"sample {key} in {url}: no --lora_up_cur tag and "
                    f"{'no' if not hits else 'several'} data.head_map entries match "
                    f"(caption {caption[:80]!r})"
                )
            head = hits.pop()
        try:
            layout = self.taxonomy.by_head(head).layout
        except KeyError as e:
            raise DataError(f"sample {key} in {url}: head {head} is not in the task taxonomy") from e
        grid = GRID_CAPTION.search(caption)
        if grid and (int(grid.group(1)), int(grid.group(2))) != (layout.rows, layout.cols):
            raise DataError(
                f"sample {key} in {url}: caption says {grid.group(0)!r} but head {head} "
                f"uses a {layout.rows}x{layout.cols} layout"
            )
        return head, layout


def clean_caption(caption: str) -> str:
    """The caption without the authors' head tag."""
    return " ".join(LORA_TAG.sub(" ", caption).split())


def resize_grid(img: Image.Image, layout: Layout, cell: int) -> Image.Image:
    """Resize a grid so every cell becomes ``cell`` x ``cell`` px, cell by cell (boundaries never shift)."""
    if img.size == (layout.cols * cell, layout.rows * cell):
        return img  # already the training size: every cell is exactly in place
    out = Image.new("RGB", (layout.cols * cell, layout.rows * cell))
    for step, (r, c) in enumerate(layout.positions):
        box = layout.cell_box(step, img.size)
        out.paste(img.crop(box).resize((cell, cell), Image.Resampling.BICUBIC), (c * cell, r * cell))
    return out


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB image -> uint8 tensor [3, H, W] (4x cheaper than float to pass between worker processes)."""
    return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).contiguous()


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [-1, 1], the VAE's input range (done on the training device)."""
    return images.float() / 127.5 - 1.0


def decode(raw: dict, resolve: HeadResolver, cell: int | None, token: int) -> dict:
    """One raw tar sample -> {key, image, caption, head, layout}; only image/json/text members are read."""
    key, url = raw["__key__"], raw.get("__url__", "?")
    image_ext = next((e for e in IMAGE_EXTS if e in raw), None)
    text_ext = next((e for e in TEXT_EXTS if e in raw), None)
    if image_ext is None or text_ext is None:
        raise DataError(
            f"sample {key} in {url} needs an image (jpg/png) and a caption (txt/caption); "
            f"has {sorted(k for k in raw if not k.startswith('__'))}"
        )
    meta = json.loads(raw["json"]) if "json" in raw else None
    caption = resolve.text(raw[text_ext].decode("utf-8").strip(), meta)
    head, layout = resolve(key, url, caption, meta)
    side = cell or layout.cell
    if side % token:
        raise DataError(
            f"cell size {side}px is not a multiple of the model's {token}px token "
            f"(sample {key}): set data.cell to a multiple of {token}"
        )
    with Image.open(io.BytesIO(raw[image_ext])) as im:
        img = resize_grid(im.convert("RGB"), layout, side)
    return {
        "key": key,
        "image": to_tensor(img),
        "caption": clean_caption(caption),
        "head": head,
        "layout": layout,
        "cell": side,
    }


def collate(samples: list[dict]) -> dict:
    """A batch; with its samples' latest epoch, that epoch's snapshot (None: loose tars, or not from a
    ShardStream) and how many shards had vanished so far."""
    newest = max(samples, key=lambda s: s.get("epoch", 0))
    return {
        "snapshot": newest.get("snapshot"),
        "epoch": newest.get("epoch", 0),
        "vanished": max(s.get("vanished", 0) for s in samples),
        "key": [s["key"] for s in samples],
        "caption": [s["caption"] for s in samples],
        "image": torch.stack([s["image"] for s in samples]),
        "head": [s["head"] for s in samples],
        "layout": [s["layout"] for s in samples],
        "cell": samples[0]["cell"],
    }


def _seed(*parts: int) -> int:
    return int.from_bytes(random.Random(repr(parts)).randbytes(8), "little")


class ShardStream(IterableDataset):
    """Endless batches for one rank: shards split by rank and worker (or resampled), shuffled, bucketed by size.

    Every random choice is seeded from (seed, epoch, rank, worker), so the stream is reproducible and a
    resumed run can skip exactly the batches it already consumed. A corpus among the shards is read as the
    snapshot it was pinned to; with ``follow``, each epoch after the first starts on the corpus's newest
    snapshot (a refresh that retired shards meanwhile never breaks the epoch being read).
    """

    def __init__(
        self,
        shards: ShardSet | list[str],
        resolve: HeadResolver,
        *,
        batch_size: int,
        shuffle_buffer: int,
        cell: int | None,
        token: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        workers: int = 0,
        resampled: bool = False,
        only_head: int | None = None,
        follow: bool = True,
        max_missing: float = 0.1,
    ) -> None:
        super().__init__()
        if not isinstance(shards, ShardSet):
            shards = ShardSet(tuple(shards), tuple(shards))
        parts = world * max(workers, 1)
        if not resampled and len(shards.urls) < parts:
            raise DataError(
                f"{len(shards.urls)} shard(s) cannot be split between {world} rank(s) x "
                f"{max(workers, 1)} worker(s): write more shards or set data.resampled: true"
            )
        self.shards, self.follow, self.max_missing = shards, follow, max_missing
        self.resolve, self.batch_size = resolve, batch_size
        self.shuffle_buffer, self.cell, self.token, self.seed = shuffle_buffer, cell, token, seed
        self.rank, self.world, self.resampled, self.only_head = rank, world, resampled, only_head

    def shard_order(self, worker: int, workers: int) -> Iterator[tuple[str, dict]]:
        """This rank's and worker's endless sequence of (shard URL, what its samples are tagged with)."""
        part, parts = self.rank * workers + worker, self.world * workers
        shards, epoch, vanished = self.shards, 0, Vanished(self.max_missing)
        while True:
            if epoch and self.follow:
                shards = shards.newest()
            urls = list(shards.urls)
            if self.resampled:
                rng = random.Random(_seed(self.seed, epoch, part))
                order = [rng.choice(urls) for _ in range(len(urls))]
            else:  # same permutation on every rank, then disjoint slices
                random.Random(_seed(self.seed, epoch)).shuffle(urls)
                order = urls[part::parts]
            for url in order:
                yield url, {"snapshot": shards.label, "epoch": epoch, "vanished": (vanished, shards)}
            epoch += 1

    def samples(self, worker: int, workers: int) -> Iterator[dict]:
        yield from decoded(
            self.shard_order(worker, workers), self.resolve, self.cell, self.token, self.only_head
        )

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rng = random.Random(_seed(self.seed, self.rank, worker, -1))
        buf: list[dict] = []
        buckets: dict[tuple[int, int], list[dict]] = {}
        for sample in self.samples(worker, workers):
            buf.append(sample)
            if len(buf) < self.shuffle_buffer:
                continue
            pick = buf.pop(rng.randrange(len(buf)))
            bucket = buckets.setdefault(tuple(pick["image"].shape[1:]), [])
            bucket.append(pick)
            if len(bucket) == self.batch_size:
                yield collate(bucket)
                bucket.clear()


def _shard_raw(url: str, tags: dict) -> Iterator[dict]:
    """The raw samples of one shard; a vanished one is skipped and counted when its snapshot is known
    (``tags["vanished"]``), else it is an error naming it."""
    try:
        stream = open_shard(url)
    except FileNotFoundError:
        if "vanished" not in tags:
            raise DataError(f"shard {url} does not exist") from None
        tags["vanished"][0].add(url, tags["vanished"][1])
        return
    yield from group_by_keys(tar_file_expander([{"url": url, "stream": stream}]), suffixes=DECODED)


def decoded(
    urls: Iterable[str | tuple[str, dict]],
    resolve: HeadResolver,
    cell: int | None,
    token: int,
    only_head: int | None = None,
) -> Iterator[dict]:
    """Decoded samples of the shards in order (optionally only one task head's). ``urls``: shard URLs, or
    (URL, tags) pairs from ShardStream.shard_order: each sample then says its snapshot and epoch."""
    skip = Exclusions(Exclusions.TRAINING)  # curation: dropped and held-out samples (dataset.json)
    for item in urls:
        url, tags = (item, {}) if isinstance(item, str) else item
        for raw in _shard_raw(url, tags):
            if skip(raw["__key__"], raw.get("__url__", "")):
                continue
            sample = decode(raw, resolve, cell, token)
            if only_head is None or sample["head"] == only_head:
                if tags:
                    sample.update(
                        snapshot=tags["snapshot"], epoch=tags["epoch"], vanished=len(tags["vanished"][0].urls)
                    )
                yield sample


def read_samples(
    urls: list[str], resolve: HeadResolver, n: int, cell: int | None, token: int, only_head: int | None = None
) -> list[dict]:
    """The first ``n`` samples of the shards in order (held-out validation samples)."""
    out: list[dict] = []
    for sample in decoded(urls, resolve, cell, token, only_head):
        out.append(sample)
        if len(out) == n:
            break
    if not out:
        raise DataError(f"validation shards {urls} hold no samples")
    return out
