"""A manifest of 100,000 tiny sources over a ledger that knows them all (as the run that built them left
it): a refresh skips every one by its signature, its memory stays within a fixed per-source budget, and
the 100,000-row ledger ends folded into one snapshot that reads back whole. (Its wall time is a figure of
bench.refresh, not a test.)"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
import yaml

from pipeline.config import BuildConfig
from pipeline.corpus.ledger import Ledger
from pipeline.intake.fetch import location
from pipeline.intake.fingerprint import stat_signature
from pipeline.io.storage import Storage
from pipeline.taxonomy import Taxonomy
from pipeline.work import Source

N = 100_000
# The driver keeps, per listed source, its Source, its ledger row and a few index entries (about 4 KB in
# CPython); anything that held a source's work (frames, results, futures: megabytes) would break this.
BYTES_PER_SOURCE = 8192


def _peak_rss_mb(args: list[str]) -> tuple[float, dict]:
    """Run `makeanything ARGS` in a fresh process; its peak RSS in MiB and its --json summary."""
    code = (
        "import json,resource,sys;from makeanything.cli import main;rc=main(sys.argv[1:]);"
        "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024);sys.exit(rc)"
    )
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    return float(lines[-1].split()[1]), json.loads(lines[-2])


def _corpus(folder, n: int) -> tuple:
    """n one-to-three-byte files (distinct contents) and a ledger that recorded each as a rejected source."""
    src = folder / "src"
    src.mkdir()
    task = Taxonomy.load()["painting"]
    config = BuildConfig.model_validate({"cluster": {"workers": 1, "processes": False}})
    rows = []
    for i in range(n):
        path = src / f"{i:06d}.mp4"
        data = i.to_bytes(3, "big")
        path.write_bytes(data)
        s = Source(uri=f"src/{path.name}", path=str(path), task=task, kind="video")
        rows.append(
            {
                "sha256": hashlib.sha256(data).hexdigest(),
                "uri": s.uri,
                "task": task.id,
                "config_sha": config.sha(),
                "status": "rejected",
                "reason": "not a readable video",
                "run": 1,
                "loc": location(s),
                "stat": stat_signature(s),
                "keys": [],
            }
        )
    out = folder / "out"
    Ledger(Storage(out)).commit(1, config.sha(), rows=rows)
    manifest = folder / "m.yaml"
    manifest.write_text(yaml.safe_dump({"sources": [{"glob": "src/*.mp4", "task": "painting"}]}))
    cfg = folder / "c.yaml"
    cfg.write_text(yaml.safe_dump({"cluster": {"workers": 1, "processes": False}}))
    return manifest, out, cfg


@pytest.mark.slow
def test_a_100k_source_refresh_reads_nothing_and_stays_in_its_memory_budget(tmp_path):
    small, big = tmp_path / "small", tmp_path / "big"
    small.mkdir(), big.mkdir()
    runs = {}
    for folder, n in ((small, 1000), (big, N)):
        manifest, out, cfg = _corpus(folder, n)
        args = ["refresh", str(manifest), "--out", str(out), "--config", str(cfg), "--quiet", "--json"]
        rss, summary = _peak_rss_mb(args)
        runs[n] = (rss, summary, out)
    for n, (_, summary, _) in runs.items():
        assert (summary["sources"], summary["processed"], summary["skipped"]) == (n, 0, n)
    grown = (runs[N][0] - runs[1000][0]) * 2**20 / (N - 1000)
    assert grown <= BYTES_PER_SOURCE, f"{grown:.0f} bytes per source"

    out = runs[N][2]
    assert [p.name.split("-")[0] for p in (out / "ledger").iterdir()] == ["snapshot"]  # folded after the run
    ledger = Ledger.load(Storage(out))
    assert len(ledger.rows) == N and len(ledger.known) == N
