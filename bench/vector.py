"""Benchmark: SVG and stroke items per second per core, against the renderer alone doing the same renders,
measured in the same run; and the yield (sequences / items) and failures of real open collections.

    .venv/bin/python -m bench.vector [--collections twemoji,tabler,kanjivg,openmoji] [--sample 300]
                                     [--strokes 200] [--cache DIR] [--full] [--workers 2]

Collections, each fetched with its registry's own client into --cache (a temp folder by default) unless
already there: Twemoji (`npm pack @twemoji/svg@15.0.0`, emoji), tabler's outline icons (`npm pack
@tabler/icons@3.54.0`, members icons/outline/*.svg, the 9-step icon task), KanjiVG (`pip download
kanjivg==20260714`, line-draw) and OpenMoji (`npm pack openmoji@17.0.0`, members color/svg/*.svg,
order outline-first). For each, a spread sample of --sample items runs one after another in this process
(the path a worker takes: read, parse, measure, render the steps, tile, JPEG), giving the sample's yield,
failures and rejections by reason, and items per second per core; "renderer alone" replays exactly the
documents that path handed to resvg, so the ratio says how much of an item's time is the renderer's.
--full builds each whole package through `build` (Dask workers, shards, ledger, report) instead of a
sample's yield.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import resvg_py

import pipeline.stages.draw as progressive
from pipeline.config import BuildConfig
from pipeline.drawings.collect import Origin, stroke_sources, svg_sources
from pipeline.drawings.render import font_files
from pipeline.run.driver import build
from pipeline.run.worker import run_source
from pipeline.stages.chain import build_stages
from pipeline.taxonomy import Taxonomy
from pipeline.work import Source


@dataclass(frozen=True)
class Collection:
    spec: str  # what the registry's client is asked for
    registry: str  # npm or pip
    file: str  # the fetched file's glob
    task: str
    members: str | None = None
    order: str = "paint"

    def fetch(self, cache: Path) -> Path:
        """The package file in ``cache``, fetched with npm pack / pip download when missing."""
        cache.mkdir(parents=True, exist_ok=True)
        found = sorted(cache.glob(self.file))
        if not found:
            command = (
                ["npm", "pack", self.spec, "--silent"]
                if self.registry == "npm"
                else [sys.executable, "-m", "pip", "download", self.spec, "--no-deps", "-d", ".", "-q"]
            )
            subprocess.run(command, cwd=cache, check=True, capture_output=True, timeout=600)
            found = sorted(cache.glob(self.file))
        return found[0]

    def entry(self, package: Path) -> dict:
        entry = {"svg": str(package), "task": self.task, "order": self.order}
        return entry | ({"members": self.members} if self.members else {})


COLLECTIONS = {
    "twemoji": Collection("@twemoji/svg@15.0.0", "npm", "twemoji-svg-*.tgz", "emoji"),
    "tabler": Collection("@tabler/icons@3.54.0", "npm", "tabler-icons-*.tgz", "icon", "icons/outline/*.svg"),
    "kanjivg": Collection("kanjivg==20260714", "pip", "kanjivg-*.whl", "line-draw", "kanji/*.svg"),
    "openmoji": Collection(
        "openmoji@17.0.0", "npm", "openmoji-*.tgz", "emoji", "color/svg/*.svg", "outline-first"
    ),
}


def quickdraw_like(n: int, seed: int = 0) -> str:
    """n doodles in QuickDraw's shape: 4-14 smooth strokes in 0..255, half of them with times (ms)."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        strokes, t = [], 0
        for _ in range(int(rng.integers(4, 15))):
            k = int(rng.integers(3, 30))
            start = rng.uniform(30, 225, 2)
            steps = np.cumsum(rng.normal(0, 8, (k, 2)) + rng.normal(0, 6, 2), axis=0)
            pts = np.clip(start + steps, 0, 255).round().astype(int)
            stroke = [pts[:, 0].tolist(), pts[:, 1].tolist()]
            if i % 2:
                stroke.append(list(range(t, t + 30 * k, 30)))
                t += 30 * k + int(rng.integers(100, 600))
            strokes.append(stroke)
        lines.append(json.dumps({"word": "doodle", "drawing": strokes}))
    return "\n".join(lines) + "\n"


def per_core(items: list[Source], config: BuildConfig) -> dict:
    """Items one after another through the worker's path, then the renderer alone on the same documents."""
    kind = items[0].kind
    stages = build_stages(config, kind=kind)
    docs: list[tuple[str, bool]] = []
    real = progressive.render

    def recording(svg: str, text: bool = False) -> np.ndarray:
        docs.append((svg, text))
        return real(svg, text)

    progressive.render = recording  # a first, untimed pass records what the renderer is asked to draw
    try:
        results = [run_source(s, f"{i:064x}", stages, config) for i, s in enumerate(items)]
    finally:
        progressive.render = real
    clocks = {}
    for name, work in (
        ("pipeline", lambda: [run_source(s, f"{i:064x}", stages, config) for i, s in enumerate(items)]),
        (
            "renderer_alone",
            lambda: [
                resvg_py.svg_to_bytes(
                    svg_string=d,
                    background="#ffffff",
                    skip_system_fonts=True,
                    font_files=list(font_files()) if text else None,
                )
                for d, text in docs
            ],
        ),
    ):
        w0, c0 = time.perf_counter(), time.process_time()
        work()
        clocks[name] = (time.perf_counter() - w0, time.process_time() - c0)
    status = Counter(r.status for r in results)
    return {
        "kind": kind,
        "items": len(items),
        "ok": status["ok"],
        "failed": status["failed"],
        "yield": round(status["ok"] / len(items), 4),
        "split_strokes": sum(any(n.startswith("steps made by splitting") for n in r.notes) for r in results),
        "traced_shapes": sum(any(n.startswith("steps made by tracing") for n in r.notes) for r in results),
        "rejected_by_reason": reasons(results),
        "renders_per_item": round(len(docs) / len(items), 2),
        "items_per_s_per_core": {k: round(len(items) / v[1], 2) for k, v in clocks.items()},
        "wall_items_per_s": {k: round(len(items) / v[0], 2) for k, v in clocks.items()},
        "ratio_to_renderer_alone": round(clocks["renderer_alone"][1] / clocks["pipeline"][1], 3),
    }


def reasons(rows: list) -> dict[str, int]:
    """Rejections counted by the reason's first words (numbers and names left out)."""

    def reason(r: object) -> str:
        status, text = (r["status"], r["reason"]) if isinstance(r, dict) else (r.status, r.reason)
        return "" if status == "ok" else (text or "").split(" (")[0].split(":")[0]

    return dict(Counter(x for x in map(reason, rows) if x).most_common())


def full_build(collection: Collection, package: Path, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "manifest.yaml"
        manifest.write_text(json.dumps({"sources": [collection.entry(package)]}))
        config = BuildConfig.model_validate({"cluster": {"workers": workers}, "clip": {"enabled": False}})
        t0 = time.perf_counter()
        res = build(manifest, Path(tmp) / "out", config, progress=False)
        wall = time.perf_counter() - t0
    rows = res.report["sources"]
    status = Counter(r["status"] for r in rows)
    return {
        "items": len(rows),
        "sequences": res.summary["new_samples"],
        "failed": status["failed"],
        "yield": round(res.summary["new_samples"] / len(rows), 4),
        "split_strokes": sum(any(n.startswith("steps made by splitting") for n in r["notes"]) for r in rows),
        "traced_shapes": sum(any(n.startswith("steps made by tracing") for n in r["notes"]) for r in rows),
        "workers": workers,
        "wall_s": round(wall, 1),
        "items_per_s": round(len(rows) / wall, 2),
        "rejected_by_reason": reasons(rows),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--collections",
        default=",".join(COLLECTIONS),
        help=f"comma-separated, of {', '.join(COLLECTIONS)} (default: all)",
    )
    ap.add_argument(
        "--cache", type=Path, help="folder holding (or receiving) the packages (default: a temp one)"
    )
    ap.add_argument(
        "--sample", type=int, default=300, help="SVG items per collection, spread over the package"
    )
    ap.add_argument(
        "--strokes", type=int, default=200, help="QuickDraw-style drawings for the per-core figures (0: none)"
    )
    ap.add_argument("--full", action="store_true", help="also build each whole package and report its yield")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Dask workers for --full")
    args = ap.parse_args()
    taxonomy = Taxonomy.load()
    config = BuildConfig.model_validate({"clip": {"enabled": False}})
    out: dict = {
        "load_average": open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else None
    }
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        for name in args.collections.split(","):
            collection = COLLECTIONS[name]
            package = collection.fetch(cache)
            origin = Origin(taxonomy[collection.task], 0, None, None, None, (), collection.order)
            items = svg_sources(package.parent, package.name, collection.members, origin)
            step = max(1, len(items) // args.sample)
            out[name] = {
                "package": package.name,
                "package_items": len(items),
                "sample": per_core(items[::step][: args.sample], config),
            }
            if args.full:
                out[name]["full"] = full_build(collection, package, args.workers)
            print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
        if args.strokes:
            ndjson = Path(tmp) / "doodles.ndjson"
            ndjson.write_text(quickdraw_like(args.strokes))
            out["strokes"] = per_core(
                stroke_sources(ndjson.parent, ndjson.name, Origin(taxonomy["sketch"], 0, None, None, None)),
                config,
            )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
