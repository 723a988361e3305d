"""End to end on real open vector art: Twemoji's SVGs (MIT, npm package @twemoji/svg) built as the `emoji`
task straight from the package tarball, then read back with the WebDataset reader."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from collections import Counter

import numpy as np
import pytest
import resvg_py
import webdataset as wds
from PIL import Image

from pipeline.config import BuildConfig
from pipeline.layout import split
from pipeline.run.driver import build
from pipeline.taxonomy import Taxonomy
from tests.conftest import write_manifest

PACKAGE = "@twemoji/svg@15.0.0"
MEMBERS = "1f6[0-4]*.svg"  # smileys, gestures and their skin tones: 195 of the package's 3,720 SVGs


@pytest.fixture(scope="module")
def twemoji(tmp_path_factory):
    """The package tarball, installed from the npm registry (skipped when npm or the registry is unreachable)."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: cannot fetch the @twemoji/svg package")
    folder = tmp_path_factory.mktemp("twemoji")
    try:
        done = subprocess.run(
            ["npm", "pack", PACKAGE, "--silent"], cwd=folder, capture_output=True, text=True, timeout=180
        )
    except subprocess.TimeoutExpired:
        pytest.skip("the npm registry did not answer within 180 s")
    tgz = list(folder.glob("*.tgz"))
    if done.returncode != 0 or not tgz:
        pytest.skip(f"npm pack {PACKAGE} failed (registry unreachable?): {done.stderr.strip()[-300:]}")
    return tgz[0]


@pytest.mark.slow
def test_twemoji_package_builds_as_the_emoji_task_and_reads_back(twemoji, tmp_path):
    manifest = write_manifest(twemoji.parent, [{"svg": twemoji.name, "task": "emoji", "members": MEMBERS}])
    config = BuildConfig.model_validate(
        # Spawned workers: this suite's process has decoded video in-process by now, and a worker forked
        # from it hung freeing a PyAV scaler whose slice threads stayed in the parent (py-spy, two CI runs).
        {
            "cluster": {"workers": 2, "start_method": "spawn"},
            "clip": {"enabled": False},
            "shards": {"samples_per_shard": 50},
        }
    )
    result = build(manifest, tmp_path / "out", config, progress=False)
    rows = result.report["sources"]
    with tarfile.open(twemoji) as tf:
        svgs = {m.name: tf.extractfile(m).read() for m in tf if m.name.endswith(".svg")}
    listed = {n for n in svgs if n.split("/")[-1].startswith(tuple(f"1f6{d}" for d in "01234"))}
    assert {r["uri"].split("#", 1)[1] for r in rows} == listed and len(rows) == 195
    status = Counter(r["status"] for r in rows)
    assert status["failed"] == 0
    assert status["ok"] >= 0.5 * len(rows), Counter(r["reason"].split(":")[0] for r in rows)
    known = ("too few visible additions", "not enough distinct steps", "duplicate of")
    assert all(r["reason"].startswith(known) for r in rows if r["status"] == "rejected")

    layout = Taxonomy.load()["emoji"].layout
    shards = sorted(str(p) for p in (tmp_path / "out" / "shards").glob("*.tar"))
    samples = list(wds.WebDataset(shards, shardshuffle=False).decode("pil"))
    assert len(samples) == status["ok"] == result.summary["total_samples"]
    assert len({s["__key__"] for s in samples}) == len(samples)
    by_member = {}
    for s in samples:
        meta = s["json"]
        assert s["jpg"].size == layout.size
        assert meta["source"]["license"] == "MIT" and PACKAGE in meta["source"]["attribution"]
        assert meta["source"]["kind"] == "svg" and meta["task"]["id"] == "emoji"
        assert [f["step"] for f in meta["frames"]] == [1, 2, 3, 4]
        by_member[meta["source"]["uri"].split("#", 1)[1]] = s
    grinning = by_member["package/1f600.svg"]
    assert grinning["txt"] == "2*2 of 4 sub-images, step-by-step emoji design process, grinning face"
    for name in ("package/1f600.svg", "package/1f64f.svg"):  # the last step is the whole emoji
        if name in by_member:
            png = resvg_py.svg_to_bytes(
                svg_string=svgs[name].decode(),
                width=layout.content,
                height=layout.content,
                background="#ffffff",
            )
            whole = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), int)
            last = np.asarray(split(by_member[name]["jpg"], layout)[-1], int)
            assert (np.abs(last - whole).max(axis=2) > 24).mean() <= 0.01
    index = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert index["per_task"]["emoji"]["total"] == len(samples)
