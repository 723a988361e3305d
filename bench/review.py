"""Review site at scale: writes a corpus of N generated sequences (default 20,000, with rejected sources and
curation decisions) through the real shard writer, ledger and index, then times `makeanything review`
(first run, then a second run that reuses the thumbnails), reports the site's sizes, and, where Debian's
Chromium is installed, the page-load times in headless Chromium against a trivial page loaded in the same run.

    .venv/bin/python -m bench.review [--sequences 20000] [--cell 64] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.corpus.card import write_card
from pipeline.corpus.curation import Curation, decide, save
from pipeline.corpus.index import make_index, split_of, write_index
from pipeline.corpus.ledger import Ledger
from pipeline.corpus.schema import conform
from pipeline.corpus.shards import Sample, ShardWriter, encode_jpeg, shard_prefix
from pipeline.io.storage import Storage
from pipeline.layout import Layout, tile
from pipeline.review.site import write_site
from pipeline.taxonomy import Taxonomy
from testkit.samples import made_meta

# The paper's mix: most sequences are emoji and sketches, the rest spread over the other tasks.
SHARE = {"emoji": 0.5, "sketch": 0.25}


def _tasks(n: int, taxonomy: Taxonomy, rng: np.random.Generator) -> list[str]:
    others = [t for t in taxonomy.tasks if t not in SHARE]
    rest = 1 - sum(SHARE.values())
    p = [SHARE.get(t, rest / len(others)) for t in taxonomy.tasks]
    return [str(t) for t in rng.choice(list(taxonomy.tasks), size=n, p=p)]


def _grid(layout: Layout, rng: np.random.Generator) -> Image.Image:
    """Steps that accumulate: each adds a few coloured blocks to the previous one."""
    img = np.full((layout.cell, layout.cell, 3), 255, np.uint8)
    frames = []
    for _ in range(layout.frames):
        for _ in range(3):
            y, x = rng.integers(0, layout.cell - 8, 2)
            img[y : y + 8 + rng.integers(0, 16), x : x + 8 + rng.integers(0, 16)] = rng.integers(0, 255, 3)
        frames.append(img.copy())
    return tile(frames, layout)


def write_corpus(out: Path, n: int, cell: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    taxonomy, storage = Taxonomy.load(), Storage(out)
    ledger, config_sha = Ledger.load(storage), "bench"
    writers = {
        s: ShardWriter(out / "shards", prefix=shard_prefix(s, 1, 0), samples_per_shard=100)
        for s in ("train", "val")
    }
    pending: dict[str, list[dict]] = {"train": [], "val": []}

    def commit(split: str, info) -> None:
        rows = pending[split]
        tasks: dict[str, int] = {}
        for r in rows:
            tasks[r["task"]] = tasks.get(r["task"], 0) + 1
        ledger.commit(
            1,
            config_sha,
            rows=rows,
            shards=[info.record(split, 1, tasks, config_sha)],
        )
        pending[split] = []

    for i, tid in enumerate(_tasks(n, taxonomy, rng)):
        task = taxonomy[tid]
        layout = Layout(
            rows=task.layout.rows, cols=task.layout.cols, cell=cell, order=task.layout.order, separator=2
        )
        sha, key = f"{i:064x}", f"{tid}_src{i:06d}_s0"
        kind = "images" if i % 3 == 0 else "video"
        meta = made_meta(
            key,
            task.describe(),
            layout.describe(),
            task.caption(f"subject {i}"),
            uri=f"sources/{i:06d}",
            sha256=sha,
            kind=kind,
        )
        meta["source"]["id"] = f"src{i:06d}"
        for step, f in enumerate(meta["frames"]):
            f.update(file=f"step_{step:02d}.png") if kind == "images" else f.update(
                time=round(2.5 * step + rng.random(), 2)
            )
        if kind == "video":
            meta["scores"]["process"].update(
                gain=round(float(rng.random()), 4), monotonic=round(float(rng.random()), 4)
            )
        split = split_of(sha, 0.05)
        pending[split].append(
            {
                "sha256": sha,
                "uri": meta["source"]["uri"],
                "task": tid,
                "config_sha": config_sha,
                "status": "ok",
                "reason": "",
                "run": 1,
                "keys": [key],
                "license": "CC0-1.0",
                "attribution": None,
            }
        )
        info = writers[split].write(
            Sample(key, encode_jpeg(_grid(layout, rng), 90), meta["caption"]["text"], conform(meta))
        )
        if info is not None:
            commit(split, info)
    for split, w in writers.items():
        before = len(w.finished)
        w.close()
        if len(w.finished) > before:
            commit(split, w.finished[-1])
    rejected = [
        {
            "sha256": f"{n + i:064x}",
            "uri": f"sources/rejected-{i:05d}.mp4",
            "task": "painting",
            "config_sha": config_sha,
            "status": "rejected",
            "run": 1,
            "keys": [],
            "reason": "no making process found in 1 shot(s): 0.0-9.0s: changes without accumulating",
        }
        for i in range(n // 10)
    ]
    ledger.commit(1, config_sha, rows=rejected)
    curation = Curation(
        decisions=[
            decide("source", "src000003", "drop", "watermark", "bench"),
            decide("task", "lego", "hold-out", "zero-shot evaluation", "bench"),
        ]
    )
    save(storage, curation)
    history = [
        {
            "run": 1,
            "version": "bench",
            "config_sha": config_sha,
            "started": "",
            "duration_s": 0,
            "manifest": "bench",
            "counts": {"ok": n, "rejected": len(rejected)},
        }
    ]
    index = make_index(ledger, {"shards": {"val_fraction": 0.05}}, history, curation)
    write_card(storage, index, taxonomy)
    write_index(storage, index)
    return index


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def page_loads(site: Path) -> list[tuple[str, float]] | None:
    """Milliseconds from navigation to the end of the load event (site.js renders before it) per page."""
    try:
        from selenium import webdriver
    except ImportError:
        return None
    if not Path("/usr/bin/chromium").exists():
        return None
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1000",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(
        options=opts, service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    )
    (site / "blank.html").write_text("<!doctype html><title>baseline</title><p>baseline")
    largest = max(site.glob("task-*.html"), key=lambda p: (site / "data" / f"{p.stem}.js").stat().st_size)
    out = []
    try:
        for page in ["blank.html", "index.html", largest.name, "all.html", "rejected.html"]:
            times = []
            for _ in range(3):
                driver.get((site / page).as_uri())
                times.append(
                    driver.execute_script(
                        "const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime;"
                    )
                )
            out.append((page, float(np.median(times))))
        driver.get((site / "all.html").as_uri())
        filt = driver.execute_script(
            "const s = document.getElementById('f-task'); s.value = 'emoji'; const t = performance.now();"
            "s.dispatchEvent(new Event('change')); return performance.now() - t;"
        )
        out.append(("all.html: task filter -> re-render", float(filt)))
    finally:
        driver.quit()
        (site / "blank.html").unlink()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sequences", type=int, default=20000)
    p.add_argument(
        "--cell", type=int, default=64, help="grid cell side in px (the corpus's grids, not the thumbnails)"
    )
    p.add_argument("--out", help="work folder (default: a temporary one)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        t0 = time.perf_counter()
        index = write_corpus(root / "corpus", args.sequences, args.cell)
        print(
            f"corpus: {index['samples']} sequences, {len(index['shards'])} shards, "
            f"{_size(root / 'corpus' / 'shards') / 1e6:.1f} MB, written in {time.perf_counter() - t0:.1f}s"
        )
        first = write_site(str(root / "corpus"), root / "site")
        second = write_site(str(root / "corpus"), root / "site")
        print(f"review, first run:  {first['seconds']:7.1f}s ({first['thumbs_written']} thumbnails written)")
        print(
            f"review, second run: {second['seconds']:7.1f}s ({second['thumbs_reused']} reused) = "
            f"{second['seconds'] / first['seconds']:.2f} x the first"
        )
        site = root / "site"
        data = sorted(((p.stat().st_size, p.name) for p in (site / "data").iterdir()), reverse=True)
        print(
            f"site: {_size(site) / 1e6:.1f} MB in all; thumbnails {_size(site / 'thumbs') / 1e6:.1f} MB; "
            f"index.html {(site / 'index.html').stat().st_size / 1e3:.1f} kB; "
            f"data {_size(site / 'data') / 1e6:.2f} MB, "
            f"largest {data[0][1]} {data[0][0] / 1e6:.2f} MB; rejected.html "
            f"{(site / 'rejected.html').stat().st_size / 1e6:.2f} MB"
        )
        loads = page_loads(site)
        if loads is None:
            print("page loads: skipped (no selenium or /usr/bin/chromium)")
        else:
            base = loads[0][1]
            for page, ms in loads:
                print(
                    f"headless Chromium {page:40s} {ms:8.1f} ms"
                    + (f" = {ms / base:6.1f} x blank" if base else "")
                )
        print(json.dumps({"first": first, "second": second}))


if __name__ == "__main__":
    main()
