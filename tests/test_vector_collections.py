"""End to end on real open vector collections from the package registries, as a curator points the builder
at them: tabler's outline icons (npm @tabler/icons, MIT) as the 9-step `icon` task, KanjiVG (PyPI kanjivg,
CC BY-SA 3.0) as `line-draw`, OpenMoji (npm openmoji, CC BY-SA 4.0) as `emoji` drawn outline-first. Built
through `build`, read back from the shards with the WebDataset reader.

Packages are fetched once into a cache folder ($MAKEANYTHING_TEST_CACHE, else the system temp folder), so
reruns do not download again; each test is skipped, with the reason, when its registry cannot be reached.
The default run builds a few dozen items per package; the `slow` case 150 to 250 each.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import resvg_py
import webdataset as wds
from PIL import Image

from pipeline.config import BuildConfig
from pipeline.corpus.card import NAME
from pipeline.drawings.render import font_files
from pipeline.layout import split
from pipeline.run.driver import build
from pipeline.taxonomy import Taxonomy
from tests.conftest import write_manifest

TAXONOMY = Taxonomy.load()
CONFIG = BuildConfig.model_validate(
    {
        "cluster": {"workers": 1, "processes": False},
        "clip": {"enabled": False},
        "shards": {"samples_per_shard": 64},
    }
)
TABLER, OPENMOJI, KANJIVG = "@tabler/icons@3.54.0", "openmoji@17.0.0", "kanjivg==20260714"
CACHE = (
    Path(os.environ.get("MAKEANYTHING_TEST_CACHE") or tempfile.gettempdir()) / "makeanything-test-packages"
)


def fetched(spec: str, pattern: str, command: list[str]) -> Path:
    """The cached package file matching ``pattern``, fetched with ``command`` (run in a scratch folder, then
    moved into the cache, so an interrupted download never looks complete)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob(pattern))
    if found:
        return found[0]
    tool = command[0]
    if shutil.which(tool) is None and tool != sys.executable:
        pytest.skip(f"{tool} is not installed: cannot fetch {spec}")
    scratch = Path(tempfile.mkdtemp(dir=CACHE))
    try:
        done = subprocess.run(command, cwd=scratch, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        shutil.rmtree(scratch, ignore_errors=True)
        pytest.skip(f"the registry did not answer within 300 s for {spec}")
    got = sorted(scratch.glob(pattern))
    if done.returncode != 0 or not got:
        shutil.rmtree(scratch, ignore_errors=True)
        pytest.skip(f"fetching {spec} failed (registry unreachable?): {done.stderr.strip()[-300:]}")
    target = CACHE / got[0].name
    got[0].replace(target)
    shutil.rmtree(scratch, ignore_errors=True)
    return target


@pytest.fixture(scope="module")
def tabler() -> Path:
    return fetched(TABLER, "tabler-icons-*.tgz", ["npm", "pack", TABLER, "--silent"])


@pytest.fixture(scope="module")
def openmoji() -> Path:
    return fetched(OPENMOJI, "openmoji-*.tgz", ["npm", "pack", OPENMOJI, "--silent"])


@pytest.fixture(scope="module")
def kanjivg() -> Path:
    command = [sys.executable, "-m", "pip", "download", KANJIVG, "--no-deps", "-d", ".", "-q"]
    return fetched(KANJIVG, "kanjivg-*.whl", command)


def built(package: Path, tmp_path: Path, **entry: object) -> tuple[list[dict], list[dict]]:
    """Build one entry over the package; (report rows, samples read back from the shards)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    manifest = write_manifest(tmp_path, [{"svg": str(package), **entry}])
    result = build(manifest, tmp_path / "out", CONFIG, progress=False)
    rows = result.report["sources"]
    shards = sorted(str(p) for p in (tmp_path / "out" / "shards").glob("*.tar"))
    samples = list(wds.WebDataset(shards, shardshuffle=False).decode("pil")) if shards else []
    assert len(samples) == sum(r["status"] == "ok" for r in rows)
    status = Counter(r["status"] for r in rows)
    assert status["failed"] == 0, [r["reason"] for r in rows if r["status"] == "failed"]
    assert status["ok"] >= 0.9 * len(rows), Counter(r["reason"] for r in rows if r["status"] != "ok")
    return rows, samples


def steps_of(sample: dict, task: str) -> list[np.ndarray]:
    return [np.asarray(c, int) for c in split(sample["jpg"], TAXONOMY[task].layout)]


def render(svg: str, side: int) -> np.ndarray:
    """The renderer alone, with the fonts the pipeline sets text in (so stroke numbers would show)."""
    png = resvg_py.svg_to_bytes(
        svg_string=svg,
        width=side,
        height=side,
        background="#ffffff",
        skip_system_fonts=True,
        font_files=list(font_files()),
        font_family="DejaVu Sans",
    )
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), int)


def differs(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.abs(a - b).max(axis=2) > 40).mean())


def check_tabler(tabler: Path, tmp_path: Path, members: str) -> None:
    rows, samples = built(tabler, tmp_path, task="icon", members=members)
    assert all("/icons/outline/" in r["uri"] for r in rows)
    assert any("splitting strokes" in n for r in rows for n in r["notes"])  # few-path icons: partial strokes
    for s in samples:
        meta = s["json"]
        assert meta["source"]["license"] == "MIT" and "@tabler/icons@3.54.0" in meta["source"]["attribution"]
        assert len(meta["frames"]) == 9
        steps = steps_of(s, "icon")
        assert all(differs(a, b) > 0.0005 for a, b in zip(steps, steps[1:]))  # 9 distinct steps
    subjects = {s["json"]["source"]["uri"].rsplit("/", 1)[1]: s["json"]["source"]["subject"] for s in samples}
    assert all(re.match(r"[a-z0-9 ]+ \(.+\)$", v) for v in subjects.values())  # icons.json: name (tags)


def test_tabler_outline_icons_build_as_nine_step_icons(tabler, tmp_path):
    check_tabler(tabler, tmp_path, "icons/outline/ba[a-l]*.svg")  # 42 icons


def kanji_without_numbers(svg: str) -> str:
    return re.sub(r'<g id="kvg:StrokeNumbers_.*?</g>', "", svg, flags=re.DOTALL)


def check_kanjivg(kanjivg: Path, tmp_path: Path, members: str) -> None:
    rows, samples = built(kanjivg, tmp_path, task="line-draw", members=members)
    with zipfile.ZipFile(kanjivg) as zf:
        svgs = {n: zf.read(n).decode() for n in zf.namelist() if n.endswith(".svg")}
    side = TAXONOMY["line-draw"].layout.content
    for s in samples:
        meta = s["json"]
        assert (
            meta["source"]["license"] == "CC-BY-SA-3.0"
            and "kanjivg@20260714" in meta["source"]["attribution"]
        )
        member = meta["source"]["uri"].split("#", 1)[1]
        char = chr(int(Path(member).stem.split("-")[0], 16))  # also variants: 04e14-Kaisho.svg
        assert char in meta["source"]["subject"] and char in s["txt"]  # the character, not "04e00"
        steps = steps_of(s, "line-draw")
        bare = render(kanji_without_numbers(svgs[member]), side)
        assert differs(steps[-1], bare) <= 0.01  # the last step is the whole character
        numbers = (np.abs(render(svgs[member], side) - bare).max(axis=2) > 40) & (bare.min(axis=2) > 250)
        assert numbers.sum() > 50  # where the stroke numbers would be drawn...
        for step in steps:  # ...every step stays white
            assert (step.min(axis=2)[numbers] > 200).mean() > 0.97, member


def test_kanjivg_builds_without_stroke_numbers_and_names_the_character(kanjivg, tmp_path):
    check_kanjivg(kanjivg, tmp_path, "kanji/04e[0-3]*.svg")  # 34 characters, one to a dozen strokes


def check_openmoji(openmoji: Path, tmp_path: Path, members: str) -> None:
    rows, samples = built(openmoji, tmp_path, task="emoji", members=members, order="outline-first")
    assert all("/color/svg/" in r["uri"] for r in rows)  # not the src/ copies with their guides
    for s in samples:
        meta = s["json"]
        assert (
            meta["source"]["license"] == "CC-BY-SA-4.0" and "openmoji@17.0.0" in meta["source"]["attribution"]
        )
        first = steps_of(s, "emoji")[0]
        chroma = first.max(axis=2) - first.min(axis=2)
        assert (chroma > 80).mean() < 0.001, meta["source"]["uri"]  # no fill colour yet
        assert (first.max(axis=2) < 80).sum() > 200  # but line work


def test_openmoji_draws_its_line_layer_before_the_colour(openmoji, tmp_path):
    check_openmoji(openmoji, tmp_path, "color/svg/1F60*.svg")  # 16 emoji
    card = (tmp_path / "out" / NAME).read_text()  # the share-alike license is carried into the card
    assert re.search(r"### Share-alike\n(.*\n)*- \d+ samples under CC-BY-SA-4.0: openmoji@17\.0\.0", card)


def test_openmoji_source_copies_with_guides_are_rejected_with_the_reason(openmoji, tmp_path):
    manifest = write_manifest(
        tmp_path, [{"svg": str(openmoji), "task": "emoji", "members": "src/*/*/1F60[0-3].svg"}]
    )
    rows = build(manifest, tmp_path / "out", CONFIG, progress=False).report["sources"]
    assert len(rows) == 4
    assert all(r["status"] == "rejected" and "construction guides" in r["reason"] for r in rows)


FEW_HUNDRED = [  # (fixture, check, members): one and a half to a few hundred items of each (suite time)
    ("tabler", check_tabler, "icons/outline/b[a-lu]*.svg"),  # 250 icons
    ("kanjivg", check_kanjivg, "kanji/05[01][0-7]*.svg"),  # 156 characters
    ("openmoji", check_openmoji, "color/svg/1F6[0-4]*.svg"),  # 197 emoji
]


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(("package", "check", "members"), FEW_HUNDRED, ids=[c[0] for c in FEW_HUNDRED])
def test_a_few_hundred_items_of_each_collection(package, check, members, request, tmp_path):
    check(request.getfixturevalue(package), tmp_path, members)
