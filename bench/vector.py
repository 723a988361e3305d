"""Benchmark: SVG and stroke items per second per core, against the renderer alone doing the same renders,
measured in the same run; and the whole Twemoji package's yield (sequences / items) and failures.

    .venv/bin/python -m bench.vector [--package twemoji-svg-15.0.0.tgz] [--sample 300] [--strokes 200] [--full]

Without --package, `npm pack @twemoji/svg@15.0.0` fetches the package. Per-core figures run items one
after another in this process (the path a worker takes: read, parse, measure, render the steps, tile,
JPEG); "renderer alone" replays exactly the documents that path handed to resvg, so the ratio says how
much of an item's time is the renderer's. --full builds the whole package through `build` (Dask workers,
shards, ledger, report) and prints yield, failures and rejections by reason.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from collections import Counter
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

PACKAGE = "@twemoji/svg@15.0.0"


def fetch_package(folder: Path) -> Path:
    subprocess.run(
        ["npm", "pack", PACKAGE, "--silent"], cwd=folder, check=True, capture_output=True, timeout=300
    )
    return next(folder.glob("*.tgz"))


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
        "renders_per_item": round(len(docs) / len(items), 2),
        "items_per_s_per_core": {k: round(len(items) / v[1], 2) for k, v in clocks.items()},
        "wall_items_per_s": {k: round(len(items) / v[0], 2) for k, v in clocks.items()},
        "ratio_to_renderer_alone": round(clocks["renderer_alone"][1] / clocks["pipeline"][1], 3),
    }


def full_build(package: Path, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "manifest.yaml"
        manifest.write_text(json.dumps({"sources": [{"svg": str(package), "task": "emoji"}]}))
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
        "workers": workers,
        "wall_s": round(wall, 1),
        "items_per_s": round(len(rows) / wall, 2),
        "rejected_by_reason": dict(
            Counter(
                r["reason"].split(" (")[0].split(":")[0] for r in rows if r["status"] != "ok"
            ).most_common()
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package", type=Path, help=f"the {PACKAGE} tarball (default: npm pack it)")
    ap.add_argument(
        "--sample", type=int, default=300, help="SVG items for the per-core figures (spread over the package)"
    )
    ap.add_argument(
        "--strokes", type=int, default=200, help="QuickDraw-style drawings for the per-core figures"
    )
    ap.add_argument("--full", action="store_true", help="also build the whole package and report its yield")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Dask workers for --full")
    args = ap.parse_args()
    taxonomy = Taxonomy.load()
    config = BuildConfig.model_validate({"clip": {"enabled": False}})
    with tempfile.TemporaryDirectory() as tmp:
        package = args.package or fetch_package(Path(tmp))
        items = svg_sources(
            package.parent, package.name, None, Origin(taxonomy["emoji"], 0, None, None, None)
        )
        step = max(1, len(items) // args.sample)
        out = {
            "package": package.name,
            "package_items": len(items),
            "svg": per_core(items[::step][: args.sample], config),
        }
        ndjson = Path(tmp) / "doodles.ndjson"
        ndjson.write_text(quickdraw_like(args.strokes))
        out["strokes"] = per_core(
            stroke_sources(ndjson.parent, ndjson.name, Origin(taxonomy["sketch"], 0, None, None, None)),
            config,
        )
        if args.full:
            out["twemoji_full"] = full_build(package, args.workers)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
